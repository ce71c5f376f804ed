//! Helpers shared by the transport's broker tests.

#![allow(dead_code)] // each test file uses its own subset

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_testkit::KafkaCluster;

/// The shared broker's bootstrap servers.
pub(crate) async fn bootstrap() -> String {
    KafkaCluster::shared().await.unwrap().bootstrap()
}

/// An admin client on `b`.
pub(crate) async fn admin(b: &str) -> Admin {
    Admin::new(Client::connect(ClientConfig::new(b)).await.unwrap())
}

/// Creates each `(topic, partitions)` (replication 1).
pub(crate) async fn create_topics(b: &str, topics: &[(&str, i32)]) {
    let new = topics
        .iter()
        .map(|(t, p)| NewTopic::new(*t, *p, 1))
        .collect();
    for (t, r) in admin(b).await.create_topics(new, false).await.unwrap() {
        r.unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}
