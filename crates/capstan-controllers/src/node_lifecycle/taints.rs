//! The taints this controller owns, as pure list edits: the NoSchedule taints that mirror a
//! node's conditions (upstream's TaintNodesByCondition), and the NoExecute `not-ready` and
//! `unreachable` taints that evict pods. Taints are the same when key and effect are.

use super::health::Status;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub(crate) const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub(crate) const NO_EXECUTE: &str = "NoExecute";
const NO_SCHEDULE: &str = "NoSchedule";

/// Which condition status puts which taint on the node.
const CONDITION_TAINTS: &[(&str, Status, &str)] = &[
    ("Ready", Status::False, NOT_READY),
    ("Ready", Status::Unknown, UNREACHABLE),
    ("MemoryPressure", Status::True, "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", Status::True, "node.kubernetes.io/disk-pressure"),
    ("NetworkUnavailable", Status::True, "node.kubernetes.io/network-unavailable"),
    ("PIDPressure", Status::True, "node.kubernetes.io/pid-pressure"),
];

/// A taint with no value, added at `now`.
pub(crate) fn taint(key: &str, effect: &str, now: &Time) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        value: None,
        time_added: Some(now.clone()),
    }
}

/// Whether `taints` hold a taint of this key and effect.
pub(crate) fn has(taints: &[Taint], key: &str, effect: &str) -> bool {
    taints.iter().any(|t| t.key == key && t.effect == effect)
}

fn taints_of(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default()
}

/// The NoExecute taint for a Ready condition in `status`, and the one it replaces: the two
/// are exclusive, as the condition is either False or Unknown. `None` for a Ready node.
pub(crate) fn no_execute_for(status: Status) -> Option<(&'static str, &'static str)> {
    match status {
        Status::False => Some((NOT_READY, UNREACHABLE)),
        Status::Unknown => Some((UNREACHABLE, NOT_READY)),
        Status::True => None,
    }
}

/// The node's taints with `add` added (at `now`) and `remove` removed, each a (key, effect)
/// pair; `None` when the node already has exactly that. A taint to add that is already there
/// keeps its value and time.
pub(crate) fn swapped(
    node: &Node,
    add: &[(&str, &str)],
    remove: &[(&str, &str)],
    now: &Time,
) -> Option<Vec<Taint>> {
    let current = taints_of(node);
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !remove.iter().any(|(key, effect)| t.key == *key && t.effect == *effect))
        .cloned()
        .collect();
    for (key, effect) in add {
        if !has(&taints, key, effect) {
            taints.push(taint(key, effect, now));
        }
    }
    (taints.as_slice() != current).then_some(taints)
}

/// The node's taints with the controller's NoSchedule taints matching its conditions (and
/// `spec.unschedulable`), others untouched; `None` when nothing changes.
pub(crate) fn with_condition_taints(node: &Node, now: &Time) -> Option<Vec<Taint>> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let mut wanted: Vec<&str> = conditions
        .iter()
        .filter_map(|condition| {
            let status = Status::parse(&condition.status);
            CONDITION_TAINTS
                .iter()
                .find(|(type_, on, _)| *type_ == condition.type_ && *on == status)
                .map(|(_, _, key)| *key)
        })
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        wanted.push(UNSCHEDULABLE);
    }
    let owned = |taint: &Taint| {
        taint.effect == NO_SCHEDULE
            && (taint.key == UNSCHEDULABLE
                || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == taint.key))
    };
    let remove: Vec<(&str, &str)> = taints_of(node)
        .iter()
        .filter(|t| owned(t) && !wanted.contains(&t.key.as_str()))
        .map(|t| (t.key.as_str(), NO_SCHEDULE))
        .collect();
    let add: Vec<(&str, &str)> = wanted.iter().map(|key| (*key, NO_SCHEDULE)).collect();
    swapped(node, &add, &remove, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(conditions: Value, unschedulable: bool, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": unschedulable, "taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time("2026-01-01T00:00:00Z".parse().unwrap())
    }

    /// The taints after the edit as `key:effect` strings, or `None` for no change.
    fn render(taints: Option<Vec<Taint>>) -> Option<Vec<String>> {
        taints.map(|list| list.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect())
    }

    fn check(node: Node, expected: Option<&[&str]>) {
        let expected = expected.map(|list| list.iter().map(|s| s.to_string()).collect());
        assert_eq!(render(with_condition_taints(&node, &now())), expected, "{node:?}");
    }

    #[test]
    fn no_schedule_taints_follow_conditions() {
        let cond = |type_: &str, status: &str| json!({"type": type_, "status": status});
        let healthy = json!([cond("Ready", "True"), cond("MemoryPressure", "False")]);
        check(node(healthy.clone(), false, Value::Null), None);
        check(
            node(
                json!([cond("Ready", "Unknown"), cond("DiskPressure", "True")]),
                false,
                Value::Null,
            ),
            Some(&[
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/disk-pressure:NoSchedule",
            ]),
        );
        check(
            node(
                json!([cond("Ready", "False")]),
                true,
                json!([{"key": "team", "effect": "NoSchedule"}]),
            ),
            Some(&[
                "team:NoSchedule",
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
            ]),
        );
        // Healthy again: the controller's taints go, others (and NoExecute ones) stay.
        let tainted = json!([
            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "team", "effect": "NoSchedule"},
        ]);
        check(
            node(healthy, false, tainted),
            Some(&["node.kubernetes.io/not-ready:NoExecute", "team:NoSchedule"]),
        );
        // Already right: no write.
        check(
            node(
                json!([cond("Ready", "False")]),
                false,
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": "2025-01-01T00:00:00Z"}]),
            ),
            None,
        );
    }

    #[test]
    fn no_execute_taints_swap() {
        let unreachable = json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"}]);
        for (taints, status, expected) in [
            (Value::Null, Status::Unknown, Some(vec![format!("{UNREACHABLE}:NoExecute")])),
            (unreachable.clone(), Status::Unknown, None),
            (unreachable.clone(), Status::False, Some(vec![format!("{NOT_READY}:NoExecute")])),
        ] {
            let node = node(Value::Null, false, taints);
            let (add, remove) = no_execute_for(status).unwrap();
            let result = swapped(&node, &[(add, NO_EXECUTE)], &[(remove, NO_EXECUTE)], &now());
            assert_eq!(render(result.clone()), expected, "{status:?}");
            if let Some(list) = result {
                assert_eq!(list[0].time_added, Some(now()), "a new taint is dated now");
            }
        }
        assert_eq!(no_execute_for(Status::True), None);
        // Lifting both taints from a node that has neither changes nothing.
        let clean = node(Value::Null, false, Value::Null);
        let lift = [(UNREACHABLE, NO_EXECUTE), (NOT_READY, NO_EXECUTE)];
        assert_eq!(swapped(&clean, &[], &lift, &now()), None);
        let tainted = node(Value::Null, false, unreachable);
        assert_eq!(render(swapped(&tainted, &[], &lift, &now())), Some(vec![]));
    }
}
