//! The answering side (NestJS's `ServerKafka`): handlers for message and
//! event patterns, run in offset order, with offsets committed only after a
//! handler has succeeded (and, for requests, after its reply is written).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client};
use franz_consumer::assignor::RoundRobinAssignor;
use franz_consumer::{ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer, TopicPartition};
use franz_producer::{Producer, ProducerConfig};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::client::{consumer_config, to_producer, transport_producer};
use crate::error::TransportError;
use crate::nest::{self, NestValue};

/// A handler's failure: the error body sent back (for message patterns) or
/// logged (for events, which are then retried).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError(pub Value);

impl RpcError {
    /// NestJS's `RpcException("message")` body.
    pub fn message(message: impl AsRef<str>) -> Self {
        Self(nest::rpc_error(message.as_ref()))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MessageFn = Arc<dyn Fn(NestValue) -> BoxFuture<Result<Value, Value>> + Send + Sync>;
type EventFn = Arc<
    dyn Fn(NestValue) -> Result<BoxFuture<Result<(), Value>>, nest::PayloadError> + Send + Sync,
>;

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
    /// Events whose payload does not deserialize go to
    /// `<pattern><dead_letter_suffix>` with an `x-franz-error` header, so
    /// they are neither lost nor retried forever.
    pub dead_letter_suffix: String,
    /// First wait before a failed event handler runs again (doubling, at
    /// most 30 s), as KafkaJS retries.
    pub retry_backoff: Duration,
    /// A stable name for this instance (a pod name, say) makes it a static
    /// group member: restarted within the 10 s session timeout, it takes
    /// its partitions back without a rebalance of the other instances.
    /// Default none (a dynamic member, as NestJS).
    pub group_instance_id: Option<String>,
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
            dead_letter_suffix: ".dead-letter".into(),
            retry_backoff: Duration::from_millis(300),
            group_instance_id: None,
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
    /// error, is sent to the requester's reply topic and partition.
    pub fn message<T, R, F, Fut>(mut self, pattern: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: MessageFn = Arc::new(move |value: NestValue| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let input: T = value
                    .parse()
                    .map_err(|e| nest::rpc_error(&format!("payload: {e}")))?;
                match handler(input).await {
                    Ok(r) => serde_json::to_value(&r)
                        .map_err(|e| nest::rpc_error(&format!("reply: {e}"))),
                    Err(RpcError(body)) => Err(body),
                }
            })
        });
        self.handlers
            .insert(pattern.to_string(), Handler::Message(f));
        self
    }

    /// An event pattern (`@EventPattern`): no reply; a failing handler is
    /// retried (the offset is not committed past it).
    pub fn event<T, F, Fut>(mut self, pattern: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: EventFn = Arc::new(move |value: NestValue| {
            let input: T = value.parse()?;
            let fut = handler(input);
            Ok(Box::pin(async move { fut.await.map_err(|RpcError(body)| body) }) as BoxFuture<_>)
        });
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
        group.assignors = vec![Arc::new(RoundRobinAssignor)];
        group.heartbeat_interval = Duration::from_secs(1);
        group.session_timeout = Duration::from_secs(10);
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
            failures: 0,
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
    let events: Vec<&String> = handlers
        .iter()
        .filter(|(_, h)| matches!(h, Handler::Event(_)))
        .map(|(p, _)| p)
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let client = Client::connect(config.consumer.client.clone())
        .await
        .map_err(|e| TransportError::Consume(e.into()))?;
    let topics = events
        .iter()
        .map(|p| NewTopic::new(format!("{p}{}", config.dead_letter_suffix), 1, -1))
        .collect();
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

/// What handling one partition's records earned.
#[derive(Debug, Default)]
struct PartitionOutcome {
    /// The offset to commit: past the last record handled (and replied to).
    done: Option<i64>,
    /// The first record that failed: the partition resumes there.
    failed: Option<i64>,
}

struct Worker {
    config: TransportServerConfig,
    handlers: BTreeMap<String, Handler>,
    producer: Producer,
    consumer: GroupConsumer,
    /// Consecutive failures of the event at the head of a partition.
    failures: u32,
    /// Offsets earned (handler succeeded, reply acknowledged) and not yet
    /// committed; see [`Worker::commit_due`].
    uncommitted: BTreeMap<TopicPartition, i64>,
    last_commit: std::time::Instant,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), TransportError> {
        while !stop.load(Ordering::Relaxed) {
            let records = match self.consumer.poll(Duration::from_millis(200)).await {
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

    /// Handles a poll's records: each partition's in order, stopping at its
    /// first failure, up to `partitions_concurrently` partitions at once;
    /// then rewinds failed partitions and records what each may commit.
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
                let outcome = this.handle_partition(&records).await;
                (TopicPartition::new(&*topic, partition), outcome)
            })
            .buffer_unordered(self.config.partitions_concurrently.max(1))
            .collect()
            .await;
        let mut any_failed = false;
        for (tp, outcome) in outcomes {
            if let Some(offset) = outcome.failed {
                // Never commit past a failure, even with an earlier poll's
                // larger offset pending: the partition resumes there.
                any_failed = true;
                if let Err(e) = self.consumer.consumer_mut().seek(&tp, offset) {
                    tracing::warn!(error = %e, "could not rewind a failed partition");
                }
                self.uncommitted.insert(tp, offset);
            } else if let Some(done) = outcome.done {
                let o = self.uncommitted.entry(tp).or_insert(done);
                *o = (*o).max(done);
            }
        }
        if any_failed {
            self.failures = self.failures.saturating_add(1);
            let backoff = self.config.retry_backoff * 2u32.saturating_pow(self.failures.min(7) - 1);
            tokio::time::sleep(backoff.min(Duration::from_secs(30))).await;
        } else {
            self.failures = 0;
        }
    }

    /// One partition's records, in order, up to the first failure. Replies
    /// are queued without waiting for each acknowledgement (the producer
    /// batches them) and awaited at the end; an undelivered reply counts as
    /// a failure of its request.
    async fn handle_partition(&self, records: &[ConsumerRecord]) -> PartitionOutcome {
        let mut outcome = PartitionOutcome::default();
        let mut replies = Vec::new();
        for record in records {
            match self.handle_one(record).await {
                Ok(Some(ack)) => replies.push((record.offset, ack)),
                Ok(None) => outcome.done = Some(record.offset + 1),
                Err(e) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "handler failed; will retry");
                    outcome.failed = Some(record.offset);
                    break;
                }
            }
        }
        for (offset, ack) in replies {
            match ack.await {
                Ok(_) => outcome.done = outcome.done.max(Some(offset + 1)),
                Err(e) => {
                    tracing::warn!(offset, error = %e, "reply not delivered; will handle again");
                    outcome.failed = Some(outcome.failed.map_or(offset, |f| f.min(offset)));
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
        self.last_commit = std::time::Instant::now();
        if let Err(e) = self.consumer.commit_offsets(&commits).await {
            // A rebalance: the next owner reads these again (at least once).
            tracing::info!(error = %e, "offsets not committed");
        }
    }

    /// Runs the handler for one record; a request's reply is queued and its
    /// acknowledgement returned for the caller to await.
    async fn handle_one(
        &self,
        record: &ConsumerRecord,
    ) -> Result<Option<franz_producer::DeliveryFuture>, TransportError> {
        let headers = record.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        let reply_to = nest::reply_to(headers);
        let value = nest::decode(record.value.as_ref());
        match self.handlers.get(&*record.topic) {
            Some(Handler::Message(f)) => {
                let outcome = match value {
                    Ok(v) => f(v).await,
                    Err(e) => Err(nest::rpc_error(&format!("payload: {e}"))),
                };
                let Some(to) = reply_to else {
                    return Ok(None); // emitted to a message pattern: result ignored, as Nest
                };
                let reply = nest::reply(&to, outcome.map(|v| nest::encode_json(&v)), true);
                Ok(Some(self.producer.send(to_producer(reply)).await?))
            }
            Some(Handler::Event(f)) => {
                let run = value
                    .map_err(TransportError::from)
                    .and_then(|v| f(v).map_err(TransportError::from));
                match run {
                    Ok(fut) => fut.await.map(|()| None).map_err(TransportError::Remote),
                    Err(TransportError::Payload(e)) => self
                        .dead_letter(record, &e.to_string())
                        .await
                        .map(|()| None),
                    Err(e) => Err(e),
                }
            }
            None => {
                if let Some(to) = reply_to {
                    let err = Value::String(
                        "There is no matching message handler defined in the remote service."
                            .into(),
                    );
                    let reply = nest::reply(&to, Err(err), false);
                    return Ok(Some(self.producer.send(to_producer(reply)).await?));
                }
                Ok(None)
            }
        }
    }

    /// Parks an undeserializable event, unchanged plus an error header.
    async fn dead_letter(
        &self,
        record: &ConsumerRecord,
        error: &str,
    ) -> Result<(), TransportError> {
        tracing::warn!(topic = %record.topic, offset = record.offset, %error, "undeserializable event sent to the dead-letter topic");
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
        headers.push((
            "x-franz-error".into(),
            bytes::Bytes::from(error.to_string()),
        ));
        let out = nest::OutgoingRecord {
            topic: format!("{}{}", record.topic, self.config.dead_letter_suffix),
            partition: None,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
        };
        self.producer.send(to_producer(out)).await?.await?;
        Ok(())
    }
}
