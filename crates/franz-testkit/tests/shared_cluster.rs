//! Self-tests on the shared single-node cluster (or `KAFKA_BOOTSTRAP`):
//! the Java tools and KafkaJS work against it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use franz_testkit::{KafkaCluster, KafkaDistribution, node, probe, unique_group, unique_topic};

fn first_addr(bootstrap: &str) -> SocketAddr {
    bootstrap
        .split(',')
        .next()
        .and_then(|a| a.to_socket_addrs().ok()?.next())
        .expect("bootstrap address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_command_creates_and_lists_a_topic() {
    let kafka = KafkaCluster::shared().await.unwrap();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("harness-topic");
    let dist = KafkaDistribution::resolve().unwrap();
    let t = Duration::from_secs(120);
    dist.run_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
        t,
    )
    .unwrap();
    let listed = dist
        .run_tool(
            "org.apache.kafka.tools.TopicCommand",
            &["--bootstrap-server", &bootstrap, "--list"],
            t,
        )
        .unwrap();
    assert!(
        listed.lines().any(|l| l.trim() == topic),
        "{topic} not in:\n{listed}"
    );

    // The harness's own probe sees the same topic with three led partitions.
    let view = tokio::task::spawn_blocking(move || probe::metadata(first_addr(&bootstrap), t))
        .await
        .unwrap()
        .unwrap();
    let found = view
        .topics
        .iter()
        .find(|x| x.name == topic)
        .expect("topic in metadata");
    assert_eq!(found.partitions.len(), 3);
    assert!(found.partitions.iter().all(|p| p.leader >= 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_api_versions_command_reaches_the_broker() {
    let kafka = KafkaCluster::shared().await.unwrap();
    let dist = KafkaDistribution::resolve().unwrap();
    let out = dist
        .run_tool(
            "org.apache.kafka.tools.BrokerApiVersionsCommand",
            &["--bootstrap-server", &kafka.bootstrap()],
            Duration::from_secs(120),
        )
        .unwrap();
    // Every broker lists Produce and ApiVersions with their version ranges.
    assert!(out.contains("Produce(0):"), "{out}");
    assert!(out.contains("ApiVersions(18):"), "{out}");
}

/// The shared cluster outlives the runtime (and so the test) that started it.
#[test]
fn shared_cluster_survives_the_runtime_that_started_it() {
    let first = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { KafkaCluster::shared().await.unwrap().bootstrap() })
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let second = rt.block_on(async { KafkaCluster::shared().await.unwrap().bootstrap() });
    assert_eq!(first, second);
    let view = probe::metadata(first_addr(&second), Duration::from_secs(30)).unwrap();
    assert!(!view.brokers.is_empty());
}

/// KafkaJS 2.x (what NestJS runs on) produces to and consumes from the
/// pinned Kafka 4.x broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_produces_and_consumes() {
    let kafka = KafkaCluster::shared().await.unwrap();
    let bootstrap = kafka.bootstrap();
    let topic = unique_topic("kafkajs-smoke");
    let group = unique_group("kafkajs-smoke");
    let out = tokio::task::spawn_blocking(move || {
        node::run_script(
            "kafkajs-smoke.mjs",
            &[&bootstrap, &topic, &group, "20"],
            Duration::from_secs(240),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let line = out.lines().last().unwrap_or_default();
    // One acknowledgement per partition written: 20 keys spread over all 3.
    assert!(line.contains("\"produced\":3"), "{out}");
    for i in 0..20 {
        assert!(
            line.contains(&format!("\"key\":\"key-{i}\"")),
            "key-{i} missing: {out}"
        );
        assert!(
            line.contains(&format!("\"value\":{{\"i\":{i}}}")),
            "value {i} missing: {out}"
        );
    }
    assert_eq!(line.matches("\"header\":\"kafkajs\"").count(), 20, "{out}");
}
