//! Watches on the embedded store. Each watch is a task that first replays history from the
//! database, then follows the writer's broadcast of committed batches; a watch that falls
//! behind the broadcast replays from the database again, so a slow reader costs memory in
//! neither the writer nor the other watches.
//!
//! The task keeps one number, `delivered`: every change at or below it that matches the watch
//! has been sent. Replays and broadcast batches only ever send changes above it and then raise
//! it, which is what makes delivery gap-free and duplicate-free.

use super::reader::{Db, KeyRange};
use super::writer::CommittedBatch;
use crate::{Result, Revision, StoreError, WatchRequest, WatchResponse, Watcher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{broadcast, mpsc};

/// Changes read from the database per replay query.
const REPLAY_PAGE: usize = 512;

/// Items buffered for a watcher that has not taken them yet.
const WATCHER_BUFFER: usize = 64;

pub(super) fn start(
    db: &Arc<Db>,
    events: &broadcast::Sender<Arc<CommittedBatch>>,
    request: WatchRequest,
) -> Result<Watcher> {
    // Subscribe before reading the revision: every batch committed after that revision is
    // then certain to arrive on `live`.
    let live = events.subscribe();
    let current = db.revision.load(Ordering::Acquire);
    let start = if request.start_revision <= 0 { current + 1 } else { request.start_revision };
    let (responses, responses_rx) = mpsc::channel(WATCHER_BUFFER);
    let (progress_tx, progress_requests) = mpsc::channel(1);
    let task = WatchTask {
        db: Arc::clone(db),
        range: KeyRange::new(&request.key, request.prefix),
        delivered: start - 1,
        responses,
    };
    tokio::spawn(task.run(live, progress_requests));
    Ok(Watcher::new(responses_rx, progress_tx))
}

struct WatchTask {
    db: Arc<Db>,
    range: KeyRange,
    delivered: Revision,
    responses: mpsc::Sender<Result<WatchResponse>>,
}

/// What a replay is for.
#[derive(Debug, Clone, Copy)]
enum Replay {
    /// The history a new watch asked for, from its start revision.
    Start,
    /// Changes a running watch missed while it fell behind the broadcast.
    CatchUp,
}

/// Why a watch task stops.
enum Stop {
    /// The watcher was dropped.
    WatcherGone,
    /// The watch failed; the error has been sent.
    Failed,
}

impl WatchTask {
    async fn run(
        mut self,
        mut live: broadcast::Receiver<Arc<CommittedBatch>>,
        mut progress_requests: mpsc::Receiver<()>,
    ) {
        if self.replay(Replay::Start).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                batch = live.recv() => {
                    let outcome = match batch {
                        Ok(batch) => self.forward(&batch).await,
                        // Fell behind the broadcast: the database has everything missed.
                        Err(broadcast::error::RecvError::Lagged(_)) => self.replay(Replay::CatchUp).await,
                        Err(broadcast::error::RecvError::Closed) => {
                            let _ = self.responses.send(Err(StoreError::Closed)).await;
                            return;
                        }
                    };
                    if outcome.is_err() {
                        return;
                    }
                }
                Some(()) = progress_requests.recv() => {
                    if self.answer_progress(&mut live).await.is_err() {
                        return;
                    }
                }
                () = self.responses.closed() => return,
            }
        }
    }

    /// Sends the changes of a committed batch that this watch has not seen and that match it.
    async fn forward(&mut self, batch: &CommittedBatch) -> Result<(), Stop> {
        if batch.revision <= self.delivered {
            return Ok(());
        }
        let matching: Vec<_> = batch
            .events
            .iter()
            .filter(|event| event.revision() > self.delivered && self.range.contains(&event.kv.key))
            .cloned()
            .collect();
        self.delivered = batch.revision;
        self.send(matching).await
    }

    /// Reports how far this watch has delivered, after first forwarding the batches already
    /// committed, so that the answer covers every write acknowledged before the request. Never
    /// above the store's revision, even for a watch that starts in the future.
    async fn answer_progress(
        &mut self,
        live: &mut broadcast::Receiver<Arc<CommittedBatch>>,
    ) -> Result<(), Stop> {
        loop {
            match live.try_recv() {
                Ok(batch) => self.forward(&batch).await?,
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    self.replay(Replay::CatchUp).await?
                }
                Err(_) => break,
            }
        }
        let progress = self.delivered.min(self.db.revision.load(Ordering::Acquire));
        self.responses
            .send(Ok(WatchResponse::Progress(progress)))
            .await
            .map_err(|_| Stop::WatcherGone)
    }

    /// Sends every matching change above `delivered` that the database holds, up to the
    /// revision it is at when the replay starts.
    async fn replay(&mut self, kind: Replay) -> Result<(), Stop> {
        let mut upto = None;
        loop {
            let range = self.range.clone();
            let after = self.delivered;
            // Compaction to C keeps the puts at C but not a delete at C. A watch asked to start
            // at C accepts that (the contract says so, as etcd does); a watch that already
            // delivered up to C - 1 must not lose the delete, so it needs history above C.
            let oldest_needed = match (kind, upto) {
                (Replay::Start, None) => after + 1,
                _ => after,
            };
            let page = self
                .db
                .read(move |reader| {
                    let snapshot = reader.snapshot()?;
                    if oldest_needed < snapshot.compacted {
                        return Err(StoreError::Compacted {
                            requested: after + 1,
                            compacted: Some(snapshot.compacted),
                        });
                    }
                    let upto = upto.unwrap_or(snapshot.revision);
                    Ok((upto, reader.events(&range, after, upto, REPLAY_PAGE)?))
                })
                .await;
            let (page_upto, events) = match page {
                Ok(page) => page,
                Err(error) => {
                    let _ = self.responses.send(Err(error)).await;
                    return Err(Stop::Failed);
                }
            };
            upto = Some(page_upto);
            let full = events.len() == REPLAY_PAGE;
            let last = events.last().map(|event| event.revision());
            self.send(events).await?;
            match last {
                Some(last) if full => self.delivered = last,
                _ => {
                    self.delivered = self.delivered.max(page_upto);
                    return Ok(());
                }
            }
        }
    }

    async fn send(&self, events: Vec<crate::Event>) -> Result<(), Stop> {
        if events.is_empty() {
            return Ok(());
        }
        self.responses.send(Ok(WatchResponse::Events(events))).await.map_err(|_| Stop::WatcherGone)
    }
}
