//! The consumer's typed errors.

use franz_client::ClientError;
use franz_protocol::{DecodeError, ErrorCode};

/// Why a consumer call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// A client-layer failure (connection, negotiation, metadata, auth).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The topic exists but not this partition.
    #[error("{topic} has no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: i32,
    },
    /// The partition is not assigned to this consumer.
    #[error("{topic}-{partition} is not assigned")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The position is outside the log and `auto_offset_reset` is `None`.
    #[error("{topic}-{partition}: offset {offset} is out of range and no reset policy is set")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The position that is out of range.
        offset: i64,
    },
    /// No position and `auto_offset_reset` is `None`.
    #[error("{topic}-{partition} has no position and no reset policy is set")]
    NoOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The broker sent bytes that do not decode. The position stays at the
    /// bad batch, so nothing after it is skipped unless the caller seeks.
    #[error("{topic}-{partition}: corrupt data at offset {offset}: {source}")]
    Corrupt {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The position of the batch that failed.
        offset: i64,
        /// What was wrong.
        source: DecodeError,
    },
    /// A partition-level error the consumer does not retry.
    #[error("{topic}-{partition}: {code}")]
    Broker {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The broker's code.
        code: ErrorCode,
    },
    /// A commit the coordinator refused (often: a rebalance happened; the
    /// member rejoins on the next poll and the records will be read again).
    #[error("commit of {topic}-{partition} refused: {code}")]
    CommitFailed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The coordinator's code.
        code: ErrorCode,
    },
    /// Group protocol data that does not decode or does not fit.
    #[error("group protocol: {0}")]
    Protocol(String),
}
