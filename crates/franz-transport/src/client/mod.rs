//! The requesting side (NestJS's `ClientKafka`): `send` to message patterns
//! and wait for the reply, `emit` events.
#![allow(clippy::disallowed_methods)] // a driver: request timeouts and the reply loop

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use franz_client::admin::NewTopic;
use franz_client::{Admin, ClientConfig};
use franz_consumer::assignor::{Assignor, CooperativeStickyAssignor};
use franz_consumer::{
    ConsumerConfig, GroupConfig, GroupConsumer, GroupProtocol, HookFuture, OffsetReset,
    RebalanceListener, TopicPartition,
};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use futures_util::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::{self, Codec};
use crate::error::{RemoteError, TransportError};
use crate::nest::{self, OutgoingRecord};
use crate::topics::{self, Provision};
use crate::trace;

mod message;
mod replies;

pub use message::{IntoMessage, Message};
pub use replies::Replies;
use replies::*;

/// Client settings.
#[derive(Debug, Clone)]
pub struct TransportClientConfig {
    /// Bootstrap servers, security and the rest of the client settings
    /// (shared with the producer's: set TLS and SASL on both).
    pub consumer: ConsumerConfig,
    /// The producer for requests and events.
    pub producer: ProducerConfig,
    /// The group of this client's reply consumer. Every client instance in
    /// it gets its own reply partitions, so the reply topics need at least
    /// as many partitions as instances (as with NestJS).
    pub reply_group: String,
    /// How long `send` may take, end to end: producing the request and
    /// waiting for its reply (NestJS has no default timeout).
    pub request_timeout: Duration,
    /// The codec of requests, events and replies (default JSON with
    /// NestJS's rules).
    pub codec: Arc<dyn Codec>,
    /// The reply group's session timeout (default 10 s, as KafkaJS).
    pub session_timeout: Duration,
    /// How often the reply member heartbeats (default 1 s).
    pub heartbeat_interval: Duration,
    /// How long a reply-group rebalance may take (default 60 s).
    pub rebalance_timeout: Duration,
    /// The reply group's assignors. The default, `cooperative-sticky`,
    /// keeps each instance's reply partitions through joins, leaves and
    /// restarts of the others, so replies in flight land where their
    /// requester reads; an eager assignor (range, round-robin) may move
    /// them on every rebalance. NestJS's `NestReplyPartitionAssigner` is
    /// not offered: a franz client joins its own reply group, not a Nest
    /// client's.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// The reply group's protocol (default classic; KIP-848 keeps
    /// partitions too).
    pub group_protocol: GroupProtocol,
    /// Create the patterns' request and reply topics on connect (and on
    /// `add_patterns`) when they are missing. Default `None`: the broker's
    /// auto-creation, or topics made beforehand.
    pub provision: Option<Provision>,
    /// The request-reply convention of the servers this client calls:
    /// NestJS's (the default, and franz's), or Spring Kafka's.
    pub server_dialect: ServerDialect,
}

/// The request-reply convention of the servers a [`TransportClient`]
/// calls. A franz server answers both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServerDialect {
    /// NestJS servers (and franz's): `kafka_replyPartition` in ASCII
    /// decimal, and replies are a stream that ends with
    /// `kafka_nest-is-disposed`.
    #[default]
    NestJs,
    /// Spring Kafka's `@KafkaListener` with `@SendTo`: it reads
    /// `kafka_replyPartition` as a 4-byte big-endian int (and cannot reply
    /// to the decimal form), and sends exactly one reply with no end
    /// marker, so the first reply ends the request.
    SpringKafka,
}

impl ServerDialect {
    /// How requests write `kafka_replyPartition` for these servers.
    pub fn reply_partition_header(self) -> nest::ReplyPartitionHeader {
        match self {
            Self::NestJs => nest::ReplyPartitionHeader::Decimal,
            Self::SpringKafka => nest::ReplyPartitionHeader::BigEndianI32,
        }
    }
}

impl TransportClientConfig {
    /// Defaults for `bootstrap_servers`, with reply group `group`.
    pub fn new(bootstrap_servers: &str, reply_group: &str) -> Self {
        Self::from_client_config(ClientConfig::new(bootstrap_servers), reply_group)
    }

    /// Defaults on one [`ClientConfig`] (bootstrap servers, TLS, SASL,
    /// client id, timeouts), shared by the reply consumer and the producer.
    ///
    /// ```
    /// use franz_client::{ClientConfig, SaslMechanism, SecurityProtocol};
    /// use franz_transport::TransportClientConfig;
    /// let mut client = ClientConfig::new("broker:9093").with_sasl(
    ///     SaslMechanism::ScramSha512,
    ///     "gateway",
    ///     "secret",
    /// );
    /// client.security_protocol = SecurityProtocol::SaslSsl;
    /// let config = TransportClientConfig::from_client_config(client, "gateway-replies");
    /// assert_eq!(config.consumer.client.security_protocol, config.producer.client.security_protocol);
    /// ```
    pub fn from_client_config(client: ClientConfig, reply_group: &str) -> Self {
        Self {
            // Replies are written after the request; a new reply partition
            // is read from its end, so earlier instances' replies are skipped.
            consumer: consumer_config(client.clone()),
            producer: transport_producer(client),
            reply_group: reply_group.to_string(),
            request_timeout: Duration::from_secs(30),
            codec: codec::default_codec(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            rebalance_timeout: Duration::from_secs(60),
            assignors: vec![Arc::new(CooperativeStickyAssignor)],
            group_protocol: GroupProtocol::Classic,
            provision: None,
            server_dialect: ServerDialect::NestJs,
        }
    }
}

/// A NestJS-compatible client: request-response over `<pattern>.reply`
/// matched by correlation id, and fire-and-forget events. Keys go through
/// the producer's Java-compatible murmur2 partitioner, as KafkaJS does.
///
/// `send` is cancel-safe: dropping it at any point frees its entry in the
/// reply router, and a reply that comes later is dropped (a request already
/// queued is still delivered and handled).
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use franz_transport::{Message, TransportClient, TransportClientConfig};
/// let config = TransportClientConfig::new("127.0.0.1:9092", "gateway-replies");
/// let client = TransportClient::connect(config, &["order.created"]).await?;
/// let invoice: serde_json::Value =
///     client.send("order.created", &serde_json::json!({"id": "0c3f9a12", "total": 1250})).await?;
/// client.emit("order.shipped", Message::new("0c3f9a12").key("customer-7")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TransportClient {
    config: TransportClientConfig,
    producer: Producer,
    router: Arc<Mutex<ReplyRouter>>,
    stop: Arc<AtomicBool>,
    reader: tokio::sync::Mutex<Option<Reader>>,
}

impl TransportClient {
    /// Connects and joins the reply group for the `<pattern>.reply` topics
    /// of `patterns`; returns once a reply partition of each is assigned.
    /// When a reply topic has fewer partitions than the group has
    /// instances, the one left without fails here with `NoReplyPartition`
    /// once the group is stable, not at the request timeout.
    ///
    /// # Cancel safety
    /// Dropping it before it returns leaves no task running, but two things
    /// outlast it: topics it provisioned stay created, and a reply-group
    /// member that had joined is stopped without leaving (its consumer is
    /// dropped, which aborts its driver), so the group keeps it until
    /// `session_timeout` and then rebalances again. The producer it made has
    /// sent nothing and ends with it.
    pub async fn connect(
        config: TransportClientConfig,
        patterns: &[&str],
    ) -> Result<Self, TransportError> {
        let producer = Producer::new(config.producer.clone()).await?;
        let router = ReplyRouter {
            single_reply: config.server_dialect == ServerDialect::SpringKafka,
            ..ReplyRouter::default()
        };
        let client = Self {
            config,
            producer,
            router: Arc::new(Mutex::new(router)),
            stop: Arc::new(AtomicBool::new(false)),
            reader: tokio::sync::Mutex::new(None),
        };
        if !patterns.is_empty() {
            client.add_patterns(patterns).await?;
        }
        Ok(client)
    }

    /// Starts reading the replies of more message patterns, while requests
    /// to the others stay in flight (the reply group rebalances
    /// cooperatively, so their partitions are kept).
    ///
    /// # Cancel safety
    /// The first call (no reply reader yet) is like
    /// [`connect`](Self::connect): dropped before it returns it starts no
    /// reader, topics it provisioned stay created, and a reply member that
    /// had joined stays in the group until `session_timeout`. A later call
    /// hands the subscription to the running reader before it waits:
    /// dropped after that, the reader still subscribes and waits for the
    /// new reply partitions, and only the result is lost; dropped before
    /// (while provisioning topics or waiting for the reader's lock),
    /// nothing changes but the topics created.
    pub async fn add_patterns(&self, patterns: &[&str]) -> Result<(), TransportError> {
        let topics: Vec<String> = patterns.iter().map(|p| nest::reply_topic(p)).collect();
        if let Some(p) = &self.config.provision {
            let requests = patterns
                .iter()
                .map(|t| NewTopic::new(*t, p.partitions, p.replication_factor));
            let replies = topics
                .iter()
                .map(|t| NewTopic::new(t.as_str(), p.reply_partitions, p.replication_factor));
            topics::create_missing(
                &self.config.consumer.client,
                requests.chain(replies).collect(),
            )
            .await?;
        }
        let mut reader = self.reader.lock().await;
        if reader.is_none() {
            let (tx, rx) = mpsc::unbounded_channel();
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let mut consumer =
                GroupConsumer::new(self.config.consumer.clone(), self.group_config(), &refs)
                    .await?;
            consumer.set_listener(ReplyHooks::new(&self.router, &self.config));
            let admin = Admin::new(consumer.consumer_mut().client().clone());
            // Join before the first request, so the reply partition is known.
            let deadline = Instant::now() + self.config.request_timeout;
            if let Err(e) = await_reply_partitions(
                &mut consumer,
                &self.router,
                &topics,
                &admin,
                &self.config.reply_group,
                deadline,
            )
            .await
            {
                // Leave now, so the others rebalance once, not again at
                // the session timeout.
                let _ = consumer.close().await;
                return Err(e);
            }
            let task = tokio::spawn(read_replies(
                consumer,
                Arc::clone(&self.router),
                Arc::clone(&self.stop),
                rx,
                admin,
                self.config.reply_group.clone(),
                self.config.request_timeout,
            ));
            *reader = Some(Reader { commands: tx, task });
            return Ok(());
        }
        let Some(r) = reader.as_ref() else {
            return Err(TransportError::Closed);
        };
        let (done_tx, done_rx) = oneshot::channel();
        r.commands
            .send(Command::Subscribe(topics, done_tx))
            .map_err(|_| TransportError::Closed)?;
        drop(reader);
        done_rx.await.map_err(|_| TransportError::Closed)?
    }

    fn group_config(&self) -> GroupConfig {
        let mut group = GroupConfig::new(self.config.reply_group.as_str());
        group.assignors.clone_from(&self.config.assignors);
        group.heartbeat_interval = self.config.heartbeat_interval;
        group.session_timeout = self.config.session_timeout;
        group.rebalance_timeout = self.config.rebalance_timeout;
        group.revoke_timeout = group.revoke_timeout.min(self.config.rebalance_timeout / 2);
        group.protocol = self.config.group_protocol;
        group
    }

    /// Sends `message` (a [`Message`], or a value by reference) to message
    /// pattern `pattern` and returns the reply. For a handler that streams
    /// several values, this is the last one. The whole call, the produce
    /// included, is bounded by `request_timeout`.
    ///
    /// # Cancel safety
    /// Dropping it at any point frees its entry in the reply router, and a
    /// reply that comes later is discarded. It does not recall the request:
    /// dropped before the request record is queued (while the producer
    /// waits for metadata or buffer memory), nothing is sent; dropped after
    /// (waiting for the produce acknowledgement or for the reply), the
    /// request is still delivered and the remote handler still runs.
    pub async fn send<M: IntoMessage, R: DeserializeOwned>(
        &self,
        pattern: &str,
        message: M,
    ) -> Result<R, TransportError> {
        use futures_util::StreamExt;
        let started = std::time::Instant::now();
        let mut replies = self.send_stream::<M, R>(pattern, message).await?;
        let mut last = None;
        while let Some(r) = replies.next().await {
            last = Some(r?);
        }
        metrics::histogram!("franz_transport_request_seconds", "pattern" => pattern.to_string())
            .record(started.elapsed().as_secs_f64());
        match last {
            Some(v) => Ok(v),
            // Only a stream that ended without a value: decode a null.
            None => Ok(codec::decode::<R>(&*self.config.codec, None).map_err(|e| {
                TransportError::Reply {
                    pattern: pattern.to_string(),
                    source: e,
                }
            })?),
        }
    }

    /// [`send`](Self::send) with a key: the request lands on the partition
    /// murmur2 gives the key, so requests for one key are handled in order.
    ///
    /// # Cancel safety
    /// As [`send`](Self::send): dropping it frees the router entry; a
    /// request already queued is still delivered and handled, and its reply
    /// is discarded.
    pub async fn send_keyed<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        pattern: &str,
        key: impl Into<Bytes>,
        payload: &T,
    ) -> Result<R, TransportError> {
        self.send(pattern, Message::new(payload).key(key)).await
    }

    /// Sends a request and returns its replies as a typed stream, as they
    /// arrive (a streaming handler's values, in order). The produce is
    /// acknowledged when this returns; the stream ends at the deadline.
    ///
    /// # Cancel safety
    /// As [`send`](Self::send): dropped at any point, its router entry goes;
    /// once the request record is queued, dropping does not recall it (it
    /// is delivered and handled, and the replies are discarded). Dropping
    /// the returned [`Replies`] gives the request up the same way.
    pub async fn send_stream<M: IntoMessage, R: DeserializeOwned>(
        &self,
        pattern: &str,
        message: M,
    ) -> Result<Replies<R>, TransportError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let timeout = self.config.request_timeout;
        let reply_topic = nest::reply_topic(pattern);
        let id = nest::correlation_id();
        let (tx, rx) = mpsc::unbounded_channel();
        let partition = {
            let mut r = lock(&self.router);
            let partition = *r
                .reply_partitions
                .get(&reply_topic)
                .ok_or_else(|| TransportError::NoReplyPartition(reply_topic.clone()))?;
            r.pending.insert(
                id.clone(),
                Pending {
                    tx,
                    seen_value: false,
                    reply_to: TopicPartition::new(reply_topic.as_str(), partition),
                },
            );
            partition
        };
        metrics::gauge!("franz_transport_in_flight", "side" => "client").increment(1.0);
        // From here the entry is the guard's: dropped anywhere, it goes.
        let guard = PendingGuard {
            router: Arc::clone(&self.router),
            id: id.clone(),
        };
        let record = self.outgoing(message.into_message(), |value| {
            nest::request(
                pattern,
                None,
                value,
                &id,
                partition,
                self.config.server_dialect.reply_partition_header(),
            )
        })?;
        let produce = async { self.producer.send(to_producer(record)).await?.await };
        match tokio::time::timeout_at(deadline, produce).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(TransportError::Timeout {
                    pattern: pattern.to_string(),
                    after: timeout,
                });
            }
        }
        metrics::counter!("franz_transport_requests_total", "pattern" => pattern.to_string())
            .increment(1);
        Ok(Replies {
            rx,
            codec: Arc::clone(&self.config.codec),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            pattern: pattern.to_string(),
            timeout,
            done: false,
            _guard: guard,
            _type: std::marker::PhantomData,
        })
    }

    /// The reply partition requests to `pattern` name now (the lowest of
    /// `<pattern>.reply` assigned to this instance), if any.
    pub fn reply_partition(&self, pattern: &str) -> Option<i32> {
        lock(&self.router)
            .reply_partitions
            .get(&nest::reply_topic(pattern))
            .copied()
    }

    /// How many requests wait for replies (for monitoring, and for tests
    /// that cancel sends).
    pub fn pending_requests(&self) -> usize {
        lock(&self.router).pending.len()
    }

    /// Emits an event (a [`Message`], or a value by reference; no reply)
    /// and waits for the broker's acknowledgement.
    ///
    /// # Cancel safety
    /// Dropped before the event is queued (while the producer waits for
    /// metadata or buffer memory), nothing is sent. Dropped after, it does
    /// not cancel the event: it stays queued and is still delivered; only
    /// the acknowledgement is lost.
    pub async fn emit<M: IntoMessage>(
        &self,
        pattern: &str,
        message: M,
    ) -> Result<(), TransportError> {
        let record = self.event_record(pattern, message.into_message())?;
        self.producer.send(record).await?.await?;
        Ok(())
    }

    /// [`emit`](Self::emit) with a key (murmur2 partitioning, as KafkaJS).
    ///
    /// # Cancel safety
    /// As [`emit`](Self::emit): once queued, the event is still delivered;
    /// only the acknowledgement is lost.
    pub async fn emit_keyed<T: Serialize + ?Sized>(
        &self,
        pattern: &str,
        key: impl Into<Bytes>,
        payload: &T,
    ) -> Result<(), TransportError> {
        self.emit(pattern, Message::new(payload).key(key)).await
    }

    /// Emits several events, queued together (the producer batches them),
    /// and waits for every acknowledgement. The first failure is returned;
    /// events before it in the same partition were written.
    ///
    /// # Cancel safety
    /// Not atomic: dropping it leaves the events queued so far queued (they
    /// are still delivered) and never queues the rest; the
    /// acknowledgements are lost.
    pub async fn emit_batch<M: IntoMessage>(
        &self,
        pattern: &str,
        messages: impl IntoIterator<Item = M>,
    ) -> Result<(), TransportError> {
        let mut acks = Vec::new();
        for m in messages {
            let record = self.event_record(pattern, m.into_message())?;
            acks.push(self.producer.send(record).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    /// A message as a record: the value through the codec (`None` stays a
    /// null value) into `layout` (a request's or an event's), then the
    /// message's key, headers, partition and timestamp, and a
    /// `traceparent` unless the caller brought one.
    fn outgoing<T: Serialize>(
        &self,
        message: Message<T>,
        layout: impl FnOnce(Option<Bytes>) -> OutgoingRecord,
    ) -> Result<OutgoingRecord, TransportError> {
        let value = match &message.value {
            Some(v) => codec::encode(&*self.config.codec, v)?,
            None => None,
        };
        let mut record = layout(value);
        record.key = message.key;
        record.partition = message.partition;
        record.timestamp = message.timestamp;
        let traced = message.headers.iter().any(|(k, _)| k == trace::TRACEPARENT);
        record.headers.extend(message.headers);
        if !traced {
            record
                .headers
                .push((trace::TRACEPARENT.to_string(), trace::child_of(None).into()));
        }
        Ok(record)
    }

    fn event_record<T: Serialize>(
        &self,
        pattern: &str,
        message: Message<T>,
    ) -> Result<ProducerRecord, TransportError> {
        let record = self.outgoing(message, |value| nest::event(pattern, None, value))?;
        Ok(to_producer(record))
    }

    /// Stops reading replies (pending requests fail with `Closed`), leaves
    /// the reply group and flushes the producer.
    ///
    /// # Cancel safety
    /// Dropping it does not stop the closing: the reply reader was told to
    /// stop at the first poll and finishes on its own (it commits the reply
    /// offsets and leaves the reply group), and the producer, dropped with
    /// the client, still delivers what it holds. Lost are the waiting, the
    /// reader's error, and the failing of open [`Replies`] streams with
    /// `Closed`: they end at their deadline with `Timeout` instead.
    pub async fn close(self) -> Result<(), TransportError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.lock().await.take() {
            match reader.task.await {
                Ok(r) => r?,
                Err(_) => return Err(TransportError::Closed),
            }
        }
        for (_, p) in lock(&self.router).pending.drain() {
            let _ = p.tx.send(Routed::Failed(TransportError::Closed));
        }
        self.producer.close(Duration::from_secs(10)).await?;
        Ok(())
    }
}

impl Drop for TransportClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The consumer settings both ends use: a new group starts at the latest
/// offset (as NestJS, whose KafkaJS `fromBeginning` defaults to false), and
/// fetches return within 100 ms so replies are not held up.
pub(crate) fn consumer_config(client: ClientConfig) -> ConsumerConfig {
    let mut consumer = ConsumerConfig::from_client_config(client);
    consumer.auto_offset_reset = OffsetReset::Latest;
    consumer.fetch_max_wait = Duration::from_millis(100);
    consumer
}

/// The producer settings both ends use: no linger, as KafkaJS, because a
/// request or reply waiting to fill a batch is latency the caller sees
/// (records still batch while earlier requests are in flight).
pub(crate) fn transport_producer(client: ClientConfig) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        ..ProducerConfig::from_client_config(client)
    }
}

/// Records the lowest assigned partition of each reply topic.
fn publish_partitions(
    router: &Mutex<ReplyRouter>,
    consumer: &GroupConsumer,
) -> BTreeMap<String, i32> {
    let mut lowest: BTreeMap<String, i32> = BTreeMap::new();
    for tp in consumer.assignment() {
        let e = lowest.entry(tp.topic.clone()).or_insert(tp.partition);
        *e = (*e).min(tp.partition);
    }
    lock(router).reply_partitions.clone_from(&lowest);
    lowest
}

/// Polls (routing replies) until a partition of each of `topics` is
/// assigned. A topic with fewer partitions than the stable group has
/// members fails at once: waiting cannot help.
async fn await_reply_partitions(
    consumer: &mut GroupConsumer,
    router: &Arc<Mutex<ReplyRouter>>,
    topics: &[String],
    admin: &Admin,
    group: &str,
    deadline: Instant,
) -> Result<(), TransportError> {
    let mut last_check = Instant::now();
    loop {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        route_all(router, &records);
        let assigned = publish_partitions(router, consumer);
        let Some(missing) = topics.iter().find(|t| !assigned.contains_key(*t)) else {
            return Ok(());
        };
        let joined = consumer.member().1 >= 0;
        if joined && last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            if let Some((partitions, members)) = too_few(admin, group, missing).await {
                return Err(TransportError::TooFewReplyPartitions {
                    topic: missing.clone(),
                    partitions,
                    instances: members,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(TransportError::NoReplyPartition(missing.clone()));
        }
    }
}

/// `(partitions, members)` when the stable group has more members than
/// `topic` has partitions.
async fn too_few(admin: &Admin, group: &str, topic: &str) -> Option<(usize, usize)> {
    let described = admin.describe_groups(&[group]).await.ok()?;
    let (_, g) = described.into_iter().next()?;
    let g = g.ok()?;
    if g.state != "Stable" {
        return None;
    }
    let partitions = admin
        .client()
        .topic_metadata(topic)
        .await
        .ok()?
        .partitions
        .len();
    (partitions < g.members.len()).then_some((partitions, g.members.len()))
}

/// A transport record as a producer record.
pub(crate) fn to_producer(r: OutgoingRecord) -> ProducerRecord {
    let mut rec = ProducerRecord {
        topic: r.topic.into(),
        key: r.key,
        value: r.value,
        partition: r.partition,
        timestamp: r.timestamp,
        ..ProducerRecord::default()
    };
    for (k, v) in r.headers {
        rec = rec.with_header(k, v);
    }
    rec
}
