//! # franz-consumer
//!
//! The consumer: fetching, positions, offset resets and read-committed
//! filtering for explicitly assigned partitions ([`Consumer`]), and
//! consumer-group membership on top of it ([`GroupConsumer`]): the classic
//! protocol, or KIP-848's (`GroupProtocol::Consumer`, driven by the sans-io
//! [`kip848::Kip848Member`]).
//!
//! ## Main types
//! - [`Consumer`]: assign, seek, poll.
//! - [`GroupConsumer`]: subscribe, poll (joins and rejoins), commit, close.
//!   Eager rebalancing; the leader runs an [`assignor::Assignor`]
//!   (`range` as Java, `RoundRobinAssigner` as KafkaJS, so franz members
//!   can share groups with NestJS servers).
//! - [`ConsumerConfig`]: the Java consumer's settings in snake_case.
//! - [`ConsumerRecord`]: one record; key, value and headers are `Bytes`
//!   slices of the fetched buffer.
//! - [`ConsumeError`]: typed failures (unknown topic, out of range with no
//!   reset policy, corrupt data, broker codes).
//!
//! ## How data flows
//! `poll` → group assigned partitions by the broker to fetch from (the leader,
//! or a preferred read replica the leader named, KIP-392, with `client_rack`
//! sent as the Fetch's `rack_id`) → one sessionless Fetch per broker, sent
//! concurrently on the client's fetch connections → [`fetch::decode_partition`]
//! (sans-io) turns each partition's bytes into records, skips control batches
//! and, under read-committed, aborted transactions → positions advance past
//! every batch consumed. Errors that mean stale routing refresh metadata and
//! retry; OFFSET_OUT_OF_RANGE resets the position by `auto_offset_reset`
//! through ListOffsets; a batch that fails to decode stops that partition at
//! the batch and is reported on the next `poll`, after the records before it.
//!
//! A [`GroupConsumer`] joins on its first `poll` (JoinGroup; the leader
//! decodes every subscription and assigns; SyncGroup), assigns the fetcher,
//! seeks to the group's committed offsets, and heartbeats from a task. A
//! heartbeat that reports a rebalance makes the next `poll` rejoin. Commits
//! carry the generation, so a commit after a rebalance is refused, never
//! silently applied to partitions the member no longer owns.

pub mod assignor;
mod config;
mod consumer;
mod driver;
mod error;
pub mod fetch;
pub mod group;
pub mod member;

pub use config::{ConsumerConfig, IsolationLevel, OffsetReset};
pub use consumer::Consumer;
pub use error::{ConsumeError, GroupConfigError};
pub use fetch::ConsumerRecord;
pub use franz_client::admin::TopicPartition;
pub use group::{
    GroupConfig, GroupConsumer, GroupProtocol, HookFuture, OffsetMarks, RebalanceListener,
};
