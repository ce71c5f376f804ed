//! The producer's error type.

use std::time::Duration;

use franz_client::ClientError;
use franz_protocol::ErrorCode;

impl From<franz_protocol::EncodeError> for ProduceError {
    fn from(e: franz_protocol::EncodeError) -> Self {
        Self::Client(ClientError::Encode(e))
    }
}

/// Why a record was not delivered (or not accepted).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The client layer failed (connection, metadata, ...).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The record is larger than `max_request_size` or `buffer_memory`.
    #[error("record of {size} bytes exceeds {limit} ({setting})")]
    RecordTooLarge {
        /// The record's encoded size.
        size: usize,
        /// The limit.
        limit: usize,
        /// Which setting sets the limit.
        setting: &'static str,
    },
    /// The record was not acknowledged within `delivery_timeout`.
    #[error(
        "record not delivered within the delivery timeout ({after:?}); last error: {last_error}"
    )]
    DeliveryTimeout {
        /// The delivery timeout.
        after: Duration,
        /// The last error seen while retrying, if any.
        last_error: String,
    },
    /// `send` waited `max_block` for buffer memory or metadata.
    #[error("waited {after:?} for {what}")]
    Blocked {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// `try_send` found the buffer full.
    #[error("the producer buffer is full ({buffered} of {limit} bytes)")]
    BufferFull {
        /// Bytes buffered.
        buffered: usize,
        /// `buffer_memory`.
        limit: usize,
    },
    /// The broker rejected the batch with a non-retriable error.
    #[error("{topic}-{partition}: {code}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The error code.
        code: ErrorCode,
        /// The broker's message.
        message: Option<String>,
    },
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: i32,
    },
    /// The producer was closed before the record was delivered.
    #[error("the producer is closed")]
    Closed,
    /// Invalid configuration.
    #[error("invalid producer configuration: {0}")]
    Config(String),
    /// The producer hit an unrecoverable error (e.g. fenced).
    #[error("fatal producer error: {0}")]
    Fatal(String),
}

impl ProduceError {
    /// Whether sending again may succeed: a lost connection, a delivery
    /// timeout, a full buffer, or a retriable broker code. A record too
    /// large, an unknown topic or partition, or a closed or fenced producer
    /// will fail the same way again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Client(e) => e.is_retriable(),
            Self::DeliveryTimeout { .. } | Self::Blocked { .. } | Self::BufferFull { .. } => true,
            Self::Broker { code, .. } => code.is_retriable(),
            Self::RecordTooLarge { .. }
            | Self::UnknownTopic(_)
            | Self::UnknownPartition { .. }
            | Self::Closed
            | Self::Config(_)
            | Self::Fatal(_) => false,
        }
    }
}

/// [`Producer::try_send`](crate::Producer::try_send) could not queue a
/// record: why, and the record itself, handed back untouched.
#[derive(Debug, thiserror::Error)]
#[error("record not queued: {error}")]
pub struct TrySendError {
    /// The record, as it was given.
    pub record: crate::ProducerRecord,
    /// Why it was not queued.
    #[source]
    pub error: ProduceError,
}

impl TrySendError {
    /// Whether trying again later may queue it (a full buffer, say).
    pub fn is_retriable(&self) -> bool {
        self.error.is_retriable()
    }
}
