//! Consumer settings, named after the Java consumer's keys in snake_case.

use std::time::Duration;

use franz_client::ClientConfig;

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
    /// Defaults as the Java consumer's, with `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str) -> Self {
        Self::with_client(ClientConfig::new(bootstrap_servers))
    }

    /// Defaults around an existing client configuration.
    pub fn with_client(client: ClientConfig) -> Self {
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
