//! # franz-producer
//!
//! An idempotent, batching Kafka producer.
//!
//! ## Main types
//! - [`Producer`]: [`Producer::send`] queues a [`ProducerRecord`] (waiting
//!   while the buffer is full, up to `max_block`) and returns a
//!   [`DeliveryFuture`] that resolves to [`RecordMetadata`] once the broker
//!   acknowledges it; [`Producer::try_send`] fails fast instead;
//!   [`Producer::flush`] and [`Producer::close`] drain.
//! - [`ProducerConfig`]: the Java producer's settings in snake_case
//!   (`linger`, `batch_size`, `buffer_memory`, `acks`, `compression_type`,
//!   `enable_idempotence`, `max_in_flight_requests_per_connection`,
//!   `delivery_timeout`, ...), also from a Java properties map.
//! - [`Partitioner`]: [`DefaultPartitioner`] (murmur2 for keys as Java,
//!   KafkaJS and NestJS do; uniform sticky for null keys) and
//!   [`RoundRobinPartitioner`] (KafkaJS's null-key rotation).
//! - [`sequence::SequenceState`]: the sans-io sequence and epoch logic.
//!
//! ## Layers
//! - `accumulator`: per-partition open batches that `send` appends to (the
//!   append hands the record back when the buffer has no room), sealed
//!   batches waiting to go, and the buffer memory. Sans-io.
//! - `sender`: the scheduler, sans-io: `plan(leaders, now)` returns the
//!   produce requests to write, the batches that are done and when to look
//!   again; `on_produce_result(.., now)` takes each request's outcome. Its
//!   module doc holds the invariants (ordering, when a batch may fail, what
//!   an epoch bump rewrites), and its tests run it on virtual time against a
//!   model of Kafka's idempotent log.
//! - [`sequence::SequenceState`]: producer id, epoch and per-partition
//!   sequence numbers.
//! - the driver (`producer`): [`Producer`] and one tokio task that reads the
//!   clock, runs the plan, writes the requests and hands back their outcomes.
//!
//! ## Data flow
//! `send` → partitioner → the partition's open batch (records appended
//! straight into the batch buffer; buffer memory reserved) → sealed when
//! full, or after `linger` once the partition can send → the sender groups
//! ready batches by leader into Produce requests, one batch per partition
//! per request, at most `max_in_flight_requests_per_connection` requests
//! per connection and as many batches in flight per partition (5, as Java)
//! → each answer completes its batches' records, or puts a batch back in
//! its place to be resent with the same sequence.
//!
//! ## When can a batch fail?
//! - the broker refuses its partition with a non-retriable error code
//!   (e.g. MESSAGE_TOO_LARGE): nothing was written;
//! - `delivery_timeout` passed while it was not in flight
//!   ([`ProduceError::DeliveryTimeout`] says whether it was ever sent: then
//!   it may be in the log);
//! - the producer was fenced, or closed with the batch buffered
//!   ([`ProduceError::Closed`]) or in flight ([`ProduceError::ClosedInFlight`]).
//!
//! Never silently: every record's future gets the batch's typed error.
//!
//! ## Idempotence
//! On by default when `acks=all` (Java's rule; asking for it with other acks
//! is a configuration error). The producer gets an id from InitProducerId,
//! numbers each partition's records, and resends a batch with the same
//! bytes and sequence, so the broker writes it once however many times the
//! response is lost or unreadable: a sequence whose fate is unknown is never
//! given to another batch (the design chosen: keep resending the same id,
//! epoch and sequence, which the broker deduplicates over its last five
//! batches). A genuine OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID, or
//! a batch given up on after it was sent bump the epoch on the client
//! (KIP-360: same producer id, epoch + 1, a new id only when the epoch would
//! overflow), after every batch of unknown fate is resolved; what is still
//! unacknowledged is then re-sequenced from 0 in its original order.
//!
//! ## Cancel safety
//! Dropping `send` before it returns queues nothing. A [`DeliveryFuture`]
//! may be dropped: the record is still delivered. Dropping `flush` or
//! `close` stops the waiting only. Dropping the last [`Producer`] clone
//! without `close` delivers what was queued, then ends the sender task.

mod accumulator;
mod batch;
mod clock;
mod config;
mod error;
mod partitioner;
mod producer;
mod sender;
pub mod sequence;
mod transaction;

pub use batch::{DeliveryFuture, RecordMetadata};
pub use config::{Acks, PartitionerKind, ProducerConfig};
pub use error::{ProduceError, SendError};
pub use partitioner::{
    DefaultPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};
pub use producer::{Producer, ProducerRecord};
