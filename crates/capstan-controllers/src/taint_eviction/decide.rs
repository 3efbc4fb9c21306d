//! Which pods a node's NoExecute taints evict, and when: a pod that does not tolerate every
//! taint goes at once; one that tolerates them all for a while (`tolerationSeconds`) goes
//! when the shortest of those whiles has passed since the controller first saw it under
//! the taints; one that tolerates them for ever stays. Pure: the time is given.

use k8s_openapi::api::core::v1::{Taint, Toleration};
use std::time::Duration;
use tokio::time::Instant;

/// Whether `toleration` tolerates `taint`, as upstream's `ToleratesTaint`: an empty effect
/// matches every effect, an empty key (with `Exists`) every key; `Exists` ignores the value,
/// `Equal` (or no operator) wants the same value.
pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// How long the pod may stay under `taints`: `Some(Duration::ZERO)` when some taint is not
/// tolerated, `None` when every taint is tolerated for ever, else the shortest
/// `tolerationSeconds` among the first toleration matching each taint (zero or negative
/// seconds mean no time at all).
pub(crate) fn allowed_time(taints: &[Taint], tolerations: &[Toleration]) -> Option<Duration> {
    let mut shortest: Option<Duration> = None;
    for taint in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(Duration::ZERO);
        };
        if let Some(seconds) = toleration.toleration_seconds {
            let allowed = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
            shortest = Some(shortest.map_or(allowed, |s| s.min(allowed)));
        }
    }
    shortest
}

/// What to do with one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No NoExecute taint concerns it, or it tolerates them for ever: forget any deadline.
    Stay,
    /// Delete it at this moment; `since` is when the controller first saw it under the
    /// taints, to remember until then.
    EvictAt { deadline: Instant, since: Instant },
    /// Delete it now.
    Evict,
}

/// The decision for a pod with `tolerations` on a node with these NoExecute `taints` at
/// `now`, given since when (if at all) the controller has seen it under taints it tolerates
/// only for a while.
pub(crate) fn decide(
    taints: &[Taint],
    tolerations: &[Toleration],
    since: Option<Instant>,
    now: Instant,
) -> Decision {
    if taints.is_empty() {
        return Decision::Stay;
    }
    match allowed_time(taints, tolerations) {
        None => Decision::Stay,
        Some(Duration::ZERO) => Decision::Evict,
        Some(allowed) => {
            let since = since.unwrap_or(now);
            let deadline = since + allowed;
            if deadline <= now { Decision::Evict } else { Decision::EvictAt { deadline, since } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn taints(value: Value) -> Vec<Taint> {
        serde_json::from_value(value).unwrap()
    }

    fn tolerations(value: Value) -> Vec<Toleration> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn toleration_matching() {
        let taint = &taints(json!([{"key": "k", "value": "v", "effect": "NoExecute"}]))[0];
        for (toleration, expected) in [
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"key": "k", "value": "v"}), true),
            (json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute"}), true),
            (json!({"key": "k", "operator": "Equal", "value": "w"}), false),
            (json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}), false),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"key": "k", "operator": "Lt", "value": "v"}), false),
        ] {
            let toleration: Toleration = serde_json::from_value(toleration.clone()).unwrap();
            assert_eq!(tolerates(&toleration, taint), expected, "{toleration:?}");
        }
    }

    /// The decision at 100 s after `start` for a pod seen under the taints since `since`
    /// seconds after it.
    fn check(
        start: Instant,
        taint_list: &Value,
        toleration_list: Value,
        since: Option<u64>,
        expected: Decision,
    ) {
        let now = start + Duration::from_secs(100);
        let since = since.map(|s| start + Duration::from_secs(s));
        let decision =
            decide(&taints(taint_list.clone()), &tolerations(toleration_list), since, now);
        assert_eq!(decision, expected, "{taint_list} since {since:?}");
    }

    #[test]
    fn evictions_and_their_deadlines() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let unreachable = json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
        let both = json!([
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "dedicated", "value": "db", "effect": "NoExecute"},
        ]);
        let for_5s = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]);
        let for_ever = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]);
        let db = json!({"key": "dedicated", "operator": "Equal", "value": "db", "tolerationSeconds": 30});
        use Decision::*;
        check(start, &json!([]), json!([]), Some(10), Stay);
        check(start, &unreachable, json!([]), None, Evict);
        check(start, &unreachable, for_ever.clone(), None, Stay);
        check(
            start,
            &unreachable,
            for_5s.clone(),
            None,
            EvictAt { deadline: at(105), since: at(100) },
        );
        check(
            start,
            &unreachable,
            for_5s.clone(),
            Some(97),
            EvictAt { deadline: at(102), since: at(97) },
        );
        check(start, &unreachable, for_5s.clone(), Some(95), Evict);
        // Every taint must be tolerated; the shortest toleration counts.
        check(start, &both, for_5s.clone(), None, Evict);
        let mut two = for_ever.as_array().unwrap().clone();
        two.push(db.clone());
        check(
            start,
            &both,
            Value::Array(two),
            Some(80),
            EvictAt { deadline: at(110), since: at(80) },
        );
        let mut two = for_5s.as_array().unwrap().clone();
        two.push(db);
        check(
            start,
            &both,
            Value::Array(two),
            Some(97),
            EvictAt { deadline: at(102), since: at(97) },
        );
        // Zero or negative seconds: no time at all.
        let zero = json!([{"operator": "Exists", "tolerationSeconds": -3}]);
        check(start, &unreachable, zero, None, Evict);
    }
}
