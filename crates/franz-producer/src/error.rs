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
    /// The record's transaction was aborted before the record was sent,
    /// or while it waited to be resent: it is not committed.
    #[error("the record's transaction was aborted")]
    TransactionAborted,
    /// The open transaction cannot commit (one of its batches, or a
    /// transactional request, failed): abort it, then begin the next.
    #[error("the transaction must be aborted: {cause}")]
    TransactionAbortable {
        /// What failed.
        cause: Box<Self>,
    },
    /// A transactional request failed in a way that ends this producer (the
    /// broker refuses its transactional id, or its state): create a new one.
    #[error("{operation} failed: {code}; the producer cannot go on")]
    TransactionFatal {
        /// The request.
        operation: &'static str,
        /// The broker's error code.
        code: ErrorCode,
    },
    /// A transactional call made in the wrong state (`commit` with no
    /// transaction open, `send` before `begin_transaction`, ...).
    #[error("{operation} is not allowed while the producer is {state}")]
    InvalidTransactionState {
        /// The call.
        operation: &'static str,
        /// The producer's transaction state.
        state: &'static str,
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
            | Self::TransactionAborted
            | Self::TransactionAbortable { .. }
            | Self::TransactionFatal { .. }
            | Self::InvalidTransactionState { .. }
            | Self::Config(_)
            | Self::Fatal(_) => false,
        }
    }
}

impl ProduceError {
    /// Whether the open transaction must be aborted (and the producer can
    /// then go on with the next one).
    pub fn is_abortable(&self) -> bool {
        matches!(self, Self::TransactionAbortable { .. })
    }

    /// Whether the producer can do nothing more: fenced by a newer instance
    /// with the same transactional id, or refused by the broker for good.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::ProducerFenced { .. } | Self::TransactionFatal { .. } | Self::Fatal(_)
        )
    }
}

/// [`Producer::send`](crate::Producer::send) or
/// [`try_send`](crate::Producer::try_send) could not queue a record: why,
/// and the record itself, handed back untouched (as tokio's `SendError<T>`
/// does), so a caller can send it again or park it without a copy.
#[derive(Debug, thiserror::Error)]
#[error("record not queued: {error}")]
pub struct SendError {
    /// The record, as it was given.
    pub record: crate::ProducerRecord,
    /// Why it was not queued.
    #[source]
    pub error: ProduceError,
}

impl SendError {
    /// Whether trying again later may queue it (a full buffer, say).
    pub fn is_retriable(&self) -> bool {
        self.error.is_retriable()
    }

    /// The record and the reason, apart.
    pub fn into_parts(self) -> (crate::ProducerRecord, ProduceError) {
        (self.record, self.error)
    }
}

/// `?` in code that only wants the reason: the record is dropped.
impl From<Box<SendError>> for ProduceError {
    fn from(e: Box<SendError>) -> Self {
        e.error
    }
}
