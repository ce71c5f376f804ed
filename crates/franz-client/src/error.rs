//! The client's error type, grouped by cause.

use std::sync::Arc;
use std::time::Duration;

use franz_protocol::{DecodeError, EncodeError, ErrorCode};

/// Why a client operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting to, reading from or writing to a broker failed.
    #[error("{broker}: {context}: {message}")]
    Io {
        /// `host:port` (and node id when known).
        broker: String,
        /// What the client was doing.
        context: &'static str,
        /// The I/O error's text.
        message: String,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// No answer within the deadline.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The connection was closed (or failed) while the request was pending;
    /// every request waiting on it gets this at once.
    #[error("connection to {broker} closed: {reason}")]
    ConnectionClosed {
        /// The broker.
        broker: String,
        /// Why.
        reason: Arc<str>,
    },
    /// A response did not answer the oldest request on its connection
    /// (Kafka answers in order): the connection was closed at once, and
    /// every request waiting on it failed with this. Retriable on a new
    /// connection.
    #[error(
        "{broker} answered correlation id {got:?} where {expected:?} was due; connection closed"
    )]
    CorrelationMismatch {
        /// The broker.
        broker: String,
        /// The id of the oldest request still unanswered (none if no
        /// request was outstanding).
        expected: Option<i32>,
        /// The id in the response (none if the frame was too short to hold one).
        got: Option<i32>,
    },
    /// The broker's bytes could not be decoded.
    #[error("malformed response from {broker}: {source}")]
    Decode {
        /// The broker.
        broker: String,
        /// The decode error (it names the API, version and field).
        #[source]
        source: DecodeError,
    },
    /// A request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The broker answered with an error code.
    #[error("{context}: {code}")]
    Broker {
        /// Where the code came from (API, topic, partition...).
        context: String,
        /// The code.
        code: ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// A group coordinator refused a group request: `api` names the request
    /// (JoinGroup, OffsetCommit, DescribeGroups...), `code` the reason.
    #[error("group {group}: {api} failed: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Group {
        /// The group.
        group: String,
        /// The request that was refused.
        api: &'static str,
        /// The coordinator's code.
        code: ErrorCode,
        /// The coordinator's message, if any.
        message: Option<String>,
    },
    /// The broker's response leaves out an item the request asked about
    /// (a topic, partition, group or resource): a broker bug, not retried.
    #[error("the broker's response lacks {what}")]
    MissingFromResponse {
        /// The item that is missing.
        what: String,
    },
    /// Client and broker share no version of an API.
    #[error(
        "no common version of {api} with {broker}: client speaks {client_min}-{client_max}, broker {broker_min}-{broker_max}"
    )]
    NoCommonVersion {
        /// The API.
        api: &'static str,
        /// The broker.
        broker: String,
        /// Client range.
        client_min: i16,
        /// Client range.
        client_max: i16,
        /// Broker range (-1 when the broker does not list the API).
        broker_min: i16,
        /// Broker range.
        broker_max: i16,
    },
    /// SASL authentication failed; never silently retried in plaintext.
    #[error("authentication with {broker} failed: {reason}")]
    Authentication {
        /// The broker.
        broker: String,
        /// Why, by cause.
        #[source]
        reason: crate::SaslError,
    },
    /// TLS failed (handshake, certificate, configuration).
    #[error("TLS with {broker}: {message}")]
    Tls {
        /// The broker.
        broker: String,
        /// What went wrong.
        message: String,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No bootstrap server could be reached when the client started, or
    /// every broker failed for a reason retrying will not fix (TLS, auth).
    #[error("no bootstrap server answered: {0}")]
    NoBootstrap(String),
    /// No broker answered just now, each for a transient reason (refused,
    /// reset, timed out): a cluster that is down or restarting. Retriable.
    #[error("no broker reachable: {0}")]
    NoBrokerReachable(String),
    /// The topic does not exist (after metadata was refreshed).
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// A broker the client was routed to (a leader or coordinator it
    /// cached) is no longer in the cluster metadata: it died or left.
    /// Retriable: the routing is refreshed and the new owner found.
    #[error("broker {0} is not in the cluster metadata (down or removed)")]
    UnknownBroker(i32),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// Whether retrying (after a metadata refresh or backoff) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            // An unknown topic may be one just created whose metadata has
            // not reached every broker yet (Kafka marks
            // UNKNOWN_TOPIC_OR_PARTITION retriable too); callers retry
            // within their deadline and then report it.
            Self::Io { .. }
            | Self::Timeout { .. }
            | Self::ConnectionClosed { .. }
            | Self::CorrelationMismatch { .. }
            | Self::UnknownTopic(_)
            | Self::UnknownBroker(_)
            | Self::NoBrokerReachable(_) => true,
            Self::Broker { code, .. } | Self::Group { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// The broker error code, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker { code, .. } | Self::Group { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether the routing (leader or coordinator) may be stale, so metadata
    /// should be refreshed before retrying.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Self::Io { .. }
            | Self::ConnectionClosed { .. }
            | Self::CorrelationMismatch { .. }
            | Self::UnknownTopic(_)
            | Self::UnknownBroker(_) => true,
            Self::Broker { code, .. } | Self::Group { code, .. } => {
                code_invalidates_metadata(*code)
            }
            _ => false,
        }
    }

    pub(crate) fn io(broker: &str, context: &'static str, e: &std::io::Error) -> Self {
        Self::Io {
            broker: broker.to_string(),
            context,
            message: e.to_string(),
            kind: e.kind(),
        }
    }

    /// A broker error from a code, or `Ok` for `NONE`. `context` runs only
    /// on an error, so the common path formats nothing.
    pub fn check(
        code: i16,
        context: impl FnOnce() -> String,
        message: Option<String>,
    ) -> Result<(), Self> {
        Self::unless_none(code, |code| Self::Broker {
            context: context(),
            code,
            message,
        })
    }

    /// A group error from a coordinator's code, or `Ok` for `NONE`.
    pub fn check_group(
        code: i16,
        group: &str,
        api: &'static str,
        message: Option<String>,
    ) -> Result<(), Self> {
        Self::unless_none(code, |code| Self::Group {
            group: group.to_string(),
            api,
            code,
            message,
        })
    }

    fn unless_none(code: i16, error: impl FnOnce(ErrorCode) -> Self) -> Result<(), Self> {
        let code = ErrorCode::from_code(code);
        if code.is_ok() {
            Ok(())
        } else {
            Err(error(code))
        }
    }

    /// The response lacks `what`.
    pub(crate) fn missing(what: impl std::fmt::Display) -> Self {
        Self::MissingFromResponse {
            what: what.to_string(),
        }
    }
}

/// Whether a broker error code means the client's routing (leader or
/// coordinator) may be stale, so metadata should be refreshed before retrying.
pub fn code_invalidates_metadata(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::UnknownTopicId
            | ErrorCode::InconsistentTopicId
            | ErrorCode::KafkaStorageError
            | ErrorCode::ReplicaNotAvailable
            | ErrorCode::NotController
    )
}
