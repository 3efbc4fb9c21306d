//! Node health as this controller observed it: when, by its own clock, it last saw a node's
//! Ready heartbeat or its Lease move, and what to post once neither moved for the grace
//! period. The node's own timestamps are only ever compared with each other (a new heartbeat
//! is one that differs from the last one seen), never with the local clock, so clock skew
//! between kubelets and the control plane cannot make a node look dead or alive.

use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;
use tokio::time::Instant;

/// The condition types a silent kubelet leaves Unknown. NetworkUnavailable is not among
/// them: the network plugin or cloud provider owns it, not the kubelet.
const SILENCED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// A condition status: True, False or Unknown (anything else reads as Unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub(crate) fn parse(text: &str) -> Status {
        match text {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }
}

/// A node's Ready condition as posted: what changed in it is what tells the controller that
/// the kubelet is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadySignal {
    pub(crate) status: Status,
    pub(crate) heartbeat: Option<Timestamp>,
    pub(crate) transition: Option<Timestamp>,
}

impl ReadySignal {
    /// The Ready condition of a node status, if the node has one.
    pub(crate) fn of(status: Option<&NodeStatus>) -> Option<ReadySignal> {
        let condition = ready_condition(status)?;
        Some(ReadySignal::from_condition(condition))
    }

    pub(crate) fn from_condition(condition: &NodeCondition) -> ReadySignal {
        ReadySignal {
            status: Status::parse(&condition.status),
            heartbeat: condition.last_heartbeat_time.as_ref().map(|t| t.0),
            transition: condition.last_transition_time.as_ref().map(|t| t.0),
        }
    }
}

/// The Ready condition of a node status.
pub(crate) fn ready_condition(status: Option<&NodeStatus>) -> Option<&NodeCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// What the controller remembers of one node from pass to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    /// When (local clock) the controller last saw the Ready heartbeat or the Lease move.
    pub(crate) probed: Instant,
    /// When (local clock) it last saw the Ready condition transition.
    pub(crate) ready_changed: Instant,
    /// The Ready condition as last seen.
    pub(crate) ready: Option<ReadySignal>,
    /// The Lease's `renewTime` as last seen.
    pub(crate) lease_renewed: Option<Timestamp>,
}

/// What one pass reads about a node: its Ready condition and its Lease's `renewTime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signals {
    pub(crate) ready: Option<ReadySignal>,
    pub(crate) lease_renewed: Option<Timestamp>,
}

/// The node's health after a pass at `now` read `signals`, given what earlier passes saw.
///
/// The probe time moves to `now` when the node is new to the controller, when its Ready
/// condition appears or disappears, when the condition's heartbeat differs from the last one
/// seen, and when the Lease was renewed later than the last renewal seen. A node that was
/// never seen before counts as just probed: its grace period starts at first sight.
pub(crate) fn observe(previous: Option<&Health>, signals: &Signals, now: Instant) -> Health {
    let fresh = |lease_renewed: Option<Timestamp>| Health {
        probed: now,
        ready_changed: now,
        ready: signals.ready.clone(),
        lease_renewed,
    };
    let mut health = match (previous, &signals.ready) {
        (None, _) => fresh(None),
        (Some(previous), current) if previous.ready.is_none() != current.is_none() => {
            fresh(previous.lease_renewed)
        }
        (Some(previous), Some(current))
            if previous.ready.as_ref().is_some_and(|seen| seen.heartbeat != current.heartbeat) =>
        {
            let transitioned =
                previous.ready.as_ref().is_some_and(|seen| seen.transition != current.transition);
            Health {
                probed: now,
                ready_changed: if transitioned { now } else { previous.ready_changed },
                ready: Some(current.clone()),
                lease_renewed: previous.lease_renewed,
            }
        }
        // Nothing the kubelet posts moved: the node may be gone, so nothing is refreshed.
        (Some(previous), _) => previous.clone(),
    };
    let seen = previous.and_then(|p| p.lease_renewed);
    if let Some(renewed) = signals.lease_renewed
        && seen.is_none_or(|seen| seen < renewed)
    {
        health.lease_renewed = Some(renewed);
        health.probed = now;
    }
    health
}

/// Whether a node last probed as `health` says has gone silent at `now`: more than its grace
/// period passed since the last probe. A node that never posted a Ready condition gets the
/// (longer) startup grace period.
pub(crate) fn is_silent(health: &Health, now: Instant, grace: Duration, startup: Duration) -> bool {
    let grace = if health.ready.is_some() { grace } else { startup };
    now > health.probed + grace
}

/// The conditions to post for a silent node at `now`: Ready, MemoryPressure, DiskPressure
/// and PIDPressure become Unknown ("Kubelet stopped posting node status."), and those the
/// kubelet never posted are added as Unknown ("Kubelet never posted node status.", their
/// heartbeat the node's creation). `None` when the Ready condition would not change, as
/// upstream writes only then.
pub(crate) fn silenced_conditions(
    status: Option<&NodeStatus>,
    created: Option<&Time>,
    now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    let before = ready_condition(status).cloned();
    let mut conditions = status.and_then(|s| s.conditions.clone()).unwrap_or_default();
    for type_ in SILENCED {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(condition) if condition.status != "Unknown" => {
                condition.status = "Unknown".into();
                condition.reason = Some("NodeStatusUnknown".into());
                condition.message = Some("Kubelet stopped posting node status.".into());
                condition.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.cloned(),
                last_transition_time: Some(Time(now)),
            }),
        }
    }
    let after = conditions.iter().find(|c| c.type_ == "Ready");
    (before.as_ref() != after).then_some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn ready(status: Status, heartbeat: &str, transition: &str) -> Option<ReadySignal> {
        Some(ReadySignal {
            status,
            heartbeat: Some(at(heartbeat)),
            transition: Some(at(transition)),
        })
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:00:10Z";
    const T2: &str = "2026-01-01T00:00:20Z";

    /// One pass: seconds after the start, the Ready signal and the lease renewal it reads,
    /// and the probe and ready-change times (seconds after the start) expected after it.
    type Step<'a> = (u64, Option<ReadySignal>, Option<&'a str>, u64, u64);

    fn check(steps: &[Step<'_>]) {
        let start = Instant::now();
        let mut health: Option<Health> = None;
        for (index, (second, ready, lease, probed, changed)) in steps.iter().enumerate() {
            let signals = Signals { ready: ready.clone(), lease_renewed: lease.map(at) };
            let now = start + Duration::from_secs(*second);
            let next = observe(health.as_ref(), &signals, now);
            assert_eq!(
                (next.probed - start, next.ready_changed - start),
                (Duration::from_secs(*probed), Duration::from_secs(*changed)),
                "step {index}"
            );
            health = Some(next);
        }
    }

    #[test]
    fn heartbeats_and_renewals_are_probes_by_the_local_clock() {
        use Status::*;
        // First sight counts as a probe; an unchanged heartbeat is none.
        check(&[(0, ready(True, T0, T0), None, 0, 0), (5, ready(True, T0, T0), None, 0, 0)]);
        // A new heartbeat is a probe; a new transition also moves the ready change.
        check(&[
            (0, ready(True, T0, T0), None, 0, 0),
            (5, ready(True, T1, T0), None, 5, 0),
            (10, ready(False, T2, T2), None, 10, 10),
        ]);
        // A renewed lease is a probe even when the heartbeat stands still; the same renewal
        // seen again, or an older one, is not.
        check(&[
            (0, ready(True, T0, T0), Some(T0), 0, 0),
            (5, ready(True, T0, T0), Some(T1), 5, 0),
            (10, ready(True, T0, T0), Some(T1), 5, 0),
            (15, ready(True, T0, T0), Some(T0), 5, 0),
        ]);
        // Timestamps far in the node's past or future change nothing: only differences count.
        check(&[
            (0, ready(True, "2001-01-01T00:00:00Z", T0), None, 0, 0),
            (50, ready(True, "2001-01-01T00:00:01Z", T0), None, 50, 0),
        ]);
        // A Ready condition appearing or disappearing restarts both clocks.
        check(&[
            (0, None, None, 0, 0),
            (5, None, None, 0, 0),
            (9, ready(True, T0, T0), None, 9, 9),
        ]);
        check(&[(0, ready(True, T0, T0), None, 0, 0), (7, None, None, 7, 7)]);
    }

    #[test]
    fn silence_is_measured_against_the_grace_period() {
        let start = Instant::now();
        let health = |ready: Option<ReadySignal>| Health {
            probed: start,
            ready_changed: start,
            ready,
            lease_renewed: None,
        };
        let grace = Duration::from_secs(50);
        let startup = Duration::from_secs(60);
        let posted = health(ready(Status::True, T0, T0));
        let never = health(None);
        for (who, second, silent) in
            [(&posted, 50, false), (&posted, 51, true), (&never, 51, false), (&never, 61, true)]
        {
            let now = start + Duration::from_secs(second);
            assert_eq!(is_silent(who, now, grace, startup), silent, "{second}s, {who:?}");
        }
    }

    fn condition(type_: &str, status: &str) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            message: Some("posted".into()),
            last_heartbeat_time: Some(Time(at(T0))),
            last_transition_time: Some(Time(at(T0))),
        }
    }

    #[test]
    fn silent_nodes_become_unknown() {
        let now = at(T2);
        let created = Time(at(T0));
        let status = |conditions: Vec<NodeCondition>| NodeStatus {
            conditions: Some(conditions),
            ..NodeStatus::default()
        };
        let posted = status(vec![
            condition("MemoryPressure", "False"),
            condition("Ready", "True"),
            condition("NetworkUnavailable", "False"),
        ]);
        let after = silenced_conditions(Some(&posted), Some(&created), now).unwrap();
        let summary: Vec<(&str, &str, Option<&str>, Option<&str>)> = after
            .iter()
            .map(|c| {
                (c.type_.as_str(), c.status.as_str(), c.reason.as_deref(), c.message.as_deref())
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "MemoryPressure",
                    "Unknown",
                    Some("NodeStatusUnknown"),
                    Some("Kubelet stopped posting node status.")
                ),
                (
                    "Ready",
                    "Unknown",
                    Some("NodeStatusUnknown"),
                    Some("Kubelet stopped posting node status.")
                ),
                ("NetworkUnavailable", "False", Some("KubeletReady"), Some("posted")),
                (
                    "DiskPressure",
                    "Unknown",
                    Some("NodeStatusNeverUpdated"),
                    Some("Kubelet never posted node status.")
                ),
                (
                    "PIDPressure",
                    "Unknown",
                    Some("NodeStatusNeverUpdated"),
                    Some("Kubelet never posted node status.")
                ),
            ]
        );
        // The heartbeat stays the kubelet's; the transition is now.
        assert_eq!(after[1].last_heartbeat_time, Some(Time(at(T0))));
        assert_eq!(after[1].last_transition_time, Some(Time(now)));
        assert_eq!(after[3].last_heartbeat_time, Some(created.clone()));
        // Already Unknown: nothing to write, even if other conditions would change.
        let unknown =
            status(vec![condition("Ready", "Unknown"), condition("DiskPressure", "True")]);
        assert_eq!(silenced_conditions(Some(&unknown), Some(&created), now), None);
        // Never posted: every condition is added.
        let never = silenced_conditions(None, Some(&created), now).unwrap();
        assert_eq!(never.len(), 4);
        assert_eq!(ReadySignal::of(Some(&status(never))).unwrap().status, Status::Unknown);
    }
}
