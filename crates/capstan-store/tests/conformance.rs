//! The Store conformance suite: every case runs, unchanged, against the embedded backend and
//! against a real etcd (Debian's etcd-server on free loopback ports).

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use capstan_store::{
    EmbeddedConfig, EmbeddedStore, EtcdConfig, EtcdStore, Event, EventKind, KeyValue,
    MAX_VALUE_BYTES, RangeRequest, Revision, Store, StoreError, WatchRequest, WatchResponse,
    Watcher,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// How long a case waits for an expected watch item before failing.
const WAIT: Duration = Duration::from_secs(15);

/// A store under test with whatever keeps it alive (its directory, its etcd process).
struct Backend {
    store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Result<Backend> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("state.db"))).await?;
    Ok(Backend { store: Arc::new(store), _keep: Box::new(dir) })
}

async fn etcd() -> Result<Backend> {
    let server = tokio::task::spawn_blocking(capstan_testkit::EtcdServer::start).await??;
    let mut config = EtcdConfig::new(vec![server.client_url()]);
    config.prefix = "/capstan-conformance".into();
    let store = EtcdStore::connect(config).await?;
    Ok(Backend { store: Arc::new(store), _keep: Box::new(server) })
}

/// Declares each case once per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = super::embedded().await?;
                    super::$case(&*backend.store).await
                }
            )*
        }
        mod etcd_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = super::etcd().await?;
                    super::$case(&*backend.store).await
                }
            )*
        }
    };
}

conformance!(
    create_if_absent,
    update_is_guarded_by_revision,
    delete_is_guarded_by_revision,
    failed_writes_take_no_revision,
    get_at_past_revisions,
    range_pages_at_one_consistent_revision,
    watch_reports_every_kind_of_change_with_previous_values,
    watch_from_revision_is_exact_while_eight_writers_run,
    a_slow_watcher_still_gets_every_event,
    racing_updates_of_one_revision_let_exactly_one_win,
    an_empty_store_is_at_revision_one,
    guarded_writes_expecting_revision_zero_never_create,
    lease_ids_are_never_reused,
    revision_zero_means_now,
    watch_and_reads_below_compaction_are_expired,
    progress_notifications_report_delivered_revision,
    lease_expiry_deletes_attached_keys,
    lease_revoke_deletes_attached_keys,
    values_up_to_the_limit_are_stored_and_larger_refused,
    current_revision_is_consistent,
);

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn next_item(watcher: &mut Watcher) -> Result<WatchResponse> {
    match timeout(WAIT, watcher.next()).await {
        Err(_) => bail!("no watch item within {WAIT:?}"),
        Ok(None) => bail!("watch ended"),
        Ok(Some(item)) => Ok(item?),
    }
}

/// Collects events until one at `last` (or later) arrives, skipping progress notifications.
async fn events_through(watcher: &mut Watcher, last: Revision) -> Result<Vec<Event>> {
    let mut events: Vec<Event> = Vec::new();
    while events.last().is_none_or(|event| event.revision() < last) {
        if let WatchResponse::Events(batch) = next_item(watcher).await? {
            ensure!(!batch.is_empty(), "an empty event batch");
            events.extend(batch);
        }
    }
    Ok(events)
}

async fn create_if_absent(store: &dyn Store) -> Result<()> {
    let before = store.current_revision().await?;
    let created = store.create("/things/a", value("one"), None).await?;
    ensure!(created.mod_revision > before, "revision did not advance");
    ensure!(created.create_revision == created.mod_revision);
    ensure!(created.value == value("one") && created.key == "/things/a" && created.lease.is_none());

    match store.create("/things/a", value("two"), None).await {
        Err(StoreError::AlreadyExists { key, current }) => {
            ensure!(key == "/things/a");
            ensure!(*current == created, "conflict carries {current:?}, not {created:?}");
        }
        other => bail!("second create: {other:?}"),
    }
    let (read, _) = store.get("/things/a", None).await?;
    ensure!(read.as_ref() == Some(&created), "read back {read:?}");
    let (absent, _) = store.get("/things/b", None).await?;
    ensure!(absent.is_none());
    Ok(())
}

async fn update_is_guarded_by_revision(store: &dyn Store) -> Result<()> {
    let created = store.create("/things/a", value("v1"), None).await?;
    let updated = store.update("/things/a", value("v2"), created.mod_revision, None).await?;
    ensure!(updated.mod_revision > created.mod_revision);
    ensure!(updated.create_revision == created.create_revision, "create revision changed");
    ensure!(updated.value == value("v2"));

    match store.update("/things/a", value("stale"), created.mod_revision, None).await {
        Err(StoreError::Conflict { key, expected, current }) => {
            ensure!(key == "/things/a" && expected == created.mod_revision);
            ensure!(*current == updated, "conflict carries {current:?}, not {updated:?}");
        }
        other => bail!("stale update: {other:?}"),
    }
    match store.update("/things/missing", value("x"), 1, None).await {
        Err(StoreError::NotFound { key }) => ensure!(key == "/things/missing"),
        other => bail!("update of a missing key: {other:?}"),
    }
    let (read, _) = store.get("/things/a", None).await?;
    ensure!(read == Some(updated), "the failed update changed the value");
    Ok(())
}

async fn delete_is_guarded_by_revision(store: &dyn Store) -> Result<()> {
    let created = store.create("/things/a", value("v1"), None).await?;
    let updated = store.update("/things/a", value("v2"), created.mod_revision, None).await?;
    match store.delete("/things/a", Some(created.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => ensure!(*current == updated),
        other => bail!("stale delete: {other:?}"),
    }
    let deleted = store.delete("/things/a", Some(updated.mod_revision)).await?;
    ensure!(deleted.revision > updated.mod_revision);
    ensure!(deleted.prev == updated, "delete reports {:?}", deleted.prev);
    ensure!(store.get("/things/a", None).await?.0.is_none(), "deleted key still readable");
    match store.delete("/things/a", None).await {
        Err(StoreError::NotFound { key }) => ensure!(key == "/things/a"),
        other => bail!("delete of a deleted key: {other:?}"),
    }
    // An unguarded delete removes whatever is there.
    store.create("/things/b", value("b"), None).await?;
    let deleted = store.delete("/things/b", None).await?;
    ensure!(deleted.prev.value == value("b"));
    // The key can be created again, with a new create revision.
    let again = store.create("/things/a", value("v3"), None).await?;
    ensure!(
        again.create_revision == again.mod_revision && again.create_revision > deleted.revision
    );
    Ok(())
}

async fn failed_writes_take_no_revision(store: &dyn Store) -> Result<()> {
    let created = store.create("/things/a", value("v1"), None).await?;
    let _ = store.create("/things/a", value("again"), None).await;
    let _ = store.update("/things/a", value("stale"), created.mod_revision - 1, None).await;
    let _ = store.delete("/things/a", Some(created.mod_revision + 100)).await;
    let _ = store.delete("/things/missing", None).await;
    ensure!(
        store.current_revision().await? == created.mod_revision,
        "a failed write took a revision"
    );
    let next = store.create("/things/b", value("b"), None).await?;
    ensure!(next.mod_revision == created.mod_revision + 1, "revisions are not consecutive");
    Ok(())
}

async fn get_at_past_revisions(store: &dyn Store) -> Result<()> {
    let v1 = store.create("/things/a", value("v1"), None).await?;
    let v2 = store.update("/things/a", value("v2"), v1.mod_revision, None).await?;
    let other = store.create("/things/b", value("b"), None).await?;
    let deleted = store.delete("/things/a", None).await?;

    let at = |revision| store.get("/things/a", Some(revision));
    ensure!(at(v1.mod_revision - 1).await?.0.is_none(), "value before its creation");
    let (read, observed) = at(v1.mod_revision).await?;
    ensure!(read == Some(v1.clone()) && observed == v1.mod_revision, "at v1: {read:?} @{observed}");
    ensure!(at(v2.mod_revision).await?.0 == Some(v2.clone()));
    ensure!(at(other.mod_revision).await?.0 == Some(v2.clone()), "between writes");
    ensure!(at(deleted.revision).await?.0.is_none(), "value after its deletion");
    match at(deleted.revision + 10).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            ensure!(requested == deleted.revision + 10 && current >= deleted.revision);
        }
        other => bail!("read at a future revision: {other:?}"),
    }
    Ok(())
}

async fn range_pages_at_one_consistent_revision(store: &dyn Store) -> Result<()> {
    let mut expected = BTreeMap::new();
    for i in 0..25 {
        let key = format!("/r/item-{i:02}");
        let kv = store.create(&key, value(&format!("v{i}")), None).await?;
        expected.insert(key, kv);
    }
    // Neighbours that share a byte prefix but not the key prefix.
    store.create("/q", value("before"), None).await?;
    store.create("/r0", value("after"), None).await?;
    store.create("/r", value("the prefix itself without its slash"), None).await?;

    let first = store
        .range(RangeRequest { prefix: "/r/".into(), limit: Some(10), ..Default::default() })
        .await?;
    ensure!(first.kvs.len() == 10 && first.next.is_some(), "first page: {} keys", first.kvs.len());
    // Change the range between pages: the later pages must not see it.
    let changed = store
        .update("/r/item-15", value("changed"), expected["/r/item-15"].mod_revision, None)
        .await?;
    store.delete("/r/item-20", None).await?;
    store.create("/r/item-12b", value("new"), None).await?;

    let mut seen: Vec<KeyValue> = first.kvs.clone();
    let mut next = first.next.clone();
    while let Some(start) = next {
        let page = store
            .range(RangeRequest {
                prefix: "/r/".into(),
                start: Some(start),
                limit: Some(10),
                revision: Some(first.revision),
            })
            .await?;
        ensure!(page.revision == first.revision, "page observed another revision");
        ensure!(page.kvs.len() <= 10);
        seen.extend(page.kvs);
        next = page.next;
    }
    let seen_map: BTreeMap<String, KeyValue> =
        seen.iter().map(|kv| (kv.key.clone(), kv.clone())).collect();
    ensure!(seen.len() == seen_map.len(), "a key was listed twice");
    ensure!(seen_map == expected, "the pages differ from the state at the first page's revision");
    ensure!(seen.windows(2).all(|pair| pair[0].key < pair[1].key), "not in key order");

    // A fresh read sees the changes.
    let now = store.range(RangeRequest { prefix: "/r/".into(), ..Default::default() }).await?;
    ensure!(now.next.is_none() && now.kvs.len() == 25, "{} keys now", now.kvs.len());
    ensure!(now.kvs.contains(&changed));
    ensure!(now.kvs.iter().all(|kv| kv.key != "/r/item-20"));
    ensure!(now.revision >= changed.mod_revision);
    // A limit that exactly fits leaves no next page.
    let exact = store
        .range(RangeRequest { prefix: "/r/".into(), limit: Some(25), ..Default::default() })
        .await?;
    ensure!(exact.kvs.len() == 25 && exact.next.is_none(), "exact limit: next {:?}", exact.next);
    Ok(())
}

async fn watch_reports_every_kind_of_change_with_previous_values(store: &dyn Store) -> Result<()> {
    let start = store.current_revision().await? + 1;
    let mut watcher = store.watch(WatchRequest::key("/w/a", start)).await?;
    let v1 = store.create("/w/a", value("v1"), None).await?;
    store.create("/w/a-sibling", value("not watched"), None).await?;
    let v2 = store.update("/w/a", value("v2"), v1.mod_revision, None).await?;
    let deleted = store.delete("/w/a", None).await?;
    let events = events_through(&mut watcher, deleted.revision).await?;
    ensure!(events.len() == 3, "events: {events:?}");
    ensure!(events[0].kind == EventKind::Put && events[0].kv == v1 && events[0].prev.is_none());
    ensure!(events[1].kind == EventKind::Put && events[1].kv == v2 && events[1].prev == Some(v1));
    ensure!(events[2].kind == EventKind::Delete && events[2].kv.key == "/w/a");
    ensure!(events[2].kv.mod_revision == deleted.revision && events[2].kv.value.is_empty());
    ensure!(events[2].prev == Some(v2), "delete's previous value: {:?}", events[2].prev);
    Ok(())
}

async fn watch_from_revision_is_exact_while_eight_writers_run(store: &dyn Store) -> Result<()> {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 40;
    // Every acknowledged write: (revision, key, kind).
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(Revision, String, EventKind)>();
    let store_ptr: &dyn Store = store;
    // Scoped writers: each creates, updates and deletes its own keys, plus noise outside the
    // watched prefix.
    let write_all = async {
        let writers = (0..WRITERS).map(|writer| {
            let acks = acks.clone();
            async move {
                for round in 0..ROUNDS {
                    let key = format!("/w/{writer}/{round}");
                    let kv = store_ptr.create(&key, value("v1"), None).await?;
                    acks.send((kv.mod_revision, key.clone(), EventKind::Put))?;
                    let kv = store_ptr.update(&key, value("v2"), kv.mod_revision, None).await?;
                    acks.send((kv.mod_revision, key.clone(), EventKind::Put))?;
                    if round % 3 == 0 {
                        let deleted = store_ptr.delete(&key, Some(kv.mod_revision)).await?;
                        acks.send((deleted.revision, key, EventKind::Delete))?;
                    }
                    store_ptr.create(&format!("/x/{writer}/{round}"), value("noise"), None).await?;
                }
                anyhow::Ok(())
            }
        });
        futures_join_all(writers).await
    };
    // Start the watch in the middle of the writes, from a revision some writes are below.
    let watch_midway = async {
        loop {
            let current = store.current_revision().await?;
            if current > 100 {
                let from = current - 50;
                return anyhow::Ok((from, store.watch(WatchRequest::prefix("/w/", from)).await?));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (written, watched) = tokio::join!(write_all, watch_midway);
    written?;
    let (from, mut watcher) = watched?;
    drop(acks);
    let mut expected = Vec::new();
    while let Some(ack) = acked.recv().await {
        if ack.0 >= from {
            expected.push(ack);
        }
    }
    expected.sort_by_key(|ack| ack.0);
    let last = expected.last().context("no write at or above the watch's start")?.0;
    let got: Vec<(Revision, String, EventKind)> = events_through(&mut watcher, last)
        .await?
        .into_iter()
        .map(|event| (event.revision(), event.kv.key, event.kind))
        .collect();
    ensure!(got.windows(2).all(|pair| pair[0].0 < pair[1].0), "events out of order or duplicated");
    ensure!(
        got.len() == expected.len(),
        "{} events delivered, {} expected",
        got.len(),
        expected.len()
    );
    ensure!(got == expected, "delivered events differ from the acknowledged writes");
    // Nothing more arrives for the watched prefix.
    watcher.request_progress();
    match next_item(&mut watcher).await? {
        WatchResponse::Progress(revision) => ensure!(revision >= last),
        WatchResponse::Events(extra) => bail!("unexpected extra events: {extra:?}"),
    }
    Ok(())
}

async fn a_slow_watcher_still_gets_every_event(store: &dyn Store) -> Result<()> {
    // More commits than any buffer between the store and a watcher holds, while the watcher
    // reads nothing; then it reads everything.
    const WRITES: usize = 3000;
    let start = store.current_revision().await? + 1;
    let mut watcher = store.watch(WatchRequest::prefix("/slow/", start)).await?;
    let mut expected = Vec::with_capacity(WRITES);
    let mut kv = store.create("/slow/key", value("0"), None).await?;
    expected.push(kv.mod_revision);
    for i in 1..WRITES {
        kv = store.update("/slow/key", value(&i.to_string()), kv.mod_revision, None).await?;
        expected.push(kv.mod_revision);
        if i % 7 == 0 {
            // Commits outside the prefix too, which the watch must skip.
            store.create(&format!("/other/{i}"), value("x"), None).await?;
        }
    }
    let events = events_through(&mut watcher, kv.mod_revision).await?;
    let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
    ensure!(
        revisions == expected,
        "{} events, {} writes; first difference at {:?}",
        revisions.len(),
        expected.len(),
        revisions.iter().zip(&expected).position(|(got, want)| got != want)
    );
    let last = events.last().context("no events")?;
    ensure!(last.kv.value == value(&(WRITES - 1).to_string()), "last value {:?}", last.kv.value);
    Ok(())
}

async fn racing_updates_of_one_revision_let_exactly_one_win(store: &dyn Store) -> Result<()> {
    let created = store.create("/race/key", value("start"), None).await?;
    let attempts = (0..16).map(|i| {
        store.update("/race/key", value(&format!("writer {i}")), created.mod_revision, None)
    });
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for outcome in join_results(attempts).await {
        match outcome {
            Ok(kv) => winners.push(kv),
            Err(StoreError::Conflict { current, .. }) => {
                ensure!(
                    current.mod_revision > created.mod_revision,
                    "conflict with a stale current value"
                );
                conflicts += 1;
            }
            Err(other) => bail!("racing update failed otherwise: {other}"),
        }
    }
    ensure!(
        winners.len() == 1 && conflicts == 15,
        "{} winners, {conflicts} conflicts",
        winners.len()
    );
    let (now, _) = store.get("/race/key", None).await?;
    ensure!(now.as_ref() == winners.first(), "the stored value is not the winner's");
    Ok(())
}

async fn an_empty_store_is_at_revision_one(store: &dyn Store) -> Result<()> {
    ensure!(store.current_revision().await? == 1, "a new store is not at revision 1");
    let page = store.range(RangeRequest::default()).await?;
    ensure!(
        page.kvs.is_empty() && page.revision == 1 && page.next.is_none(),
        "a new store lists {page:?}"
    );
    let first = store.create("/first", value("x"), None).await?;
    ensure!(first.mod_revision == 2, "the first write is at revision {}", first.mod_revision);
    Ok(())
}

async fn guarded_writes_expecting_revision_zero_never_create(store: &dyn Store) -> Result<()> {
    // etcd reports a missing key's revision as 0; a guard expecting 0 must still not match.
    match store.update("/zero/missing", value("x"), 0, None).await {
        Err(StoreError::NotFound { key }) => ensure!(key == "/zero/missing"),
        other => bail!("update expecting revision 0 of a missing key: {other:?}"),
    }
    match store.delete("/zero/missing", Some(0)).await {
        Err(StoreError::NotFound { .. }) => {}
        other => bail!("delete expecting revision 0 of a missing key: {other:?}"),
    }
    ensure!(
        store.get("/zero/missing", None).await?.0.is_none(),
        "a guarded update created the key"
    );
    let kv = store.create("/zero/present", value("x"), None).await?;
    match store.update("/zero/present", value("y"), 0, None).await {
        Err(StoreError::Conflict { current, .. }) => ensure!(*current == kv),
        other => bail!("update expecting revision 0 of a present key: {other:?}"),
    }
    Ok(())
}

async fn lease_ids_are_never_reused(store: &dyn Store) -> Result<()> {
    let first = store.grant_lease(Duration::from_secs(60)).await?;
    store.revoke_lease(first).await?;
    let second = store.grant_lease(Duration::from_secs(60)).await?;
    ensure!(second != first, "lease id {first} was handed out twice");
    // The holder of the ended lease can neither revoke nor use the new one.
    let kept = store.create("/leases/kept", value("x"), Some(second)).await?;
    match store.revoke_lease(first).await {
        Err(StoreError::LeaseNotFound(id)) => ensure!(id == first),
        other => bail!("revoking an ended lease: {other:?}"),
    }
    ensure!(
        store.get("/leases/kept", None).await?.0 == Some(kept),
        "another lease's key was deleted"
    );
    Ok(())
}

async fn revision_zero_means_now(store: &dyn Store) -> Result<()> {
    let v1 = store.create("/now/a", value("v1"), None).await?;
    let v2 = store.update("/now/a", value("v2"), v1.mod_revision, None).await?;
    let (read, observed) = store.get("/now/a", Some(0)).await?;
    ensure!(
        read == Some(v2.clone()) && observed >= v2.mod_revision,
        "get at 0: {read:?} @{observed}"
    );
    let page = store
        .range(RangeRequest { prefix: "/now/".into(), revision: Some(0), ..Default::default() })
        .await?;
    ensure!(page.kvs == [v2.clone()] && page.revision >= v2.mod_revision, "range at 0: {page:?}");
    Ok(())
}

/// Runs futures concurrently and returns all their outcomes, in order.
async fn join_results<T, F>(futures: impl IntoIterator<Item = F>) -> Vec<capstan_store::Result<T>>
where
    F: std::future::Future<Output = capstan_store::Result<T>>,
{
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outcomes: Vec<Option<capstan_store::Result<T>>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, outcome) in pinned.iter_mut().zip(outcomes.iter_mut()) {
            if outcome.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(done) => *outcome = Some(done),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outcomes.into_iter().flatten().collect()
}

/// `join_all` without the futures crate: runs the futures concurrently, fails on the first
/// error.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done = vec![false; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, done) in pinned.iter_mut().zip(done.iter_mut()) {
            if *done {
                continue;
            }
            match future.as_mut().poll(cx) {
                std::task::Poll::Ready(Err(error)) => return std::task::Poll::Ready(Err(error)),
                std::task::Poll::Ready(Ok(())) => *done = true,
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(Ok(())) }
    })
    .await
}

fn is_compacted<T: std::fmt::Debug>(result: &capstan_store::Result<T>) -> bool {
    matches!(result, Err(StoreError::Compacted { .. }))
}

async fn watch_and_reads_below_compaction_are_expired(store: &dyn Store) -> Result<()> {
    let old = store.create("/c/old", value("old"), None).await?;
    let mut last = store.create("/c/a", value("0"), None).await?;
    for i in 1..10 {
        last = store.update("/c/a", value(&i.to_string()), last.mod_revision, None).await?;
    }
    let gone = store.create("/c/gone", value("x"), None).await?;
    store.delete("/c/gone", None).await?;
    let compact_at = store.create("/c/b", value("b"), None).await?.mod_revision;
    let after = store.update("/c/a", value("after"), last.mod_revision, None).await?;
    store.compact(compact_at).await?;
    // Compacting again, or lower, does nothing.
    store.compact(compact_at).await?;
    store.compact(compact_at - 3).await?;

    // Below the compaction point: expired.
    ensure!(is_compacted(&store.get("/c/a", Some(compact_at - 1)).await), "get below compaction");
    let range_below = store
        .range(RangeRequest {
            prefix: "/c/".into(),
            revision: Some(compact_at - 1),
            ..Default::default()
        })
        .await;
    ensure!(is_compacted(&range_below), "range below compaction: {range_below:?}");
    match store.watch(WatchRequest::prefix("/c/", compact_at - 1)).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(other) => bail!("watch below compaction failed otherwise: {other}"),
        Ok(mut watcher) => match timeout(WAIT, watcher.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => bail!("watch below compaction delivered {other:?}"),
        },
    }
    // At the compaction point the state is intact.
    let state = store
        .range(RangeRequest {
            prefix: "/c/".into(),
            revision: Some(compact_at),
            ..Default::default()
        })
        .await?;
    let keys: Vec<&str> = state.kvs.iter().map(|kv| kv.key.as_str()).collect();
    ensure!(keys == ["/c/a", "/c/b", "/c/old"], "state at the compaction point: {keys:?}");
    ensure!(state.kvs[0] == last && state.kvs[2] == old);
    ensure!(store.get("/c/gone", Some(compact_at)).await?.0.is_none());
    ensure!(gone.mod_revision < compact_at);
    // And a watch from it delivers the changes from there on.
    let mut watcher = store.watch(WatchRequest::prefix("/c/", compact_at)).await?;
    let events = events_through(&mut watcher, after.mod_revision).await?;
    let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
    ensure!(
        revisions == [compact_at, after.mod_revision],
        "events from the compaction point: {revisions:?}"
    );
    Ok(())
}

async fn progress_notifications_report_delivered_revision(store: &dyn Store) -> Result<()> {
    store.create("/elsewhere/before", value("x"), None).await?;
    let mut watcher = store.watch(WatchRequest::prefix("/p/", 0)).await?;
    let at_start = store.current_revision().await?;
    watcher.request_progress();
    match next_item(&mut watcher).await? {
        WatchResponse::Progress(revision) => {
            ensure!(revision >= at_start, "progress {revision} < {at_start}")
        }
        other => bail!("expected progress, got {other:?}"),
    }
    let mut last = 0;
    for i in 0..3 {
        last = store.create(&format!("/p/{i}"), value("x"), None).await?.mod_revision;
    }
    let events = events_through(&mut watcher, last).await?;
    ensure!(events.len() == 3);
    // Writes outside the watched prefix advance the progress too (a bookmark's purpose), and
    // the answer covers every write acknowledged before the request.
    let elsewhere = store.create("/elsewhere/after", value("x"), None).await?.mod_revision;
    watcher.request_progress();
    match next_item(&mut watcher).await? {
        WatchResponse::Progress(revision) => {
            ensure!(
                revision >= elsewhere,
                "progress {revision} is below the acknowledged {elsewhere}"
            );
            ensure!(
                revision <= store.current_revision().await?,
                "progress beyond the store's revision"
            );
        }
        WatchResponse::Events(events) => bail!("unexpected events {events:?}"),
    }
    // A watch that starts in the future reports no revision the store has not reached.
    let future_start = store.current_revision().await? + 100;
    let mut future = store.watch(WatchRequest::prefix("/p/", future_start)).await?;
    future.request_progress();
    match next_item(&mut future).await? {
        WatchResponse::Progress(revision) => {
            ensure!(revision < future_start, "progress {revision} for a store not yet there");
        }
        WatchResponse::Events(events) => bail!("unexpected events {events:?}"),
    }
    Ok(())
}

async fn lease_expiry_deletes_attached_keys(store: &dyn Store) -> Result<()> {
    let lease = store.grant_lease(Duration::from_secs(2)).await?;
    let start = store.current_revision().await? + 1;
    let mut watcher = store.watch(WatchRequest::prefix("/events/", start)).await?;
    let leased = store.create("/events/short-lived", value("x"), Some(lease)).await?;
    ensure!(leased.lease == Some(lease));
    store.create("/events/kept", value("y"), None).await?;
    let granted = tokio::time::Instant::now();
    let expired = loop {
        let WatchResponse::Events(events) = next_item(&mut watcher).await? else { continue };
        if let Some(event) = events.into_iter().find(|event| event.kind == EventKind::Delete) {
            break event;
        }
    };
    ensure!(expired.kv.key == "/events/short-lived", "deleted {}", expired.kv.key);
    ensure!(
        granted.elapsed() >= Duration::from_millis(1500),
        "expired after only {:?}",
        granted.elapsed()
    );
    ensure!(store.get("/events/short-lived", None).await?.0.is_none());
    ensure!(store.get("/events/kept", None).await?.0.is_some(), "a key without the lease went too");
    // The lease itself is gone.
    match store.create("/events/late", value("z"), Some(lease)).await {
        Err(StoreError::LeaseNotFound(id)) => ensure!(id == lease),
        other => bail!("write with an expired lease: {other:?}"),
    }
    Ok(())
}

async fn lease_revoke_deletes_attached_keys(store: &dyn Store) -> Result<()> {
    let lease = store.grant_lease(Duration::from_secs(3600)).await?;
    let a = store.create("/events/a", value("a"), Some(lease)).await?;
    let b = store.create("/events/b", value("b"), None).await?;
    // A key can join a lease on update.
    store.update("/events/b", value("b2"), b.mod_revision, Some(lease)).await?;
    store.revoke_lease(lease).await?;
    ensure!(store.get("/events/a", None).await?.0.is_none());
    ensure!(store.get("/events/b", None).await?.0.is_none());
    ensure!(store.current_revision().await? >= a.mod_revision + 3, "the deletes took no revisions");
    match store.revoke_lease(lease).await {
        Err(StoreError::LeaseNotFound(id)) => ensure!(id == lease),
        other => bail!("revoking a revoked lease: {other:?}"),
    }
    match store.create("/events/c", value("c"), Some(987_654_321)).await {
        Err(StoreError::LeaseNotFound(id)) => ensure!(id == 987_654_321),
        other => bail!("write with an unknown lease: {other:?}"),
    }
    Ok(())
}

async fn values_up_to_the_limit_are_stored_and_larger_refused(store: &dyn Store) -> Result<()> {
    let largest: Bytes = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let created = store.create("/big/a", largest.clone(), None).await?;
    let (read, _) = store.get("/big/a", None).await?;
    ensure!(read.context("largest value not stored")?.value == largest, "largest value changed");

    let too_large = Bytes::from(vec![7u8; MAX_VALUE_BYTES + 1]);
    for result in [
        store.create("/big/b", too_large.clone(), None).await,
        store.update("/big/a", too_large.clone(), created.mod_revision, None).await,
    ] {
        match result {
            Err(error @ StoreError::ValueTooLarge { size, limit, .. }) => {
                ensure!(size == MAX_VALUE_BYTES + 1 && limit == MAX_VALUE_BYTES);
                ensure!(error.to_string().contains("/big/"), "message names no key: {error}");
            }
            other => bail!("oversized write: {other:?}"),
        }
    }
    ensure!(store.get("/big/b", None).await?.0.is_none());
    ensure!(
        store.get("/big/a", None).await?.0.map(|kv| kv.mod_revision) == Some(created.mod_revision)
    );
    Ok(())
}

async fn current_revision_is_consistent(store: &dyn Store) -> Result<()> {
    let mut previous = store.current_revision().await?;
    for i in 0..20 {
        let written = store.create(&format!("/rev/{i}"), value("x"), None).await?;
        let current = store.current_revision().await?;
        ensure!(current >= written.mod_revision, "current {current} below an acknowledged write");
        ensure!(current >= previous, "current revision went back");
        let (_, observed) = store.get(&format!("/rev/{i}"), None).await?;
        ensure!(observed >= written.mod_revision, "a read observed a revision before the write");
        previous = current;
    }
    // Quiet: the current revision is the last write's.
    ensure!(store.current_revision().await? == previous);
    Ok(())
}
