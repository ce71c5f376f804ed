//! A `Producer` dropped without `close` (its own test binary: it counts
//! the process's open connections): what it was sent is still delivered,
//! then its sender task ends and its connections close, where before the
//! task woke every 250 ms for the life of the process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

mod common;

use std::time::{Duration, Instant};

use common::{client, create_topic};
use franz_client::open_connection_count;
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaCluster, unique_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_producer_delivers_what_it_was_sent_and_stops() {
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let c = client(&b).await;
    let topic = unique_topic("dropped-producer");
    create_topic(&c, &topic, 1, 1, &[]).await;
    let before = open_connection_count();

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
