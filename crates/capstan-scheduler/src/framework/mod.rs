//! The scheduling framework: what a plugin sees and what it answers.
//!
//! A scheduling cycle runs every plugin's `pre_filter` once for the pod, then `filter` on each
//! node until enough feasible nodes are found, then `pre_score` once and `score` on every
//! feasible node, then each plugin's `normalize_scores`. A plugin that has nothing to say about
//! a pod answers [`Code::Skip`] from `pre_filter` (or `pre_score`) and is left out of the rest
//! of that phase, as upstream's framework does.

mod cycle_state;
mod node_info;
mod resource;
pub mod selectors;
mod snapshot;
pub mod taints;
#[cfg(test)]
pub(crate) mod testing;

pub use cycle_state::{CycleState, StateData};
pub use node_info::{
    AffinityTerm, HostPort, ImageState, NodeInfo, PodInfo, WeightedAffinityTerm,
    normalized_image_name,
};
pub use resource::{DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, Resource};
pub use snapshot::Snapshot;

/// The highest score a plugin gives a node (upstream's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// How a plugin judged a pod (or a pod on a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The pod may go on.
    Success,
    /// The pod does not fit now, but preempting pods could make it fit.
    Unschedulable,
    /// The pod does not fit, and preemption on this node cannot change that.
    UnschedulableAndUnresolvable,
    /// The plugin has nothing to do for this pod: its later calls in this phase are skipped.
    Skip,
    /// Something went wrong that is not the pod's fault.
    Error,
}

/// A plugin's answer: a code and the reasons behind it, in upstream's words (they become the
/// `FailedScheduling` message, e.g. "Insufficient cpu").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    /// The plugin that answered; set by the framework, so plugins may leave it empty.
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status { code: Code::Success, reasons: Vec::new(), plugin: "" }
    }

    pub fn skip() -> Status {
        Status { code: Code::Skip, reasons: Vec::new(), plugin: "" }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status { code: Code::Unschedulable, reasons: vec![reason.into()], plugin: "" }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn error(reason: impl Into<String>) -> Status {
        Status { code: Code::Error, reasons: vec![reason.into()], plugin: "" }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the pod was rejected (as opposed to accepted, skipped or failed).
    pub fn is_rejected(&self) -> bool {
        matches!(self.code, Code::Unschedulable | Code::UnschedulableAndUnresolvable)
    }
}

/// What changed in the cluster, as far as the scheduling queue cares: an unschedulable pod is
/// retried when one of the plugins that rejected it registered for the event that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    NodeAdd,
    /// Any change to a node's spec, labels, taints, allocatable or conditions.
    NodeUpdate,
    /// A pod was bound to a node (or an already-assigned pod appeared).
    AssignedPodAdd,
    /// An assigned pod changed: labels, requests (in-place resize), phase.
    AssignedPodUpdate,
    /// An assigned pod was deleted (or ended), freeing what it held.
    AssignedPodDelete,
    /// An unscheduled pod was deleted (frees its nomination).
    UnscheduledPodDelete,
    PvcChange,
    PvChange,
    StorageClassChange,
    NamespaceChange,
}

impl ClusterEvent {
    /// Every event: for plugins (and unknown rejectors) that must be retried on anything.
    pub const ALL: &'static [ClusterEvent] = &[
        ClusterEvent::NodeAdd,
        ClusterEvent::NodeUpdate,
        ClusterEvent::AssignedPodAdd,
        ClusterEvent::AssignedPodUpdate,
        ClusterEvent::AssignedPodDelete,
        ClusterEvent::UnscheduledPodDelete,
        ClusterEvent::PvcChange,
        ClusterEvent::PvChange,
        ClusterEvent::StorageClassChange,
        ClusterEvent::NamespaceChange,
    ];
}

/// One scheduling plugin. Every method has a neutral default, so a plugin implements only the
/// extension points it uses. Plugins are stateless between cycles: what `pre_filter` or
/// `pre_score` computes for a pod lives in the [`CycleState`] under the plugin's name.
pub trait Plugin: Send + Sync + std::fmt::Debug {
    /// Upstream's plugin name, e.g. `"NodeResourcesFit"`.
    fn name(&self) -> &'static str;

    /// The cluster events that could make a pod this plugin rejected fit.
    fn events(&self) -> &'static [ClusterEvent] {
        ClusterEvent::ALL
    }

    /// Whether this plugin has a filter (`pre_filter` and `filter`).
    fn filters(&self) -> bool {
        false
    }

    /// Whether this plugin scores nodes (`pre_score`, `score`, `normalize_scores`).
    fn scores(&self) -> bool {
        false
    }

    /// Once per cycle, before any filter: compute what the filters need, or reject the pod
    /// outright (it then fits no node).
    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        Status::success()
    }

    /// Preemption's what-if: `victim_or_added` is assumed added to `node` (used by plugins whose
    /// pre-filter state counts pods, such as InterPodAffinity and PodTopologySpread).
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
    }

    /// Preemption's what-if: `removed` is assumed gone from `node`.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
    }

    /// Whether the pod fits on this node.
    fn filter(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> Status {
        Status::success()
    }

    /// Once per cycle, after filtering, with the feasible nodes.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _snapshot: &Snapshot,
        _feasible: &[&NodeInfo],
    ) -> Status {
        Status::success()
    }

    /// The node's raw score; `normalize_scores` brings all of them into 0..=MAX_NODE_SCORE.
    fn score(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        0
    }

    /// Rescales the raw scores of the feasible nodes (in the order `score` was called).
    fn normalize_scores(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}

    /// The weight of this plugin's normalized score in the total.
    fn weight(&self) -> i64 {
        1
    }
}

/// Rescales scores to 0..=MAX_NODE_SCORE by the highest one, optionally reversed (upstream's
/// `DefaultNormalizeScore`). All zero stays all zero (or all MAX when reversed).
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|score| *score = max_priority);
        }
        return;
    }
    for score in scores.iter_mut() {
        *score = max_priority * *score / highest;
        if reverse {
            *score = max_priority - *score;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_by_the_highest_score() {
        let mut scores = [10, 5, 0];
        default_normalize_score(MAX_NODE_SCORE, false, &mut scores);
        assert_eq!(scores, [100, 50, 0]);
        let mut scores = [10, 5, 0];
        default_normalize_score(MAX_NODE_SCORE, true, &mut scores);
        assert_eq!(scores, [0, 50, 100]);
        let mut scores = [0, 0];
        default_normalize_score(MAX_NODE_SCORE, true, &mut scores);
        assert_eq!(scores, [100, 100]);
    }
}
