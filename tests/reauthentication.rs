//! In-band re-authentication (KIP-368) against a real broker whose
//! `connections.max.reauth.ms` is 3 s: a producer and a consumer, both
//! over SCRAM-SHA-512, run across several session lifetimes. Every record
//! is acknowledged and consumed, nothing fails, and neither client opens a
//! new connection: each live connection re-authenticates in place, with
//! requests in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig, SaslMechanism, TopicPartition};
use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};
use franz_producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaCluster, SecurityProtocol as Listener, unique_topic};

/// The broker's session lifetime.
const LIFETIME: Duration = Duration::from_secs(3);
/// How long the clients run: four lifetimes.
const RUN: Duration = Duration::from_secs(12);

/// Connections opened and re-authentications, summed over every broker.
fn counts(client: &Client) -> (u64, u64) {
    client.metrics().values().fold((0, 0), |(c, r), m| {
        (c + m.connections_opened, r + m.reauthentications)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_reauthenticate_in_place_across_lifetimes() {
    if franz_testkit::real_broker_only("a SASL listener with a short session lifetime") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .sasl_plaintext_listener()
        .scram_user("alice", "alice-secret")
        .broker_config(
            "connections.max.reauth.ms",
            LIFETIME.as_millis().to_string(),
        )
        .start()
        .await
        .unwrap();
    let sasl = cluster.bootstrap_for(Listener::SaslPlaintext).unwrap();
    let client_config = ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::new(&sasl).with_sasl(SaslMechanism::ScramSha512, "alice", "alice-secret")
    };
    let topic = unique_topic("reauth");
    let admin = Admin::new(Client::connect(client_config.clone()).await.unwrap());
    let created = admin
        .create_topics(vec![NewTopic::new(topic.clone(), 1, 1)], false)
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();

    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        ..ProducerConfig::from_client_config(client_config.clone())
    })
    .await
    .unwrap();
    let mut consumer_config = ConsumerConfig::from_client_config(client_config);
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(consumer_config).await.unwrap();
    consumer
        .assign(&[TopicPartition::new(topic.as_str(), 0)])
        .await
        .unwrap();

    // Warm up: one record through both, so every connection either client
    // needs is open before the counting starts.
    producer
        .send(ProducerRecord::new(topic.as_str(), "0"))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut consumed = 0u64;
    while consumed == 0 {
        consumed += consumer.poll(Duration::from_secs(1)).await.unwrap().len() as u64;
    }
    let (producer_conns, producer_reauths) = counts(producer.client());
    let (consumer_conns, consumer_reauths) = counts(consumer.client());

    // Both run for four lifetimes: a send every 10 ms, each awaited, and a
    // poll between sends.
    let started = Instant::now();
    let mut sent = 1u64;
    while started.elapsed() < RUN {
        let ack = producer
            .send(ProducerRecord::new(topic.as_str(), sent.to_string()))
            .await
            .unwrap();
        sent += 1;
        let (acked, polled) = tokio::join!(ack, consumer.poll(Duration::from_millis(10)));
        acked.unwrap();
        consumed += polled.unwrap().len() as u64;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumed < sent && Instant::now() < deadline {
        consumed += consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .len() as u64;
    }
    let (producer_conns_after, producer_reauths_after) = counts(producer.client());
    let (consumer_conns_after, consumer_reauths_after) = counts(consumer.client());
    println!(
        "re-authentication | {sent} records sent, {consumed} consumed over {:.1} s | producer: {} connections opened, {} re-authentications | consumer: {} connections opened, {} re-authentications",
        started.elapsed().as_secs_f64(),
        producer_conns_after - producer_conns,
        producer_reauths_after - producer_reauths,
        consumer_conns_after - consumer_conns,
        consumer_reauths_after - consumer_reauths,
    );
    assert_eq!(consumed, sent, "every acknowledged record is consumed");
    assert_eq!(
        producer_conns_after, producer_conns,
        "the producer reconnected"
    );
    assert_eq!(
        consumer_conns_after, consumer_conns,
        "the consumer reconnected"
    );
    // Four lifetimes: each connection re-authenticated at least three times.
    assert!(
        producer_reauths_after - producer_reauths >= 3,
        "the producer re-authenticated {} times",
        producer_reauths_after - producer_reauths
    );
    assert!(
        consumer_reauths_after - consumer_reauths >= 3,
        "the consumer re-authenticated {} times",
        consumer_reauths_after - consumer_reauths
    );
    producer.close(Duration::from_secs(10)).await.unwrap();
    consumer.close().await;
}
