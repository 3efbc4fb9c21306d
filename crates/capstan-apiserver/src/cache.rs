//! The watch cache: every object in memory, fed by ONE datastore watch over all keys, so that
//! lists and watches are served without touching the datastore.
//!
//! The cache keeps, per resource type, the current objects and a bounded history of recent
//! events. A watch from resourceVersion N is served from that history when the cache holds
//! every event of the type after N; otherwise it is too old (410 Expired), as upstream. A
//! consistent read first waits until the cache has seen the datastore's current revision.
//!
//! **Invariant:** events reach the history and the broadcast in revision order, and the
//! cache's published revision only moves after the events up to it were broadcast, so a
//! watcher that has drained its channel has seen everything up to that revision.

use crate::keys;
use bytes::Bytes;
use capstan_store::{
    EventKind, RangeRequest, Revision, Store, StoreError, WatchRequest, WatchResponse,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};

/// How many recent events of one type the cache keeps for watches that resume.
const HISTORY_PER_TYPE: usize = 10_000;
/// How many events may wait for a slow watcher before it is cut off (it resumes from history).
const BROADCAST_CAPACITY: usize = 4096;
/// How long a read waits for the cache before asking the datastore for a progress report.
const PROGRESS_AFTER: Duration = Duration::from_millis(30);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change of one object, as watchers receive it.
#[derive(Debug)]
pub(crate) struct CachedEvent {
    pub(crate) revision: Revision,
    pub(crate) change: Change,
    pub(crate) key: String,
    /// The object after the change; for a deletion, its last state with the deletion's
    /// resourceVersion, as upstream sends it.
    pub(crate) object: Arc<Value>,
    /// The object before the change, so a filtered watch can tell an object leaving its
    /// selection (sent as DELETED) from one entering it (ADDED).
    pub(crate) previous: Option<Arc<Value>>,
}

/// One resource type's objects and recent history.
#[derive(Debug)]
struct TypeCache {
    objects: BTreeMap<String, Arc<Value>>,
    /// Each object's JSON as served, written once per change so that lists copy bytes
    /// instead of serialising every object for every list.
    json: HashMap<String, Bytes>,
    history: VecDeque<Arc<CachedEvent>>,
    /// The revision of the newest event dropped from `history`: watches from before it are
    /// too old.
    dropped_through: Revision,
    sender: broadcast::Sender<Arc<CachedEvent>>,
}

impl TypeCache {
    fn new() -> Self {
        TypeCache {
            objects: BTreeMap::new(),
            json: HashMap::new(),
            history: VecDeque::new(),
            dropped_through: 0,
            sender: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Every event up to this revision is in the cache.
    revision: Revision,
    /// The revision the cache was (re)filled at: it has no history from before it.
    filled_at: Revision,
    types: HashMap<String, TypeCache>,
}

/// A snapshot of a type's objects, with the subscription that continues it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) objects: Vec<Arc<Value>>,
    pub(crate) revision: Revision,
}

/// Where a watch starts.
#[derive(Debug)]
pub(crate) enum WatchStart {
    /// The current objects (sent as synthetic ADDED events), then changes after them.
    Snapshot(Snapshot),
    /// The events after the requested revision that the history holds.
    History(Vec<Arc<CachedEvent>>),
}

/// Why a watch cannot start where it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooOld {
    pub(crate) requested: Revision,
    pub(crate) oldest: Revision,
}

#[derive(Debug)]
pub(crate) struct WatchCache {
    state: RwLock<State>,
    revision: watch::Sender<Revision>,
    progress_wanted: Notify,
}

impl WatchCache {
    /// Starts filling the cache from `store` and keeping it current; the returned task ends
    /// only when aborted.
    pub(crate) fn start(store: Arc<dyn Store>) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let cache = Arc::new(WatchCache {
            state: RwLock::new(State::default()),
            revision: watch::channel(0).0,
            progress_wanted: Notify::new(),
        });
        let task = tokio::spawn(Arc::clone(&cache).feed_forever(store));
        (cache, task)
    }

    /// The revision up to which the cache holds every event.
    pub(crate) fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has seen `revision`, asking the datastore for a progress report
    /// when no events arrive to move it. Gives up after `patience`.
    pub(crate) async fn wait_for(&self, revision: Revision, patience: Duration) -> bool {
        let mut receiver = self.revision.subscribe();
        let reached = |r: &Revision| *r >= revision;
        if tokio::time::timeout(PROGRESS_AFTER, receiver.wait_for(reached)).await.is_ok() {
            return true;
        }
        self.progress_wanted.notify_one();
        matches!(tokio::time::timeout(patience, receiver.wait_for(reached)).await, Ok(Ok(_)))
    }

    /// The objects under `prefix` (a type, or a type in one namespace) that `keep` selects.
    pub(crate) fn list(&self, prefix: &str, keep: impl Fn(&Value) -> bool) -> Snapshot {
        let state = self.read();
        let objects = match state.types.get(type_of(prefix)) {
            Some(cache) => cache
                .objects
                .range(prefix.to_owned()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .filter(|(_, object)| keep(object))
                .map(|(_, object)| Arc::clone(object))
                .collect(),
            None => Vec::new(),
        };
        Snapshot { objects, revision: state.revision }
    }

    /// Like `list`, with each selected object's JSON as served, in the same order.
    pub(crate) fn list_with_json(
        &self,
        prefix: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> (Snapshot, Vec<Bytes>) {
        let state = self.read();
        let mut objects = Vec::new();
        let mut json = Vec::new();
        if let Some(cache) = state.types.get(type_of(prefix)) {
            let selected = cache
                .objects
                .range(prefix.to_owned()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .filter(|(_, object)| keep(object));
            for (key, object) in selected {
                objects.push(Arc::clone(object));
                json.push(cache.json.get(key).cloned().unwrap_or_else(|| serialize(object)));
            }
        }
        (Snapshot { objects, revision: state.revision }, json)
    }

    /// One object, as of the cache's revision.
    pub(crate) fn get(&self, key: &str) -> (Option<Arc<Value>>, Revision) {
        let state = self.read();
        let object = keys::type_prefix_of(key)
            .and_then(|prefix| state.types.get(prefix))
            .and_then(|cache| cache.objects.get(key).cloned());
        (object, state.revision)
    }

    /// Subscribes to a type's events and says where the watch starts: after `from` when
    /// given, else at a snapshot of `prefix`. The receiver yields exactly the events after
    /// the start (taken under the same lock), for every key of the type: the caller filters
    /// by `prefix`.
    pub(crate) fn watch(
        &self,
        prefix: &str,
        from: Option<Revision>,
    ) -> Result<(WatchStart, Revision, broadcast::Receiver<Arc<CachedEvent>>), TooOld> {
        let mut state = self.write();
        let (revision, filled_at) = (state.revision, state.filled_at);
        let cache = state.types.entry(type_of(prefix).to_owned()).or_insert_with(TypeCache::new);
        let receiver = cache.sender.subscribe();
        let start = match from {
            None => WatchStart::Snapshot(Snapshot {
                objects: cache
                    .objects
                    .range(prefix.to_owned()..)
                    .take_while(|(key, _)| key.starts_with(prefix))
                    .map(|(_, object)| Arc::clone(object))
                    .collect(),
                revision,
            }),
            Some(from) => {
                let oldest = filled_at.max(cache.dropped_through);
                if from < oldest {
                    return Err(TooOld { requested: from, oldest });
                }
                WatchStart::History(
                    cache
                        .history
                        .iter()
                        .filter(|event| event.revision > from && event.key.starts_with(prefix))
                        .cloned()
                        .collect(),
                )
            }
        };
        Ok((start, revision, receiver))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that
        // matters more than stopping service would, so a poisoned lock is used as is.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn feed_forever(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            let error = self.feed(store.as_ref()).await;
            tracing::warn!(%error, "the watch cache lost the datastore watch; refilling");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Fills the cache with one consistent range, then follows one watch from there. Returns
    /// only when the watch fails.
    async fn feed(&self, store: &dyn Store) -> StoreError {
        let (objects, revision) = match load_all(store).await {
            Ok(loaded) => loaded,
            Err(error) => return error,
        };
        self.refill(objects, revision);
        let mut watcher = match store.watch(WatchRequest::prefix("/", revision + 1)).await {
            Ok(watcher) => watcher,
            Err(error) => return error,
        };
        tracing::debug!(revision, "watch cache filled");
        loop {
            let response = tokio::select! {
                response = watcher.next() => response,
                () = self.progress_wanted.notified() => {
                    watcher.request_progress();
                    continue;
                }
            };
            match response {
                None => return StoreError::Closed,
                Some(Err(error)) => return error,
                Some(Ok(WatchResponse::Progress(revision))) => self.advance(revision),
                Some(Ok(WatchResponse::Events(events))) => {
                    let Some(last) = events.last().map(capstan_store::Event::revision) else {
                        continue;
                    };
                    let decoded: Vec<_> = events.into_iter().filter_map(decode_event).collect();
                    self.apply(decoded, last);
                }
            }
        }
    }

    /// Replaces everything with a fresh load. Watchers of the old contents are cut off
    /// (their channels close) and resume from the new history or relist.
    fn refill(&self, objects: Vec<(String, Value)>, revision: Revision) {
        let objects: Vec<(String, Value, Bytes)> = objects
            .into_iter()
            .map(|(key, object)| {
                let json = serialize(&object);
                (key, object, json)
            })
            .collect();
        let mut state = self.write();
        state.types.clear();
        for (key, object, json) in objects {
            let Some(prefix) = keys::type_prefix_of(&key) else { continue };
            let cache = state.types.entry(prefix.to_owned()).or_insert_with(TypeCache::new);
            cache.json.insert(key.clone(), json);
            cache.objects.insert(key, Arc::new(object));
        }
        state.filled_at = revision;
        state.revision = revision;
        drop(state);
        self.revision.send_replace(revision);
    }

    /// Applies one batch of events and moves the revision to `last` in the same critical
    /// section, so a snapshot's revision always covers exactly the events it reflects.
    fn apply(&self, events: Vec<Decoded>, last: Revision) {
        let mut state = self.write();
        for event in events {
            let Some(prefix) = keys::type_prefix_of(&event.key) else { continue };
            let cache = state.types.entry(prefix.to_owned()).or_insert_with(TypeCache::new);
            let previous = cache.objects.get(&event.key).cloned();
            let (change, object) = match event.object {
                Some(object) => {
                    let object = Arc::new(object);
                    if let Some(json) = event.json {
                        cache.json.insert(event.key.clone(), json);
                    }
                    cache.objects.insert(event.key.clone(), Arc::clone(&object));
                    let change = if previous.is_some() { Change::Modified } else { Change::Added };
                    (change, object)
                }
                None => {
                    cache.objects.remove(&event.key);
                    cache.json.remove(&event.key);
                    let Some(last) = previous.as_deref() else { continue };
                    let mut last = last.clone();
                    set_resource_version(&mut last, event.revision);
                    (Change::Deleted, Arc::new(last))
                }
            };
            let event = Arc::new(CachedEvent {
                revision: event.revision,
                change,
                key: event.key,
                object,
                previous,
            });
            if cache.history.len() == HISTORY_PER_TYPE
                && let Some(dropped) = cache.history.pop_front()
            {
                cache.dropped_through = dropped.revision;
            }
            cache.history.push_back(Arc::clone(&event));
            // No receivers is fine: nobody watches this type.
            let _ = cache.sender.send(event);
        }
        if last > state.revision {
            state.revision = last;
            drop(state);
            self.revision.send_replace(last);
        }
    }

    fn advance(&self, revision: Revision) {
        let mut state = self.write();
        if revision > state.revision {
            state.revision = revision;
            drop(state);
            self.revision.send_replace(revision);
        }
    }
}

/// The prefix of the type a list prefix belongs to.
fn type_of(prefix: &str) -> &str {
    keys::type_prefix_of(prefix).unwrap_or(prefix)
}

/// One datastore event, decoded outside the cache's lock.
struct Decoded {
    key: String,
    revision: Revision,
    /// `None` for a deletion.
    object: Option<Value>,
    /// The object's JSON as served.
    json: Option<Bytes>,
}

fn decode_event(event: capstan_store::Event) -> Option<Decoded> {
    let revision = event.revision();
    let object = match event.kind {
        EventKind::Delete => None,
        EventKind::Put => Some(decode(&event.kv.key, &event.kv.value, revision)?),
    };
    let json = object.as_ref().map(serialize);
    Some(Decoded { key: event.kv.key, revision, object, json })
}

/// A stored object with its resourceVersion (the revision that last wrote it) filled in.
pub(crate) fn decode(key: &str, value: &[u8], revision: Revision) -> Option<Value> {
    match serde_json::from_slice::<Value>(value) {
        Ok(mut object) if object.is_object() => {
            set_resource_version(&mut object, revision);
            Some(object)
        }
        Ok(_) | Err(_) => {
            tracing::warn!(key, "skipping a stored value that is not a JSON object");
            None
        }
    }
}

/// An object as a list item: compact JSON.
fn serialize(object: &Value) -> Bytes {
    Bytes::from(object.to_string())
}

pub(crate) fn set_resource_version(object: &mut Value, revision: Revision) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// Every object in the datastore at one revision, read in pages.
async fn load_all(store: &dyn Store) -> Result<(Vec<(String, Value)>, Revision), StoreError> {
    let mut objects = Vec::new();
    let mut request = RangeRequest { prefix: "/".into(), limit: Some(5000), ..Default::default() };
    loop {
        let page = store.range(request.clone()).await?;
        for kv in page.kvs {
            if let Some(object) = decode(&kv.key, &kv.value, kv.mod_revision) {
                objects.push((kv.key, object));
            }
        }
        match page.next {
            Some(next) => {
                request.start = Some(next);
                request.revision = Some(page.revision);
            }
            None => return Ok((objects, page.revision)),
        }
    }
}
