//! Idempotent-producer sequencing, sans-io: no sockets, no clock.
//!
//! Each (producer id, epoch, partition) numbers its records from 0; a batch
//! carries the sequence of its first record. The broker keeps the last five
//! batches per partition and acknowledges a resent one with its original
//! offset, so a batch is always resent with the *same* sequence and bytes.
//!
//! The sender pipelines up to five batches per partition and keeps their
//! order (see its module doc). What this module decides is when the sequence state can no longer be trusted and
//! the epoch must be bumped (KIP-360): after OUT_OF_ORDER_SEQUENCE_NUMBER,
//! UNKNOWN_PRODUCER_ID or INVALID_PRODUCER_EPOCH, and after a batch that was
//! sent is given up on (it may or may not be in the log). A bump keeps the
//! producer id and raises the epoch on the client ([`SequenceState::bump_locally`]),
//! every partition restarts at sequence 0, and unacknowledged batches are
//! re-sequenced in their original order (a batch is current only when both
//! its producer id and its epoch are).
//!
//! A sequence whose fate is unknown is never reused: when a request was
//! written and its answer is lost or unreadable, the batch is resent with
//! the same id, epoch and sequence (the broker deduplicates its last five
//! batches, so it is written once); it is rolled back only when the broker
//! refused the partition's batch with an error code.

use std::collections::HashMap;

use franz_protocol::ErrorCode;
use franz_protocol::record::wrap_sequence;

/// What to do with a batch after the broker answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written (or a duplicate of a written batch): complete it.
    Done,
    /// Send it again, same sequence, after a backoff.
    Retry,
    /// Send it again after the epoch has been bumped and it re-sequenced.
    RetryAfterBump,
    /// Give up: fail the batch with this error.
    Fail,
}

/// Sequence numbers for one producer id and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceState {
    producer_id: i64,
    epoch: i16,
    next: HashMap<(String, i32), i32>,
    bump_needed: bool,
}

impl SequenceState {
    /// State for a fresh producer id and epoch.
    pub fn new(producer_id: i64, epoch: i16) -> Self {
        Self {
            producer_id,
            epoch,
            next: HashMap::new(),
            bump_needed: false,
        }
    }

    /// The producer id.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// The epoch.
    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// Whether a batch numbered under `producer_id` and `epoch` still holds
    /// valid sequences: both must match, since a new id restarts at epoch 0.
    pub fn is_current(&self, producer_id: i64, epoch: i16) -> bool {
        self.producer_id == producer_id && self.epoch == epoch
    }

    /// Whether sending must pause until the epoch is bumped.
    pub fn bump_needed(&self) -> bool {
        self.bump_needed
    }

    /// The base sequence for a new batch of `records` on a partition, and
    /// the partition's sequence advanced past it (wrapping to 0 after
    /// `i32::MAX`).
    pub fn assign(&mut self, topic: &str, partition: i32, records: i32) -> i32 {
        let next = self.next.entry((topic.to_string(), partition)).or_insert(0);
        let base = *next;
        *next = wrap_sequence(base, records);
        base
    }

    /// Classifies the broker's answer to a batch. Pure: the sender decides
    /// whether an out-of-order answer breaks the sequence (it does not when
    /// an earlier batch of the partition failed first) and then calls
    /// [`on_sequence_broken`](Self::on_sequence_broken).
    pub fn classify(&self, code: ErrorCode) -> BatchOutcome {
        match code {
            ErrorCode::None | ErrorCode::DuplicateSequenceNumber => BatchOutcome::Done,
            ErrorCode::OutOfOrderSequenceNumber
            | ErrorCode::UnknownProducerId
            | ErrorCode::InvalidProducerEpoch => BatchOutcome::RetryAfterBump,
            ErrorCode::ProducerFenced => BatchOutcome::Fail,
            c if c.is_retriable() => BatchOutcome::Retry,
            _ => BatchOutcome::Fail,
        }
    }

    /// The broker's sequence for some partition cannot be matched any more
    /// (a genuine out-of-order, an unknown producer, a refused batch with
    /// numbered batches behind it): the epoch must be bumped.
    pub fn on_sequence_broken(&mut self) {
        self.bump_needed = true;
    }

    /// The broker refused the partition's latest batch outright (nothing
    /// written): its sequences are free again.
    pub fn rollback(&mut self, topic: &str, partition: i32, base: i32) {
        if let Some(next) = self.next.get_mut(&(topic.to_string(), partition)) {
            *next = base;
        }
    }

    /// A batch that was sent at least once is being given up on (delivery
    /// timeout): its fate is unknown, so the sequence state is too.
    pub fn on_sent_batch_abandoned(&mut self) {
        self.bump_needed = true;
    }

    /// KIP-360's client-side bump for an idempotent producer, as Java's
    /// `bumpIdempotentProducerEpoch` does: the same producer id at epoch + 1,
    /// every partition restarting at sequence 0 (the broker accepts a higher
    /// epoch only at sequence 0). `None` when the epoch would overflow: then
    /// a new producer id must be asked for with InitProducerId. (Asking
    /// InitProducerId without a transactional id always yields a *new* id at
    /// epoch 0, never a bump.)
    pub fn bump_locally(&mut self) -> Option<(i64, i16)> {
        let epoch = self.epoch.checked_add(1).filter(|e| *e < i16::MAX)?;
        self.on_new_epoch(self.producer_id, epoch);
        Some((self.producer_id, epoch))
    }

    /// The broker granted a new epoch (or id): every partition restarts at 0.
    pub fn on_new_epoch(&mut self, producer_id: i64, epoch: i16) {
        self.producer_id = producer_id;
        self.epoch = epoch;
        self.next.clear();
        self.bump_needed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_advance_per_partition_and_wrap() {
        let mut s = SequenceState::new(7, 0);
        assert_eq!(s.assign("t", 0, 10), 0);
        assert_eq!(s.assign("t", 0, 5), 10);
        assert_eq!(s.assign("t", 1, 3), 0);
        assert_eq!(s.assign("u", 0, 1), 0);
        s.next.insert(("t".into(), 2), i32::MAX - 1);
        assert_eq!(s.assign("t", 2, 3), i32::MAX - 1);
        assert_eq!(s.assign("t", 2, 1), 1, "wrapped past i32::MAX to 0");
    }

    #[test]
    fn out_of_order_requires_a_bump_then_restarts_at_zero() {
        let mut s = SequenceState::new(7, 0);
        s.assign("t", 0, 10);
        assert_eq!(
            s.classify(ErrorCode::OutOfOrderSequenceNumber),
            BatchOutcome::RetryAfterBump
        );
        assert!(!s.bump_needed(), "classifying alone breaks nothing");
        s.on_sequence_broken();
        assert!(s.bump_needed());
        assert_eq!(s.bump_locally(), Some((7, 1)), "same id, epoch + 1");
        assert!(!s.bump_needed());
        assert_eq!(s.epoch(), 1);
        assert_eq!(
            s.assign("t", 0, 4),
            0,
            "the re-sequenced batch starts at 0 in the new epoch"
        );
    }

    #[test]
    fn an_epoch_about_to_overflow_asks_for_a_new_id() {
        let mut s = SequenceState::new(7, i16::MAX - 1);
        s.on_sent_batch_abandoned();
        assert_eq!(s.bump_locally(), None);
        assert!(s.bump_needed(), "still waiting for a new producer id");
        s.on_new_epoch(8, 0);
        assert_eq!((s.producer_id(), s.epoch()), (8, 0));
    }

    #[test]
    fn unknown_producer_requires_a_bump() {
        let mut s = SequenceState::new(7, 3);
        assert_eq!(
            s.classify(ErrorCode::UnknownProducerId),
            BatchOutcome::RetryAfterBump
        );
        s.on_sequence_broken();
        assert!(s.bump_needed());
        s.on_new_epoch(9, 0);
        assert_eq!(s.producer_id(), 9);
    }

    #[test]
    fn an_abandoned_sent_batch_requires_a_bump() {
        let mut s = SequenceState::new(7, 0);
        s.assign("t", 0, 5);
        s.on_sent_batch_abandoned();
        assert!(s.bump_needed());
    }

    #[test]
    fn a_refused_batch_gives_its_sequences_back() {
        let mut s = SequenceState::new(7, 0);
        assert_eq!(s.assign("t", 0, 3), 0);
        let base = s.assign("t", 0, 4);
        assert_eq!(s.classify(ErrorCode::MessageTooLarge), BatchOutcome::Fail);
        s.rollback("t", 0, base);
        assert_eq!(s.assign("t", 0, 2), 3);
        assert!(!s.bump_needed());
    }

    #[test]
    fn duplicates_succeed_retriables_retry_others_fail() {
        let s = SequenceState::new(7, 0);
        assert_eq!(s.classify(ErrorCode::None), BatchOutcome::Done);
        assert_eq!(
            s.classify(ErrorCode::DuplicateSequenceNumber),
            BatchOutcome::Done
        );
        assert_eq!(
            s.classify(ErrorCode::NotLeaderOrFollower),
            BatchOutcome::Retry
        );
        assert_eq!(
            s.classify(ErrorCode::NotEnoughReplicas),
            BatchOutcome::Retry
        );
        assert_eq!(s.classify(ErrorCode::MessageTooLarge), BatchOutcome::Fail);
        assert_eq!(s.classify(ErrorCode::ProducerFenced), BatchOutcome::Fail);
        assert!(!s.bump_needed());
    }
}
