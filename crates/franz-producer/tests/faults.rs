//! The producer under faults, on brokers this suite owns: a killed and
//! restarted single node, three leader kills on three nodes, lost produce
//! responses (idempotent: exactly once; not idempotent: duplicates, which
//! shows the check can fail), and backpressure against a paused broker
//! (`send` blocks, `try_send` hands the record back).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Rec, assert_exactly_once_in_order, client, create_topic_with, read_all};
use franz_client::ClientConfig;
use franz_producer::{Acks, ProduceError, Producer, ProducerConfig, ProducerRecord};
use franz_testkit::proxy::api_key;
use franz_testkit::{KafkaCluster, unique_topic};

fn config(bootstrap: &str) -> ProducerConfig {
    ProducerConfig {
        delivery_timeout: Duration::from_secs(120),
        ..ProducerConfig::from_client_config(ClientConfig {
            request_timeout: Duration::from_secs(5),
            socket_connection_setup_timeout: Duration::from_secs(3),
            reconnect_backoff_max: Duration::from_millis(500),
            retry_backoff_max: Duration::from_millis(500),
            ..ClientConfig::new(bootstrap)
        })
    }
}

/// Sends `n` numbered records at a modest pace from a background task;
/// `sent` counts records handed to the producer. Returns every future's
/// result.
fn produce_in_background(
    producer: Producer,
    topic: String,
    n: u64,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<Result<franz_producer::RecordMetadata, ProduceError>>> {
    tokio::spawn(async move {
        let mut futures = Vec::with_capacity(n as usize);
        for i in 0..n {
            let rec = ProducerRecord::new(topic.as_str(), format!("{i}|payload"))
                .with_key(format!("k{}", i % 101));
            futures.push(producer.send(rec).await.unwrap());
            sent.store(i + 1, Ordering::Relaxed);
            if i % 500 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut out = Vec::with_capacity(futures.len());
        for f in futures {
            out.push(f.await);
        }
        out
    })
}

async fn wait_sent(sent: &AtomicU64, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "the producer stalled at {}",
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_succeeded(results: &[Result<franz_producer::RecordMetadata, ProduceError>]) {
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .take(5)
        .collect();
    assert!(
        failed.is_empty(),
        "{} futures failed, e.g. {failed:?}",
        results.iter().filter(|r| r.is_err()).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_single_node_restarted_within_the_delivery_timeout_loses_nothing() {
    if franz_testkit::real_broker_only("kills and restarts its own broker") {
        return;
    }
    let cluster = KafkaCluster::single_owned().await.unwrap();
    let topic = unique_topic("kill-restart");
    franz_test_support::create_topic(&cluster.bootstrap(), &topic, 6).await;
    let producer = Producer::new(config(&cluster.bootstrap())).await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let n = 60_000;
    let task = produce_in_background(producer.clone(), topic.clone(), n, Arc::clone(&sent));
    wait_sent(&sent, 15_000).await;
    cluster.kill(1).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(1).await.unwrap();
    let results = task.await.unwrap();
    all_succeeded(&results);
    let c = client(&cluster.bootstrap()).await;
    let read = read_all(&c, &topic, n as usize, Duration::from_secs(120)).await;
    assert_exactly_once_in_order(&read, n);
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// Pipelined: up to five batches of each partition in flight, so a kill
/// catches several at once; order within each partition must hold across
/// the retries, and nothing may be written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_leader_kills_with_five_batches_in_flight_keep_order_and_lose_and_duplicate_nothing()
{
    if franz_testkit::real_broker_only("kills leaders of its own three-node cluster") {
        return;
    }
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let c = client(&cluster.bootstrap()).await;
    let topic = unique_topic("leader-kills");
    create_topic_with(
        &cluster.bootstrap(),
        &topic,
        3,
        3,
        &[("min.insync.replicas", "2")],
    )
    .await;
    let producer = Producer::new(ProducerConfig {
        max_in_flight_requests_per_connection: 5,
        linger: Duration::ZERO,
        batch_size: 4096,
        ..config(&cluster.bootstrap())
    })
    .await
    .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let n = 60_000;
    let task = produce_in_background(producer.clone(), topic.clone(), n, Arc::clone(&sent));
    for round in 1..=3u64 {
        wait_sent(&sent, n * round / 4).await;
        let md = c
            .refresh_metadata_for(std::slice::from_ref(&topic))
            .await
            .unwrap();
        let leader = md.topics[&topic].partitions[0].leader;
        cluster.kill(leader).unwrap();
        // The producer carries on through the new leaders.
        let before = sent.load(Ordering::Relaxed);
        wait_sent(&sent, (before + 2_000).min(n)).await;
        cluster.restart(leader).await.unwrap();
        cluster
            .wait_for_full_isr(Duration::from_secs(120))
            .await
            .unwrap();
    }
    let results = task.await.unwrap();
    all_succeeded(&results);
    let read = read_all(&c, &topic, n as usize, Duration::from_secs(120)).await;
    assert_exactly_once_in_order(&read, n);
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// Counts how often each numbered value appears.
fn duplicates(read: &std::collections::BTreeMap<i32, Vec<Rec>>) -> usize {
    let mut seen = std::collections::HashMap::new();
    for r in read.values().flatten() {
        *seen.entry(r.value.clone()).or_insert(0) += 1;
    }
    seen.values().filter(|c| **c > 1).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_produce_responses_are_retried_exactly_once_only_with_idempotence() {
    if franz_testkit::real_broker_only("a fault proxy dropping responses of its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder().fault_proxy().start().await.unwrap();
    let proxy = cluster.proxy(1).unwrap();
    let c = client(&cluster.direct_bootstrap()).await;
    let n = 3_000u64;
    let mut dup_counts = Vec::new();
    for idempotent in [true, false] {
        let topic = unique_topic(&format!("lost-responses-{idempotent}"));
        franz_test_support::create_topic(&cluster.direct_bootstrap(), &topic, 1).await;
        let mut cfg = config(&cluster.bootstrap());
        cfg.client.request_timeout = Duration::from_secs(2);
        cfg.linger = Duration::from_millis(1);
        if !idempotent {
            cfg.enable_idempotence = Some(false);
            cfg.acks = Acks::Leader;
        }
        let producer = Producer::new(cfg).await.unwrap();
        assert_eq!(producer.is_idempotent(), idempotent);
        let sent = Arc::new(AtomicU64::new(0));
        let task = produce_in_background(producer.clone(), topic.clone(), n, Arc::clone(&sent));
        // Lose three responses, spread over the stream.
        for k in 1..=3 {
            wait_sent(&sent, n * k / 4).await;
            let before = proxy.dropped_responses(api_key::PRODUCE);
            proxy.drop_next_response(api_key::PRODUCE);
            let deadline = Instant::now() + Duration::from_secs(30);
            while proxy.dropped_responses(api_key::PRODUCE) == before {
                assert!(Instant::now() < deadline, "no produce response was dropped");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let results = task.await.unwrap();
        all_succeeded(&results);
        let read = read_all(&c, &topic, n as usize, Duration::from_secs(60)).await;
        if idempotent {
            assert_exactly_once_in_order(&read, n);
        }
        dup_counts.push(duplicates(&read));
        producer.close(Duration::from_secs(10)).await.unwrap();
    }
    assert_eq!(dup_counts[0], 0, "idempotent producer wrote duplicates");
    assert!(
        dup_counts[1] > 0,
        "without idempotence the lost responses must show as duplicates (else the test proves nothing)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_fills_the_buffer_then_records_time_out() {
    if franz_testkit::real_broker_only("pauses its own broker (SIGSTOP)") {
        return;
    }
    let cluster = KafkaCluster::single_owned().await.unwrap();
    let topic = unique_topic("backpressure");
    franz_test_support::create_topic(&cluster.bootstrap(), &topic, 1).await;
    let buffer = 64 * 1024;
    let mut cfg = config(&cluster.bootstrap());
    cfg.buffer_memory = buffer;
    cfg.batch_size = 8 * 1024;
    cfg.delivery_timeout = Duration::from_secs(8);
    cfg.client.request_timeout = Duration::from_secs(3);
    cfg.max_block = Duration::from_secs(60);
    let producer = Producer::new(cfg).await.unwrap();
    // Warm the metadata and the connection.
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "warm"))
        .await
        .unwrap();
    cluster.pause(1).unwrap();

    let p = producer.clone();
    let t = topic.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = Arc::clone(&sent);
    let task = tokio::spawn(async move {
        let mut futures = Vec::new();
        for i in 0..200 {
            futures.push(
                p.send(ProducerRecord::new(t.as_str(), vec![i as u8; 1000]))
                    .await,
            );
            sent2.store(i + 1, Ordering::Relaxed);
        }
        futures
    });
    // The buffer fills and `send` blocks; the accounting never exceeds it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut peak = 0;
    while Instant::now() < deadline {
        let b = producer.buffered_bytes();
        assert!(b <= buffer, "buffered {b} > buffer_memory {buffer}");
        peak = peak.max(b);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let blocked_at = sent.load(Ordering::Relaxed);
    assert!(blocked_at < 200, "send never blocked");
    assert!(peak > buffer / 2, "the buffer never filled (peak {peak})");
    // `try_send` on the full buffer fails at once and hands the record back.
    let record = ProducerRecord::new(topic.as_str(), vec![7u8; 1000]).with_key("kept");
    match producer.try_send(record.clone()) {
        Err(e) => {
            assert!(matches!(e.error, ProduceError::BufferFull { .. }), "{e}");
            assert!(e.is_retriable());
            assert_eq!(e.record, record, "the record comes back untouched");
        }
        Ok(_) => panic!("try_send queued a record on a full buffer"),
    }
    // The buffered records fail with a delivery timeout, which frees memory.
    let results = task.await.unwrap();
    let mut timed_out = 0;
    for r in results {
        match r {
            Ok(f) => match f.await {
                Err(ProduceError::DeliveryTimeout { .. }) => timed_out += 1,
                Err(e) => panic!("unexpected error {e}"),
                Ok(m) => panic!("delivered to a paused broker: {m:?}"),
            },
            Err(e) => panic!("send failed: {e}"),
        }
        assert!(producer.buffered_bytes() <= buffer);
    }
    assert_eq!(timed_out, 200);
    assert_eq!(producer.buffered_bytes(), 0);
    cluster.resume(1).unwrap();
}
