//! Capstan's scheduler: the equivalent of kube-scheduler's default profile.
//!
//! The core is pure and synchronous: [`framework`] holds the cluster's shape as the scheduler
//! sees it ([`framework::NodeInfo`], [`framework::Snapshot`]) and the plugin contract;
//! [`plugins`] the upstream default plugin set; [`queue`] the scheduling queue with its
//! active, back-off and unschedulable sets; [`schedule`] one scheduling cycle (filter, then
//! score, then pick a node); [`preemption`] the search for lower-priority victims.
//!
//! [`runtime`] is the IO edge: informers (kube-rs watchers) keep the state, a loop runs the
//! cycles, and bindings, status updates and Events go to the API server.

pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod runtime;
pub mod schedule;
