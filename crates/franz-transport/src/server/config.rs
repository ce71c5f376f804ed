//! The server's settings: `TransportServerConfig` and `ExactlyOnce`.

use super::*;

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
