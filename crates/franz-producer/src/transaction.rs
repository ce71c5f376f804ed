//! Transactions, sans-io: the transaction's state, and what each error code
//! from a transactional request means (retry, abort, or the end of the
//! producer), following the Java client's rules.
//!
//! # States
//! ```text
//! Uninitialized --init_transactions--> Ready --begin--> InTransaction
//! InTransaction --commit--> Committing --EndTxn ok--> Ready
//! InTransaction | Abortable --abort--> Aborting --EndTxn ok--> Ready
//! InTransaction --a batch or request fails--> Abortable(cause)
//! any --fenced, or a fatal code--> Fatal(cause)
//! ```
//! An abortable error means this transaction cannot commit: abort it and
//! begin the next. A fatal one means this producer can do nothing more
//! (another instance took the transactional id over, or the broker refuses
//! the id): drop it, and create a new producer to go on.
//!
//! # Protocol versions (KIP-890)
//! Each transaction runs under one protocol, chosen when it begins from the
//! cluster's finalized `transaction.version`:
//! - **version 2** (Kafka 4.0+ default): a partition joins the transaction
//!   with its first Produce (v12+), offsets with TxnOffsetCommit v5, and
//!   EndTxn v5 returns a new epoch (or, at overflow, a new producer id)
//!   which the producer adopts, every partition restarting at sequence 0.
//! - **version 1 and below**: AddPartitionsToTxn before a partition's first
//!   batch, AddOffsetsToTxn before TxnOffsetCommit, and the epoch stays
//!   across transactions (sequences continue). After an abortable error
//!   that broke a partition's sequence, the abort is followed by
//!   InitProducerId with the current id and epoch (KIP-360), which bumps
//!   the epoch.
//!
//! Transactional producers never bump the epoch by themselves while a
//! transaction is open: a sequence error makes the transaction abortable.

use franz_protocol::ErrorCode;

use crate::error::ProduceError;

/// Where the transaction is.
#[derive(Debug, Clone)]
pub(crate) enum TxnState {
    /// `init_transactions` has not succeeded yet.
    Uninitialized,
    /// No transaction open.
    Ready,
    /// A transaction is open.
    InTransaction,
    /// `commit_transaction` is under way.
    Committing,
    /// `abort_transaction` is under way.
    Aborting,
    /// The open transaction must be aborted.
    Abortable(ProduceError),
    /// The producer can do nothing more.
    Fatal(ProduceError),
}

impl TxnState {
    fn name(&self) -> &'static str {
        match self {
            Self::Uninitialized => "uninitialized",
            Self::Ready => "ready",
            Self::InTransaction => "in a transaction",
            Self::Committing => "committing",
            Self::Aborting => "aborting",
            Self::Abortable(_) => "abortable",
            Self::Fatal(_) => "fatal",
        }
    }
}

/// A transactional producer's transaction.
#[derive(Debug)]
pub(crate) struct Txn {
    pub(crate) state: TxnState,
    /// The current transaction runs under protocol version 2.
    pub(crate) v2: bool,
}

impl Txn {
    pub(crate) fn new() -> Self {
        Self {
            state: TxnState::Uninitialized,
            v2: false,
        }
    }

    fn misuse(&self, operation: &'static str) -> ProduceError {
        match &self.state {
            TxnState::Fatal(e) => e.clone(),
            s => ProduceError::InvalidTransactionState {
                operation,
                state: s.name(),
            },
        }
    }

    /// `init_transactions` may start (first call, or again after it failed
    /// retriably).
    pub(crate) fn can_init(&self) -> Result<(), ProduceError> {
        match self.state {
            TxnState::Uninitialized => Ok(()),
            _ => Err(self.misuse("init_transactions")),
        }
    }

    /// `begin_transaction`, under protocol version 2 if `v2`.
    pub(crate) fn begin(&mut self, v2: bool) -> Result<(), ProduceError> {
        match self.state {
            TxnState::Ready => {
                self.state = TxnState::InTransaction;
                self.v2 = v2;
                Ok(())
            }
            _ => Err(self.misuse("begin_transaction")),
        }
    }

    /// Whether records (or offsets) may join the transaction now.
    pub(crate) fn check_send(&self, operation: &'static str) -> Result<(), ProduceError> {
        match &self.state {
            TxnState::InTransaction => Ok(()),
            TxnState::Abortable(e) => Err(e.clone()),
            _ => Err(self.misuse(operation)),
        }
    }

    /// A record's batch failed inside the transaction: it cannot commit.
    pub(crate) fn on_batch_failed(&mut self, cause: &ProduceError) {
        if cause.is_fatal() {
            self.fail_fatal(cause.clone());
        } else {
            self.fail_abortable(cause.clone());
        }
    }

    /// The open transaction cannot commit any more.
    pub(crate) fn fail_abortable(&mut self, cause: ProduceError) {
        if matches!(self.state, TxnState::InTransaction | TxnState::Committing) {
            // Already the abortable error itself: not wrapped twice.
            self.state = TxnState::Abortable(if cause.is_abortable() {
                cause
            } else {
                ProduceError::TransactionAbortable {
                    cause: Box::new(cause),
                }
            });
        }
    }

    /// The producer is done for.
    pub(crate) fn fail_fatal(&mut self, cause: ProduceError) {
        if !matches!(self.state, TxnState::Fatal(_)) {
            self.state = TxnState::Fatal(cause);
        }
    }

    /// `commit_transaction` may start.
    pub(crate) fn start_commit(&mut self) -> Result<(), ProduceError> {
        match &self.state {
            TxnState::InTransaction | TxnState::Committing => {
                self.state = TxnState::Committing;
                Ok(())
            }
            TxnState::Abortable(e) => Err(e.clone()),
            _ => Err(self.misuse("commit_transaction")),
        }
    }

    /// `abort_transaction` may start.
    pub(crate) fn start_abort(&mut self) -> Result<(), ProduceError> {
        match &self.state {
            TxnState::InTransaction
            | TxnState::Abortable(_)
            | TxnState::Committing
            | TxnState::Aborting => {
                self.state = TxnState::Aborting;
                Ok(())
            }
            _ => Err(self.misuse("abort_transaction")),
        }
    }

    /// EndTxn succeeded (or init did): no transaction open.
    pub(crate) fn complete(&mut self) {
        if !matches!(self.state, TxnState::Fatal(_)) {
            self.state = TxnState::Ready;
        }
    }

    /// The fatal error, if the producer has one.
    pub(crate) fn fatal(&self) -> Option<&ProduceError> {
        match &self.state {
            TxnState::Fatal(e) => Some(e),
            _ => None,
        }
    }
}

/// A transactional request, for classifying its error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnOp {
    InitProducerId,
    AddPartitions,
    AddOffsets,
    TxnOffsetCommit,
    EndTxn { commit: bool },
}

impl TxnOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::InitProducerId => "InitProducerId",
            Self::AddPartitions => "AddPartitionsToTxn",
            Self::AddOffsets => "AddOffsetsToTxn",
            Self::TxnOffsetCommit => "TxnOffsetCommit",
            Self::EndTxn { .. } => "EndTxn",
        }
    }
}

/// What an error code from a transactional request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnCode {
    Ok,
    /// Send it again after a backoff; `refind` the coordinator first.
    Retry {
        refind: bool,
    },
    /// Another producer with this transactional id took over.
    Fenced,
    /// This transaction must be aborted.
    Abortable,
    /// This producer can do nothing more.
    Fatal,
}

/// Java's classification (TransactionManager's handlers, Kafka 4.1).
pub(crate) fn classify(op: TxnOp, code: ErrorCode) -> TxnCode {
    use ErrorCode as E;
    match code {
        E::None => TxnCode::Ok,
        E::NotCoordinator | E::CoordinatorNotAvailable => TxnCode::Retry { refind: true },
        E::RequestTimedOut if op == TxnOp::TxnOffsetCommit => TxnCode::Retry { refind: true },
        E::InvalidProducerEpoch | E::ProducerFenced => TxnCode::Fenced,
        E::TransactionalIdAuthorizationFailed
        | E::InvalidTxnState
        | E::InvalidProducerIdMapping
        | E::UnsupportedVersion
        | E::UnsupportedForMessageFormat
        | E::ClusterAuthorizationFailed => TxnCode::Fatal,
        // Aborting cannot itself be aborted.
        E::TransactionAbortable if op == (TxnOp::EndTxn { commit: false }) => TxnCode::Fatal,
        E::TransactionAbortable | E::UnknownProducerId => TxnCode::Abortable,
        E::FencedInstanceId
        | E::UnknownMemberId
        | E::IllegalGeneration
        | E::GroupAuthorizationFailed
            if op == TxnOp::TxnOffsetCommit =>
        {
            TxnCode::Abortable
        }
        c if c.is_retriable() => TxnCode::Retry { refind: false },
        _ => match op {
            TxnOp::InitProducerId | TxnOp::EndTxn { .. } => TxnCode::Fatal,
            TxnOp::AddPartitions | TxnOp::AddOffsets | TxnOp::TxnOffsetCommit => TxnCode::Abortable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_and_misuse() {
        let mut t = Txn::new();
        assert!(matches!(
            t.begin(true),
            Err(ProduceError::InvalidTransactionState {
                operation: "begin_transaction",
                state: "uninitialized"
            })
        ));
        t.complete(); // init succeeded
        t.begin(true).unwrap();
        assert!(t.v2);
        t.check_send("send").unwrap();
        assert!(t.begin(false).is_err(), "already open");
        t.start_commit().unwrap();
        t.complete();
        assert!(matches!(
            t.check_send("send"),
            Err(ProduceError::InvalidTransactionState { .. })
        ));
        assert!(t.start_abort().is_err(), "nothing to abort");
    }

    #[test]
    fn a_failed_batch_makes_the_transaction_abortable_and_abort_recovers() {
        let mut t = Txn::new();
        t.complete();
        t.begin(false).unwrap();
        t.on_batch_failed(&ProduceError::Closed);
        let err = t.start_commit().unwrap_err();
        assert!(err.is_abortable(), "{err}");
        assert!(t.check_send("send").unwrap_err().is_abortable());
        t.start_abort().unwrap();
        t.complete();
        t.begin(false).unwrap();
    }

    #[test]
    fn fencing_is_fatal_for_good() {
        let mut t = Txn::new();
        t.complete();
        t.begin(true).unwrap();
        t.on_batch_failed(&ProduceError::ProducerFenced {
            producer_id: 1,
            epoch: 0,
        });
        assert!(matches!(
            t.start_abort(),
            Err(ProduceError::ProducerFenced { .. })
        ));
        t.complete();
        assert!(t.fatal().is_some(), "complete does not revive it");
    }

    #[test]
    fn codes_are_classified_as_java_does() {
        use ErrorCode as E;
        let commit = TxnOp::EndTxn { commit: true };
        let abort = TxnOp::EndTxn { commit: false };
        assert_eq!(classify(commit, E::None), TxnCode::Ok);
        assert_eq!(
            classify(commit, E::NotCoordinator),
            TxnCode::Retry { refind: true }
        );
        assert_eq!(
            classify(commit, E::ConcurrentTransactions),
            TxnCode::Retry { refind: false }
        );
        assert_eq!(
            classify(TxnOp::AddPartitions, E::CoordinatorLoadInProgress),
            TxnCode::Retry { refind: false }
        );
        assert_eq!(classify(commit, E::ProducerFenced), TxnCode::Fenced);
        assert_eq!(classify(commit, E::InvalidProducerEpoch), TxnCode::Fenced);
        assert_eq!(classify(commit, E::InvalidTxnState), TxnCode::Fatal);
        assert_eq!(
            classify(commit, E::TransactionAbortable),
            TxnCode::Abortable
        );
        assert_eq!(classify(abort, E::TransactionAbortable), TxnCode::Fatal);
        assert_eq!(
            classify(TxnOp::TxnOffsetCommit, E::IllegalGeneration),
            TxnCode::Abortable
        );
        assert_eq!(
            classify(TxnOp::TxnOffsetCommit, E::RequestTimedOut),
            TxnCode::Retry { refind: true }
        );
        assert_eq!(
            classify(TxnOp::AddPartitions, E::TopicAuthorizationFailed),
            TxnCode::Abortable
        );
        assert_eq!(
            classify(TxnOp::InitProducerId, E::UnknownServerError),
            TxnCode::Fatal
        );
    }
}
