//! Capstan's hollow nodes: kubelets without containers, for scale tests and benchmarks (like
//! kwok and upstream's kubemark).
//!
//! [`run`] registers [`SimConfig::count`] Nodes, renews a Lease for each in
//! `kube-node-lease` and re-posts their status as a kubelet does, and watches pods: those bound
//! to one of its nodes are reported Running with fake IPs (and, unless they restart always,
//! Succeeded a little later), and those being deleted are removed for good.
//!
//! The pure parts build the objects: [`config`] (flags and limits), [`duration`] (Go-style
//! durations), [`network`] (node and pod addresses), [`node`] (Node, status, Lease) and
//! [`pod_status`] (each pod's next step and statuses). `nodes`, `pods` and `run` do the IO.
//!
//! **Architecture Invariant:** this crate reaches the cluster only through kube-rs, as any
//! kubelet would; it runs unchanged against an upstream API server.

#![forbid(unsafe_code)]

pub mod config;
pub mod duration;
mod error;
pub mod network;
pub mod node;
mod nodes;
pub mod pod_status;
mod pods;
mod run;

pub use config::{ConfigError, FlagError, Label, SimConfig, TaintEffect, TaintFlag};
pub use duration::{DurationError, parse_duration};
pub use error::{SimError, describe};
pub use run::run;
