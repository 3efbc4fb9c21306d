//! Capstan's kubelet: it registers its node, keeps the node's Lease and status fresh, and
//! makes the pods bound to the node real through a container runtime spoken to over CRI
//! (containerd, supervised by [`containerd`]).
//!
//! - [`runtime`]: the CRI calls, behind a trait.
//! - [`containerd`]: containerd as a supervised child with a generated config.
//! - [`image_archive`]: OCI image archives built from local files (the pause image, test
//!   images), and importing archives into the runtime.
//! - [`node`]: the Node object, its Lease and its status.

pub mod containerd;
pub mod image_archive;
pub mod kubelet;
pub mod node;
pub mod runtime;

pub use kubelet::KubeletConfig;

// Stand-ins until the real modules land.
#[path = "stubs/env.rs"]
pub mod env;
#[path = "stubs/hooks.rs"]
pub mod hooks;
#[path = "stubs/probes.rs"]
pub mod probes;
#[path = "stubs/volumes.rs"]
pub mod volumes;
pub mod cni;
pub mod pods;
pub mod registries;

pub use kubelet::{KubeletError, run};
