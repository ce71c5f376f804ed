//! Features that depend on the broker's version, on whichever Kafka release
//! the harness runs (`FRANZ_KAFKA_VERSION`, see `just compat`): each is used
//! where the broker has it, and where it does not, franz says so with a
//! typed error or falls back as Kafka's own clients do.
//!
//! - **KIP-848** (the `consumer` group protocol, GA in Kafka 4.0): a member
//!   joins and consumes where the broker offers ConsumerGroupHeartbeat;
//!   elsewhere the member fails at once with a typed error, never hangs:
//!   `NoCommonVersion` where the API is not listed, and a group error with
//!   UNSUPPORTED_VERSION where Kafka 3.9 lists the early-access v0 but has
//!   the protocol disabled.
//! - **Transaction version 2** (KIP-890, finalized by default from 4.0): a
//!   transactional producer uses it where `transaction.version` is 2, and
//!   version 1 (AddPartitionsToTxn, Produce v11 and below) elsewhere; either
//!   way the transaction commits and a read_committed reader sees it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_client::franz_protocol::ErrorCode;
use franz_client::franz_protocol::messages::ApiKey;
use franz_client::{Client, ClientConfig, ClientError, ConnectionKind};
use franz_consumer::assignor::RangeAssignor;
use franz_consumer::{
    ConsumeError, ConsumerConfig, GroupConfig, GroupConsumer, GroupProtocol, OffsetReset,
};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_test_support::{bootstrap, create_topic};
use franz_testkit::{kafka_version, unique_group, unique_topic};

/// What one broker offers: ConsumerGroupHeartbeat's versions and the
/// finalized `transaction.version`.
async fn broker_offers(b: &str) -> (Option<(i16, i16)>, Option<i16>) {
    let client = Client::connect(ClientConfig::new(b)).await.unwrap();
    let conn = client.any_connection(ConnectionKind::Other).await.unwrap();
    let versions = conn.versions();
    (
        versions.broker_range(ApiKey::ConsumerGroupHeartbeat.key()),
        versions.finalized_feature("transaction.version"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_is_used_where_the_broker_has_it_and_refused_typed_where_not() {
    let b = bootstrap().await;
    let (heartbeat, _) = broker_offers(&b).await;
    let topic = unique_topic("compat-848");
    create_topic(&b, &topic, 2).await;
    let producer = Producer::new(ProducerConfig::new(&b)).await.unwrap();
    producer
        .send(ProducerRecord::new(topic.as_str(), "one"))
        .await
        .unwrap()
        .await
        .unwrap();

    let mut config = ConsumerConfig::new(&b);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut group = GroupConfig::new(unique_group("compat-848"));
    group.protocol = GroupProtocol::Consumer;
    group.assignors = vec![Arc::new(RangeAssignor)];
    let outcome = async {
        let mut member = GroupConsumer::new(config, group, &[topic.as_str()]).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let records = member.poll(Duration::from_millis(500)).await?;
            if !records.is_empty() {
                member.close().await?;
                return Ok::<_, ConsumeError>(records.len());
            }
            assert!(Instant::now() < deadline, "no record within 60 s");
        }
    }
    .await;
    println!(
        "compat | Kafka {} | ConsumerGroupHeartbeat {heartbeat:?} | KIP-848 member: {outcome:?}",
        kafka_version()
    );
    match heartbeat {
        // Kafka 4.0+ (the feature's `group.version` is finalized): it works.
        Some((_, max)) if max >= 1 => assert_eq!(outcome.unwrap(), 1),
        // Kafka 3.9 lists ConsumerGroupHeartbeat v0 (early access) but
        // answers UNSUPPORTED_VERSION unless the broker enables the
        // protocol: a typed group error, at once.
        Some(_) => {
            let err = outcome.unwrap_err();
            assert!(
                matches!(
                    &err,
                    ConsumeError::Group {
                        api: "ConsumerGroupHeartbeat",
                        code: ErrorCode::UnsupportedVersion,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        None => {
            let err = outcome.unwrap_err();
            assert!(
                matches!(
                    &err,
                    ConsumeError::Client(ClientError::NoCommonVersion {
                        api: "ConsumerGroupHeartbeat",
                        ..
                    })
                ),
                "{err:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_use_version_2_where_finalized_and_version_1_elsewhere() {
    let b = bootstrap().await;
    let (_, transaction_version) = broker_offers(&b).await;
    let topic = unique_topic("compat-tv");
    create_topic(&b, &topic, 2).await;
    let producer = Producer::new(ProducerConfig {
        transactional_id: Some(unique_topic("compat-tv-id")),
        ..ProducerConfig::new(&b)
    })
    .await
    .unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), i.to_string()))
                .await
                .unwrap(),
        );
    }
    // Which protocol the open transaction runs under.
    let tv2 = producer.transaction_version_2();
    producer.commit_transaction().await.unwrap();
    for ack in acks {
        ack.await.unwrap();
    }
    println!(
        "compat | Kafka {} | transaction.version finalized {transaction_version:?} | franz used version 2: {tv2:?}",
        kafka_version()
    );
    assert_eq!(tv2, Some(transaction_version.unwrap_or(0) >= 2));
    let read = franz_testkit::java_read_committed(&b, &topic)
        .await
        .unwrap();
    assert_eq!(read.len(), 10);
}
