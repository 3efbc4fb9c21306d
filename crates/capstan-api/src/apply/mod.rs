//! Field management and server-side apply: `metadata.managedFields` (FieldsV1) recorded for
//! every write, and apply patches (`application/apply-patch+yaml`) merged with upstream's
//! structured-merge semantics, conflicts and `force`.
//!
//! Upstream is the specification: `sigs.k8s.io/structured-merge-diff` (sets, merge,
//! comparison, pruning) and apimachinery's `managedfields/internal` (the chain of managers
//! kube-apiserver wraps around it). What that chain does, in the order it does it:
//!
//! - the applied configuration must be of the resource's kind and version, without
//!   `metadata.managedFields`, with keyable, unique list items;
//! - an object that has no managedFields yet gets a `before-first-apply` Update entry owning
//!   everything it holds before the first apply, so that the first applier conflicts with
//!   what it did not write;
//! - an apply merges the configuration into the object, records the configuration's fields
//!   as the applier's (exactly those: an Apply entry is the last configuration), prunes
//!   what the applier set last time, sets no more, and nobody else owns, and compares the
//!   result with the object: a changed field another manager owns is a conflict, unless
//!   `force` moves it to the applier;
//! - the manager `kubectl` is let through conflicts on fields its client-side applies set,
//!   and keeps `kubectl.kubernetes.io/last-applied-configuration` in step;
//! - an update (create, update, patch) gives the fields it changed to the writer's Update
//!   entry (one per manager, version and subresource) and takes them from everyone else;
//!   an existing object without managedFields stays without them until applied to; a
//!   client may replace managedFields (`[]` or `[{}]` clears them);
//! - server-owned metadata (`apiVersion`, `kind`, `metadata.name`, `uid`,
//!   `resourceVersion`, `generation`, `creationTimestamp`, ...) is never anyone's;
//! - on the main resource of a kind with a status subresource `status` is nobody's concern
//!   (and keeps its stored value); on the `status` subresource only `status` is;
//! - entries are stamped with the write's time only when the write changed the object,
//!   and listed Apply first, then by time, manager, version and subresource; past ten
//!   Update entries, the oldest merge into `ancient-changes`.
//!
//! Deviations, each for a reason: objects are not converted between versions (every entry
//! is read as of the resource's version: Capstan serves one version per storage, except
//! HPA and Events, whose versions share field names where they matter); the empty object a
//! create is compared against holds only `metadata`, `spec` and `status` (upstream's is
//! the Go zero value, which also holds every non-pointer struct below them, so upstream
//! marks fewer nested structs as `.` on create); key defaults come from the schema and,
//! as Capstan's schemas carry no defaults, `protocol: TCP` for ports; schema changes of
//! stored sets are not reconciled (the schema is fixed at v1.33); a kind without a schema
//! (a custom resource) is deduced: its top-level fields are struct fields, everything
//! below a granular map, every list atomic (upstream uses the CRD's schema); a stored
//! list whose items cannot be keyed is handled as atomic rather than failing the write;
//! the reset fields are reduced to the spec/status split (upstream's differ per kind: the
//! status subresource of most kinds may also change metadata).

mod fieldpath;
mod last_applied;
mod managed;
mod typed;

#[cfg(test)]
mod tests;

use crate::registry::ResourceType;
use fieldpath::{PathElement, Set, path_string};
use managed::{Entry, Managed, ManagerId};
use serde_json::{Map, Value, json};
use typed::{Comparison, Ty};

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// The field as upstream names it in the 409: `.spec.replicas`,
    /// `.spec.containers[name="web"].image`.
    pub field: String,
}

/// Why an apply fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict, listing every conflict.
    #[error("Apply failed with {} conflicts", .0.len())]
    Conflicts(Vec<Conflict>),
    /// 400/422: the applied configuration is malformed (not an object, wrong kind, a list item
    /// without its keys, ...).
    #[error("{0}")]
    Invalid(String),
}

/// What one write did, for field management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    /// As `managedFields[].operation` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Conflicts as found: each changed field with a manager that owns it.
type OwnedConflicts = Vec<(ManagerId, Vec<PathElement>)>;

/// The manager that owns what an object held before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Server-side apply: merges `applied` (the manager's whole intent) into `live` (`None`
/// when the object does not exist yet) and returns the new object with its managedFields.
/// Without `force`, fields owned by other managers with other values are conflicts.
/// `subresource` is `""` or `"status"`; `now` is the RFC 3339 time for the managedFields
/// entry.
///
/// The applied configuration must be an object of the resource's apiVersion and kind,
/// without `metadata.managedFields`, named as `live` is (the caller checks the name in the
/// URL); its associative lists' items must carry their keys, once each. Server-owned
/// metadata in it (`resourceVersion`, `uid`, ...) is merged like any field but owned by
/// nobody: the caller's update rules decide what becomes of it. The result is not
/// defaulted, validated or otherwise prepared: that is the caller's next step, as it is
/// for any write.
pub fn apply(
    resource: &ResourceType,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let scope = Scope::new(resource, subresource);
    check_applied(resource, live, applied)?;
    typed::validate(scope.ty, applied).map_err(|err| {
        ApplyError::Invalid(format!(
            "failed to create typed patch object ({}): {err}",
            gvk_string(resource.group, resource.version, resource.kind)
        ))
    })?;
    if scope.reset == Reset::AllButStatus && live.is_none() {
        return Err(ApplyError::Invalid(
            "the status subresource of an object that does not exist cannot be applied to".into(),
        ));
    }

    let mut live_object = live.cloned().unwrap_or_else(|| json!({}));
    let stored = take_managed_fields(&mut live_object);
    let mut managed = Managed::decode(stored.as_ref())
        .map_err(|err| ApplyError::Invalid(format!("failed to decode managed fields: {err}")))?;
    if managed.is_empty() && live.is_some() {
        let empty = scope.empty_object();
        scope.track(&mut managed, &empty, &live_object, BEFORE_FIRST_APPLY, now);
    }

    let id = ManagerId::new(manager, Operation::Apply, "", subresource);
    let (mut object, managed) =
        match scope.apply_once(&live_object, applied, managed.clone(), &id, force, now) {
            Ok(done) => done,
            Err(conflicts) if id.manager == last_applied::KUBECTL => {
                // Conflicts on fields kubectl's client-side applies set are not conflicts.
                let allowed =
                    last_applied::allowed_conflicts(scope.ty, &scope.api_version, &live_object);
                let remaining: OwnedConflicts = match &allowed {
                    Some(allowed) => {
                        conflicts.into_iter().filter(|(_, path)| !allowed.has(path)).collect()
                    }
                    None => conflicts,
                };
                if !remaining.is_empty() {
                    return Err(public_conflicts(remaining));
                }
                scope
                    .apply_once(&live_object, applied, managed, &id, true, now)
                    .map_err(public_conflicts)?
            }
            Err(conflicts) => return Err(public_conflicts(conflicts)),
        };
    if id.manager == last_applied::KUBECTL {
        last_applied::sync(&mut object, applied);
    }
    put_managed_fields(&mut object, &managed);
    Ok(object)
}

/// Records a non-apply write (create, update, patch) in `new`'s managedFields: the fields
/// that changed from `old` (all set fields on a create) become `manager`'s, with the
/// Update operation, and leave other managers' sets.
///
/// The managedFields tracked from are `new`'s when the client sent some (it may edit
/// them; `[]` or `[{}]` clears them), else `old`'s; on a subresource always `old`'s. An
/// existing object (`old` with a `uid`) that has none stays without them, as upstream
/// tracks such an object only from its first apply on. Call it after defaulting, as
/// upstream's defaults are applied before its field manager sees the object: the defaults
/// then belong to the writer.
pub fn track_update(
    resource: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
    now: &str,
) {
    if !new.is_object() {
        return;
    }
    let scope = Scope::new(resource, subresource);
    let mut old_object = old.cloned();
    let old_fields = old_object.as_mut().and_then(take_managed_fields);
    let new_fields = take_managed_fields(new);
    let from_old = || Managed::decode(old_fields.as_ref()).unwrap_or_default();
    let mut managed = if !subresource.is_empty() {
        from_old()
    } else if is_reset(new_fields.as_ref()) {
        Managed::default()
    } else {
        match Managed::decode(new_fields.as_ref()) {
            Ok(managed) if !managed.is_empty() => managed,
            _ => from_old(),
        }
    };
    let existing = old
        .and_then(|old| old.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .is_some_and(|uid| !uid.is_empty());
    if managed.is_empty() && existing {
        return;
    }
    let empty = scope.empty_object();
    scope.track(&mut managed, old_object.as_ref().unwrap_or(&empty), new, manager, now);
    put_managed_fields(new, &managed);
}

/// Upstream's 409 message, every manager printed as an Update manager of `api_version`
/// (`"kubectl-client-side-apply" using apps/v1`). Upstream prints an applier without the
/// version (`"kubectl"`) and names a subresource; [`conflict_message_in`] does, given the
/// object the apply was made to.
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> String {
    format_conflicts(conflicts, |conflict| format!("{:?} using {api_version}", conflict.manager))
}

/// Upstream's 409 message exactly: each manager described from its entry in `live`'s
/// managedFields (`"kubectl"`, `"kubelet" with subresource "status" using v1`,
/// `"kubectl-edit" using v1`). A manager not found there is described as an Update manager
/// of `api_version` (as the `before-first-apply` entry, which is made during the apply, is).
pub fn conflict_message_in(
    live: Option<&Value>,
    conflicts: &[Conflict],
    api_version: &str,
) -> String {
    let managed = live
        .and_then(|live| live.pointer("/metadata/managedFields"))
        .and_then(|fields| Managed::decode(Some(fields)).ok())
        .unwrap_or_default();
    format_conflicts(conflicts, |conflict| describe_manager(&managed, conflict, api_version))
}

/// One conflict's cause message in upstream's 409 (`conflict with "kubectl" `...), with the
/// manager described as [`conflict_message_in`] does.
pub fn conflict_cause_in(live: Option<&Value>, conflict: &Conflict, api_version: &str) -> String {
    let managed = live
        .and_then(|live| live.pointer("/metadata/managedFields"))
        .and_then(|fields| Managed::decode(Some(fields)).ok())
        .unwrap_or_default();
    format!("conflict with {}", describe_manager(&managed, conflict, api_version))
}

fn describe_manager(managed: &Managed, conflict: &Conflict, api_version: &str) -> String {
    let found = managed.entries.iter().find(|(id, entry)| {
        id.manager == conflict.manager
            && entry.set.paths().iter().any(|path| path_string(path) == conflict.field)
    });
    let (operation, version, subresource) = match found {
        Some((id, entry)) => (id.operation, entry.api_version.as_str(), id.subresource.as_str()),
        None => (Operation::Update, api_version, ""),
    };
    let mut out = format!("{:?}", conflict.manager);
    if !subresource.is_empty() {
        out.push_str(&format!(" with subresource {subresource:?}"));
    }
    if operation == Operation::Update {
        out.push_str(&format!(" using {version}"));
    }
    out
}

fn format_conflicts(conflicts: &[Conflict], describe: impl Fn(&Conflict) -> String) -> String {
    if let [conflict] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            describe(conflict),
            conflict.field
        );
    }
    // Grouped by manager, managers sorted, fields in the order given.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for conflict in conflicts {
        let manager = describe(conflict);
        match groups.iter_mut().find(|(name, _)| *name == manager) {
            Some((_, fields)) => fields.push(&conflict.field),
            None => groups.push((manager, vec![&conflict.field])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (manager, fields) in groups {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.into_iter().map(|field| format!("- {field}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

fn public_conflicts(conflicts: OwnedConflicts) -> ApplyError {
    ApplyError::Conflicts(
        conflicts
            .into_iter()
            .map(|(id, path)| Conflict { manager: id.manager, field: path_string(&path) })
            .collect(),
    )
}

/// `group/version, Kind=kind`, as Go prints a GroupVersionKind.
fn gvk_string(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}, Kind={kind}")
}

fn check_applied(
    resource: &ResourceType,
    live: Option<&Value>,
    applied: &Value,
) -> Result<(), ApplyError> {
    let Value::Object(config) = applied else {
        return Err(ApplyError::Invalid("the applied configuration must be an object".into()));
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_owned();
    let api_version = text(config.get("apiVersion"));
    let kind = text(config.get("kind"));
    if api_version != resource.api_version() || kind != resource.kind {
        let (group, version) = match api_version.split('/').collect::<Vec<_>>()[..] {
            [version] => ("", version),
            [group, version] => (group, version),
            _ => ("", ""),
        };
        return Err(ApplyError::Invalid(format!(
            "invalid object type: {}",
            gvk_string(group, version, &kind)
        )));
    }
    let metadata = config.get("metadata");
    if metadata.and_then(|metadata| metadata.get("managedFields")).is_some_and(Value::is_array) {
        return Err(ApplyError::Invalid("metadata.managedFields must be nil".into()));
    }
    let name = text(metadata.and_then(|metadata| metadata.get("name")));
    match live {
        Some(live) => {
            let live_name = text(live.pointer("/metadata/name"));
            if name != live_name {
                return Err(ApplyError::Invalid(format!(
                    "the name of the object ({name}) does not match the name on the URL ({live_name})"
                )));
            }
        }
        None if name.is_empty() => {
            return Err(ApplyError::Invalid(
                "metadata.name: Required value: name is required".into(),
            ));
        }
        None => {}
    }
    Ok(())
}

/// Removes `metadata.managedFields` from an object, returning it.
fn take_managed_fields(object: &mut Value) -> Option<Value> {
    object.get_mut("metadata")?.as_object_mut()?.shift_remove("managedFields")
}

fn put_managed_fields(object: &mut Value, managed: &Managed) {
    let Value::Object(map) = object else { return };
    let metadata = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else { return };
    match managed.encode() {
        Some(list) => {
            metadata.insert("managedFields".to_owned(), list);
        }
        None => {
            metadata.shift_remove("managedFields");
        }
    }
}

/// Upstream's reset of managedFields by a client: an empty list, or one empty entry.
fn is_reset(fields: Option<&Value>) -> bool {
    match fields {
        Some(Value::Array(items)) => match &items[..] {
            [] => true,
            [Value::Object(entry)] => entry.is_empty(),
            _ => false,
        },
        _ => false,
    }
}

/// The fields nobody owns as a manager: upstream's `stripMeta`. Exact paths: `metadata`
/// itself is stripped, `metadata.labels` is not.
fn server_owned() -> Set {
    let mut set = Set::default();
    for field in ["apiVersion", "kind", "metadata"] {
        set.insert(&[PathElement::field(field)]);
    }
    for field in ["name", "managedFields"].into_iter().chain(SERVER_METADATA) {
        set.insert(&[PathElement::field("metadata"), PathElement::field(field)]);
    }
    set
}

/// The metadata the server sets, besides the name.
const SERVER_METADATA: [&str; 7] = [
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "resourceVersion",
];

/// A configuration's explicit null does not erase server-set metadata (`kubectl create
/// --dry-run -o yaml` writes `creationTimestamp: null`): upstream's update rules put the
/// stored values back.
fn keep_server_metadata(object: &mut Value, live: &Value) {
    let (Some(Value::Object(metadata)), Some(Value::Object(stored))) =
        (object.get_mut("metadata"), live.get("metadata"))
    else {
        return;
    };
    for field in SERVER_METADATA {
        if metadata.get(field).is_some_and(Value::is_null)
            && let Some(value) = stored.get(field).filter(|value| !value.is_null())
        {
            metadata.insert(field.to_owned(), value.clone());
        }
    }
}

/// Which part of the object a write may concern: upstream's reset fields, reduced to the
/// spec/status split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    Nothing,
    /// The main resource of a kind with a status subresource.
    Status,
    /// The status subresource.
    AllButStatus,
}

impl Reset {
    fn filter(self, set: &Set) -> Set {
        match self {
            Reset::Nothing => set.clone(),
            Reset::Status => set.without_field("status"),
            Reset::AllButStatus => set.only_field("status"),
        }
    }

    /// Puts back what the write may not change.
    fn restore(self, object: &mut Value, live: &Value) {
        let status = match self {
            Reset::Nothing => return,
            Reset::Status => live.get("status").cloned(),
            Reset::AllButStatus => {
                let status = object.get("status").cloned();
                *object = live.clone();
                status
            }
        };
        if let Value::Object(map) = object {
            match status {
                Some(status) => {
                    map.insert("status".to_owned(), status);
                }
                None => {
                    map.shift_remove("status");
                }
            }
        }
    }
}

/// One write's circumstances.
struct Scope {
    ty: Ty,
    api_version: String,
    subresource: String,
    reset: Reset,
    /// The root has struct fields `metadata`, `spec`, `status` (or no schema).
    skeleton: Vec<&'static str>,
}

impl Scope {
    fn new(resource: &ResourceType, subresource: &str) -> Scope {
        let schema = crate::openapi::schema_of(resource);
        let ty = schema.map_or(Ty::DeducedRoot, Ty::Schema);
        let has_status = resource.subresource("status").is_some();
        let reset = match subresource {
            "status" => Reset::AllButStatus,
            "" if has_status => Reset::Status,
            _ => Reset::Nothing,
        };
        let skeleton = ["metadata", "spec", "status"]
            .into_iter()
            .filter(|field| {
                schema.is_some_and(|schema| schema.field(field).is_some_and(|f| f.is_struct()))
            })
            .collect();
        Scope {
            ty,
            api_version: resource.api_version(),
            subresource: subresource.to_owned(),
            reset,
            skeleton,
        }
    }

    /// What a create is compared against: the kind's empty object, with its top-level
    /// structs present (as in upstream's Go zero value), so that they are not marked as
    /// created themselves.
    fn empty_object(&self) -> Value {
        Value::Object(self.skeleton.iter().map(|field| ((*field).to_owned(), json!({}))).collect())
    }

    fn comparison(&self, old: &Value, new: &Value) -> Comparison {
        typed::compare(self.ty, Some(old), Some(new)).filter(|set| self.reset.filter(set))
    }

    /// An Update by `manager`: upstream's managedFieldsUpdater around the structured
    /// merge's Update, then the cap on Update entries.
    fn track(&self, managed: &mut Managed, old: &Value, new: &Value, manager: &str, now: &str) {
        let comparison = self.comparison(old, new);
        // Everyone (the writer's own entry included) loses what changed or went away.
        let _ = take_over(managed, &comparison, None, true);
        let taken =
            comparison.changed().difference(&comparison.removed).difference(&server_owned());
        if !taken.is_empty() {
            let id =
                ManagerId::new(manager, Operation::Update, &self.api_version, &self.subresource);
            let entry = managed.entries.entry(id).or_insert_with(|| Entry {
                set: Set::default(),
                api_version: self.api_version.clone(),
                time: None,
            });
            entry.set.union_with(&taken);
            entry.api_version = self.api_version.clone();
            entry.time = Some(now.to_owned());
        }
        managed.cap_update_managers();
    }

    /// One apply attempt: the structured merge's Apply with upstream's managers around it.
    /// Conflicts come back as (owner, field) pairs, in owner then field order.
    fn apply_once(
        &self,
        live: &Value,
        applied: &Value,
        mut managed: Managed,
        id: &ManagerId,
        force: bool,
        now: &str,
    ) -> Result<(Value, Managed), OwnedConflicts> {
        let mut object = typed::merge(self.ty, live, applied);
        let last = managed.entries.get(id).map(|entry| entry.set.clone());
        let time = managed.entries.get(id).and_then(|entry| entry.time.clone());
        let applied_fields = self.reset.filter(&typed::field_set(self.ty, applied));
        managed.entries.insert(
            id.clone(),
            Entry { set: applied_fields, api_version: self.api_version.clone(), time },
        );
        if let Some(last) = last.filter(|last| !last.is_empty()) {
            typed::prune(self.ty, &mut object, &last, &managed.all_fields());
        }
        let comparison = self.comparison(live, &object);
        take_over(&mut managed, &comparison, Some(id), force)?;
        if let Some(entry) = managed.entries.get_mut(id) {
            entry.set = entry.set.difference(&server_owned());
        }
        managed.drop_empty();

        keep_server_metadata(&mut object, live);
        typed::drop_new_nulls(&mut object, Some(live));
        self.reset.restore(&mut object, live);
        if object != *live
            && let Some(entry) = managed.entries.get_mut(id)
        {
            entry.time = Some(now.to_owned());
        }
        Ok((object, managed))
    }
}

/// Upstream's `Updater.update`: every manager but `writer` owning a changed field is in
/// conflict; without `force` that fails, with it they lose those fields. Every manager
/// but `writer` loses the removed fields. Empty entries are dropped.
fn take_over(
    managed: &mut Managed,
    comparison: &Comparison,
    writer: Option<&ManagerId>,
    force: bool,
) -> Result<(), OwnedConflicts> {
    let changed = comparison.changed();
    let mut conflicts = Vec::new();
    for (id, entry) in &managed.entries {
        if Some(id) == writer {
            continue;
        }
        let shared = entry.set.intersection(&changed);
        if !shared.is_empty() {
            conflicts.push((id.clone(), shared));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts
            .into_iter()
            .flat_map(|(id, set)| set.paths().into_iter().map(move |path| (id.clone(), path)))
            .collect());
    }
    for (id, entry) in managed.entries.iter_mut() {
        if Some(id) == writer {
            continue;
        }
        entry.set = entry.set.difference(&changed).difference(&comparison.removed);
    }
    managed.drop_empty();
    Ok(())
}
