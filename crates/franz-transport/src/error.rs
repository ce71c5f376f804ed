//! The transport's typed errors.

use std::time::Duration;

use franz_consumer::ConsumeError;
use franz_producer::ProduceError;
use serde_json::Value;

use crate::nest::PayloadError;

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Sending the request, event or reply failed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// Reading requests or replies failed.
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    /// The remote handler failed; this is its error body (for NestJS,
    /// `{"status":"error","message":...}` or whatever its filter sent).
    #[error("remote handler failed: {0}")]
    Remote(Value),
    /// A payload did not fit the type asked for; the record is not lost
    /// (see the server's handling).
    #[error("payload: {0}")]
    Payload(#[from] PayloadError),
    /// The value could not be serialized.
    #[error("serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// No reply within the request timeout.
    #[error("no reply to {pattern} within {after:?}")]
    Timeout {
        /// The message pattern.
        pattern: String,
        /// The timeout.
        after: Duration,
    },
    /// This client does not read the pattern's reply topic (name it when
    /// connecting), or its group gave it no partition of it yet.
    #[error("no partition of {0} is assigned to this client: list the pattern when connecting")]
    NoReplyPartition(String),
    /// The client or server is shut down.
    #[error("the transport is closed")]
    Closed,
}
