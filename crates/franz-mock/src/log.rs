//! One partition's log: record batches stored as the producer sent them,
//! with the broker's offsets and leader epoch patched into their headers,
//! plus the producer state a broker keeps for idempotence and the open and
//! aborted transactions that read_committed fetches need.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use franz_protocol::ErrorCode;
use franz_protocol::record::{
    BatchDecodeOptions, BatchMeta, RecordBatch, RecordBatchBuilder, wrap_sequence,
};

/// How many batches per producer a broker remembers to answer a resend
/// (Kafka keeps the last five, matching `max.in.flight.requests`).
const REMEMBERED_BATCHES: usize = 5;

/// A batch in the log.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) bytes: Bytes,
}

/// A transaction aborted on this partition: what read_committed readers skip.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AbortedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    last_sequence: i32,
    /// `(first sequence, last sequence, base offset)` of recent batches.
    recent: VecDeque<(i32, i32, i64)>,
}

/// The outcome of appending one produce request's records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Appended {
    pub(crate) base_offset: i64,
}

/// A partition's log.
#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    batches: Vec<StoredBatch>,
    log_start: i64,
    next_offset: i64,
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id → offset of its first batch here.
    ongoing: BTreeMap<i64, i64>,
    aborted: Vec<AbortedTxn>,
}

impl PartitionLog {
    /// The log end offset, which is also the high watermark: every replica
    /// of the mock is always in sync.
    pub(crate) fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    /// The first offset still held.
    pub(crate) fn log_start(&self) -> i64 {
        self.log_start
    }

    /// The last stable offset: the first offset of the oldest open
    /// transaction, else the high watermark.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }

    /// Validates and appends the batches of one produce request.
    ///
    /// `txn_allowed(producer_id, epoch)` says whether a transactional batch
    /// may be written (the partition joined that producer's transaction).
    pub(crate) fn append(
        &mut self,
        mut data: Bytes,
        leader_epoch: i32,
        max_message_bytes: usize,
        txn_allowed: &dyn Fn(i64, i16) -> Result<(), ErrorCode>,
    ) -> Result<Appended, ErrorCode> {
        let opts = BatchDecodeOptions::default();
        let mut decoded = Vec::new();
        while !data.is_empty() {
            let batch =
                RecordBatch::decode(&mut data, &opts).map_err(|_| ErrorCode::CorruptMessage)?;
            if batch.record_count <= 0
                || batch.last_offset_delta < 0
                || batch.attributes.is_control()
            {
                return Err(ErrorCode::InvalidRecord);
            }
            if batch.raw().len() > max_message_bytes {
                return Err(ErrorCode::MessageTooLarge);
            }
            decoded.push(batch);
        }
        if decoded.is_empty() {
            return Err(ErrorCode::CorruptMessage);
        }
        let idempotent = decoded.iter().any(|b| b.producer_id >= 0);
        if idempotent && decoded.len() != 1 {
            // Kafka: an idempotent producer sends exactly one batch per partition.
            return Err(ErrorCode::InvalidRecord);
        }
        let mut first_base = None;
        for batch in decoded {
            if batch.producer_id >= 0 {
                if batch.attributes.is_transactional() {
                    txn_allowed(batch.producer_id, batch.producer_epoch)?;
                }
                if let Some(offset) = self.check_sequence(&batch)? {
                    // A resend of a batch already written: its original offset.
                    return Ok(Appended {
                        base_offset: offset,
                    });
                }
            }
            let base = self.next_offset;
            let last = base + i64::from(batch.last_offset_delta);
            let bytes = restamp(batch.raw(), base, leader_epoch);
            if batch.producer_id >= 0 {
                let entry = self
                    .producers
                    .entry(batch.producer_id)
                    .or_insert(ProducerEntry {
                        epoch: batch.producer_epoch,
                        last_sequence: -1,
                        recent: VecDeque::new(),
                    });
                if entry.epoch != batch.producer_epoch {
                    // A new epoch starts a new sequence space: what the old
                    // one remembered must not answer for the new one's batches.
                    entry.recent.clear();
                    entry.epoch = batch.producer_epoch;
                }
                let last_seq = wrap_sequence(batch.base_sequence, batch.last_offset_delta);
                entry.last_sequence = last_seq;
                entry
                    .recent
                    .push_back((batch.base_sequence, last_seq, base));
                while entry.recent.len() > REMEMBERED_BATCHES {
                    entry.recent.pop_front();
                }
                if batch.attributes.is_transactional()
                    && !self.ongoing.contains_key(&batch.producer_id)
                {
                    self.ongoing.insert(batch.producer_id, base);
                }
            }
            self.batches.push(StoredBatch {
                base_offset: base,
                last_offset: last,
                max_timestamp: batch.max_timestamp,
                bytes,
            });
            self.next_offset = last + 1;
            first_base.get_or_insert(base);
        }
        Ok(Appended {
            base_offset: first_base.unwrap_or(self.next_offset),
        })
    }

    /// Kafka's sequence rules. `Ok(Some(offset))` is a duplicate of a
    /// remembered batch; `Ok(None)` means write it.
    fn check_sequence(&self, batch: &RecordBatch) -> Result<Option<i64>, ErrorCode> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Kafka 4 accepts any sequence from a producer it holds no state for.
            return Ok(None);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if batch.producer_epoch > entry.epoch {
            return if batch.base_sequence == 0 {
                Ok(None)
            } else {
                Err(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        let last = wrap_sequence(batch.base_sequence, batch.last_offset_delta);
        if let Some(&(_, _, offset)) = entry
            .recent
            .iter()
            .find(|(first, end, _)| *first == batch.base_sequence && *end == last)
        {
            return Ok(Some(offset));
        }
        if batch.base_sequence != wrap_sequence(entry.last_sequence, 1) {
            return Err(ErrorCode::OutOfOrderSequenceNumber);
        }
        Ok(None)
    }

    /// Writes a transaction marker for `producer_id` and closes its
    /// transaction here. Returns whether the partition had one open.
    pub(crate) fn write_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> bool {
        let Some(first_offset) = self.ongoing.remove(&producer_id) else {
            return false;
        };
        let base = self.next_offset;
        let mut key = BytesMut::new();
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&i16::from(commit).to_be_bytes());
        let mut value = BytesMut::new();
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&0i32.to_be_bytes());
        let mut builder = RecordBatchBuilder::new();
        builder.push(now_ms, Some(&key), Some(&value), &[]);
        let meta = BatchMeta {
            base_offset: base,
            partition_leader_epoch: leader_epoch,
            transactional: true,
            control: true,
            producer_id,
            producer_epoch: epoch,
            ..BatchMeta::default()
        };
        let Ok(bytes) = builder.finish(&meta) else {
            return true;
        };
        self.batches.push(StoredBatch {
            base_offset: base,
            last_offset: base,
            max_timestamp: now_ms,
            bytes,
        });
        self.next_offset = base + 1;
        if !commit {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: base,
            });
        }
        true
    }

    /// Batches from `offset` on, below `limit` (the high watermark or the
    /// last stable offset), up to `max_bytes` but always at least one.
    pub(crate) fn read(&self, offset: i64, limit: i64, max_bytes: usize) -> (Bytes, i64) {
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = BytesMut::new();
        let mut last = offset;
        for batch in &self.batches[start..] {
            if batch.base_offset >= limit {
                break;
            }
            // A batch that straddles the limit is an open transaction's: held back.
            if batch.last_offset >= limit {
                break;
            }
            if !out.is_empty() && out.len() + batch.bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&batch.bytes);
            last = batch.last_offset;
        }
        (out.freeze(), last)
    }

    /// Aborted transactions that overlap `[from, to]`.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset <= to)
            .copied()
            .collect()
    }

    /// The offset of the first record with a timestamp at or after `ts`,
    /// with that timestamp, or `None` past the end.
    pub(crate) fn offset_for_timestamp(&self, ts: i64) -> Option<(i64, i64)> {
        let opts = BatchDecodeOptions::default();
        for batch in self.batches.iter().filter(|b| b.max_timestamp >= ts) {
            let mut raw = batch.bytes.clone();
            let Ok(decoded) = RecordBatch::decode(&mut raw, &opts) else {
                continue;
            };
            if decoded.attributes.is_control() {
                continue;
            }
            let Ok(records) = decoded.records(&opts.limits) else {
                continue;
            };
            for record in records.iter().flatten() {
                if record.timestamp >= ts {
                    return Some((record.offset, record.timestamp));
                }
            }
        }
        None
    }

    /// The largest timestamp in the log, with the offset of its batch.
    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.batches
            .iter()
            .max_by_key(|b| b.max_timestamp)
            .map(|b| (b.last_offset, b.max_timestamp))
    }

    /// Every stored batch (for tests and inspection).
    pub(crate) fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }
}

/// The batch's bytes with the broker's base offset and leader epoch. Neither
/// field is covered by the CRC, which starts at the attributes.
fn restamp(raw: &Bytes, base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut out = BytesMut::from(&raw[..]);
    out[0..8].copy_from_slice(&base_offset.to_be_bytes());
    out[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize, txn: bool) -> Bytes {
        let mut b = RecordBatchBuilder::new();
        for i in 0..n {
            b.push(
                1_700_000_000_000,
                None,
                Some(format!("v{i}").as_bytes()),
                &[],
            );
        }
        b.finish(&BatchMeta {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: txn,
            ..BatchMeta::default()
        })
        .unwrap()
    }

    fn append(log: &mut PartitionLog, data: Bytes) -> Result<i64, ErrorCode> {
        log.append(data, 0, 1 << 20, &|_, _| Ok(()))
            .map(|a| a.base_offset)
    }

    #[test]
    fn a_resend_gets_its_first_offset_and_writes_nothing() {
        let mut log = PartitionLog::default();
        assert_eq!(append(&mut log, batch(7, 0, 0, 10, false)), Ok(0));
        assert_eq!(append(&mut log, batch(7, 0, 10, 10, false)), Ok(10));
        assert_eq!(append(&mut log, batch(7, 0, 10, 10, false)), Ok(10));
        assert_eq!(log.high_watermark(), 20);
        assert_eq!(
            append(&mut log, batch(7, 0, 30, 10, false)),
            Err(ErrorCode::OutOfOrderSequenceNumber),
            "a gap"
        );
        assert_eq!(
            append(&mut log, batch(7, 0, 20, 10, false)),
            Ok(20),
            "epoch 0 again, next in line"
        );
    }

    /// Found by the producer's round trip on the mock: after a client-side
    /// epoch bump the new epoch reuses sequence numbers, and batches the old
    /// epoch remembered answered for the new epoch's (acknowledged, never
    /// written: 438 records lost in one run).
    #[test]
    fn a_new_epoch_is_not_answered_from_the_old_epochs_batches() {
        let mut log = PartitionLog::default();
        assert_eq!(append(&mut log, batch(7, 0, 0, 10, false)), Ok(0));
        assert_eq!(append(&mut log, batch(7, 0, 10, 10, false)), Ok(10));
        assert_eq!(append(&mut log, batch(7, 1, 0, 10, false)), Ok(20));
        assert_eq!(
            append(&mut log, batch(7, 1, 10, 10, false)),
            Ok(30),
            "written, not mistaken for epoch 0's batch at 10"
        );
        assert_eq!(log.high_watermark(), 40);
        assert_eq!(
            append(&mut log, batch(7, 0, 20, 10, false)),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            append(&mut log, batch(7, 2, 5, 10, false)),
            Err(ErrorCode::OutOfOrderSequenceNumber),
            "a new epoch starts at 0"
        );
    }

    #[test]
    fn read_committed_stops_at_the_open_transaction_and_lists_aborted_ones() {
        let mut log = PartitionLog::default();
        append(&mut log, batch(1, 0, 0, 5, true)).unwrap(); // 0..5, open
        append(&mut log, batch(2, 0, 0, 5, false)).unwrap(); // 5..10
        assert_eq!(log.last_stable_offset(), 0);
        let (bytes, _) = log.read(0, log.last_stable_offset(), 1 << 20);
        assert!(bytes.is_empty(), "nothing is stable yet");
        assert!(log.write_marker(1, 0, false, 0, 0)); // abort marker at 10
        assert_eq!(log.last_stable_offset(), 11);
        let aborted = log.aborted_between(0, 10);
        assert_eq!(aborted.len(), 1);
        assert_eq!(
            (
                aborted[0].producer_id,
                aborted[0].first_offset,
                aborted[0].last_offset
            ),
            (1, 0, 10)
        );
        let (bytes, last) = log.read(0, log.last_stable_offset(), 1 << 20);
        assert_eq!(last, 10);
        assert!(!bytes.is_empty());
        assert!(
            !log.write_marker(1, 0, true, 0, 0),
            "no open transaction left"
        );
    }
}
