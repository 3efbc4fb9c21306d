//! The watch handle every backend returns: a stream of event batches and progress
//! notifications, with a way to ask for progress.

use crate::{Event, Result, Revision};
use tokio::sync::mpsc;

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRequest {
    /// The key, or the prefix when `prefix` is set.
    pub key: String,
    pub prefix: bool,
    /// Deliver every change at this revision and later. 0 means "from now": changes after the
    /// current revision.
    pub start_revision: Revision,
}

impl WatchRequest {
    /// Watches every key under `prefix`, from `start_revision` on.
    pub fn prefix(prefix: impl Into<String>, start_revision: Revision) -> Self {
        WatchRequest { key: prefix.into(), prefix: true, start_revision }
    }

    /// Watches one key, from `start_revision` on.
    pub fn key(key: impl Into<String>, start_revision: Revision) -> Self {
        WatchRequest { key: key.into(), prefix: false, start_revision }
    }
}

/// One item of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchResponse {
    /// Changes in revision order; never empty.
    Events(Vec<Event>),
    /// Every change up to and including this revision has been delivered: the watcher's
    /// state is current as of this revision. Sent when asked for with
    /// [`Watcher::request_progress`].
    Progress(Revision),
}

/// A live watch. Dropping it cancels the watch.
///
/// After an `Err` item (the history was compacted, or the backend failed) the watcher ends:
/// the caller re-lists and starts a new watch.
#[derive(Debug)]
pub struct Watcher {
    responses: mpsc::Receiver<Result<WatchResponse>>,
    progress_requests: mpsc::Sender<()>,
}

impl Watcher {
    /// Wraps the two channels a backend's watch task serves.
    pub(crate) fn new(
        responses: mpsc::Receiver<Result<WatchResponse>>,
        progress_requests: mpsc::Sender<()>,
    ) -> Self {
        Watcher { responses, progress_requests }
    }

    /// The next item; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        self.responses.recv().await
    }

    /// Asks for a [`WatchResponse::Progress`]. Several requests in a row may be answered by one
    /// notification.
    ///
    /// With etcd older than 3.4.25 (Debian's is 3.4.23) the etcd server may answer before it
    /// delivered the events of a watch still catching up on history (etcd issue 15220);
    /// watches that are caught up are not affected.
    pub fn request_progress(&self) {
        // A full queue already holds a request that will be answered; a closed one means the
        // watch has ended and `next` will say so.
        let _ = self.progress_requests.try_send(());
    }
}
