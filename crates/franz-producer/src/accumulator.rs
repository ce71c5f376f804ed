//! The accumulator: per-partition open batches that records are appended
//! to, the sealed batches waiting for the sender, and the buffer memory
//! they hold.
//!
//! Sans-io like the sender: it never reads the clock (the caller passes
//! `now`) and never waits. [`Accumulator::try_append`] hands the record back
//! when the buffer has no room for it; the driver then waits for memory
//! outside the lock and appends with [`Accumulator::append_reserved`].
//!
//! Every batch gets a number in opening order. [`Accumulator::oldest_outstanding`]
//! lets `flush` wait for the batches that existed when it was called and
//! no others, so a flush under continuous load returns.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use franz_protocol::record::RecordBatchBuilder;
use tokio::sync::Semaphore;

use crate::ProducerRecord;
use crate::batch::{Batch, BatchShared, DeliveryFuture, OpenBatch};
use crate::sender::SendState;

/// One partition's queue: the batch taking records, the sealed ones
/// waiting to be sent (in batch order; retried batches go back in their
/// place), and the sender's bookkeeping for it.
#[derive(Default)]
pub(crate) struct PartitionQueue {
    pub(crate) open: Option<OpenBatch>,
    pub(crate) queued: VecDeque<Batch>,
    pub(crate) send: SendState,
}

impl PartitionQueue {
    /// Puts a batch that came back (to be retried) in its place by number:
    /// batches of one partition always go out in the order they were made.
    pub(crate) fn requeue(&mut self, batch: Batch) {
        let at = self.queued.partition_point(|b| b.number < batch.number);
        self.queued.insert(at, batch);
    }
}

/// A topic's partition queues, indexed by partition.
pub(crate) struct TopicQueues {
    pub(crate) name: Arc<str>,
    pub(crate) partitions: Vec<PartitionQueue>,
}

/// What [`Accumulator::try_append`] did with a record.
pub(crate) struct Appended {
    /// Resolves with the record's fate.
    pub(crate) future: DeliveryFuture,
    /// A batch was opened or sealed: the sender should look again.
    pub(crate) wake_sender: bool,
}

/// The per-partition batches and the buffer memory behind them.
pub(crate) struct Accumulator {
    pub(crate) topics: HashMap<Arc<str>, TopicQueues, foldhash::fast::RandomState>,
    batch_size: usize,
    memory: Arc<Semaphore>,
    next_number: u64,
    /// Numbers of the batches opened and not yet completed.
    outstanding: BTreeSet<u64>,
}

/// An upper bound of a record's encoded size in a batch.
pub(crate) fn record_size(record: &ProducerRecord) -> usize {
    let field = |b: Option<usize>| b.map_or(1, |n| n + 5);
    let mut n = 1
        + 10
        + 5
        + 5
        + 5
        + field(record.key.as_ref().map(bytes::Bytes::len))
        + field(record.value.as_ref().map(bytes::Bytes::len))
        + 5;
    for h in &record.headers {
        n += field(Some(h.key.len())) + field(h.value.as_ref().map(bytes::Bytes::len));
    }
    n
}

impl Accumulator {
    /// An empty accumulator sealing batches at `batch_size` bytes, with
    /// `memory` as the buffer (its permits are bytes).
    pub(crate) fn new(batch_size: usize, memory: Arc<Semaphore>) -> Self {
        Self {
            topics: HashMap::default(),
            batch_size,
            memory,
            next_number: 0,
            outstanding: BTreeSet::new(),
        }
    }

    /// Appends `record` (of encoded size at most `size`) to `partition`'s
    /// open batch if the buffer has room for it now; otherwise hands the
    /// record back untouched (boxed: the happy path stays small).
    pub(crate) fn try_append(
        &mut self,
        record: ProducerRecord,
        partition: i32,
        size: usize,
        timestamp: i64,
        now: impl FnOnce() -> Instant,
    ) -> Result<Appended, Box<ProducerRecord>> {
        match self
            .memory
            .try_acquire_many(u32::try_from(size).unwrap_or(u32::MAX))
        {
            Ok(p) => p.forget(),
            Err(_) => return Err(Box::new(record)),
        }
        Ok(self.append_reserved(record, partition, size, timestamp, now))
    }

    /// Appends `record` whose `size` bytes of buffer memory the caller has
    /// already taken from the semaphore.
    pub(crate) fn append_reserved(
        &mut self,
        record: ProducerRecord,
        partition: i32,
        size: usize,
        timestamp: i64,
        now: impl FnOnce() -> Instant,
    ) -> Appended {
        let batch_size = self.batch_size;
        // One hash per record; the key is a pointer clone, not a copy.
        let tq = self
            .topics
            .entry(Arc::clone(&record.topic))
            .or_insert_with(|| TopicQueues {
                name: Arc::clone(&record.topic),
                partitions: Vec::new(),
            });
        // `partition` was checked against the topic's metadata by the caller.
        let idx = usize::try_from(partition).unwrap_or(0);
        if tq.partitions.len() <= idx {
            tq.partitions.resize_with(idx + 1, PartitionQueue::default);
        }
        let q = &mut tq.partitions[idx];
        let mut wake_sender = false;
        // Seal the open batch if this record would overflow it.
        if let Some(open) = &q.open
            && !open.builder.is_empty()
            && open.builder.size() + size > batch_size
            && let Some(open) = q.open.take()
        {
            q.queued.push_back(open.seal());
            wake_sender = true;
        }
        if q.open.is_none() {
            wake_sender = true;
        }
        let open = q.open.get_or_insert_with(|| {
            let number = self.next_number;
            self.next_number += 1;
            self.outstanding.insert(number);
            OpenBatch {
                builder: RecordBatchBuilder::with_capacity(batch_size.min(size.max(1024))),
                created: now(),
                shared: Arc::new(BatchShared::new(Arc::clone(&tq.name), partition)),
                reserved: 0,
                number,
            }
        });
        let index = open.builder.record_count();
        open.builder.push(
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        open.reserved += size;
        let future = DeliveryFuture {
            shared: Arc::clone(&open.shared),
            index,
            timestamp,
        };
        if open.builder.size() >= batch_size
            && let Some(open) = q.open.take()
        {
            q.queued.push_back(open.seal());
            wake_sender = true;
        }
        Appended {
            future,
            wake_sender,
        }
    }

    /// The number the next batch will get: batches numbered below it
    /// exist now.
    pub(crate) fn next_number(&self) -> u64 {
        self.next_number
    }

    /// The number of the oldest batch not yet completed.
    pub(crate) fn oldest_outstanding(&self) -> Option<u64> {
        self.outstanding.first().copied()
    }

    /// Whether any batch is open, queued or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }

    /// A batch is done (acknowledged or failed): its memory goes back to
    /// the buffer and it no longer holds up `flush`.
    pub(crate) fn release(&mut self, batch: &Batch) {
        self.memory.add_permits(batch.reserved);
        self.outstanding.remove(&batch.number);
    }

    /// Seals every open batch and takes every queued one, for failing them
    /// all (close).
    pub(crate) fn take_all(&mut self) -> Vec<Batch> {
        let mut all = Vec::new();
        for tq in self.topics.values_mut() {
            for q in &mut tq.partitions {
                if let Some(open) = q.open.take() {
                    all.push(open.seal());
                }
                all.extend(q.queued.drain(..));
            }
        }
        all
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // virtual time starts at one real Instant
mod tests {
    use super::*;

    fn record(value: &str) -> ProducerRecord {
        ProducerRecord::new("t", value.to_string())
    }

    #[test]
    fn a_full_buffer_hands_the_record_back() {
        let memory = Arc::new(Semaphore::new(100));
        let mut acc = Accumulator::new(16 * 1024, Arc::clone(&memory));
        let t0 = Instant::now();
        let r = record("x");
        let size = record_size(&r);
        assert!(acc.try_append(r, 0, size, 0, || t0).is_ok());
        let big = record(&"y".repeat(200));
        let size = record_size(&big);
        let back = acc
            .try_append(big.clone(), 0, size, 0, || t0)
            .err()
            .expect("no room");
        assert_eq!(*back, big, "handed back untouched");
        assert_eq!(memory.available_permits(), 100 - record_size(&record("x")));
    }

    #[test]
    fn batches_seal_at_batch_size_and_are_numbered_in_order() {
        let memory = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(200, memory);
        let t0 = Instant::now();
        for i in 0..10 {
            let r = record(&format!("{i:040}"));
            let size = record_size(&r);
            acc.try_append(r, 0, size, 0, || t0).unwrap();
        }
        let q = &acc.topics["t"].partitions[0];
        assert!(q.queued.len() >= 2, "sealed at 200 bytes");
        let numbers: Vec<u64> = q.queued.iter().map(|b| b.number).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(acc.oldest_outstanding(), Some(0));
        assert_eq!(acc.next_number(), numbers.len() as u64 + 1);
    }
}
