//! # franz-protocol
//!
//! The Kafka wire-protocol codec: request and response messages generated from
//! `protocol-specs/`, record batches decoded over `bytes::Bytes`, compression,
//! and Kafka error codes. It performs no I/O and reads no clock.
//!
//! Status: not written yet. Issue #3 fills this crate; until then it exports
//! nothing, so that nothing can depend on a codec that does not exist.
