//! The answering side (NestJS's `ServerKafka`): handlers for message and
//! event patterns, run in offset order, with offsets committed only after a
//! handler has succeeded (and, for requests, after its reply is written).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client};
use franz_consumer::assignor::RoundRobinAssignor;
use franz_consumer::{
    ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer, GroupProtocol, TopicPartition,
};
use franz_producer::{Producer, ProducerConfig};
use futures_util::FutureExt;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use tokio::task::JoinHandle;

use crate::client::{consumer_config, to_producer, transport_producer};
use crate::error::TransportError;
use crate::nest::{self, NestValue};

/// A handler's failure: the error body sent back (for message patterns) or
/// logged (for events), and whether trying again may help.
///
/// An event whose handler fails with a retriable error is handled again,
/// after a backoff, up to `max_attempts`; a non-retriable one (NestJS has
/// `RpcException` for both, and `KafkaRetriableException` for the first)
/// goes to the dead-letter topic at once. `?` works in handlers: any
/// `std::error::Error` converts into a retriable `RpcError`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    body: Value,
    retriable: bool,
}

impl RpcError {
    /// NestJS's `RpcException("message")` body; retriable.
    pub fn message(message: impl AsRef<str>) -> Self {
        Self {
            body: nest::rpc_error(message.as_ref()),
            retriable: true,
        }
    }

    /// A failure that trying again cannot fix (a malformed order, say): an
    /// event goes to the dead-letter topic at once.
    pub fn fatal(message: impl AsRef<str>) -> Self {
        Self {
            body: nest::rpc_error(message.as_ref()),
            retriable: false,
        }
    }

    /// An error with an arbitrary body (what a NestJS exception filter may
    /// send).
    pub fn with_body(body: Value, retriable: bool) -> Self {
        Self { body, retriable }
    }

    /// The error body.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Whether handling the record again may succeed.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// The message, for logs and the dead-letter header.
    fn describe(&self) -> String {
        match self.body.get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => self.body.to_string(),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for RpcError {
    fn from(e: E) -> Self {
        Self::message(e.to_string())
    }
}

/// A handler that panicked: a retriable failure like any other (the panic
/// may come from a bad record, which the attempts then dead-letter).
fn panicked(payload: &(dyn std::any::Any + Send)) -> RpcError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    RpcError::message(format!("handler panicked: {what}"))
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MessageFn = Arc<dyn Fn(NestValue, Ctx) -> BoxFuture<Result<Value, RpcError>> + Send + Sync>;
type EventFn = Arc<
    dyn Fn(NestValue, Ctx) -> Result<BoxFuture<Result<(), RpcError>>, nest::PayloadError>
        + Send
        + Sync,
>;

/// Where a record came from, as NestJS's `KafkaContext` tells a handler
/// (`@Ctx()`): topic, partition, offset, key, headers, timestamp, and the
/// whole record.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use franz_transport::{Ctx, TransportServer, TransportServerConfig};
/// let server = TransportServer::builder(TransportServerConfig::new("127.0.0.1:9092", "billing"))
///     .event("order.shipped", |id: String, ctx: Ctx| async move {
///         println!("[{}/{}@{}] shipped {id}", ctx.topic(), ctx.partition(), ctx.offset());
///         Ok(())
///     })
///     .start()
///     .await?;
/// # server.shutdown().await }
/// ```
#[derive(Debug, Clone)]
pub struct Ctx {
    record: ConsumerRecord,
}

impl Ctx {
    /// The topic (the pattern).
    pub fn topic(&self) -> &str {
        &self.record.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.record.partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    /// The key (`None` for a null key).
    pub fn key(&self) -> Option<&bytes::Bytes> {
        self.record.key.as_ref()
    }

    /// The headers, in order, duplicates kept (NestJS's own among them).
    pub fn headers(&self) -> &[(bytes::Bytes, Option<bytes::Bytes>)] {
        &self.record.headers
    }

    /// The last value of header `name`.
    pub fn header(&self, name: &str) -> Option<&bytes::Bytes> {
        self.record.header(name)
    }

    /// The timestamp, in ms since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp
    }

    /// The whole record.
    pub fn record(&self) -> &ConsumerRecord {
        &self.record
    }
}

/// Starts a handler (calls it, getting its future), a panic turned into a
/// failure. The call happens here, not in the boxed future, because the
/// future must not borrow the handler.
fn start<Fut>(make: impl FnOnce() -> Fut) -> Result<Fut, RpcError> {
    std::panic::catch_unwind(AssertUnwindSafe(make)).map_err(|p| panicked(&*p))
}

/// Runs a started handler's future, a panic while polling it turned into a
/// failure.
async fn finish<T>(fut: impl Future<Output = Result<T, RpcError>>) -> Result<T, RpcError> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => Err(panicked(&*p)),
    }
}

/// A message handler's run: decode, start, await, encode the reply.
fn run_message<T, R, Fut>(
    value: NestValue,
    make: impl FnOnce(T) -> Fut,
) -> BoxFuture<Result<Value, RpcError>>
where
    T: DeserializeOwned,
    R: Serialize,
    Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
{
    let started = value
        .parse::<T>()
        .map_err(|e| RpcError::fatal(format!("payload: {e}")))
        .and_then(|t| start(|| make(t)));
    Box::pin(async move {
        finish(started?).await.and_then(|r| {
            serde_json::to_value(&r).map_err(|e| RpcError::fatal(format!("reply: {e}")))
        })
    })
}

/// An event handler's run: decode (a payload that does not fit is the
/// caller's to dead-letter), start, await.
fn run_event<T, Fut>(
    value: NestValue,
    make: impl FnOnce(T) -> Fut,
) -> Result<BoxFuture<Result<(), RpcError>>, nest::PayloadError>
where
    T: DeserializeOwned,
    Fut: Future<Output = Result<(), RpcError>> + Send + 'static,
{
    let t = value.parse::<T>()?;
    let started = start(|| make(t));
    Ok(Box::pin(async move { finish(started?).await }))
}

/// A message-pattern handler: an async fn of the payload, or of the payload
/// and its [`Ctx`], returning `Result<impl Serialize, RpcError>`. `M` only
/// tells the two shapes apart.
pub trait MessageHandler<M>: Send + Sync + 'static {
    /// Decodes the payload and runs the handler.
    fn call(&self, value: NestValue, ctx: Ctx) -> BoxFuture<Result<Value, RpcError>>;
}

/// An event-pattern handler: an async fn of the payload, or of the payload
/// and its [`Ctx`], returning `Result<(), RpcError>`. `M` only tells the
/// two shapes apart.
pub trait EventHandler<M>: Send + Sync + 'static {
    /// Decodes the payload (an error means it does not fit `T`) and starts
    /// the handler.
    fn call(
        &self,
        value: NestValue,
        ctx: Ctx,
    ) -> Result<BoxFuture<Result<(), RpcError>>, nest::PayloadError>;
}

/// Marks handlers that take only the payload.
#[derive(Debug)]
pub struct PayloadOnly<T>(std::marker::PhantomData<fn() -> T>);

/// Marks handlers that take the payload and its [`Ctx`].
#[derive(Debug)]
pub struct WithCtx<T>(std::marker::PhantomData<fn() -> T>);

impl<F, Fut, T, R> MessageHandler<PayloadOnly<(T, R)>> for F
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
{
    fn call(&self, value: NestValue, _ctx: Ctx) -> BoxFuture<Result<Value, RpcError>> {
        run_message(value, self)
    }
}

impl<F, Fut, T, R> MessageHandler<WithCtx<(T, R)>> for F
where
    F: Fn(T, Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
{
    fn call(&self, value: NestValue, ctx: Ctx) -> BoxFuture<Result<Value, RpcError>> {
        run_message(value, |t| self(t, ctx))
    }
}

impl<F, Fut, T> EventHandler<PayloadOnly<T>> for F
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), RpcError>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
{
    fn call(
        &self,
        value: NestValue,
        _ctx: Ctx,
    ) -> Result<BoxFuture<Result<(), RpcError>>, nest::PayloadError> {
        run_event(value, self)
    }
}

impl<F, Fut, T> EventHandler<WithCtx<T>> for F
where
    F: Fn(T, Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), RpcError>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
{
    fn call(
        &self,
        value: NestValue,
        ctx: Ctx,
    ) -> Result<BoxFuture<Result<(), RpcError>>, nest::PayloadError> {
        run_event(value, |t| self(t, ctx))
    }
}

#[derive(Clone)]
enum Handler {
    Message(MessageFn),
    Event(EventFn),
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct TransportServerConfig {
    /// Bootstrap servers, security, fetch settings.
    pub consumer: ConsumerConfig,
    /// The producer for replies and dead letters.
    pub producer: ProducerConfig,
    /// The consumer group (NestJS's default is `nestjs-group-server`).
    pub group_id: String,
    /// Events that fail for good (every attempt used, a non-retriable error,
    /// a payload that does not deserialize) and requests whose reply cannot
    /// be written go to `<topic><dead_letter_suffix>` (default `.DLT`, Spring
    /// Kafka's convention), on the record's own partition when the
    /// dead-letter topic has it, with Spring's `kafka_dlt-*` headers. The
    /// offset is committed only once that write is acknowledged.
    pub dead_letter_suffix: String,
    /// How many times an event handler runs before the event is
    /// dead-lettered (default `Some(5)`, as KafkaJS retries); `None`
    /// redelivers without end, as the NestJS page describes.
    pub max_attempts: Option<u32>,
    /// First wait before a failed event is handled again; it doubles with
    /// each attempt (with ±20% jitter) up to `retry_backoff_max`. Only the
    /// failing partition waits: it is paused, and every other partition and
    /// pattern goes on.
    pub retry_backoff: Duration,
    /// The longest wait between attempts (default 30 s).
    pub retry_backoff_max: Duration,
    /// A stable name for this instance (a pod name, say) makes it a static
    /// group member: restarted within the 10 s session timeout, it takes
    /// its partitions back without a rebalance of the other instances.
    /// Default none (a dynamic member, as NestJS).
    pub group_instance_id: Option<String>,
    /// The group's session timeout (default 10 s, as NestJS's KafkaJS
    /// consumer; the NestJS page advises tuning it with
    /// `heartbeat_interval`).
    pub session_timeout: Duration,
    /// How often the member heartbeats (default 1 s).
    pub heartbeat_interval: Duration,
    /// The group protocol (default classic, so franz servers can share a
    /// group with NestJS servers; KIP-848's `Consumer` is for franz-only
    /// groups).
    pub group_protocol: GroupProtocol,
    /// Classic assignors offered (default KafkaJS's `RoundRobinAssigner`,
    /// eager, which NestJS servers speak; `cooperative-sticky` is an option
    /// for franz-only groups).
    pub assignors: Vec<Arc<dyn franz_consumer::assignor::Assignor>>,
    /// How many partitions' records are handled at once (KafkaJS's
    /// `partitionsConsumedConcurrently`; default 1, as NestJS). Records of
    /// one partition are always handled one at a time, in order, and each
    /// partition commits only up to its first failure; only handlers of
    /// different partitions (different keys) overlap.
    pub partitions_concurrently: usize,
}

impl TransportServerConfig {
    /// Defaults for `bootstrap_servers` and `group_id`; new groups start at
    /// the latest offset, as NestJS (KafkaJS `fromBeginning: false`).
    pub fn new(bootstrap_servers: &str, group_id: &str) -> Self {
        Self {
            consumer: consumer_config(bootstrap_servers),
            producer: transport_producer(bootstrap_servers),
            group_id: group_id.to_string(),
            dead_letter_suffix: ".DLT".into(),
            max_attempts: Some(5),
            retry_backoff: Duration::from_millis(300),
            retry_backoff_max: Duration::from_secs(30),
            group_instance_id: None,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            group_protocol: GroupProtocol::Classic,
            assignors: vec![Arc::new(RoundRobinAssignor)],
            partitions_concurrently: 1,
        }
    }
}

/// Registers handlers, then [`start`](Self::start)s the server.
pub struct TransportServerBuilder {
    config: TransportServerConfig,
    handlers: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for TransportServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportServerBuilder")
            .field("config", &self.config)
            .field("patterns", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A running NestJS-compatible server.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use franz_transport::{RpcError, TransportServer, TransportServerConfig};
/// #[derive(serde::Deserialize)]
/// struct Charge { order: u64, cents: u64 }
/// let server = TransportServer::builder(TransportServerConfig::new("127.0.0.1:9092", "billing"))
///     .message("billing.charge", |c: Charge| async move {
///         if c.cents == 0 { return Err(RpcError::message("nothing to charge")); }
///         Ok(serde_json::json!({"order": c.order, "charged": c.cents}))
///     })
///     .event("orders.created", |order: serde_json::Value| async move {
///         println!("new order {order}");
///         Ok(())
///     })
///     .start()
///     .await?;
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TransportServer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<(), TransportError>>,
}

impl TransportServer {
    /// A server with no handlers yet.
    pub fn builder(config: TransportServerConfig) -> TransportServerBuilder {
        TransportServerBuilder {
            config,
            handlers: BTreeMap::new(),
        }
    }

    /// Stops after the record in hand, leaves the group, flushes replies.
    pub async fn shutdown(self) -> Result<(), TransportError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.map_err(|_| TransportError::Closed)?
    }
}

impl TransportServerBuilder {
    /// A message pattern (`@MessagePattern`): the handler's result, or its
    /// error, is sent to the requester's reply topic and partition. The
    /// handler takes the payload, or the payload and its [`Ctx`]:
    /// `|order: Order| async move { .. }` or
    /// `|order: Order, ctx: Ctx| async move { .. }`.
    pub fn message<M, H: MessageHandler<M>>(mut self, pattern: &str, handler: H) -> Self {
        let handler = Arc::new(handler);
        let f: MessageFn = Arc::new(move |value: NestValue, ctx: Ctx| {
            let handler = Arc::clone(&handler);
            Box::pin(async move { handler.call(value, ctx).await })
        });
        self.handlers
            .insert(pattern.to_string(), Handler::Message(f));
        self
    }

    /// An event pattern (`@EventPattern`): no reply. A failing handler is
    /// handled again after a backoff of its partition, up to
    /// `max_attempts`, then dead-lettered; the offset is never committed
    /// past an event neither handled nor dead-lettered. The handler takes
    /// the payload, or the payload and its [`Ctx`].
    pub fn event<M, H: EventHandler<M>>(mut self, pattern: &str, handler: H) -> Self {
        let handler = Arc::new(handler);
        let f: EventFn = Arc::new(move |value: NestValue, ctx: Ctx| handler.call(value, ctx));
        self.handlers.insert(pattern.to_string(), Handler::Event(f));
        self
    }

    /// Joins the group (with KafkaJS's `RoundRobinAssigner`, so it can share
    /// a group with NestJS servers) and starts handling.
    pub async fn start(self) -> Result<TransportServer, TransportError> {
        let Self { config, handlers } = self;
        let patterns: Vec<&str> = handlers.keys().map(String::as_str).collect();
        let producer = Producer::new(config.producer.clone()).await?;
        ensure_dead_letter_topics(&config, &handlers).await?;
        let mut group = GroupConfig::new(config.group_id.as_str());
        group.assignors.clone_from(&config.assignors);
        group.heartbeat_interval = config.heartbeat_interval;
        group.session_timeout = config.session_timeout;
        group.protocol = config.group_protocol;
        group
            .group_instance_id
            .clone_from(&config.group_instance_id);
        // As long as a JoinGroup may take: the rebalance timeout and a request.
        let join_timeout = group.rebalance_timeout + config.consumer.client.request_timeout;
        let mut consumer = GroupConsumer::new(config.consumer.clone(), group, &patterns).await?;
        // Join now, so that `start` returning means the server is serving.
        consumer.wait_for_assignment(join_timeout).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            config,
            handlers,
            producer,
            consumer,
            retries: BTreeMap::new(),
            uncommitted: BTreeMap::new(),
            last_commit: std::time::Instant::now(),
        };
        let task = tokio::spawn(worker.run(Arc::clone(&stop)));
        Ok(TransportServer { stop, task })
    }
}

async fn ensure_dead_letter_topics(
    config: &TransportServerConfig,
    handlers: &BTreeMap<String, Handler>,
) -> Result<(), TransportError> {
    if handlers.is_empty() {
        return Ok(());
    }
    let client = Client::connect(config.consumer.client.clone())
        .await
        .map_err(|e| TransportError::Consume(e.into()))?;
    // As Spring creates them: as many partitions as the source topic, so a
    // dead letter keeps its partition (and its key's order).
    let mut topics = Vec::new();
    for pattern in handlers.keys() {
        let partitions = match client.topic_metadata(pattern).await {
            Ok(t) => i32::try_from(t.partitions.len()).unwrap_or(1).max(1),
            Err(_) => 1,
        };
        topics.push(NewTopic::new(
            format!("{pattern}{}", config.dead_letter_suffix),
            partitions,
            -1,
        ));
    }
    let created = Admin::new(client.clone())
        .create_topics(topics, false)
        .await
        .map_err(|e| TransportError::Consume(e.into()))?;
    client.close();
    for (topic, r) in created {
        if let Err(e) = r
            && !e.to_string().contains("TOPIC_ALREADY_EXISTS")
        {
            tracing::warn!(%topic, error = %e, "could not create the dead-letter topic");
        }
    }
    Ok(())
}

/// A record whose handling failed.
#[derive(Debug)]
struct Failure {
    record: ConsumerRecord,
    reason: String,
    /// Whether handling it again may help; if not it is dead-lettered now.
    retriable: bool,
}

/// What handling one partition's records earned.
#[derive(Debug, Default)]
struct PartitionOutcome {
    /// The offset to commit: past the last record handled (and replied to,
    /// or dead-lettered).
    done: Option<i64>,
    /// The first record that failed: the partition resumes there.
    failed: Option<Failure>,
}

/// What one record's handling came to.
enum Handled {
    Done,
    /// A reply was queued; its acknowledgement decides.
    Reply(franz_producer::DeliveryFuture),
    Failed {
        reason: String,
        retriable: bool,
    },
}

/// A partition waiting to handle its head record again.
#[derive(Debug)]
struct Retry {
    offset: i64,
    /// Handler runs so far for the record at `offset`.
    attempts: u32,
    resume_at: Instant,
    /// Paused until `resume_at`.
    paused: bool,
    /// Every attempt is used but the dead-letter write failed: the next
    /// time round, write the dead letter again instead of handling.
    dead_letter: Option<String>,
}

struct Worker {
    config: TransportServerConfig,
    handlers: BTreeMap<String, Handler>,
    producer: Producer,
    consumer: GroupConsumer,
    /// Partitions whose head record failed, by partition: only they wait.
    retries: BTreeMap<TopicPartition, Retry>,
    /// Offsets earned (handler succeeded, reply acknowledged) and not yet
    /// committed; see [`Worker::commit_due`].
    uncommitted: BTreeMap<TopicPartition, i64>,
    last_commit: Instant,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), TransportError> {
        while !stop.load(Ordering::Relaxed) {
            self.resume_due();
            let wait = self
                .retries
                .values()
                .filter(|r| r.paused)
                .map(|r| r.resume_at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::MAX)
                .clamp(Duration::from_millis(1), Duration::from_millis(200));
            let records = match self.consumer.poll(wait).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "transport server poll failed; retrying");
                    tokio::time::sleep(self.config.retry_backoff).await;
                    continue;
                }
            };
            let idle = records.is_empty();
            self.handle(records).await;
            self.commit_due(idle).await;
        }
        self.commit_due(true).await;
        self.producer.close(Duration::from_secs(10)).await?;
        self.consumer.close().await?;
        Ok(())
    }

    /// Resumes partitions whose backoff is over, and forgets retries of
    /// partitions the member no longer owns (their next owner starts over).
    fn resume_due(&mut self) {
        let assigned = self.consumer.assignment();
        self.retries.retain(|tp, _| assigned.contains(tp));
        let now = Instant::now();
        let due: Vec<TopicPartition> = self
            .retries
            .iter_mut()
            .filter(|(_, r)| r.paused && r.resume_at <= now)
            .map(|(tp, r)| {
                r.paused = false;
                tp.clone()
            })
            .collect();
        if !due.is_empty()
            && let Err(e) = self.consumer.resume(&due)
        {
            tracing::debug!(error = %e, "resuming after a backoff");
        }
    }

    /// Handles a poll's records: each partition's in order, stopping at its
    /// first failure, up to `partitions_concurrently` partitions at once;
    /// then applies the failure policy and records what each may commit.
    async fn handle(&mut self, records: Vec<ConsumerRecord>) {
        // Keyed by the record's shared topic name: no allocation per record.
        let mut by_partition: BTreeMap<(Arc<str>, i32), Vec<ConsumerRecord>> = BTreeMap::new();
        for record in records {
            by_partition
                .entry((Arc::clone(&record.topic), record.partition))
                .or_default()
                .push(record);
        }
        let this = &*self;
        let outcomes: Vec<(TopicPartition, PartitionOutcome)> = stream::iter(by_partition)
            .map(|((topic, partition), records)| async move {
                let tp = TopicPartition::new(&*topic, partition);
                let outcome = this.handle_partition(&tp, &records).await;
                (tp, outcome)
            })
            .buffer_unordered(self.config.partitions_concurrently.max(1))
            .collect()
            .await;
        for (tp, outcome) in outcomes {
            if let Some(done) = outcome.done {
                let o = self.uncommitted.entry(tp.clone()).or_insert(done);
                *o = (*o).max(done);
                if self.retries.get(&tp).is_some_and(|r| r.offset < done) {
                    self.retries.remove(&tp);
                }
            }
            if let Some(failure) = outcome.failed {
                self.failed(tp, failure).await;
            }
        }
    }

    /// The failure policy for a partition's head record: another attempt
    /// after a backoff that pauses only this partition, or (every attempt
    /// used, or not retriable) the dead-letter topic. Nothing past the
    /// record is committed until it is handled or dead-lettered.
    async fn failed(&mut self, tp: TopicPartition, failure: Failure) {
        let offset = failure.record.offset;
        let attempts = self
            .retries
            .get(&tp)
            .filter(|r| r.offset == offset)
            .map_or(1, |r| {
                r.attempts
                    .saturating_add(u32::from(r.dead_letter.is_none()))
            });
        let exhausted =
            !failure.retriable || self.config.max_attempts.is_some_and(|max| attempts >= max);
        let mut dead_letter = None;
        if exhausted {
            match self
                .dead_letter(&failure.record, &failure.reason, attempts)
                .await
            {
                Ok(()) => {
                    self.retries.remove(&tp);
                    let o = self.uncommitted.entry(tp.clone()).or_insert(offset + 1);
                    *o = (*o).max(offset + 1);
                    if let Err(e) = self.consumer.consumer_mut().seek(&tp, offset + 1) {
                        tracing::warn!(error = %e, "could not move past a dead letter");
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, offset, error = %e, "dead-letter write failed; the partition stalls and tries again");
                    dead_letter = Some(failure.reason.clone());
                }
            }
        } else {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, offset, attempts, reason = %failure.reason, "handler failed; will retry");
        }
        // Resume at the failed record, after a backoff of this partition.
        if let Err(e) = self.consumer.consumer_mut().seek(&tp, offset) {
            tracing::warn!(error = %e, "could not rewind a failed partition");
        }
        // Never commit past a failure, even with an earlier poll's larger
        // offset pending.
        if let Some(o) = self.uncommitted.get_mut(&tp) {
            *o = (*o).min(offset);
        }
        let resume_at = Instant::now() + self.backoff(&tp, offset, attempts);
        let paused = self.consumer.pause(std::slice::from_ref(&tp)).is_ok();
        self.retries.insert(
            tp,
            Retry {
                offset,
                attempts,
                resume_at,
                paused,
                dead_letter,
            },
        );
    }

    /// `retry_backoff` doubled per attempt, at most `retry_backoff_max`,
    /// with ±20% jitter so failing partitions do not retry in lockstep.
    fn backoff(&self, tp: &TopicPartition, offset: i64, attempts: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let base = self
            .config
            .retry_backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
            .min(self.config.retry_backoff_max);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(tp.topic.as_bytes());
        h.write_i32(tp.partition);
        h.write_i64(offset);
        h.write_u32(attempts);
        let jitter = 0.8 + (h.finish() % 401) as f64 / 1000.0;
        base.mul_f64(jitter)
    }

    /// One partition's records, in order, up to the first failure. Replies
    /// are queued without waiting for each acknowledgement (the producer
    /// batches them) and awaited at the end. A reply that cannot be written
    /// at all (an out-of-range reply partition, a missing topic, a reply
    /// too large) dead-letters its request: the handler ran once, and never
    /// runs again for it.
    async fn handle_partition(
        &self,
        tp: &TopicPartition,
        records: &[ConsumerRecord],
    ) -> PartitionOutcome {
        let mut outcome = PartitionOutcome::default();
        let mut replies = Vec::new();
        let pending = self.retries.get(tp);
        for record in records {
            if let Some(reason) = pending
                .filter(|r| r.offset == record.offset)
                .and_then(|r| r.dead_letter.clone())
            {
                outcome.failed = Some(Failure {
                    record: record.clone(),
                    reason,
                    retriable: false,
                });
                break;
            }
            match self.handle_one(record).await {
                Handled::Done => outcome.done = Some(record.offset + 1),
                Handled::Reply(ack) => replies.push((record, ack)),
                Handled::Failed { reason, retriable } => {
                    outcome.failed = Some(Failure {
                        record: record.clone(),
                        reason,
                        retriable,
                    });
                    break;
                }
            }
        }
        for (record, ack) in replies {
            let offset = record.offset;
            let failure = match ack.await {
                Ok(_) => None,
                Err(e) if !e.is_retriable() => {
                    let reason = format!("reply not delivered: {e}");
                    match self.dead_letter(record, &reason, 1).await {
                        Ok(()) => None,
                        Err(_) => Some((reason, false)),
                    }
                }
                Err(e) => Some((format!("reply not delivered: {e}"), true)),
            };
            match failure {
                None => outcome.done = outcome.done.max(Some(offset + 1)),
                Some((reason, retriable)) => {
                    tracing::warn!(offset, %reason, "request not answered");
                    // The earliest failure decides where the partition resumes.
                    if outcome
                        .failed
                        .as_ref()
                        .is_none_or(|f| f.record.offset > offset)
                    {
                        outcome.failed = Some(Failure {
                            record: record.clone(),
                            reason,
                            retriable,
                        });
                    }
                    outcome.done = outcome.done.map(|d| d.min(offset));
                    break;
                }
            }
        }
        outcome
    }

    /// Commits what handlers have earned, at most every 100 ms while records
    /// flow and at once when the server goes idle or stops: a commit round
    /// trip per poll would sit in front of the next request.
    async fn commit_due(&mut self, now: bool) {
        if self.uncommitted.is_empty()
            || (!now && self.last_commit.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        let commits: Vec<(TopicPartition, i64)> =
            std::mem::take(&mut self.uncommitted).into_iter().collect();
        self.last_commit = Instant::now();
        if let Err(e) = self.consumer.commit_offsets(&commits).await {
            // A rebalance: the next owner reads these again (at least once).
            tracing::info!(error = %e, "offsets not committed");
        }
    }

    /// Runs the handler for one record; a request's reply is queued and its
    /// acknowledgement handed back for the caller to await.
    async fn handle_one(&self, record: &ConsumerRecord) -> Handled {
        let headers = record.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        let reply_to = nest::reply_to(headers);
        let value = nest::decode(record.value.as_ref());
        let reply = match self.handlers.get(&*record.topic) {
            Some(Handler::Message(f)) => {
                let outcome = match value {
                    Ok(v) => {
                        f(
                            v,
                            Ctx {
                                record: record.clone(),
                            },
                        )
                        .await
                    }
                    Err(e) => Err(RpcError::fatal(format!("payload: {e}"))),
                };
                let Some(to) = reply_to else {
                    return Handled::Done; // emitted to a message pattern: result ignored, as Nest
                };
                nest::reply(
                    &to,
                    outcome.map(|v| nest::encode_json(&v)).map_err(|e| e.body),
                    true,
                )
            }
            Some(Handler::Event(f)) => {
                let run = match value {
                    Ok(v) => f(
                        v,
                        Ctx {
                            record: record.clone(),
                        },
                    )
                    .map_err(|e| RpcError::fatal(format!("payload: {e}"))),
                    Err(e) => Err(RpcError::fatal(format!("payload: {e}"))),
                };
                let result = match run {
                    Ok(fut) => fut.await,
                    Err(e) => Err(e),
                };
                return match result {
                    Ok(()) => Handled::Done,
                    Err(e) => Handled::Failed {
                        reason: e.describe(),
                        retriable: e.is_retriable(),
                    },
                };
            }
            None => {
                let Some(to) = reply_to else {
                    return Handled::Done;
                };
                let err = Value::String(
                    "There is no matching message handler defined in the remote service.".into(),
                );
                nest::reply(&to, Err(err), false)
            }
        };
        match self.producer.send(to_producer(reply)).await {
            Ok(ack) => Handled::Reply(ack),
            Err(e) => Handled::Failed {
                reason: format!("reply not sent: {e}"),
                retriable: e.is_retriable(),
            },
        }
    }

    /// Parks a record for good in `<topic><dead_letter_suffix>`: unchanged,
    /// on its own partition when the dead-letter topic has it, with Spring
    /// Kafka's `kafka_dlt-*` headers (partition, offset and timestamp as
    /// big-endian integers, as Spring writes them) and the attempt count.
    /// Returns once the write is acknowledged.
    async fn dead_letter(
        &self,
        record: &ConsumerRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<(), TransportError> {
        tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, attempts, %reason, "sending a record to the dead-letter topic");
        let topic = format!("{}{}", record.topic, self.config.dead_letter_suffix);
        let partition = match self.producer.client().topic_metadata(&topic).await {
            Ok(t) if t.partitions.iter().any(|p| p.partition == record.partition) => {
                Some(record.partition)
            }
            _ => None,
        };
        let mut headers: Vec<(String, bytes::Bytes)> = record
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    String::from_utf8(k.to_vec()).ok()?,
                    v.clone().unwrap_or_default(),
                ))
            })
            .collect();
        let b = |v: &[u8]| bytes::Bytes::copy_from_slice(v);
        headers.extend([
            (
                "kafka_dlt-original-topic".to_string(),
                b(record.topic.as_bytes()),
            ),
            (
                "kafka_dlt-original-partition".to_string(),
                b(&record.partition.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-offset".to_string(),
                b(&record.offset.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-timestamp".to_string(),
                b(&record.timestamp.to_be_bytes()),
            ),
            (
                "kafka_dlt-original-timestamp-type".to_string(),
                b(match record.timestamp_type {
                    franz_client::franz_protocol::record::TimestampType::LogAppendTime => {
                        b"LogAppendTime"
                    }
                    _ => b"CreateTime",
                }),
            ),
            (
                "kafka_dlt-exception-message".to_string(),
                b(reason.as_bytes()),
            ),
            (
                "kafka_dlt-exception-fqcn".to_string(),
                b(b"franz_transport::RpcError"),
            ),
            (
                "kafka_dlt-attempts".to_string(),
                b(attempts.to_string().as_bytes()),
            ),
        ]);
        let out = nest::OutgoingRecord {
            topic,
            partition,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
        };
        // Bounded, so a dead-letter topic that is gone stalls only this
        // partition's progress (it is retried after a backoff), not the
        // server: other partitions' commits and handlers go on.
        let bound = self
            .config
            .consumer
            .client
            .request_timeout
            .min(Duration::from_secs(10));
        let write = async { self.producer.send(to_producer(out)).await?.await };
        match tokio::time::timeout(bound, write).await {
            Ok(r) => r.map(|_| ()).map_err(TransportError::from),
            Err(_) => Err(TransportError::Timeout {
                pattern: format!("{}{}", record.topic, self.config.dead_letter_suffix),
                after: bound,
            }),
        }
    }
}
