//! Taints and tolerations: whether a toleration tolerates a taint (upstream's
//! `Toleration.ToleratesTaint`), shared by TaintToleration and PodTopologySpread.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether `toleration` tolerates `taint`: same effect (or any), same key (or any key with
/// `Exists` and no key), and the value matches by the operator (`Equal`, the default, or
/// `Exists`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    if key.is_empty() && operator != "Exists" {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|toleration| tolerates(toleration, taint))
}

/// The first taint whose effect is in `effects` that no toleration tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|taint| effects.contains(&taint.effect.as_str()))
        .find(|taint| !tolerated(tolerations, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(toleration: serde_json::Value, taint: serde_json::Value, expected: bool) {
        let toleration: Toleration = serde_json::from_value(toleration).unwrap();
        let taint: Taint = serde_json::from_value(taint).unwrap();
        assert_eq!(tolerates(&toleration, &taint), expected, "{toleration:?} vs {taint:?}");
    }

    #[test]
    fn toleration_rules() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        check(json!({"key": "k", "value": "v", "effect": "NoSchedule"}), taint.clone(), true);
        check(json!({"key": "k", "value": "v"}), taint.clone(), true);
        check(json!({"key": "k", "operator": "Exists"}), taint.clone(), true);
        check(json!({"operator": "Exists"}), taint.clone(), true);
        check(json!({"key": "k", "value": "w"}), taint.clone(), false);
        check(json!({"key": "k", "value": "v", "effect": "NoExecute"}), taint.clone(), false);
        check(json!({"key": "other", "operator": "Exists"}), taint.clone(), false);
        check(json!({"value": "v"}), taint, false);
    }
}
