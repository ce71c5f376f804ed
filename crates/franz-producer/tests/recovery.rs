//! Idempotent recovery against a real broker's answers (KIP-360): a
//! produce response that cannot be read after the broker wrote the batch
//! leaves the batch's fate unknown, so its sequence must never go to the
//! next batch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{assert_exactly_once_in_order, proxied_broker_with_topic, read_all};
use franz_client::ClientConfig;
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::proxy::api_key;

/// One record per batch (sent and awaited one at a time), so that a
/// reused sequence would cover exactly the next record: the broker would
/// take it for a duplicate of the unreadable batch and acknowledge it
/// without writing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_produce_response_is_resolved_by_resending_the_same_sequence() {
    let (cluster, c, topic) = proxied_broker_with_topic("unknown-fate").await;
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    let producer = Producer::new(ProducerConfig {
        linger: Duration::ZERO,
        delivery_timeout: Duration::from_secs(60),
        ..ProducerConfig::from_client(ClientConfig {
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::new(&cluster.bootstrap())
        })
    })
    .await
    .unwrap();
    let epoch_before = producer.producer_id_and_epoch().unwrap();
    let n = 10u64;
    let mut offsets = BTreeSet::new();
    for i in 0..n {
        if i == 4 {
            // The next produce response, after the broker wrote the batch,
            // arrives cut to its correlation id and two bytes: unreadable.
            let armed = Arc::new(AtomicBool::new(true));
            proxy.rewrite_responses(api_key::PRODUCE, move |_version, frame| {
                armed
                    .swap(false, Ordering::SeqCst)
                    .then(|| frame[..frame.len().min(6)].to_vec())
            });
        }
        let rec = ProducerRecord::new(topic.as_str(), format!("{i}|payload")).with_key("k");
        let meta = producer
            .send_and_wait(rec)
            .await
            .unwrap_or_else(|e| panic!("record {i} was not delivered: {e}"));
        assert!(
            offsets.insert(meta.offset),
            "record {i} acknowledged at offset {} already given to another record",
            meta.offset
        );
    }
    assert_eq!(proxy.rewritten_responses(api_key::PRODUCE), 1);
    let read = read_all(&c, &topic, n as usize, Duration::from_secs(30)).await;
    assert_exactly_once_in_order(&read, n);
    assert_eq!(
        offsets,
        (0..n as i64).collect::<BTreeSet<_>>(),
        "every acknowledged offset holds its own record"
    );
    assert_eq!(
        producer.producer_id_and_epoch().unwrap(),
        epoch_before,
        "resolved by the resend: no bump needed"
    );
    producer.close(Duration::from_secs(10)).await.unwrap();
}
