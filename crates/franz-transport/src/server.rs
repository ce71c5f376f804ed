//! The answering side (NestJS's `ServerKafka`): handlers for message and
//! event patterns, run in offset order, with offsets committed only after a
//! handler has succeeded (and, for requests, after its reply is written).
#![allow(clippy::disallowed_methods)] // a driver: handler deadlines and the commit loop

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::franz_protocol::ErrorCode;
use franz_client::{Admin, Client, ClientConfig};
use franz_consumer::assignor::RoundRobinAssignor;
use franz_consumer::{
    ConsumeError, ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer, GroupProtocol,
    HookFuture, OffsetMarks, RebalanceListener, TopicPartition,
};
use franz_producer::{Producer, ProducerConfig};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt as _};
use tracing::Instrument;

use crate::client::{consumer_config, to_producer, transport_producer};
use crate::codec::{self, Codec};
use crate::error::TransportError;
use crate::handler::{
    self, Handler, HandlerOutcome, HandlerService, Incoming, IntoEventOutcome, IntoReply, Outbox,
    Outcome, ReplyBody, ReplyParts, StateMap,
};
use crate::nest;
use crate::topics::{self, Provision};
use crate::trace;

/// A handler as a (possibly layered) service, boxed: what the layers of
/// [`TransportServerBuilder::layer`] wrap.
pub type BoxHandlerService = BoxCloneSyncService<Incoming, HandlerOutcome, tower::BoxError>;

#[derive(Clone)]
struct Route {
    /// A message pattern (replies) or an event pattern.
    message: bool,
    service: BoxHandlerService,
}

impl Route {
    fn new(message: bool, service: HandlerService) -> Self {
        Self {
            message,
            service: BoxCloneSyncService::new(service.map_err(tower::BoxError::from)),
        }
    }
}

/// A pattern's handler and the codec its payloads and replies use.
#[derive(Clone)]
struct Pattern {
    route: Route,
    codec: Option<Arc<dyn Codec>>,
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
    /// The codec of payloads and replies, unless a pattern names its own
    /// (default [`codec::Json`], NestJS's rules).
    pub codec: Arc<dyn Codec>,
    /// How long a rebalance waits for handlers of revoked partitions
    /// before the member rejoins without them. Handlers run between polls,
    /// so a revoke always waits for the handlers in hand and commits what
    /// they earned; this bounds how long (it is also the group's rebalance
    /// timeout, as Java's `max.poll.interval.ms`). Default 60 s.
    pub rebalance_timeout: Duration,
    /// Create the patterns' topics on start when they are missing (their
    /// dead-letter topics are created in any case). Default `None`.
    pub provision: Option<Provision>,
    /// Exactly-once handling (default `None`: NestJS's semantics, replies
    /// acknowledged before the offset is committed, at least once). See
    /// [`ExactlyOnce`].
    pub exactly_once: Option<ExactlyOnce>,
}

/// Exactly-once handling, as Kafka Streams' `exactly_once_v2` does it
/// (KIP-447): each poll's records are handled inside one transaction of the
/// server's producer, which holds their replies, what their handlers wrote
/// through an [`Outbox`](crate::Outbox), and the group's offsets for them.
/// A crash before the commit aborts all of it; the next owner of the
/// partitions handles the records again, and a `read_committed` reader
/// (the clients' reply consumers: set `isolation_level` to
/// `ReadCommitted` in their `consumer` config) sees each reply and each
/// outbox record once.
///
/// What it costs: a commit round trip (AddOffsets/TxnOffsetCommit and
/// EndTxn) per poll, replies visible only once the transaction commits,
/// and after a crash, partitions held by the dead instance wait until its
/// open transaction is aborted: at once when the instance restarts with
/// the same `transactional_id` (it fences the old one), otherwise after
/// `transaction_timeout`.
///
/// What it does not cover: handlers' effects outside Kafka run again after
/// an abort (at least once), and error replies and dead letters, written
/// beside the loop by the failure policy, are at least once too.
#[derive(Debug, Clone)]
pub struct ExactlyOnce {
    /// This instance's transactional id: unique among the live instances of
    /// the group, and the same when one restarts (a pod name, say).
    pub transactional_id: String,
    /// `transaction.timeout.ms` (default 10 s): how long a crashed
    /// instance's open transaction holds its partitions.
    pub transaction_timeout: Duration,
}

impl ExactlyOnce {
    /// Exactly-once with `transactional_id` and a 10 s transaction timeout.
    pub fn new(transactional_id: impl Into<String>) -> Self {
        Self {
            transactional_id: transactional_id.into(),
            transaction_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportServerConfig {
    /// Defaults for `bootstrap_servers` and `group_id`; new groups start at
    /// the latest offset, as NestJS (KafkaJS `fromBeginning: false`).
    pub fn new(bootstrap_servers: &str, group_id: &str) -> Self {
        Self::from_client_config(ClientConfig::new(bootstrap_servers), group_id)
    }

    /// Defaults on one [`ClientConfig`] (bootstrap servers, TLS, SASL,
    /// client id, timeouts), shared by the group consumer and the producer
    /// of replies and dead letters.
    ///
    /// ```
    /// use franz_client::{ClientConfig, SecurityProtocol};
    /// use franz_transport::TransportServerConfig;
    /// use franz_transport::topics::NestNames;
    /// // Joining the group of Nest servers configured with
    /// // `client.clientId: "billing"`, `consumer.groupId: "billing"`.
    /// let names = NestNames::server("billing", "billing");
    /// let mut client = ClientConfig::new("broker:9093");
    /// client.security_protocol = SecurityProtocol::Ssl;
    /// client.client_id = names.client_id;
    /// let config = TransportServerConfig::from_client_config(client, &names.group_id);
    /// assert_eq!(config.group_id, "billing-server");
    /// ```
    pub fn from_client_config(client: ClientConfig, group_id: &str) -> Self {
        Self {
            consumer: consumer_config(client.clone()),
            producer: transport_producer(client),
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
            codec: codec::default_codec(),
            rebalance_timeout: Duration::from_secs(60),
            provision: None,
            exactly_once: None,
        }
    }
}

/// Registers handlers, then [`start`](Self::start)s the server.
pub struct TransportServerBuilder {
    config: TransportServerConfig,
    patterns: BTreeMap<String, Pattern>,
    state: StateMap,
}

impl std::fmt::Debug for TransportServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportServerBuilder")
            .field("config", &self.config)
            .field("patterns", &self.patterns.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where a server is: watch it with [`TransportServer::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// In the group, handling records.
    Connected,
    /// Polls are failing (a broker down, the network); it keeps trying.
    Disconnected,
    /// Partitions are moving: revoked ones were drained and committed.
    Rebalancing,
    /// Shut down (or dropped) cleanly.
    Stopped,
    /// Stopped by a failure it cannot retry (the coordinator refused the
    /// member, say); the reason is in the log and in `shutdown`'s error.
    Crashed,
    /// A newer instance with the same `group_instance_id` took over.
    Fenced,
}

/// A server's status: its state, and the partitions stalled on a
/// dead-letter write that keeps failing (nothing past them is committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Where the server is.
    pub state: ServerState,
    /// Partitions stalled on a failing dead-letter write.
    pub stalled: Vec<TopicPartition>,
}

/// A running NestJS-compatible server. Dropping it stops it (the task
/// finishes the records in hand, commits, and leaves the group in the
/// background); [`shutdown`](Self::shutdown) does the same and waits.
///
/// ```no_run
/// # async fn demo() -> Result<(), franz_transport::TransportError> {
/// use std::time::Duration;
/// use franz_transport::{Payload, RpcError, TransportServer, TransportServerConfig};
/// #[derive(serde::Deserialize)]
/// struct Charge { order: u64, cents: u64 }
/// let server = TransportServer::builder(TransportServerConfig::new("127.0.0.1:9092", "billing"))
///     .message("billing.charge", |Payload(c): Payload<Charge>| async move {
///         if c.cents == 0 { return Err(RpcError::message("nothing to charge")); }
///         Ok(serde_json::json!({"order": c.order, "charged": c.cents}))
///     })
///     .event("orders.created", |Payload(order): Payload<serde_json::Value>| async move {
///         println!("new order {order}");
///     })
///     .start()
///     .await?;
/// server.shutdown(Duration::from_secs(30)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TransportServer {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Result<(), TransportError>>>,
    status: watch::Receiver<ServerStatus>,
}

impl TransportServer {
    /// A server with no handlers yet.
    pub fn builder(config: TransportServerConfig) -> TransportServerBuilder {
        TransportServerBuilder {
            config,
            patterns: BTreeMap::new(),
            state: StateMap::default(),
        }
    }

    /// The server's status, as it changes.
    pub fn status(&self) -> watch::Receiver<ServerStatus> {
        self.status.clone()
    }

    /// Stops fetching, lets the handlers in hand finish, commits what they
    /// earned, flushes replies and leaves the group, all within `deadline`.
    /// Past it the server task is aborted (uncommitted records are handled
    /// again by the next owner) and this returns `Timeout`.
    ///
    /// # Cancel safety
    /// Dropping it does not stop the shutdown: the server was told to stop
    /// at the first poll, and its task finishes in the background as when
    /// the server is dropped (handlers in hand finish, what they earned is
    /// committed, the group is left), but without the deadline: it is no
    /// longer aborted at `deadline`, and its error is not reported.
    pub async fn shutdown(mut self, deadline: Duration) -> Result<(), TransportError> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(deadline, &mut task).await {
            Ok(joined) => joined.map_err(|_| TransportError::Closed)?,
            Err(_) => {
                task.abort();
                Err(TransportError::Timeout {
                    pattern: "shutdown".into(),
                    after: deadline,
                })
            }
        }
    }
}

impl Drop for TransportServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl TransportServerBuilder {
    /// A message pattern (`@MessagePattern`): the handler's result, or its
    /// error, is sent to the requester's reply topic and partition. The
    /// handler is an async fn of extractors ([`Payload`](crate::Payload),
    /// [`Ctx`](crate::Ctx), [`Headers`](crate::Headers),
    /// [`Key`](crate::Key), [`State`](crate::State)) returning
    /// `Result<T, RpcError>`, `Result<Reply<T>, RpcError>` or
    /// `Result<Streamed<S>, RpcError>`.
    pub fn message<A, H>(mut self, pattern: &str, handler: H) -> Self
    where
        H: Handler<A>,
        H::Output: IntoReply,
    {
        self.patterns.insert(
            pattern.to_string(),
            Pattern {
                route: Route::new(true, handler::message_service(handler)),
                codec: None,
            },
        );
        self
    }

    /// An event pattern (`@EventPattern`): no reply. A failing handler is
    /// handled again after a backoff of its partition, up to
    /// `max_attempts`, then dead-lettered; the offset is never committed
    /// past an event neither handled nor dead-lettered. The handler is an
    /// async fn of extractors returning `Result<(), RpcError>` or `()`.
    pub fn event<A, H>(mut self, pattern: &str, handler: H) -> Self
    where
        H: Handler<A>,
        H::Output: IntoEventOutcome,
    {
        self.patterns.insert(
            pattern.to_string(),
            Pattern {
                route: Route::new(false, handler::event_service(handler)),
                codec: None,
            },
        );
        self
    }

    /// Wraps every handler registered so far in a tower layer, as axum's
    /// `Router::layer` does: register the patterns, then layer them. Each
    /// pattern gets its own instance of the layer's service, so a
    /// `ConcurrencyLimitLayer` limits each pattern on its own (tower's
    /// `GlobalConcurrencyLimitLayer` shares one limit).
    /// Layers see [`Incoming`] records and pass
    /// [`HandlerOutcome`](crate::HandlerOutcome)s on; an error a layer adds
    /// (a timeout's `Elapsed`, a refusal) is the handler's failure, with
    /// the usual policy (an event retried, then dead-lettered; a request
    /// answered with the error).
    ///
    /// ```
    /// # async fn demo() -> Result<(), franz_transport::TransportError> {
    /// use std::time::Duration;
    /// use franz_transport::{Payload, RpcError, TransportServer, TransportServerConfig};
    /// use tower::limit::ConcurrencyLimitLayer;
    /// use tower::timeout::TimeoutLayer;
    /// let server = TransportServer::builder(TransportServerConfig::new("127.0.0.1:9092", "billing"))
    ///     .message("billing.charge", |Payload(cents): Payload<u64>| async move {
    ///         Ok::<_, RpcError>(cents)
    ///     })
    ///     .layer(TimeoutLayer::new(Duration::from_secs(5)))
    ///     .layer(ConcurrencyLimitLayer::new(16))
    ///     .start()
    ///     .await?;
    /// # server.shutdown(Duration::from_secs(5)).await }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxHandlerService>,
        L::Service: Service<Incoming, Response = HandlerOutcome> + Clone + Send + Sync + 'static,
        <L::Service as Service<Incoming>>::Error: Into<tower::BoxError>,
        <L::Service as Service<Incoming>>::Future: Send + 'static,
    {
        for pattern in self.patterns.values_mut() {
            let layered = layer.layer(pattern.route.service.clone());
            pattern.route.service = BoxCloneSyncService::new(layered.map_err(Into::into));
        }
        self
    }

    /// Gives pattern `pattern` (registered before) its own codec.
    pub fn pattern_codec(mut self, pattern: &str, codec: impl Codec) -> Self {
        if let Some(p) = self.patterns.get_mut(pattern) {
            p.codec = Some(Arc::new(codec));
        }
        self
    }

    /// Shared application state, for handlers' [`State<S>`](crate::State)
    /// extractors (one value per type).
    pub fn state<S: Clone + Send + Sync + 'static>(mut self, state: S) -> Self {
        self.state.insert(state);
        self
    }

    /// Joins the group (with KafkaJS's `RoundRobinAssigner`, so it can share
    /// a group with NestJS servers) and starts handling.
    ///
    /// # Cancel safety
    /// Dropping it before it returns starts no server task (it is spawned in
    /// the last step, with no await after it), but what it did so far stays
    /// done: the dead-letter topics (and with `provision` the pattern
    /// topics) it created exist; with `exactly_once` the transactional id
    /// was initialized, which fences an older instance using it; and a
    /// member that had joined the group is stopped without leaving (its
    /// driver is aborted), so the group keeps it, with any partitions
    /// assigned to it unprocessed, until `session_timeout`.
    pub async fn start(self) -> Result<TransportServer, TransportError> {
        let Self {
            config,
            patterns,
            state,
        } = self;
        let names: Vec<&str> = patterns.keys().map(String::as_str).collect();
        if let Some(p) = &config.provision {
            let topics = names
                .iter()
                .map(|t| NewTopic::new(*t, p.partitions, p.replication_factor))
                .collect();
            topics::create_missing(&config.consumer.client, topics).await?;
        }
        // Under exactly-once the replies go through a transactional
        // producer; parks (error replies, dead letters) keep a plain one,
        // since they are written beside the loop's transactions.
        let (producer, park_producer) = match &config.exactly_once {
            Some(eos) => {
                let transactional = Producer::new(ProducerConfig {
                    transactional_id: Some(eos.transactional_id.clone()),
                    transaction_timeout: eos.transaction_timeout,
                    ..config.producer.clone()
                })
                .await?;
                transactional.init_transactions().await?;
                (transactional, Producer::new(config.producer.clone()).await?)
            }
            None => {
                let p = Producer::new(config.producer.clone()).await?;
                (p.clone(), p)
            }
        };
        ensure_dead_letter_topics(&config, &patterns).await?;
        let mut group = GroupConfig::new(config.group_id.as_str());
        group.assignors.clone_from(&config.assignors);
        group.heartbeat_interval = config.heartbeat_interval;
        group.session_timeout = config.session_timeout;
        group.rebalance_timeout = config.rebalance_timeout;
        group.revoke_timeout = group.revoke_timeout.min(config.rebalance_timeout / 2);
        group.protocol = config.group_protocol;
        group
            .group_instance_id
            .clone_from(&config.group_instance_id);
        // As long as a JoinGroup may take: the rebalance timeout and a request.
        let join_timeout = group.rebalance_timeout + config.consumer.client.request_timeout;
        let mut consumer = GroupConsumer::new(config.consumer.clone(), group, &names).await?;
        let (status_tx, status) = watch::channel(ServerStatus {
            state: ServerState::Rebalancing,
            stalled: Vec::new(),
        });
        let status_tx = Arc::new(status_tx);
        consumer.set_listener(StatusHooks(Arc::clone(&status_tx)));
        // Join now, so that `start` returning means the server is serving.
        consumer.wait_for_assignment(join_timeout).await?;
        set_state(&status_tx, ServerState::Connected);
        let stop = Arc::new(AtomicBool::new(false));
        let default_codec = Arc::clone(&config.codec);
        let routes = patterns
            .into_iter()
            .map(|(name, p)| {
                let codec = p.codec.unwrap_or_else(|| Arc::clone(&default_codec));
                (name, (p.route, codec))
            })
            .collect();
        let parker = Parker {
            producer: park_producer,
            dead_letter_suffix: config.dead_letter_suffix.clone(),
            write_bound: config
                .consumer
                .client
                .request_timeout
                .min(Duration::from_secs(10)),
        };
        let worker = Worker {
            eos: config.exactly_once.is_some(),
            in_transaction: false,
            batch_start: BTreeMap::new(),
            transaction_poisoned: AtomicBool::new(false),
            config,
            routes,
            state: Arc::new(state),
            parker,
            parking: std::sync::Mutex::default(),
            producer,
            marks: consumer.offset_marks(),
            consumer,
            retries: BTreeMap::new(),
            uncommitted: BTreeMap::new(),
            last_commit: std::time::Instant::now(),
            status: Arc::clone(&status_tx),
        };
        let task = tokio::spawn(worker.run(Arc::clone(&stop)));
        Ok(TransportServer {
            stop,
            task: Some(task),
            status,
        })
    }
}

fn set_state(status: &watch::Sender<ServerStatus>, state: ServerState) {
    status.send_if_modified(|s| {
        let changed = s.state != state;
        s.state = state;
        changed
    });
}

/// Rebalance hooks that report the server's state: revoked partitions were
/// drained (handlers run between polls, so none is in flight when the hook
/// runs) and what they earned is in the offset marks the consumer commits
/// before letting them go.
struct StatusHooks(Arc<watch::Sender<ServerStatus>>);

impl RebalanceListener for StatusHooks {
    fn on_assigned<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        tracing::info!(?partitions, "partitions assigned");
        set_state(&self.0, ServerState::Connected);
        Box::pin(async {})
    }

    fn on_revoked<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        tracing::info!(
            ?partitions,
            "partitions revoked; their earned offsets are committed"
        );
        set_state(&self.0, ServerState::Rebalancing);
        Box::pin(async {})
    }

    fn on_lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        tracing::warn!(
            ?partitions,
            "partitions lost; nothing more is committed for them"
        );
        set_state(&self.0, ServerState::Rebalancing);
        Box::pin(async {})
    }
}

async fn ensure_dead_letter_topics(
    config: &TransportServerConfig,
    handlers: &BTreeMap<String, Pattern>,
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
            && !topics::already_exists(&e)
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
    /// Whether handling it again may help; if not it is parked now.
    retriable: bool,
    /// For a request: the error reply to send once attempts run out
    /// (instead of a dead letter).
    reply: Option<nest::OutgoingRecord>,
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
    /// Replies were queued; their acknowledgements decide.
    Replies(Vec<franz_producer::DeliveryFuture>),
    Failed {
        reason: String,
        retriable: bool,
        reply: Option<nest::OutgoingRecord>,
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
    /// Every attempt is used but parking the record failed: the next time
    /// round, park it again instead of handling.
    park: Option<Park>,
}

/// How a record whose attempts are used is parked.
#[derive(Debug, Clone)]
struct Park {
    reason: String,
    /// A request's error reply; a dead letter if it cannot be written.
    reply: Option<nest::OutgoingRecord>,
}

struct Worker {
    config: TransportServerConfig,
    routes: BTreeMap<String, (Route, Arc<dyn Codec>)>,
    state: Arc<StateMap>,
    producer: Producer,
    parker: Parker,
    /// Parks in progress (their partitions paused at the record), applied
    /// as they finish by [`Worker::finish_parks`]. In a mutex only so that
    /// `&Worker` is `Sync` for the concurrent partition handlers (which
    /// never touch it): the loop reaches it through `&mut self`, unlocked.
    parking: std::sync::Mutex<stream::FuturesUnordered<handler::BoxFuture<Parked>>>,
    consumer: GroupConsumer,
    /// What the consumer commits when partitions are revoked: the worker
    /// copies its earned offsets here before every poll.
    marks: OffsetMarks,
    /// Partitions whose head record failed, by partition: only they wait.
    retries: BTreeMap<TopicPartition, Retry>,
    /// Offsets earned (handler succeeded, reply acknowledged) and not yet
    /// committed; see [`Worker::commit_due`].
    uncommitted: BTreeMap<TopicPartition, i64>,
    last_commit: Instant,
    status: Arc<watch::Sender<ServerStatus>>,
    /// Exactly-once: each poll's records are handled in a transaction.
    eos: bool,
    in_transaction: bool,
    /// Exactly-once: where each partition of the open transaction's poll
    /// started, to read it again if the transaction aborts.
    batch_start: BTreeMap<TopicPartition, i64>,
    /// Exactly-once: a handler failed after writing outbox records into the
    /// open transaction, which must therefore abort.
    transaction_poisoned: AtomicBool,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), TransportError> {
        let mut failing_since: Option<Instant> = None;
        let outcome = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            self.finish_parks();
            self.resume_due();
            // Parks in progress are looked at every 50 ms.
            let longest = if self.parking().is_empty() { 200 } else { 50 };
            let wait = self
                .retries
                .values()
                .filter(|r| r.paused)
                .map(|r| r.resume_at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::MAX)
                .clamp(Duration::from_millis(1), Duration::from_millis(longest));
            let records = match self.consumer.poll(wait).await {
                Ok(r) => r,
                Err(e) => match classify(&e) {
                    PollFailure::Fatal(state) => {
                        tracing::error!(error = %e, "transport server stopped: the group refused it");
                        set_state(&self.status, state);
                        break Err(TransportError::Consume(e));
                    }
                    PollFailure::Transient => {
                        tracing::warn!(error = %e, "transport server poll failed; retrying");
                        if failing_since.get_or_insert_with(Instant::now).elapsed()
                            >= Duration::from_secs(1)
                        {
                            set_state(&self.status, ServerState::Disconnected);
                        }
                        tokio::time::sleep(self.config.retry_backoff).await;
                        continue;
                    }
                },
            };
            if failing_since.take().is_some() {
                set_state(&self.status, ServerState::Connected);
            }
            // Offsets earned for partitions that moved are not ours to
            // commit (the revoke committed them, or they were lost).
            // Retries of partitions that moved are forgotten too: their
            // next owner starts over.
            let assigned = self.consumer.assignment();
            self.uncommitted.retain(|tp, _| assigned.contains(tp));
            self.retries.retain(|tp, _| assigned.contains(tp));
            let idle = records.is_empty();
            if self.eos && !records.is_empty() {
                if let Err(e) = self.producer.begin_transaction() {
                    tracing::error!(error = %e, "transport server stopped: no transaction");
                    break Err(TransportError::Produce(e));
                }
                self.in_transaction = true;
                for r in &records {
                    self.batch_start
                        .entry(TopicPartition::new(&*r.topic, r.partition))
                        .or_insert(r.offset);
                }
            }
            self.handle(records).await;
            if self.eos {
                if let Err(e) = self.commit_transaction().await {
                    tracing::error!(error = %e, "transport server stopped: transactions failed");
                    break Err(e);
                }
            } else {
                self.commit_due(idle).await;
            }
        };
        // Parks in progress finish (each write is bounded), so that what
        // they earned is committed.
        while let Some(done) = self.parking().next().await {
            self.parking().push(Box::pin(std::future::ready(done)));
            self.finish_parks();
        }
        if self.eos {
            if let Err(e) = self.commit_transaction().await {
                tracing::warn!(error = %e, "last transaction not committed");
            }
        } else {
            self.commit_due(true).await;
        }
        let flushed = self.producer.close(Duration::from_secs(10)).await;
        let left = self.consumer.close().await;
        if outcome.is_ok() {
            set_state(&self.status, ServerState::Stopped);
        }
        outcome?;
        flushed?;
        left?;
        Ok(())
    }

    /// Records that `tp` may be committed up to `next` (exclusive): for the
    /// next commit, and in the offset marks, which a revoke commits before
    /// the partition goes. Marks only grow, so they are set here, where an
    /// offset is earned, and never from an older value: a revoke that
    /// committed a stale mark would move the group's offset backwards and
    /// have records handled twice.
    fn earn(&mut self, tp: &TopicPartition, next: i64) {
        let o = self.uncommitted.entry(tp.clone()).or_insert(next);
        *o = (*o).max(next);
        // Under exactly-once offsets are committed only inside transactions:
        // a revoke must not commit them on its own.
        if !self.eos {
            self.marks.mark(tp, next);
        }
    }

    /// Exactly-once: commits the open transaction with the offsets earned
    /// in it (or opens one for offsets earned by parks). If it cannot
    /// commit it is aborted, and its partitions read again from where its
    /// poll started: their records are handled again, and the aborted
    /// replies and outbox records are never seen by `read_committed`
    /// readers. Only a fatal error (fenced: another instance has the
    /// transactional id) stops the server.
    async fn commit_transaction(&mut self) -> Result<(), TransportError> {
        if !self.in_transaction && self.uncommitted.is_empty() {
            return Ok(());
        }
        if !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        let offsets = std::mem::take(&mut self.uncommitted);
        let batch_start = std::mem::take(&mut self.batch_start);
        let poisoned = self.transaction_poisoned.swap(false, Ordering::Relaxed);
        let result = if poisoned {
            Err(franz_producer::ProduceError::TransactionAbortable {
                cause: Box::new(franz_producer::ProduceError::Fatal(
                    "a handler failed after writing outbox records".into(),
                )),
            })
        } else {
            async {
                if !offsets.is_empty() {
                    self.producer
                        .send_offsets_to_transaction(&offsets, &self.consumer.group_metadata())
                        .await?;
                }
                self.producer.commit_transaction().await
            }
            .await
        };
        self.in_transaction = false;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_fatal() => Err(TransportError::Produce(e)),
            Err(e) => {
                tracing::warn!(error = %e, "transaction aborted; its records will be handled again");
                metrics::counter!("franz_transport_transactions_aborted_total").increment(1);
                self.producer.abort_transaction().await?;
                let assigned = self.consumer.assignment();
                for (tp, next) in offsets {
                    // Earned by a park (its write is done): commit it with
                    // the next transaction.
                    if !batch_start.contains_key(&tp) {
                        self.uncommitted.insert(tp, next);
                    }
                }
                for (tp, start) in batch_start {
                    if assigned.contains(&tp)
                        && let Err(e) = self.consumer.consumer_mut().seek(&tp, start)
                    {
                        tracing::warn!(error = %e, partition = %tp, "could not rewind after an abort");
                    }
                }
                Ok(())
            }
        }
    }

    /// Resumes partitions whose backoff is over.
    fn resume_due(&mut self) {
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
                self.earn(&tp, done);
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
    /// used, or not retriable) parking it: a request's error reply, or the
    /// dead-letter topic. Nothing past the record is committed until it is
    /// handled or parked.
    async fn failed(&mut self, tp: TopicPartition, failure: Failure) {
        let offset = failure.record.offset;
        let attempts = self
            .retries
            .get(&tp)
            .filter(|r| r.offset == offset)
            .map_or(1, |r| {
                r.attempts.saturating_add(u32::from(r.park.is_none()))
            });
        let exhausted =
            !failure.retriable || self.config.max_attempts.is_some_and(|max| attempts >= max);
        let mut park = None;
        let mut parking = false;
        if exhausted {
            let p = Park {
                reason: failure.reason.clone(),
                reply: failure.reply,
            };
            // The write runs beside the loop; the partition waits at the
            // record, paused, until it is known (see `finish_parks`).
            let (parker, record, tp2, p2) = (
                self.parker.clone(),
                failure.record.clone(),
                tp.clone(),
                p.clone(),
            );
            self.parking().push(Box::pin(async move {
                let result = parker.park(&record, &p2, attempts).await;
                Parked {
                    tp: tp2,
                    offset,
                    attempts,
                    park: p2,
                    result,
                }
            }));
            park = None;
            parking = true;
        } else {
            metrics::counter!("franz_transport_retried_total", "pattern" => tp.topic.clone())
                .increment(1);
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
        // A partition being parked waits for its park, not a backoff.
        let resume_at = if parking {
            Instant::now() + Duration::from_secs(86_400)
        } else {
            Instant::now() + self.backoff(&tp, offset, attempts)
        };
        let paused = self.consumer.pause(std::slice::from_ref(&tp)).is_ok();
        self.retries.insert(
            tp,
            Retry {
                offset,
                attempts,
                resume_at,
                paused,
                park,
            },
        );
    }

    /// Applies the parks that finished: a written park earns its record and
    /// the partition goes on past it; a failed one stalls the partition,
    /// which parks the record again after a backoff. A park of a partition
    /// that moved meanwhile is dropped: its next owner handles the record
    /// again (a dead letter may then be written twice, never lost).
    fn finish_parks(&mut self) {
        use futures_util::FutureExt as _;
        while let Some(Some(done)) = self.parking().next().now_or_never() {
            let Parked {
                tp,
                offset,
                attempts,
                park,
                result,
            } = done;
            if !self
                .retries
                .get(&tp)
                .is_some_and(|r| r.offset == offset && r.park.is_none())
            {
                continue;
            }
            match result {
                Ok(()) => {
                    self.retries.remove(&tp);
                    self.set_stalled(&tp, false);
                    self.earn(&tp, offset + 1);
                    if let Err(e) = self.consumer.consumer_mut().seek(&tp, offset + 1) {
                        tracing::warn!(error = %e, "could not move past a parked record");
                    }
                    if let Err(e) = self.consumer.resume(std::slice::from_ref(&tp)) {
                        tracing::debug!(error = %e, "resuming after a park");
                    }
                }
                Err(e) => {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, offset, error = %e, "parking a failed record failed; the partition stalls and tries again");
                    self.set_stalled(&tp, true);
                    let resume_at = Instant::now() + self.backoff(&tp, offset, attempts);
                    if let Some(r) = self.retries.get_mut(&tp) {
                        r.park = Some(park);
                        r.resume_at = resume_at;
                    }
                }
            }
        }
    }

    /// The parks in progress.
    fn parking(&mut self) -> &mut stream::FuturesUnordered<handler::BoxFuture<Parked>> {
        self.parking
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reports a partition stalled on parking a record, or no longer.
    fn set_stalled(&self, tp: &TopicPartition, stalled: bool) {
        self.status.send_if_modified(|s| {
            let at = s.stalled.iter().position(|t| t == tp);
            match (stalled, at) {
                (true, None) => s.stalled.push(tp.clone()),
                (false, Some(i)) => {
                    s.stalled.remove(i);
                }
                _ => return false,
            }
            true
        });
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
            if let Some(park) = pending
                .filter(|r| r.offset == record.offset)
                .and_then(|r| r.park.clone())
            {
                outcome.failed = Some(Failure {
                    record: record.clone(),
                    reason: park.reason,
                    retriable: false,
                    reply: park.reply,
                });
                break;
            }
            match self.handle_one(record).await {
                Handled::Done => outcome.done = Some(record.offset + 1),
                Handled::Replies(acks) => replies.push((record, acks)),
                Handled::Failed {
                    reason,
                    retriable,
                    reply,
                } => {
                    outcome.failed = Some(Failure {
                        record: record.clone(),
                        reason,
                        retriable,
                        reply,
                    });
                    break;
                }
            }
        }
        for (record, acks) in replies {
            let offset = record.offset;
            let mut failure = None;
            for ack in acks {
                let Err(e) = ack.await else { continue };
                let reason = format!("reply not delivered: {e}");
                failure = if e.is_retriable() {
                    Some((reason, true))
                } else {
                    match self.parker.dead_letter(record, &reason, 1).await {
                        Ok(()) => None,
                        Err(_) => Some((reason, false)),
                    }
                };
                break;
            }
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
                            reply: None,
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

    /// Runs the handler for one record, in a span; a request's replies are
    /// queued and their acknowledgements handed back for the caller to
    /// await.
    async fn handle_one(&self, record: &ConsumerRecord) -> Handled {
        let headers = record.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        let reply_to = nest::reply_to(headers);
        let Some((route, codec)) = self.routes.get(&*record.topic) else {
            let Some(to) = reply_to else {
                return Handled::Done;
            };
            let err = Value::String(
                "There is no matching message handler defined in the remote service.".into(),
            );
            return self.queue([nest::reply(&to, Err(err), false)]).await;
        };
        let outbox = Outbox::new(self.producer.clone());
        let incoming = Incoming {
            record: record.clone(),
            codec: Arc::clone(codec),
            state: Arc::clone(&self.state),
            outbox: outbox.clone(),
        };
        let kind = if route.message { "message" } else { "event" };
        let span = trace::handler_span(record, kind, reply_to.as_ref());
        let in_flight = metrics::gauge!("franz_transport_in_flight", "side" => "server");
        in_flight.increment(1.0);
        let started = Instant::now();
        let outcome = handler::run_service(&route.service, incoming, route.message)
            .instrument(span.clone())
            .await;
        let handled = match outcome {
            Outcome::Event(result) => match result {
                Ok(()) => Handled::Done,
                Err(e) => Handled::Failed {
                    reason: e.describe(),
                    retriable: e.is_retriable(),
                    reply: None,
                },
            },
            Outcome::Reply(body) => {
                match reply_to {
                    // Emitted to a message pattern: the result is ignored, as Nest.
                    None => {
                        if let ReplyBody::Stream(s) = body {
                            s.for_each(|_| async {}).instrument(span).await;
                        }
                        Handled::Done
                    }
                    Some(to) => self.answer(record, &to, body, span).await,
                }
            }
        };
        in_flight.decrement(1.0);
        // What the handler wrote through its outbox is part of handling
        // the record: awaited with the replies.
        let sent = outbox.take_sent();
        let handled = match handled {
            Handled::Done if !sent.is_empty() => Handled::Replies(sent),
            Handled::Replies(mut acks) => {
                acks.extend(sent);
                Handled::Replies(acks)
            }
            failed @ Handled::Failed { .. } => {
                if self.eos && !sent.is_empty() {
                    self.transaction_poisoned.store(true, Ordering::Relaxed);
                }
                failed
            }
            other => other,
        };
        let outcome = if matches!(handled, Handled::Failed { .. }) {
            "failed"
        } else {
            "handled"
        };
        metrics::counter!("franz_transport_records_total", "pattern" => Arc::clone(&record.topic), "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!("franz_transport_handler_seconds", "pattern" => Arc::clone(&record.topic), "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        handled
    }

    /// Sends a message handler's replies. A stream's values go out as they
    /// come, each held until the next arrives so that the last one carries
    /// `kafka_nest-is-disposed` (as a Nest server merges its completion
    /// into the last value: a Nest client would otherwise see an extra
    /// null); an empty stream sends the null disposal message alone.
    async fn answer(
        &self,
        record: &ConsumerRecord,
        to: &nest::ReplyTo,
        body: ReplyBody,
        span: tracing::Span,
    ) -> Handled {
        let parent = record.header(trace::TRACEPARENT);
        let reply = |outcome: Result<ReplyParts, Value>, last: bool| {
            let traceparent = trace::child_of(parent.map(|b| b.as_ref()));
            reply_record(to, outcome, last, traceparent)
        };
        match body {
            ReplyBody::One(Ok(parts)) => self.queue([reply(Ok(parts), true)]).await,
            ReplyBody::One(Err(e)) if e.retries_request() => Handled::Failed {
                reason: e.describe(),
                retriable: true,
                reply: Some(reply(Err(e.into_body()), true)),
            },
            ReplyBody::One(Err(e)) => self.queue([reply(Err(e.into_body()), true)]).await,
            ReplyBody::Stream(mut values) => {
                let mut acks = Vec::new();
                let mut held: Option<ReplyParts> = None;
                let last = loop {
                    match values.next().instrument(span.clone()).await {
                        Some(Ok(parts)) => {
                            if let Some(prev) = held.replace(parts) {
                                match self.queue_one(reply(Ok(prev), false)).await {
                                    Ok(ack) => acks.push(ack),
                                    Err(failed) => return failed,
                                }
                            }
                        }
                        Some(Err(e)) => {
                            if let Some(prev) = held.take() {
                                match self.queue_one(reply(Ok(prev), false)).await {
                                    Ok(ack) => acks.push(ack),
                                    Err(failed) => return failed,
                                }
                            }
                            break reply(Err(e.into_body()), true);
                        }
                        None => break reply(Ok(held.take().unwrap_or_default()), true),
                    }
                };
                match self.queue_one(last).await {
                    Ok(ack) => acks.push(ack),
                    Err(failed) => return failed,
                }
                Handled::Replies(acks)
            }
        }
    }

    /// Queues reply records; their acknowledgements are awaited later.
    async fn queue(&self, records: impl IntoIterator<Item = nest::OutgoingRecord>) -> Handled {
        let mut acks = Vec::new();
        for r in records {
            match self.queue_one(r).await {
                Ok(ack) => acks.push(ack),
                Err(failed) => return failed,
            }
        }
        Handled::Replies(acks)
    }

    async fn queue_one(
        &self,
        record: nest::OutgoingRecord,
    ) -> Result<franz_producer::DeliveryFuture, Handled> {
        self.producer
            .send(to_producer(record))
            .await
            .map_err(|e| Handled::Failed {
                reason: format!("reply not sent: {e}"),
                retriable: e.is_retriable(),
                reply: None,
            })
    }
}

/// Writes parked records (error replies, dead letters) for the worker,
/// away from it: a clone goes into each park, which runs beside the
/// worker's loop, so that a dead-letter topic that cannot be written
/// stalls only its partition while every other partition goes on.
#[derive(Clone)]
struct Parker {
    producer: Producer,
    dead_letter_suffix: String,
    /// How long one write may take before it counts as failed.
    write_bound: Duration,
}

/// A park that finished, for the worker to apply.
struct Parked {
    tp: TopicPartition,
    offset: i64,
    attempts: u32,
    park: Park,
    result: Result<(), TransportError>,
}

impl Parker {
    /// Parks a record whose attempts are used: a request's error reply if
    /// it has one and it can be written, else a dead letter.
    async fn park(
        &self,
        record: &ConsumerRecord,
        park: &Park,
        attempts: u32,
    ) -> Result<(), TransportError> {
        if let Some(reply) = &park.reply {
            match self.write_bounded(reply.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "the error reply cannot be written; dead-lettering the request");
                }
            }
        }
        self.dead_letter(record, &park.reason, attempts).await
    }

    /// Writes a record and waits for its acknowledgement, bounded, so that
    /// a target that is gone stalls only this partition's progress (it is
    /// retried after a backoff), not the server: other partitions' commits
    /// and handlers go on.
    async fn write_bounded(&self, record: nest::OutgoingRecord) -> Result<(), TransportError> {
        let bound = self.write_bound;
        let topic = record.topic.clone();
        let write = async { self.producer.send(to_producer(record)).await?.await };
        match tokio::time::timeout(bound, write).await {
            Ok(r) => r.map(|_| ()).map_err(TransportError::from),
            Err(_) => Err(TransportError::Timeout {
                pattern: topic,
                after: bound,
            }),
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
        let topic = format!("{}{}", record.topic, self.dead_letter_suffix);
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
            timestamp: None,
        };
        self.write_bounded(out).await?;
        metrics::counter!("franz_transport_dead_lettered_total", "pattern" => record.topic.to_string())
            .increment(1);
        Ok(())
    }
}

/// One reply message: Nest's layout, plus the handler's key and headers and
/// the trace context.
fn reply_record(
    to: &nest::ReplyTo,
    outcome: Result<ReplyParts, Value>,
    last: bool,
    traceparent: String,
) -> nest::OutgoingRecord {
    let (parts, outcome) = match outcome {
        Ok(mut p) => {
            let value = p.value.take();
            (p, Ok(value))
        }
        Err(e) => (ReplyParts::default(), Err(e)),
    };
    let mut rec = nest::reply(to, outcome, last);
    rec.key = parts.key;
    rec.headers.extend(parts.headers);
    rec.headers
        .push((trace::TRACEPARENT.to_string(), traceparent.into()));
    rec
}

/// What a failed poll means for the server.
enum PollFailure {
    /// The member stopped for good, in this state.
    Fatal(ServerState),
    /// Worth polling again.
    Transient,
}

fn classify(e: &ConsumeError) -> PollFailure {
    match e {
        ConsumeError::Group {
            code: ErrorCode::FencedInstanceId,
            ..
        } => PollFailure::Fatal(ServerState::Fenced),
        ConsumeError::Group { .. } | ConsumeError::Closed | ConsumeError::InvalidGroupConfig(_) => {
            PollFailure::Fatal(ServerState::Crashed)
        }
        _ => PollFailure::Transient,
    }
}
