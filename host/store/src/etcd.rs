//! The etcd backend: the [`Store`](crate::Store) trait over a real etcd cluster via `etcd-client`.
//!
//! Every key is stored under an optional namespace prefix (see
//! [`EtcdStore::connect_with_prefix`]), added on the way in and stripped on the way out, so that
//! several stores (test runs) can share one etcd.
//!
//! Endpoints are `http://` or, with [`EtcdTls`] (the CA that signed etcd's serving certificate,
//! and the client certificate etcd's `--client-cert-auth` asks for), `https://`.

pub mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    KvClient, PutOptions, TlsOptions, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
    WatchResponse, Watcher,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    Compare, Event, EventKind, KeyValue, MAX_VALUE_BYTES, Op, Range, RangeResult, StoreError, Txn,
    TxnResult, WatchItem, WatchStream,
};

/// Largest gRPC message accepted or sent: ranges of many big objects must fit.
const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Items buffered between a watch task and its consumer.
const STREAM_BUFFER: usize = 256;
/// Attempts of a request that could not connect to the member it was sent to.
const CONNECT_ATTEMPTS: u32 = 8;

/// Whether `err` says the request never reached etcd: the client's channel, which spreads
/// requests over every endpoint and keeps a member that is down in its list, picked one it could
/// not connect to. Such a request arrived nowhere, so sending it again (a write too) is safe.
fn not_connected(err: &etcd_client::Error) -> bool {
    let text = err.to_string();
    text.contains("tcp connect error") || text.contains("error trying to connect")
}

/// Runs `request`, again (after 10 ms, 20 ms, …) while it could not connect, so that one member
/// down costs a retry rather than a failed request.
async fn connected<T, F, Fut>(mut request: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Err(err) if not_connected(&err) && attempt < CONNECT_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// How to reach etcd over TLS, as kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile` (here their PEM contents).
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA etcd's serving certificate chains to.
    pub ca_pem: String,
    /// The client certificate and its key, for an etcd that verifies clients.
    pub client: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl EtcdTls {
    /// The connect options that trust the CA and present the client certificate.
    pub fn options(&self) -> TlsOptions {
        let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.client {
            Some((cert, key)) => tls.identity(Identity::from_pem(cert, key)),
            None => tls,
        }
    }
}

/// A store backed by etcd. See the module documentation.
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    namespace: String,
    /// The highest compacted revision this store has seen, for `Compacted` errors (etcd does
    /// not say it when a range fails).
    compacted: AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`), using the whole keyspace.
    pub async fn connect(endpoints: &[String]) -> Result<Arc<Self>, StoreError> {
        Self::connect_with_prefix(endpoints, "").await
    }

    /// Connects to etcd at `https://` `endpoints` with `tls`, using the whole keyspace.
    pub async fn connect_tls(endpoints: &[String], tls: &EtcdTls) -> Result<Arc<Self>, StoreError> {
        Self::open(endpoints, "", Some(tls)).await
    }

    /// Connects to etcd, keeping every key under `namespace` (e.g. `/test-123`). Namespaces
    /// sharing one etcd must not be prefixes of one another (`/t1` and `/t12` overlap).
    pub async fn connect_with_prefix(
        endpoints: &[String],
        namespace: &str,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open(endpoints, namespace, None).await
    }

    async fn open(
        endpoints: &[String],
        namespace: &str,
        tls: Option<&EtcdTls>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls {
            options = options.with_tls(tls.options());
        }
        let client = Client::connect(endpoints, Some(options)).await?;
        let store = Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            namespace: namespace.to_owned(),
            compacted: AtomicI64::new(0),
        };
        // Fail now rather than at the first request if etcd is unreachable.
        crate::Store::revision(&store).await?;
        Ok(Arc::new(store))
    }

    /// A get, sent again while it could not connect (see [`connected`]).
    async fn get_kv(
        &self,
        key: Vec<u8>,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, etcd_client::Error> {
        connected(|| {
            let (mut kv, key, options) = (self.kv.clone(), key.clone(), options.clone());
            async move { kv.get(key, options).await }
        })
        .await
    }

    fn key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.namespace).into_bytes()
    }

    fn convert(&self, kv: etcd_client::KeyValue) -> KeyValue {
        let (create_revision, mod_revision, version) =
            (kv.create_revision(), kv.mod_revision(), kv.version());
        let (key, value) = kv.into_key_value();
        KeyValue {
            key: strip(&self.namespace, &key),
            value: Bytes::from(value),
            create_revision,
            mod_revision,
            version,
        }
    }

    /// Maps etcd's revision errors to ours.
    async fn map_err(&self, err: etcd_client::Error, requested: i64) -> StoreError {
        match revision_error(&err) {
            Some(RevisionError::Compacted) => StoreError::Compacted {
                requested,
                compacted: self.compacted.load(Ordering::SeqCst),
            },
            Some(RevisionError::Future) => match crate::Store::revision(self).await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(other) => other,
            },
            None => err.into(),
        }
    }
}

/// The revision errors etcd reports only as a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RevisionError {
    Compacted,
    Future,
}

fn revision_error(err: &etcd_client::Error) -> Option<RevisionError> {
    let etcd_client::Error::GRpcStatus(status) = err else {
        return None;
    };
    if status
        .message()
        .contains("required revision has been compacted")
    {
        Some(RevisionError::Compacted)
    } else if status
        .message()
        .contains("required revision is a future revision")
    {
        Some(RevisionError::Future)
    } else {
        None
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// A key as the caller knows it: without the namespace.
fn strip(namespace: &str, key: &[u8]) -> String {
    let key = key.strip_prefix(namespace.as_bytes()).unwrap_or(key);
    String::from_utf8_lossy(key).into_owned()
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

#[async_trait]
impl crate::Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
        let key = self.key(key);
        let mut resp = self.get_kv(key, None).await?;
        let revision = header_revision(resp.header());
        let kv = resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.convert(kv));
        Ok((kv, revision))
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        let prefix = self.key(&range.prefix);
        let mut start = self.key(range.start.as_deref().unwrap_or(&range.prefix));
        if start.is_empty() {
            start = vec![0];
        }
        let options = GetOptions::new()
            .with_range(prefix_end(&prefix))
            .with_limit(i64::try_from(range.limit).unwrap_or(i64::MAX))
            .with_revision(range.revision);
        let mut resp = match self.get_kv(start, Some(options)).await {
            Ok(resp) => resp,
            Err(err) => return Err(self.map_err(err, range.revision).await),
        };
        let revision = if range.revision == 0 {
            header_revision(resp.header())
        } else {
            range.revision
        };
        let more = resp.more();
        let kvs = resp
            .take_kvs()
            .into_iter()
            .map(|kv| self.convert(kv))
            .collect();
        Ok(RangeResult {
            kvs,
            more,
            revision,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let prefix = self.key(prefix);
        let options = GetOptions::new()
            .with_range(prefix_end(&prefix))
            .with_count_only();
        let key = if prefix.is_empty() { vec![0] } else { prefix };
        Ok(self.get_kv(key, Some(options)).await?.count())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let mut compares = Vec::with_capacity(txn.compare.len());
        let mut failure = Vec::with_capacity(txn.compare.len());
        for Compare::ModRevision { key, revision } in &txn.compare {
            // A missing key compares as all-zero revisions in etcd: 0 means "absent".
            compares.push(etcd_client::Compare::mod_revision(
                self.key(key),
                CompareOp::Equal,
                *revision,
            ));
            failure.push(TxnOp::get(self.key(key), None));
        }
        let mut success = Vec::with_capacity(txn.success.len());
        for op in &txn.success {
            success.push(match op {
                Op::Put { key, value } => {
                    if value.len() > MAX_VALUE_BYTES {
                        return Err(StoreError::TooLarge {
                            key: key.clone(),
                            size: value.len(),
                            limit: MAX_VALUE_BYTES,
                        });
                    }
                    let options = PutOptions::new().with_prev_key();
                    TxnOp::put(self.key(key), value.to_vec(), Some(options))
                }
                Op::Delete { key } => {
                    let options = DeleteOptions::new().with_prev_key();
                    TxnOp::delete(self.key(key), Some(options))
                }
            });
        }
        let request = etcd_client::Txn::new()
            .when(compares)
            .and_then(success)
            .or_else(failure);
        let resp = connected(|| {
            let (mut kv, request) = (self.kv.clone(), request.clone());
            async move { kv.txn(request).await }
        })
        .await?;
        let revision = header_revision(resp.header());
        let mut values = Vec::new();
        for op in resp.op_responses() {
            values.push(match op {
                TxnOpResponse::Put(mut put) => put.take_prev_key(),
                TxnOpResponse::Delete(mut delete) => delete.take_prev_kvs().into_iter().next(),
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                TxnOpResponse::Txn(_) => None,
            });
        }
        let values = values
            .into_iter()
            .map(|kv| kv.map(|kv| self.convert(kv)))
            .collect();
        Ok(if resp.succeeded() {
            TxnResult::Succeeded {
                revision,
                prev: values,
            }
        } else {
            TxnResult::Failed {
                revision,
                current: values,
            }
        })
    }

    async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        progress_interval: Duration,
    ) -> Result<WatchStream, StoreError> {
        let prefix = self.key(prefix);
        if start_revision > 0 {
            // etcd reports a compacted start only on the stream; find out now instead.
            let options = GetOptions::new()
                .with_revision(start_revision)
                .with_count_only();
            let key = if prefix.is_empty() {
                vec![0]
            } else {
                prefix.clone()
            };
            if let Err(err) = self.get_kv(key, Some(options)).await {
                // Watching from a future revision is fine: it waits.
                if revision_error(&err) != Some(RevisionError::Future) {
                    return Err(self.map_err(err, start_revision).await);
                }
            }
        }
        let mut options = WatchOptions::new().with_prefix().with_prev_key();
        if start_revision > 0 {
            options = options.with_start_revision(start_revision);
        }
        let (watcher, stream) = connected(|| {
            let (mut watch, prefix, options) =
                (self.watch.clone(), prefix.clone(), options.clone());
            async move { watch.watch(prefix, Some(options)).await }
        })
        .await?;
        let (out, items) = mpsc::channel(STREAM_BUFFER);
        let task = WatchTask {
            namespace: self.namespace.clone(),
            watcher,
            out,
            progress: progress_interval,
            next: start_revision,
        };
        tokio::spawn(task.run(stream));
        Ok(Box::pin(ReceiverStream::new(items)))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let compact = || {
            let mut kv = self.kv.clone();
            async move { kv.compact(revision, None).await }
        };
        if let Err(err) = connected(compact).await {
            // Already compacted at or past it is fine.
            if revision_error(&err) != Some(RevisionError::Compacted) {
                return Err(self.map_err(err, revision).await);
            }
        }
        self.compacted.fetch_max(revision, Ordering::SeqCst);
        Ok(())
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        // A point read of the namespace key itself is the cheapest way to learn the revision.
        let key = if self.namespace.is_empty() {
            vec![0]
        } else {
            self.key("")
        };
        let options = GetOptions::new().with_count_only();
        let resp = self.get_kv(key, Some(options)).await?;
        Ok(header_revision(resp.header()))
    }
}

/// Forwards one etcd watch to a [`WatchStream`], asking for progress when quiet.
struct WatchTask {
    namespace: String,
    watcher: Watcher,
    out: mpsc::Sender<Result<WatchItem, StoreError>>,
    progress: Duration,
    /// The revision after the last event delivered (the start revision at first).
    next: i64,
}

impl WatchTask {
    async fn run(mut self, mut stream: etcd_client::WatchStream) {
        let mut quiet_until = Instant::now() + self.progress;
        let failure = loop {
            tokio::select! {
                biased;
                () = self.out.closed() => break None,
                message = stream.message() => match message {
                    Ok(Some(resp)) => match self.forward(resp).await {
                        Ok(true) => quiet_until = Instant::now() + self.progress,
                        Ok(false) => break None,
                        Err(err) => break Some(err),
                    },
                    Ok(None) => break Some(StoreError::Closed),
                    Err(err) => break Some(err.into()),
                },
                () = sleep_until(quiet_until), if !self.progress.is_zero() => {
                    quiet_until = Instant::now() + self.progress;
                    if let Err(err) = self.watcher.request_progress().await {
                        break Some(err.into());
                    }
                }
            }
        };
        if let Some(err) = failure {
            let _ = self.out.send(Err(err)).await;
        }
        // The server forgets the watch when the stream ends; cancel politely if it still runs.
        let _ = self.watcher.cancel().await;
    }

    /// Sends what a response carries; `Ok(false)` once the consumer is gone.
    async fn forward(&mut self, resp: WatchResponse) -> Result<bool, StoreError> {
        if resp.compact_revision() > 0 {
            return Err(StoreError::Compacted {
                requested: self.next,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            let reason = format!("watch canceled by etcd: {}", resp.cancel_reason());
            return Err(etcd_client::Error::WatchError(reason).into());
        }
        if resp.created() {
            return Ok(true);
        }
        if resp.events().is_empty() {
            let revision = header_revision(resp.header());
            return Ok(self.send(WatchItem::Progress { revision }).await);
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let kind = match event.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            let event = Event {
                kind,
                kv: self.convert(kv),
                prev: event.prev_kv().map(|kv| self.convert(kv)),
            };
            self.next = event.revision() + 1;
            if !self.send(WatchItem::Event(event)).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn send(&self, item: WatchItem) -> bool {
        self.out.send(Ok(item)).await.is_ok()
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: strip(&self.namespace, kv.key()),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CONNECT_ATTEMPTS, connected, prefix_end};

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    /// A request that could not connect is sent again, up to `CONNECT_ATTEMPTS` times; any other
    /// error is returned at once (it may have reached etcd).
    #[tokio::test]
    async fn only_requests_that_could_not_connect_are_sent_again() {
        let refused = || etcd_client::Error::InvalidArgs("tcp connect error: refused".into());
        let mut sent = 0;
        let answer = connected(|| {
            sent += 1;
            let result = if sent < 3 { Err(refused()) } else { Ok(sent) };
            std::future::ready(result)
        })
        .await;
        assert_eq!(answer.ok(), Some(3));

        let mut sent = 0;
        let answer: Result<(), _> = connected(|| {
            sent += 1;
            std::future::ready(Err(refused()))
        })
        .await;
        assert!(answer.is_err());
        assert_eq!(sent, CONNECT_ATTEMPTS);

        let mut sent = 0;
        let answer: Result<(), _> = connected(|| {
            sent += 1;
            std::future::ready(Err(etcd_client::Error::InvalidArgs(
                "leader changed".into(),
            )))
        })
        .await;
        assert!(answer.is_err());
        assert_eq!(sent, 1);
    }
}
