//! # franz-transport
//!
//! The NestJS-compatible application transport: message patterns with replies
//! matched by correlation id, event patterns, and commits after success.
//!
//! Status: not written yet. It exports nothing.
