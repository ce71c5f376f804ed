//! The sender on virtual time, against a model broker that keeps an
//! idempotent log the way Kafka does (per producer: epoch, next sequence,
//! the last five batches for deduplication). No sockets, no clock: `now`
//! only moves when a test moves it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // virtual time starts at one real Instant

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_protocol::ErrorCode;
use franz_protocol::messages::ProduceResponse;
use franz_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::{BatchDecodeOptions, RecordBatches};
use tokio::sync::Semaphore;

use super::*;
use crate::ProducerRecord;
use crate::accumulator::record_size;
use crate::batch::DeliveryFuture;

const TOPIC: &str = "t";

/// Leaders by partition of the one topic.
struct Leaders1(HashMap<i32, i32>);

impl Leaders for Leaders1 {
    fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        (topic == TOPIC).then(|| self.0.get(&partition).copied())?
    }
}

/// What the model broker keeps per producer id.
struct ProducerEntry {
    epoch: i16,
    next: i32,
    /// (base sequence, base offset) of the last five batches.
    recent: VecDeque<(i32, i64)>,
}

/// One partition's log on the model broker.
#[derive(Default)]
struct ModelLog {
    values: Vec<String>,
    producers: HashMap<i64, ProducerEntry>,
}

fn header(payload: &[u8]) -> (i64, i16, i32, i32) {
    let pid = i64::from_be_bytes(payload[43..51].try_into().unwrap());
    let epoch = i16::from_be_bytes(payload[51..53].try_into().unwrap());
    let seq = i32::from_be_bytes(payload[53..57].try_into().unwrap());
    let count = i32::from_be_bytes(payload[57..61].try_into().unwrap());
    (pid, epoch, seq, count)
}

impl ModelLog {
    /// Appends a batch as a Kafka 4 broker would: an unknown producer is
    /// accepted at any sequence; a newer epoch only at 0; a batch among the
    /// last five is a duplicate acknowledged at its first offset.
    fn append(&mut self, payload: &Bytes) -> (ErrorCode, i64) {
        let (pid, epoch, seq, count) = header(payload);
        let base_offset = self.values.len() as i64;
        if let Some(p) = self.producers.get(&pid) {
            if epoch < p.epoch {
                return (ErrorCode::InvalidProducerEpoch, -1);
            }
            if epoch == p.epoch {
                if let Some((_, off)) = p.recent.iter().find(|(s, _)| *s == seq) {
                    return (ErrorCode::None, *off);
                }
                if seq != p.next {
                    return (ErrorCode::OutOfOrderSequenceNumber, -1);
                }
            } else if seq != 0 {
                return (ErrorCode::OutOfOrderSequenceNumber, -1);
            }
        }
        let entry = self.producers.entry(pid).or_insert(ProducerEntry {
            epoch,
            next: 0,
            recent: VecDeque::new(),
        });
        if entry.epoch != epoch {
            entry.recent.clear();
        }
        entry.epoch = epoch;
        entry.next = wrap_sequence(seq, count);
        entry.recent.push_back((seq, base_offset));
        if entry.recent.len() > 5 {
            entry.recent.pop_front();
        }
        for batch in RecordBatches::new(payload.clone(), BatchDecodeOptions::default()) {
            let batch = batch.unwrap();
            for r in &batch.records(&DecodeLimits::default()).unwrap() {
                let r = r.unwrap();
                self.values
                    .push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        (ErrorCode::None, base_offset)
    }
}

/// What the model broker does with one partition's batch in a request.
#[derive(Clone, Copy)]
enum Fault {
    /// Write it (or not) as Kafka would, and answer.
    None,
    /// Do not look at it; answer with this code.
    Refuse(ErrorCode),
}

struct Harness {
    acc: Accumulator,
    sender: Sender,
    leaders: Leaders1,
    now: Instant,
    logs: HashMap<i32, ModelLog>,
    futures: Vec<(String, DeliveryFuture)>,
    results: HashMap<String, Result<BatchAck, ProduceError>>,
    next_value: u64,
}

fn config(max_in_flight: usize) -> SenderConfig {
    SenderConfig {
        linger: Duration::ZERO,
        delivery_timeout: Duration::from_secs(120),
        retry_backoff: Duration::from_millis(100),
        max_request_size: 1 << 20,
        max_in_flight,
        compression: Compression::None,
        compression_level: None,
    }
}

impl Harness {
    fn new(partitions: i32, max_in_flight: usize) -> Self {
        Self::with(partitions, config(max_in_flight), (7, 0))
    }

    fn with(partitions: i32, config: SenderConfig, (pid, epoch): (i64, i16)) -> Self {
        Self {
            acc: Accumulator::new(16 * 1024, Arc::new(Semaphore::new(64 << 20))),
            sender: Sender::new(config, Some(SequenceState::new(pid, epoch)), false),
            leaders: Leaders1((0..partitions).map(|p| (p, 1)).collect()),
            now: Instant::now(),
            logs: HashMap::new(),
            futures: Vec::new(),
            results: HashMap::new(),
            next_value: 0,
        }
    }

    /// Appends one record with the next number as its value.
    fn append(&mut self, partition: i32) -> String {
        let value = self.next_value.to_string();
        self.next_value += 1;
        let r = ProducerRecord::new(TOPIC, value.clone());
        let size = record_size(&r);
        let now = self.now;
        let a = self
            .acc
            .try_append(r, partition, size, 0, || now)
            .ok()
            .unwrap();
        self.futures.push((value.clone(), a.future));
        value
    }

    fn plan(&mut self) -> Plan {
        let mut plan = self
            .sender
            .plan(&mut self.acc, &self.leaders, self.now, false);
        for c in std::mem::take(&mut plan.completions) {
            self.complete(c);
        }
        plan
    }

    fn complete(&mut self, c: Completion) {
        self.acc.release(&c.batch);
        c.batch.shared.complete(c.result);
    }

    /// Delivers `req` to the model broker, which handles each partition's
    /// batch as `fault` says, and hands the answer to the sender unless
    /// `lose_answer` (then the sender hears `Decode`: written, unreadable).
    fn deliver(&mut self, req: &SendRequest, fault: impl Fn(i32) -> Fault, lose_answer: bool) {
        let mut partition_responses = Vec::new();
        for (_, p, payload) in &req.batches {
            let (code, base_offset) = match fault(*p) {
                Fault::None => self.logs.entry(*p).or_default().append(payload),
                Fault::Refuse(code) => (code, -1),
            };
            partition_responses.push(PartitionProduceResponse {
                index: *p,
                error_code: code.code(),
                base_offset,
                log_append_time_ms: -1,
                ..Default::default()
            });
        }
        let outcome = if lose_answer {
            RequestOutcome::Failed(ClientError::Decode {
                broker: "model".into(),
                source: franz_protocol::DecodeError::Truncated {
                    field: "ProduceResponse",
                    needed: 8,
                    remaining: 2,
                },
            })
        } else {
            RequestOutcome::Answered(ProduceResponse {
                responses: vec![TopicProduceResponse {
                    name: TOPIC.into(),
                    partition_responses,
                    ..Default::default()
                }],
                ..Default::default()
            })
        };
        self.answer(req.id, &outcome);
    }

    fn answer(&mut self, id: u64, outcome: &RequestOutcome) {
        for c in self
            .sender
            .on_produce_result(&mut self.acc, id, outcome, self.now)
        {
            self.complete(c);
        }
    }

    /// Plans and delivers everything until nothing is left to send,
    /// moving time past backoffs.
    fn run_clean(&mut self) {
        for _ in 0..100 {
            let plan = self.plan();
            if plan.sends.is_empty() {
                if self.acc.is_empty() {
                    return;
                }
                self.now += Duration::from_millis(150);
                continue;
            }
            for req in &plan.sends {
                self.deliver(req, |_| Fault::None, false);
            }
        }
        panic!("did not settle");
    }

    /// Every record's outcome, by value.
    fn outcomes(&mut self) -> Vec<(String, Result<i64, ProduceError>)> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        self.futures
            .iter_mut()
            .map(|(v, f)| match std::pin::Pin::new(f).poll(&mut cx) {
                std::task::Poll::Ready(r) => (v.clone(), r.map(|m| m.offset)),
                std::task::Poll::Pending => panic!("record {v} still pending"),
            })
            .collect()
    }

    fn log(&self, partition: i32) -> Vec<String> {
        self.logs
            .get(&partition)
            .map(|l| l.values.clone())
            .unwrap_or_default()
    }

    fn epoch(&self) -> (i64, i16) {
        self.sender.producer_id_and_epoch().unwrap()
    }
}

use std::future::Future;

fn values(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

fn sequences(req: &SendRequest) -> Vec<(i32, i16, i32)> {
    req.batches
        .iter()
        .map(|(_, p, b)| {
            let (_, epoch, seq, _) = header(b);
            (*p, epoch, seq)
        })
        .collect()
}

#[test]
fn up_to_five_batches_of_a_partition_are_in_flight_then_records_accumulate() {
    let mut h = Harness::new(1, 5);
    h.append(0);
    let first = h.plan().sends;
    h.append(0);
    assert!(
        h.plan().sends.is_empty(),
        "one at a time until the broker has acknowledged one"
    );
    h.run_clean_from_sends(&first);
    let mut requests = Vec::new();
    for _ in 0..18 {
        h.append(0);
        requests.extend(h.plan().sends);
    }
    assert_eq!(requests.len(), 5, "five single-record batches in flight");
    assert_eq!(
        requests
            .iter()
            .map(|r| sequences(r)[0].2)
            .collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6],
        "numbered in order"
    );
    // The other 15 records joined one open batch while the window was full.
    for req in &requests {
        h.deliver(req, |_| Fault::None, false);
    }
    let next = h.plan().sends;
    assert_eq!(next.len(), 1);
    assert_eq!(sequences(&next[0]), vec![(0, 0, 7)]);
    h.deliver(&next[0], |_| Fault::None, false);
    assert_eq!(h.log(0), values(0..20));
    assert!(h.outcomes().iter().all(|(_, r)| r.is_ok()));
}

#[test]
fn with_one_in_flight_a_partition_waits_for_each_answer() {
    let mut h = Harness::new(1, 1);
    h.append(0);
    assert_eq!(h.plan().sends.len(), 1);
    h.append(0);
    assert!(h.plan().sends.is_empty(), "waits for the answer");
}

#[test]
fn a_retriable_error_drains_the_window_then_resends_in_order_without_a_bump() {
    let mut h = Harness::new(1, 5);
    let requests = h.acked_then_window(5);
    // The first batch is refused as retriable (nothing written); the model
    // broker then answers the four behind it out of order, as Kafka does.
    h.deliver(
        &requests[0],
        |_| Fault::Refuse(ErrorCode::NotLeaderOrFollower),
        false,
    );
    h.append(0);
    assert!(h.plan().sends.is_empty(), "draining: nothing new");
    for req in &requests[1..] {
        h.deliver(req, |_| Fault::None, false);
    }
    assert!(h.plan().sends.is_empty(), "backoff");
    h.now += Duration::from_millis(100);
    let resent = h.plan().sends;
    assert_eq!(resent.len(), 1, "one batch per partition per request");
    assert_eq!(sequences(&resent[0]), vec![(0, 0, 1)], "same sequence");
    h.deliver(&resent[0], |_| Fault::None, false);
    h.run_clean();
    assert_eq!(h.log(0), values(0..7), "each once, in order");
    assert_eq!(h.sender.bumps(), 0);
    assert_eq!(h.epoch(), (7, 0));
}

#[test]
fn a_genuine_out_of_order_bumps_once_and_resequences_from_zero() {
    let mut h = Harness::new(1, 5);
    let requests = h.acked_then_window(3);
    // The broker lost track of the sequence: the batch right after the last
    // acknowledged one is out of order, and so are the two behind it.
    for req in &requests {
        h.deliver(
            req,
            |_| Fault::Refuse(ErrorCode::OutOfOrderSequenceNumber),
            false,
        );
    }
    let resent = h.plan().sends;
    assert_eq!(h.sender.bumps(), 1, "exactly one bump");
    assert_eq!(resent.len(), 1, "one at a time until acknowledged again");
    assert_eq!(h.epoch(), (7, 1), "same id, epoch + 1");
    assert_eq!(sequences(&resent[0]), vec![(0, 1, 0)], "restarts at 0");
    h.deliver(&resent[0], |_| Fault::None, false);
    h.run_clean();
    assert_eq!(h.log(0), values(0..4));
    assert_eq!(h.sender.bumps(), 1);
    assert!(h.outcomes().iter().all(|(_, r)| r.is_ok()));
}

#[test]
fn an_unknown_producer_bumps_once() {
    let mut h = Harness::new(1, 5);
    h.append(0);
    let req = h.plan().sends.remove(0);
    h.deliver(&req, |_| Fault::Refuse(ErrorCode::UnknownProducerId), false);
    h.run_clean();
    assert_eq!(h.sender.bumps(), 1);
    assert_eq!(h.log(0), values(0..1));
}

#[test]
fn an_unreadable_answer_is_resolved_by_the_same_sequence_and_never_reused() {
    let mut h = Harness::new(1, 5);
    h.append(0);
    let req = h.plan().sends.remove(0);
    // Written by the broker, answer unreadable.
    h.deliver(&req, |_| Fault::None, true);
    h.append(0);
    h.now += Duration::from_millis(100);
    let resend = h.plan().sends.remove(0);
    assert_eq!(sequences(&resend), vec![(0, 0, 0)], "the same sequence");
    h.deliver(&resend, |_| Fault::None, false);
    h.run_clean();
    assert_eq!(h.log(0), values(0..2), "written once; the next record too");
    let offsets: Vec<i64> = h.outcomes().into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(offsets, vec![0, 1]);
    assert_eq!(h.sender.bumps(), 0);
}

#[test]
fn a_bump_waits_until_unknown_fate_batches_elsewhere_are_resolved() {
    let mut h = Harness::new(2, 5);
    h.append(0);
    h.append(1);
    let req = h.plan().sends.remove(0);
    assert_eq!(req.batches.len(), 2);
    // One request for both partitions: partition 0 is written and its
    // answer lost with the whole response; then partition 1 alone is
    // genuinely out of order.
    h.deliver(
        &req,
        |p| {
            if p == 0 {
                Fault::None
            } else {
                Fault::Refuse(ErrorCode::NotLeaderOrFollower)
            }
        },
        true,
    );
    h.now += Duration::from_millis(100);
    let again = h.plan().sends.remove(0);
    h.deliver(
        &again,
        |p| {
            if p == 1 {
                Fault::Refuse(ErrorCode::OutOfOrderSequenceNumber)
            } else {
                Fault::Refuse(ErrorCode::NotLeaderOrFollower)
            }
        },
        false,
    );
    h.append(0);
    h.now += Duration::from_millis(100);
    let plan = h.plan();
    assert_eq!(
        h.sender.bumps(),
        0,
        "partition 0's batch is not resolved yet"
    );
    assert_eq!(plan.sends.len(), 1);
    assert_eq!(
        sequences(&plan.sends[0]),
        vec![(0, 0, 0)],
        "only the unresolved batch goes, under the old epoch"
    );
    h.deliver(&plan.sends[0], |_| Fault::None, false);
    h.run_clean();
    assert_eq!(h.sender.bumps(), 1);
    assert_eq!(
        h.log(0),
        vec!["0".to_string(), "2".to_string()],
        "once each"
    );
    assert_eq!(h.log(1), vec!["1".to_string()]);
}

#[test]
fn a_new_leader_gets_nothing_until_the_old_one_has_answered() {
    let mut h = Harness::new(1, 5);
    let requests = h.acked_then_window(3);
    assert!(requests.iter().all(|r| r.leader == 1));
    h.leaders.0.insert(0, 2);
    h.append(0);
    assert!(
        h.plan().sends.is_empty(),
        "three answers outstanding at node 1"
    );
    for req in &requests {
        h.deliver(
            req,
            |_| Fault::Refuse(ErrorCode::NotLeaderOrFollower),
            false,
        );
    }
    h.now += Duration::from_millis(100);
    let plan = h.plan();
    assert_eq!(plan.sends[0].leader, 2);
    assert_eq!(sequences(&plan.sends[0]), vec![(0, 0, 1)]);
    h.run_clean_from(plan);
    assert_eq!(h.log(0), values(0..5));
}

impl Harness {
    /// One record written and acknowledged (the broker knows the producer),
    /// then `n` single-record batches of partition 0 sent and unanswered.
    fn acked_then_window(&mut self, n: usize) -> Vec<SendRequest> {
        self.append(0);
        self.run_clean();
        let mut requests = Vec::new();
        for _ in 0..n {
            self.append(0);
            requests.extend(self.plan().sends);
        }
        assert_eq!(requests.len(), n, "{n} batches in flight");
        requests
    }

    fn run_clean_from_sends(&mut self, sends: &[SendRequest]) {
        for req in sends {
            self.deliver(req, |_| Fault::None, false);
        }
        self.run_clean();
    }

    fn run_clean_from(&mut self, plan: Plan) {
        for req in &plan.sends {
            self.deliver(req, |_| Fault::None, false);
        }
        self.run_clean();
    }
}

#[test]
fn delivery_timeout_fails_queued_batches_but_waits_for_in_flight_ones() {
    let mut h = Harness::new(2, 5);
    h.leaders.0.remove(&1);
    h.append(0);
    h.append(1);
    let plan = h.plan();
    assert!(plan.refresh_metadata, "partition 1 has no leader");
    let in_flight = plan.sends.into_iter().next().unwrap();
    h.now += Duration::from_secs(121);
    h.plan();
    let outcomes = h.outcomes_so_far();
    assert!(
        matches!(
            outcomes.get("1"),
            Some(Err(ProduceError::DeliveryTimeout { sent: false, .. }))
        ),
        "{:?}",
        outcomes.get("1")
    );
    assert!(
        !outcomes.contains_key("0"),
        "in flight: waits for its answer"
    );
    h.deliver(&in_flight, |_| Fault::None, false);
    assert_eq!(h.outcomes()[0].1.as_ref().ok(), Some(&0));
    assert_eq!(h.sender.bumps(), 0, "the expired batch was never sent");
}

impl Harness {
    fn outcomes_so_far(&mut self) -> HashMap<String, Result<i64, ProduceError>> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut out = HashMap::new();
        for (v, f) in &mut self.futures {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(f).poll(&mut cx) {
                out.insert(v.clone(), r.map(|m| m.offset));
            }
        }
        let _ = &self.results;
        out
    }
}

#[test]
fn a_sent_batch_that_times_out_has_an_unknown_fate_and_bumps() {
    let mut h = Harness::new(1, 5);
    h.append(0);
    let req = h.plan().sends.remove(0);
    h.deliver(&req, |_| Fault::None, true); // written, answer lost
    h.leaders.0.clear(); // and the leader is gone
    h.now += Duration::from_secs(121);
    h.plan();
    let outcomes = h.outcomes_so_far();
    assert!(matches!(
        outcomes.get("0"),
        Some(Err(ProduceError::DeliveryTimeout { sent: true, .. }))
    ));
    h.leaders.0.insert(0, 1);
    h.append(0);
    h.run_clean();
    assert_eq!(h.sender.bumps(), 1, "its sequence is not trusted again");
    assert_eq!(h.log(0), values(0..2));
}

#[test]
fn a_refused_batch_with_batches_behind_it_bumps_and_they_land_once() {
    let mut h = Harness::new(1, 5);
    let requests = h.acked_then_window(3);
    h.deliver(
        &requests[0],
        |_| Fault::Refuse(ErrorCode::MessageTooLarge),
        false,
    );
    for req in &requests[1..] {
        h.deliver(req, |_| Fault::None, false);
    }
    h.run_clean();
    let outcomes = h.outcomes();
    assert!(matches!(
        outcomes[1].1,
        Err(ProduceError::Broker {
            code: ErrorCode::MessageTooLarge,
            ..
        })
    ));
    assert_eq!(
        h.log(0),
        vec!["0".to_string(), "2".to_string(), "3".to_string()],
        "the others once each, in order"
    );
    assert_eq!(h.sender.bumps(), 1);
}

#[test]
fn a_refused_last_batch_gives_its_sequence_back_without_a_bump() {
    let mut h = Harness::new(1, 5);
    h.append(0);
    let req = h.plan().sends.remove(0);
    h.deliver(&req, |_| Fault::Refuse(ErrorCode::MessageTooLarge), false);
    h.append(0);
    let next = h.plan().sends.remove(0);
    assert_eq!(sequences(&next), vec![(0, 0, 0)]);
    h.deliver(&next, |_| Fault::None, false);
    assert_eq!(h.sender.bumps(), 0);
    assert_eq!(h.log(0), values(1..2));
}

#[test]
fn an_epoch_about_to_overflow_asks_for_a_new_id() {
    let mut h = Harness::with(1, config(5), (7, i16::MAX - 1));
    h.append(0);
    let req = h.plan().sends.remove(0);
    h.deliver(&req, |_| Fault::Refuse(ErrorCode::UnknownProducerId), false);
    let plan = h.plan();
    assert!(plan.init_producer_id);
    assert!(plan.sends.is_empty());
    h.sender.on_producer_id(&mut h.acc, Ok((8, 0)), h.now);
    h.run_clean();
    assert_eq!(h.epoch(), (8, 0));
    assert_eq!(h.log(0), values(0..1));
}

#[test]
fn fencing_fails_everything_with_a_typed_error() {
    let mut h = Harness::new(1, 5);
    h.append(0);
    let req = h.plan().sends.remove(0);
    h.append(0);
    h.deliver(&req, |_| Fault::Refuse(ErrorCode::ProducerFenced), false);
    h.plan();
    for (_, r) in h.outcomes() {
        assert!(
            matches!(r, Err(ProduceError::ProducerFenced { .. })),
            "{r:?}"
        );
    }
}

#[test]
fn closing_fails_in_flight_batches_as_indeterminate_and_queued_ones_as_closed() {
    let mut h = Harness::new(1, 1);
    h.append(0);
    let req = h.plan().sends.remove(0);
    h.append(0);
    h.plan();
    for c in h.sender.fail_all(&mut h.acc) {
        h.complete(c);
    }
    let outcomes = h.outcomes();
    assert!(matches!(outcomes[0].1, Err(ProduceError::ClosedInFlight)));
    assert!(matches!(outcomes[1].1, Err(ProduceError::Closed)));
    // Its late answer is ignored.
    h.deliver(&req, |_| Fault::None, false);
    assert_eq!(h.sender.requests_in_flight(), 0);
    assert!(h.acc.is_empty());
}

#[test]
fn linger_holds_a_batch_until_due_and_flushing_does_not() {
    let mut h = Harness::with(
        1,
        SenderConfig {
            linger: Duration::from_millis(50),
            ..config(5)
        },
        (7, 0),
    );
    h.append(0);
    let plan = h.plan();
    assert!(plan.sends.is_empty());
    assert_eq!(plan.wake_at, Some(h.now + Duration::from_millis(50)));
    let flushed = h.sender.plan(&mut h.acc, &h.leaders, h.now, true);
    assert_eq!(flushed.sends.len(), 1);
}

#[test]
fn requests_per_connection_are_limited_and_partitions_share_requests() {
    let mut h = Harness::new(3, 2);
    for p in 0..3 {
        h.append(p);
    }
    h.run_clean();
    let mut requests = Vec::new();
    for _ in 0..4 {
        for p in 0..3 {
            h.append(p);
        }
        requests.extend(h.plan().sends);
    }
    assert_eq!(requests.len(), 2, "two requests to node 1 at most");
    assert!(requests.iter().all(|r| r.batches.len() == 3));
    for req in &requests {
        h.deliver(req, |_| Fault::None, false);
    }
    h.run_clean();
    for p in 0..3 {
        assert_eq!(h.log(p).len(), 5);
    }
}

/// Kafka 4 accepts any sequence from a producer it has no state for: were
/// a fresh producer's batches pipelined, a retriable failure of the first
/// would let the second and third overtake it. One batch goes at a time
/// until the first acknowledgement, so order holds.
#[test]
fn a_failed_first_batch_of_a_fresh_producer_is_not_overtaken() {
    let mut h = Harness::new(1, 5);
    let mut requests = Vec::new();
    for _ in 0..3 {
        h.append(0);
        requests.extend(h.plan().sends);
    }
    for (i, req) in requests.iter().enumerate() {
        let fault = if i == 0 {
            Fault::Refuse(ErrorCode::NotEnoughReplicas)
        } else {
            Fault::None
        };
        h.deliver(req, move |_| fault, false);
    }
    h.run_clean();
    assert_eq!(h.log(0), values(0..3), "in order");
}
