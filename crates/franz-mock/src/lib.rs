//! # franz-mock
//!
//! An Apache Kafka cluster inside the test's process. It listens on
//! loopback ports and speaks the wire protocol with franz's own codec, so
//! any client works against it (franz, librdkafka/kcat, KafkaJS, Java),
//! and it needs no Java, no download and no Docker.
//!
//! Use it to test applications in milliseconds, to run the demo on a bare
//! machine, and to script situations a real broker gives only by chance
//! (a leader moving at a chosen request, a coordinator answering one
//! error). The real-broker suite stays the authority on correctness: the
//! scenarios franz's suite runs on both must agree, and every difference
//! that remains is listed below.
//!
//! ## Main types
//! - [`MockCluster`]: start one ([`MockCluster::start`] or
//!   [`MockCluster::builder`]), hand its [`bootstrap`](MockCluster::bootstrap)
//!   to clients, inspect and steer it (create topics, move leaders, kill
//!   and revive brokers). Dropping it stops it.
//! - [`Control`]: a hook on requests by API key, optionally by topic,
//!   partition and broker, once or persistently, that answers an error,
//!   delays, drops, closes the connection, moves a leader, kills or revives
//!   a broker, scripts SCRAM messages ([`ScramScript`]) or just observes.
//!   [`MockCluster::control`] returns a [`ControlHandle`] that counts hits
//!   and keeps the requests it saw.
//!
//! ## Example: a handler tested without a broker
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = franz_mock::MockCluster::start()?;
//! kafka.create_topic("orders", 3)?;
//! // Any Kafka client can connect: franz, kcat, KafkaJS, Java.
//! let bootstrap = kafka.bootstrap();
//! assert!(bootstrap.starts_with("127.0.0.1:"));
//! # Ok(()) }
//! ```
//!
//! A transport handler tested in a `#[tokio::test]` (this is
//! `crates/franz-transport/tests/with_franz_mock.rs`, which the suite
//! compiles and runs; it takes about half a second):
//! ```rust,ignore
//! async fn invoice(Payload(order): Payload<Order>) -> Result<Invoice, RpcError> {
//!     if order.total == 0 {
//!         return Err(RpcError::message("nothing to invoice"));
//!     }
//!     Ok(Invoice { id: order.id, status: "INVOICED".into() })
//! }
//!
//! #[tokio::test]
//! async fn the_invoice_handler_answers_and_refuses_empty_orders() {
//!     let kafka = MockCluster::start().unwrap(); // topics auto-created
//!     let server = TransportServer::builder(TransportServerConfig::new(&kafka.bootstrap(), "billing"))
//!         .message("order.created", invoice)
//!         .start()
//!         .await
//!         .unwrap();
//!     let client = TransportClient::connect(
//!         TransportClientConfig::new(&kafka.bootstrap(), "gateway"),
//!         &["order.created"],
//!     )
//!     .await
//!     .unwrap();
//!     let reply: Invoice = client
//!         .send("order.created", &Order { id: "o-1".into(), total: 42 })
//!         .await
//!         .unwrap();
//!     assert_eq!(reply.status, "INVOICED");
//! }
//! ```
//!
//! ## In franz's own suite
//! `FRANZ_TEST_BROKER=mock cargo test --workspace` runs the ordinary suite
//! against one of these instead of a Java broker; tests that need a real
//! broker (their own clusters, kills, TLS, APIs not served below) are
//! marked with `franz_testkit::real_broker_only` and say they were
//! skipped. `franz-kafka up --mock` (`just kafka-up-mock`) holds one in
//! the background for manual work.
//!
//! ## Data flow and threads
//! The cluster runs on its own tokio runtime (two worker threads), so it
//! works under any test runtime, including `current_thread`, and outlives
//! none of its handles: dropping [`MockCluster`] shuts the runtime down.
//! Each broker is a listener; each connection is a task that reads a
//! frame, decodes it (closing the connection on anything malformed, as a
//! broker does), applies hooks, serves it against the one shared state and
//! writes the answer. Requests on a connection are served in order, one at
//! a time. Fetch long polls, JoinGroup and SyncGroup park on a change
//! signal without holding the state lock. State logic takes `now` from
//! the driver and never reads the clock itself.
//!
//! ## What it implements
//! | area | served | differences from Apache Kafka 4.x |
//! | --- | --- | --- |
//! | ApiVersions | v0-4, KIP-511 fallback | lists only the APIs below; announces no features (so transaction version 1); Produce announced from v0 and served from v3, as Kafka 4 does (KAFKA-18659: librdkafka compresses only for brokers listing v0) |
//! | Metadata | v0-12, auto-creation (on by default, [`MockConfig::auto_create_topics`]) | an auto-created topic is complete in the same answer (Kafka first says LEADER_NOT_AVAILABLE) |
//! | CreateTopics, DeleteTopics, CreatePartitions | all our versions | replica assignments are ignored; deletion is immediate |
//! | Produce | v3-11, acks 0/1/all, idempotence (sequence, epoch, 5 remembered batches), transactional batches | no quotas, no LogAppendTime rewrite, no compression-type conversion; compressed batches are stored as sent |
//! | Fetch | v4-17, sessions (KIP-227), read_committed, long poll | no preferred read replica, no diverging-epoch answers, no throttling |
//! | ListOffsets, OffsetForLeaderEpoch | all our versions | timestamps searched per record |
//! | FindCoordinator | v0-6 | coordinator = a live broker by hash of the key |
//! | Classic groups: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups | all our versions | a static member's rejoin rebalances (Kafka hands it the old assignment) |
//! | KIP-848: ConsumerGroupHeartbeat | v0-1, `uniform`/`range` as one range assignor per topic | no ConsumerGroupDescribe; regex subscriptions use Rust's `regex` syntax |
//! | Transactions: InitProducerId, AddPartitionsToTxn (v0-3), AddOffsetsToTxn, TxnOffsetCommit, EndTxn (v0-4) | transaction version 1, timeouts abort and bump the epoch | no transaction version 2 (KIP-890 part 2) |
//! | SaslHandshake (v0-1), SaslAuthenticate | PLAIN, SCRAM-SHA-256/512 | no TLS, no OAUTHBEARER, no re-authentication (KIP-368) |
//! | DescribeCluster, DescribeConfigs | topic and broker resources | a fixed set of configs |
//!
//! **Not served** (real broker only; not listed in ApiVersions, and a
//! request for one closes the connection as a broker does for an unknown
//! API): DeleteRecords, ElectLeaders, ACLs (Describe/Create/DeleteAcls),
//! IncrementalAlterConfigs, OffsetDelete, DescribeProducers,
//! DescribeTransactions, ListTransactions, ConsumerGroupDescribe, and
//! everything franz's codec does not speak. There is no replication
//! protocol (every replica is always in sync), no disk, no retention, no
//! quotas and no TLS.
//!
//! ## Cancel safety
//! Nothing here is a future a caller polls; [`MockCluster`]'s methods are
//! synchronous and safe to call from any thread or runtime.
#![allow(clippy::disallowed_methods)] // the mock broker is a driver of its own cluster state: session expiry and delayed fetches read the clock

mod consumer_group;
mod control;
mod error_response;
mod fetch_session;
mod group;
mod handlers;
mod log;
mod sasl;
mod server;
mod state;
mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use control::{Control, ControlAction, ControlHandle, ObservedRequest, ScramScript};
pub use franz_protocol::ErrorCode;
pub use sasl::{SaslMechanism, SaslUser};

use server::Shared;
use state::{BrokerInfo, State};

/// Why the mock could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// A listener could not bind or the runtime could not start.
    #[error("franz-mock: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The request names something the cluster does not have, or breaks a rule.
    #[error("franz-mock: {0}")]
    Invalid(String),
    /// A topic operation failed with a Kafka error code.
    #[error("franz-mock: {code}: {message}")]
    Kafka {
        /// The code a broker would answer.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
}

impl MockError {
    /// Whether trying again may succeed: only a Kafka code that is itself
    /// retriable (a bind failure or a broken rule stays broken).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Kafka { code, .. } => code.is_retriable(),
            Self::Io { .. } | Self::Invalid(_) => false,
        }
    }
}

/// How to build a cluster.
///
/// ```
/// let kafka = franz_mock::MockCluster::builder()
///     .brokers(3)
///     .auto_create_topics(false)
///     .start()?;
/// assert_eq!(kafka.bootstrap().split(',').count(), 3);
/// # Ok::<(), franz_mock::MockError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub(crate) brokers: usize,
    pub(crate) host: String,
    pub(crate) ports: Vec<u16>,
    /// Metadata requests create missing topics (Kafka's default: on).
    pub(crate) auto_create_topics: bool,
    pub(crate) default_partitions: i32,
    pub(crate) max_partitions_per_topic: i32,
    pub(crate) cluster_id: String,
    pub(crate) sasl_users: Vec<SaslUser>,
    pub(crate) racks: Vec<String>,
    pub(crate) initial_rebalance_delay: Duration,
    pub(crate) consumer_heartbeat_interval: Duration,
    pub(crate) consumer_session_timeout: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            brokers: 1,
            host: "127.0.0.1".into(),
            ports: Vec::new(),
            auto_create_topics: true,
            default_partitions: 1,
            max_partitions_per_topic: 10_000,
            cluster_id: "franz-mock-cluster".into(),
            sasl_users: Vec::new(),
            racks: Vec::new(),
            initial_rebalance_delay: Duration::ZERO,
            consumer_heartbeat_interval: Duration::from_millis(1000),
            consumer_session_timeout: Duration::from_secs(10),
        }
    }
}

impl MockConfig {
    /// Number of brokers (ids 1..=n). Default 1.
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n.max(1);
        self
    }

    /// Fixed ports, one per broker (default: free ports the OS picks).
    pub fn ports(mut self, ports: Vec<u16>) -> Self {
        self.ports = ports;
        self
    }

    /// Whether Metadata requests create missing topics (default on, as a
    /// default broker; KafkaJS and NestJS apps rely on it).
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = on;
        self
    }

    /// Partitions of auto-created topics and of CreateTopics with -1 (default 1).
    pub fn default_partitions(mut self, n: i32) -> Self {
        self.default_partitions = n.max(1);
        self
    }

    /// The cluster id Metadata reports.
    pub fn cluster_id(mut self, id: impl Into<String>) -> Self {
        self.cluster_id = id.into();
        self
    }

    /// Require SASL: only these users get in.
    pub fn sasl_users(mut self, users: Vec<SaslUser>) -> Self {
        self.sasl_users = users;
        self
    }

    /// Racks, one per broker in id order.
    pub fn racks(mut self, racks: Vec<String>) -> Self {
        self.racks = racks;
        self
    }

    /// Kafka's `group.initial.rebalance.delay.ms` (default 0 here).
    pub fn initial_rebalance_delay(mut self, d: Duration) -> Self {
        self.initial_rebalance_delay = d;
        self
    }

    /// KIP-848 `group.consumer.heartbeat.interval.ms` (default 1 s) and
    /// `group.consumer.session.timeout.ms` (default 10 s).
    pub fn consumer_group_timing(
        mut self,
        heartbeat_interval: Duration,
        session_timeout: Duration,
    ) -> Self {
        self.consumer_heartbeat_interval = heartbeat_interval;
        self.consumer_session_timeout = session_timeout;
        self
    }

    /// Starts the cluster.
    pub fn start(self) -> Result<MockCluster, MockError> {
        MockCluster::start_with(self)
    }
}

/// A running in-process cluster. Dropping it stops every broker.
///
/// ```
/// use franz_mock::{Control, ErrorCode, MockCluster};
/// use franz_protocol::ApiKey;
/// let kafka = MockCluster::builder().brokers(3).start()?;
/// kafka.create_topic("payments", 6)?;
/// // The next Produce to payments/2 fails as if the leader had just moved.
/// let hook = kafka.control(
///     Control::on(ApiKey::Produce).topic("payments").partition(2).once()
///         .respond_error(ErrorCode::NotLeaderOrFollower),
/// );
/// assert_eq!(hook.hits(), 0);
/// kafka.move_leader("payments", 2, 3)?;
/// assert_eq!(kafka.leader("payments", 2), Some(3));
/// # Ok::<(), franz_mock::MockError>(())
/// ```
#[derive(Debug)]
pub struct MockCluster {
    shared: Arc<Shared>,
    bootstrap: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl MockCluster {
    /// One broker, topic auto-creation on.
    pub fn start() -> Result<Self, MockError> {
        MockConfig::default().start()
    }

    /// A builder for other shapes.
    pub fn builder() -> MockConfig {
        MockConfig::default()
    }

    fn start_with(config: MockConfig) -> Result<Self, MockError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("franz-mock")
            .enable_all()
            .build()
            .map_err(|source| MockError::Io {
                what: "starting the runtime".into(),
                source,
            })?;
        let mut listeners = Vec::new();
        let mut brokers = Vec::new();
        for i in 0..config.brokers {
            let port = config.ports.get(i).copied().unwrap_or(0);
            let addr = format!("{}:{port}", config.host);
            let listener = server::bind_reusable(&addr).map_err(|source| MockError::Io {
                what: format!("binding broker {} to {addr}", i + 1),
                source,
            })?;
            let port = listener
                .local_addr()
                .map_err(|source| MockError::Io {
                    what: "reading a listener's port".into(),
                    source,
                })?
                .port();
            let id = i32::try_from(i + 1).unwrap_or(i32::MAX);
            brokers.push(BrokerInfo {
                id,
                host: config.host.clone(),
                port,
                rack: config.racks.get(i).cloned(),
                alive: true,
            });
            listeners.push((id, listener));
        }
        let bootstrap = brokers
            .iter()
            .map(|b| format!("{}:{}", b.host, b.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut state = State::new(config.clone(), brokers);
        state.groups.timings = group::GroupTimings {
            initial_rebalance_delay: config.initial_rebalance_delay,
            consumer_heartbeat_interval: config.consumer_heartbeat_interval,
            consumer_session_timeout: config.consumer_session_timeout,
            ..group::GroupTimings::default()
        };
        let shared = Arc::new(Shared::new(
            state,
            config.sasl_users.clone(),
            runtime.handle().clone(),
        ));
        for (id, listener) in listeners {
            shared
                .serve_broker(id, listener)
                .map_err(|source| MockError::Io {
                    what: format!("serving broker {id}"),
                    source,
                })?;
        }
        // Session, rebalance and transaction timeouts progress even when no
        // request is parked.
        let ticker = Arc::downgrade(&shared);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                let Some(shared) = ticker.upgrade() else {
                    return;
                };
                let changed = shared.lock().tick(Instant::now());
                if changed {
                    shared.changed();
                }
            }
        });
        tracing::info!(%bootstrap, "franz-mock cluster started");
        Ok(Self {
            shared,
            bootstrap,
            runtime: Some(runtime),
        })
    }

    /// `host:port` of every broker, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Creates a topic (replication factor: min(3, brokers)).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), MockError> {
        let r = self
            .shared
            .lock()
            .create_topic(name, partitions, -1, BTreeMap::new(), false);
        self.shared.changed();
        r.map(|_| ())
            .map_err(|(code, message)| MockError::Kafka { code, message })
    }

    /// The topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.shared.lock().topics.keys().cloned().collect()
    }

    /// The leader of a partition.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.shared
            .lock()
            .partition(topic, partition)
            .map(|p| p.leader)
    }

    /// A partition's high watermark (its log end: every replica is in sync).
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .lock()
            .partition(topic, partition)
            .map(|p| p.log.high_watermark())
    }

    /// The raw record batches of a partition, as a fetch would return them.
    pub fn batches(&self, topic: &str, partition: i32) -> Vec<bytes::Bytes> {
        self.shared
            .lock()
            .partition(topic, partition)
            .map(|p| p.log.batches().iter().map(|b| b.bytes.clone()).collect())
            .unwrap_or_default()
    }

    /// The broker coordinating a group or transactional id now.
    pub fn coordinator(&self, key: &str) -> Option<i32> {
        self.shared.lock().coordinator_for(key).map(|b| b.id)
    }

    /// A group's committed offset for a partition.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .lock()
            .groups
            .map
            .get(group)
            .and_then(|g| g.offsets.get(&(topic.to_string(), partition)))
            .map(|c| c.offset)
    }

    /// Moves a partition's leadership to broker `to`, with a new leader epoch.
    pub fn move_leader(&self, topic: &str, partition: i32, to: i32) -> Result<(), MockError> {
        let moved = {
            let mut st = self.shared.lock();
            if st.broker(to).is_none_or(|b| !b.alive) {
                return Err(MockError::Invalid(format!(
                    "broker {to} is not a live broker"
                )));
            }
            st.move_leader(topic, partition, to)
        };
        self.shared.changed();
        if moved {
            Ok(())
        } else {
            Err(MockError::Invalid(format!(
                "no partition {topic}/{partition}"
            )))
        }
    }

    /// Kills a broker: its port refuses connections, open connections
    /// close, its partitions move to live replicas, coordinators move.
    pub fn kill_broker(&self, id: i32) {
        self.shared.kill_broker(id);
    }

    /// Brings a killed broker back on its port.
    pub fn revive_broker(&self, id: i32) -> Result<(), MockError> {
        self.shared
            .revive_broker(id)
            .map_err(|source| MockError::Io {
                what: format!("reviving broker {id}"),
                source,
            })
    }

    /// Registers a hook.
    pub fn control(&self, control: Control) -> ControlHandle {
        self.shared
            .controls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(control)
    }

    /// Removes a hook.
    pub fn remove_control(&self, handle: &ControlHandle) {
        self.shared
            .controls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(handle.id);
    }
}

/// Runs the request decoding every mock broker applies to a frame (the
/// bytes after the size prefix): `Ok` when the mock would serve it, `Err`
/// with the reason when it would refuse it (and close the connection). It
/// never panics, whatever the bytes; the fuzz target
/// `crates/franz-mock/fuzz` holds it to that.
///
/// ```
/// assert!(franz_mock::check_request_frame(&[0xff; 3]).is_err());
/// ```
pub fn check_request_frame(frame: &[u8]) -> Result<(), String> {
    match server::decode_frame(bytes::Bytes::copy_from_slice(frame)) {
        Ok(_) | Err(server::Refused::ApiVersionsFallback(_)) => Ok(()),
        Err(server::Refused::Close(reason)) => Err(reason),
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
