//! Batching with `linger` 0, on a broker of its own behind a recording
//! proxy that holds produce responses back: records sent while a
//! partition's batch is in flight join one open batch, which goes out when
//! the partition has a free slot, as with Java's accumulator. (Sealing a
//! batch per send made one request per record, one per round trip: the
//! transport's requests/s at 64 in flight was bounded by it.) With up to
//! `max_in_flight` batches of a partition pipelined, the first few records
//! go alone while the window fills; the rest share one batch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

mod common;

use std::time::Duration;

use common::proxied_broker_with_topic;
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::proxy::api_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_while_a_batch_is_in_flight_share_the_next_batch() {
    if franz_testkit::real_broker_only("a fault proxy delaying its own broker") {
        return;
    }
    for max_in_flight in [1, 5] {
        records_share_batches_while_the_window_is_full(max_in_flight).await;
    }
}

async fn records_share_batches_while_the_window_is_full(max_in_flight: usize) {
    let (cluster, _, topic) = proxied_broker_with_topic("batching").await;
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    let producer = Producer::new(ProducerConfig {
        linger: Duration::ZERO,
        max_in_flight_requests_per_connection: max_in_flight,
        ..ProducerConfig::new(&cluster.bootstrap())
    })
    .await
    .unwrap();
    // Warm up metadata and the producer id, then watch produce requests.
    producer
        .send(ProducerRecord::new(topic.as_str(), "warm-up"))
        .await
        .unwrap()
        .await
        .unwrap();
    proxy.record_requests(api_key::PRODUCE);
    proxy.delay_responses_to(api_key::PRODUCE, Some(Duration::from_millis(1000)));

    let first = producer
        .send(ProducerRecord::new(topic.as_str(), "first"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // in flight now
    let mut acks = vec![first];
    for i in 0..99 {
        let record = ProducerRecord::new(topic.as_str(), format!("record-{i}"));
        acks.push(producer.send(record).await.unwrap());
        // Spaced out, as requests from many callers are: the sender runs
        // between sends.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let requests = proxy.take_recorded_requests(api_key::PRODUCE).len();
    assert!(
        requests <= max_in_flight + 2,
        "100 records, the last 99 sent while the first was in flight, took {requests} produce requests with {max_in_flight} in flight"
    );
    proxy.clear_faults();
    producer.close(Duration::from_secs(10)).await.unwrap();
}
