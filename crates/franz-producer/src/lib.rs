//! # franz-producer
//!
//! The idempotent, batching producer.
//!
//! Status: not written yet (issue #5). It exports nothing.
