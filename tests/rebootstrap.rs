//! Rebootstrap (KIP-899) and DNS re-resolution against a real three-node
//! cluster whose brokers all move to new ports at once.
//!
//! The clients are given one bootstrap *name*, `localhost:<port>`, that
//! stands for a stable front door (a TCP forwarder, as a load balancer or a
//! DNS record would be) in front of the cluster. After the first metadata
//! they talk to the brokers' advertised ports. Then every broker is killed
//! and started on another port, and the front door is pointed at the new
//! ones. None of the addresses the clients learnt answers any more: a
//! producer and a consumer must go back to the bootstrap name, resolve it
//! again, learn the new addresses, and carry on with nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig, TopicPartition};
use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};
use franz_producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{FaultProxy, KafkaCluster, unique_topic};

const PARTITIONS: i32 = 3;
const PER_PHASE: u32 = 100;

/// The brokers' ports, as a client's metadata has them.
fn known_ports(client: &Client) -> BTreeSet<u16> {
    client.metadata().brokers.values().map(|b| b.port).collect()
}

/// The cluster's PLAINTEXT ports, as it listens now.
fn listening_ports(cluster: &KafkaCluster) -> BTreeSet<u16> {
    cluster
        .bootstrap()
        .split(',')
        .map(|a| a.parse::<SocketAddr>().unwrap().port())
        .collect()
}

async fn send_all(producer: &Producer, topic: &str, from: u32) {
    let mut acks = Vec::new();
    for i in from..from + PER_PHASE {
        let record = ProducerRecord::new(topic, i.to_string()).with_key(format!("k{i}"));
        acks.push(producer.send(record).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_rebootstrap_when_every_broker_moves() {
    if franz_testkit::real_broker_only("moves the brokers of its own three-node cluster") {
        return;
    }
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let first_broker = |c: &KafkaCluster| -> SocketAddr {
        c.bootstrap().split(',').next().unwrap().parse().unwrap()
    };
    let front_door =
        FaultProxy::start("127.0.0.1:0".parse().unwrap(), first_broker(&cluster)).unwrap();
    // A name, not an address: it is resolved again on every connect.
    let bootstrap = format!("localhost:{}", front_door.addr().port());
    let config = ClientConfig {
        request_timeout: Duration::from_secs(10),
        reconnect_backoff_max: Duration::from_secs(1),
        ..ClientConfig::new(&bootstrap)
    };

    let topic = unique_topic("rebootstrap");
    let admin = Admin::new(Client::connect(config.clone()).await.unwrap());
    let created = admin
        .create_topics(vec![NewTopic::new(topic.clone(), PARTITIONS, 3)], false)
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();
    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        enable_idempotence: Some(true),
        delivery_timeout: Duration::from_secs(180),
        ..ProducerConfig::from_client_config(config.clone())
    })
    .await
    .unwrap();
    let mut consumer_config = ConsumerConfig::from_client_config(config);
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(consumer_config).await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    consumer.assign(&partitions).await.unwrap();

    send_all(&producer, &topic, 0).await;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < PER_PHASE as usize && Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            seen.insert(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(seen.len(), PER_PHASE as usize, "before the move");
    let old_ports = listening_ports(&cluster);
    assert_eq!(known_ports(producer.client()), old_ports);

    // Every broker moves at once; the front door follows.
    cluster.move_client_ports().await.unwrap();
    front_door.set_upstream(first_broker(&cluster));
    let new_ports = listening_ports(&cluster);
    assert!(
        old_ports.is_disjoint(&new_ports),
        "{old_ports:?} {new_ports:?}"
    );
    let moved = Instant::now();

    send_all(&producer, &topic, PER_PHASE).await;
    let producer_back = moved.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < 2 * PER_PHASE as usize && Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            seen.insert(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    let consumer_back = moved.elapsed();
    println!(
        "rebootstrap | ports {old_ports:?} -> {new_ports:?} | producer delivered again after {:.1} s, consumer caught up after {:.1} s",
        producer_back.as_secs_f64(),
        consumer_back.as_secs_f64()
    );
    assert_eq!(seen.len(), 2 * PER_PHASE as usize, "after the move");
    assert_eq!(known_ports(producer.client()), new_ports);
    assert_eq!(known_ports(consumer.client()), new_ports);
    producer.close(Duration::from_secs(10)).await.unwrap();
    consumer.close().await;
}
