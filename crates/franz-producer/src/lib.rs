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
//! ## Data flow
//! `send` → partitioner → per-partition open batch (records appended straight
//! into the batch buffer; buffer memory reserved from a semaphore) → sealed
//! when full or after `linger` → the sender task groups ready batches by
//! leader into one Produce request per broker (at most
//! `max_in_flight_requests_per_connection` per connection, and one batch in
//! flight per partition) → the response completes each batch's records, or
//! puts the batch back at the front of its queue to retry with the same
//! sequence.
//!
//! ## When can a batch fail?
//! - a non-retriable broker error for its partition (e.g. MESSAGE_TOO_LARGE);
//! - `delivery_timeout` passed before it was acknowledged (a batch that was
//!   sent and then given up on makes the producer bump its epoch, since the
//!   broker may or may not have it);
//! - the producer was closed with the batch still buffered.
//!
//! Never silently: every record's future gets the batch's typed error.
//!
//! ## Idempotence
//! On by default when `acks=all` (Java's rule; asking for it with other acks
//! is a configuration error). The producer gets an id from InitProducerId,
//! numbers each partition's records, and resends a batch with the same
//! bytes and sequence, so the broker writes it once however many times the
//! response is lost or unreadable: a sequence whose fate is unknown is never
//! given to another batch. OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID
//! and an abandoned in-flight batch bump the epoch on the client (KIP-360:
//! same producer id, epoch + 1, a new id only when the epoch would
//! overflow) and re-sequence what is still unacknowledged from 0.

mod accumulator;
mod batch;
mod config;
mod error;
mod partitioner;
mod producer;
mod sender;
pub mod sequence;

pub use batch::{DeliveryFuture, RecordMetadata};
pub use config::{Acks, PartitionerKind, ProducerConfig};
pub use error::{ProduceError, TrySendError};
pub use partitioner::{
    DefaultPartitioner, Partitioner, RoundRobinPartitioner, murmur2, partition_for_key,
};
pub use producer::{Producer, ProducerRecord};
