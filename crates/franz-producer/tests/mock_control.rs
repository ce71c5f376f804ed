//! Situations a real broker gives only by chance, scripted with franz-mock's
//! control hooks: a leader that moves at a chosen Produce, an injected
//! retriable error, a request the broker never answers, a broker killed
//! and revived while records flow. Each run ends with the log read back
//! from the mock: every record once, in order per partition.
//!
//! These need no broker, so they run in every mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure

use std::collections::BTreeMap;
use std::time::Duration;

use franz_client::ClientConfig;
use franz_mock::{Control, ErrorCode, MockCluster};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_protocol::ApiKey;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::{BatchDecodeOptions, RecordBatch};

/// Every value in the mock's log of `topic`, by partition, in offset order.
fn log_values(mock: &MockCluster, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<u64>> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let mut values = Vec::new();
        for raw in mock.batches(topic, p) {
            let mut b = raw.clone();
            let batch = RecordBatch::decode(&mut b, &BatchDecodeOptions::default()).unwrap();
            for r in &batch.records(&DecodeLimits::default()).unwrap() {
                let v = r.unwrap().value.unwrap();
                values.push(std::str::from_utf8(v).unwrap().parse().unwrap());
            }
        }
        out.insert(p, values);
    }
    out
}

/// Every number `0..n` exactly once, ascending within each partition.
fn assert_once_in_order(read: &BTreeMap<i32, Vec<u64>>, n: u64) {
    let mut all: Vec<u64> = Vec::new();
    for (p, vs) in read {
        assert!(
            vs.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order"
        );
        all.extend(vs);
    }
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every record exactly once");
}

fn producer_config(mock: &MockCluster) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(1),
        ..ProducerConfig::from_client_config(ClientConfig {
            request_timeout: Duration::from_secs(2),
            ..ClientConfig::new(&mock.bootstrap())
        })
    }
}

async fn send_numbered(producer: &Producer, topic: &str, range: std::ops::Range<u64>) {
    let mut acks = Vec::new();
    for i in range {
        let rec = ProducerRecord::new(topic, i.to_string()).with_key(format!("k{}", i % 31));
        acks.push(producer.send(rec).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_moved_at_a_chosen_produce_is_followed() {
    let mock = MockCluster::builder().brokers(3).start().unwrap();
    mock.create_topic("moves", 3).unwrap();
    let from = mock.leader("moves", 0).unwrap();
    let to = from % 3 + 1;
    let hook = mock.control(
        Control::on(ApiKey::Produce)
            .topic("moves")
            .partition(0)
            .broker(from)
            .once()
            .move_leader("moves", 0, to),
    );
    let producer = Producer::new(producer_config(&mock)).await.unwrap();
    send_numbered(&producer, "moves", 0..5_000).await;
    assert_eq!(hook.hits(), 1);
    assert_eq!(mock.leader("moves", 0), Some(to), "the leader moved");
    assert_once_in_order(&log_values(&mock, "moves", 3), 5_000);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_and_an_unanswered_request_are_retried_without_duplicates() {
    let mock = MockCluster::start().unwrap();
    mock.create_topic("flaky", 2).unwrap();
    let refused = mock.control(
        Control::on(ApiKey::Produce)
            .topic("flaky")
            .times(3)
            .respond_error(ErrorCode::NotEnoughReplicas),
    );
    let producer = Producer::new(producer_config(&mock)).await.unwrap();
    send_numbered(&producer, "flaky", 0..2_000).await;
    assert_eq!(refused.hits(), 3);
    // A Produce the broker reads and never answers: the client times out,
    // reconnects and resends the same sequence.
    let dropped = mock.control(
        Control::on(ApiKey::Produce)
            .topic("flaky")
            .once()
            .drop_request(),
    );
    send_numbered(&producer, "flaky", 2_000..4_000).await;
    assert_eq!(dropped.hits(), 1);
    assert_once_in_order(&log_values(&mock, "flaky", 2), 4_000);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_revived_while_records_flow_loses_nothing() {
    let mock = MockCluster::builder().brokers(3).start().unwrap();
    mock.create_topic("kills", 6).unwrap();
    let observed = mock.control(Control::on(ApiKey::Produce).topic("kills"));
    let producer = Producer::new(producer_config(&mock)).await.unwrap();
    send_numbered(&producer, "kills", 0..3_000).await;
    let victim = mock.leader("kills", 0).unwrap();
    mock.kill_broker(victim);
    assert_ne!(
        mock.leader("kills", 0),
        Some(victim),
        "leadership moved off the dead broker"
    );
    send_numbered(&producer, "kills", 3_000..6_000).await;
    mock.revive_broker(victim).unwrap();
    mock.move_leader("kills", 0, victim).unwrap();
    send_numbered(&producer, "kills", 6_000..9_000).await;
    assert!(observed.requests().iter().any(|r| r.broker == victim));
    assert_once_in_order(&log_values(&mock, "kills", 6), 9_000);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Found on the mock: the sender handed each pipelined request to its own
/// task, and tasks reach the connection in any order, so a broker could
/// read batch n+1 before batch n and answer OUT_OF_ORDER_SEQUENCE_NUMBER
/// (retried, so nothing was lost, but every such batch went twice). Each
/// request now waits until its predecessor to the same leader is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_reach_the_broker_in_sequence_order() {
    let mock = MockCluster::start().unwrap();
    mock.create_topic("ordered", 6).unwrap();
    let seen = mock.control(Control::on(ApiKey::Produce).topic("ordered"));
    let producer = Producer::new(ProducerConfig {
        batch_size: 2048,
        ..producer_config(&mock)
    })
    .await
    .unwrap();
    send_numbered(&producer, "ordered", 0..30_000).await;
    // Arrival order of every batch's first sequence, per partition.
    let mut arrivals: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for observed in seen.requests() {
        let franz_protocol::messages::AnyRequest::Produce(req) = observed.request else {
            continue;
        };
        for t in &req.topic_data {
            for p in &t.partition_data {
                let mut raw = p.records.clone().unwrap();
                let batch = RecordBatch::decode(&mut raw, &BatchDecodeOptions::default()).unwrap();
                arrivals
                    .entry(p.index)
                    .or_default()
                    .push(batch.base_sequence);
            }
        }
    }
    let out_of_order: Vec<(i32, i32, i32)> = arrivals
        .iter()
        .flat_map(|(p, seqs)| {
            seqs.windows(2)
                .filter(|w| w[1] < w[0])
                .map(move |w| (*p, w[0], w[1]))
        })
        .collect();
    assert!(
        out_of_order.is_empty(),
        "batches reached the broker out of sequence order (partition, before, after): {:?}",
        &out_of_order[..out_of_order.len().min(10)]
    );
    assert_once_in_order(&log_values(&mock, "ordered", 6), 30_000);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// KIP-580: while a partition has no leader, the producer's metadata
/// refreshes back off (100 ms doubling to 1 s) instead of following every
/// record it is handed. Over two seconds of steady sends to a leaderless
/// partition that is a handful of Metadata requests, not hundreds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_refreshes_back_off_while_a_partition_is_leaderless() {
    let mock = MockCluster::builder()
        .brokers(2)
        .auto_create_topics(false)
        .start()
        .unwrap();
    let client = franz_client::Client::connect(ClientConfig::new(&mock.bootstrap()))
        .await
        .unwrap();
    let created = franz_client::Admin::new(client.clone())
        .create_topics(
            vec![franz_client::admin::NewTopic::new("leaderless", 1, 1)],
            false,
        )
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();
    let leader = client
        .topic_metadata("leaderless")
        .await
        .unwrap()
        .partitions[0]
        .leader;
    let producer = Producer::new(ProducerConfig {
        delivery_timeout: Duration::from_secs(30),
        ..producer_config(&mock)
    })
    .await
    .unwrap();
    // The only replica dies: no live broker can lead the partition.
    mock.kill_broker(leader);
    let metadata = mock.control(Control::on(ApiKey::Metadata));
    let started = std::time::Instant::now();
    let mut pending = Vec::new();
    while started.elapsed() < Duration::from_secs(2) {
        let rec = ProducerRecord::new("leaderless", "v").with_partition(0);
        pending.push(producer.send(rec).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let asked = metadata.hits();
    assert!(
        asked <= 20,
        "{asked} Metadata requests in 2 s for one leaderless partition ({} records sent)",
        pending.len()
    );
    assert!(asked >= 2, "the producer still asks ({asked})");
    // Back with its broker, the partition has a leader and everything sent
    // meanwhile is delivered.
    mock.revive_broker(leader).unwrap();
    mock.control(
        Control::on(ApiKey::Produce)
            .move_leader("leaderless", 0, leader)
            .once(),
    );
    for ack in pending {
        tokio::time::timeout(Duration::from_secs(30), ack)
            .await
            .expect("a record sent while the partition was leaderless never completed")
            .unwrap();
    }
}
