//! Transactions against real brokers, each scenario run under both
//! transaction protocols: the default `transaction.version` 2 (KIP-890) and
//! `transaction.version` 1 set at format time on a cluster of the test's own.
//! A Java `read_committed` consumer is the judge of what was committed.
//!
//! - committed records are visible to it, aborted ones never (they are in
//!   the log: a read_uncommitted read sees them);
//! - two producers with one `transactional.id`: the older is fenced, typed;
//! - a transaction left open past `transaction.timeout.ms` is aborted by the
//!   broker. Under version 2 the producer gets an abortable error, aborts
//!   (EndTxn v5 hands it the next epoch) and goes on. Under version 1 Kafka
//!   4.1.1 answers the abort with PRODUCER_FENCED (its coordinator bumped
//!   the epoch and forgot the last one), so the producer is fenced, typed,
//!   and a new producer with the same id goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{client, read_all};
use franz_client::{ClientConfig, ConsumerGroupMetadata, TopicPartition};
use franz_producer::{ProduceError, Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaCluster, unique_topic};

/// A cluster of the test's own under `transaction.version` `tv`, aborting
/// timed-out transactions every 500 ms.
async fn cluster(tv: u16) -> KafkaCluster {
    let builder = KafkaCluster::builder();
    // Before Kafka 4.0 there is no such feature: version 1 is the only one.
    let builder = if tv == 1 && !franz_testkit::kafka_at_least((4, 0)) {
        builder
    } else {
        builder.feature("transaction.version", tv)
    };
    builder
        .broker_config(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "500",
        )
        .start()
        .await
        .unwrap()
}

fn config(bootstrap: &str, id: &str) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(2),
        transaction_timeout: Duration::from_secs(20),
        ..ProducerConfig::from_client_config(ClientConfig {
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::new(bootstrap)
        })
    }
    .with_transactional_id(id)
}

/// What a Java read_committed consumer reads from `topic`: values by
/// partition, in offset order.
async fn java_read_committed(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<String>> {
    let records = franz_testkit::java_read_committed(bootstrap, topic)
        .await
        .unwrap();
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for r in records {
        by_partition.entry(r.partition).or_default().push(r.value);
    }
    by_partition
}

fn all_values(read: &BTreeMap<i32, Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = read.values().flatten().cloned().collect();
    v.sort();
    v
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("{prefix}{i:04}")).collect();
    v.sort();
    v
}

async fn send_all(p: &Producer, topic: &str, values: &[String]) {
    let mut acks = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let rec = ProducerRecord::new(topic, v.clone()).with_key(format!("k{}", i % 7));
        acks.push(p.send(rec).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Committed records reach a Java read_committed consumer; aborted ones are
/// written (a plain read sees them) but never reach it. Offsets committed
/// in the transactions count only when the transaction commits.
/// `version_2`: the transaction protocol the cluster must have picked
/// (`None`: either).
async fn commit_and_abort(b: &str, version_2: Option<bool>) {
    let c = client(b).await;
    let topic = unique_topic("txn-visible");
    franz_test_support::create_topic(b, &topic, 3).await;
    let producer = Producer::new(config(b, &unique_topic("tx-visible")))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    let group = ConsumerGroupMetadata::new(unique_topic("txn-offsets"));
    let offsets = |n: i64| BTreeMap::from([(TopicPartition::new(topic.clone(), 0), n)]);

    producer.begin_transaction().unwrap();
    if let Some(v2) = version_2 {
        assert_eq!(producer.transaction_version_2(), Some(v2));
    }
    send_all(&producer, &topic, &numbered("committed-a-", 0..50)).await;
    producer
        .send_offsets_to_transaction(&offsets(10), &group)
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
    assert_eq!(producer.transaction_version_2(), None);

    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &numbered("aborted-", 0..50)).await;
    producer
        .send_offsets_to_transaction(&offsets(99), &group)
        .await
        .unwrap();
    producer.abort_transaction().await.unwrap();

    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &numbered("committed-b-", 0..50)).await;
    producer.commit_transaction().await.unwrap();

    let plain = read_all(&c, &topic, 150, Duration::from_secs(60)).await;
    let written: usize = plain.values().map(Vec::len).sum();
    assert_eq!(written, 150, "the aborted records are in the log too");

    let java = java_read_committed(b, &topic).await;
    let mut expected = numbered("committed-a-", 0..50);
    expected.extend(numbered("committed-b-", 0..50));
    expected.sort();
    assert_eq!(
        all_values(&java),
        expected,
        "committed exactly, aborted never"
    );

    let committed = franz_client::Admin::new(c.clone())
        .list_group_offsets(&group.group_id)
        .await
        .unwrap();
    assert_eq!(
        committed[&TopicPartition::new(topic.clone(), 0)].committed,
        10,
        "the aborted transaction's offsets did not count"
    );
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// A second producer with the same transactional id fences the first: its
/// commit fails with the typed error, its open transaction is aborted by
/// the broker, and it can send nothing more.
async fn fencing(b: &str) {
    let topic = unique_topic("txn-fenced");
    franz_test_support::create_topic(b, &topic, 1).await;
    let id = unique_topic("tx-fenced");
    let old = Producer::new(config(b, &id)).await.unwrap();
    old.init_transactions().await.unwrap();
    old.begin_transaction().unwrap();
    send_all(&old, &topic, &numbered("zombie-", 0..5)).await;

    let new = Producer::new(config(b, &id)).await.unwrap();
    new.init_transactions().await.unwrap();

    let err = old.commit_transaction().await.unwrap_err();
    assert!(
        matches!(err, ProduceError::ProducerFenced { .. }),
        "the older producer's commit: {err:?}"
    );
    assert!(err.is_fatal());
    let again = old
        .send(ProducerRecord::new(topic.as_str(), "after fencing"))
        .await
        .unwrap_err();
    assert!(again.error.is_fatal(), "{again:?}");

    new.begin_transaction().unwrap();
    send_all(&new, &topic, &numbered("survivor-", 0..5)).await;
    new.commit_transaction().await.unwrap();
    let java = java_read_committed(b, &topic).await;
    assert_eq!(all_values(&java), numbered("survivor-", 0..5));
    new.close(Duration::from_secs(10)).await.unwrap();
}

/// A transaction left open past its timeout is aborted by the broker.
async fn timed_out_transaction(b: &str, version_2: bool) {
    let topic = unique_topic("txn-timeout");
    franz_test_support::create_topic(b, &topic, 1).await;
    let id = unique_topic("tx-timeout");
    let producer = Producer::new(ProducerConfig {
        transaction_timeout: Duration::from_secs(2),
        ..config(b, &id)
    })
    .await
    .unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &numbered("expired-", 0..3)).await;
    // Past the timeout, and past the broker's 500 ms abort sweep.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let late = producer
        .send(ProducerRecord::new(topic.as_str(), "late"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(
            late,
            ProduceError::Broker {
                code: franz_client::franz_protocol::ErrorCode::InvalidProducerEpoch,
                ..
            }
        ),
        "a record for the aborted transaction: {late:?}"
    );
    let commit = producer.commit_transaction().await.unwrap_err();
    assert!(
        commit.is_abortable(),
        "commit after the timeout: {commit:?}"
    );

    let survivor = if version_2 {
        // EndTxn v5 for the abort answers with the epoch the broker's own
        // abort moved to: the producer adopts it and goes on.
        producer.abort_transaction().await.unwrap();
        producer
    } else {
        let err = producer.abort_transaction().await.unwrap_err();
        assert!(
            matches!(err, ProduceError::ProducerFenced { .. }),
            "Kafka 4.1.1 under transaction.version 1 fences the producer: {err:?}"
        );
        let fresh = Producer::new(config(b, &id)).await.unwrap();
        fresh.init_transactions().await.unwrap();
        fresh
    };
    survivor.begin_transaction().unwrap();
    send_all(&survivor, &topic, &numbered("after-", 0..3)).await;
    survivor.commit_transaction().await.unwrap();
    let java = java_read_committed(b, &topic).await;
    assert_eq!(all_values(&java), numbered("after-", 0..3));
    survivor.close(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_under_transaction_version_2() {
    if franz_testkit::real_broker_only("its own cluster under transaction.version 2")
        || franz_testkit::needs_kafka((4, 0), "transaction version 2 (KIP-890)")
    {
        return;
    }
    let cluster = cluster(2).await;
    let b = cluster.bootstrap();
    commit_and_abort(&b, Some(true)).await;
    fencing(&b).await;
    timed_out_transaction(&b, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_under_transaction_version_1() {
    if franz_testkit::real_broker_only("its own cluster under transaction.version 1") {
        return;
    }
    let cluster = cluster(1).await;
    let b = cluster.bootstrap();
    commit_and_abort(&b, Some(false)).await;
    fencing(&b).await;
    timed_out_transaction(&b, false).await;
}

/// The commit/abort and fencing scenarios on the shared cluster, which is
/// franz-mock under `FRANZ_TEST_BROKER=mock` (transaction version 1 there):
/// the suite's check that the mock's transactions and read_committed
/// filtering agree with the real broker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_the_shared_cluster() {
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    commit_and_abort(&b, None).await;
    fencing(&b).await;
    if franz_testkit::on_mock() {
        // The mock aborts expired transactions at once; a shared real
        // broker sweeps every 10 s, too slow for this check.
        timed_out_transaction(&b, false).await;
    }
}
