//! A `Producer` dropped without `close` (its own test binary: it counts
//! the process's open connections): what it was sent is still delivered,
//! then its sender task ends and its connections close, where before the
//! task woke every 250 ms for the life of the process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::time::{Duration, Instant};

use franz_client::open_connection_count;
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaCluster, unique_topic};

/// The process's open connections once no change is seen for 300 ms
/// (at most 5 s).
async fn settled_connection_count() -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = open_connection_count();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = open_connection_count();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_producer_delivers_what_it_was_sent_and_stops() {
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let topic = unique_topic("dropped-producer");
    franz_test_support::create_topic(&b, &topic, 1).await;
    // The topic was created on a client of its own, whose connections
    // close in the background: count from after they are gone (CI saw the
    // count fall under the producer's new connection once).
    let before = settled_connection_count().await;

    let producer = Producer::new(ProducerConfig {
        // Still lingering when the producer is dropped.
        linger: Duration::from_millis(300),
        ..ProducerConfig::new(&b)
    })
    .await
    .unwrap();
    let ack = producer
        .send(ProducerRecord::new(topic.as_str(), "sent before the drop"))
        .await
        .unwrap();
    assert!(open_connection_count() > before);
    drop(producer);
    let meta = tokio::time::timeout(Duration::from_secs(30), ack)
        .await
        .expect("the record sent before the drop was never acknowledged")
        .unwrap();
    assert_eq!(meta.offset, 0);

    let deadline = Instant::now() + Duration::from_secs(15);
    while open_connection_count() > before {
        assert!(
            Instant::now() < deadline,
            "the dropped producer's sender still holds {} connections",
            open_connection_count() - before
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `flush` waits for what was sent before it, not for records that keep
/// arriving: with a slow broker (responses held 300 ms) and a sender that
/// never stops, there is always an open batch, so a flush that waited for
/// an empty producer would never return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_under_continuous_load_returns() {
    if franz_testkit::real_broker_only("a fault proxy in front of its own broker") {
        return;
    }
    let (cluster, _, topic) = common::proxied_broker_with_topic("flush-load").await;
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    proxy.delay_responses_to(
        franz_testkit::proxy::api_key::PRODUCE,
        Some(Duration::from_millis(300)),
    );
    let producer = Producer::new(ProducerConfig {
        linger: Duration::ZERO,
        ..ProducerConfig::from_client_config(franz_client::ClientConfig {
            request_timeout: Duration::from_secs(5),
            ..franz_client::ClientConfig::new(&cluster.bootstrap())
        })
    })
    .await
    .unwrap();
    // Metadata, producer id and the partition's first acknowledgement.
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "warm-up"))
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (producer, topic, stop) = (producer.clone(), topic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = ProducerRecord::new(topic.as_str(), format!("{i}"));
                acks.push(producer.send(r).await.unwrap());
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            acks
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = producer
        .send(ProducerRecord::new(topic.as_str(), "before the flush"))
        .await
        .unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), producer.flush())
        .await
        .expect("flush under continuous load never returned");
    let flushed_in = started.elapsed();
    let meta = tokio::time::timeout(Duration::ZERO, before)
        .await
        .expect("a record sent before the flush was still pending after it")
        .unwrap();
    assert!(meta.offset >= 0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for ack in load.await.unwrap() {
        ack.await.unwrap();
    }
    proxy.clear_faults();
    producer.close(Duration::from_secs(10)).await.unwrap();
    eprintln!("flush returned in {flushed_in:?} under load");
}
