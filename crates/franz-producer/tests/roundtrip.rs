//! The producer against the shared broker: a million records, every codec,
//! key placement against the vectors and the Java producer, and the typed
//! errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use common::{assert_exactly_once_in_order, client, create_topic_with, read_all};
use franz_client::franz_protocol::ErrorCode;
use franz_client::franz_protocol::compression::Compression;
use franz_producer::{ProduceError, Producer, ProducerConfig, ProducerRecord, partition_for_key};
use franz_testkit::{KafkaDistribution, unique_topic};

use franz_test_support::bootstrap;

/// Sends `n` records (value `"{i}|padding"`, key `k{i % 997}`) and checks
/// every future succeeded.
async fn produce_numbered(producer: &Producer, topic: &str, n: u64, value_len: usize) {
    let pad = "x".repeat(value_len.saturating_sub(8));
    let mut futures = Vec::with_capacity(n as usize);
    for i in 0..n {
        let rec =
            ProducerRecord::new(topic, format!("{i}|{pad}")).with_key(format!("k{}", i % 997));
        futures.push(producer.send(rec).await.unwrap());
    }
    for (i, f) in futures.into_iter().enumerate() {
        let meta = f.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        assert!(meta.offset >= 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_records_arrive_exactly_once_in_order() {
    let bootstrap = bootstrap().await;
    let c = client(&bootstrap).await;
    let topic = unique_topic("million");
    franz_test_support::create_topic(&bootstrap, &topic, 6).await;
    let config = ProducerConfig {
        batch_size: 256 * 1024,
        ..ProducerConfig::new(&bootstrap)
    };
    let producer = Producer::new(config).await.unwrap();
    assert!(producer.is_idempotent());
    produce_numbered(&producer, &topic, 1_000_000, 20).await;
    assert_eq!(producer.buffered_bytes(), 0);
    let read = read_all(&c, &topic, 1_000_000, Duration::from_secs(300)).await;
    assert_eq!(read.len(), 6, "every partition got records");
    assert_exactly_once_in_order(&read, 1_000_000);
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// Records sent without a timestamp carry the wall-clock time of `send`
/// (the producer reads a counter anchored to the wall clock, not
/// `SystemTime` per record); one given explicitly is kept as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_time_they_were_sent() {
    let bootstrap = bootstrap().await;
    let c = client(&bootstrap).await;
    let topic = unique_topic("timestamps");
    franz_test_support::create_topic(&bootstrap, &topic, 1).await;
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    let wall_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // Spread over more than a second, so the clock re-anchors in between.
    let mut sent = Vec::new();
    for i in 0..30u32 {
        let before = wall_ms();
        let f = producer
            .send(ProducerRecord::new(&*topic, format!("{i}|")))
            .await
            .unwrap();
        sent.push((before, wall_ms()));
        f.await.unwrap();
        tokio::time::sleep(Duration::from_millis(45)).await;
    }
    let explicit = 1_234_567_890_123;
    producer
        .send_and_wait(ProducerRecord::new(&*topic, "30|").with_timestamp(explicit))
        .await
        .unwrap();
    let read = read_all(&c, &topic, 31, Duration::from_secs(60)).await;
    let recs = &read[&0];
    for (r, (before, after)) in recs.iter().zip(&sent) {
        // A millisecond of slack either side: two clocks, each truncated.
        assert!(
            before - 1 <= r.timestamp && r.timestamp <= after + 1,
            "offset {}: timestamp {} outside [{before}, {after}]",
            r.offset,
            r.timestamp
        );
    }
    assert_eq!(recs[30].timestamp, explicit);
    producer.close(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips() {
    let bootstrap = bootstrap().await;
    let c = client(&bootstrap).await;
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = unique_topic(&format!("codec-{}", codec.name()));
        franz_test_support::create_topic(&bootstrap, &topic, 6).await;
        let producer = Producer::new(ProducerConfig::new(&bootstrap).with_compression(codec))
            .await
            .unwrap();
        produce_numbered(&producer, &topic, 50_000, 100).await;
        let read = read_all(&c, &topic, 50_000, Duration::from_secs(120)).await;
        assert_exactly_once_in_order(&read, 50_000);
        producer.close(Duration::from_secs(10)).await.unwrap();
    }
}

/// Keys of `docs/test-vectors.md` §1 with their partitions
/// for 6 and 12 partitions.
const KEY_VECTORS: &[(&str, i32, i32)] = &[
    ("", 3, 9),
    ("a", 4, 4),
    ("ab", 2, 2),
    ("abc", 3, 3),
    ("abcd", 2, 8),
    ("key", 1, 1),
    ("test", 5, 11),
    ("hello", 3, 9),
    ("kafka", 4, 4),
    ("123456789", 0, 6),
    ("21", 0, 0),
    ("foobar", 0, 6),
    ("0", 2, 8),
    ("1", 3, 3),
    ("100:48069", 3, 9),
    ("{\"id\":1}", 0, 0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_java_puts_them() {
    let bootstrap = bootstrap().await;
    let c = client(&bootstrap).await;
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    for (partitions, column) in [(6, 1), (12, 2)] {
        let topic = unique_topic(&format!("keys-{partitions}"));
        franz_test_support::create_topic(&bootstrap, &topic, partitions).await;
        for (key, p6, p12) in KEY_VECTORS {
            let want = if column == 1 { *p6 } else { *p12 };
            let meta = producer
                .send_and_wait(ProducerRecord::new(topic.as_str(), "v").with_key(key.to_string()))
                .await
                .unwrap();
            assert_eq!(meta.partition, want, "key {key:?} over {partitions}");
        }
    }

    // The Java console producer with parse.key=true places the same keys on
    // the same partitions.
    let topic = unique_topic("keys-java");
    franz_test_support::create_topic(&bootstrap, &topic, 12).await;
    let keys: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
    let dist = KafkaDistribution::resolve().unwrap();
    let mut cmd = dist.tool_command("org.apache.kafka.tools.ConsoleProducer");
    cmd.args(["--bootstrap-server", &bootstrap, "--topic", &topic])
        .args([
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=\t",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for k in &keys {
            writeln!(stdin, "{k}\tjava").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = read_all(&c, &topic, keys.len(), Duration::from_secs(60)).await;
    for (partition, recs) in &read {
        for r in recs {
            let key = r.key.as_deref().unwrap();
            assert_eq!(
                partition_for_key(key, 12),
                *partition,
                "Java put {:?} on {partition}",
                String::from_utf8_lossy(key)
            );
            let ours = producer
                .send_and_wait(ProducerRecord::new(topic.as_str(), "franz").with_key(key.to_vec()))
                .await
                .unwrap();
            assert_eq!(ours.partition, *partition);
        }
    }
    producer.close(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_and_unknown_topics_get_typed_errors() {
    let bootstrap = bootstrap().await;
    let config = ProducerConfig {
        max_block: Duration::from_secs(3),
        max_request_size: 200_000,
        ..ProducerConfig::new(&bootstrap)
    };
    let producer = Producer::new(config).await.unwrap();

    // Unknown topic: an error after max_block, not a hang.
    let started = std::time::Instant::now();
    let nowhere = unique_topic("nowhere");
    let refused = producer
        .send(ProducerRecord::new(nowhere.as_str(), "v"))
        .await
        .unwrap_err();
    // The record comes back with the reason, untouched.
    assert_eq!(&*refused.record.topic, nowhere.as_str());
    assert_eq!(refused.record.value.as_deref(), Some(&b"v"[..]));
    let err = refused.error;
    assert!(matches!(err, ProduceError::UnknownTopic(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Larger than max_request_size: refused at once.
    let topic = unique_topic("small-messages");
    create_topic_with(&bootstrap, &topic, 1, 1, &[("max.message.bytes", "10000")]).await;
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), vec![0u8; 300_000]))
        .await
        .unwrap_err()
        .error;
    assert!(
        matches!(
            err,
            ProduceError::RecordTooLarge {
                setting: "max_request_size",
                ..
            }
        ),
        "{err}"
    );

    // Larger than the topic's max.message.bytes: the broker refuses it.
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), vec![7u8; 50_000]))
        .await
        .unwrap()
        .await
        .unwrap_err();
    match &err {
        ProduceError::Broker { code, .. } => {
            assert!(
                matches!(
                    code,
                    ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge
                ),
                "{err}"
            )
        }
        other => panic!("expected a broker error, got {other}"),
    }
    // A bad partition number.
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), "v").with_partition(5))
        .await
        .unwrap_err()
        .error;
    assert!(
        matches!(err, ProduceError::UnknownPartition { .. }),
        "{err}"
    );
    // The producer still works afterwards (the refused batch's sequences
    // were given back).
    let ok = producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "fine"))
        .await
        .unwrap();
    assert_eq!(ok.offset, 0);
    producer.close(Duration::from_secs(10)).await.unwrap();
}
