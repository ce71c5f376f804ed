//! Batches and the futures their records resolve through.
//!
//! A record appended to an [`OpenBatch`] gets a [`DeliveryFuture`] that
//! shares the batch's [`BatchShared`]: one allocation per batch, not per
//! record. Sealing turns the open batch into a [`Batch`], which the sender
//! numbers, encodes, sends, retries and finally completes; completing wakes
//! every record's future at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use franz_protocol::record::RecordBatchBuilder;

use crate::error::ProduceError;

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
    /// Timestamp (the broker's under LogAppendTime).
    pub timestamp: i64,
}

/// The broker's acknowledgement of a whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record (-1 with acks=0).
    pub(crate) base_offset: i64,
    /// The broker's timestamp under LogAppendTime, else -1.
    pub(crate) log_append_time: i64,
}

impl BatchAck {
    /// What acks=0 knows: nothing about offsets.
    pub(crate) const UNACKNOWLEDGED: Self = Self {
        base_offset: -1,
        log_append_time: -1,
    };
}

/// One batch's outcome, shared by every record in it.
pub(crate) struct BatchShared {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    result: OnceLock<Result<BatchAck, ProduceError>>,
    waiters: Mutex<Vec<Waker>>,
}

impl BatchShared {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Self {
        Self {
            topic,
            partition,
            result: OnceLock::new(),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Sets the outcome (the first one wins) and wakes every record's future.
    pub(crate) fn complete(&self, r: Result<BatchAck, ProduceError>) {
        if self.result.set(r).is_ok() {
            let waiters =
                std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
            for w in waiters {
                w.wake();
            }
        }
    }

    /// The outcome, once set.
    pub(crate) fn result(&self) -> Option<&Result<BatchAck, ProduceError>> {
        self.result.get()
    }
}

/// Resolves when the record is acknowledged (or fails).
///
/// # Cancel safety
/// Polling it does no I/O. Dropping it does not cancel the record: it stays
/// queued and is still delivered (and retried); only the acknowledgement is
/// lost.
#[must_use = "a record's delivery is only known by awaiting its future"]
pub struct DeliveryFuture {
    pub(crate) shared: Arc<BatchShared>,
    pub(crate) index: i32,
    pub(crate) timestamp: i64,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("topic", &self.shared.topic)
            .field("partition", &self.shared.partition)
            .field("done", &self.shared.result().is_some())
            .finish()
    }
}

impl DeliveryFuture {
    fn output(&self, r: &Result<BatchAck, ProduceError>) -> Result<RecordMetadata, ProduceError> {
        match r {
            Ok(ack) => Ok(RecordMetadata {
                topic: Arc::clone(&self.shared.topic),
                partition: self.shared.partition,
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i64::from(self.index)
                },
                timestamp: if ack.log_append_time >= 0 {
                    ack.log_append_time
                } else {
                    self.timestamp
                },
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.shared.result() {
            return Poll::Ready(self.output(r));
        }
        {
            let mut w = self
                .shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        }
        // Completed between the first check and registering.
        match self.shared.result() {
            Some(r) => Poll::Ready(self.output(r)),
            None => Poll::Pending,
        }
    }
}

/// A partition's batch still taking records.
pub(crate) struct OpenBatch {
    pub(crate) builder: RecordBatchBuilder,
    pub(crate) created: Instant,
    pub(crate) shared: Arc<BatchShared>,
    /// Buffer memory held by its records, returned on completion.
    pub(crate) reserved: usize,
    /// Its place in the producer's order of batches (flush waits by it).
    pub(crate) number: u64,
}

/// A sealed batch: numbered and encoded on its first send, then resent
/// byte for byte until it is acknowledged, re-sequenced only after a bump.
pub(crate) struct Batch {
    /// The records, until the first send encodes them.
    pub(crate) builder: Option<RecordBatchBuilder>,
    /// The encoded batch (producer fields included), from the first send on.
    pub(crate) payload: Option<Bytes>,
    pub(crate) records: i32,
    pub(crate) created: Instant,
    pub(crate) shared: Arc<BatchShared>,
    pub(crate) reserved: usize,
    pub(crate) number: u64,
    /// Whether a request carrying it was handed to the network: from then
    /// on its fate is unknown until the broker answers for it.
    pub(crate) sent_once: bool,
    /// The producer id, epoch and base sequence its payload carries (-1
    /// before the first send, and always for non-idempotent producers).
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) base_sequence: i32,
    /// The last reason it came back unacknowledged.
    pub(crate) last_error: Option<ProduceError>,
}

impl OpenBatch {
    /// Seals it: no more records join.
    pub(crate) fn seal(self) -> Batch {
        Batch {
            records: self.builder.record_count(),
            builder: Some(self.builder),
            payload: None,
            created: self.created,
            shared: self.shared,
            reserved: self.reserved,
            number: self.number,
            sent_once: false,
            producer_id: -1,
            epoch: -1,
            base_sequence: -1,
            last_error: None,
        }
    }
}

impl Batch {
    /// Bytes on the wire (or an estimate before encoding).
    pub(crate) fn size(&self) -> usize {
        self.builder.as_ref().map_or_else(
            || self.payload.as_ref().map_or(0, Bytes::len),
            RecordBatchBuilder::size,
        )
    }
}
