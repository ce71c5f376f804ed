//! # franz-consumer
//!
//! The consumer: fetching, positions, offset resets and read-committed
//! filtering for explicitly assigned partitions ([`Consumer`]), and
//! consumer-group membership on top of it ([`GroupConsumer`]) under the
//! classic protocol (eager or cooperative) or KIP-848's, with async
//! rebalance hooks ([`RebalanceListener`]) that the group waits for.
//!
//! ## Main types
//! - [`Consumer`]: assign, seek (optionally with the leader epoch), poll or
//!   stream, pause/resume, lag, `offsets_for_times`, close.
//! - [`GroupConsumer`]: subscribe (a topic list or a pattern, changeable
//!   at any time), poll or stream (rebalances are applied and hooks run
//!   here), commit, close. Built with [`GroupConsumer::new`] or on an
//!   existing client with [`GroupConsumer::with_client`].
//! - [`GroupConfig`]: the group settings, checked by
//!   [`GroupConfig::validate`] ([`GroupConfigError`]).
//! - [`RebalanceListener`]: `on_assigned`, `on_revoked`, `on_lost`, async.
//! - [`OffsetMarks`]: offsets the application has processed, shared with
//!   the tasks that process; committed in the revoke step.
//! - [`member`]: the sans-io members, [`member::classic::ClassicMember`]
//!   and [`member::kip848::Kip848Member`], and their [`member::TimerTable`].
//! - [`assignor`]: the ConsumerProtocol layout and the leader's assignors:
//!   `range` and `cooperative-sticky` as Java, `RoundRobinAssigner` as
//!   KafkaJS.
//! - [`ConsumerConfig`], [`ConsumerRecord`] (key, value and headers are
//!   `Bytes` slices of the fetched buffer), [`ConsumeError`] (typed,
//!   `#[non_exhaustive]`, with `is_retriable`).
//!
//! ## How data flows
//! `poll` first hands out what earlier fetches buffered, round-robin over
//! partitions, within `max_poll_records` (Java's 500) and `max_poll_bytes`
//! of decompressed data (always at least one whole batch): batches are
//! decoded ([`fetch::PartitionDecoder`], sans-io) only as the budget admits
//! them, and the rest stays compressed, in order, for the next poll.
//! Positions move past exactly the records returned, and control batches
//! and (under read-committed) aborted transactions are skipped as they are
//! reached.
//!
//! With nothing buffered, `poll` fetches the partitions that have nothing
//! buffered and no pending error, one Fetch per broker (the leader, or a
//! preferred read replica the leader named, KIP-392, with `client_rack`
//! sent as `rack_id`), concurrently on the client's fetch connections.
//! Each answer is buffered as it arrives, never decoded there.
//!
//! - **Fetch sessions (KIP-227).** Each broker has a sans-io session
//!   (`session::FetchSession`): after a full request opens it, requests
//!   name only partitions whose fetch state changed and the ones to forget.
//!   A session error (FETCH_SESSION_ID_NOT_FOUND after a restart,
//!   INVALID_FETCH_SESSION_EPOCH), a failed request, or a request whose
//!   answer was never read (a cancelled poll) makes the next request full.
//!   A broker that gives no session id is served full fetches. `close`
//!   ends the sessions. `fetch_sessions = false` turns them off.
//! - **Errors, per partition.** A partition's error (a broker code retrying
//!   cannot fix, OFFSET_OUT_OF_RANGE without a reset policy, a truncated
//!   log, a batch that fails to decode) is held against that partition and
//!   returned by a later `poll` that has nothing to hand out before it. A
//!   broker's failure touches only that broker's partitions: a retriable
//!   one refreshes metadata and fetches again, and another is returned once
//!   nothing is left to hand out. Errors that mean stale routing refresh
//!   metadata; OFFSET_OUT_OF_RANGE resets by `auto_offset_reset` through
//!   ListOffsets, at the consumer's isolation level (a read-committed reset
//!   to latest stops at the last stable offset).
//! - **Log truncation (KIP-320), by the broker's own check.** Every fetch
//!   sends the partition's `last_fetched_epoch`: the leader epoch of the
//!   record before the position, taken from the batches handed out, from
//!   ListOffsets, or from a committed offset (commits carry it, and a group
//!   member restores it). A leader whose log parted from that history
//!   answers `diverging_epoch` with the epoch and end offset where it did,
//!   so no OffsetForLeaderEpoch round trip is needed (the other approach,
//!   Java's, validates with OffsetForLeaderEpoch on every epoch change).
//!   The position moves to the divergence point, or, with `auto_offset_reset
//!   = None`, [`ConsumeError::LogTruncation`] is held. Records buffered
//!   before the truncation are still handed out, as Java does. Metadata
//!   answering with an older leader epoch than the cached one is ignored.
//! - **Streams.** [`Consumer::stream`] and [`GroupConsumer::stream`] hand
//!   out the same records one at a time as a `futures::Stream`.
//!
//! A [`GroupConsumer`] starts its member on the first `poll`. The member is
//! a sans-io machine (`handle_response`, `handle_timeout`, `handle_app` in;
//! `poll_request`, `poll_event`, `poll_timeout` out; it never reads the
//! clock) run by one tokio driver task, which sends its requests to the
//! group coordinator, fires its timers (heartbeat, poll interval, revoke
//! deadline, backoff) and queues its events. `poll` takes those events in
//! order: it adds assigned partitions to the fetcher at their committed
//! offsets, runs the hooks, and performs revokes. Heartbeats therefore go
//! on while the application handles records, through rebalances, up to
//! `max_poll_interval` (KIP-62): a member whose application stops polling
//! leaves the group, and its next `poll` says so.
//!
//! ## Subscriptions
//! [`GroupConsumer::subscribe`] replaces the topic list and
//! [`GroupConsumer::subscribe_regex`] subscribes to a pattern, at any time.
//! A classic member rejoins with the new subscription (an eager one revokes
//! everything first). It also looks at the metadata of what it subscribes to
//! every `metadata_max_age`, and rejoins when a topic grows, is re-created
//! (a new topic id), or appears or disappears. A pattern is matched there,
//! against whole topic names (internal ones excepted), in the Rust `regex`
//! crate's dialect. A KIP-848 member sends the topics, or the pattern as
//! `SubscribedTopicRegex` (RE2J, resolved by the coordinator on its own
//! schedule), with its next heartbeat. Its coordinator notices growth by
//! itself. KIP-848 members name themselves with a random member id (KIP-1082,
//! required from ConsumerGroupHeartbeat v1) and keep it when fenced.
//! [`ConsumerConfig::from_properties`] and [`GroupConfig::from_properties`]
//! read Java's keys.
//!
//! ## Rebalance sequences
//! In every protocol a partition is released only after the application
//! has let it go: `on_revoked` returned, the offsets marked processed for
//! it were committed (never for a partition the member no longer owns),
//! and it is fetched no more. Because revokes run in `poll`, "let go" also
//! means the application came back for more records. If that takes longer
//! than `revoke_timeout` (shorter than the rebalance timeout, so the
//! coordinator does not evict the member first), the partitions are
//! released anyway, and results for them that arrive later are not
//! committed.
//!
//! - **Classic, eager** (any offered assignor is eager; the default
//!   `[range, cooperative-sticky, RoundRobinAssigner]` is, as Java's
//!   `[range, cooperative-sticky]` is): a heartbeat answers
//!   REBALANCE_IN_PROGRESS (or a commit is refused) → `on_revoked(all)` and
//!   the commit, while heartbeats continue → JoinGroup (the coordinator
//!   holds it until every member rejoins) → the leader decodes every
//!   subscription, fetches partition counts and runs the chosen assignor →
//!   SyncGroup → `on_assigned(all)`.
//! - **Classic, cooperative** (KIP-429; every assignor cooperative, e.g.
//!   `vec![Arc::new(CooperativeStickyAssignor)]`): JoinGroup at once, the
//!   subscription (ConsumerProtocol v3) carrying the owned partitions and
//!   generation → SyncGroup → `on_assigned(added)`, and `on_revoked(gone)`
//!   → follow-up JoinGroup, in which the leader may hand the revoked
//!   partitions on. Kept partitions are fetched throughout, and no hook
//!   fires for them. The cooperative-sticky leader never gives a partition
//!   to a new owner in the round its owner still reports it.
//! - **KIP-848** (`GroupProtocol::Consumer`): a heartbeat brings a new
//!   target → its topic ids are resolved → `on_revoked(gone)` and the
//!   commit; heartbeats meanwhile still report them owned → `on_assigned
//!   (added)` → the next heartbeat, sent at once, acknowledges the new set,
//!   and only then may the coordinator give the revoked partitions away.
//! - **Lost** (fenced, evicted, or `max_poll_interval` missed): `on_lost`,
//!   no commit, and the records of those partitions still being fetched are
//!   dropped.
//!
//! Which to use: groups shared with NestJS/KafkaJS members must stay
//! classic and eager with `RoundRobinAssigner` (KafkaJS knows no other);
//! cooperative-sticky and KIP-848 are for groups without KafkaJS members.
//! A Java consumer can share a group under either classic setting.
//!
//! ## Cancel safety
//! - [`GroupConsumer::poll`] and [`Consumer::poll`]: dropping the future
//!   loses and repeats nothing: fetch answers are buffered as they arrive,
//!   and positions move only when records are returned. But a rebalance
//!   step `GroupConsumer::poll` was applying is not resumed: a revoke cut
//!   short is finished only by the revoke deadline (its partitions fetched
//!   meanwhile), and an assignment cut short leaves partitions unfetched or
//!   started from `auto_offset_reset` (see [`GroupConsumer::poll`]).
//! - The streams: dropping a `next()` future (a `tokio::select!` branch
//!   that lost) loses nothing, hooks included: the work stays inside the
//!   stream and the next `next()` resumes it.
//! - [`GroupConsumer::commit_offsets`] (and `commit`, `commit_marked`):
//!   once the request is out, a dropped call may or may not have committed;
//!   committing again is harmless.
//! - [`GroupConsumer::close`]: dropped during its revoke step, the driver
//!   task it already took is detached, not stopped: the member stays in
//!   the group, heartbeating, until `max_poll_interval`. Dropped after, the
//!   driver task still leaves the group. Dropping a `GroupConsumer` (not
//!   closing it) aborts its driver task: the member stops without leaving,
//!   and the coordinator frees its partitions after the session timeout.

pub mod assignor;
mod config;
mod consumer;
mod driver;
mod error;
pub mod fetch;
pub mod group;
pub mod member;
mod session;

pub use config::{ConsumerConfig, IsolationLevel, OffsetReset};
pub use consumer::{Consumer, RecordStream};
pub use error::{ConsumeError, GroupConfigError};
pub use fetch::ConsumerRecord;
pub use franz_client::TopicPartition;
pub use group::{
    GroupConfig, GroupConsumer, GroupProtocol, HookFuture, OffsetMarks, RebalanceListener,
};
