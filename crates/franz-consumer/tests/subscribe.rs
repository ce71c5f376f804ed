//! Subscriptions that change while the member runs, on the shared broker,
//! under both group protocols:
//!
//! - a regex subscription picks up a topic created after subscribing
//!   (classic: matched by franz on refreshed metadata; KIP-848: resolved by
//!   the coordinator, asynchronously, which the test waits for);
//! - partitions added to a subscribed topic are consumed;
//! - `subscribe` replaces the topic list: a new topic's records arrive, and
//!   a dropped topic's partitions are revoked.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin, bootstrap, create_topic, earliest, group_config};
use franz_consumer::assignor::RoundRobinAssignor;
use franz_consumer::{GroupConsumer, GroupProtocol};
use franz_producer::ProducerRecord;
use franz_testkit::{unique_group, unique_topic};

/// KIP-848's coordinator resolves patterns on its own schedule.
const WAIT: Duration = Duration::from_secs(90);

async fn member(b: &str, protocol: GroupProtocol, topics: &[&str]) -> GroupConsumer {
    let mut config = earliest(b);
    // Classic members look at the metadata this often (Java's
    // metadata.max.age.ms); the 5 min default would outlast the test.
    config.client.metadata_max_age = Duration::from_secs(1);
    let group = unique_group("subscribe");
    let g = group_config(&group, protocol, vec![Arc::new(RoundRobinAssignor)]);
    GroupConsumer::new(config, g, topics).await.unwrap()
}

async fn produce(b: &str, topic: &str, partition: i32, n: u32) {
    common::produce(b, 0..n, |i| {
        ProducerRecord::new(topic, format!("{topic}-{i}")).with_partition(partition)
    })
    .await;
}

/// Polls (committing) until `want` records of `topic` came.
async fn read(consumer: &mut GroupConsumer, topic: &str, want: usize) -> BTreeSet<(i32, i64)> {
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {want} records; assignment {:?}",
            got.len(),
            consumer.assignment()
        );
        for r in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            if &*r.topic == topic {
                got.insert((r.partition, r.offset));
            }
        }
        let _ = consumer.commit().await;
    }
    got
}

async fn regex_picks_up_a_new_topic(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let prefix = unique_topic("subre");
    let (first, later) = (format!("{prefix}-a"), format!("{prefix}-b"));
    create_topic(&b, &first, 2).await;
    produce(&b, &first, 0, 5).await;
    produce(&b, &first, 1, 5).await;
    let mut consumer = member(&b, protocol, &[]).await;
    consumer.subscribe_regex(&format!("{prefix}-.*")).unwrap();
    assert_eq!(read(&mut consumer, &first, 10).await.len(), 10);

    create_topic(&b, &later, 1).await;
    produce(&b, &later, 0, 7).await;
    let got = read(&mut consumer, &later, 7).await;
    assert_eq!(got, (0..7).map(|o| (0, o)).collect());
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_picks_up_a_topic_created_later_classic() {
    regex_picks_up_a_new_topic(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_picks_up_a_topic_created_later_kip848() {
    regex_picks_up_a_new_topic(GroupProtocol::Consumer).await;
}

async fn added_partitions_are_consumed(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("grow");
    create_topic(&b, &topic, 2).await;
    produce(&b, &topic, 0, 5).await;
    produce(&b, &topic, 1, 5).await;
    let mut consumer = member(&b, protocol, &[&topic]).await;
    assert_eq!(read(&mut consumer, &topic, 10).await.len(), 10);

    let grown = admin(&b)
        .await
        .create_partitions(&[(&topic, 4)], false)
        .await
        .unwrap();
    grown[0].1.as_ref().unwrap();
    produce(&b, &topic, 2, 5).await;
    produce(&b, &topic, 3, 5).await;
    let got = read(&mut consumer, &topic, 10).await;
    let partitions: BTreeSet<i32> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions, [2, 3].into(), "the new partitions' records");
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_partitions_are_consumed_classic() {
    added_partitions_are_consumed(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_partitions_are_consumed_kip848() {
    added_partitions_are_consumed(GroupProtocol::Consumer).await;
}

async fn subscribe_replaces_the_topics(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let (one, two) = (unique_topic("sub-one"), unique_topic("sub-two"));
    create_topic(&b, &one, 1).await;
    create_topic(&b, &two, 1).await;
    produce(&b, &one, 0, 4).await;
    produce(&b, &two, 0, 6).await;
    let mut consumer = member(&b, protocol, &[&one]).await;
    assert_eq!(read(&mut consumer, &one, 4).await.len(), 4);

    consumer.subscribe(&[&one, &two]);
    assert_eq!(read(&mut consumer, &two, 6).await.len(), 6);

    consumer.subscribe(&[&two]);
    let deadline = Instant::now() + WAIT;
    while consumer.assignment().iter().any(|tp| tp.topic == one) {
        assert!(
            Instant::now() < deadline,
            "{one} still assigned: {:?}",
            consumer.assignment()
        );
        consumer.poll(Duration::from_millis(300)).await.unwrap();
    }
    produce(&b, &two, 0, 3).await;
    assert_eq!(read(&mut consumer, &two, 3).await.len(), 3);
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_replaces_the_topics_classic() {
    subscribe_replaces_the_topics(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_replaces_the_topics_kip848() {
    subscribe_replaces_the_topics(GroupProtocol::Consumer).await;
}
