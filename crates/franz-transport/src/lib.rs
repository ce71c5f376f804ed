//! # franz-transport
//!
//! The NestJS-compatible application transport: message patterns with
//! replies matched by correlation id, event patterns, and commits after a
//! handler succeeds.
//!
//! Status: the wire layer ([`nest`]) is written and tested against the
//! recorded NestJS behaviour; the client and server that run it over the
//! producer and the group consumer are next.
//!
//! ## Main types
//! - [`nest::NestValue`]: a payload as Nest's parser sees it (null, binary,
//!   text or JSON), with [`nest::NestValue::parse`] into any `Deserialize`.
//! - [`nest::OutgoingRecord`]: requests ([`nest::request`]), events
//!   ([`nest::event`]) and replies ([`nest::reply`]) laid out as Nest does.
//! - [`nest::ReplyTo`] / [`nest::read_reply`]: the two ends of a reply.

pub mod nest;
