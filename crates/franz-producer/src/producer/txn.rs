//! The transactional half of the driver: `init_transactions`, `begin`,
//! `send_offsets_to_transaction`, `commit` and `abort`, and the
//! AddPartitionsToTxn requests the sender asks for. The decisions (states,
//! what each code means) live in `crate::transaction`; this file sends the
//! requests and applies the answers.
#![allow(clippy::disallowed_methods)] // a driver: transactional request deadlines

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use franz_client::{
    BrokerConnection, ClientError, ConsumerGroupMetadata, CoordinatorType, TopicPartition,
};
use franz_protocol::ErrorCode;
use franz_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    InitProducerIdRequest, TxnOffsetCommitRequest, add_partitions_to_txn_request,
    txn_offset_commit_request,
};

use super::{Inner, Producer, TXN_NONE, TXN_V1, TXN_V2, finish, lock};
use crate::error::ProduceError;
use crate::transaction::{TxnCode, TxnOp, classify};

/// The worst of several per-partition codes: fenced, then fatal, then
/// abortable, then retry; `Ok` only when all are.
fn worst(op: TxnOp, codes: impl IntoIterator<Item = i16>) -> (TxnCode, ErrorCode) {
    let rank = |c: TxnCode| match c {
        TxnCode::Fenced => 5,
        TxnCode::Fatal => 4,
        TxnCode::Abortable => 3,
        TxnCode::Retry { refind: true } => 2,
        TxnCode::Retry { refind: false } => 1,
        TxnCode::Ok => 0,
    };
    codes
        .into_iter()
        .map(|c| {
            let code = ErrorCode::from_code(c);
            (classify(op, code), code)
        })
        .max_by_key(|(c, _)| rank(*c))
        .unwrap_or((TxnCode::Ok, ErrorCode::None))
}

impl Inner {
    fn transactional_id(&self) -> Result<&str, ProduceError> {
        self.config.transactional_id.as_deref().ok_or_else(|| {
            ProduceError::Config("transactional calls need a transactional_id".into())
        })
    }

    fn producer_id_and_epoch(&self) -> (i64, i16) {
        lock(&self.state)
            .sender
            .producer_id_and_epoch()
            .unwrap_or((-1, -1))
    }

    /// Sends a transactional request to the coordinator of `key` until it
    /// succeeds, fails for good, or `deadline` passes. `call` sends one
    /// attempt and returns the answer's (worst) error code with its value.
    async fn coordinator_call<T, F, Fut>(
        &self,
        op: TxnOp,
        kind: CoordinatorType,
        key: &str,
        deadline: Instant,
        mut call: F,
    ) -> Result<T, ProduceError>
    where
        F: FnMut(BrokerConnection) -> Fut,
        Fut: Future<Output = Result<(TxnCode, ErrorCode, T), ClientError>>,
    {
        let client = &self.client;
        let mut attempt = 0u32;
        loop {
            let outcome = match client.coordinator_connection(kind, key).await {
                Ok(conn) => call(conn).await,
                Err(e) => Err(e),
            };
            let last = match outcome {
                Ok((TxnCode::Ok, _, value)) => return Ok(value),
                Ok((TxnCode::Retry { refind }, code, _)) => {
                    if refind {
                        client.invalidate_coordinator(kind, key);
                    }
                    ProduceError::Client(ClientError::Broker {
                        context: format!("{} for {key}", op.name()),
                        code,
                        message: None,
                    })
                }
                Ok((TxnCode::Fenced, _, _)) => {
                    let (producer_id, epoch) = self.producer_id_and_epoch();
                    return Err(ProduceError::ProducerFenced { producer_id, epoch });
                }
                Ok((TxnCode::Fatal, code, _)) => {
                    return Err(ProduceError::TransactionFatal {
                        operation: op.name(),
                        code,
                    });
                }
                Ok((TxnCode::Abortable, code, _)) => {
                    return Err(ProduceError::TransactionAbortable {
                        cause: Box::new(ProduceError::Client(ClientError::Broker {
                            context: format!("{} for {key}", op.name()),
                            code,
                            message: None,
                        })),
                    });
                }
                Err(e) if e.is_retriable() => {
                    if e.invalidates_metadata() {
                        client.invalidate_coordinator(kind, key);
                    }
                    ProduceError::Client(e)
                }
                Err(e) => return Err(ProduceError::Client(e)),
            };
            attempt += 1;
            // Java backs off 20 ms before its first retry of a transaction
            // request that raced the previous transaction's markers
            // (CONCURRENT_TRANSACTIONS), then retry_backoff.
            let wait = if attempt == 1 {
                Duration::from_millis(20)
            } else {
                self.config.client.retry_backoff
            };
            if Instant::now() + wait >= deadline {
                tracing::debug!(op = op.name(), attempt, error = %last, "giving up: deadline");
                return Err(last);
            }
            tracing::debug!(op = op.name(), attempt, error = %last, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// InitProducerId for the transactional id: a fresh id and epoch, or
    /// (with `current`) the next epoch of the current id (KIP-360).
    async fn init_transactional_id(
        &self,
        current: Option<(i64, i16)>,
        deadline: Instant,
    ) -> Result<(i64, i16), ProduceError> {
        let id = self.transactional_id()?;
        let timeout_ms =
            i32::try_from(self.config.transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        let request_timeout = self.config.client.request_timeout;
        self.coordinator_call(
            TxnOp::InitProducerId,
            CoordinatorType::Transaction,
            id,
            deadline,
            |conn| async move {
                let version = conn.version_of::<InitProducerIdRequest>()?;
                let (producer_id, producer_epoch) = match current {
                    Some(c) if version >= 3 => c,
                    _ => (-1, -1),
                };
                let req = InitProducerIdRequest {
                    transactional_id: Some(id.to_string()),
                    transaction_timeout_ms: timeout_ms,
                    producer_id,
                    producer_epoch,
                    ..Default::default()
                };
                let resp = conn.send_versioned(&req, version, request_timeout).await?;
                let code = ErrorCode::from_code(resp.error_code);
                Ok((
                    classify(TxnOp::InitProducerId, code),
                    code,
                    (resp.producer_id, resp.producer_epoch),
                ))
            },
        )
        .await
    }

    /// Whether the transaction coordinator speaks transaction version 2:
    /// the finalized `transaction.version` is at least 2 and it serves
    /// EndTxn v5 and Produce v12.
    async fn refresh_transaction_version(&self) {
        let Ok(id) = self.transactional_id() else {
            return;
        };
        if let Ok(conn) = self
            .client
            .coordinator_connection(CoordinatorType::Transaction, id)
            .await
        {
            let v = conn.versions();
            let tv2 = v.finalized_feature("transaction.version").unwrap_or(0) >= 2
                && v.broker_range(ApiKey::EndTxn.key())
                    .is_some_and(|(_, hi)| hi >= 5)
                && v.broker_range(ApiKey::Produce.key())
                    .is_some_and(|(_, hi)| hi >= 12);
            self.tv2_available.store(tv2, Ordering::Relaxed);
        }
    }

    /// Applies a transactional request's failure to the transaction state.
    fn on_txn_error(&self, err: &ProduceError) {
        let mut st = lock(&self.state);
        if let Some(txn) = st.txn.as_mut() {
            if err.is_fatal() {
                txn.fail_fatal(err.clone());
            } else if err.is_abortable() {
                let cause = match err {
                    ProduceError::TransactionAbortable { cause } => (**cause).clone(),
                    other => other.clone(),
                };
                txn.fail_abortable(cause);
            }
        }
    }

    /// EndTxn (commit or abort) and what follows it: the new epoch under
    /// transaction version 2, an epoch bump after a broken sequence under
    /// version 1.
    async fn end_transaction(&self, commit: bool) -> Result<(), ProduceError> {
        let id = self.transactional_id()?;
        let (v2, started) = {
            let st = lock(&self.state);
            (
                st.txn.as_ref().is_some_and(|t| t.v2),
                st.sender.transaction_started(),
            )
        };
        let deadline = Instant::now() + self.config.max_block;
        if started {
            let (pid, epoch) = self.producer_id_and_epoch();
            let request_timeout = self.config.client.request_timeout;
            let op = TxnOp::EndTxn { commit };
            let adopted = self
                .coordinator_call(
                    op,
                    CoordinatorType::Transaction,
                    id,
                    deadline,
                    |conn| async move {
                        let mut version = conn.version_of::<EndTxnRequest>()?;
                        if !v2 {
                            version = version.min(4);
                        }
                        let req = EndTxnRequest {
                            transactional_id: id.to_string(),
                            producer_id: pid,
                            producer_epoch: epoch,
                            committed: commit,
                            ..Default::default()
                        };
                        let resp = conn.send_versioned(&req, version, request_timeout).await?;
                        let code = ErrorCode::from_code(resp.error_code);
                        Ok((
                            classify(op, code),
                            code,
                            (version >= 5 && resp.producer_id >= 0)
                                .then_some((resp.producer_id, resp.producer_epoch)),
                        ))
                    },
                )
                .await;
            let adopted = match adopted {
                Ok(a) => a,
                Err(e) => {
                    self.on_txn_error(&e);
                    return Err(e);
                }
            };
            if let Some((pid, epoch)) = adopted {
                let mut st = lock(&self.state);
                let st = &mut *st;
                st.sender.adopt_epoch(&mut st.acc, pid, epoch);
            }
        }
        // Under version 1 a broken sequence (a failed batch of unknown fate,
        // an out-of-order answer) is mended by bumping the epoch after the
        // abort; under version 2 the EndTxn above did it.
        let bump = !commit && !v2 && lock(&self.state).sender.sequence_broken();
        if bump {
            let current = self.producer_id_and_epoch();
            match self.init_transactional_id(Some(current), deadline).await {
                Ok((pid, epoch)) => {
                    let mut st = lock(&self.state);
                    let st = &mut *st;
                    st.sender.adopt_epoch(&mut st.acc, pid, epoch);
                }
                Err(e) => {
                    self.on_txn_error(&e);
                    return Err(e);
                }
            }
        }
        self.refresh_transaction_version().await;
        let mut st = lock(&self.state);
        st.sender.end_transaction();
        if let Some(txn) = st.txn.as_mut() {
            txn.complete();
        }
        self.txn_mode.store(TXN_NONE, Ordering::Relaxed);
        Ok(())
    }
}

/// Adds `partitions` to the open transaction (protocol version 1), on
/// behalf of the sender, and tells it how that went.
pub(super) async fn add_partitions(inner: Arc<Inner>, partitions: Vec<(Arc<str>, i32)>) {
    let result = async {
        let id = inner.transactional_id()?;
        let (pid, epoch) = inner.producer_id_and_epoch();
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &partitions {
            topics.entry(t).or_default().push(*p);
        }
        let req = AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: id.to_string(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| add_partitions_to_txn_request::AddPartitionsToTxnTopic {
                        name: name.to_string(),
                        partitions,
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        let deadline = Instant::now() + inner.config.delivery_timeout;
        let request_timeout = inner.config.client.request_timeout;
        let req = &req;
        inner
            .coordinator_call(
                TxnOp::AddPartitions,
                CoordinatorType::Transaction,
                id,
                deadline,
                |conn| async move {
                    // v4+ is the broker-to-broker form.
                    let version = conn.version_of::<AddPartitionsToTxnRequest>()?.min(3);
                    let resp = conn.send_versioned(req, version, request_timeout).await?;
                    let (class, code) = worst(
                        TxnOp::AddPartitions,
                        resp.results_by_topic_v3_and_below
                            .iter()
                            .flat_map(|t| t.results_by_partition.iter())
                            .map(|p| p.partition_error_code),
                    );
                    Ok((class, code, ()))
                },
            )
            .await
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!(error = %e, "AddPartitionsToTxn failed");
        inner.on_txn_error(e);
    }
    {
        let mut st = lock(&inner.state);
        let st = &mut *st;
        st.sender.on_partitions_added(&partitions, result.is_ok());
        if let Err(e) = result {
            // The transaction cannot commit: what waits to be sent fails
            // now, so that a commit's flush returns the abortable error at
            // once instead of at the delivery timeout.
            for c in st.sender.fail_unsent(&mut st.acc, &e) {
                finish(&inner, st, c);
            }
        }
    }
    inner.wake.notify_one();
    inner.progress.notify_waiters();
}

impl Producer {
    /// Registers the transactional id with its coordinator and fences any
    /// older producer with the same id (its open transaction is aborted).
    /// Call once, before the first [`begin_transaction`](Self::begin_transaction).
    ///
    /// # Cancel safety
    /// Dropped before the InitProducerId answer is applied, the producer
    /// stays uninitialized and calling it again is safe: the broker may
    /// already have bumped the epoch (fencing the older producer and
    /// aborting its open transaction), and the next call gets a newer one.
    /// Dropped after that, in the final look-up of the coordinator's
    /// transaction version, the producer is initialized (a second call fails
    /// with [`ProduceError::InvalidTransactionState`]), but its first
    /// transaction runs under protocol version 1 even on a cluster that
    /// speaks version 2.
    pub async fn init_transactions(&self) -> Result<(), ProduceError> {
        let inner = &*self.inner;
        inner.transactional_id()?;
        if let Some(txn) = lock(&inner.state).txn.as_ref() {
            txn.can_init()?;
        }
        let deadline = Instant::now() + inner.config.max_block;
        let (pid, epoch) = match inner.init_transactional_id(None, deadline).await {
            Ok(p) => p,
            Err(e) => {
                if e.is_fatal() {
                    inner.on_txn_error(&e);
                }
                return Err(e);
            }
        };
        tracing::debug!(producer_id = pid, epoch, "transactional producer ready");
        {
            let mut st = lock(&inner.state);
            let st = &mut *st;
            st.sender.adopt_epoch(&mut st.acc, pid, epoch);
            if let Some(txn) = st.txn.as_mut() {
                txn.complete();
            }
        }
        inner.refresh_transaction_version().await;
        Ok(())
    }

    /// Opens a transaction: records sent from now on commit or abort
    /// together. The protocol (version 2, or 1 on older clusters) is fixed
    /// for the transaction here.
    pub fn begin_transaction(&self) -> Result<(), ProduceError> {
        let inner = &*self.inner;
        let v2 = inner.tv2_available.load(Ordering::Relaxed);
        let mut st = lock(&inner.state);
        let st = &mut *st;
        let txn = st.txn_for("begin_transaction")?;
        txn.begin(v2)?;
        st.sender.begin_transaction(!v2);
        inner
            .txn_mode
            .store(if v2 { TXN_V2 } else { TXN_V1 }, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the open transaction runs under transaction protocol
    /// version 2 (KIP-890); `None` with no transaction open.
    pub fn transaction_version_2(&self) -> Option<bool> {
        match self.inner.txn_mode.load(Ordering::Relaxed) {
            TXN_V1 => Some(false),
            TXN_V2 => Some(true),
            _ => None,
        }
    }

    /// Commits consumed offsets as part of the open transaction
    /// (consume-transform-produce): they take effect only if the
    /// transaction commits. `offsets` are the next offsets to read. The
    /// group coordinator checks `group` (KIP-447): a member that has been
    /// rebalanced away gets an abortable error instead of committing.
    ///
    /// # Cancel safety
    /// Not cancel safe once a request is written. Dropped before, nothing
    /// changes. Dropped after, the offsets may or may not be in the
    /// transaction, and the producer may not have noted that the
    /// coordinator knows the transaction: if it holds no records either, a
    /// later commit or abort then sends no EndTxn, and the broker keeps the
    /// transaction (with those offsets) open until `transaction_timeout`
    /// aborts it. Call it again and let it finish before committing (the
    /// offsets are simply written again).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<TopicPartition, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), ProduceError> {
        let inner = &*self.inner;
        let id = inner.transactional_id()?;
        let v2 = {
            let mut st = lock(&inner.state);
            let txn = st.txn_for("send_offsets_to_transaction")?;
            txn.check_send("send_offsets_to_transaction")?;
            txn.v2
        };
        let deadline = Instant::now() + inner.config.max_block;
        let (pid, epoch) = inner.producer_id_and_epoch();
        let request_timeout = inner.config.client.request_timeout;
        let result = async {
            if !v2 {
                let group_id = group.group_id.as_str();
                inner
                    .coordinator_call(
                        TxnOp::AddOffsets,
                        CoordinatorType::Transaction,
                        id,
                        deadline,
                        |conn| async move {
                            let req = AddOffsetsToTxnRequest {
                                transactional_id: id.to_string(),
                                producer_id: pid,
                                producer_epoch: epoch,
                                group_id: group_id.to_string(),
                                ..Default::default()
                            };
                            let resp = conn.send_timeout(&req, request_timeout).await?;
                            let code = ErrorCode::from_code(resp.error_code);
                            Ok((classify(TxnOp::AddOffsets, code), code, ()))
                        },
                    )
                    .await?;
                lock(&inner.state).sender.mark_transaction_started();
            }
            let mut topics: BTreeMap<
                &str,
                Vec<txn_offset_commit_request::TxnOffsetCommitRequestPartition>,
            > = BTreeMap::new();
            for (tp, offset) in offsets {
                topics.entry(tp.topic.as_str()).or_default().push(
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition {
                        partition_index: tp.partition,
                        committed_offset: *offset,
                        committed_leader_epoch: -1,
                        committed_metadata: None,
                        ..Default::default()
                    },
                );
            }
            let req = TxnOffsetCommitRequest {
                transactional_id: id.to_string(),
                group_id: group.group_id.clone(),
                producer_id: pid,
                producer_epoch: epoch,
                generation_id: group.generation_id,
                member_id: group.member_id.clone(),
                group_instance_id: group.group_instance_id.clone(),
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        txn_offset_commit_request::TxnOffsetCommitRequestTopic {
                            name: name.to_string(),
                            partitions,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            };
            let req = &req;
            inner
                .coordinator_call(
                    TxnOp::TxnOffsetCommit,
                    CoordinatorType::Group,
                    &group.group_id,
                    deadline,
                    |conn| async move {
                        let mut version = conn.version_of::<TxnOffsetCommitRequest>()?;
                        if !v2 {
                            version = version.min(4);
                        }
                        let resp = conn.send_versioned(req, version, request_timeout).await?;
                        let (class, code) = worst(
                            TxnOp::TxnOffsetCommit,
                            resp.topics
                                .iter()
                                .flat_map(|t| t.partitions.iter())
                                .map(|p| p.error_code),
                        );
                        Ok((class, code, ()))
                    },
                )
                .await?;
            lock(&inner.state).sender.mark_transaction_started();
            Ok(())
        }
        .await;
        if let Err(e) = &result {
            inner.on_txn_error(e);
        }
        result
    }

    /// Sends what is buffered, waits for every record of the transaction to
    /// be acknowledged, then commits it. If any record (or the offsets)
    /// failed, nothing is committed and the error is abortable: call
    /// [`abort_transaction`](Self::abort_transaction).
    ///
    /// # Cancel safety
    /// Not cancel safe. The transaction is marked committing at the first
    /// poll, so from then on no record or offset can join it. Dropped before
    /// EndTxn is written (while it flushes or finds the coordinator), the
    /// batches are still delivered and the transaction stays open: call it
    /// again, or [`abort_transaction`](Self::abort_transaction). Dropped
    /// after EndTxn was written, the commit may or may not have happened:
    /// call it again, which resends EndTxn and learns the outcome (the
    /// broker answers a repeated commit of a transaction it completed as
    /// done).
    pub async fn commit_transaction(&self) -> Result<(), ProduceError> {
        let inner = &*self.inner;
        {
            let mut st = lock(&inner.state);
            let txn = st.txn_for("commit_transaction")?;
            txn.start_commit()?;
        }
        self.flush().await;
        // Batches that failed made the transaction abortable meanwhile.
        {
            let mut st = lock(&inner.state);
            if let Some(txn) = st.txn.as_mut() {
                txn.start_commit()?;
            }
        }
        inner.end_transaction(true).await
    }

    /// Aborts the open transaction: records not yet sent fail with
    /// [`ProduceError::TransactionAborted`], records in flight are answered
    /// first, then the broker writes abort markers, so that no
    /// `read_committed` consumer ever sees them. The producer can begin the
    /// next transaction afterwards.
    ///
    /// # Cancel safety
    /// Dropping it leaves the transaction aborting: records not yet sent
    /// have already failed with [`ProduceError::TransactionAborted`],
    /// requests in flight still complete, no record can join, and if EndTxn
    /// was written the broker may already have aborted. Call it again to
    /// finish (a repeated abort is answered as done).
    pub async fn abort_transaction(&self) -> Result<(), ProduceError> {
        let inner = &*self.inner;
        {
            let mut st = lock(&inner.state);
            let txn = st.txn_for("abort_transaction")?;
            txn.start_abort()?;
        }
        loop {
            let notified = inner.progress.notified();
            {
                let mut st = lock(&inner.state);
                let st = &mut *st;
                let failed = st
                    .sender
                    .fail_unsent(&mut st.acc, &ProduceError::TransactionAborted);
                for c in failed {
                    finish(inner, st, c);
                }
                if st.sender.requests_in_flight() == 0 && st.sender.partitions_being_added() == 0 {
                    break;
                }
            }
            inner.wake.notify_one();
            notified.await;
        }
        inner.end_transaction(false).await
    }
}
