//! Transactions (transaction version 1: partitions join with
//! AddPartitionsToTxn): producer ids and epochs, the partitions and groups
//! a transaction touched, markers on commit or abort, and timeouts.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use franz_protocol::ErrorCode;

use crate::group::{Group, GroupKind};
use crate::state::{Committed, State, unix_millis};

/// Kafka's `transaction.max.timeout.ms` default.
const MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(900);

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    Empty,
    Ongoing,
    CompleteCommit,
    CompleteAbort,
}

/// One transactional id's state.
#[derive(Debug, Clone)]
pub(crate) struct Txn {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) state: TxnState,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) groups: BTreeSet<String>,
    timeout: Duration,
    started: Option<Instant>,
}

/// Every transactional id.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    pub(crate) map: HashMap<String, Txn>,
}

impl Transactions {
    /// Open transactions past their timeout.
    pub(crate) fn expired(&self, now: Instant) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, t)| {
                t.state == TxnState::Ongoing && t.started.is_some_and(|s| now >= s + t.timeout)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether a transactional batch from `producer_id` at `epoch` may go to `tp`.
    pub(crate) fn check_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        tp: &(String, i32),
    ) -> Result<(), ErrorCode> {
        let Some(txn) = self.map.values().find(|t| t.producer_id == producer_id) else {
            return Err(ErrorCode::InvalidProducerIdMapping);
        };
        if epoch < txn.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if txn.state != TxnState::Ongoing || !txn.partitions.contains(tp) {
            return Err(ErrorCode::InvalidTxnState);
        }
        Ok(())
    }

    /// Checks the id, producer id and epoch a transactional request names.
    fn checked(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&mut Txn, ErrorCode> {
        let txn = self
            .map
            .get_mut(txn_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if epoch < txn.epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if epoch > txn.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        Ok(txn)
    }
}

impl State {
    /// InitProducerId. Returns `(producer id, epoch)`.
    pub(crate) fn init_producer_id(
        &mut self,
        txn_id: Option<&str>,
        timeout_ms: i32,
        producer_id: i64,
        epoch: i16,
        now: Instant,
    ) -> Result<(i64, i16), ErrorCode> {
        let Some(txn_id) = txn_id else {
            return Ok((self.allocate_producer_id(), 0));
        };
        let timeout = Duration::from_millis(
            u64::try_from(timeout_ms).map_err(|_| ErrorCode::InvalidTransactionTimeout)?,
        );
        if timeout.is_zero() || timeout > MAX_TRANSACTION_TIMEOUT {
            return Err(ErrorCode::InvalidTransactionTimeout);
        }
        let existing = self.txns.map.get(txn_id).cloned();
        let Some(txn) = existing else {
            let pid = self.allocate_producer_id();
            self.txns.map.insert(
                txn_id.to_string(),
                Txn {
                    producer_id: pid,
                    epoch: 0,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    groups: BTreeSet::new(),
                    timeout,
                    started: None,
                },
            );
            return Ok((pid, 0));
        };
        if producer_id >= 0 && (producer_id != txn.producer_id || epoch != txn.epoch) {
            return Err(ErrorCode::ProducerFenced);
        }
        if txn.state == TxnState::Ongoing {
            self.complete_transaction(txn_id, false, now);
        }
        let (mut pid, mut new_epoch) = match self.txns.map.get(txn_id) {
            Some(t) => (t.producer_id, t.epoch.saturating_add(1)),
            None => (txn.producer_id, txn.epoch.saturating_add(1)),
        };
        if new_epoch >= i16::MAX - 1 {
            pid = self.allocate_producer_id();
            new_epoch = 0;
        }
        if let Some(t) = self.txns.map.get_mut(txn_id) {
            t.producer_id = pid;
            t.epoch = new_epoch;
            t.state = TxnState::Empty;
            t.timeout = timeout;
            t.partitions.clear();
            t.groups.clear();
            t.started = None;
        }
        Ok((pid, new_epoch))
    }

    /// AddPartitionsToTxn (v0-3). Per-partition errors.
    pub(crate) fn add_partitions_to_txn(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: Instant,
    ) -> Vec<((String, i32), ErrorCode)> {
        let unknown: Vec<&(String, i32)> = partitions
            .iter()
            .filter(|(t, p)| self.partition(t, *p).is_none())
            .collect();
        if !unknown.is_empty() {
            return partitions
                .iter()
                .map(|tp| {
                    let code = if unknown.contains(&tp) {
                        ErrorCode::UnknownTopicOrPartition
                    } else {
                        ErrorCode::OperationNotAttempted
                    };
                    (tp.clone(), code)
                })
                .collect();
        }
        let result = self.txns.checked(txn_id, producer_id, epoch).map(|txn| {
            if txn.state != TxnState::Ongoing {
                txn.state = TxnState::Ongoing;
                txn.started = Some(now);
                txn.partitions.clear();
                txn.groups.clear();
            }
            txn.partitions.extend(partitions.iter().cloned());
        });
        let code = result.err().unwrap_or(ErrorCode::None);
        partitions.iter().map(|tp| (tp.clone(), code)).collect()
    }

    /// AddOffsetsToTxn.
    pub(crate) fn add_offsets_to_txn(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now: Instant,
    ) -> ErrorCode {
        match self.txns.checked(txn_id, producer_id, epoch) {
            Ok(txn) => {
                if txn.state != TxnState::Ongoing {
                    txn.state = TxnState::Ongoing;
                    txn.started = Some(now);
                    txn.partitions.clear();
                    txn.groups.clear();
                }
                txn.groups.insert(group.to_string());
                ErrorCode::None
            }
            Err(e) => e,
        }
    }

    /// TxnOffsetCommit: offsets held until the transaction ends.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn txn_offset_commit(
        &mut self,
        txn_id: &str,
        group_id: &str,
        producer_id: i64,
        epoch: i16,
        generation: i32,
        member_id: &str,
        offsets: Vec<((String, i32), Committed)>,
        now: Instant,
    ) -> ErrorCode {
        match self.txns.map.get(txn_id) {
            Some(t) if t.producer_id == producer_id => {
                if epoch < t.epoch {
                    return ErrorCode::ProducerFenced;
                }
                if t.state != TxnState::Ongoing || !t.groups.contains(group_id) {
                    return ErrorCode::InvalidTxnState;
                }
            }
            _ => return ErrorCode::InvalidProducerIdMapping,
        }
        let group = self
            .groups
            .map
            .entry(group_id.to_string())
            .or_insert_with(|| Group::classic(now));
        if generation >= 0 || !member_id.is_empty() {
            let code = match &group.kind {
                GroupKind::Classic(c) => c.validate_commit(member_id, generation),
                GroupKind::Consumer(c) => c.validate_commit(member_id, generation),
            };
            if code != ErrorCode::None {
                return code;
            }
        }
        group
            .pending_txn
            .entry(producer_id)
            .or_default()
            .extend(offsets);
        ErrorCode::None
    }

    /// EndTxn.
    pub(crate) fn end_txn(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now: Instant,
    ) -> ErrorCode {
        let state = match self.txns.checked(txn_id, producer_id, epoch) {
            Ok(t) => t.state,
            Err(e) => return e,
        };
        match (state, commit) {
            (TxnState::Ongoing, _) => {
                self.complete_transaction(txn_id, commit, now);
                ErrorCode::None
            }
            // A retry of an EndTxn that already completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => ErrorCode::None,
            _ => ErrorCode::InvalidTxnState,
        }
    }

    /// Writes markers, applies or drops the transaction's offsets.
    fn complete_transaction(&mut self, txn_id: &str, commit: bool, _now: Instant) {
        let Some(txn) = self.txns.map.get(txn_id).cloned() else {
            return;
        };
        let now_ms = unix_millis();
        for (topic, partition) in &txn.partitions {
            if let Some(p) = self.partition_mut(topic, *partition) {
                let leader_epoch = p.leader_epoch;
                p.log
                    .write_marker(txn.producer_id, txn.epoch, commit, leader_epoch, now_ms);
            }
        }
        for group_id in &txn.groups {
            if let Some(group) = self.groups.map.get_mut(group_id)
                && let Some(offsets) = group.pending_txn.remove(&txn.producer_id)
                && commit
            {
                group.commit(offsets);
            }
        }
        if let Some(t) = self.txns.map.get_mut(txn_id) {
            t.state = if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            t.started = None;
        }
    }

    /// Aborts a transaction past its timeout and bumps its epoch, which
    /// fences the producer that let it expire.
    pub(crate) fn abort_expired_transaction(&mut self, txn_id: &str, now: Instant) -> bool {
        tracing::debug!(transactional_id = %txn_id, "transaction timed out: aborting");
        self.complete_transaction(txn_id, false, now);
        if let Some(t) = self.txns.map.get_mut(txn_id) {
            t.epoch = t.epoch.saturating_add(1);
        }
        true
    }
}
