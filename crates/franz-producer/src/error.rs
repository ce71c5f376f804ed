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
        "record not delivered within the delivery timeout ({after:?}){}{}",
        if *sent { " after it was sent: it may be in the log" } else { "" },
        last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    DeliveryTimeout {
        /// The delivery timeout.
        after: Duration,
        /// Whether the batch was ever sent: then the broker may have
        /// written it (its answer never came), so the record's fate is
        /// unknown rather than "not written".
        sent: bool,
        /// The last error seen while retrying, if any.
        last_error: Option<Box<Self>>,
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
    /// The producer was closed before the record was sent: it was not
    /// written.
    #[error("the producer is closed")]
    Closed,
    /// The producer's close deadline passed while the record's batch was in
    /// flight (or sent and waiting to be resent): it may or may not be in
    /// the log.
    #[error("the producer closed while the record was in flight; it may be in the log")]
    ClosedInFlight,
    /// Another producer with the same id took over (a newer epoch): this
    /// one can send nothing more.
    #[error("producer {producer_id} (epoch {epoch}) was fenced by a newer instance")]
    ProducerFenced {
        /// Producer id.
        producer_id: i64,
        /// The epoch that was fenced.
        epoch: i16,
    },
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
            | Self::ClosedInFlight
            | Self::ProducerFenced { .. }
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
