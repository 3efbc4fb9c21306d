//! Zones and disruption: how fast unhealthy nodes get their NoExecute taints, zone by zone.
//! A zone with few unhealthy nodes is tainted at the normal rate; one where most nodes are
//! unhealthy at a reduced rate in large clusters, not at all in small ones (the trouble is
//! more likely the zone's network than its nodes); and when every node of every zone is
//! unhealthy the control plane is the likelier culprit, so nothing is tainted at all and
//! the NoExecute taints already placed are lifted.

use std::collections::BTreeMap;

/// A label that keeps a node out of the zone counts.
pub(crate) const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// How fast nodes are tainted: kube-controller-manager's `--node-eviction-rate`,
/// `--secondary-node-eviction-rate`, `--large-cluster-size-threshold` and
/// `--unhealthy-zone-threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    /// Nodes per second per zone, normally.
    pub(crate) normal: f64,
    /// Nodes per second in a partially disrupted zone of a large cluster.
    pub(crate) secondary: f64,
    /// A zone with more nodes than this counts as large.
    pub(crate) large_zone: usize,
    /// The share of unhealthy nodes from which a zone is partially disrupted.
    pub(crate) unhealthy_share: f64,
}

/// Upstream's defaults.
pub(crate) const UPSTREAM_RATES: Rates =
    Rates { normal: 0.1, secondary: 0.01, large_zone: 50, unhealthy_share: 0.55 };

/// The zone a node is in: region and zone from the topology labels (or their deprecated
/// `failure-domain.beta` forms), joined as upstream does; `""` when it has neither.
pub(crate) fn zone_key(labels: Option<&BTreeMap<String, String>>) -> String {
    let label = |stable: &str, beta: &str| -> String {
        labels.and_then(|l| l.get(stable).or_else(|| l.get(beta))).cloned().unwrap_or_default()
    };
    let zone = label("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    let region = label("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    // The NUL cannot occur in a label value, so no region and zone pair can collide.
    format!("{region}:\u{0}:{zone}")
}

/// The state of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZoneState {
    /// Seen for the first time in this pass; no state computed yet.
    Initial,
    /// Fewer unhealthy nodes than the threshold (or no more than two).
    Normal,
    /// At least the threshold share of its nodes, and more than two, are unhealthy.
    PartialDisruption,
    /// None of its nodes is healthy.
    FullDisruption,
}

/// The state of a zone whose nodes' health is `healthy` (one entry per node), and how many
/// of them are unhealthy.
pub(crate) fn zone_state(healthy: &[bool], rates: &Rates) -> (usize, ZoneState) {
    let unhealthy = healthy.iter().filter(|h| !**h).count();
    let ready = healthy.len() - unhealthy;
    let state = if ready == 0 && unhealthy > 0 {
        ZoneState::FullDisruption
    } else if unhealthy > 2 && unhealthy as f64 / healthy.len() as f64 >= rates.unhealthy_share {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (unhealthy, state)
}

/// The tainting rate of a zone of `size` nodes in `state`.
pub(crate) fn rate(state: ZoneState, size: usize, rates: &Rates) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > rates.large_zone => rates.secondary,
        ZoneState::PartialDisruption => 0.0,
        ZoneState::Initial | ZoneState::Normal | ZoneState::FullDisruption => rates.normal,
    }
}

/// What a pass's zone states ask of the controller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Disruption {
    /// Nothing changes.
    Steady,
    /// Every zone is fully disrupted now and was not before: stop tainting everywhere
    /// (every zone's rate becomes 0) and lift the NoExecute taints of every node.
    Entered,
    /// Some node is healthy again after a full disruption: every node counts as just probed
    /// (their kubelets had no way to reach the control plane), and zones get these rates.
    Exited(Vec<(String, f64)>),
    /// These zones changed state and get these rates.
    Changed(Vec<(String, f64)>),
}

/// The zone states the controller keeps from pass to pass.
#[derive(Debug, Default)]
pub(crate) struct Zones {
    states: BTreeMap<String, ZoneState>,
}

impl Zones {
    /// Moves to the states of a pass that saw, per zone, which nodes are healthy. Zones not
    /// seen are forgotten.
    pub(crate) fn update(
        &mut self,
        observed: &BTreeMap<String, Vec<bool>>,
        rates: &Rates,
    ) -> Disruption {
        let mut next: BTreeMap<&str, ZoneState> = BTreeMap::new();
        for (zone, healthy) in observed {
            let (_, state) = zone_state(healthy, rates);
            next.insert(zone, state);
            // A zone seen for the first time starts in the initial state.
            self.states.entry(zone.clone()).or_insert(ZoneState::Initial);
        }
        self.states.retain(|zone, _| observed.contains_key(zone));
        let all_are_down = next.values().all(|s| *s == ZoneState::FullDisruption);
        let all_were_down = self.states.values().all(|s| *s == ZoneState::FullDisruption);
        if all_are_down && all_were_down {
            // Still fully disrupted (or no zones at all): nothing to change.
            return Disruption::Steady;
        }
        let size = |zone: &str| observed.get(zone).map_or(0, Vec::len);
        if all_are_down {
            for state in self.states.values_mut() {
                *state = ZoneState::FullDisruption;
            }
            return Disruption::Entered;
        }
        if all_were_down {
            let mut limits = Vec::new();
            for (zone, state) in &mut self.states {
                *state = next.get(zone.as_str()).copied().unwrap_or(ZoneState::Initial);
                limits.push((zone.clone(), rate(*state, size(zone), rates)));
            }
            return Disruption::Exited(limits);
        }
        let mut changes = Vec::new();
        for (zone, state) in &mut self.states {
            let Some(new) = next.get(zone.as_str()).copied() else { continue };
            if *state != new {
                *state = new;
                changes.push((zone.clone(), rate(new, size(zone), rates)));
            }
        }
        if changes.is_empty() { Disruption::Steady } else { Disruption::Changed(changes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn zone_keys_join_region_and_zone() {
        for (pairs, expected) in [
            (&[][..], ""),
            (&[("topology.kubernetes.io/zone", "a")][..], ":\u{0}:a"),
            (
                &[("topology.kubernetes.io/zone", "a"), ("topology.kubernetes.io/region", "r")][..],
                "r:\u{0}:a",
            ),
            (
                &[
                    ("failure-domain.beta.kubernetes.io/zone", "old"),
                    ("failure-domain.beta.kubernetes.io/region", "r"),
                ][..],
                "r:\u{0}:old",
            ),
            (
                &[
                    ("topology.kubernetes.io/zone", "new"),
                    ("failure-domain.beta.kubernetes.io/zone", "old"),
                ][..],
                ":\u{0}:new",
            ),
        ] {
            assert_eq!(zone_key(Some(&labels(pairs))), expected, "{pairs:?}");
        }
        assert_eq!(zone_key(None), "");
    }

    #[test]
    fn zone_states_and_rates() {
        let rates = UPSTREAM_RATES;
        let zone = |healthy: usize, unhealthy: usize| {
            let mut nodes = vec![true; healthy];
            nodes.extend(vec![false; unhealthy]);
            nodes
        };
        for (healthy, unhealthy, state, expected_rate) in [
            (3, 0, ZoneState::Normal, 0.1),
            (1, 2, ZoneState::Normal, 0.1),
            (0, 1, ZoneState::FullDisruption, 0.1),
            (2, 3, ZoneState::PartialDisruption, 0.0),
            (3, 3, ZoneState::Normal, 0.1),
            (45, 55, ZoneState::PartialDisruption, 0.01),
            (46, 54, ZoneState::Normal, 0.1),
            // 51 nodes make a large zone; 50 do not.
            (22, 28, ZoneState::PartialDisruption, 0.0),
            (22, 29, ZoneState::PartialDisruption, 0.01),
        ] {
            let nodes = zone(healthy, unhealthy);
            assert_eq!(zone_state(&nodes, &rates), (unhealthy, state), "{healthy}+{unhealthy}");
            assert_eq!(rate(state, nodes.len(), &rates), expected_rate, "{healthy}+{unhealthy}");
        }
    }

    /// The health of each zone's nodes in one pass.
    type Pass<'a> = &'a [(&'a str, &'a [bool])];

    /// Passes, each with the disruption it should report.
    fn check(passes: &[(Pass<'_>, Disruption)]) {
        let mut zones = Zones::default();
        for (index, (observed, expected)) in passes.iter().enumerate() {
            let observed: BTreeMap<String, Vec<bool>> =
                observed.iter().map(|(zone, nodes)| (zone.to_string(), nodes.to_vec())).collect();
            assert_eq!(zones.update(&observed, &UPSTREAM_RATES), *expected, "pass {index}");
        }
    }

    #[test]
    fn full_disruption_stops_tainting_until_a_node_recovers() {
        use Disruption::*;
        let rates = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
            pairs.iter().map(|(z, r)| (z.to_string(), *r)).collect()
        };
        check(&[
            (&[("a", &[true, true]), ("b", &[true])], Changed(rates(&[("a", 0.1), ("b", 0.1)]))),
            (&[("a", &[true, false]), ("b", &[true])], Steady),
            // One zone down entirely, another up: that zone keeps tainting at the normal rate.
            (&[("a", &[false, false]), ("b", &[true])], Changed(rates(&[("a", 0.1)]))),
            // Every zone down: master disruption mode.
            (&[("a", &[false, false]), ("b", &[false])], Entered),
            (&[("a", &[false, false]), ("b", &[false])], Steady),
            (&[("a", &[false, true]), ("b", &[false])], Exited(rates(&[("a", 0.1), ("b", 0.1)]))),
        ]);
        // A cluster whose only zone starts with no healthy node enters at once; a zone that
        // disappears is forgotten.
        check(&[
            (&[("", &[false])], Entered),
            (&[("", &[true])], Exited(rates(&[("", 0.1)]))),
            (&[("", &[true]), ("new", &[true])], Changed(rates(&[("new", 0.1)]))),
            (&[("new", &[false])], Entered),
        ]);
        // Many unhealthy nodes in a small zone stop its tainting.
        check(&[
            (&[("a", &[true; 5])], Changed(rates(&[("a", 0.1)]))),
            (&[("a", &[true, true, false, false, false])], Changed(rates(&[("a", 0.0)]))),
        ]);
    }
}
