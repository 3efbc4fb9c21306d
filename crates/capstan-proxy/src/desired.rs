//! The desired state kept up to date one Service at a time, and the changes since it was
//! last applied.
//!
//! Each Service contributes a [`ProxyState`] of its own ([`ProxyState::for_service`]). The
//! node's state is their union: every chain, set, map and element (an *item*) is claimed by
//! the Services that contribute it, and the Service with the smallest key decides its value
//! when two disagree (two Services with the same external IP and port, say). Recomputing one
//! Service touches only its own items, so the cost of an update follows the Service, not
//! the number of Services.
//!
//! The items an update touches are remembered with the value they had before, so that
//! [`DesiredState::take_changes`] hands the syncer exactly what differs from what it last
//! applied.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::names::slot_hint;
use crate::state::{
    ENDPOINT_SHARDS, EndpointSlot, IpFamily, MapKey, NodeFacts, Protocol, ProxyState, SLOTS,
    ServiceKey, TableState, Verdict, VerdictMap,
};

/// One thing in a table that a Service contributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    Chain(IpFamily, String),
    AffinitySet(IpFamily, String),
    EndpointSlot(IpFamily, String),
    Element(IpFamily, VerdictMap, MapKey),
    Hairpin(IpFamily, IpAddr),
}

/// The value of an [`Item`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Rules(Vec<String>),
    Timeout(u32),
    Slot(EndpointSlot),
    Verdict(Verdict),
    Present,
}

impl ProxyState {
    /// Every item of the state.
    fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        for (family, table) in &self.tables {
            let family = *family;
            items.extend(table.chains.keys().map(|name| Item::Chain(family, name.clone())));
            items.extend(
                table.affinity_sets.keys().map(|name| Item::AffinitySet(family, name.clone())),
            );
            items.extend(
                table.endpoint_slots.keys().map(|name| Item::EndpointSlot(family, name.clone())),
            );
            for (map, elements) in &table.maps {
                items.extend(elements.keys().map(|key| Item::Element(family, *map, *key)));
            }
            items.extend(table.hairpin.iter().map(|ip| Item::Hairpin(family, *ip)));
        }
        items
    }

    fn get(&self, item: &Item) -> Option<Value> {
        match item {
            Item::Chain(family, name) => {
                self.tables.get(family)?.chains.get(name).cloned().map(Value::Rules)
            }
            Item::AffinitySet(family, name) => {
                self.tables.get(family)?.affinity_sets.get(name).copied().map(Value::Timeout)
            }
            Item::EndpointSlot(family, name) => {
                self.tables.get(family)?.endpoint_slots.get(name).cloned().map(Value::Slot)
            }
            Item::Element(family, map, key) => {
                self.tables.get(family)?.maps.get(map)?.get(key).cloned().map(Value::Verdict)
            }
            Item::Hairpin(family, ip) => {
                self.tables.get(family)?.hairpin.contains(ip).then_some(Value::Present)
            }
        }
    }

    /// Sets `item` to `value`, or removes it.
    fn set(&mut self, item: &Item, value: Option<Value>) {
        let family = match item {
            Item::Chain(family, _)
            | Item::AffinitySet(family, _)
            | Item::EndpointSlot(family, _)
            | Item::Element(family, _, _)
            | Item::Hairpin(family, _) => *family,
        };
        if value.is_none() && !self.tables.contains_key(&family) {
            return;
        }
        let table = self.tables.entry(family).or_default();
        match (item, value) {
            (Item::Chain(_, name), Some(Value::Rules(rules))) => {
                table.chains.insert(name.clone(), rules);
            }
            (Item::Chain(_, name), _) => {
                table.chains.remove(name);
            }
            (Item::AffinitySet(_, name), Some(Value::Timeout(seconds))) => {
                table.affinity_sets.insert(name.clone(), seconds);
            }
            (Item::AffinitySet(_, name), _) => {
                table.affinity_sets.remove(name);
            }
            (Item::EndpointSlot(_, name), Some(Value::Slot(slot))) => {
                table.endpoint_slots.insert(name.clone(), slot);
            }
            (Item::EndpointSlot(_, name), _) => {
                table.endpoint_slots.remove(name);
            }
            (Item::Element(_, map, key), Some(Value::Verdict(verdict))) => {
                table.maps.entry(*map).or_default().insert(*key, verdict);
            }
            (Item::Element(_, map, key), _) => {
                if let Some(elements) = table.maps.get_mut(map) {
                    elements.remove(key);
                    if elements.is_empty() {
                        table.maps.remove(map);
                    }
                }
            }
            (Item::Hairpin(_, ip), Some(_)) => {
                table.hairpin.insert(*ip);
            }
            (Item::Hairpin(_, ip), None) => {
                table.hairpin.remove(ip);
            }
        }
    }
}

/// What changed between two states: `before` and `after` hold the same items (each may be
/// absent from either), with their old and new values; items in neither are unchanged.
/// Either may hold only part of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub before: ProxyState,
    pub after: ProxyState,
}

impl Changes {
    /// Everything that differs between two whole states.
    pub fn between(before: &ProxyState, after: &ProxyState) -> Self {
        Self { before: before.clone(), after: after.clone() }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.before == self.after
    }
}

/// The endpoint map slots: each policy chain keeps its slot while it exists. A chain's map
/// and first choice of slot come from a hash of its name, so that the same Services mostly
/// get the same slots after a restart; a taken slot moves it to the next free one.
#[derive(Debug, Default)]
struct Slots {
    assigned: HashMap<(IpFamily, String), SlotRef>,
    taken: HashSet<(IpFamily, SlotRef)>,
}

/// A slot of an endpoint map: protocol, shard and slot.
type SlotRef = (Protocol, u16, u16);

impl Slots {
    fn slot_for(
        &mut self,
        family: IpFamily,
        protocol: Protocol,
        chain: &str,
    ) -> Option<(u16, u16)> {
        if let Some((assigned_protocol, shard, slot)) =
            self.assigned.get(&(family, chain.to_owned()))
            && *assigned_protocol == protocol
        {
            return Some((*shard, *slot));
        }
        let hint = slot_hint(chain);
        let shard = u16::try_from(hint % u32::from(ENDPOINT_SHARDS)).ok()?;
        let first = u16::try_from(hint / u32::from(ENDPOINT_SHARDS) % u32::from(SLOTS)).ok()?;
        let slot = (first..SLOTS)
            .chain(0..first)
            .find(|slot| !self.taken.contains(&(family, (protocol, shard, *slot))))?;
        self.taken.insert((family, (protocol, shard, slot)));
        self.assigned.insert((family, chain.to_owned()), (protocol, shard, slot));
        Some((shard, slot))
    }

    fn release(&mut self, family: IpFamily, chain: &str) {
        if let Some(slot) = self.assigned.remove(&(family, chain.to_owned())) {
            self.taken.remove(&(family, slot));
        }
    }
}

/// The node's desired state, with what each Service contributes to it.
#[derive(Debug)]
pub struct DesiredState {
    node: NodeFacts,
    slots: Slots,
    /// What each Service contributes; Services contributing nothing are absent.
    contributions: HashMap<ServiceKey, ProxyState>,
    /// The Services contributing each item, smallest key first.
    claimants: HashMap<Item, Vec<ServiceKey>>,
    /// The union of the contributions, with a table for each of the node's families.
    state: ProxyState,
    /// The items changed since the last [`Self::take_changes`], with their value then.
    touched: HashMap<Item, Option<Value>>,
}

impl DesiredState {
    /// An empty state: no Services yet.
    pub fn new(node: NodeFacts) -> Self {
        let tables: BTreeMap<IpFamily, TableState> =
            node.families.iter().map(|family| (*family, TableState::default())).collect();
        Self {
            node,
            slots: Slots::default(),
            contributions: HashMap::new(),
            claimants: HashMap::new(),
            state: ProxyState { tables },
            touched: HashMap::new(),
        }
    }

    /// The desired state of the node's tables.
    pub fn state(&self) -> &ProxyState {
        &self.state
    }

    pub fn into_state(self) -> ProxyState {
        self.state
    }

    /// The Services contributing something.
    pub fn services(&self) -> impl Iterator<Item = &ServiceKey> {
        self.contributions.keys()
    }

    /// Recomputes what the Service `key` contributes: `service` is its current object
    /// (`None` once deleted), `slices` its EndpointSlices (others are ignored).
    pub fn update(
        &mut self,
        key: &ServiceKey,
        service: Option<&Service>,
        slices: &[&EndpointSlice],
    ) {
        let slots = &mut self.slots;
        let new = service
            .filter(|service| ServiceKey::of_service(service) == *key)
            .map(|service| {
                let mut slot_for =
                    |family, protocol, chain: &str| slots.slot_for(family, protocol, chain);
                ProxyState::for_service(service, slices, &self.node, &mut slot_for)
            })
            .unwrap_or_default();
        let old = self.contributions.remove(key).unwrap_or_default();
        for (family, table) in &old.tables {
            for chain in table.endpoint_slots.keys() {
                let kept =
                    new.tables.get(family).is_some_and(|t| t.endpoint_slots.contains_key(chain));
                if !kept {
                    self.slots.release(*family, chain);
                }
            }
        }
        if old == new {
            if !new.is_empty() {
                self.contributions.insert(key.clone(), new);
            }
            return;
        }
        let old_items: HashSet<Item> = old.items().into_iter().collect();
        let new_items: HashSet<Item> = new.items().into_iter().collect();
        if !new.is_empty() {
            self.contributions.insert(key.clone(), new);
        }
        for item in old_items.union(&new_items) {
            let claimants = self.claimants.entry(item.clone()).or_default();
            match (old_items.contains(item), new_items.contains(item)) {
                (true, false) => claimants.retain(|claimant| claimant != key),
                (false, true) => {
                    if let Err(position) = claimants.binary_search(key) {
                        claimants.insert(position, key.clone());
                    }
                }
                _ => {}
            }
            let winner = claimants.first().cloned();
            if winner.is_none() {
                self.claimants.remove(item);
            }
            let value = winner
                .and_then(|winner| self.contributions.get(&winner))
                .and_then(|contribution| contribution.get(item));
            let current = self.state.get(item);
            if current != value {
                self.touched.entry(item.clone()).or_insert(current);
                self.state.set(item, value);
            } else if self.touched.contains_key(item) || matches!(item, Item::Chain(..)) {
                // Chains of a recomputed Service are handed over even when unchanged: one
                // of them may use a set whose timeout changed and must be rewritten with it.
                self.touched.entry(item.clone()).or_insert(current);
            }
        }
    }

    /// Recomputes every Service from `services` and all `slices`; Services no longer
    /// present contribute nothing any more. Services are taken in key order, so that the
    /// same objects give the same state.
    pub fn replace_all<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) {
        let mut services: Vec<(ServiceKey, &Service)> = services
            .into_iter()
            .map(|service| (ServiceKey::of_service(service), service))
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let mut slices_by_service: HashMap<ServiceKey, Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if let Some(key) = ServiceKey::of_slice(slice) {
                slices_by_service.entry(key).or_default().push(slice);
            }
        }
        // Services gone first, so that their slots are free for the others.
        let present: BTreeSet<&ServiceKey> = services.iter().map(|(key, _)| key).collect();
        let gone: Vec<ServiceKey> =
            self.contributions.keys().filter(|key| !present.contains(key)).cloned().collect();
        for key in gone {
            self.update(&key, None, &[]);
        }
        for (key, service) in &services {
            let slices = slices_by_service.get(key).map(Vec::as_slice).unwrap_or_default();
            self.update(key, Some(service), slices);
        }
    }

    /// The changes since the last call (or since the start), which the syncer applies.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for (item, before) in self.touched.drain() {
            let after = self.state.get(&item);
            changes.before.set(&item, before);
            changes.after.set(&item, after);
        }
        changes
    }

    /// Forgets the changes since the last call: a full sync is writing the whole state.
    pub fn discard_changes(&mut self) {
        self.touched.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{cluster_ip_service, node, slice};

    #[test]
    fn an_update_changes_only_its_service() {
        let web = cluster_ip_service("ns", "web", "10.96.0.10", 80);
        let db = cluster_ip_service("ns", "db", "10.96.0.11", 5432);
        let web_slice = slice("ns", "web", "web-1", 8080, &["10.42.1.1"]);
        let db_slice = slice("ns", "db", "db-1", 5432, &["10.42.1.2"]);
        let mut desired = DesiredState::new(node());
        desired.replace_all([&web, &db], [&web_slice, &db_slice]);
        assert_eq!(
            *desired.state(),
            ProxyState::compute([&web, &db], [&web_slice, &db_slice], &node())
        );
        desired.take_changes();

        let grown = slice("ns", "web", "web-1", 8080, &["10.42.1.1", "10.42.1.3"]);
        desired.update(&ServiceKey::of_service(&web), Some(&web), &[&grown]);
        let changes = desired.take_changes();
        let after = &changes.after.tables[&IpFamily::V4];
        assert_eq!(after.endpoint_slots.len(), 1, "{after:?}");
        assert!(after.hairpin.contains(&"10.42.1.3".parse().unwrap()));
        assert!(!after.hairpin.contains(&"10.42.1.2".parse().unwrap()), "db is untouched");
        assert_eq!(
            *desired.state(),
            ProxyState::compute([&web, &db], [&grown, &db_slice], &node())
        );
        assert!(desired.take_changes().is_empty());
    }

    #[test]
    fn shared_items_stay_while_any_service_claims_them() {
        let web = cluster_ip_service("ns", "web", "10.96.0.10", 80);
        let alias = cluster_ip_service("ns", "alias", "10.96.0.11", 80);
        let web_slice = slice("ns", "web", "web-1", 8080, &["10.42.1.1"]);
        let alias_slice = slice("ns", "alias", "alias-1", 8080, &["10.42.1.1"]);
        let mut desired = DesiredState::new(node());
        desired.replace_all([&web, &alias], [&web_slice, &alias_slice]);
        desired.take_changes();
        desired.update(&ServiceKey::of_service(&alias), None, &[]);
        let hairpin = &desired.state().tables[&IpFamily::V4].hairpin;
        assert!(hairpin.contains(&"10.42.1.1".parse().unwrap()), "web still uses it");
        let changes = desired.take_changes();
        assert!(changes.after.tables.get(&IpFamily::V4).is_none_or(|t| t.hairpin.is_empty()));
        desired.update(&ServiceKey::of_service(&web), None, &[]);
        assert!(desired.state().is_empty());
        assert_eq!(desired.services().count(), 0);
    }
}
