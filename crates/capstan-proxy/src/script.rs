//! [`ProxyState`]s rendered for nftables: a whole table as one `nft -f` script, or the
//! [`Changes`] since the last sync as a script (new chains, rules and sets) plus an
//! [`ElementBatch`] (map and set elements).
//!
//! nft applies one script as one transaction: all of it or none, and packets see either the
//! old or the new ruleset. A full script re-creates each table (`add table`, `delete table`,
//! `add table`, …), which also works when the table is missing. Established flows survive
//! either way: NAT decisions live in conntrack, not in the rules.
//!
//! Scripts never use `add element` or `delete element`: in nft 1.0.6 those load every
//! element of every interval set in the kernel first, which makes them cost as much as the
//! whole ruleset. Elements of new maps are declared with the map; others go in the batch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::desired::Changes;
use crate::elements::{Element, ElementBatch, Operation};
use crate::state::{
    EndpointSlot, IpFamily, MARK_MASQ_CHAIN, NodeFacts, Protocol, ProxyState, REJECT_CHAIN,
    SLOT_WIDTH, TableState, VerdictMap, endpoint_range, endpoints_map,
};

/// The packet mark bit that asks `postrouting` to masquerade (upstream's bit 14).
const MASQ_MARK: &str = "0x4000";

/// Chains that run before DNAT in the filter hooks, so they see the service address.
const FILTER_PRIORITY: &str = "-110";

/// NAT priorities, as numbers: older nft (1.0.6) accepts the names `dstnat` and `srcnat`
/// only in the hooks they were named for, not `dstnat` in `output`.
const DSTNAT_PRIORITY: &str = "-100";
const SRCNAT_PRIORITY: &str = "100";

/// The set of endpoint addresses for hairpin masquerading.
const HAIRPIN_SET: &str = "hairpin";

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
pub fn render_full(table: &str, state: &ProxyState, node: &NodeFacts) -> String {
    let mut out = String::new();
    for (family, content) in &state.tables {
        render_table(&mut out, table, *family, content, node);
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

/// Re-creates one family's table: chains first (map elements jump to them), then sets and
/// maps with their elements (rules look them up), then rules.
fn render_table(
    out: &mut String,
    table: &str,
    family: IpFamily,
    content: &TableState,
    node: &NodeFacts,
) {
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
    for chain in content.chains.keys() {
        line!(out, "add chain {t} {chain}");
    }

    let hairpin: Vec<String> = content.hairpin.iter().map(|ip| format!("{ip} . {ip}")).collect();
    line!(
        out,
        "add set {t} {HAIRPIN_SET} {{ type {0} . {0} ;{1} }}",
        family.addr_type(),
        elements_clause(&hairpin)
    );
    for (set, seconds) in &content.affinity_sets {
        add_set(out, &t, family, set, *seconds);
    }
    // The endpoint maps in use, each with its ranges in order.
    let mut maps: BTreeMap<(Protocol, u16), Vec<(u32, String)>> = BTreeMap::new();
    for slot in content.endpoint_slots.values() {
        let map = maps.entry((slot.protocol, slot.shard)).or_default();
        for (first, last, backend) in slot_ranges(slot) {
            map.push((first, format!("{first}-{last} : {backend}")));
        }
    }
    for ((protocol, shard), mut elements) in maps {
        elements.sort_unstable();
        let elements: Vec<String> = elements.into_iter().map(|(_, range)| range).collect();
        add_endpoint_map(out, &t, family, protocol, shard, &elements_clause(&elements));
    }
    for map in VerdictMap::ALL {
        let elements: Vec<String> =
            content.elements(map).map(|(key, verdict)| format!("{key} : {verdict}")).collect();
        line!(
            out,
            "add map {t} {} {{ type {} ;{} }}",
            map.name(),
            map.key_type(family),
            elements_clause(&elements)
        );
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
    if let Some(cidrs) = node.cluster_cidrs_of(family) {
        // Pods reaching outside the cluster leave with this node's address (what the CNI's
        // ipMasq did); pod-to-pod traffic keeps its addresses, across nodes too.
        line!(
            out,
            "add rule {t} nat-postrouting {f} saddr {cidrs} {f} daddr != {cidrs} {f} daddr != {} masquerade fully-random",
            family.multicast()
        );
    }
    line!(out, "add rule {t} services {lookup} vmap @{}", VerdictMap::ServiceIps.name());
    line!(
        out,
        "add rule {t} services {nodeport} meta l4proto . th dport vmap @{}",
        VerdictMap::ServiceNodePorts.name()
    );
    line!(out, "add rule {t} {MARK_MASQ_CHAIN} meta mark set meta mark or {MASQ_MARK}");
    line!(
        out,
        "add rule {t} masquerading ct status dnat {f} saddr . {f} daddr @{HAIRPIN_SET} jump {MARK_MASQ_CHAIN}"
    );
    line!(out, "add rule {t} masquerading meta mark and {MASQ_MARK} == 0 return");
    line!(out, "add rule {t} masquerading meta mark set meta mark xor {MASQ_MARK}");
    line!(out, "add rule {t} masquerading masquerade fully-random");
    line!(out, "add rule {t} {REJECT_CHAIN} reject");
    for (chain, rules) in &content.chains {
        for rule in rules {
            line!(out, "add rule {t} {chain} {rule}");
        }
    }
}

/// ` elements = { a, b } ;`, or nothing for no elements.
fn elements_clause(elements: &[String]) -> String {
    if elements.is_empty() {
        return String::new();
    }
    format!(" elements = {{ {} }} ;", elements.join(", "))
}

fn add_set(out: &mut String, t: &str, family: IpFamily, set: &str, seconds: u32) {
    line!(
        out,
        "add set {t} {set} {{ type {} ; flags dynamic,timeout ; timeout {seconds}s ; }}",
        family.addr_type()
    );
}

/// Declares endpoint map `shard` of `protocol`, with `elements` (a clause, or nothing).
fn add_endpoint_map(
    out: &mut String,
    t: &str,
    family: IpFamily,
    protocol: Protocol,
    shard: u16,
    elements: &str,
) {
    line!(
        out,
        "add map {t} {} {{ typeof numgen random mod {SLOT_WIDTH} : {} daddr . {} dport ; flags interval ;{elements} }}",
        endpoints_map(protocol, shard),
        family.nft(),
        protocol.nft()
    );
}

/// The elements of an endpoint map for one slot: each endpoint's range, and itself.
fn slot_ranges(slot: &EndpointSlot) -> impl Iterator<Item = (u32, u32, &crate::state::Backend)> {
    let count = slot.backends.len();
    slot.backends.iter().enumerate().filter_map(move |(index, backend)| {
        endpoint_range(slot.slot, index, count).map(|(first, last)| (first, last, backend))
    })
}

/// What an incremental sync writes, and the bookkeeping of stale chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The script of chain, rule and set changes; empty when there are none.
    pub script: String,
    /// The element changes, applied after the script.
    pub elements: ElementBatch,
    /// Chains this script empties because nothing uses them any more. They are deleted by a
    /// later script: kernels before 6.2 release a chain's last reference from a map only a
    /// little after the transaction that removed it, and refuse to delete it until then.
    pub newly_stale: Vec<ChainRef>,
    /// Stale chains this script brings back into use.
    pub revived: Vec<ChainRef>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.script.is_empty() && self.elements.is_empty()
    }
}

/// What takes the tables through `changes`, touching only what differs, and deletes the
/// emptied chains of earlier scripts named in `delete_stale` unless `desired` (the whole
/// state) uses them again. `stale` lists every chain emptied earlier and not yet deleted (it
/// still exists, empty).
pub fn render_diff(
    table: &str,
    changes: &Changes,
    desired: &ProxyState,
    stale: &BTreeSet<ChainRef>,
    delete_stale: &BTreeSet<ChainRef>,
) -> Diff {
    let mut out = String::new();
    let mut diff = Diff {
        script: String::new(),
        elements: ElementBatch::new(table),
        newly_stale: Vec::new(),
        revived: Vec::new(),
    };
    let mut additions = ElementBatch::new(table);
    let families: BTreeSet<IpFamily> =
        changes.before.tables.keys().chain(changes.after.tables.keys()).copied().collect();
    let empty = TableState::default();
    for family in families {
        let old = changes.before.tables.get(&family).unwrap_or(&empty);
        let new = changes.after.tables.get(&family).unwrap_or(&empty);
        let mut table_diff = TableDiff { out: &mut out, diff: &mut diff, table, family };
        table_diff.structure(old, new, stale);
        elements(&mut table_diff.diff.elements, &mut additions, family, old, new);
    }
    // Deletions first, so that a changed value is deleted before its new value is added.
    diff.elements.extend(additions);
    // Last, so that nothing in this script still refers to them.
    for (family, chain) in delete_stale {
        let Some(content) = desired.tables.get(family) else { continue };
        if !content.chains.contains_key(chain) {
            line!(out, "delete chain {} {table} {chain}", family.nft());
        }
    }
    diff.script = out;
    diff
}

/// The script part of one family's changes.
struct TableDiff<'a> {
    out: &'a mut String,
    diff: &'a mut Diff,
    table: &'a str,
    family: IpFamily,
}

impl TableDiff<'_> {
    fn structure(&mut self, old: &TableState, new: &TableState, stale: &BTreeSet<ChainRef>) {
        let family = self.family;
        let t = format!("{} {}", family.nft(), self.table);
        let out = &mut *self.out;
        let changed_sets: BTreeSet<&String> = new
            .affinity_sets
            .iter()
            .filter(|(set, seconds)| old.affinity_sets.get(*set).is_some_and(|old| old != *seconds))
            .map(|(set, _)| set)
            .collect();
        // A set can only be re-created once no rule refers to it, so the chains using a set
        // whose timeout changed are rewritten even when their rules did not change.
        let mentions_changed_set = |rules: &Vec<String>| {
            rules.iter().any(|rule| changed_sets.iter().any(|set| mentions(rule, set)))
        };
        let rewritten: Vec<(&String, &Vec<String>)> = new
            .chains
            .iter()
            .filter(|(chain, rules)| {
                old.chains
                    .get(*chain)
                    .is_some_and(|old| old != *rules || mentions_changed_set(rules))
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
            self.diff.newly_stale.push((family, (*chain).clone()));
        }
        // 2. Re-create sets whose timeout changed; delete sets that go; add new ones. Declare
        // the endpoint maps new slots are in (again, if they exist: that changes nothing);
        // maps left empty stay until the next full sync.
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
        let new_maps: BTreeSet<(Protocol, u16)> = new
            .endpoint_slots
            .iter()
            .filter(|(chain, slot)| {
                old.endpoint_slots
                    .get(*chain)
                    .is_none_or(|old| (old.protocol, old.shard) != (slot.protocol, slot.shard))
            })
            .map(|(_, slot)| (slot.protocol, slot.shard))
            .collect();
        for (protocol, shard) in new_maps {
            add_endpoint_map(out, &t, family, protocol, shard, "");
        }
        // 3. New chains (a stale one still exists, empty, and is simply used again), then the
        // rules of new and rewritten chains.
        for (chain, _) in &added {
            line!(out, "add chain {t} {chain}");
            let key = (family, (*chain).clone());
            if stale.contains(&key) {
                self.diff.revived.push(key);
            }
        }
        for (chain, rules) in added.iter().chain(&rewritten) {
            for rule in *rules {
                line!(out, "add rule {t} {chain} {rule}");
            }
        }
    }
}

/// The element changes of one family: deletions into `deletions`, additions into
/// `additions`.
fn elements(
    deletions: &mut ElementBatch,
    additions: &mut ElementBatch,
    family: IpFamily,
    old: &TableState,
    new: &TableState,
) {
    for map in VerdictMap::ALL {
        let old_elements: BTreeMap<_, _> = old.elements(map).collect();
        let new_elements: BTreeMap<_, _> = new.elements(map).collect();
        for (key, verdict) in &old_elements {
            if new_elements.get(key) != Some(verdict) {
                let element = Element::Verdict { key: **key, verdict: (*verdict).clone() };
                deletions.push(family, map.name(), Operation::Delete, element);
            }
        }
        for (key, verdict) in &new_elements {
            if old_elements.get(key) != Some(verdict) {
                let element = Element::Verdict { key: **key, verdict: (*verdict).clone() };
                additions.push(family, map.name(), Operation::Add, element);
            }
        }
    }
    // Ranges move whenever the number of endpoints changes: a changed slot is replaced whole.
    for (chain, slot) in &old.endpoint_slots {
        if new.endpoint_slots.get(chain) != Some(slot) {
            let map = endpoints_map(slot.protocol, slot.shard);
            for (first, last, backend) in slot_ranges(slot) {
                let element = Element::Range { first, last, backend: *backend };
                deletions.push(family, &map, Operation::Delete, element);
            }
        }
    }
    for (chain, slot) in &new.endpoint_slots {
        if old.endpoint_slots.get(chain) != Some(slot) {
            let map = endpoints_map(slot.protocol, slot.shard);
            for (first, last, backend) in slot_ranges(slot) {
                let element = Element::Range { first, last, backend: *backend };
                additions.push(family, &map, Operation::Add, element);
            }
        }
    }
    for ip in old.hairpin.difference(&new.hairpin) {
        deletions.push(family, HAIRPIN_SET, Operation::Delete, Element::Hairpin(*ip));
    }
    for ip in new.hairpin.difference(&old.hairpin) {
        additions.push(family, HAIRPIN_SET, Operation::Add, Element::Hairpin(*ip));
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

    #[test]
    fn endpoint_ranges_cover_their_slot_once() {
        let backends: Vec<crate::state::Backend> = (1..=3)
            .map(|i| crate::state::Backend { ip: format!("10.0.0.{i}").parse().unwrap(), port: 80 })
            .collect();
        let slot = EndpointSlot { protocol: Protocol::Tcp, shard: 0, slot: 2, backends };
        let ranges: Vec<(u32, u32)> = slot_ranges(&slot).map(|(a, b, _)| (a, b)).collect();
        assert_eq!(ranges, [(131_072, 152_916), (152_917, 174_761), (174_762, 196_607)]);
        let last = EndpointSlot {
            protocol: Protocol::Tcp,
            shard: 0,
            slot: crate::state::SLOTS - 1,
            backends: slot.backends[..1].to_vec(),
        };
        assert_eq!(
            slot_ranges(&last).map(|(a, b, _)| (a, b)).collect::<Vec<_>>(),
            [(4_294_836_224, 4_294_901_759)]
        );
    }
}
