//! Watch: a chunked stream of `WatchEvent`s, one JSON object per line, from the watch
//! cache (KUBE-WIRE §4). Without a resourceVersion (or with `0`) the stream opens with a
//! synthetic ADDED per current object; from `N` it replays the cache's history after N, or
//! sends one ERROR event with a 410 Status when N is older than the history. Bookmarks, the
//! `initial-events-end` bookmark of streaming lists, and `timeoutSeconds` are honoured.

use super::{Filter, Presentation, Rest, namespace_of, present, store_error};
use crate::cache::{CachedEvent, Change, WatchStart};
use crate::keys;
use crate::request::{ListOptions, Target, VersionMatch, parse_revision};
use crate::response::{self, Body};
use bytes::Bytes;
use capstan_api::ApiError;
use capstan_api::registry::ResourceType;
use capstan_api::table::{self, IncludeObject, TableOptions};
use hyper::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

pub(super) async fn watch(
    rest: &Rest,
    target: &Target,
    options: ListOptions,
    presentation: Presentation,
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let prefix = keys::list_prefix(resource, namespace_of(target));
    let requested = options.resource_version.as_deref().map(parse_revision).transpose()?;
    let initial_events = options.send_initial_events == Some(true);
    if options.send_initial_events.is_some() && options.version_match != VersionMatch::NotOlderThan
    {
        return Err(ApiError::bad_request(
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is \
             \"NotOlderThan\"",
        ));
    }
    // Where the stream starts: a snapshot of the current objects, or history after N.
    let from = match requested {
        _ if initial_events => None,
        None | Some(0) => None,
        Some(revision) => Some(revision),
    };
    let wait_until = match (initial_events, requested) {
        (true, None) => Some(rest.store.current_revision().await.map_err(store_error)?),
        (_, Some(revision)) if revision > 0 => Some(revision),
        _ => None,
    };
    if let Some(revision) = wait_until {
        super::wait_for_revision(rest, revision).await?;
    }
    let (sender, receiver) = mpsc::channel(128);
    let stream = Stream {
        resource,
        prefix: prefix.clone(),
        options,
        presentation,
        columns_sent: false,
        sender,
    };
    let timeout = Duration::from_secs(stream.options.timeout_seconds.unwrap_or_else(|| {
        // Upstream spreads default timeouts over [30m, 60m) so watchers don't reconnect in
        // herds.
        1800 + fastrand::u64(0..1800)
    }));
    match rest.cache.watch(&prefix, from) {
        Ok((start, revision, events)) => {
            tokio::spawn(stream.run(
                start,
                revision,
                events,
                initial_events,
                timeout,
                Arc::clone(&rest.cache),
            ));
        }
        Err(too_old) => {
            let status = ApiError::expired(format!(
                "too old resource version: {} ({})",
                too_old.requested, too_old.oldest
            ));
            tokio::spawn(async move {
                let _ = stream.send_raw("ERROR", status.to_status()).await;
            });
        }
    }
    Ok(response::streaming("application/json", receiver))
}

/// One watch's sending side.
struct Stream {
    resource: &'static ResourceType,
    prefix: String,
    options: ListOptions,
    presentation: Presentation,
    /// A Table watch sends column definitions with its first event only.
    columns_sent: bool,
    sender: mpsc::Sender<Bytes>,
}

/// The client went away.
struct Gone;

impl Stream {
    async fn run(
        mut self,
        start: WatchStart,
        start_revision: i64,
        mut events: broadcast::Receiver<Arc<CachedEvent>>,
        initial_events: bool,
        timeout: Duration,
        cache: Arc<crate::cache::WatchCache>,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent_through = start_revision;
        let result: Result<(), Gone> = async {
            match start {
                WatchStart::Snapshot(snapshot) => {
                    for object in &snapshot.objects {
                        if self.filter().matches(object) {
                            self.send_object("ADDED", object).await?;
                        }
                    }
                    sent_through = snapshot.revision;
                    if initial_events && self.options.allow_bookmarks {
                        self.send_bookmark(snapshot.revision, true).await?;
                    }
                }
                WatchStart::History(history) => {
                    for event in &history {
                        self.send_event(event).await?;
                        sent_through = sent_through.max(event.revision);
                    }
                }
            }
            let mut bookmarks = tokio::time::interval_at(
                tokio::time::Instant::now() + BOOKMARK_INTERVAL,
                BOOKMARK_INTERVAL,
            );
            let mut bookmarked = sent_through;
            loop {
                tokio::select! {
                    received = events.recv() => match received {
                        Ok(event) => {
                            if event.revision <= sent_through {
                                continue;
                            }
                            sent_through = event.revision;
                            self.send_event(&event).await?;
                        }
                        // Too slow: end the stream; the client resumes from its last
                        // resourceVersion, which the history still holds.
                        Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    _ = bookmarks.tick(), if self.options.allow_bookmarks => {
                        // Read the revision first: everything up to it was broadcast before it
                        // was published, so an empty channel means it was all delivered.
                        let revision = cache.revision();
                        if events.is_empty() && revision > bookmarked {
                            sent_through = sent_through.max(revision);
                            bookmarked = revision;
                            self.send_bookmark(revision, false).await?;
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => return Ok(()),
                    () = self.sender.closed() => return Err(Gone),
                }
            }
        }
        .await;
        if result.is_err() {
            tracing::trace!(prefix = %self.prefix, "watcher went away");
        }
    }

    fn filter(&self) -> Filter<'_> {
        Filter::new(self.resource, &self.options)
    }

    /// One cached event as this watcher sees it through its selectors: an object entering
    /// the selection is ADDED, one leaving it DELETED.
    async fn send_event(&mut self, event: &CachedEvent) -> Result<(), Gone> {
        if !event.key.starts_with(&self.prefix) {
            return Ok(());
        }
        let filter = self.filter();
        let now = filter.matches(&event.object);
        let before = event.previous.as_deref().is_some_and(|p| filter.matches(p));
        let kind = match (event.change, before, now) {
            (Change::Added, _, true) => "ADDED",
            (Change::Modified, true, true) => "MODIFIED",
            (Change::Modified, false, true) => "ADDED",
            (Change::Modified, true, false) => "DELETED",
            (Change::Deleted, _, true) => "DELETED",
            _ => return Ok(()),
        };
        self.send_object(kind, &event.object).await
    }

    async fn send_object(&mut self, kind: &str, object: &Value) -> Result<(), Gone> {
        let object = match self.presentation {
            Presentation::Object => present(self.resource, object),
            Presentation::Table(include) => {
                let options = TableOptions {
                    now: super::now_seconds(),
                    include_object: include,
                    resource_version: super::metadata_str(object, "resourceVersion")
                        .unwrap_or_default()
                        .to_owned(),
                    continue_token: None,
                    omit_columns: self.columns_sent,
                };
                self.columns_sent = true;
                table::table(self.resource, &[present(self.resource, object)], &options)
            }
        };
        self.send_raw(kind, object).await
    }

    async fn send_bookmark(&mut self, revision: i64, initial_events_end: bool) -> Result<(), Gone> {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.presentation {
            Presentation::Table(
                IncludeObject::None | IncludeObject::Metadata | IncludeObject::Object,
            ) => json!({
                "kind": "Table",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
                "columnDefinitions": [],
                "rows": [],
            }),
            Presentation::Object => json!({
                "kind": self.resource.kind,
                "apiVersion": self.resource.api_version(),
                "metadata": metadata,
            }),
        };
        self.send_raw("BOOKMARK", object).await
    }

    async fn send_raw(&self, kind: &str, object: Value) -> Result<(), Gone> {
        let line = response::json_bytes(&json!({"type": kind, "object": object}));
        self.sender.send(Bytes::from(line)).await.map_err(|_| Gone)
    }
}
