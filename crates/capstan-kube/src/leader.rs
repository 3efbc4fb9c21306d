//! Leader election on a coordination.k8s.io Lease (stub: filled in by its own change).
