//! The producer: accumulator, sender task and delivery futures.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use franz_client::{Client, ClientError, ConnectionKind};
use franz_protocol::ErrorCode;
use franz_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, produce_request,
};
use franz_protocol::record::{BatchMeta, Header, RecordBatchBuilder, set_producer_fields};
use tokio::sync::{Notify, Semaphore};

use crate::config::{Acks, PartitionerKind, ProducerConfig};
use crate::error::{ProduceError, TrySendError};
use crate::partitioner::{DefaultPartitioner, Partitioner, RoundRobinPartitioner};
use crate::sequence::{BatchOutcome, SequenceState};

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

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
    /// Timestamp (the broker's under LogAppendTime).
    pub timestamp: i64,
}

struct BatchAck {
    base_offset: i64,
    log_append_time: i64,
}

/// One batch's outcome, shared by every record in it: one allocation per
/// batch, not per record.
struct BatchShared {
    topic: Arc<str>,
    partition: i32,
    result: OnceLock<Result<BatchAck, ProduceError>>,
    waiters: Mutex<Vec<Waker>>,
}

impl BatchShared {
    fn complete(&self, r: Result<BatchAck, ProduceError>) {
        if self.result.set(r).is_ok() {
            let waiters =
                std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
            for w in waiters {
                w.wake();
            }
        }
    }
}

/// Resolves when the record is acknowledged (or fails).
#[must_use = "a record's delivery is only known by awaiting its future"]
pub struct DeliveryFuture {
    shared: Arc<BatchShared>,
    index: i32,
    timestamp: i64,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("topic", &self.shared.topic)
            .field("partition", &self.shared.partition)
            .field("done", &self.shared.result.get().is_some())
            .finish()
    }
}

impl DeliveryFuture {
    fn output(&self, r: &Result<BatchAck, ProduceError>) -> Result<RecordMetadata, ProduceError> {
        match r {
            Ok(ack) => Ok(RecordMetadata {
                topic: Arc::clone(&self.shared.topic),
                partition: self.shared.partition,
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i64::from(self.index)
                },
                timestamp: if ack.log_append_time >= 0 {
                    ack.log_append_time
                } else {
                    self.timestamp
                },
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.shared.result.get() {
            return Poll::Ready(self.output(r));
        }
        {
            let mut w = self
                .shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        }
        // Completed between the first check and registering.
        match self.shared.result.get() {
            Some(r) => Poll::Ready(self.output(r)),
            None => Poll::Pending,
        }
    }
}

struct OpenBatch {
    builder: RecordBatchBuilder,
    created: Instant,
    shared: Arc<BatchShared>,
    reserved: usize,
}

struct Batch {
    builder: Option<RecordBatchBuilder>,
    payload: Option<Bytes>,
    records: i32,
    created: Instant,
    shared: Arc<BatchShared>,
    reserved: usize,
    sent_once: bool,
    epoch: i16,
    producer_id: i64,
    base_sequence: i32,
    last_error: Option<String>,
}

struct PartitionQueue {
    open: Option<OpenBatch>,
    queued: VecDeque<Batch>,
    in_flight: bool,
    retry_at: Option<Instant>,
}

struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
}

struct State {
    topics: HashMap<Arc<str>, TopicQueues, foldhash::fast::RandomState>,
    seq: Option<SequenceState>,
    in_flight_requests: HashMap<i32, usize>,
    outstanding: usize,
    flushers: usize,
    bumping: bool,
    fatal: Option<ProduceError>,
    refresh_wanted: bool,
}

struct Inner {
    config: ProducerConfig,
    idempotent: bool,
    client: Client,
    partitioner: Arc<dyn Partitioner>,
    memory: Semaphore,
    state: Mutex<State>,
    wake: Notify,
    progress: Notify,
    closed: AtomicBool,
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
/// delivery futures still resolve) and then ends, instead of waking every
/// 250 ms for as long as the process lives.
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// An upper bound of a record's encoded size in a batch.
fn record_size(record: &ProducerRecord) -> usize {
    let field = |b: Option<usize>| b.map_or(1, |n| n + 5);
    let mut n = 1
        + 10
        + 5
        + 5
        + 5
        + field(record.key.as_ref().map(Bytes::len))
        + field(record.value.as_ref().map(Bytes::len))
        + 5;
    for h in &record.headers {
        n += field(Some(h.key.len())) + field(h.value.as_ref().map(Bytes::len));
    }
    n
}

impl Producer {
    /// Connects, validates the configuration and (when idempotent) obtains a
    /// producer id.
    pub async fn new(config: ProducerConfig) -> Result<Self, ProduceError> {
        config.validate()?;
        let client = Client::connect(config.client.clone()).await?;
        Self::with_client(config, client).await
    }

    /// A producer over an existing client.
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
        let seq = if idempotent {
            let (pid, epoch) = init_producer_id(&client, &config, None).await?;
            tracing::debug!(producer_id = pid, epoch, "idempotent producer ready");
            Some(SequenceState::new(pid, epoch))
        } else {
            None
        };
        let inner = Arc::new(Inner {
            memory: Semaphore::new(config.buffer_memory),
            idempotent,
            client,
            partitioner,
            state: Mutex::new(State {
                topics: HashMap::default(),
                seq,
                in_flight_requests: HashMap::new(),
                outstanding: 0,
                flushers: 0,
                bumping: false,
                fatal: None,
                refresh_wanted: false,
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            closed: AtomicBool::new(false),
            config,
        });
        tokio::spawn(sender(Arc::clone(&inner)));
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
        lock(&self.inner.state)
            .seq
            .as_ref()
            .map(|s| (s.producer_id(), s.epoch()))
    }

    fn check_open(&self) -> Result<(), ProduceError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(ProduceError::Closed);
        }
        if let Some(e) = &lock(&self.inner.state).fatal {
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
        let count = topic.partitions.len() as i32;
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
    /// Dropping this future before it completes sends nothing.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        self.check_open()?;
        let size = record_size(&record);
        self.check_size(size)?;
        let max_block = self.inner.config.max_block;
        // Taken only when something makes `send` wait: a clock read per
        // record shows up in profiles.
        let mut started = None;
        let partition = {
            let md = self.inner.client.metadata();
            match md.topics.get(&*record.topic) {
                Some(t) if !t.partitions.is_empty() => self.choose_partition(&record, t, size)?,
                _ => {
                    let deadline = *started.get_or_insert_with(Instant::now) + max_block;
                    let client = &self.inner.client;
                    let t = client
                        .retry("producer metadata", deadline, || {
                            client.topic_metadata(&record.topic)
                        })
                        .await
                        .map_err(|e| match e {
                            ClientError::UnknownTopic(t) => ProduceError::UnknownTopic(t),
                            ClientError::Timeout { .. } => {
                                ProduceError::UnknownTopic(record.topic.to_string())
                            }
                            other => ProduceError::Client(other),
                        })?;
                    self.choose_partition(&record, &t, size)?
                }
            }
        };
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        match self.inner.memory.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(_) => {
                let waited = started.map_or(Duration::ZERO, |t| t.elapsed());
                let remaining = max_block.saturating_sub(waited);
                match tokio::time::timeout(remaining, self.inner.memory.acquire_many(permits)).await
                {
                    Ok(Ok(p)) => p.forget(),
                    Ok(Err(_)) => return Err(ProduceError::Closed),
                    Err(_) => {
                        return Err(ProduceError::Blocked {
                            what: "buffer memory",
                            after: max_block,
                        });
                    }
                }
            }
        }
        Ok(self.append(record, partition, size))
    }

    /// Queues `record` only if metadata is known and buffer memory is free
    /// now; otherwise fails at once and hands the record back with the
    /// reason ([`ProduceError::BufferFull`] when the buffer is full; boxed,
    /// so the happy path stays small), so that nothing is lost: send it again later, or with [`send`](Self::send).
    pub fn try_send(&self, record: ProducerRecord) -> Result<DeliveryFuture, Box<TrySendError>> {
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
            Err(error) => return Err(Box::new(TrySendError { record, error })),
        };
        match self
            .inner
            .memory
            .try_acquire_many(u32::try_from(size).unwrap_or(u32::MAX))
        {
            Ok(p) => p.forget(),
            Err(_) => {
                let error = ProduceError::BufferFull {
                    buffered: self.buffered_bytes(),
                    limit: self.inner.config.buffer_memory,
                };
                return Err(Box::new(TrySendError { record, error }));
            }
        }
        Ok(self.append(record, partition, size))
    }

    /// Sends and waits for the acknowledgement.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await?.await
    }

    fn append(&self, record: ProducerRecord, partition: i32, reserved: usize) -> DeliveryFuture {
        let inner = &*self.inner;
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let batch_size = inner.config.batch_size;
        let mut st = lock(&inner.state);
        let st = &mut *st;
        // One hash per record; the key is a pointer clone, not a copy.
        let tq = st
            .topics
            .entry(Arc::clone(&record.topic))
            .or_insert_with(|| TopicQueues {
                name: Arc::clone(&record.topic),
                partitions: Vec::new(),
            });
        let idx = partition as usize;
        while tq.partitions.len() <= idx {
            tq.partitions.push(PartitionQueue {
                open: None,
                queued: VecDeque::new(),
                in_flight: false,
                retry_at: None,
            });
        }
        let q = &mut tq.partitions[idx];
        let mut wake = false;
        // Seal the open batch if this record would overflow it.
        if let Some(open) = &q.open
            && !open.builder.is_empty()
            && open.builder.size() + reserved > batch_size
        {
            if let Some(open) = q.open.take() {
                q.queued.push_back(seal(open));
            }
            wake = true;
        }
        if q.open.is_none() {
            st.outstanding += 1;
            wake = true;
        }
        let open = q.open.get_or_insert_with(|| OpenBatch {
            builder: RecordBatchBuilder::with_capacity(batch_size.min(reserved.max(1024))),
            created: Instant::now(),
            shared: Arc::new(BatchShared {
                topic: Arc::clone(&tq.name),
                partition,
                result: OnceLock::new(),
                waiters: Mutex::new(Vec::new()),
            }),
            reserved: 0,
        });
        let index = open.builder.record_count();
        open.builder.push(
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        open.reserved += reserved;
        let future = DeliveryFuture {
            shared: Arc::clone(&open.shared),
            index,
            timestamp,
        };
        if open.builder.size() >= batch_size {
            if let Some(open) = q.open.take() {
                q.queued.push_back(seal(open));
            }
            wake = true;
        }
        if wake {
            inner.wake.notify_one();
        }
        future
    }

    /// Sends everything buffered now (ignoring `linger`) and waits until
    /// every record sent before the call is acknowledged or failed.
    pub async fn flush(&self) {
        lock(&self.inner.state).flushers += 1;
        self.inner.wake.notify_one();
        loop {
            let notified = self.inner.progress.notified();
            if lock(&self.inner.state).outstanding == 0 {
                break;
            }
            notified.await;
        }
        lock(&self.inner.state).flushers -= 1;
    }

    /// Stops accepting records and drains what is buffered within
    /// `deadline`; whatever is left then fails with [`ProduceError::Closed`].
    pub async fn close(&self, deadline: Duration) -> Result<(), ProduceError> {
        self.inner.closed.store(true, Ordering::Relaxed);
        let drained = tokio::time::timeout(deadline, self.flush()).await.is_ok();
        if !drained {
            fail_everything(&self.inner, &ProduceError::Closed);
        }
        self.inner.wake.notify_one();
        if drained {
            Ok(())
        } else {
            Err(ProduceError::DeliveryTimeout {
                after: deadline,
                last_error: "close deadline passed with records still buffered".into(),
            })
        }
    }
}

fn seal(open: OpenBatch) -> Batch {
    Batch {
        records: open.builder.record_count(),
        builder: Some(open.builder),
        payload: None,
        created: open.created,
        shared: open.shared,
        reserved: open.reserved,
        sent_once: false,
        epoch: -1,
        producer_id: -1,
        base_sequence: -1,
        last_error: None,
    }
}

/// Completes a batch and returns its memory.
fn finish_batch(
    inner: &Inner,
    st: &mut State,
    batch: Batch,
    result: Result<BatchAck, ProduceError>,
) {
    if result.is_err()
        && batch.sent_once
        && let Some(seq) = st.seq.as_mut()
    {
        seq.on_sent_batch_abandoned();
    }
    // Memory first: whoever sees the future complete must also see its
    // bytes returned to the buffer.
    inner.memory.add_permits(batch.reserved);
    st.outstanding = st.outstanding.saturating_sub(1);
    let outcome = if result.is_ok() { "acked" } else { "failed" };
    metrics::counter!("franz_producer_batches_total", "outcome" => outcome).increment(1);
    metrics::counter!("franz_producer_records_total", "outcome" => outcome)
        .increment(u64::try_from(batch.records).unwrap_or(0));
    batch.shared.complete(result);
    inner.progress.notify_waiters();
}

fn fail_everything(inner: &Inner, err: &ProduceError) {
    let mut st = lock(&inner.state);
    let st = &mut *st;
    let mut doomed = Vec::new();
    for tq in st.topics.values_mut() {
        for q in &mut tq.partitions {
            if let Some(open) = q.open.take() {
                doomed.push(seal(open));
            }
            doomed.extend(q.queued.drain(..));
        }
    }
    for b in doomed {
        finish_batch(inner, st, b, Err(err.clone()));
    }
}

async fn init_producer_id(
    client: &Client,
    config: &ProducerConfig,
    current: Option<(i64, i16)>,
) -> Result<(i64, i16), ProduceError> {
    let deadline = Instant::now() + config.client.default_api_timeout;
    let req = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: i32::try_from(config.delivery_timeout.as_millis())
            .unwrap_or(i32::MAX),
        producer_id: current.map_or(-1, |c| c.0),
        producer_epoch: current.map_or(-1, |c| c.1),
        ..Default::default()
    };
    let resp = client
        .retry("InitProducerId", deadline, || async {
            let conn = client.any_connection(ConnectionKind::Other).await?;
            let version = conn.version_of::<InitProducerIdRequest>()?;
            // v3+ carries the current id and epoch for a bump (KIP-360).
            let req = if version >= 3 || current.is_none() {
                req.clone()
            } else {
                InitProducerIdRequest {
                    producer_id: -1,
                    producer_epoch: -1,
                    ..req.clone()
                }
            };
            let resp = conn.send(&req).await?;
            ClientError::check(resp.error_code, || "InitProducerId".into(), None)?;
            Ok(resp)
        })
        .await?;
    Ok((resp.producer_id, resp.producer_epoch))
}

/// Why a request's batches came back.
enum RequestResult {
    Sent(Option<ProduceResponse>),
    Failed(ClientError),
}

/// The sender task: turns ready batches into one produce request per
/// broker, at most `max_in_flight` per connection and one batch in flight
/// per partition (so order within a partition survives retries).
async fn sender(inner: Arc<Inner>) {
    loop {
        if inner.closed.load(Ordering::Relaxed) && lock(&inner.state).outstanding == 0 {
            return;
        }
        let (requests, wake_at, bump, refresh) = plan(&inner);
        if refresh {
            let client = inner.client.clone();
            tokio::spawn(async move {
                let _ = client.refresh_metadata_for(&[]).await;
            });
        }
        if let Some((old_pid, old_epoch)) = bump {
            // Only when the epoch would overflow: a new id from the broker,
            // on its own task, so expiry and completions carry on meanwhile.
            let inner2 = Arc::clone(&inner);
            tokio::spawn(async move {
                tracing::info!(
                    old_pid,
                    old_epoch,
                    "producer epoch exhausted; asking for a new id"
                );
                match init_producer_id(&inner2.client, &inner2.config, None).await {
                    Ok((pid, epoch)) => {
                        tracing::info!(producer_id = pid, epoch, "producer epoch bumped");
                        let mut st = lock(&inner2.state);
                        if let Some(seq) = st.seq.as_mut() {
                            seq.on_new_epoch(pid, epoch);
                        }
                        st.bumping = false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "epoch bump failed; will retry");
                        tokio::time::sleep(inner2.config.client.retry_backoff).await;
                        lock(&inner2.state).bumping = false;
                    }
                }
                inner2.wake.notify_one();
            });
        }
        for (leader, batches) in requests {
            tokio::spawn(send_request(Arc::clone(&inner), leader, batches));
        }
        let sleep = tokio::time::sleep_until(wake_at.into());
        tokio::select! {
            () = inner.wake.notified() => {}
            () = sleep => {}
        }
    }
}

type Keyed = (Arc<str>, i32, Batch);

/// One pass over the queues under the lock: expire, pick ready batches,
/// assign sequences, and compute when to look again.
#[allow(clippy::type_complexity)]
fn plan(inner: &Inner) -> (Vec<(i32, Vec<Keyed>)>, Instant, Option<(i64, i16)>, bool) {
    let now = Instant::now();
    let cfg = &inner.config;
    let mut wake_at = now + Duration::from_millis(250);
    let md = inner.client.metadata();
    let mut guard = lock(&inner.state);
    let st = &mut *guard;
    let flushing = st.flushers > 0 || inner.closed.load(Ordering::Relaxed);
    let mut expired = Vec::new();
    let mut per_leader: HashMap<i32, (usize, Vec<Keyed>)> = HashMap::new();
    let mut bump_needed = st.seq.as_ref().is_some_and(SequenceState::bump_needed);
    let in_flight_total: usize = st.in_flight_requests.values().sum();
    let mut bump = None;
    if bump_needed
        && in_flight_total == 0
        && !st.bumping
        && let Some(seq) = st.seq.as_mut()
    {
        match seq.bump_locally() {
            Some((pid, epoch)) => {
                tracing::info!(producer_id = pid, epoch, "producer epoch bumped");
                bump_needed = false;
            }
            None => {
                st.bumping = true;
                bump = Some((seq.producer_id(), seq.epoch()));
            }
        }
    }
    let mut refresh = std::mem::take(&mut st.refresh_wanted);
    let mut in_flight = st.in_flight_requests.clone();
    for tq in st.topics.values_mut() {
        let leaders = md.topics.get(&*tq.name);
        for (p, q) in tq.partitions.iter_mut().enumerate() {
            // Delivery timeout: batches not in flight that waited too long.
            while let Some(front) = q.queued.front() {
                if now.duration_since(front.created) < cfg.delivery_timeout {
                    break;
                }
                if let Some(b) = q.queued.pop_front() {
                    expired.push(b);
                }
            }
            if let Some(open) = &q.open {
                if now.duration_since(open.created) >= cfg.delivery_timeout {
                    if let Some(open) = q.open.take() {
                        expired.push(seal(open));
                    }
                } else if flushing || now >= open.created + cfg.linger {
                    // Seal it only when it can go now. While the partition
                    // has a batch in flight (or waiting), records keep
                    // joining the open batch, as Java's accumulator appends
                    // to its last undrained batch: sealing it at once made a
                    // one-record batch per send with `linger` 0, and one
                    // such batch per round trip is all a partition carried.
                    if !q.in_flight
                        && q.queued.is_empty()
                        && let Some(open) = q.open.take()
                    {
                        q.queued.push_back(seal(open));
                    }
                } else {
                    wake_at = wake_at.min(open.created + cfg.linger);
                }
            }
            if let Some(front) = q.queued.front() {
                wake_at = wake_at.min(front.created + cfg.delivery_timeout);
            }
            if q.in_flight || q.queued.is_empty() || bump_needed {
                continue;
            }
            if let Some(t) = q.retry_at {
                if t > now {
                    wake_at = wake_at.min(t);
                    continue;
                }
                q.retry_at = None;
            }
            let leader = leaders
                .and_then(|t| t.partitions.get(p))
                .map_or(-1, |pm| pm.leader);
            if leader < 0 || !md.brokers.contains_key(&leader) {
                refresh = true;
                continue;
            }
            let slots = in_flight.entry(leader).or_insert(0);
            let entry = per_leader.entry(leader).or_insert((0, Vec::new()));
            if entry.1.is_empty() && *slots >= cfg.max_in_flight_requests_per_connection {
                continue;
            }
            let Some(mut batch) = q.queued.pop_front() else {
                continue;
            };
            let size = batch.builder.as_ref().map_or_else(
                || batch.payload.as_ref().map_or(0, Bytes::len),
                RecordBatchBuilder::size,
            );
            if !entry.1.is_empty() && entry.0 + size > cfg.max_request_size {
                q.queued.push_front(batch);
                continue;
            }
            if let Err(e) = encode_batch(inner, st.seq.as_mut(), &tq.name, p as i32, &mut batch) {
                let b = batch;
                expired.push(Batch {
                    last_error: Some(e.to_string()),
                    ..b
                });
                continue;
            }
            if entry.1.is_empty() {
                *slots += 1;
            }
            entry.0 += size;
            q.in_flight = true;
            entry.1.push((Arc::clone(&tq.name), p as i32, batch));
        }
    }
    for (leader, (_, batches)) in &per_leader {
        if !batches.is_empty() {
            *st.in_flight_requests.entry(*leader).or_insert(0) += 1;
        }
    }
    for b in expired {
        let err = ProduceError::DeliveryTimeout {
            after: cfg.delivery_timeout,
            last_error: b
                .last_error
                .clone()
                .unwrap_or_else(|| "no leader or no broker reachable".into()),
        };
        finish_batch(inner, st, b, Err(err));
    }
    let requests = per_leader
        .into_iter()
        .filter(|(_, (_, b))| !b.is_empty())
        .map(|(l, (_, b))| (l, b))
        .collect();
    (requests, wake_at, bump, refresh)
}

/// Finishes the batch bytes on first send (assigning its sequence), or
/// re-sequences them after an epoch bump.
fn encode_batch(
    inner: &Inner,
    seq: Option<&mut SequenceState>,
    topic: &str,
    partition: i32,
    batch: &mut Batch,
) -> Result<(), ProduceError> {
    let cfg = &inner.config;
    let (pid, epoch, base) = match seq {
        Some(s) => {
            if batch.payload.is_some() && s.is_current(batch.producer_id, batch.epoch) {
                return Ok(()); // a retry: same bytes, same sequence
            }
            let base = s.assign(topic, partition, batch.records);
            (s.producer_id(), s.epoch(), base)
        }
        None => {
            if batch.payload.is_some() {
                return Ok(());
            }
            (-1, -1, -1)
        }
    };
    match (batch.builder.take(), batch.payload.take()) {
        (Some(builder), _) => {
            let meta = BatchMeta {
                compression: cfg.compression_type,
                compression_level: cfg.compression_level,
                producer_id: pid,
                producer_epoch: epoch,
                base_sequence: base,
                ..BatchMeta::default()
            };
            batch.payload = Some(builder.finish(&meta)?);
        }
        (None, Some(old)) => {
            let mut bytes = BytesMut::from(&old[..]);
            set_producer_fields(&mut bytes, pid, epoch, base)?;
            batch.payload = Some(bytes.freeze());
        }
        (None, None) => return Err(ProduceError::Fatal("batch without records".into())),
    }
    batch.epoch = epoch;
    batch.producer_id = pid;
    batch.base_sequence = base;
    Ok(())
}

async fn send_request(inner: Arc<Inner>, leader: i32, batches: Vec<Keyed>) {
    let cfg = &inner.config;
    let mut topics: Vec<produce_request::TopicProduceData> = Vec::new();
    for (topic, partition, batch) in &batches {
        let data = produce_request::PartitionProduceData {
            index: *partition,
            records: batch.payload.clone(),
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
    let req = ProduceRequest {
        transactional_id: None,
        acks: cfg.acks.wire(),
        timeout_ms: i32::try_from(cfg.client.request_timeout.as_millis()).unwrap_or(i32::MAX),
        topic_data: topics,
        ..Default::default()
    };
    // The frame is the batches plus a little framing: size it once.
    let size_hint = batches
        .iter()
        .map(|(t, _, b)| b.payload.as_ref().map_or(0, Bytes::len) + t.len() + 32)
        .sum::<usize>()
        + 256;
    let result = async {
        let conn = inner
            .client
            .connection(leader, ConnectionKind::Produce)
            .await?;
        let version = conn.version_of::<ProduceRequest>()?;
        if cfg.acks == Acks::None {
            conn.send_no_response(&req, version, size_hint)
                .await
                .map(|()| None)
        } else {
            // The broker may hold the request for up to timeout_ms waiting
            // for replicas; give the response a little longer than that.
            let wait = cfg.client.request_timeout + Duration::from_secs(1);
            conn.send_sized(&req, version, wait, size_hint)
                .await
                .map(Some)
        }
    }
    .await;
    let result = match result {
        Ok(r) => RequestResult::Sent(r),
        Err(e) => RequestResult::Failed(e),
    };
    handle_response(&inner, leader, batches, result);
    inner.wake.notify_one();
}

fn handle_response(inner: &Inner, leader: i32, batches: Vec<Keyed>, result: RequestResult) {
    let cfg = &inner.config;
    let now = Instant::now();
    let mut guard = lock(&inner.state);
    let st = &mut *guard;
    if let Some(n) = st.in_flight_requests.get_mut(&leader) {
        *n = n.saturating_sub(1);
    }
    for (topic, partition, mut batch) in batches {
        batch.sent_once = true;
        let (outcome, code, message) = match &result {
            RequestResult::Failed(e) => {
                batch.last_error = Some(e.to_string());
                // An unreadable answer leaves the batch's fate unknown (the
                // broker may have written it): resend the same bytes and
                // sequence, which the broker deduplicates, rather than
                // give the sequence to the next batch.
                if e.is_retriable() || matches!(e, ClientError::Decode { .. }) {
                    st.refresh_wanted |= e.invalidates_metadata();
                    (BatchOutcome::Retry, None, None)
                } else {
                    (BatchOutcome::Fail, None, Some(e.to_string()))
                }
            }
            RequestResult::Sent(None) => (BatchOutcome::Done, None, None),
            RequestResult::Sent(Some(resp)) => {
                let p = resp
                    .responses
                    .iter()
                    .filter(|t| *t.name == *topic)
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.index == partition);
                match p {
                    None => (
                        BatchOutcome::Retry,
                        None,
                        Some("partition missing from the response".into()),
                    ),
                    Some(p) => {
                        let code = ErrorCode::from_code(p.error_code);
                        let outcome = match st.seq.as_mut() {
                            Some(seq) => seq.on_response(code),
                            None if code.is_ok() => BatchOutcome::Done,
                            None if code.is_retriable() => BatchOutcome::Retry,
                            None => BatchOutcome::Fail,
                        };
                        if outcome == BatchOutcome::Done {
                            let ack = BatchAck {
                                base_offset: p.base_offset,
                                log_append_time: p.log_append_time_ms,
                            };
                            let q = queue_of(st, &topic, partition);
                            if let Some(q) = q {
                                q.in_flight = false;
                            }
                            finish_batch(inner, st, batch, Ok(ack));
                            continue;
                        }
                        if code.is_retriable() {
                            st.refresh_wanted |= franz_client::code_invalidates_metadata(code);
                        }
                        batch.last_error = Some(format!("{code}"));
                        (outcome, Some(code), p.error_message.clone())
                    }
                }
            }
        };
        if outcome == BatchOutcome::Done {
            if let Some(q) = queue_of(st, &topic, partition) {
                q.in_flight = false;
            }
            finish_batch(
                inner,
                st,
                batch,
                Ok(BatchAck {
                    base_offset: -1,
                    log_append_time: -1,
                }),
            );
            continue;
        }
        let expired = now.duration_since(batch.created) >= cfg.delivery_timeout;
        match outcome {
            BatchOutcome::Retry | BatchOutcome::RetryAfterBump if !expired => {
                metrics::counter!("franz_producer_retries_total").increment(1);
                if let Some(q) = queue_of(st, &topic, partition) {
                    q.in_flight = false;
                    q.retry_at = Some(now + cfg.client.retry_backoff);
                    q.queued.push_front(batch);
                }
            }
            BatchOutcome::Retry | BatchOutcome::RetryAfterBump => {
                if let Some(q) = queue_of(st, &topic, partition) {
                    q.in_flight = false;
                }
                let err = ProduceError::DeliveryTimeout {
                    after: cfg.delivery_timeout,
                    last_error: batch.last_error.clone().unwrap_or_default(),
                };
                finish_batch(inner, st, batch, Err(err));
            }
            _ => {
                if let Some(q) = queue_of(st, &topic, partition) {
                    q.in_flight = false;
                }
                let err = match (code, &result) {
                    (Some(code), _) => {
                        if code == ErrorCode::ProducerFenced {
                            st.fatal = Some(ProduceError::Fatal(format!("{code}")));
                        }
                        ProduceError::Broker {
                            topic: topic.to_string(),
                            partition,
                            code,
                            message,
                        }
                    }
                    (None, RequestResult::Failed(e)) => ProduceError::Client(e.clone()),
                    (None, _) => ProduceError::Fatal(message.unwrap_or_default()),
                };
                // Only a broker's per-partition refusal says the batch is not
                // in the log: then its sequences are free, and (one batch in
                // flight per partition) the next batch reuses them. Any other
                // failure after sending leaves its fate unknown, so the
                // sequence is not reused: `finish_batch` marks it abandoned
                // and the epoch is bumped.
                if code.is_some()
                    && let Some(seq) = st.seq.as_mut()
                    && seq.is_current(batch.producer_id, batch.epoch)
                {
                    seq.rollback(&topic, partition, batch.base_sequence);
                    batch.sent_once = false;
                }
                finish_batch(inner, st, batch, Err(err));
            }
        }
    }
    inner.progress.notify_waiters();
}

fn queue_of<'a>(st: &'a mut State, topic: &str, partition: i32) -> Option<&'a mut PartitionQueue> {
    st.topics
        .get_mut(topic)?
        .partitions
        .get_mut(partition as usize)
}
