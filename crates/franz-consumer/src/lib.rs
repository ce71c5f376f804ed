//! # franz-consumer
//!
//! The consumer and its consumer-group membership.
//!
//! Status: not written yet. It exports nothing.
