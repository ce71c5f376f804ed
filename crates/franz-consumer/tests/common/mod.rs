//! Helpers shared by the consumer's broker tests.
#![allow(clippy::disallowed_methods)] // test support drives real time: it waits and measures
#![allow(dead_code)] // each test file uses its own subset

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use franz_client::{Admin, Client, ClientConfig};
use franz_consumer::assignor::{Assignor, RoundRobinAssignor};
use franz_consumer::{
    ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer, GroupProtocol, OffsetReset,
    TopicPartition,
};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
#[allow(unused_imports)] // each test file uses its own subset
pub(crate) use franz_test_support::{bootstrap, create_topic, wait_until};

/// Whether a KIP-848 test must return at once: the harness runs a Kafka
/// release before 4.0 (`just compat`), where the protocol is off or absent.
/// `tests/compat.rs` checks the typed refusal there.
#[track_caller]
pub(crate) fn kip848_unavailable(protocol: GroupProtocol) -> bool {
    protocol == GroupProtocol::Consumer
        && franz_testkit::needs_kafka((4, 0), "the KIP-848 consumer group protocol")
}

/// An admin client on `bootstrap`.
pub(crate) async fn admin(bootstrap: &str) -> Admin {
    Admin::new(Client::connect(ClientConfig::new(bootstrap)).await.unwrap())
}

/// Produces `record(i)` for every `i` in `range` and waits for every ack.
pub(crate) async fn produce(
    bootstrap: &str,
    range: std::ops::Range<u32>,
    record: impl Fn(u32) -> ProducerRecord,
) {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut acks = Vec::new();
    for i in range {
        acks.push(producer.send(record(i)).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// A round-robin group member that reads from the earliest offset.
pub(crate) async fn member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    protocol: GroupProtocol,
) -> GroupConsumer {
    static_member(bootstrap, group, topic, protocol, None).await
}

/// The same, as a static member when `instance` is set.
pub(crate) async fn static_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    protocol: GroupProtocol,
    instance: Option<&str>,
) -> GroupConsumer {
    let mut g = group_config(group, protocol, vec![Arc::new(RoundRobinAssignor)]);
    g.group_instance_id = instance.map(str::to_string);
    GroupConsumer::new(earliest(bootstrap), g, &[topic])
        .await
        .unwrap()
}

/// Consumer settings for group tests: from the earliest offset, fetches
/// held at most 200 ms.
pub(crate) fn earliest(bootstrap: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_max_wait = Duration::from_millis(200);
    config
}

/// Group settings for tests, every timeout set explicitly: session 6 s,
/// heartbeat 300 ms, rebalance 20 s, revoke 15 s, poll interval 60 s.
pub(crate) fn group_config(
    group: &str,
    protocol: GroupProtocol,
    assignors: Vec<Arc<dyn Assignor>>,
) -> GroupConfig {
    let mut g = GroupConfig::new(group);
    g.session_timeout = Duration::from_secs(6);
    g.heartbeat_interval = Duration::from_millis(300);
    g.rebalance_timeout = Duration::from_secs(20);
    g.revoke_timeout = Duration::from_secs(15);
    g.max_poll_interval = Duration::from_secs(60);
    g.protocol = protocol;
    g.assignors = assignors;
    g
}

/// What a member task reports while it runs.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) records: Vec<ConsumerRecord>,
    pub(crate) assignment: Vec<TopicPartition>,
    /// The member's generation (classic) or epoch (KIP-848) after its
    /// latest poll.
    pub(crate) generation: i32,
}

/// Polls and commits after every poll until `stop`, then leaves the group.
pub(crate) fn run_member(
    mut consumer: GroupConsumer,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let records = consumer.poll(Duration::from_millis(300)).await.unwrap();
            // A commit refused because a rebalance started is expected; the
            // next poll rejoins.
            let _ = consumer.commit().await;
            let mut s = seen.lock().unwrap();
            s.records.extend(records);
            s.assignment = consumer.assignment();
            s.generation = consumer.member().1;
        }
        consumer.close().await.unwrap();
    })
}
