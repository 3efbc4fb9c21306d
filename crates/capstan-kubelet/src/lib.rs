//! Capstan's kubelet: it registers its node, keeps the node's Lease and status fresh, and
//! makes the pods bound to the node real through a container runtime spoken to over CRI
//! (containerd, supervised by [`containerd`]).
//!
//! - [`kubelet`]: the configuration and [`run`], which starts everything below.
//! - [`runtime`]: the CRI calls, behind a trait.
//! - [`containerd`]: containerd as a supervised child with a generated config.
//! - [`image_archive`]: OCI image archives built from local files (the pause image, test
//!   images), and importing archives into the runtime.
//! - [`image_gc`]: unused images removed when the image filesystem fills up.
//! - [`registries`]: registry mirrors and credentials (k3s's `registries.yaml`).
//! - [`node`]: the Node object, its Lease and its status.
//! - [`cni`]: the pod network's CNI config from the node's pod CIDRs.
//! - [`routes`]: routes to other nodes' pod CIDRs via their addresses.
//! - [`pods`]: one worker per pod: sandbox, containers, restarts, status, termination.
//! - [`volumes`]: the pod's volumes on the host (emptyDir, hostPath, configMap, secret,
//!   downwardAPI, projected, persistentVolumeClaim) and the CRI mounts of its containers.
//! - [`probes`] and [`hooks`]: liveness, readiness and startup probes; postStart and preStop.
//! - [`server`]: the kubelet's HTTPS API: logs, exec, attach and port-forward.
//! - [`static_pods`]: pods from a manifest directory, shown as mirror pods.
//! - [`env`]: a container's environment (service links, envFrom, env with `$(VAR)` expansion).

pub mod cni;
pub mod containerd;
pub mod env;
pub mod hooks;
pub mod image_archive;
pub mod image_gc;
pub mod kubelet;
pub mod node;
pub mod pods;
pub mod probes;
pub mod registries;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod volumes;

pub use kubelet::{KubeletConfig, KubeletError, run};
