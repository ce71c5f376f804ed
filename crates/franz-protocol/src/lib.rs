//! # franz-protocol
//!
//! The Kafka wire-protocol codec. It performs no I/O and reads no clock.
//!
//! ## Main types
//! - [`primitives::Reader`] decodes protocol primitives from a
//!   [`bytes::Bytes`] buffer without copying byte arrays, checking every
//!   length against the bytes that remain and [`primitives::DecodeLimits`].
//! - [`primitives::Writer`] appends primitives to a [`bytes::BytesMut`].
//! - [`DecodeError`] / [`EncodeError`] are the typed failures; a decoder never
//!   panics on hostile input.
//!
//! ## Status
//! Work in progress (issue #3): primitives and errors are here; generated
//! messages, record batches, compression and error codes are being added.

pub mod compression;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod messages;
pub mod primitives;
pub mod record;
#[cfg(any(test, feature = "sample"))]
pub mod sample;

#[cfg(test)]
mod roundtrip_tests;

pub use error::{DecodeError, EncodeError};
pub use error_code::ErrorCode;
pub use messages::{ApiKey, Message, Request};
pub use primitives::Uuid;
