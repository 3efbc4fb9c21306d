//! The etcd backend: the Store contract over the etcd v3 API. etcd's revision is Capstan's
//! revision; Capstan's keys live under a configurable prefix.

use crate::kv::{key_after, prefix_end};
use crate::store::{check_value_size, lease_ttl_seconds};
use crate::{
    Deleted, Event, EventKind, KeyValue, LeaseId, RangeRequest, RangeResult, Result, Revision,
    Store, StoreError, WatchRequest, WatchResponse, Watcher,
};
use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::time::Duration;
use tokio::sync::mpsc;

/// Largest response accepted from etcd: a page of a range read can hold many large values.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024 * 1024 - 1;

/// How the etcd backend reaches its cluster.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prepended to every key: Capstan's `/pods/default/web` is etcd's
    /// `<prefix>/pods/default/web`. Defaults to `/registry`, kube-apiserver's layout.
    pub prefix: String,
    pub connect_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: "/registry".into(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The etcd datastore. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(&config.endpoints, Some(options)).await?;
        let store = EtcdStore { client, prefix: config.prefix };
        let revision = store.current_revision().await?;
        tracing::info!(endpoints = ?config.endpoints, prefix = %store.prefix, revision,
            "etcd datastore connected");
        Ok(store)
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    fn kv_client(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Converts etcd's key-value, dropping the prefix.
    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        convert_key_value(&self.prefix, kv)
    }

    /// Maps the etcd errors that have a meaning in the Store contract.
    async fn map_error(
        &self,
        error: etcd_client::Error,
        requested: Option<Revision>,
    ) -> StoreError {
        let message = error.to_string();
        if message.contains("required revision has been compacted") {
            return StoreError::Compacted { requested: requested.unwrap_or(0), compacted: None };
        }
        if message.contains("required revision is a future revision") {
            let current = Box::pin(self.current_revision()).await.unwrap_or(0);
            return StoreError::FutureRevision { requested: requested.unwrap_or(0), current };
        }
        StoreError::Etcd(error)
    }

    /// Runs a transaction whose puts attach `lease`, if any.
    async fn txn(
        &self,
        txn: Txn,
        key: &str,
        lease: Option<LeaseId>,
    ) -> Result<etcd_client::TxnResponse> {
        match self.kv_client().txn(txn).await {
            Ok(response) => Ok(response),
            Err(error) if error.to_string().contains("request is too large") => {
                Err(StoreError::RequestTooLarge { key: key.to_owned() })
            }
            Err(error) if error.to_string().contains("requested lease not found") => match lease {
                Some(lease) => Err(StoreError::LeaseNotFound(lease)),
                None => Err(StoreError::Etcd(error)),
            },
            Err(error) => Err(self.map_error(error, None).await),
        }
    }

    /// The current value from the `or_else` branch of a failed guarded transaction.
    fn current_from(
        &self,
        response: &etcd_client::TxnResponse,
        key: &str,
    ) -> Result<Option<KeyValue>> {
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.key_value(kv)).transpose();
            }
        }
        Err(StoreError::EtcdProtocol(format!("transaction on {key:?} returned no read")))
    }

    fn put_options(lease: Option<LeaseId>) -> PutOptions {
        match lease {
            Some(lease) => PutOptions::new().with_lease(lease),
            None => PutOptions::new(),
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|header| header.revision())
        .ok_or_else(|| StoreError::EtcdProtocol("response without a header".into()))
}

fn convert_key_value(prefix: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let full = kv.key_str().map_err(|e| StoreError::EtcdProtocol(format!("non-UTF-8 key: {e}")))?;
    let key = full.strip_prefix(prefix).ok_or_else(|| {
        StoreError::EtcdProtocol(format!("key {full:?} outside the prefix {prefix:?}"))
    })?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    })
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        // A linearizable read of nothing in particular: its header carries the revision.
        let options = GetOptions::new().with_count_only();
        let response = self.kv_client().get(self.full_key(""), Some(options)).await?;
        header_revision(response.header())
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        // Revision 0 (or below) means "now".
        let revision = revision.filter(|&revision| revision > 0);
        let mut options = GetOptions::new();
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = match self.kv_client().get(self.full_key(key), Some(options)).await {
            Ok(response) => response,
            Err(error) => return Err(self.map_error(error, revision).await),
        };
        let observed = match revision {
            Some(revision) => revision,
            None => header_revision(response.header())?,
        };
        let kv = response.kvs().first().map(|kv| self.key_value(kv)).transpose()?;
        Ok((kv, observed))
    }

    async fn range(&self, mut request: RangeRequest) -> Result<RangeResult> {
        request.revision = request.revision.filter(|&revision| revision > 0);
        let full_prefix = self.full_key(&request.prefix);
        let start = match &request.start {
            Some(start) if start.as_str() > request.prefix.as_str() => self.full_key(start),
            _ => full_prefix.clone(),
        };
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        let mut options = GetOptions::new().with_range(end);
        let limit = request.limit.filter(|&limit| limit > 0);
        if let Some(limit) = limit {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(revision) = request.revision {
            options = options.with_revision(revision);
        }
        let response = match self.kv_client().get(start, Some(options)).await {
            Ok(response) => response,
            Err(error) => return Err(self.map_error(error, request.revision).await),
        };
        let revision = match request.revision {
            Some(revision) => revision,
            None => header_revision(response.header())?,
        };
        let kvs = response.kvs().iter().map(|kv| self.key_value(kv)).collect::<Result<Vec<_>>>()?;
        let next = if response.more() { kvs.last().map(|kv| key_after(&kv.key)) } else { None };
        Ok(RangeResult { kvs, revision, next })
    }

    async fn create(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), Some(Self::put_options(lease)))])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn(txn, key, lease).await?;
        if !response.succeeded() {
            let current = self.current_from(&response, key)?.ok_or_else(|| {
                StoreError::EtcdProtocol(format!("create of {key:?} failed, but the key is absent"))
            })?;
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
                current: Box::new(current),
            });
        }
        let revision = header_revision(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
            lease,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        let full = self.full_key(key);
        // etcd gives a missing key mod_revision 0: the create_revision guard keeps an update
        // expecting 0 from creating the key.
        let txn = Txn::new()
            .when([
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                full.clone(),
                value.to_vec(),
                Some(Self::put_options(lease).with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn(txn, key, lease).await?;
        if !response.succeeded() {
            return Err(match self.current_from(&response, key)? {
                None => StoreError::NotFound { key: key.to_owned() },
                Some(current) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(current),
                },
            });
        }
        let revision = header_revision(response.header())?;
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|prev| prev.create_revision()),
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::EtcdProtocol(format!("update of {key:?} returned no previous value"))
            })?;
        Ok(KeyValue { key: key.to_owned(), value, create_revision, mod_revision: revision, lease })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let full = self.full_key(key);
        // Always a transaction, so that a missing key is told apart from a deleted one in a
        // single round trip.
        let mut guards = vec![Compare::create_revision(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            guards.push(Compare::mod_revision(full.clone(), CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(guards)
            .and_then([TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn(txn, key, None).await?;
        if !response.succeeded() {
            return Err(match (self.current_from(&response, key)?, expected) {
                (Some(current), Some(expected)) => StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(current),
                },
                _ => StoreError::NotFound { key: key.to_owned() },
            });
        }
        let revision = header_revision(response.header())?;
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::EtcdProtocol(format!("delete of {key:?} returned no previous value"))
            })?;
        Ok(Deleted { revision, prev: self.key_value(&prev)? })
    }

    async fn watch(&self, request: WatchRequest) -> Result<Watcher> {
        let full = self.full_key(&request.key);
        let mut options = WatchOptions::new().with_prev_key();
        if request.start_revision > 0 {
            options = options.with_start_revision(request.start_revision);
        }
        if request.prefix {
            options = options.with_range(prefix_end(&full).unwrap_or_else(|| vec![0]));
        }
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .watch(full, Some(options))
            .await?;
        let (responses, responses_rx) = mpsc::channel(64);
        let (progress_tx, progress_requests) = mpsc::channel(1);
        let prefix = self.prefix.clone();
        tokio::spawn(follow_watch(
            stream,
            prefix,
            request.start_revision,
            responses,
            progress_requests,
        ));
        Ok(Watcher::new(responses_rx, progress_tx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let options = CompactionOptions::new().with_physical();
        match self.kv_client().compact(revision, Some(options)).await {
            Ok(_) => Ok(()),
            Err(error) => match self.map_error(error, Some(revision)).await {
                // Already compacted at or past this revision: nothing to do.
                StoreError::Compacted { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let response = self.client.lease_client().grant(lease_ttl_seconds(ttl), None).await?;
        Ok(response.id())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(error) if error.to_string().contains("requested lease not found") => {
                Err(StoreError::LeaseNotFound(lease))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Relays one etcd watch stream to a `Watcher` until either side ends.
async fn follow_watch(
    mut stream: etcd_client::WatchStream,
    prefix: String,
    start_revision: Revision,
    responses: mpsc::Sender<Result<WatchResponse>>,
    mut progress_requests: mpsc::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            Some(()) = progress_requests.recv() => {
                if let Err(error) = stream.request_progress().await {
                    let _ = responses.send(Err(error.into())).await;
                    return;
                }
                continue;
            }
            () = responses.closed() => return,
        };
        let item = match message {
            Ok(Some(response)) => match relay(&prefix, start_revision, &response) {
                Ok(Some(item)) => Ok(item),
                Ok(None) => continue,
                Err(error) => Err(error),
            },
            Ok(None) => Err(StoreError::EtcdProtocol("watch stream ended".into())),
            Err(error) => Err(error.into()),
        };
        let failed = item.is_err();
        if responses.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// What one etcd watch response means for the watcher, if anything.
fn relay(
    prefix: &str,
    start_revision: Revision,
    response: &etcd_client::WatchResponse,
) -> Result<Option<WatchResponse>> {
    if response.canceled() {
        if response.compact_revision() > 0 {
            return Err(StoreError::Compacted {
                requested: start_revision,
                compacted: Some(response.compact_revision()),
            });
        }
        return Err(StoreError::EtcdProtocol(format!(
            "watch canceled: {}",
            response.cancel_reason()
        )));
    }
    if response.created() && response.events().is_empty() {
        return Ok(None);
    }
    if response.events().is_empty() {
        return Ok(Some(WatchResponse::Progress(header_revision(response.header())?)));
    }
    let events = response
        .events()
        .iter()
        .map(|event| {
            let kv = event
                .kv()
                .ok_or_else(|| StoreError::EtcdProtocol("watch event without a key".into()))?;
            let kind = match event.event_type() {
                etcd_client::EventType::Put => EventKind::Put,
                etcd_client::EventType::Delete => EventKind::Delete,
            };
            let mut kv = convert_key_value(prefix, kv)?;
            if kind == EventKind::Delete {
                kv.lease = None;
            }
            let prev = event.prev_kv().map(|prev| convert_key_value(prefix, prev)).transpose()?;
            Ok(Event { kind, kv, prev })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(WatchResponse::Events(events)))
}
