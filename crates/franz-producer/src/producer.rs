//! The driver: the public [`Producer`], and the tokio task that runs the
//! sans-io [`Sender`] over the [`Accumulator`].
//!
//! Everything that decides lives in those two; this file only reads the
//! clock, takes the lock, writes requests and hands back their outcomes.
#![allow(clippy::disallowed_methods)] // a driver: max_block and close deadlines; the accumulator and sender get `now` from here

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_client::{Client, ClientError, ConnectionKind, RefreshBackoff};
use franz_protocol::messages::{InitProducerIdRequest, ProduceRequest, produce_request};
use franz_protocol::record::Header;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::accumulator::{Accumulator, record_size};
use crate::batch::DeliveryFuture;
use crate::clock::RecordClock;
use crate::config::{Acks, PartitionerKind, ProducerConfig};
use crate::error::{ProduceError, SendError};
use crate::partitioner::{DefaultPartitioner, Partitioner, RoundRobinPartitioner};
use crate::sender::{Completion, RequestOutcome, SendRequest, Sender, SenderConfig};
use crate::sequence::SequenceState;
use crate::transaction::Txn;

mod txn;

use crate::batch::RecordMetadata;

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerRecord {
    /// Topic. An `Arc<str>`, so sending many records to one topic clones a
    /// pointer, not the name (`"orders".into()` or `Arc::clone(&topic)`).
    pub topic: Arc<str>,
    /// Key (serialized); `None` is a null key.
    pub key: Option<Bytes>,
    /// Value (serialized); `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order; duplicate keys allowed.
    pub headers: Vec<Header>,
    /// An explicit partition (else the partitioner chooses).
    pub partition: Option<i32>,
    /// Timestamp in ms (else the time of `send`).
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A tombstone (null value) for `key`.
    pub fn tombstone(topic: impl Into<Arc<str>>, key: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// The accumulator and the sender, under one lock.
struct State {
    acc: Accumulator,
    sender: Sender,
    flushers: usize,
    /// Transactional producers: the transaction.
    txn: Option<Txn>,
    /// Timestamps for records sent without one.
    clock: RecordClock,
}

impl State {
    /// The transaction, or the error for calling `operation` on a producer
    /// without a transactional id.
    fn txn_for(&mut self, operation: &str) -> Result<&mut Txn, ProduceError> {
        self.txn
            .as_mut()
            .ok_or_else(|| ProduceError::Config(format!("{operation} needs a transactional_id")))
    }
}

/// What Produce requests carry, for a transactional producer.
const TXN_NONE: u8 = 0;
/// A transaction under protocol version 1 (Produce at most v11).
const TXN_V1: u8 = 1;
/// A transaction under protocol version 2 (Produce v12+ adds partitions).
const TXN_V2: u8 = 2;

struct Inner {
    config: ProducerConfig,
    idempotent: bool,
    client: Client,
    partitioner: Arc<dyn Partitioner>,
    memory: Arc<Semaphore>,
    state: Mutex<State>,
    /// Something changed that the sender task should plan for.
    wake: Notify,
    /// A batch completed (flush waiters look again).
    progress: Notify,
    closed: AtomicBool,
    /// TXN_NONE, TXN_V1 or TXN_V2: the protocol of the open transaction.
    txn_mode: AtomicU8,
    /// The cluster speaks transaction version 2 (as last seen).
    tv2_available: AtomicBool,
}

/// An idempotent, batching producer. Cheap to clone; clones share batches.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_producer::ProduceError> {
/// use franz_producer::{Producer, ProducerConfig, ProducerRecord};
/// let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
/// let delivery = producer.send(ProducerRecord::new("orders", "hello").with_key("order-1")).await?;
/// let meta = delivery.await?;
/// println!("{}-{}@{}", meta.topic, meta.partition, meta.offset);
/// producer.close(std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    /// Shared by the clones only (not the sender task): when the last one
    /// is dropped, the sender delivers what was sent and stops.
    _last: Arc<LastHandle>,
}

/// Dropping the last [`Producer`] clone without `close`: no more records
/// can come, so the sender task finishes the batches in hand (their
/// delivery futures still resolve) and then ends, instead of living as
/// long as the process.
struct LastHandle(Arc<Inner>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Relaxed);
        self.0.wake.notify_one();
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("idempotent", &self.inner.idempotent)
            .field("buffered_bytes", &self.buffered_bytes())
            .finish()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrements the flush count however `flush` ends, dropped included.
struct FlushGuard<'a>(&'a Inner);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.flushers = st.flushers.saturating_sub(1);
    }
}

impl Producer {
    /// Connects, validates the configuration and (when idempotent) obtains a
    /// producer id.
    ///
    /// # Cancel safety
    /// Dropping it before it returns leaves nothing running: the sender task
    /// is spawned only in its last step, with no await after it, and the
    /// connections it opened close with its client. An InitProducerId the
    /// broker already received is still answered; that producer id is
    /// simply never used.
    pub async fn new(config: ProducerConfig) -> Result<Self, ProduceError> {
        config.validate()?;
        let client = Client::connect(config.client.clone()).await?;
        Self::with_client(config, client).await
    }

    /// A producer over an existing client.
    ///
    /// # Cancel safety
    /// Dropping it before it returns spawns no sender task and leaves
    /// `client` as it was (only the clone passed in is dropped; connections
    /// it pooled meanwhile stay in the client). An InitProducerId the broker
    /// already received is still answered; that producer id is never used.
    pub async fn with_client(config: ProducerConfig, client: Client) -> Result<Self, ProduceError> {
        config.validate()?;
        let idempotent = config.idempotent()?;
        let partitioner: Arc<dyn Partitioner> = match config.partitioner {
            PartitionerKind::Default => Arc::new(DefaultPartitioner::new(config.batch_size)),
            PartitionerKind::RoundRobin => Arc::new(RoundRobinPartitioner::default()),
        };
        Self::build(config, client, partitioner, idempotent).await
    }

    /// A producer with a custom partitioner.
    ///
    /// # Cancel safety
    /// As [`new`](Self::new): dropped before it returns, no sender task runs
    /// and its connections close; an InitProducerId already sent only wastes
    /// a producer id.
    pub async fn with_partitioner(
        config: ProducerConfig,
        partitioner: Arc<dyn Partitioner>,
    ) -> Result<Self, ProduceError> {
        config.validate()?;
        let idempotent = config.idempotent()?;
        let client = Client::connect(config.client.clone()).await?;
        Self::build(config, client, partitioner, idempotent).await
    }

    async fn build(
        config: ProducerConfig,
        client: Client,
        partitioner: Arc<dyn Partitioner>,
        idempotent: bool,
    ) -> Result<Self, ProduceError> {
        let transactional = config.transactional_id.is_some();
        let seq = if transactional {
            // The id comes with `init_transactions`.
            Some(SequenceState::new(-1, -1))
        } else if idempotent {
            let (pid, epoch) = init_producer_id(&client, &config).await?;
            tracing::debug!(producer_id = pid, epoch, "idempotent producer ready");
            Some(SequenceState::new(pid, epoch))
        } else {
            None
        };
        // The counter's first use in a process calibrates it, a busy loop of
        // up to 200 ms: kept off the runtime's worker threads.
        let clock = tokio::task::spawn_blocking(RecordClock::new)
            .await
            .unwrap_or_else(|_| RecordClock::new());
        let memory = Arc::new(Semaphore::new(config.buffer_memory));
        let sender = Sender::new(
            SenderConfig {
                linger: config.linger,
                delivery_timeout: config.delivery_timeout,
                retry_backoff: config.client.retry_backoff,
                max_request_size: config.max_request_size,
                max_in_flight: config.max_in_flight_requests_per_connection,
                compression: config.compression_type,
                compression_level: config.compression_level,
            },
            seq,
            transactional,
        );
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                acc: Accumulator::new(config.batch_size, Arc::clone(&memory)),
                sender,
                flushers: 0,
                txn: config.transactional_id.as_ref().map(|_| Txn::new()),
                clock,
            }),
            memory,
            idempotent,
            client,
            partitioner,
            wake: Notify::new(),
            progress: Notify::new(),
            closed: AtomicBool::new(false),
            txn_mode: AtomicU8::new(TXN_NONE),
            tv2_available: AtomicBool::new(false),
            config,
        });
        tokio::spawn(run_sender(Arc::clone(&inner)));
        Ok(Self {
            _last: Arc::new(LastHandle(Arc::clone(&inner))),
            inner,
        })
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Whether idempotence is on.
    pub fn is_idempotent(&self) -> bool {
        self.inner.idempotent
    }

    /// Bytes of records accepted and not yet acknowledged or failed; never
    /// more than `buffer_memory`.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.config.buffer_memory - self.inner.memory.available_permits()
    }

    /// Producer id and epoch (idempotent producers).
    pub fn producer_id_and_epoch(&self) -> Option<(i64, i16)> {
        lock(&self.inner.state).sender.producer_id_and_epoch()
    }

    fn check_open(&self) -> Result<(), ProduceError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(ProduceError::Closed);
        }
        let st = lock(&self.inner.state);
        if let Some(e) = st
            .sender
            .fatal()
            .or_else(|| st.txn.as_ref().and_then(Txn::fatal))
        {
            return Err(e.clone());
        }
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), ProduceError> {
        let c = &self.inner.config;
        if size + 61 + 100 > c.max_request_size {
            return Err(ProduceError::RecordTooLarge {
                size,
                limit: c.max_request_size,
                setting: "max_request_size",
            });
        }
        if size > c.buffer_memory {
            return Err(ProduceError::RecordTooLarge {
                size,
                limit: c.buffer_memory,
                setting: "buffer_memory",
            });
        }
        Ok(())
    }

    /// The partition for `record` given the topic's metadata.
    fn choose_partition(
        &self,
        record: &ProducerRecord,
        topic: &franz_client::TopicMetadata,
        size: usize,
    ) -> Result<i32, ProduceError> {
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        match record.partition {
            Some(p) if p >= 0 && p < count => Ok(p),
            Some(p) => Err(ProduceError::UnknownPartition {
                topic: record.topic.to_string(),
                partition: p,
            }),
            None => Ok(self
                .inner
                .partitioner
                .partition(topic, record.key.as_deref(), size)),
        }
    }

    /// Queues `record`, waiting (up to `max_block`) for metadata and buffer
    /// memory. The returned future resolves when the record is acknowledged.
    ///
    /// # Cancel safety
    /// Dropping it before it returns never queues the record (it is dropped
    /// with the future): the append is its last step, with no await after
    /// it. It leaves behind at most a Metadata request for the topic on the
    /// wire (its answer discarded; the topic stays among those the client
    /// refreshes) and its place in the wait for buffer memory (no memory is
    /// held). Once it has returned the record is queued: dropping the
    /// [`DeliveryFuture`] does not cancel it, it is still delivered (and
    /// retried), and only the acknowledgement is lost.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, Box<SendError>> {
        let handed_back = |record, error| Err(Box::new(SendError { record, error }));
        if let Err(error) = self.check_open() {
            return handed_back(record, error);
        }
        let size = record_size(&record);
        if let Err(error) = self.check_size(size) {
            return handed_back(record, error);
        }
        let max_block = self.inner.config.max_block;
        // Taken only when something makes `send` wait: a clock read per
        // record shows up in profiles.
        let mut started = None;
        let partition = match self
            .partition_for(&record, size, max_block, &mut started)
            .await
        {
            Ok(p) => p,
            Err(error) => return handed_back(record, error),
        };
        // Read under the lock (the clock's anchor lives in the state); kept
        // for the append after a wait for memory: the record's time is when
        // it was sent, not when room was found.
        let timestamp;
        let record = {
            let mut st = lock(&self.inner.state);
            if let Some(Err(error)) = st.txn.as_ref().map(|t| t.check_send("send")) {
                drop(st);
                return handed_back(record, error);
            }
            timestamp = record.timestamp.unwrap_or_else(|| st.clock.now_ms());
            match st
                .acc
                .try_append(record, partition, size, timestamp, Instant::now)
            {
                Ok(appended) => {
                    drop(st);
                    if appended.wake_sender {
                        self.inner.wake.notify_one();
                    }
                    return Ok(appended.future);
                }
                Err(record) => *record,
            }
        };
        // No room: wait for memory outside the lock, then append with it.
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        let waited = started.map_or(Duration::ZERO, |t| t.elapsed());
        let remaining = max_block.saturating_sub(waited);
        match tokio::time::timeout(remaining, self.inner.memory.acquire_many(permits)).await {
            Ok(Ok(p)) => p.forget(),
            Ok(Err(_)) => return handed_back(record, ProduceError::Closed),
            Err(_) => {
                let error = ProduceError::Blocked {
                    what: "buffer memory",
                    after: max_block,
                };
                return handed_back(record, error);
            }
        }
        let appended = {
            let mut st = lock(&self.inner.state);
            if let Some(Err(error)) = st.txn.as_ref().map(|t| t.check_send("send")) {
                drop(st);
                self.inner.memory.add_permits(size);
                return handed_back(record, error);
            }
            st.acc
                .append_reserved(record, partition, size, timestamp, Instant::now)
        };
        if appended.wake_sender {
            self.inner.wake.notify_one();
        }
        Ok(appended.future)
    }

    /// The partition for `record`, refreshing the topic's metadata (within
    /// `max_block`, counted from `started`) when it is not known yet.
    async fn partition_for(
        &self,
        record: &ProducerRecord,
        size: usize,
        max_block: Duration,
        started: &mut Option<Instant>,
    ) -> Result<i32, ProduceError> {
        {
            let md = self.inner.client.metadata();
            if let Some(t) = md
                .topics
                .get(&*record.topic)
                .filter(|t| !t.partitions.is_empty())
            {
                return self.choose_partition(record, t, size);
            }
        }
        let deadline = *started.get_or_insert_with(Instant::now) + max_block;
        let client = &self.inner.client;
        let t = client
            .retry("producer metadata", deadline, || {
                client.topic_metadata(&record.topic)
            })
            .await
            .map_err(|e| match e {
                ClientError::UnknownTopic(t) => ProduceError::UnknownTopic(t),
                ClientError::Timeout { .. } => ProduceError::UnknownTopic(record.topic.to_string()),
                other => ProduceError::Client(other),
            })?;
        self.choose_partition(record, &t, size)
    }

    /// Queues `record` only if metadata is known and buffer memory is free
    /// now; otherwise fails at once and hands the record back with the
    /// reason ([`ProduceError::BufferFull`] when the buffer is full; boxed,
    /// so the happy path stays small), so that nothing is lost: send it
    /// again later, or with [`send`](Self::send).
    ///
    /// # Cancel safety
    /// Not async: the record is queued (or handed back) before it returns.
    /// Dropping the returned [`DeliveryFuture`] does not cancel the record:
    /// it stays queued and is still delivered; only the acknowledgement is
    /// lost.
    pub fn try_send(&self, record: ProducerRecord) -> Result<DeliveryFuture, Box<SendError>> {
        let size = record_size(&record);
        let checked = self.check_open().and_then(|()| self.check_size(size));
        let partition = checked.and_then(|()| {
            let md = self.inner.client.metadata();
            let t = md
                .topics
                .get(&*record.topic)
                .filter(|t| !t.partitions.is_empty())
                .ok_or_else(|| ProduceError::UnknownTopic(record.topic.to_string()))?;
            self.choose_partition(&record, t, size)
        });
        let partition = match partition {
            Ok(p) => p,
            Err(error) => return Err(Box::new(SendError { record, error })),
        };
        let mut st = lock(&self.inner.state);
        if let Some(Err(error)) = st.txn.as_ref().map(|t| t.check_send("try_send")) {
            return Err(Box::new(SendError { record, error }));
        }
        let timestamp = record.timestamp.unwrap_or_else(|| st.clock.now_ms());
        let appended = st
            .acc
            .try_append(record, partition, size, timestamp, Instant::now);
        drop(st);
        match appended {
            Ok(appended) => {
                if appended.wake_sender {
                    self.inner.wake.notify_one();
                }
                Ok(appended.future)
            }
            Err(record) => {
                let error = ProduceError::BufferFull {
                    buffered: self.buffered_bytes(),
                    limit: self.inner.config.buffer_memory,
                };
                Err(Box::new(SendError {
                    record: *record,
                    error,
                }))
            }
        }
    }

    /// Sends and waits for the acknowledgement.
    ///
    /// # Cancel safety
    /// Dropped while [`send`](Self::send) still waits (for metadata or
    /// buffer memory), the record is never queued. Dropped after that, while
    /// waiting for the acknowledgement, it does not cancel the record: it
    /// stays queued and is still delivered (and retried); only the
    /// acknowledgement is lost.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await?.await
    }

    /// Sends everything buffered now (ignoring `linger`) and waits until
    /// every record sent before the call is acknowledged or failed. Records
    /// sent after the call are not waited for (beyond those that joined a
    /// batch opened before it), so a flush under continuous load returns.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping it only stops the waiting. A guard withdraws
    /// its flush request (`linger` applies again), batches it already
    /// sealed are sent anyway, and no record is cancelled.
    pub async fn flush(&self) {
        let inner = &*self.inner;
        let target = {
            let mut st = lock(&inner.state);
            st.flushers += 1;
            st.acc.next_number()
        };
        let _guard = FlushGuard(inner);
        inner.wake.notify_one();
        loop {
            let notified = inner.progress.notified();
            let oldest = lock(&inner.state).acc.oldest_outstanding();
            if oldest.is_none_or(|n| n >= target) {
                break;
            }
            notified.await;
        }
    }

    /// Stops accepting records and drains what is buffered within
    /// `deadline`. Whatever is left then fails: records never sent with
    /// [`ProduceError::Closed`], records in flight with
    /// [`ProduceError::ClosedInFlight`] (they may be in the log).
    ///
    /// # Cancel safety
    /// Dropping it stops the waiting and skips failing what is left at the
    /// deadline: the producer is closed from the first poll on (`send`
    /// fails with [`ProduceError::Closed`]), and its sender task keeps
    /// delivering the records it holds (each batch within
    /// `delivery_timeout`), then ends.
    pub async fn close(&self, deadline: Duration) -> Result<(), ProduceError> {
        self.inner.closed.store(true, Ordering::Relaxed);
        let drained = tokio::time::timeout(deadline, self.flush()).await.is_ok();
        if !drained {
            let mut st = lock(&self.inner.state);
            let st = &mut *st;
            let failed = st.sender.fail_all(&mut st.acc);
            for c in failed {
                finish(&self.inner, st, c);
            }
        }
        self.inner.wake.notify_one();
        if drained {
            Ok(())
        } else {
            Err(ProduceError::DeliveryTimeout {
                after: deadline,
                sent: false,
                last_error: Some(Box::new(ProduceError::Closed)),
            })
        }
    }
}

/// Completes a batch: memory back first (whoever sees the future complete
/// must also see its bytes returned), then metrics and the future. A
/// failed batch makes an open transaction abortable.
fn finish(inner: &Inner, st: &mut State, c: Completion) {
    st.acc.release(&c.batch);
    if let (Err(e), Some(txn)) = (&c.result, st.txn.as_mut())
        && !matches!(e, ProduceError::TransactionAborted)
    {
        txn.on_batch_failed(e);
    }
    let outcome = if c.result.is_ok() { "acked" } else { "failed" };
    metrics::counter!("franz_producer_batches_total", "outcome" => outcome).increment(1);
    metrics::counter!("franz_producer_records_total", "outcome" => outcome)
        .increment(u64::try_from(c.batch.records).unwrap_or(0));
    c.batch.shared.complete(c.result);
    inner.progress.notify_waiters();
}

/// InitProducerId without a transactional id: a new producer id at epoch 0.
async fn init_producer_id(
    client: &Client,
    config: &ProducerConfig,
) -> Result<(i64, i16), ProduceError> {
    let deadline = Instant::now() + config.client.default_api_timeout;
    let req = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: i32::try_from(config.delivery_timeout.as_millis())
            .unwrap_or(i32::MAX),
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let resp = client
        .retry("InitProducerId", deadline, || async {
            let conn = client.any_connection(ConnectionKind::Other).await?;
            let resp = conn.send(&req).await?;
            ClientError::check(resp.error_code, || "InitProducerId".into(), None)?;
            Ok(resp)
        })
        .await?;
    Ok((resp.producer_id, resp.producer_epoch))
}

/// The sender task: plans under the lock, then writes what the plan says.
/// Ends once the producer is closed (or its last handle dropped) and every
/// batch is done.
async fn run_sender(inner: Arc<Inner>) {
    // Per leader: the signal the last request handed to a task gives once
    // its frame is in the connection's queue. Each request waits for its
    // predecessor's, so the broker reads one partition's pipelined batches
    // in sequence order (tasks alone start in any order, and a broker that
    // reads batch n+1 before n answers OUT_OF_ORDER_SEQUENCE_NUMBER).
    let mut written: HashMap<i32, oneshot::Receiver<()>> = HashMap::new();
    let client_config = inner.client.config();
    let mut refresh =
        RefreshBackoff::new(client_config.retry_backoff, client_config.retry_backoff_max);
    loop {
        let now = Instant::now();
        let md = inner.client.metadata();
        let mut plan = {
            let mut st = lock(&inner.state);
            let st = &mut *st;
            if inner.closed.load(Ordering::Relaxed) && st.acc.is_empty() {
                return;
            }
            let flushing = st.flushers > 0 || inner.closed.load(Ordering::Relaxed);
            let mut plan = st.sender.plan(&mut st.acc, &*md, now, flushing);
            for c in std::mem::take(&mut plan.completions) {
                finish(&inner, st, c);
            }
            plan
        };
        if plan.refresh_metadata {
            // KIP-580: a leaderless partition asks on every turn of this
            // loop; the refreshes themselves back off.
            if refresh.try_refresh(now) {
                let client = inner.client.clone();
                tokio::spawn(async move {
                    let _ = client.refresh_metadata_for(&[]).await;
                });
            }
            if let Some(at) = refresh.next_allowed() {
                plan.wake_at = Some(plan.wake_at.map_or(at, |w| w.min(at)));
            }
        } else {
            refresh.reset();
        }
        if plan.init_producer_id {
            // Only when the epoch would overflow; on its own task so that
            // completions carry on meanwhile.
            let inner2 = Arc::clone(&inner);
            tokio::spawn(async move {
                tracing::info!("producer epoch exhausted; asking for a new id");
                let r = init_producer_id(&inner2.client, &inner2.config).await;
                {
                    let mut st = lock(&inner2.state);
                    let st = &mut *st;
                    st.sender.on_producer_id(&mut st.acc, r, Instant::now());
                }
                inner2.wake.notify_one();
            });
        }
        if !plan.add_partitions.is_empty() {
            tokio::spawn(txn::add_partitions(
                Arc::clone(&inner),
                std::mem::take(&mut plan.add_partitions),
            ));
        }
        for req in plan.sends {
            let (done, next) = oneshot::channel();
            let after = written.insert(req.leader, next);
            tokio::spawn(send_request(Arc::clone(&inner), req, after, done));
        }
        match plan.wake_at {
            Some(at) => {
                tokio::select! {
                    () = inner.wake.notified() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => inner.wake.notified().await,
        }
    }
}

/// Writes one produce request once the one before it to the same leader
/// is written (`after`), says so (`written`, also on failure: dropped),
/// and hands its outcome to the sender.
async fn send_request(
    inner: Arc<Inner>,
    req: SendRequest,
    after: Option<oneshot::Receiver<()>>,
    written: oneshot::Sender<()>,
) {
    if let Some(after) = after {
        // Err: the predecessor failed before writing; either way it is done.
        let _ = after.await;
    }
    let cfg = &inner.config;
    let mut topics: Vec<produce_request::TopicProduceData> = Vec::new();
    for (topic, partition, payload) in &req.batches {
        let data = produce_request::PartitionProduceData {
            index: *partition,
            records: Some(payload.clone()),
            ..Default::default()
        };
        match topics.iter_mut().find(|t| *t.name == **topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(produce_request::TopicProduceData {
                name: topic.to_string(),
                partition_data: vec![data],
                ..Default::default()
            }),
        }
    }
    let txn_mode = inner.txn_mode.load(Ordering::Relaxed);
    let produce = ProduceRequest {
        transactional_id: if txn_mode == TXN_NONE {
            None
        } else {
            cfg.transactional_id.clone()
        },
        acks: cfg.acks.wire(),
        timeout_ms: i32::try_from(cfg.client.request_timeout.as_millis()).unwrap_or(i32::MAX),
        topic_data: topics,
        ..Default::default()
    };
    // The frame is the batches plus a little framing: size it once.
    let size_hint = req.size
        + req
            .batches
            .iter()
            .map(|(t, _, _)| t.len() + 32)
            .sum::<usize>()
        + 256;
    let result = async {
        let conn = inner
            .client
            .connection(req.leader, ConnectionKind::Produce)
            .await?;
        let mut version = conn.version_of::<ProduceRequest>()?;
        if txn_mode == TXN_V1 {
            // v12+ would add partitions implicitly (transaction version 2).
            version = version.min(11);
        }
        if cfg.acks == Acks::None {
            let sent = conn.send_no_response(&produce, version, size_hint).await;
            drop(written);
            sent.map(|()| None)
        } else {
            // The broker may hold the request for up to timeout_ms waiting
            // for replicas; give the response a little longer than that.
            let wait = cfg.client.request_timeout + Duration::from_secs(1);
            let in_flight = conn.enqueue_sized(&produce, version, wait, size_hint).await;
            drop(written);
            in_flight?.response().await.map(Some)
        }
    }
    .await;
    let outcome = match result {
        Ok(Some(resp)) => {
            // KIP-951: a partition refused because its leader moved names
            // the new one; route its retry there without waiting for a
            // metadata refresh.
            inner.client.follow_produce_hints(&resp);
            RequestOutcome::Answered(resp)
        }
        Ok(None) => RequestOutcome::Unanswered,
        Err(e) => RequestOutcome::Failed(e),
    };
    {
        let mut st = lock(&inner.state);
        let st = &mut *st;
        let done = st
            .sender
            .on_produce_result(&mut st.acc, req.id, &outcome, Instant::now());
        for c in done {
            finish(&inner, st, c);
        }
    }
    inner.wake.notify_one();
    // Waiters on in-flight requests (an abort) look again even when no
    // batch completed (a batch put back to be retried).
    inner.progress.notify_waiters();
}
