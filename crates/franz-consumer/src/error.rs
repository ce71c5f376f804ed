//! The consumer's typed errors.

use franz_client::ClientError;
use franz_protocol::{DecodeError, ErrorCode};

/// Why a consumer call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// A client-layer failure (connection, negotiation, metadata, auth).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A setting that does not parse, or a key no role knows
    /// (`from_properties`).
    #[error("configuration: {0}")]
    Config(String),
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
    /// The leader's log no longer holds what this consumer read: an unclean
    /// leader election truncated it below the position (KIP-320), and
    /// `auto_offset_reset` is `None`. Seek to `end_offset` (where the two
    /// histories part) or elsewhere to go on.
    #[error(
        "{topic}-{partition}: log truncated below position {offset} (the leader's epoch {diverging_epoch} ends at {end_offset})"
    )]
    LogTruncation {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The position that is no longer in the log.
        offset: i64,
        /// The leader's last epoch at or before ours (-1 if none).
        diverging_epoch: i32,
        /// Where that epoch ends in the leader's log (-1 if unknown).
        end_offset: i64,
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
    /// The group settings are inconsistent; nothing was sent.
    #[error("invalid group settings: {0}")]
    InvalidGroupConfig(#[from] GroupConfigError),
    /// The coordinator refused the member with a code retrying cannot fix
    /// (authorization, an inconsistent assignor, a fenced static member).
    /// The member has stopped; build a new consumer to try again.
    #[error("group {group}: {api} failed: {code}")]
    Group {
        /// The group.
        group: String,
        /// The request that was refused.
        api: &'static str,
        /// The coordinator's code.
        code: ErrorCode,
    },
    /// The application did not call `poll` within `max_poll_interval`
    /// (KIP-62): the member left the group, its partitions were reassigned
    /// (the `on_lost` hook ran) and nothing more is committed for them. The
    /// next `poll` rejoins.
    #[error(
        "group {group}: no poll for {after:?} (max_poll_interval); the member left the group and rejoins on the next poll"
    )]
    PollIntervalExceeded {
        /// The group.
        group: String,
        /// The `max_poll_interval` that passed.
        after: std::time::Duration,
    },
    /// The consumer was closed, or its group member stopped.
    #[error("the group consumer is closed")]
    Closed,
}

impl ConsumeError {
    /// Whether the same call may succeed if repeated: transient broker and
    /// connection failures, a refused commit (after the rejoin), a poll
    /// timeout (the next poll rejoins), and corrupt data (the next poll
    /// reports it again, so it is not retriable).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Client(e) => e.is_retriable(),
            Self::Broker { code, .. } => code.is_retriable(),
            Self::CommitFailed { .. } | Self::PollIntervalExceeded { .. } => true,
            Self::UnknownTopic(_)
            | Self::UnknownPartition { .. }
            | Self::NotAssigned { .. }
            | Self::OffsetOutOfRange { .. }
            | Self::NoOffset { .. }
            | Self::LogTruncation { .. }
            | Self::Config(_)
            | Self::Corrupt { .. }
            | Self::Protocol(_)
            | Self::InvalidGroupConfig(_)
            | Self::Group { .. }
            | Self::Closed => false,
        }
    }
}

/// Why [`GroupConfig::validate`](crate::GroupConfig::validate) refused the
/// settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupConfigError {
    /// `group_id` is empty.
    #[error("group_id is empty")]
    EmptyGroupId,
    /// No assignor is offered (classic protocol).
    #[error("no assignor is offered")]
    NoAssignors,
    /// Two assignors share a name.
    #[error("assignor {0} is offered twice")]
    DuplicateAssignor(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The heartbeat interval is not shorter than the session timeout.
    #[error(
        "heartbeat_interval ({heartbeat:?}) must be shorter than session_timeout ({session:?})"
    )]
    HeartbeatNotBelowSession {
        /// `heartbeat_interval`.
        heartbeat: std::time::Duration,
        /// `session_timeout`.
        session: std::time::Duration,
    },
    /// The revoke deadline is not shorter than the rebalance timeout, so the
    /// coordinator could evict the member while its application revokes.
    #[error("revoke_timeout ({revoke:?}) must be shorter than rebalance_timeout ({rebalance:?})")]
    RevokeNotBelowRebalance {
        /// `revoke_timeout`.
        revoke: std::time::Duration,
        /// `rebalance_timeout`.
        rebalance: std::time::Duration,
    },
    /// A duration does not fit the protocol's int32 milliseconds.
    #[error("{0} is longer than the protocol's int32 milliseconds allow")]
    TooLong(&'static str),
}

impl GroupConfigError {
    /// Always `false`: the same settings are refused again.
    pub fn is_retriable(&self) -> bool {
        false
    }
}
