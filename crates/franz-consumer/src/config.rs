//! Consumer settings, named after the Java consumer's keys in snake_case.

use std::time::Duration;

use franz_client::{ClientConfig, JAVA_IGNORED_KEYS, JAVA_PRODUCER_KEYS};

use crate::error::ConsumeError;

/// Java consumer keys that [`GroupConfig`](crate::GroupConfig) reads:
/// `ConsumerConfig::from_properties` leaves them to it.
pub(crate) const GROUP_KEYS: &[&str] = &[
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "franz.rebalance.timeout.ms",
    "franz.revoke.timeout.ms",
];

/// Java consumer keys with no meaning in franz (records are `Bytes`;
/// internal topics are never matched by a subscription).
const CONSUMER_IGNORED_KEYS: &[&str] = &[
    "key.deserializer",
    "value.deserializer",
    "exclude.internal.topics",
];

/// What `from_properties` makes of a key no role-specific setter took.
pub(crate) fn foreign_key(key: &str, role: &str) -> Result<(), ConsumeError> {
    if JAVA_PRODUCER_KEYS.contains(&key)
        || JAVA_IGNORED_KEYS.contains(&key)
        || CONSUMER_IGNORED_KEYS.contains(&key)
    {
        // One properties file serves every role.
        tracing::warn!(key, "not a {role} setting; ignored");
        return Ok(());
    }
    Err(ConsumeError::Config(format!(
        "unknown {role} setting {key}"
    )))
}

/// Where a partition without a valid position starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset: only records written from now on (Java's default).
    #[default]
    Latest,
    /// No reset: a missing or out-of-range position is an error.
    None,
}

/// Which records a fetch may return (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything up to the high watermark, aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Up to the last stable offset, without records of aborted transactions.
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value of Fetch's `isolation_level`.
    pub fn wire(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }
}

/// Consumer configuration. Connection, security and `client_rack` settings
/// live in [`ClientConfig`]; the rack is sent with every Fetch (KIP-392).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection, security and metadata settings.
    pub client: ClientConfig,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `isolation.level` (default read_uncommitted).
    pub isolation_level: IsolationLevel,
    /// `fetch.min.bytes` (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (default 50 MiB) per Fetch request.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (default 1 MiB) per partition and request.
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms` (default 500 ms): how long the broker may hold a
    /// Fetch waiting for `fetch_min_bytes`.
    pub fetch_max_wait: Duration,
    /// `check.crcs` (default true): verify every batch's CRC-32C.
    pub check_crcs: bool,
    /// `max.poll.records` (default 500): the most records one `poll` returns.
    pub max_poll_records: usize,
    /// The most decompressed bytes one `poll` decodes (default 64 MiB). A
    /// batch is never split, so a poll always admits at least one whole
    /// batch; the rest of the fetched data stays compressed, in order, for
    /// the next poll. With `fetch_max_bytes` of compressed data buffered per
    /// broker, this bounds the consumer's memory.
    pub max_poll_bytes: usize,
    /// KIP-227 incremental fetch sessions (default true): after a full
    /// fetch, requests name only partitions whose fetch state changed.
    pub fetch_sessions: bool,
}

impl ConsumerConfig {
    /// Builds from Java-style properties: consumer and client keys are
    /// applied; group keys are left to
    /// [`GroupConfig::from_properties`](crate::GroupConfig::from_properties);
    /// producer keys and JVM-only keys are accepted with a warning, so one
    /// properties file serves every role; any other key is an error.
    /// `franz.max.poll.bytes` and `franz.fetch.sessions` set the two
    /// settings Java has no key for.
    ///
    /// ```
    /// use franz_consumer::{ConsumerConfig, IsolationLevel, OffsetReset};
    /// let c = ConsumerConfig::from_properties([
    ///     ("bootstrap.servers", "127.0.0.1:9092"),
    ///     ("auto.offset.reset", "earliest"),
    ///     ("isolation.level", "read_committed"),
    ///     ("group.id", "billing"),  // GroupConfig's
    ///     ("linger.ms", "5"),       // the producer's: a warning
    /// ])?;
    /// assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
    /// assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
    /// assert!(ConsumerConfig::from_properties([("bootstrap.servers", "h:1"), ("fetch.mni.bytes", "1")]).is_err());
    /// # Ok::<(), franz_consumer::ConsumeError>(())
    /// ```
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        props: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConsumeError> {
        let mut c = Self::from_client_config(ClientConfig::default());
        for (k, v) in props {
            let (k, v) = (k.as_ref(), v.as_ref().trim());
            if c.set(k, v)? || c.client.set(k, v)? || GROUP_KEYS.contains(&k) {
                continue;
            }
            foreign_key(k, "consumer")?;
        }
        c.client.validate()?;
        Ok(c)
    }

    /// Parses a `key=value` properties text, then [`from_properties`](Self::from_properties).
    pub fn from_properties_text(text: &str) -> Result<Self, ConsumeError> {
        Self::from_properties(franz_client::parse_properties(text))
    }

    /// Applies one Java-named consumer setting; `Ok(false)` if the key is
    /// not one (client and group keys are not).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConsumeError> {
        let bad = |what: &str| ConsumeError::Config(format!("{key} must be {what}, not {value:?}"));
        let int = |v: &str| v.parse::<i32>().map_err(|_| bad("a number"));
        match key {
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    _ => return Err(bad("earliest, latest or none")),
                }
            }
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(bad("read_uncommitted or read_committed")),
                }
            }
            "fetch.min.bytes" => self.fetch_min_bytes = int(value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = int(value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = int(value)?,
            "fetch.max.wait.ms" => {
                self.fetch_max_wait = Duration::from_millis(
                    value.parse().map_err(|_| bad("a number of milliseconds"))?,
                )
            }
            "check.crcs" => {
                self.check_crcs = parse_bool(value).ok_or_else(|| bad("true or false"))?
            }
            "max.poll.records" => {
                self.max_poll_records = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a positive number"))?
            }
            "franz.max.poll.bytes" => {
                self.max_poll_bytes = value.parse().map_err(|_| bad("a byte count"))?
            }
            "franz.fetch.sessions" => {
                self.fetch_sessions = parse_bool(value).ok_or_else(|| bad("true or false"))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Defaults as the Java consumer's, with `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str) -> Self {
        Self::from_client_config(ClientConfig::new(bootstrap_servers))
    }

    /// Defaults around an existing client configuration.
    pub fn from_client_config(client: ClientConfig) -> Self {
        Self {
            client,
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: IsolationLevel::ReadUncommitted,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            check_crcs: true,
            max_poll_records: 500,
            max_poll_bytes: 64 * 1024 * 1024,
            fetch_sessions: true,
        }
    }
}

/// `true`/`false`, any case.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::{GroupConfig, GroupProtocol};

    /// One file for every role, as a Java shop keeps it.
    const SHARED: &str = "
        bootstrap.servers=a:1,b:2
        client.id=billing
        # consumer
        auto.offset.reset=none
        max.poll.records=50
        fetch.max.wait.ms=250
        isolation.level=read_committed
        franz.fetch.sessions=false
        key.deserializer=org.apache.kafka.common.serialization.StringDeserializer
        # group
        group.id=billing
        group.protocol=classic
        partition.assignment.strategy=org.apache.kafka.clients.consumer.CooperativeStickyAssignor
        session.timeout.ms=10000
        max.poll.interval.ms=30000
        enable.auto.commit=false
        # producer
        acks=all
        linger.ms=5
        send.buffer.bytes=131072
    ";

    #[test]
    fn one_properties_file_serves_consumer_group_and_producer() {
        let c = ConsumerConfig::from_properties_text(SHARED).unwrap();
        assert_eq!(c.client.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(c.auto_offset_reset, OffsetReset::None);
        assert_eq!(c.max_poll_records, 50);
        assert_eq!(c.fetch_max_wait, Duration::from_millis(250));
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert!(!c.fetch_sessions);

        let g = GroupConfig::from_properties(franz_client::parse_properties(SHARED)).unwrap();
        assert_eq!(g.group_id, "billing");
        assert_eq!(g.protocol, GroupProtocol::Classic);
        let names: Vec<&str> = g.assignors.iter().map(|a| a.name()).collect();
        assert_eq!(names, vec!["cooperative-sticky"]);
        assert_eq!(g.session_timeout, Duration::from_secs(10));
        assert_eq!(g.max_poll_interval, Duration::from_secs(30));
        assert_eq!(
            g.rebalance_timeout,
            Duration::from_secs(30),
            "as Java sends it"
        );
        assert!(g.revoke_timeout < g.rebalance_timeout);

        let p =
            franz_producer::ProducerConfig::from_properties(franz_client::parse_properties(SHARED))
                .unwrap();
        assert_eq!(p.linger, Duration::from_millis(5));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        for props in [
            vec![("bootstrap.servers", "a:1"), ("fetch.mni.bytes", "1")],
            vec![
                ("bootstrap.servers", "a:1"),
                ("auto.offset.reset", "smallest"),
            ],
            vec![("bootstrap.servers", "a:1"), ("max.poll.records", "0")],
            vec![("bootstrap.servers", "a:1"), ("check.crcs", "yes")],
        ] {
            let e = ConsumerConfig::from_properties(props.clone()).unwrap_err();
            assert!(matches!(e, ConsumeError::Config(_)), "{props:?}: {e:?}");
        }
        for props in [
            vec![("group.id", "g"), ("group.protocl", "consumer")],
            vec![("group.id", "g"), ("enable.auto.commit", "true")],
            vec![
                ("group.id", "g"),
                ("partition.assignment.strategy", "roundrobin"),
            ],
            vec![("group.id", "g"), ("group.protocol", "share")],
        ] {
            let e = GroupConfig::from_properties(props.clone()).unwrap_err();
            assert!(matches!(e, ConsumeError::Config(_)), "{props:?}: {e:?}");
        }
        let e = GroupConfig::from_properties([("session.timeout.ms", "1000")]).unwrap_err();
        assert!(
            matches!(e, ConsumeError::InvalidGroupConfig(_)),
            "group.id is required: {e:?}"
        );
    }
}
