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

mod config;
mod parker;
mod worker;

pub use config::{ExactlyOnce, TransportServerConfig};
use parker::*;
use worker::*;

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
