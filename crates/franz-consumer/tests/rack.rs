//! KIP-392 on a real three-node cluster with one rack per broker and the
//! rack-aware replica selector: a consumer that sends `client_rack` is sent
//! to the replica in its rack and reads from it; one without a rack reads
//! from the leader.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaCluster, unique_topic};

/// Reads `n` records with `rack` as `client_rack`; returns response bytes
/// received per broker during the reads.
async fn consume_with_rack(
    bootstrap: &str,
    topic: &str,
    rack: Option<String>,
    n: usize,
) -> Vec<(i32, u64)> {
    let mut config = ConsumerConfig::new(bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.client.client_rack = rack;
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign_topic(topic).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < n && Instant::now() < deadline {
        got += consumer
            .poll(Duration::from_millis(500))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(got, n, "every record arrives");
    consumer
        .client()
        .metrics()
        .into_iter()
        .map(|(node, m)| (node, m.bytes_received))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_a_rack_reads_from_the_replica_in_its_rack() {
    if franz_testkit::real_broker_only("KIP-392 follower fetching needs real replicas") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .nodes(3)
        .broker_config(
            "replica.selector.class",
            "org.apache.kafka.common.replica.RackAwareReplicaSelector",
        )
        .node_config(1, "broker.rack", "r1")
        .node_config(2, "broker.rack", "r2")
        .node_config(3, "broker.rack", "r3")
        .start()
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("rack");
    let client = Client::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    let created = Admin::new(client.clone())
        .create_topics(vec![NewTopic::new(&topic, 1, 3)], false)
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();

    let n = 2000;
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..n {
        let value = format!("{i:04}").repeat(256); // 1 KiB
        acks.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), value))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    cluster
        .wait_for_full_isr(Duration::from_secs(60))
        .await
        .unwrap();

    let leader = client.topic_metadata(&topic).await.unwrap().partitions[0].leader;
    let follower = [1, 2, 3].into_iter().find(|b| *b != leader).unwrap();
    let bytes_from =
        |per: &[(i32, u64)], node: i32| per.iter().find(|(n, _)| *n == node).map_or(0, |(_, b)| *b);
    let payload = (n * 1024) as u64;

    let with_rack = consume_with_rack(&bootstrap, &topic, Some(format!("r{follower}")), n).await;
    assert!(
        bytes_from(&with_rack, follower) > payload,
        "records came from the follower in the consumer's rack: {with_rack:?} (leader {leader})"
    );
    assert!(
        bytes_from(&with_rack, leader) < payload / 4,
        "the leader only pointed the way: {with_rack:?} (leader {leader})"
    );

    let without = consume_with_rack(&bootstrap, &topic, None, n).await;
    assert!(
        bytes_from(&without, leader) > payload,
        "without a rack the leader serves: {without:?} (leader {leader})"
    );
}
