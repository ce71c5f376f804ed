//! The sender, sans-io: which batches go to which broker when, what a
//! broker's answer does to each batch, and when the epoch is bumped.
//!
//! It never reads the clock and never touches a socket. The driver calls
//! [`Sender::plan`] with the cluster's leaders and `now`, gets back the
//! produce requests to write, the batches that are done, and when to call
//! again ([`Plan::wake_at`], the timer table folded into one deadline); it
//! hands each request's outcome to [`Sender::on_produce_result`]. Unit tests
//! drive both on virtual time.
//!
//! # Invariants
//!
//! **Ordering.** Within a partition, batches are numbered in the order they
//! were opened and go out in that order; a batch that comes back to be
//! retried is put back in its place ([`PartitionQueue::requeue`]). Up to
//! `max_in_flight` batches of a partition are in flight at once (Java's
//! `max.in.flight.requests.per.connection`, 5 by default), all to the same
//! leader: after a leader change nothing goes to the new leader until every
//! answer from the old one is in. When a batch comes back to be retried,
//! the partition *drains*: nothing more is sent until all of its in-flight
//! batches have answered, then the retried batches go out again in order,
//! with their original sequences. With idempotence the broker enforces the
//! order by sequence number, so pipelining never reorders or duplicates.
//! (Without idempotence, as in Java, a retry can reorder records.)
//!
//! **When a batch may fail.** Only (1) when the broker refuses its
//! partition with a non-retriable error code (nothing was written);
//! (2) when it is not acknowledged within `delivery_timeout` — checked only
//! while the batch is not in flight, as Java does; a batch that was ever
//! sent then has an unknown fate, which the error says; (3) a non-retriable
//! client error after sending (unknown fate); (4) the producer is fenced or
//! closed. Every record of a failed batch gets the typed error.
//!
//! **Unknown fate.** A request written whose answer is lost, late or
//! unreadable may have been written by the broker. Its batches are resent
//! with the *same* producer id, epoch, sequence and bytes; the broker
//! deduplicates its last five batches per producer, so each is written
//! once. A sequence whose fate is unknown is never given to another batch.
//!
//! **What a bump rewrites (KIP-360).** OUT_OF_ORDER_SEQUENCE_NUMBER for the
//! batch right after the last acknowledged one, UNKNOWN_PRODUCER_ID,
//! INVALID_PRODUCER_EPOCH, a refused batch with later batches already
//! numbered behind it, or an abandoned batch that was sent, each mark the
//! sequence state broken. Then no batch gets a new sequence; batches of
//! unaffected partitions that carry a sequence keep being resent until they
//! are resolved (acknowledged, refused or expired). When nothing is in
//! flight and nothing is unresolved, the epoch is bumped on the client
//! (same producer id, epoch + 1; a new id from InitProducerId only when the
//! epoch would overflow), every partition restarts at sequence 0, and every
//! unacknowledged batch is re-numbered in its original order when next sent.
//! A batch is current only when both its producer id and epoch are.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use franz_client::{ClientError, ClusterMetadata};
use franz_protocol::ErrorCode;
use franz_protocol::compression::Compression;
use franz_protocol::messages::ProduceResponse;
use franz_protocol::record::{BatchMeta, set_producer_fields, wrap_sequence};

use crate::accumulator::{Accumulator, PartitionQueue};
use crate::batch::{Batch, BatchAck, OpenBatch};
use crate::error::ProduceError;
use crate::sequence::{BatchOutcome, SequenceState};

mod results;

/// The sender's settings, taken from the producer's configuration.
#[derive(Debug, Clone)]
pub(crate) struct SenderConfig {
    pub(crate) linger: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) max_request_size: usize,
    /// Requests in flight per broker connection, and batches per partition.
    pub(crate) max_in_flight: usize,
    pub(crate) compression: Compression,
    pub(crate) compression_level: Option<u32>,
}

/// A transactional producer's gate on the sender (see `transaction`):
/// under protocol version 1 a partition must be added to the transaction
/// (AddPartitionsToTxn) before its first batch goes out.
#[derive(Debug, Default)]
pub(crate) struct TxnGate {
    /// Partitions must be added explicitly (transaction version 1).
    explicit_add: bool,
    added: HashSet<(Arc<str>, i32)>,
    adding: HashSet<(Arc<str>, i32)>,
    /// The broker knows the transaction: a partition was added, a batch
    /// sent, or offsets committed in it. EndTxn is sent only then (an empty
    /// transaction is unknown to the coordinator).
    started: bool,
}

/// Where each partition's leader is, as the sender sees metadata.
pub(crate) trait Leaders {
    /// The node id of the partition's leader, if it has one that is known.
    fn leader(&self, topic: &str, partition: i32) -> Option<i32>;
}

impl Leaders for ClusterMetadata {
    fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self
            .topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)?;
        (p.partition == partition && p.leader >= 0 && self.brokers.contains_key(&p.leader))
            .then_some(p.leader)
    }
}

/// The sender's bookkeeping for one partition.
#[derive(Debug, Default)]
pub(crate) struct SendState {
    /// Batches of this partition in flight.
    in_flight: usize,
    /// The leader those batches went to.
    leader: i32,
    /// A batch came back to be retried: send nothing until every in-flight
    /// batch has answered and `retry_at` has passed.
    draining: bool,
    retry_at: Option<Instant>,
    /// The sequence after the last acknowledged batch, in the current epoch.
    acked_next: i32,
    /// Whether a batch has been acknowledged in the current epoch. Until
    /// then the partition sends one batch at a time: a broker with no state
    /// for the producer accepts *any* sequence (Kafka 4's
    /// `ProducerAppendInfo`), so a second batch could land before a first
    /// one that failed and is being retried.
    acked_any: bool,
    /// Its sequences cannot be resolved under the current epoch: it waits
    /// for the bump.
    needs_bump: bool,
}

/// One produce request to write: the encoded batches, by partition.
#[derive(Debug)]
pub(crate) struct SendRequest {
    /// Hand it back with [`Sender::on_produce_result`].
    pub(crate) id: u64,
    /// The broker to send it to.
    pub(crate) leader: i32,
    /// (topic, partition, encoded batch), one batch per partition.
    pub(crate) batches: Vec<(Arc<str>, i32, Bytes)>,
    /// The batches' bytes in all.
    pub(crate) size: usize,
}

/// How a produce request ended.
#[derive(Debug)]
pub(crate) enum RequestOutcome {
    /// The broker answered.
    Answered(ProduceResponse),
    /// acks=0: written to the socket, no answer expected.
    Unanswered,
    /// No usable answer: not sent, lost, timed out or unreadable.
    Failed(ClientError),
}

/// A batch that is done, and how.
pub(crate) struct Completion {
    pub(crate) batch: Batch,
    pub(crate) result: Result<BatchAck, ProduceError>,
}

/// What the driver should do now.
#[derive(Default)]
pub(crate) struct Plan {
    /// Requests to write.
    pub(crate) sends: Vec<SendRequest>,
    /// Batches to complete.
    pub(crate) completions: Vec<Completion>,
    /// Refresh metadata (a leader is unknown or moved).
    pub(crate) refresh_metadata: bool,
    /// Ask the broker for a new producer id (the epoch would overflow);
    /// answer with [`Sender::on_producer_id`].
    pub(crate) init_producer_id: bool,
    /// Call `plan` again by then (or sooner, when something happens).
    pub(crate) wake_at: Option<Instant>,
    /// Partitions to add to the open transaction (AddPartitionsToTxn);
    /// answer with [`Sender::on_partitions_added`].
    pub(crate) add_partitions: Vec<(Arc<str>, i32)>,
}

/// A batch with its topic and partition.
type Keyed = (Arc<str>, i32, Batch);

struct InFlight {
    leader: i32,
    batches: Vec<Keyed>,
}

/// A request being put together in one `plan` pass.
struct Building {
    leader: i32,
    batches: Vec<Keyed>,
    size: usize,
}

/// The sans-io sender (see the module doc).
pub(crate) struct Sender {
    config: SenderConfig,
    seq: Option<SequenceState>,
    requests: HashMap<u64, InFlight>,
    per_leader: HashMap<i32, usize>,
    next_id: u64,
    asking_for_id: bool,
    id_retry_at: Option<Instant>,
    refresh_wanted: bool,
    last_refresh: Option<Instant>,
    fatal: Option<ProduceError>,
    bumps: u64,
    /// Transactional producers: the transaction gate. They never bump the
    /// epoch by themselves; a broken sequence makes the transaction
    /// abortable instead.
    txn: Option<TxnGate>,
}

/// What a broker's answer means for one batch.
enum Verdict {
    Done(BatchAck),
    Retry(ProduceError),
    RetryAfterBump(ProduceError),
    /// Refused by the broker: not written.
    Refused(ProduceError),
    /// Failed after sending: fate unknown.
    Failed(ProduceError),
}

/// Whether `seq` lies after `expected` in sequence order (sequences wrap
/// at `i32::MAX`; "after" means within half the range).
fn sequence_ahead(seq: i32, expected: i32) -> bool {
    let distance = (i64::from(seq) - i64::from(expected)).rem_euclid(i64::from(i32::MAX) + 1);
    distance > 0 && distance < (1 << 30)
}

fn min_time(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Sender {
    /// A sender; `seq` is `Some` for an idempotent producer, `transactional`
    /// adds the transaction gate.
    pub(crate) fn new(
        config: SenderConfig,
        seq: Option<SequenceState>,
        transactional: bool,
    ) -> Self {
        Self {
            config,
            seq,
            requests: HashMap::new(),
            per_leader: HashMap::new(),
            next_id: 0,
            asking_for_id: false,
            id_retry_at: None,
            refresh_wanted: false,
            last_refresh: None,
            fatal: None,
            bumps: 0,
            txn: transactional.then(TxnGate::default),
        }
    }

    /// A transaction begins; `explicit_add` under protocol version 1.
    pub(crate) fn begin_transaction(&mut self, explicit_add: bool) {
        if let Some(g) = &mut self.txn {
            *g = TxnGate {
                explicit_add,
                ..TxnGate::default()
            };
        }
    }

    /// The transaction ended (EndTxn answered): partitions must be added
    /// again in the next one.
    pub(crate) fn end_transaction(&mut self) {
        if let Some(g) = &mut self.txn {
            *g = TxnGate::default();
        }
    }

    /// Whether the broker knows the open transaction (see [`TxnGate`]).
    pub(crate) fn transaction_started(&self) -> bool {
        self.txn.as_ref().is_some_and(|g| g.started)
    }

    /// Offsets were committed in the open transaction.
    pub(crate) fn mark_transaction_started(&mut self) {
        if let Some(g) = &mut self.txn {
            g.started = true;
        }
    }

    /// AddPartitionsToTxn requests still unanswered.
    pub(crate) fn partitions_being_added(&self) -> usize {
        self.txn.as_ref().map_or(0, |g| g.adding.len())
    }

    /// AddPartitionsToTxn answered for `partitions`. On success their
    /// batches may go; on failure they stay held (the transaction is
    /// abortable, and the abort fails them).
    pub(crate) fn on_partitions_added(&mut self, partitions: &[(Arc<str>, i32)], ok: bool) {
        if let Some(g) = &mut self.txn {
            for tp in partitions {
                g.adding.remove(tp);
                if ok {
                    g.added.insert(tp.clone());
                    g.started = true;
                }
            }
        }
    }

    /// Adopts a producer id and epoch from the broker (InitProducerId, or
    /// EndTxn under transaction version 2): every partition restarts at
    /// sequence 0. Only with nothing in flight.
    pub(crate) fn adopt_epoch(&mut self, acc: &mut Accumulator, producer_id: i64, epoch: i16) {
        if let Some(seq) = self.seq.as_mut() {
            seq.on_new_epoch(producer_id, epoch);
        }
        Self::restart_sequences(acc);
    }

    /// Whether a partition's sequence broke (a transactional producer then
    /// bumps its epoch after the abort, KIP-360).
    pub(crate) fn sequence_broken(&self) -> bool {
        self.seq.as_ref().is_some_and(SequenceState::bump_needed)
    }

    /// Producer id and epoch (idempotent producers).
    pub(crate) fn producer_id_and_epoch(&self) -> Option<(i64, i16)> {
        self.seq.as_ref().map(|s| (s.producer_id(), s.epoch()))
    }

    /// The error that stopped the producer, if one did.
    pub(crate) fn fatal(&self) -> Option<&ProduceError> {
        self.fatal.as_ref()
    }

    /// Epoch bumps so far.
    #[cfg(test)]
    pub(crate) fn bumps(&self) -> u64 {
        self.bumps
    }

    /// Requests in flight.
    pub(crate) fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// One pass: expire, seal, pick what can go, number it, and say when
    /// to look again. `flushing` seals open batches regardless of `linger`.
    pub(crate) fn plan(
        &mut self,
        acc: &mut Accumulator,
        leaders: &dyn Leaders,
        now: Instant,
        flushing: bool,
    ) -> Plan {
        let mut plan = Plan::default();
        if let Some(fatal) = self.fatal.clone() {
            for batch in acc.take_all() {
                plan.completions.push(Completion {
                    batch,
                    result: Err(fatal.clone()),
                });
            }
            return plan;
        }
        if self.seq.as_ref().is_some_and(SequenceState::bump_needed) && self.requests.is_empty() {
            let unresolved = self.unresolved(acc);
            self.maybe_bump(acc, unresolved, now, &mut plan);
        }
        let bump_pending = self.seq.as_ref().is_some_and(SequenceState::bump_needed);
        let max = self.config.max_in_flight.max(1);
        let mut building: Vec<Building> = Vec::new();
        for tq in acc.topics.values_mut() {
            for (p, q) in tq.partitions.iter_mut().enumerate() {
                let partition = i32::try_from(p).unwrap_or(i32::MAX);
                self.expire(q, now, &mut plan);
                let leader = leaders.leader(&tq.name, partition);
                if leader.is_none() && (q.open.is_some() || !q.queued.is_empty()) {
                    self.refresh_wanted = true;
                }
                let slot = leader.and_then(|l| self.slot_for(l, &building, max));
                let can_go = self.partition_can_send(q, leader, now, max, &mut plan.wake_at);
                self.seal_open(q, now, flushing, can_go && slot.is_some(), &mut plan);
                if let Some(front) = q.queued.front() {
                    plan.wake_at =
                        min_time(plan.wake_at, front.created + self.config.delivery_timeout);
                }
                if let Some(g) = &mut self.txn
                    && g.explicit_add
                    && (q.open.is_some() || !q.queued.is_empty())
                {
                    let tp = (Arc::clone(&tq.name), partition);
                    if !g.added.contains(&tp) {
                        if g.adding.insert(tp.clone()) {
                            plan.add_partitions.push(tp);
                        }
                        continue;
                    }
                }
                let (Some(leader), Some(slot), true) = (leader, slot, can_go) else {
                    continue;
                };
                let Some(front) = q.queued.front() else {
                    continue;
                };
                // While a bump is pending no batch gets a new sequence; a
                // batch that already carries a current one may still be
                // resolved by resending it.
                if bump_pending
                    && !(front.sent_once
                        && self
                            .seq
                            .as_ref()
                            .is_some_and(|s| s.is_current(front.producer_id, front.epoch)))
                {
                    continue;
                }
                let size = front.size();
                let slot = match slot {
                    Some(i)
                        if building[i].size + size > self.config.max_request_size
                            && !building[i].batches.is_empty() =>
                    {
                        // Full: open another request to the same broker if
                        // its connection has room.
                        if self.leader_load(leader, &building) >= max {
                            continue;
                        }
                        None
                    }
                    s => s,
                };
                let Some(mut batch) = q.queued.pop_front() else {
                    continue;
                };
                if let Err(e) = self.encode(&tq.name, partition, &mut batch) {
                    plan.completions.push(self.fail(q, batch, e));
                    continue;
                }
                q.send.in_flight += 1;
                q.send.leader = leader;
                if let Some(g) = &mut self.txn {
                    g.started = true;
                }
                let i = match slot {
                    Some(i) => i,
                    None => {
                        building.push(Building {
                            leader,
                            batches: Vec::new(),
                            size: 0,
                        });
                        building.len() - 1
                    }
                };
                building[i].size += size;
                building[i]
                    .batches
                    .push((Arc::clone(&tq.name), partition, batch));
            }
        }
        for Building {
            leader,
            batches,
            size,
        } in building
        {
            let id = self.next_id;
            self.next_id += 1;
            *self.per_leader.entry(leader).or_insert(0) += 1;
            let wire = batches
                .iter()
                .filter_map(|(t, p, b)| Some((Arc::clone(t), *p, b.payload.clone()?)))
                .collect();
            plan.sends.push(SendRequest {
                id,
                leader,
                batches: wire,
                size,
            });
            self.requests.insert(id, InFlight { leader, batches });
        }
        if self.refresh_wanted {
            let due = self
                .last_refresh
                .map_or(now, |t| t + self.config.retry_backoff);
            if now >= due {
                self.refresh_wanted = false;
                self.last_refresh = Some(now);
                plan.refresh_metadata = true;
            } else {
                plan.wake_at = min_time(plan.wake_at, due);
            }
        }
        plan
    }

    /// Where a batch for `leader` can go in this pass: `Some(Some(i))` joins
    /// the request being built at `i`, `Some(None)` starts a new one (the
    /// connection has room), `None` waits (it has not).
    fn slot_for(&self, leader: i32, building: &[Building], max: usize) -> Option<Option<usize>> {
        match building.iter().rposition(|b| b.leader == leader) {
            Some(i) => Some(Some(i)),
            None if self.leader_load(leader, building) < max => Some(None),
            None => None,
        }
    }

    /// Requests to `leader` in flight or being built.
    fn leader_load(&self, leader: i32, building: &[Building]) -> usize {
        self.per_leader.get(&leader).copied().unwrap_or(0)
            + building.iter().filter(|b| b.leader == leader).count()
    }

    /// Whether the partition may send its next batch now (ignoring the
    /// connection's slots): not waiting for a bump, not draining, under
    /// its in-flight limit, and not moving to a new leader with answers
    /// from the old one outstanding.
    fn partition_can_send(
        &self,
        q: &mut PartitionQueue,
        leader: Option<i32>,
        now: Instant,
        max: usize,
        wake_at: &mut Option<Instant>,
    ) -> bool {
        let s = &mut q.send;
        if s.needs_bump {
            return false;
        }
        if let Some(t) = s.retry_at {
            if t > now {
                *wake_at = min_time(*wake_at, t);
                return false;
            }
            s.retry_at = None;
        }
        if s.draining {
            if s.in_flight > 0 {
                return false;
            }
            s.draining = false;
        }
        let Some(leader) = leader else { return false };
        if s.in_flight > 0 && (s.leader != leader || !s.acked_any) {
            return false;
        }
        s.in_flight < max
    }

    /// Expires queued batches (never in-flight ones) past the delivery
    /// timeout, oldest first.
    fn expire(&mut self, q: &mut PartitionQueue, now: Instant, plan: &mut Plan) {
        let timeout = self.config.delivery_timeout;
        while q
            .queued
            .front()
            .is_some_and(|b| now.duration_since(b.created) >= timeout)
        {
            if let Some(b) = q.queued.pop_front() {
                let err = self.timeout_error(&b);
                plan.completions.push(self.fail(q, b, err));
            }
        }
        if q.open
            .as_ref()
            .is_some_and(|o| now.duration_since(o.created) >= timeout)
            && let Some(open) = q.open.take()
        {
            let b = open.seal();
            let err = self.timeout_error(&b);
            plan.completions.push(self.fail(q, b, err));
        }
    }

    fn timeout_error(&self, batch: &Batch) -> ProduceError {
        ProduceError::DeliveryTimeout {
            after: self.config.delivery_timeout,
            sent: batch.sent_once,
            last_error: batch.last_error.clone().map(Box::new),
        }
    }

    /// Seals the open batch once `linger` has passed (or at once when
    /// flushing), but only when it can go now: while the partition cannot
    /// send, records keep joining it, as Java's accumulator appends to its
    /// last undrained batch (sealing per send with `linger` 0 made a
    /// one-record batch per round trip).
    fn seal_open(
        &self,
        q: &mut PartitionQueue,
        now: Instant,
        flushing: bool,
        can_go: bool,
        plan: &mut Plan,
    ) {
        let Some(open) = &q.open else { return };
        let due = open.created + self.config.linger;
        if !flushing && now < due {
            plan.wake_at = min_time(plan.wake_at, due);
            return;
        }
        if can_go
            && q.queued.is_empty()
            && let Some(open) = q.open.take()
        {
            q.queued.push_back(open.seal());
        }
    }

    /// Numbers the batch (first send, or first send after a bump) and
    /// encodes it; a retry keeps its bytes.
    fn encode(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &mut Batch,
    ) -> Result<(), ProduceError> {
        let (pid, epoch, base) = match self.seq.as_mut() {
            Some(s) => {
                if batch.payload.is_some() && s.is_current(batch.producer_id, batch.epoch) {
                    return Ok(());
                }
                let base = s.assign(topic, partition, batch.records);
                (s.producer_id(), s.epoch(), base)
            }
            None if batch.payload.is_some() => return Ok(()),
            None => (-1, -1, -1),
        };
        match (batch.builder.take(), batch.payload.take()) {
            (Some(builder), _) => {
                let meta = BatchMeta {
                    compression: self.config.compression,
                    compression_level: self.config.compression_level,
                    producer_id: pid,
                    producer_epoch: epoch,
                    base_sequence: base,
                    // A transactional producer sends only inside
                    // transactions; without the flag the broker would
                    // write the batch as plain idempotent data, visible at
                    // once and never aborted.
                    transactional: self.txn.is_some(),
                    ..BatchMeta::default()
                };
                batch.payload = Some(builder.finish(&meta)?);
            }
            (None, Some(old)) => {
                let mut bytes = BytesMut::from(&old[..]);
                set_producer_fields(&mut bytes, pid, epoch, base)?;
                batch.payload = Some(bytes.freeze());
            }
            (None, None) => {
                return Err(ProduceError::Fatal("batch without records".into()));
            }
        }
        batch.producer_id = pid;
        batch.epoch = epoch;
        batch.base_sequence = base;
        Ok(())
    }

    /// Fails a batch. One that was sent under the current epoch and never
    /// answered for has an unknown fate: its sequence cannot be trusted, so
    /// the epoch must be bumped.
    fn fail(&mut self, q: &mut PartitionQueue, batch: Batch, err: ProduceError) -> Completion {
        if batch.sent_once
            && let Some(seq) = self.seq.as_mut()
            && seq.is_current(batch.producer_id, batch.epoch)
        {
            seq.on_sent_batch_abandoned();
            q.send.needs_bump = true;
        }
        Completion {
            batch,
            result: Err(err),
        }
    }

    /// Whether a partition not waiting for the bump still holds a batch
    /// numbered under the current epoch whose fate is unknown: it must be
    /// resolved (resent under the old epoch) before the bump. Numbered
    /// batches are older than unnumbered ones, so the front tells.
    fn unresolved(&self, acc: &Accumulator) -> bool {
        let Some(seq) = &self.seq else { return false };
        acc.topics.values().any(|tq| {
            tq.partitions.iter().any(|q| {
                !q.send.needs_bump
                    && q.queued
                        .front()
                        .is_some_and(|b| b.sent_once && seq.is_current(b.producer_id, b.epoch))
            })
        })
    }

    /// Bumps the epoch once nothing is in flight and nothing resolvable is
    /// left (see the module doc).
    fn maybe_bump(
        &mut self,
        acc: &mut Accumulator,
        unresolved: bool,
        now: Instant,
        plan: &mut Plan,
    ) {
        let Some(seq) = self.seq.as_mut() else { return };
        if self.txn.is_some()
            || !seq.bump_needed()
            || !self.requests.is_empty()
            || unresolved
            || self.asking_for_id
        {
            return;
        }
        if let Some(t) = self.id_retry_at {
            if t > now {
                plan.wake_at = min_time(plan.wake_at, t);
                return;
            }
            self.id_retry_at = None;
        }
        match seq.bump_locally() {
            Some((producer_id, epoch)) => {
                tracing::info!(producer_id, epoch, "producer epoch bumped");
                self.bumps += 1;
                Self::restart_sequences(acc);
            }
            None => {
                self.asking_for_id = true;
                plan.init_producer_id = true;
            }
        }
    }

    /// Under a new epoch every partition starts over at sequence 0; what
    /// was sent under the old one was not written (or was resolved first).
    fn restart_sequences(acc: &mut Accumulator) {
        for tq in acc.topics.values_mut() {
            for q in &mut tq.partitions {
                q.send = SendState::default();
                for b in &mut q.queued {
                    b.sent_once = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
