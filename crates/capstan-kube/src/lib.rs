//! What Capstan's components (scheduler, controllers, later the kubelet) share on top of
//! kube-rs, so each writes it once: [`events`], an Event recorder with upstream's
//! aggregation of repeats into a series, and [`leader`], leader election on a
//! coordination.k8s.io Lease; [`selector`], label selectors evaluated.

pub mod events;
pub mod leader;
pub mod selector;
pub mod store;
