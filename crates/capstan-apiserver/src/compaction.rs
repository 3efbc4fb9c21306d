//! Compaction of the datastore's history, as kube-apiserver drives it: every interval,
//! compact up to the revision that was current one interval ago, so watches and paged lists
//! keep at least one interval of history.

use capstan_store::{Revision, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// kube-apiserver's default `--etcd-compaction-interval`.
pub(crate) const INTERVAL: Duration = Duration::from_secs(300);

pub(crate) async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut previous: Option<Revision> = None;
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let current = match store.current_revision().await {
            Ok(revision) => revision,
            Err(error) => {
                tracing::warn!(%error, "compaction: cannot read the datastore's revision");
                continue;
            }
        };
        if let Some(target) = previous.filter(|p| *p > 1) {
            match store.compact(target).await {
                Ok(()) => tracing::debug!(revision = target, "compacted the datastore's history"),
                // Another server of an HA control plane got there first.
                Err(StoreError::Compacted { .. }) => {}
                Err(error) => tracing::warn!(%error, revision = target, "compaction failed"),
            }
        }
        previous = Some(current);
    }
}
