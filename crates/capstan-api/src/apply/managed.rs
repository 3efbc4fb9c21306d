//! `metadata.managedFields` as data: one [`Entry`] per manager identity, decoded from and
//! encoded to the API's `ManagedFieldsEntry` list in upstream's order, and upstream's cap on
//! the number of Update entries.

use super::Operation;
use super::fieldpath::Set;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// How many Update entries an object keeps before the oldest are merged into
/// `ancient-changes` (upstream's `DefaultMaxUpdateManagers`).
const MAX_UPDATE_MANAGERS: usize = 10;

/// What makes two entries the same entry. An applier is one entry whatever version it
/// applies with (`api_version` is empty for Apply); an updater has one entry per version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ManagerId {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    pub(crate) subresource: String,
}

impl ManagerId {
    pub(crate) fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> ManagerId {
        ManagerId {
            manager: if manager.is_empty() { "unknown" } else { manager }.to_owned(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: subresource.to_owned(),
        }
    }

    /// Upstream's identifier (the entry without fields and time, as Go marshals it), which
    /// orders managers in the cap and in conflict messages.
    pub(crate) fn identifier(&self) -> String {
        let mut out = Map::new();
        if !self.manager.is_empty() {
            out.insert("manager".into(), Value::from(self.manager.as_str()));
        }
        out.insert("operation".into(), Value::from(self.operation.as_str()));
        if !self.api_version.is_empty() {
            out.insert("apiVersion".into(), Value::from(self.api_version.as_str()));
        }
        if !self.subresource.is_empty() {
            out.insert("subresource".into(), Value::from(self.subresource.as_str()));
        }
        Value::Object(out).to_string()
    }
}

/// One manager's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) set: Set,
    pub(crate) api_version: String,
    /// RFC 3339; upstream leaves it unset on an entry created by a write that changed
    /// nothing.
    pub(crate) time: Option<String>,
}

/// Every manager's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Managed {
    pub(crate) entries: BTreeMap<ManagerId, Entry>,
}

impl Managed {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes `metadata.managedFields` (absent or null: no entries), refusing what
    /// upstream's `DecodeManagedFields` refuses. A later entry with the same identity
    /// replaces an earlier one.
    pub(crate) fn decode(list: Option<&Value>) -> Result<Managed, String> {
        let mut managed = Managed::default();
        let items = match list {
            None | Some(Value::Null) => return Ok(managed),
            Some(Value::Array(items)) => items,
            Some(_) => return Err("managedFields must be a list".into()),
        };
        for (index, item) in items.iter().enumerate() {
            let Value::Object(item) = item else {
                return Err(format!("managed fields entry {index} must be an object"));
            };
            let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".into()),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".into());
            }
            match text("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {index}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {index}"
                    ));
                }
            }
            let set = match item.get("fieldsV1") {
                None | Some(Value::Null) => Set::default(),
                Some(fields) => Set::from_fields_v1(fields)
                    .map_err(|err| format!("error decoding versioned set: {err}"))?,
            };
            // The identity is built from the entry as it is stored: an unnamed manager stays
            // unnamed (only new writes are named "unknown").
            let id = ManagerId {
                manager: text("manager").to_owned(),
                operation,
                api_version: match operation {
                    Operation::Apply => String::new(),
                    Operation::Update => api_version.to_owned(),
                },
                subresource: text("subresource").to_owned(),
            };
            let time = item.get("time").and_then(Value::as_str).map(str::to_owned);
            managed.entries.insert(id, Entry { set, api_version: api_version.to_owned(), time });
        }
        Ok(managed)
    }

    /// The `managedFields` list, in upstream's order: Apply entries before Update ones,
    /// then by time (whole seconds), manager, apiVersion and subresource. `None` when there
    /// are no entries (the field is then omitted).
    pub(crate) fn encode(&self) -> Option<Value> {
        if self.entries.is_empty() {
            return None;
        }
        let mut entries: Vec<(&ManagerId, &Entry)> = self.entries.iter().collect();
        entries.sort_by(|(a, ea), (b, eb)| {
            a.operation
                .cmp(&b.operation)
                .then_with(|| seconds(ea.time.as_deref()).cmp(&seconds(eb.time.as_deref())))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| ea.api_version.cmp(&eb.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        let list = entries
            .into_iter()
            .map(|(id, entry)| {
                let mut out = Map::new();
                if !id.manager.is_empty() {
                    out.insert("manager".into(), Value::from(id.manager.as_str()));
                }
                out.insert("operation".into(), Value::from(id.operation.as_str()));
                out.insert("apiVersion".into(), Value::from(entry.api_version.as_str()));
                if let Some(time) = &entry.time {
                    out.insert("time".into(), Value::from(time.as_str()));
                }
                out.insert("fieldsType".into(), json!("FieldsV1"));
                out.insert("fieldsV1".into(), entry.set.to_fields_v1());
                if !id.subresource.is_empty() {
                    out.insert("subresource".into(), Value::from(id.subresource.as_str()));
                }
                Value::Object(out)
            })
            .collect();
        Some(Value::Array(list))
    }

    /// The union of every manager's fields.
    pub(crate) fn all_fields(&self) -> Set {
        let mut all = Set::default();
        for entry in self.entries.values() {
            all.union_with(&entry.set);
        }
        all
    }

    /// Drops entries left without fields.
    pub(crate) fn drop_empty(&mut self) {
        self.entries.retain(|_, entry| !entry.set.is_empty());
    }

    /// Upstream's cap: past ten Update entries, the oldest are merged, per version, into
    /// an `ancient-changes` entry (the first of a version moves there once a second one
    /// joins it).
    pub(crate) fn cap_update_managers(&mut self) {
        let mut updaters: Vec<ManagerId> =
            self.entries.keys().filter(|id| id.operation == Operation::Update).cloned().collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort_by_cached_key(|id| {
            let time = self.entries.get(id).and_then(|entry| entry.time.as_deref());
            (seconds(time), id.identifier())
        });
        let mut length = updaters.len();
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        for id in updaters {
            if length <= MAX_UPDATE_MANAGERS {
                break;
            }
            let Some(entry) = self.entries.get(&id).cloned() else { continue };
            let bucket =
                ManagerId::new("ancient-changes", Operation::Update, &entry.api_version, "");
            match first_of_version.get(&entry.api_version) {
                None => {
                    first_of_version.insert(entry.api_version.clone(), id);
                }
                // The bucket itself, met after the first of its version: nothing to merge.
                Some(_) if id == bucket => {}
                Some(first) => {
                    if !self.entries.contains_key(&bucket)
                        && let Some(moved) = self.entries.remove(first)
                    {
                        self.entries.insert(bucket.clone(), moved);
                    }
                    self.entries.remove(&id);
                    length -= 1;
                    if let Some(merged) = self.entries.get_mut(&bucket) {
                        merged.set.union_with(&entry.set);
                        merged.api_version = entry.api_version;
                        merged.time = entry.time;
                    }
                }
            }
        }
    }
}

/// Seconds since the epoch of an RFC 3339 time; 0 when absent or malformed (upstream's
/// nil time).
fn seconds(time: Option<&str>) -> i64 {
    time.and_then(parse_rfc3339).unwrap_or(0)
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let number = |s: &str| -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (date, rest) = text.split_once(['T', 't'])?;
    let mut parts = date.splitn(3, '-');
    let (year, month, day) =
        (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
    let clock = rest.get(..8)?;
    let mut parts = clock.splitn(3, ':');
    let (hour, minute, second) =
        (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
    let mut zone = &rest[8..];
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        zone = &fraction[digits..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (hours, minutes) = zone.get(1..)?.split_once(':')?;
            sign * (number(hours)? * 3600 + number(minutes)? * 60)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-03-01T12:30:05Z"), Some(1_709_296_205));
        assert_eq!(parse_rfc3339("2024-03-01T12:30:05.123456Z"), Some(1_709_296_205));
        assert_eq!(parse_rfc3339("2024-03-01T14:30:05+02:00"), Some(1_709_296_205));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        let decode = |list: Value| Managed::decode(Some(&list));
        assert!(
            decode(json!([{"operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]))
                .is_err()
        );
        assert!(decode(json!([{"operation": "Apply", "fieldsType": "FieldsV1"}])).is_err());
        assert_eq!(
            decode(json!([{"operation": "Apply", "apiVersion": "v1"}])).unwrap_err(),
            "missing fieldsType in managed fields entry 0"
        );
        assert!(
            decode(json!([{"operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"}]))
                .is_err()
        );
        assert!(decode(json!({})).is_err());
        assert!(decode(json!(null)).unwrap().is_empty());
    }

    #[test]
    fn caps_update_entries_into_ancient_changes() {
        let mut managed = Managed::default();
        for i in 0..12 {
            let mut set = Set::default();
            set.insert(&[super::super::fieldpath::PathElement::field(&format!("f{i}"))]);
            managed.entries.insert(
                ManagerId::new(&format!("m{i:02}"), Operation::Update, "v1", ""),
                Entry {
                    set,
                    api_version: "v1".into(),
                    time: Some(format!("2024-01-01T00:00:{i:02}Z")),
                },
            );
        }
        managed.cap_update_managers();
        assert_eq!(managed.entries.len(), 10);
        let bucket = ManagerId::new("ancient-changes", Operation::Update, "v1", "");
        let merged = &managed.entries[&bucket];
        assert_eq!(merged.set.paths().len(), 3);
        assert_eq!(merged.time.as_deref(), Some("2024-01-01T00:00:02Z"));
    }
}
