//! One scheduling cycle for one pod, as upstream's `schedulePod`: pre-filter, filter nodes
//! (round-robin from where the last cycle stopped, until enough feasible ones are found),
//! pre-score, score, normalize, weigh, and pick the best node (ties broken at random).

use crate::framework::{Code, CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Below this many nodes every node is evaluated.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// A scheduling profile: its plugins and how many nodes to evaluate.
#[derive(Debug)]
pub struct Profile {
    /// Upstream's profile name; pods choose it with `spec.schedulerName`.
    pub scheduler_name: String,
    pub plugins: Vec<Box<dyn Plugin>>,
    /// `percentageOfNodesToScore`: 0 means adaptive (50% minus 1% per 125 nodes, at least 5%).
    pub percentage_of_nodes_to_score: usize,
}

impl Profile {
    /// The `default-scheduler` profile with the default plugins.
    pub fn default_profile() -> Profile {
        Profile {
            scheduler_name: "default-scheduler".to_owned(),
            plugins: crate::plugins::default_plugins(),
            percentage_of_nodes_to_score: 0,
        }
    }

    /// How many feasible nodes a cycle looks for among `all` nodes.
    pub fn feasible_nodes_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES_TO_FIND {
            return all;
        }
        let mut percentage = self.percentage_of_nodes_to_score;
        if percentage == 0 {
            percentage = 50_usize.saturating_sub(all / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE);
        }
        (all * percentage.min(100) / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// Why a pod fits no node.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// A pre-filter's rejection, which applies to every node.
    pub pre_filter: Option<Status>,
    /// Each evaluated node's first rejection, by node name.
    pub node_statuses: BTreeMap<String, Status>,
    /// What preemption found, appended to the message ("preemption: 0/3 nodes are …").
    pub post_filter_message: Option<String>,
}

impl FitError {
    /// The plugins that rejected the pod: the queue retries it on events they care about.
    pub fn unschedulable_plugins(&self) -> BTreeSet<&'static str> {
        self.pre_filter
            .iter()
            .chain(self.node_statuses.values())
            .filter(|status| status.is_rejected())
            .map(|status| status.plugin)
            .collect()
    }

    /// Nodes where preemption could help: rejected as `Unschedulable`, not unresolvable.
    pub fn nodes_preemption_may_help(&self) -> BTreeSet<&str> {
        if self.pre_filter.as_ref().is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable) {
            return BTreeSet::new();
        }
        self.node_statuses
            .iter()
            .filter(|(_, status)| status.code == Code::Unschedulable)
            .map(|(node, _)| node.as_str())
            .collect()
    }
}

/// Counts reasons into upstream's sorted histogram: "1 node(s) had …, 2 Insufficient cpu".
pub fn reasons_histogram<'a>(statuses: impl Iterator<Item = &'a Status>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for status in statuses {
        for reason in &status.reasons {
            *counts.entry(reason.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    parts.sort();
    parts.join(", ")
}

impl fmt::Display for FitError {
    /// Upstream's message: "0/3 nodes are available: 1 node(s) had untolerated taint
    /// {k: v}, 2 Insufficient cpu. preemption: …".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        match &self.pre_filter {
            Some(status) => write!(f, " {}.", status.reasons.join(", "))?,
            None => {
                let histogram = reasons_histogram(self.node_statuses.values());
                if !histogram.is_empty() {
                    write!(f, " {histogram}.")?;
                }
            }
        }
        if let Some(message) = &self.post_filter_message {
            write!(f, " {message}")?;
        }
        Ok(())
    }
}

/// Why a cycle did not pick a node.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The cluster has no nodes at all.
    NoNodes,
    /// No node fits the pod.
    Unschedulable(FitError),
    /// A plugin failed for reasons that are not the pod's.
    Internal(String),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => write!(f, "no nodes available to schedule pods"),
            ScheduleError::Unschedulable(error) => error.fmt(f),
            ScheduleError::Internal(message) => write!(f, "{message}"),
        }
    }
}

/// Where the next cycle starts filtering, and the randomness that breaks score ties: the
/// scheduler's memory between cycles.
#[derive(Debug)]
pub struct CycleCursor {
    pub next_start_node: usize,
    pub rng: fastrand::Rng,
}

impl Default for CycleCursor {
    fn default() -> Self {
        CycleCursor { next_start_node: 0, rng: fastrand::Rng::new() }
    }
}

/// Runs every filtering plugin's `pre_filter`, recording skips in `state`.
pub fn run_pre_filters(
    profile: &Profile,
    state: &mut CycleState,
    pod: &PodInfo,
    snapshot: &Snapshot,
) -> Result<(), ScheduleError> {
    for plugin in profile.plugins.iter().filter(|plugin| plugin.filters()) {
        let mut status = plugin.pre_filter(state, pod, snapshot);
        status.plugin = plugin.name();
        match status.code {
            Code::Success => {}
            Code::Skip => state.skip_filter.push(plugin.name()),
            Code::Error => {
                return Err(ScheduleError::Internal(format!(
                    "running PreFilter plugin {:?}: {}",
                    plugin.name(),
                    status.reasons.join(", ")
                )));
            }
            Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                return Err(ScheduleError::Unschedulable(FitError {
                    num_all_nodes: snapshot.nodes.len(),
                    pre_filter: Some(status),
                    ..FitError::default()
                }));
            }
        }
    }
    Ok(())
}

/// Runs the filters on one node in order; the first that does not succeed answers.
pub fn run_filters(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Status {
    for plugin in profile.plugins.iter().filter(|plugin| plugin.filters()) {
        if state.skip_filter.contains(&plugin.name()) {
            continue;
        }
        let mut status = plugin.filter(state, pod, node);
        if !status.is_success() {
            status.plugin = plugin.name();
            return status;
        }
    }
    Status::success()
}

/// Runs the filters with the pods nominated to this node (of no lower priority than `pod`)
/// counted as if they were running there, and then without them: the pod must fit both ways,
/// as upstream's `RunFilterPluginsWithNominatedPods` requires.
pub fn run_filters_with_nominated_pods(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Status {
    let nominated: Vec<&PodInfo> = snapshot
        .nominated_pods
        .get(node.name())
        .into_iter()
        .flatten()
        .filter(|other| other.uid() != pod.uid() && other.priority() >= pod.priority())
        .collect();
    if !nominated.is_empty() {
        let mut node_with = node.clone();
        let mut state_with = state.clone();
        for other in nominated {
            node_with.add_pod(other.clone());
            for plugin in &profile.plugins {
                plugin.add_pod(&mut state_with, pod, other, &node_with, snapshot);
            }
        }
        let status = run_filters(profile, &state_with, pod, &node_with);
        if !status.is_success() {
            return status;
        }
    }
    run_filters(profile, state, pod, node)
}

/// Schedules one pod: returns the chosen node, or why none fits. `state` holds the
/// pre-filter results afterwards (preemption reuses them).
pub fn schedule_pod(
    profile: &Profile,
    state: &mut CycleState,
    pod: &PodInfo,
    snapshot: &Snapshot,
    cursor: &mut CycleCursor,
) -> Result<ScheduleResult, ScheduleError> {
    let all = snapshot.nodes.len();
    if all == 0 {
        return Err(ScheduleError::NoNodes);
    }
    run_pre_filters(profile, state, pod, snapshot)?;

    // A pod that preemption nominated to a node tries that node first.
    let nominated = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
    if let Some(node) = nominated.and_then(|name| snapshot.node(name))
        && run_filters_with_nominated_pods(profile, state, pod, node, snapshot).is_success()
    {
        return Ok(ScheduleResult {
            node: node.name().to_owned(),
            evaluated_nodes: 1,
            feasible_nodes: 1,
        });
    }

    let wanted = profile.feasible_nodes_to_find(all);
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted);
    let mut statuses = BTreeMap::new();
    let start = cursor.next_start_node % all;
    let mut evaluated = 0;
    for offset in 0..all {
        if feasible.len() >= wanted {
            break;
        }
        let node = &snapshot.nodes[(start + offset) % all];
        evaluated += 1;
        let status = run_filters_with_nominated_pods(profile, state, pod, node, snapshot);
        match status.code {
            Code::Success | Code::Skip => feasible.push(node),
            Code::Error => {
                return Err(ScheduleError::Internal(format!(
                    "running filter plugin {:?} on node {:?}: {}",
                    status.plugin,
                    node.name(),
                    status.reasons.join(", ")
                )));
            }
            Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                statuses.insert(node.name().to_owned(), status);
            }
        }
    }
    cursor.next_start_node = (start + evaluated) % all;
    if feasible.is_empty() {
        return Err(ScheduleError::Unschedulable(FitError {
            num_all_nodes: all,
            node_statuses: statuses,
            ..FitError::default()
        }));
    }
    let feasible_nodes = feasible.len();
    if feasible.len() == 1 {
        return Ok(ScheduleResult {
            node: feasible[0].name().to_owned(),
            evaluated_nodes: evaluated,
            feasible_nodes,
        });
    }
    let totals = score_nodes(profile, state, pod, snapshot, &feasible)?;
    let best = select_host(&totals, &mut cursor.rng);
    Ok(ScheduleResult {
        node: feasible[best].name().to_owned(),
        evaluated_nodes: evaluated,
        feasible_nodes,
    })
}

/// Each feasible node's weighted total score.
pub fn score_nodes(
    profile: &Profile,
    state: &mut CycleState,
    pod: &PodInfo,
    snapshot: &Snapshot,
    feasible: &[&NodeInfo],
) -> Result<Vec<i64>, ScheduleError> {
    let mut totals = vec![0_i64; feasible.len()];
    for plugin in profile.plugins.iter().filter(|plugin| plugin.scores()) {
        let status = plugin.pre_score(state, pod, snapshot, feasible);
        match status.code {
            Code::Success => {}
            Code::Skip => {
                state.skip_score.push(plugin.name());
                continue;
            }
            _ => {
                return Err(ScheduleError::Internal(format!(
                    "running PreScore plugin {:?}: {}",
                    plugin.name(),
                    status.reasons.join(", ")
                )));
            }
        }
    }
    let mut scores = vec![0_i64; feasible.len()];
    for plugin in profile.plugins.iter().filter(|plugin| plugin.scores()) {
        if state.skip_score.contains(&plugin.name()) {
            continue;
        }
        for (score, node) in scores.iter_mut().zip(feasible) {
            *score = plugin.score(state, pod, node);
        }
        plugin.normalize_scores(state, pod, &mut scores);
        let weight = plugin.weight();
        for (total, score) in totals.iter_mut().zip(&scores) {
            *total += score * weight;
        }
    }
    Ok(totals)
}

/// The index of the highest score, a uniformly random one among ties (reservoir sampling).
fn select_host(totals: &[i64], rng: &mut fastrand::Rng) -> usize {
    let mut best = 0;
    let mut ties = 1;
    for (index, total) in totals.iter().enumerate().skip(1) {
        if *total > totals[best] {
            best = index;
            ties = 1;
        } else if *total == totals[best] {
            ties += 1;
            if rng.usize(0..ties) == 0 {
                best = index;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_to_find_follows_upstream() {
        let profile = Profile::default_profile();
        assert_eq!(profile.feasible_nodes_to_find(50), 50);
        assert_eq!(profile.feasible_nodes_to_find(100), 100);
        assert_eq!(profile.feasible_nodes_to_find(1000), 420);
        assert_eq!(profile.feasible_nodes_to_find(5000), 500);
        let fixed = Profile { percentage_of_nodes_to_score: 100, ..Profile::default_profile() };
        assert_eq!(fixed.feasible_nodes_to_find(1000), 1000);
    }

    #[test]
    fn fit_error_message_is_upstreams() {
        let error = FitError {
            num_all_nodes: 3,
            node_statuses: BTreeMap::from([
                ("a".to_owned(), Status::unschedulable("Insufficient cpu")),
                ("b".to_owned(), Status::unschedulable("Insufficient cpu")),
                ("c".to_owned(), Status::unresolvable("node(s) had untolerated taint {k: v}")),
            ]),
            ..FitError::default()
        };
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu."
        );
        assert_eq!(error.nodes_preemption_may_help().len(), 2);
    }

    #[test]
    fn ties_are_broken_among_the_best() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            seen.insert(select_host(&[1, 5, 3, 5], &mut rng));
        }
        assert_eq!(seen, BTreeSet::from([1, 3]));
    }
}
