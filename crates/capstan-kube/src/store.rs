//! Waiting for a kube-runtime reflector store to be filled. `Store::wait_until_ready` wakes
//! only the last task that polled it (the futures oneshot it rests on keeps one waker), so
//! with several waiters the others may sleep forever; [`ready`] polls it afresh every
//! 100 ms, which any number of tasks may do.

use kube::runtime::reflector::Store;
use std::time::Duration;

/// Returns once the store has been filled by its first list (or its writer is gone).
pub async fn ready<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await.is_ok()
        {
            return;
        }
    }
}
