//! Sans-io handling of one partition's Fetch data: batches to records,
//! control batches and aborted transactions skipped, the next position
//! computed. No sockets and no clocks, so every case is a plain unit test.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use franz_protocol::DecodeError;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::{BatchDecodeOptions, ControlType, RecordBatches, TimestampType};

use crate::config::IsolationLevel;

/// One record as the consumer hands it out. Key, value and header values
/// are slices of the fetched buffer: no copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// Whether the timestamp is the producer's or the broker's.
    pub timestamp_type: TimestampType,
    /// The leader epoch of the batch (-1 if unknown).
    pub leader_epoch: i32,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order, duplicates kept.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

impl ConsumerRecord {
    /// The last value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .and_then(|(_, v)| v.as_ref())
    }
}

/// What one partition's fetched bytes came to (all batches decoded at once;
/// the consumer itself decodes lazily through [`PartitionDecoder`]).
#[derive(Debug, Default)]
pub struct DecodedPartition {
    /// Records at or after the position, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The position after everything consumed (unchanged if nothing was).
    pub next_position: i64,
    /// A batch that failed to decode, at `next_position`. Records before it
    /// are still returned; the error is reported when nothing precedes it.
    pub error: Option<DecodeError>,
}

/// An aborted transaction as the Fetch response lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Aborted {
    /// First offset of the transaction.
    pub first_offset: i64,
    /// Its producer.
    pub producer_id: i64,
}

/// One batch's worth of a partition's fetched data.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// The batch's records at or after the position, in offset order (empty
    /// for a control batch or an aborted transaction's batch).
    pub records: Vec<ConsumerRecord>,
    /// The position after the batch.
    pub next_position: i64,
    /// The batch's partition leader epoch (KIP-320's "last fetched epoch"
    /// once the batch is consumed).
    pub leader_epoch: i32,
    /// Bytes the decoded records keep alive (the decompressed records
    /// section, or the batch itself when uncompressed): what a poll's byte
    /// budget counts.
    pub resident_bytes: usize,
}

/// Walks one partition's fetched bytes a batch at a time, so a poll decodes
/// (and decompresses) only what its budget admits; the rest stays
/// compressed until a later poll asks for it.
///
/// Under read-committed, a transactional batch is dropped when its producer
/// has an aborted transaction that began at or before the batch's last
/// offset and whose abort marker has not been passed yet (Java's rule).
#[derive(Debug)]
pub struct PartitionDecoder {
    topic: Arc<str>,
    partition: i32,
    batches: RecordBatches,
    pending: BTreeSet<Aborted>,
    aborting: HashSet<i64>,
    isolation: IsolationLevel,
    limits: DecodeLimits,
    failed: bool,
}

impl PartitionDecoder {
    /// A decoder over `data` fetched for `topic`/`partition`.
    pub fn new(
        topic: &Arc<str>,
        partition: i32,
        data: Bytes,
        aborted: &[Aborted],
        isolation: IsolationLevel,
        opts: &BatchDecodeOptions,
    ) -> Self {
        Self {
            topic: Arc::clone(topic),
            partition,
            batches: RecordBatches::new(data, *opts),
            pending: aborted.iter().copied().collect(),
            aborting: HashSet::new(),
            isolation,
            limits: opts.limits,
            failed: false,
        }
    }

    /// The next batch at or after `position`: `None` when the data is used
    /// up (a partial trailing batch is left for the next fetch), an error
    /// when a batch does not decode (nothing after it is returned).
    pub fn next_batch(&mut self, position: i64) -> Option<Result<DecodedBatch, DecodeError>> {
        if self.failed {
            return None;
        }
        let result = self.decode_next(position);
        if matches!(result, Some(Err(_))) {
            self.failed = true;
        }
        result
    }

    fn decode_next(&mut self, position: i64) -> Option<Result<DecodedBatch, DecodeError>> {
        loop {
            let batch = match self.batches.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let last = batch.last_offset();
            if last < position {
                continue; // wholly before the position (a compressed batch re-sent)
            }
            let next_position = last.saturating_add(1);
            let mut out = DecodedBatch {
                records: Vec::new(),
                next_position,
                leader_epoch: batch.partition_leader_epoch,
                resident_bytes: 0,
            };
            if self.isolation == IsolationLevel::ReadCommitted {
                while let Some(first) = self.pending.first().copied() {
                    if first.first_offset > last {
                        break;
                    }
                    self.pending.remove(&first);
                    self.aborting.insert(first.producer_id);
                }
            }
            if self.isolation == IsolationLevel::ReadCommitted
                && batch.attributes.is_transactional()
                && !batch.attributes.is_control()
                && self.aborting.contains(&batch.producer_id)
            {
                return Some(Ok(out));
            }
            let records = match batch.records(&self.limits) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            if batch.attributes.is_control() {
                for r in &records {
                    match r {
                        Ok(r) => {
                            if let Some(c) = r.control()
                                && c.kind == ControlType::Abort
                            {
                                self.aborting.remove(&batch.producer_id);
                            }
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                return Some(Ok(out));
            }
            out.resident_bytes = records.data().len();
            let timestamp_type = batch.attributes.timestamp_type();
            // The count is the broker's claim: a capacity hint, bounded.
            let hint = usize::try_from(batch.record_count).unwrap_or(0).min(4096);
            out.records.reserve(hint);
            for r in &records {
                // Nothing of a half-read batch is handed out.
                let r = match r {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e)),
                };
                if r.offset < position {
                    continue;
                }
                out.records.push(ConsumerRecord {
                    topic: Arc::clone(&self.topic),
                    partition: self.partition,
                    offset: r.offset,
                    timestamp: if timestamp_type == TimestampType::LogAppendTime {
                        batch.max_timestamp
                    } else {
                        r.timestamp
                    },
                    timestamp_type,
                    leader_epoch: batch.partition_leader_epoch,
                    key: r.key_bytes(),
                    value: r.value_bytes(),
                    headers: r
                        .headers()
                        .map(|h| (r.share(h.key), h.value.map(|v| r.share(v))))
                        .collect(),
                });
            }
            return Some(Ok(out));
        }
    }
}

/// Decodes all of `data` fetched for `topic`/`partition` from `position`
/// (see [`PartitionDecoder`] for the rules).
pub fn decode_partition(
    topic: &Arc<str>,
    partition: i32,
    position: i64,
    data: Bytes,
    aborted: &[Aborted],
    isolation: IsolationLevel,
    opts: &BatchDecodeOptions,
) -> DecodedPartition {
    let mut decoder = PartitionDecoder::new(topic, partition, data, aborted, isolation, opts);
    let mut out = DecodedPartition {
        records: Vec::new(),
        next_position: position,
        error: None,
    };
    while let Some(batch) = decoder.next_batch(out.next_position) {
        match batch {
            Ok(b) => {
                out.records.extend(b.records);
                out.next_position = b.next_position;
            }
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::{BufMut, BytesMut};
    use franz_protocol::record::{BatchMeta, Header, RecordBatchBuilder};

    use super::*;

    fn batch(base: i64, values: &[&str], txn: Option<i64>) -> Bytes {
        let mut b = RecordBatchBuilder::new();
        for (i, v) in values.iter().enumerate() {
            let h = [Header::new("n", i.to_string())];
            b.push(1000 + i as i64, Some(b"k"), Some(v.as_bytes()), &h);
        }
        b.finish(&BatchMeta {
            base_offset: base,
            transactional: txn.is_some(),
            producer_id: txn.unwrap_or(-1),
            producer_epoch: if txn.is_some() { 0 } else { -1 },
            ..BatchMeta::default()
        })
        .unwrap()
    }

    /// A transaction marker: key (version 0, type 0 = abort, 1 = commit).
    fn marker(base: i64, pid: i64, commit: bool) -> Bytes {
        let mut b = RecordBatchBuilder::new();
        b.push(
            2000,
            Some(&[0, 0, 0, u8::from(commit)]),
            Some(&[0, 0, 0, 0, 0, 0]),
            &[],
        );
        b.finish(&BatchMeta {
            base_offset: base,
            transactional: true,
            control: true,
            producer_id: pid,
            producer_epoch: 0,
            ..BatchMeta::default()
        })
        .unwrap()
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        let mut out = BytesMut::new();
        for p in parts {
            out.put_slice(p);
        }
        out.freeze()
    }

    fn decode(
        data: Bytes,
        position: i64,
        aborted: &[Aborted],
        iso: IsolationLevel,
    ) -> DecodedPartition {
        decode_partition(
            &Arc::from("t"),
            3,
            position,
            data,
            aborted,
            iso,
            &BatchDecodeOptions::default(),
        )
    }

    fn offsets(d: &DecodedPartition) -> Vec<i64> {
        d.records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn records_before_the_position_are_skipped_and_the_position_advances() {
        let data = concat(&[batch(10, &["a", "b", "c"], None), batch(13, &["d"], None)]);
        let d = decode(data, 11, &[], IsolationLevel::ReadUncommitted);
        assert_eq!(offsets(&d), vec![11, 12, 13]);
        assert_eq!(d.next_position, 14);
        assert!(d.error.is_none());
        let r = &d.records[0];
        assert_eq!((r.topic.as_ref(), r.partition), ("t", 3));
        assert_eq!(r.value.as_deref(), Some(&b"b"[..]));
        assert_eq!(r.header("n").map(|v| v.as_ref()), Some(&b"1"[..]));
        assert_eq!(r.timestamp, 1001);
    }

    #[test]
    fn control_batches_are_skipped_but_consumed() {
        let data = concat(&[
            batch(0, &["a"], Some(7)),
            marker(1, 7, true),
            batch(2, &["b"], None),
        ]);
        let d = decode(data, 0, &[], IsolationLevel::ReadCommitted);
        assert_eq!(offsets(&d), vec![0, 2]);
        assert_eq!(d.next_position, 3);
    }

    #[test]
    fn read_committed_drops_aborted_transactions_only() {
        // pid 7: an aborted transaction (0-1, marker 2), then a committed one
        // (3-4, marker 5); pid 8 commits in between (6, marker 7).
        let data = concat(&[
            batch(0, &["x0", "x1"], Some(7)),
            marker(2, 7, false),
            batch(3, &["y3", "y4"], Some(7)),
            marker(5, 7, true),
            batch(6, &["z6"], Some(8)),
            marker(7, 8, true),
        ]);
        let aborted = [Aborted {
            first_offset: 0,
            producer_id: 7,
        }];
        let committed = decode(data.clone(), 0, &aborted, IsolationLevel::ReadCommitted);
        assert_eq!(offsets(&committed), vec![3, 4, 6]);
        assert_eq!(committed.next_position, 8);
        let all = decode(data, 0, &aborted, IsolationLevel::ReadUncommitted);
        assert_eq!(offsets(&all), vec![0, 1, 3, 4, 6]);
    }

    #[test]
    fn a_corrupt_batch_stops_the_partition_at_that_batch() {
        let good = batch(0, &["a", "b"], None);
        let mut bad = BytesMut::from(&batch(2, &["c"], None)[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // inside the CRC span
        let data = concat(&[good, bad.freeze()]);
        let d = decode(data, 0, &[], IsolationLevel::ReadUncommitted);
        assert_eq!(
            offsets(&d),
            vec![0, 1],
            "records before the bad batch are kept"
        );
        assert_eq!(d.next_position, 2, "the position stays at the bad batch");
        assert!(
            matches!(d.error, Some(DecodeError::CrcMismatch { .. })),
            "{:?}",
            d.error
        );
    }

    #[test]
    fn a_truncated_trailing_batch_is_left_for_the_next_fetch() {
        let whole = batch(0, &["a"], None);
        let next = batch(1, &["b", "c"], None);
        let data = concat(&[whole, next.slice(..next.len() - 5)]);
        let d = decode(data, 0, &[], IsolationLevel::ReadUncommitted);
        assert_eq!(offsets(&d), vec![0]);
        assert_eq!(d.next_position, 1);
        assert!(d.error.is_none());
    }
}
