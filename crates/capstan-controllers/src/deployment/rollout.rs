//! The arithmetic of a Deployment's rollout, pure: upstream's `maxSurge`/`maxUnavailable`
//! resolution, how far the new ReplicaSet may grow, how far the old ones may shrink (unhealthy
//! replicas first, oldest sets first), proportional scaling of a resized Deployment across its
//! active sets, and the pod-template hash that names a template's ReplicaSet.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What a rollout step needs to know of one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Set {
    pub(crate) name: String,
    /// `spec.replicas`.
    pub(crate) replicas: i32,
    /// `status.availableReplicas`.
    pub(crate) available: i32,
}

/// `maxSurge` and `maxUnavailable` as pod counts for `desired` replicas: percentages round up
/// for the surge and down for unavailability; both zero would deadlock, so unavailability
/// becomes 1 then.
pub(crate) fn fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let default = IntOrString::String("25%".into());
    let surge = scaled(surge.unwrap_or(&default), desired, true);
    let unavailable = scaled(unavailable.unwrap_or(&default), desired, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(desired)) }
}

fn scaled(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(text) => {
            let percent: i64 = text.trim_end_matches('%').parse().unwrap_or(0);
            let product = percent * i64::from(total);
            let count = if round_up { (product + 99) / 100 } else { product / 100 };
            i32::try_from(count.max(0)).unwrap_or(i32::MAX)
        }
    }
}

/// The new ReplicaSet's replicas for this step of a rolling update.
pub(crate) fn new_set_target(
    desired: i32,
    surge: i32,
    all_replicas: i32,
    new_replicas: i32,
) -> i32 {
    if new_replicas >= desired {
        return desired;
    }
    let room = desired + surge - all_replicas;
    if room <= 0 { new_replicas } else { (new_replicas + room).min(desired) }
}

/// How the old ReplicaSets (oldest first) scale down in this step: `(name, new replicas)` for
/// each one that changes.
pub(crate) fn old_sets_scale_down(
    desired: i32,
    unavailable: i32,
    new_set: &Set,
    old: &[Set],
) -> Vec<(String, i32)> {
    let all_replicas: i32 = old.iter().map(|s| s.replicas).sum::<i32>() + new_set.replicas;
    let min_available = desired - unavailable;
    let new_unavailable = new_set.replicas - new_set.available;
    let max_scaled_down = all_replicas - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut targets: Vec<i32> = old.iter().map(|s| s.replicas).collect();
    // Unhealthy replicas first: removing them costs no availability.
    let mut cleaned = 0;
    for (set, target) in old.iter().zip(targets.iter_mut()) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (set.replicas - set.available).max(0);
        let down = unhealthy.min(max_scaled_down - cleaned);
        *target -= down;
        cleaned += down;
    }
    // Then healthy ones, as long as the availability floor holds.
    let available: i32 = old.iter().map(|s| s.available).sum::<i32>() + new_set.available;
    let mut budget = available - min_available;
    for target in targets.iter_mut() {
        if budget <= 0 {
            break;
        }
        let down = (*target).min(budget);
        *target -= down;
        budget -= down;
    }
    old.iter()
        .zip(targets)
        .filter(|(set, target)| set.replicas != *target)
        .map(|(set, t)| (set.name.clone(), t))
        .collect()
}

/// Proportional scaling: spreads a change of the Deployment's size (`desired` plus surge, the
/// most pods allowed) over its active sets in proportion to their sizes, the rounding
/// leftover going to the largest (or, scaling down, first) set — upstream's approach while a
/// rollout is under way.
pub(crate) fn proportional(sets: &[Set], allowed_total: i32) -> Vec<i32> {
    let current: i32 = sets.iter().map(|s| s.replicas).sum();
    if sets.is_empty() || current == allowed_total {
        return sets.iter().map(|s| s.replicas).collect();
    }
    if current == 0 {
        let mut targets = vec![0; sets.len()];
        targets[0] = allowed_total;
        return targets;
    }
    let delta = allowed_total - current;
    let mut targets: Vec<i32> = sets
        .iter()
        .map(|s| {
            let share = i64::from(s.replicas) * i64::from(delta) / i64::from(current);
            (s.replicas + i32::try_from(share).unwrap_or(0)).max(0)
        })
        .collect();
    let leftover = allowed_total - targets.iter().sum::<i32>();
    if let Some(largest) = (0..sets.len()).max_by_key(|&i| (sets[i].replicas, std::cmp::Reverse(i)))
    {
        targets[largest] = (targets[largest] + leftover).max(0);
    }
    targets
}

/// The characters upstream's `SafeEncodeString` uses: no vowels (no words), no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template (its canonical JSON) and collision count: FNV-1a,
/// spelled in the safe alphabet like upstream's (the value differs from upstream's, which
/// hashes Go's printing of the struct; only stability matters).
pub(crate) fn template_hash(template_json: &str, collision_count: i32) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(template_json.as_bytes());
    if collision_count > 0 {
        feed(&collision_count.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|digit| SAFE_ALPHABET[usize::from(digit) % SAFE_ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, replicas: i32, available: i32) -> Set {
        Set { name: name.into(), replicas, available }
    }

    #[test]
    fn fenceposts_round_like_upstream() {
        let pct = |p: &str| IntOrString::String(p.into());
        let check = |s: Option<&IntOrString>, u: Option<&IntOrString>, desired, expected| {
            assert_eq!(fenceposts(s, u, desired), expected, "{s:?} {u:?} of {desired}");
        };
        check(None, None, 10, (3, 2));
        check(None, None, 1, (1, 0));
        check(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 3, (0, 1));
        check(Some(&pct("50%")), Some(&pct("50%")), 3, (2, 1));
        check(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(5)), 3, (2, 3));
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        assert_eq!(new_set_target(3, 1, 3, 0), 1);
        assert_eq!(new_set_target(3, 1, 4, 1), 1);
        assert_eq!(new_set_target(3, 1, 3, 1), 2);
        assert_eq!(new_set_target(3, 3, 3, 0), 3);
        assert_eq!(new_set_target(3, 1, 5, 5), 3);
    }

    #[test]
    fn old_sets_shrink_keeping_availability() {
        // 3 desired, surge 1, unavailable 0: new has 1 (not yet available), old 3 available.
        assert_eq!(old_sets_scale_down(3, 0, &set("new", 1, 0), &[set("old", 3, 3)]), vec![]);
        // The new pod became available: one old one may go.
        assert_eq!(
            old_sets_scale_down(3, 0, &set("new", 1, 1), &[set("old", 3, 3)]),
            vec![("old".into(), 2)]
        );
        // Unhealthy old replicas go first, even beyond the availability budget.
        assert_eq!(
            old_sets_scale_down(3, 1, &set("new", 1, 0), &[set("older", 2, 0), set("old", 2, 2)]),
            vec![("older".into(), 0)]
        );
    }

    #[test]
    fn proportional_scaling_keeps_shares() {
        assert_eq!(proportional(&[set("a", 6, 6), set("b", 4, 4)], 20), vec![12, 8]);
        assert_eq!(proportional(&[set("a", 6, 6), set("b", 4, 4)], 5), vec![3, 2]);
        assert_eq!(proportional(&[set("a", 2, 2), set("b", 1, 1)], 4), vec![3, 1]);
        assert_eq!(proportional(&[set("a", 0, 0)], 3), vec![3]);
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let a = template_hash(r#"{"spec":{}}"#, 0);
        assert_eq!(a, template_hash(r#"{"spec":{}}"#, 0));
        assert_ne!(a, template_hash(r#"{"spec":{}}"#, 1));
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
    }
}
