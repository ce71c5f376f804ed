//! Helpers shared by franz's test suites, so that each suite does not carry
//! its own copy of "where is the broker", "create this topic" and "wait
//! until".
//!
//! # Only strings cross
//! Every crate's integration tests use this crate, including the crates it
//! is built on (`franz-client`, `franz-protocol`). Cargo may then build two
//! copies of such a crate (one for the tests, one for this crate), and a
//! `franz_client::Admin` from one is not the other's type. So nothing in
//! this API takes or returns a franz type: bootstrap addresses, topic and
//! group names go in as strings, and a failure is a panic with the cause,
//! which is a test's report. A suite that needs a client builds its own
//! from the bootstrap string.
//!
//! # Failing, never skipping
//! [`bootstrap`] starts (or finds) the shared broker through
//! [`franz_testkit::KafkaCluster::shared`]; when none can be had it panics
//! with what is missing (Java, Maven, a port), so a test that needs a
//! broker fails rather than passes without one.
//!
//! # Cancel safety
//! The helpers are test code: dropping one mid-way leaves at most a request
//! in flight (a topic created or not), which the next call tolerates.

#![allow(clippy::disallowed_methods)] // test support drives real time: it waits and measures
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a panic is the report

use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_testkit::KafkaCluster;

/// How long [`wait_until`] waits before it fails the test.
pub const WAIT: Duration = Duration::from_secs(60);

/// The shared broker's bootstrap servers, starting it if needed
/// (`KAFKA_BOOTSTRAP`, `FRANZ_TEST_BROKER` and the rest are read by the
/// testkit).
///
/// # Cancel safety
/// Dropped while the broker starts, the start goes on for the next caller.
pub async fn bootstrap() -> String {
    match KafkaCluster::shared().await {
        Ok(cluster) => cluster.bootstrap(),
        Err(e) => panic!("this test needs a Kafka broker and cannot get one: {e}"),
    }
}

/// [`bootstrap`] for a test with no runtime of its own (the codec's
/// blocking suites).
pub fn bootstrap_blocking() -> String {
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime for the broker harness")
        .block_on(bootstrap())
}

/// Creates each `(name, partitions)` with replication 1, failing the test
/// if any creation fails.
///
/// # Cancel safety
/// Dropped mid-way, the topics may or may not exist.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let new = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(*name, *partitions, 1))
        .collect();
    create(bootstrap, new).await;
}

/// Creates `name` with `partitions` partitions, replication 1.
///
/// # Cancel safety
/// As [`create_topics`].
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topics(bootstrap, &[(name, partitions)]).await;
}

/// Creates `name` with a replication factor and topic configs, such as
/// `[("min.insync.replicas", "2")]`.
///
/// # Cancel safety
/// As [`create_topics`].
pub async fn create_topic_with(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication: i16,
    configs: &[(&str, &str)],
) {
    let topic = configs
        .iter()
        .fold(NewTopic::new(name, partitions, replication), |t, (k, v)| {
            t.config(*k, *v)
        });
    create(bootstrap, vec![topic]).await;
}

async fn create(bootstrap: &str, topics: Vec<NewTopic>) {
    let client = Client::connect(ClientConfig::new(bootstrap))
        .await
        .unwrap_or_else(|e| panic!("connecting to {bootstrap} to create topics: {e}"));
    let created = Admin::new(client.clone())
        .create_topics(topics, false)
        .await
        .unwrap_or_else(|e| panic!("CreateTopics on {bootstrap}: {e}"));
    client.close();
    for (name, result) in created {
        if let Err(e) = result {
            panic!("creating topic {name}: {e}");
        }
    }
}

/// Waits until `cond` holds, checking every 100 ms; fails the test, naming
/// `what`, after [`WAIT`].
///
/// # Cancel safety
/// Cancel safe: it only sleeps and calls `cond`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `group` is Stable with exactly `members` members; fails the
/// test after two minutes, with the group's last description.
///
/// # Cancel safety
/// Cancel safe: it only sends DescribeGroups and sleeps.
pub async fn wait_for_group_members(bootstrap: &str, group: &str, members: usize) {
    let client = Client::connect(ClientConfig::new(bootstrap))
        .await
        .unwrap_or_else(|e| panic!("connecting to {bootstrap}: {e}"));
    let admin = Admin::new(client.clone());
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let d = admin
            .describe_groups(&[group])
            .await
            .unwrap_or_else(|e| panic!("DescribeGroups {group}: {e}"));
        if d[0]
            .1
            .as_ref()
            .is_ok_and(|g| g.members.len() == members && g.state == "Stable")
        {
            client.close();
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never became stable with {members} members: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
