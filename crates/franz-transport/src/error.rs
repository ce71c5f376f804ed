//! The transport's typed errors.

use std::time::Duration;

use franz_client::ClientError;
use franz_consumer::ConsumeError;
use franz_producer::ProduceError;
use serde_json::Value;

use crate::codec::CodecError;
use crate::nest::PayloadError;

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Sending the request, event or reply failed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// Reading requests or replies failed.
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    /// The remote handler failed.
    #[error("remote handler failed: {0}")]
    Remote(RemoteError),
    /// A payload did not fit the type asked for.
    #[error("payload: {0}")]
    Payload(#[from] PayloadError),
    /// A value did not encode with the codec.
    #[error("encode: {0}")]
    Encode(#[from] CodecError),
    /// A reply did not decode as the type asked for.
    #[error("reply to {pattern} does not decode: {source}")]
    Reply {
        /// The message pattern.
        pattern: String,
        /// The codec's error.
        source: CodecError,
    },
    /// No reply within the request timeout (which counts from the start
    /// of `send`, the produce included).
    #[error("no reply to {pattern} within {after:?}")]
    Timeout {
        /// The message pattern (or what timed out).
        pattern: String,
        /// The timeout.
        after: Duration,
    },
    /// This client does not read the pattern's reply topic (name it when
    /// connecting, or add it), or its group gave it no partition of it.
    #[error("no partition of {0} is assigned to this client: list the pattern when connecting")]
    NoReplyPartition(String),
    /// The reply topic has fewer partitions than the reply group has
    /// instances, so this instance got none (as with NestJS, each instance
    /// needs its own).
    #[error(
        "{topic} has {partitions} partitions for {instances} client instances: add partitions so each instance has one"
    )]
    TooFewReplyPartitions {
        /// The reply topic.
        topic: String,
        /// Its partitions.
        partitions: usize,
        /// Members of the reply group.
        instances: usize,
    },
    /// The reply partition this request named moved to another instance
    /// in a rebalance; its reply would land where nobody waits for it.
    #[error("reply partition {topic}/{partition} moved to another instance")]
    ReplyPartitionMoved {
        /// The reply topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// Creating a topic the transport was asked to provision failed (an
    /// existing topic is not a failure).
    #[error("provisioning topic {topic:?}: {source}")]
    Provision {
        /// The topic (empty when the request as a whole failed).
        topic: String,
        /// The broker's or the connection's error.
        source: ClientError,
    },
    /// The client or server is shut down.
    #[error("the transport is closed")]
    Closed,
}

impl TransportError {
    /// Whether the same call may succeed if repeated.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Produce(e) => e.is_retriable(),
            Self::Consume(e) => e.is_retriable(),
            Self::Timeout { .. } | Self::ReplyPartitionMoved { .. } => true,
            Self::Provision { source, .. } => source.is_retriable(),
            Self::Remote(_)
            | Self::Payload(_)
            | Self::Encode(_)
            | Self::Reply { .. }
            | Self::NoReplyPartition(_)
            | Self::TooFewReplyPartitions { .. }
            | Self::Closed => false,
        }
    }
}

/// A remote handler's error: NestJS's `{"status": "error", "message": ..}`
/// read into fields, with the body as it came (a custom exception filter
/// may send anything, a raw string included).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteError {
    /// `status`, when the body is an object that has it.
    pub status: Option<String>,
    /// `message`, when the body is an object that has it, or the body when
    /// it is a string.
    pub message: Option<String>,
    /// The body.
    pub raw: Value,
}

impl RemoteError {
    /// Reads a body.
    pub fn from_body(raw: Value) -> Self {
        let field = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let message = field("message").or_else(|| raw.as_str().map(str::to_string));
        Self {
            status: field("status"),
            message,
            raw,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "{}", self.raw),
        }
    }
}

/// A record the producer would not queue: the transport built it from the
/// caller's message, so the reason is what the caller needs.
impl From<Box<franz_producer::SendError>> for TransportError {
    fn from(e: Box<franz_producer::SendError>) -> Self {
        Self::Produce(e.error)
    }
}
