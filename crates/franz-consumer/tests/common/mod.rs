//! Helpers shared by the consumer's broker tests.

#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::KafkaCluster;

/// The shared broker's bootstrap servers.
pub(crate) async fn bootstrap() -> String {
    KafkaCluster::shared().await.unwrap().bootstrap()
}

/// An admin client on `bootstrap`.
pub(crate) async fn admin(bootstrap: &str) -> Admin {
    Admin::new(Client::connect(ClientConfig::new(bootstrap)).await.unwrap())
}

/// Creates `name` with `partitions` partitions (replication 1).
pub(crate) async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let r = admin(bootstrap)
        .await
        .create_topics(vec![NewTopic::new(name, partitions, 1)], false)
        .await
        .unwrap();
    r[0].1.as_ref().unwrap();
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
