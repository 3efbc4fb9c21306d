//! [`ProxyState`]s rendered as `nft -f` scripts: a whole table, or the difference between the
//! state last applied and the desired one.
//!
//! nft applies one script as one transaction: all of it or none, and packets see either the
//! old or the new ruleset. A full script re-creates each table (`add table`, `delete table`,
//! `add table`, …), which also works when the table is missing. Established flows survive
//! either way: NAT decisions live in conntrack, not in the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::state::{IpFamily, MARK_MASQ_CHAIN, ProxyState, REJECT_CHAIN, TableState, VerdictMap};

/// The packet mark bit that asks `postrouting` to masquerade (upstream's bit 14).
const MASQ_MARK: &str = "0x4000";

/// Chains that run before DNAT in the filter hooks, so they see the service address.
const FILTER_PRIORITY: &str = "-110";

/// NAT priorities, as numbers: older nft (1.0.6) accepts the names `dstnat` and `srcnat`
/// only in the hooks they were named for, not `dstnat` in `output`.
const DSTNAT_PRIORITY: &str = "-100";
const SRCNAT_PRIORITY: &str = "100";

/// A chain of one family's table.
pub type ChainRef = (IpFamily, String);

/// Appends one line of a script.
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        // Writing to a String cannot fail.
        let _ = writeln!($out, $($arg)*);
    }};
}

/// The script that replaces every table of `state` (and only those) with its content.
pub fn render_full(table: &str, state: &ProxyState) -> String {
    let mut out = String::new();
    for (family, content) in &state.tables {
        render_table(&mut out, table, *family, content);
    }
    out
}

/// The script deleting `table` in both families; it succeeds whether or not they exist.
pub fn render_delete(table: &str) -> String {
    let mut out = String::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let f = family.nft();
        line!(out, "add table {f} {table}");
        line!(out, "delete table {f} {table}");
    }
    out
}

/// Re-creates one family's table: its fixed skeleton, then the state's sets, chains, rules
/// and map elements (chains before rules, since rules refer to chains by name).
fn render_table(out: &mut String, table: &str, family: IpFamily, content: &TableState) {
    let f = family.nft();
    let t = format!("{f} {table}");
    line!(out, "add table {t}");
    line!(out, "delete table {t}");
    line!(out, "add table {t} {{ comment \"service proxy rules owned by capstan\" ; }}");
    for (chain, hook, kind, priority) in [
        ("filter-input", "input", "filter", FILTER_PRIORITY),
        ("filter-forward", "forward", "filter", FILTER_PRIORITY),
        ("filter-output", "output", "filter", FILTER_PRIORITY),
        ("nat-prerouting", "prerouting", "nat", DSTNAT_PRIORITY),
        ("nat-output", "output", "nat", DSTNAT_PRIORITY),
        ("nat-postrouting", "postrouting", "nat", SRCNAT_PRIORITY),
    ] {
        line!(out, "add chain {t} {chain} {{ type {kind} hook {hook} priority {priority} ; }}");
    }
    for chain in ["endpoints-check", "services", "masquerading", MARK_MASQ_CHAIN, REJECT_CHAIN] {
        line!(out, "add chain {t} {chain}");
    }
    for map in VerdictMap::ALL {
        line!(out, "add map {t} {} {{ type {} ; }}", map.name(), map.key_type(family));
    }
    let lookup = format!("{f} daddr . meta l4proto . th dport");
    let nodeport = format!("fib daddr type local {f} daddr != {}", family.loopback());
    for hook_chain in ["filter-input", "filter-forward", "filter-output"] {
        line!(out, "add rule {t} {hook_chain} ct state new jump endpoints-check");
    }
    line!(
        out,
        "add rule {t} endpoints-check {lookup} vmap @{}",
        VerdictMap::NoEndpointServices.name()
    );
    line!(
        out,
        "add rule {t} endpoints-check {nodeport} meta l4proto . th dport vmap @{}",
        VerdictMap::NoEndpointNodePorts.name()
    );
    line!(out, "add rule {t} nat-prerouting jump services");
    line!(out, "add rule {t} nat-output jump services");
    line!(out, "add rule {t} nat-postrouting jump masquerading");
    line!(out, "add rule {t} services {lookup} vmap @{}", VerdictMap::ServiceIps.name());
    line!(
        out,
        "add rule {t} services {nodeport} meta l4proto . th dport vmap @{}",
        VerdictMap::ServiceNodePorts.name()
    );
    line!(out, "add rule {t} {MARK_MASQ_CHAIN} meta mark set meta mark or {MASQ_MARK}");
    line!(out, "add rule {t} masquerading meta mark and {MASQ_MARK} == 0 return");
    line!(out, "add rule {t} masquerading meta mark set meta mark xor {MASQ_MARK}");
    line!(out, "add rule {t} masquerading masquerade fully-random");
    line!(out, "add rule {t} {REJECT_CHAIN} reject");

    for (set, seconds) in &content.affinity_sets {
        add_set(out, &t, family, set, *seconds);
    }
    for chain in content.chains.keys() {
        line!(out, "add chain {t} {chain}");
    }
    for (chain, rules) in &content.chains {
        for rule in rules {
            line!(out, "add rule {t} {chain} {rule}");
        }
    }
    for map in VerdictMap::ALL {
        for (key, verdict) in content.elements(map) {
            line!(out, "add element {t} {} {{ {key} : {verdict} }}", map.name());
        }
    }
}

fn add_set(out: &mut String, t: &str, family: IpFamily, set: &str, seconds: u32) {
    line!(
        out,
        "add set {t} {set} {{ type {} ; flags dynamic,timeout ; timeout {seconds}s ; }}",
        family.addr_type()
    );
}

/// What an incremental script does besides its text: the bookkeeping of stale chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// The script; empty when nothing changed.
    pub script: String,
    /// Chains this script empties because nothing uses them any more. They are deleted by a
    /// later script: kernels before 6.2 release a chain's last reference from a map only a
    /// little after the transaction that removed it, and refuse to delete it until then.
    pub newly_stale: Vec<ChainRef>,
    /// Stale chains this script brings back into use.
    pub revived: Vec<ChainRef>,
}

/// The script taking the tables from `old` to `new`, touching only what differs, and
/// deleting the emptied chains of earlier scripts named in `delete_stale`. `stale` lists
/// every chain emptied earlier and not yet deleted (it still exists, empty).
pub fn render_diff(
    table: &str,
    old: &ProxyState,
    new: &ProxyState,
    stale: &BTreeSet<ChainRef>,
    delete_stale: &BTreeSet<ChainRef>,
) -> Diff {
    let mut diff = Diff::default();
    let mut out = String::new();
    for (family, new_content) in &new.tables {
        match old.tables.get(family) {
            Some(old_content) => {
                diff_table(&mut out, &mut diff, table, *family, old_content, new_content, stale)
            }
            None => render_table(&mut out, table, *family, new_content),
        }
    }
    for family in old.tables.keys().filter(|family| !new.tables.contains_key(family)) {
        line!(out, "delete table {} {table}", family.nft());
    }
    // Last, so that nothing in this script still refers to them.
    for (family, chain) in delete_stale {
        let in_use =
            new.tables.get(family).is_some_and(|content| content.chains.contains_key(chain));
        if new.tables.contains_key(family) && !in_use {
            line!(out, "delete chain {} {table} {chain}", family.nft());
        }
    }
    diff.script = out;
    diff
}

fn diff_table(
    out: &mut String,
    diff: &mut Diff,
    table: &str,
    family: IpFamily,
    old: &TableState,
    new: &TableState,
    stale: &BTreeSet<ChainRef>,
) {
    let t = format!("{} {table}", family.nft());
    let changed_sets: BTreeSet<&String> = new
        .affinity_sets
        .iter()
        .filter(|(set, seconds)| old.affinity_sets.get(*set).is_some_and(|old| old != *seconds))
        .map(|(set, _)| set)
        .collect();
    // A set can only be re-created once no rule refers to it, so the chains using a set whose
    // timeout changed are rewritten even when their rules did not change.
    let mentions_changed_set = |rules: &Vec<String>| {
        rules.iter().any(|rule| changed_sets.iter().any(|set| mentions(rule, set)))
    };
    let rewritten: Vec<(&String, &Vec<String>)> = new
        .chains
        .iter()
        .filter(|(chain, rules)| {
            old.chains.get(*chain).is_some_and(|old| old != *rules || mentions_changed_set(rules))
        })
        .collect();
    let added: Vec<(&String, &Vec<String>)> =
        new.chains.iter().filter(|(chain, _)| !old.chains.contains_key(*chain)).collect();
    let removed: Vec<&String> =
        old.chains.keys().filter(|chain| !new.chains.contains_key(*chain)).collect();

    // 1. Empty the chains that change or go, dropping their references to sets and chains.
    for (chain, _) in &rewritten {
        line!(out, "flush chain {t} {chain}");
    }
    for chain in &removed {
        line!(out, "flush chain {t} {chain}");
        diff.newly_stale.push((family, (*chain).clone()));
    }
    // 2. Remove the map elements that go or change (an `add` never overwrites a value).
    for map in VerdictMap::ALL {
        let old_elements: BTreeMap<&String, &String> = old.elements(map).collect();
        let new_elements: BTreeMap<&String, &String> = new.elements(map).collect();
        for (key, verdict) in &old_elements {
            if new_elements.get(key) != Some(verdict) {
                line!(out, "delete element {t} {} {{ {key} }}", map.name());
            }
        }
    }
    // 3. Re-create sets whose timeout changed; delete sets that go; add new ones.
    for set in old.affinity_sets.keys() {
        if !new.affinity_sets.contains_key(set) || changed_sets.contains(set) {
            line!(out, "delete set {t} {set}");
        }
    }
    for (set, seconds) in &new.affinity_sets {
        if !old.affinity_sets.contains_key(set) || changed_sets.contains(set) {
            add_set(out, &t, family, set, *seconds);
        }
    }
    // 4. New chains (a stale one still exists, empty, and is simply used again), then the
    // rules of new and rewritten chains.
    for (chain, _) in &added {
        line!(out, "add chain {t} {chain}");
        let key = (family, (*chain).clone());
        if stale.contains(&key) {
            diff.revived.push(key);
        }
    }
    for (chain, rules) in added.iter().chain(&rewritten) {
        for rule in *rules {
            line!(out, "add rule {t} {chain} {rule}");
        }
    }
    // 5. Map elements that are new or changed, now that their chains exist.
    for map in VerdictMap::ALL {
        let old_elements: BTreeMap<&String, &String> = old.elements(map).collect();
        for (key, verdict) in new.elements(map) {
            if old_elements.get(key) != Some(&verdict) {
                line!(out, "add element {t} {} {{ {key} : {verdict} }}", map.name());
            }
        }
    }
}

/// Whether `rule` refers to the set `set` (`@set` followed by a space or the end).
fn mentions(rule: &str, set: &str) -> bool {
    rule.match_indices('@').any(|(index, _)| {
        let rest = &rule[index + 1..];
        rest.strip_prefix(set).is_some_and(|after| after.is_empty() || after.starts_with(' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_matches_whole_set_names() {
        assert!(mentions("ip saddr @affinity-A goto x", "affinity-A"));
        assert!(mentions("update @affinity-A { ip saddr }", "affinity-A"));
        assert!(!mentions("ip saddr @affinity-AB goto x", "affinity-A"));
        assert!(!mentions("goto affinity-A", "affinity-A"));
    }

    #[test]
    fn delete_script_covers_both_families() {
        let script = render_delete("t");
        assert_eq!(
            script,
            "add table ip t\ndelete table ip t\nadd table ip6 t\ndelete table ip6 t\n"
        );
    }
}
