//! `ProducerConfig`: the Java producer's settings in snake_case.

use std::time::Duration;

use franz_client::ClientConfig;
use franz_protocol::compression::Compression;

use crate::error::ProduceError;

/// `acks`: how many replicas must have the record before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: no response at all.
    None,
    /// The leader has it.
    Leader,
    /// Every in-sync replica has it (`-1`/`all`).
    #[default]
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }
}

/// Which partitioner chooses partitions for records without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionerKind {
    /// Java's: murmur2 for keys, uniform sticky (KIP-480/794) for null keys.
    #[default]
    Default,
    /// KafkaJS's: murmur2 for keys, per-record round-robin for null keys.
    RoundRobin,
}

/// Producer configuration. Field names follow the Java producer's settings.
///
/// ```
/// use franz_producer::{Acks, ProducerConfig};
/// let config = ProducerConfig::new("127.0.0.1:9092")
///     .with_acks(Acks::All)
///     .with_linger(std::time::Duration::from_millis(5));
/// assert!(config.idempotent().unwrap());
/// ```
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// `acks` (default all).
    pub acks: Acks,
    /// `linger.ms` (default 5 ms, as Java since 4.0).
    pub linger: Duration,
    /// `batch.size` in bytes (default 16 KiB).
    pub batch_size: usize,
    /// `max.request.size` in bytes (default 1 MiB): the largest produce
    /// request, and so the largest record.
    pub max_request_size: usize,
    /// `buffer.memory` in bytes (default 32 MiB): records waiting to be
    /// acknowledged never take more.
    pub buffer_memory: usize,
    /// `compression.type`.
    pub compression_type: Compression,
    /// `compression.level` (gzip 0-9).
    pub compression_level: Option<u32>,
    /// `enable.idempotence`: `None` means "on unless acks is not all"
    /// (Java's rule); `Some(true)` with acks not all is a configuration error.
    pub enable_idempotence: Option<bool>,
    /// `max.in.flight.requests.per.connection` (default 5, at most 5 with
    /// idempotence).
    pub max_in_flight_requests_per_connection: usize,
    /// `delivery.timeout.ms` (default 120 s): how long a record may take,
    /// retries included.
    pub delivery_timeout: Duration,
    /// `max.block.ms` (default 60 s): how long `send` may wait for metadata
    /// or buffer memory.
    pub max_block: Duration,
    /// `partitioner.class`, as a kind.
    pub partitioner: PartitionerKind,
    /// `transactional.id`: makes the producer transactional (and so
    /// idempotent); call [`Producer::init_transactions`](crate::Producer::init_transactions)
    /// before the first transaction.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` (default 60 s): the broker aborts a
    /// transaction left open longer.
    pub transaction_timeout: Duration,
}

impl ProducerConfig {
    /// Defaults as the Java producer's, with `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str) -> Self {
        Self::from_client_config(ClientConfig::new(bootstrap_servers))
    }

    /// Defaults over an existing client configuration.
    pub fn from_client_config(client: ClientConfig) -> Self {
        Self {
            client,
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            compression_type: Compression::None,
            compression_level: None,
            enable_idempotence: None,
            max_in_flight_requests_per_connection: 5,
            delivery_timeout: Duration::from_secs(120),
            max_block: Duration::from_secs(60),
            partitioner: PartitionerKind::Default,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }

    /// Makes the producer transactional with `id` (`transactional.id`).
    pub fn with_transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// Sets `acks`.
    pub fn with_acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Sets `linger.ms`.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets `compression.type`.
    pub fn with_compression(mut self, c: Compression) -> Self {
        self.compression_type = c;
        self
    }

    /// Builds from Java-style properties (producer and client keys).
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        props: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ProduceError> {
        let mut c = Self::from_client_config(ClientConfig::default());
        for (k, v) in props {
            let (k, v) = (k.as_ref(), v.as_ref().trim());
            let bytes = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| ProduceError::Config(format!("{k} must be a byte count")))
            };
            let ms = |v: &str| {
                v.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| ProduceError::Config(format!("{k} must be milliseconds")))
            };
            match k {
                "acks" => {
                    c.acks = match v {
                        "0" => Acks::None,
                        "1" => Acks::Leader,
                        "-1" | "all" => Acks::All,
                        _ => {
                            return Err(ProduceError::Config(format!(
                                "acks must be 0, 1 or all, not {v}"
                            )));
                        }
                    }
                }
                "linger.ms" => c.linger = ms(v)?,
                "batch.size" => c.batch_size = bytes(v)?,
                "max.request.size" => c.max_request_size = bytes(v)?,
                "buffer.memory" => c.buffer_memory = bytes(v)?,
                "compression.type" => {
                    c.compression_type = Compression::from_name(v).ok_or_else(|| {
                        ProduceError::Config(format!("unknown compression.type {v}"))
                    })?
                }
                "compression.level" | "compression.gzip.level" => {
                    c.compression_level = Some(
                        v.parse()
                            .map_err(|_| ProduceError::Config(format!("{k} must be a number")))?,
                    )
                }
                "enable.idempotence" => c.enable_idempotence = Some(v.eq_ignore_ascii_case("true")),
                "max.in.flight.requests.per.connection" => {
                    c.max_in_flight_requests_per_connection = bytes(v)?
                }
                "delivery.timeout.ms" => c.delivery_timeout = ms(v)?,
                "max.block.ms" => c.max_block = ms(v)?,
                "transactional.id" => c.transactional_id = Some(v.to_string()),
                "transaction.timeout.ms" => c.transaction_timeout = ms(v)?,
                "partitioner.class" => {
                    c.partitioner = if v.to_ascii_lowercase().contains("roundrobin") {
                        PartitionerKind::RoundRobin
                    } else {
                        PartitionerKind::Default
                    }
                }
                other => {
                    if c.client.set(other, v).map_err(ProduceError::Client)? {
                        continue;
                    }
                    if franz_client::JAVA_CONSUMER_KEYS.contains(&other)
                        || franz_client::JAVA_IGNORED_KEYS.contains(&other)
                    {
                        // One properties file for every role.
                        tracing::warn!(key = other, "not a producer setting; ignored");
                        continue;
                    }
                    return Err(ProduceError::Config(format!(
                        "unknown producer setting {other}"
                    )));
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Whether the producer is idempotent, applying Java's rule (a
    /// transactional producer always is).
    pub fn idempotent(&self) -> Result<bool, ProduceError> {
        if self.transactional_id.is_some() {
            return match (self.enable_idempotence, self.acks) {
                (Some(false), _) | (_, Acks::None | Acks::Leader) => Err(ProduceError::Config(
                    "transactional.id requires idempotence and acks=all".into(),
                )),
                _ => Ok(true),
            };
        }
        match (self.enable_idempotence, self.acks) {
            (Some(true), a) if a != Acks::All => Err(ProduceError::Config(
                "enable.idempotence=true requires acks=all".into(),
            )),
            (Some(explicit), _) => Ok(explicit),
            (None, a) => Ok(a == Acks::All),
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ProduceError> {
        self.client.validate()?;
        let idempotent = self.idempotent()?;
        if idempotent && self.max_in_flight_requests_per_connection > 5 {
            return Err(ProduceError::Config(
                "idempotence allows at most 5 requests in flight per connection".into(),
            ));
        }
        if self.max_in_flight_requests_per_connection == 0 {
            return Err(ProduceError::Config(
                "max.in.flight.requests.per.connection must be at least 1".into(),
            ));
        }
        if self.batch_size == 0 || self.buffer_memory < self.batch_size {
            return Err(ProduceError::Config(
                "buffer.memory must be at least batch.size, and batch.size above 0".into(),
            ));
        }
        if self.transactional_id.as_deref() == Some("") {
            return Err(ProduceError::Config(
                "transactional.id must not be empty".into(),
            ));
        }
        if self.transaction_timeout.is_zero()
            || self.transaction_timeout.as_millis() > i32::MAX as u128
        {
            return Err(ProduceError::Config(
                "transaction.timeout.ms must be between 1 and i32::MAX".into(),
            ));
        }
        if self.delivery_timeout < self.linger + self.client.request_timeout {
            return Err(ProduceError::Config(
                "delivery.timeout.ms must be at least linger.ms + request.timeout.ms".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_idempotence_follows_acks() {
        let c = ProducerConfig::new("a:1");
        assert!(c.idempotent().unwrap());
        assert!(!c.clone().with_acks(Acks::Leader).idempotent().unwrap());
        let explicit = ProducerConfig {
            enable_idempotence: Some(true),
            ..c.with_acks(Acks::Leader)
        };
        assert!(explicit.idempotent().is_err());
    }

    #[test]
    fn java_properties() {
        let c = ProducerConfig::from_properties([
            ("bootstrap.servers", "h:1"),
            ("acks", "1"),
            ("linger.ms", "20"),
            ("compression.type", "lz4"),
            ("batch.size", "1048576"),
        ])
        .unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.compression_type, Compression::Lz4);
        assert!(!c.idempotent().unwrap());
        assert!(
            ProducerConfig::from_properties([("bootstrap.servers", "h:1"), ("lingerr.ms", "1")])
                .is_err()
        );
        assert!(
            ProducerConfig::from_properties([
                ("bootstrap.servers", "h:1"),
                ("acks", "1"),
                ("enable.idempotence", "true")
            ])
            .is_err()
        );
    }
}
