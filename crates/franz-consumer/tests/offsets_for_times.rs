//! `Consumer::offsets_for_times` against Java's `offsetsForTimes` on the
//! same topic: records with explicit timestamps (out of order within a
//! partition, as producers may write them), asked about timestamps before,
//! between, on and after them. Both clients must name the same offset and
//! record timestamp, or both say "none".

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

mod common;

use std::io::Read;
use std::path::Path;

use common::{bootstrap, create_topic};
use franz_consumer::{Consumer, ConsumerConfig, TopicPartition};
use franz_producer::ProducerRecord;
use franz_testkit::{KafkaDistribution, unique_topic};

const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_agrees_with_java() {
    let b = bootstrap().await;
    let topic = unique_topic("offsets-for-times");
    create_topic(&b, &topic, PARTITIONS).await;
    let base = 1_700_000_000_000i64;
    // Per partition: timestamps base + 10 × (i, with a few out of order).
    let order = [0i64, 1, 2, 5, 3, 4, 6, 9, 7, 8];
    common::produce(&b, 0..(PARTITIONS as u32 * 10), |i| {
        let p = i32::try_from(i / 10).unwrap();
        let ts = base + 10 * order[(i % 10) as usize] + i64::from(p);
        ProducerRecord::new(topic.as_str(), format!("v{i}"))
            .with_partition(p)
            .with_timestamp(ts)
    })
    .await;
    let stamps: Vec<i64> = vec![
        0,
        base - 1,
        base,
        base + 1,
        base + 25,
        base + 50,
        base + 51,
        base + 90,
        base + 91,
        base + 1_000,
    ];

    let consumer = Consumer::new(ConsumerConfig::new(&b)).await.unwrap();
    let asks: Vec<(TopicPartition, i64)> = (0..PARTITIONS)
        .flat_map(|p| stamps.iter().map(move |ts| (p, *ts)))
        .map(|(p, ts)| (TopicPartition::new(&topic, p), ts))
        .collect();
    let mut franz = Vec::new();
    for (tp, ts) in &asks {
        // One ask per call: the map keys by partition.
        let got = consumer
            .offsets_for_times(&[(tp.clone(), *ts)])
            .await
            .unwrap();
        franz.push(match &got[tp] {
            Some(o) => format!("{} {ts} {} {}", tp.partition, o.offset, o.timestamp),
            None => format!("{} {ts} none", tp.partition),
        });
    }

    let joined: Vec<String> = stamps.iter().map(i64::to_string).collect();
    let (b2, topic2) = (b.clone(), topic.clone());
    let java = tokio::task::spawn_blocking(move || {
        let dist = KafkaDistribution::resolve().unwrap();
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/JavaOffsetsForTimes.java");
        let classes = dist.compile_java(&source).unwrap();
        let mut child = dist
            .spawn_java(
                &classes,
                "JavaOffsetsForTimes",
                &[&b2, &topic2, &PARTITIONS.to_string(), &joined.join(",")],
            )
            .unwrap();
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success(), "the Java peer failed");
        out
    })
    .await
    .unwrap();
    let java: Vec<String> = java.lines().map(str::to_string).collect();
    assert_eq!(franz, java, "franz (left) and Java (right) disagree");
    assert!(
        franz.iter().any(|l| l.ends_with("none")),
        "a timestamp past every record"
    );
}
