//! The consumer against the shared broker: records the producer wrote come
//! back complete and in order, resets follow `auto_offset_reset`, and bad
//! positions or topics give typed errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use common::{bootstrap, create_topic};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use franz_consumer::{
    ConsumeError, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition,
};
use franz_producer::ProducerRecord;
use franz_testkit::unique_topic;

/// Keyed records (17 keys) with a duplicated header.
async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<u32>) {
    common::produce(bootstrap, range, |i| {
        ProducerRecord::new(topic, format!("v{i}"))
            .with_key(format!("k{}", i % 17))
            .with_header("i", i.to_string())
            .with_header("i", "dup")
    })
    .await;
}

/// Polls until `n` records have arrived or 30 s pass.
async fn poll_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    out
}

fn earliest(bootstrap: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(bootstrap);
    c.auto_offset_reset = OffsetReset::Earliest;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_produced_comes_back_once_in_order_with_headers() {
    let b = bootstrap().await;
    let topic = unique_topic("consume-all");
    create_topic(&b, &topic, 3).await;
    produce(&b, &topic, 0..3000).await;

    let mut consumer = Consumer::new(earliest(&b)).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();
    let records = poll_n(&mut consumer, 3000).await;
    assert_eq!(records.len(), 3000);
    // Per partition: offsets 0.. without gaps, and send order kept (keys
    // pin records to partitions, so each key's values must ascend).
    let mut by_partition: BTreeMap<i32, Vec<&ConsumerRecord>> = BTreeMap::new();
    for r in &records {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut last_per_key: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for (p, rs) in &by_partition {
        for (i, r) in rs.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "partition {p} has a gap or a duplicate");
            let v: u32 = std::str::from_utf8(&r.value.as_ref().unwrap()[1..])
                .unwrap()
                .parse()
                .unwrap();
            let key = r.key.as_ref().unwrap().to_vec();
            assert_eq!(key, format!("k{}", v % 17).into_bytes());
            if let Some(prev) = last_per_key.insert(key, v) {
                assert!(prev < v, "order broken within a key");
            }
            let headers: Vec<(&[u8], Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_deref()))
                .collect();
            let n = v.to_string();
            assert_eq!(
                headers,
                vec![
                    (&b"i"[..], Some(n.as_bytes())),
                    (&b"i"[..], Some(&b"dup"[..]))
                ]
            );
        }
        let tp = TopicPartition::new(topic.as_str(), *p);
        assert_eq!(consumer.position(&tp), Some(rs.len() as i64));
    }
    // Nothing more, and no duplicates on the next poll.
    assert!(
        consumer
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_sees_only_new_records_and_seek_rewinds() {
    let b = bootstrap().await;
    let topic = unique_topic("consume-latest");
    create_topic(&b, &topic, 1).await;
    produce(&b, &topic, 0..10).await;

    let mut consumer = Consumer::new(ConsumerConfig::new(&b)).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();
    assert!(
        consumer
            .poll(Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    let tp = TopicPartition::new(topic.as_str(), 0);
    assert_eq!(consumer.position(&tp), Some(10));
    produce(&b, &topic, 10..15).await;
    let fresh = poll_n(&mut consumer, 5).await;
    let offsets: Vec<i64> = fresh.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![10, 11, 12, 13, 14]);

    consumer.seek(&tp, 3).unwrap();
    let again = poll_n(&mut consumer, 12).await;
    assert_eq!(again.first().map(|r| r.offset), Some(3));
    assert_eq!(again.len(), 12);
    consumer.seek_to_beginning().await.unwrap();
    assert_eq!(consumer.position(&tp), Some(0));
    consumer.seek_to_end().await.unwrap();
    assert_eq!(consumer.position(&tp), Some(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_positions_reset_or_fail_by_policy() {
    let b = bootstrap().await;
    let topic = unique_topic("consume-range");
    create_topic(&b, &topic, 1).await;
    produce(&b, &topic, 0..5).await;
    let tp = TopicPartition::new(topic.as_str(), 0);

    let mut strict = ConsumerConfig::new(&b);
    strict.auto_offset_reset = OffsetReset::None;
    let mut consumer = Consumer::new(strict).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();
    let err = consumer.poll(Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, ConsumeError::NoOffset { .. }), "{err}");
    consumer.seek(&tp, 1_000).unwrap();
    let err = consumer.poll(Duration::from_secs(5)).await.unwrap_err();
    match err {
        ConsumeError::OffsetOutOfRange { offset, .. } => assert_eq!(offset, 1_000),
        other => panic!("expected OffsetOutOfRange, got {other}"),
    }

    let mut consumer = Consumer::new(earliest(&b)).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();
    consumer.seek(&tp, 1_000).unwrap();
    let records = poll_n(&mut consumer, 5).await;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4], "reset to the earliest offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_and_partitions_are_typed_errors() {
    let b = bootstrap().await;
    let mut config = ConsumerConfig::new(&b);
    config.client.default_api_timeout = Duration::from_secs(3);
    let mut consumer = Consumer::new(config).await.unwrap();
    let began = Instant::now();
    let err = consumer
        .assign_topic(&unique_topic("no-such-topic"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConsumeError::UnknownTopic(_)), "{err}");
    assert!(began.elapsed() < Duration::from_secs(15), "no hang");

    let topic = unique_topic("consume-parts");
    create_topic(&b, &topic, 2).await;
    let err = consumer
        .assign(&[TopicPartition::new(topic.as_str(), 5)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConsumeError::UnknownPartition { partition: 5, .. }),
        "{err}"
    );
    assert!(
        consumer.assignment().is_empty(),
        "a failed assign changes nothing"
    );
    let err = consumer
        .seek(&TopicPartition::new(topic.as_str(), 0), 0)
        .unwrap_err();
    assert!(matches!(err, ConsumeError::NotAssigned { .. }), "{err}");
}

/// A paused partition is not fetched (its position and the others' are
/// kept); resumed, it continues where it stopped. Lag follows the high
/// watermark of the latest fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_partitions_are_not_fetched_until_resumed() {
    let b = bootstrap().await;
    let topic = unique_topic("pause");
    create_topic(&b, &topic, 2).await;
    let p0 = TopicPartition::new(topic.as_str(), 0);
    let p1 = TopicPartition::new(topic.as_str(), 1);
    let to = |p: i32| {
        let topic = topic.clone();
        move |i: u32| ProducerRecord::new(topic.as_str(), format!("v{i}")).with_partition(p)
    };
    common::produce(&b, 0..5, to(0)).await;
    common::produce(&b, 0..5, to(1)).await;

    let mut consumer = Consumer::new(earliest(&b)).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();
    assert!(matches!(
        consumer.pause(&[TopicPartition::new(topic.as_str(), 9)]),
        Err(ConsumeError::NotAssigned { .. })
    ));
    consumer.pause(std::slice::from_ref(&p0)).unwrap();
    assert_eq!(consumer.paused(), vec![p0.clone()]);
    let first = poll_n(&mut consumer, 5).await;
    assert_eq!(first.len(), 5);
    assert!(
        first.iter().all(|r| r.partition == 1),
        "only P1 while P0 is paused"
    );
    // More records for both; P0 stays silent for a while.
    common::produce(&b, 5..10, to(0)).await;
    common::produce(&b, 5..10, to(1)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut more = Vec::new();
    while Instant::now() < deadline {
        more.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(more.len(), 5);
    assert!(more.iter().all(|r| r.partition == 1));
    assert_eq!(consumer.lag(&p1), Some(0));
    assert_eq!(
        consumer.position(&p0),
        Some(0),
        "the paused position is kept"
    );

    consumer.resume(std::slice::from_ref(&p0)).unwrap();
    assert!(consumer.paused().is_empty());
    let resumed = poll_n(&mut consumer, 10).await;
    let offsets: Vec<i64> = resumed.iter().map(|r| r.offset).collect();
    assert!(resumed.iter().all(|r| r.partition == 0));
    assert_eq!(
        offsets,
        (0..10).collect::<Vec<_>>(),
        "from where it stopped, in order"
    );
    assert_eq!(consumer.lag(&p0), Some(0));
}

/// A `Stream` consumer inside a `tokio::select!` loop whose other branch
/// wins at random, cancelling `next()` mid-fetch hundreds of times while a
/// producer writes: every record arrives exactly once, in order per
/// partition. `max_poll_records` caps the batch `poll` as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_next_loses_and_repeats_nothing() {
    use futures_util::StreamExt;

    const TOTAL: usize = 3000;
    let b = bootstrap().await;
    let topic = unique_topic("consume-stream");
    create_topic(&b, &topic, 3).await;
    let writer = {
        let (b, topic) = (b.clone(), topic.clone());
        tokio::spawn(async move {
            for chunk in 0..10u32 {
                produce(&b, &topic, chunk * 300..(chunk + 1) * 300).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut config = earliest(&b);
    config.fetch_max_wait = Duration::from_millis(20);
    config.max_poll_records = 7;
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();

    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut cancelled = 0u32;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    {
        let mut stream = consumer.stream();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut count = 0;
        while count < TOTAL {
            assert!(Instant::now() < deadline, "{count} of {TOTAL} records");
            // xorshift: 0–3 ms, often shorter than one fetch round trip.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let wait = Duration::from_micros(rng % 3000);
            tokio::select! {
                r = stream.next() => {
                    let r = r.expect("the stream does not end").unwrap();
                    seen.entry(r.partition).or_default().push(r.offset);
                    count += 1;
                }
                () = tokio::time::sleep(wait) => cancelled += 1,
            }
        }
    }
    writer.await.unwrap();
    assert!(cancelled > 50, "only {cancelled} cancellations");
    for (p, offsets) in &seen {
        let expected: Vec<i64> = (0..i64::try_from(offsets.len()).unwrap()).collect();
        assert_eq!(offsets, &expected, "partition {p}: once each, in order");
    }
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), TOTAL);
    // Nothing more, and the batch poll honours max_poll_records.
    produce(&b, &topic, 0..100).await;
    let mut more = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while more < 100 && Instant::now() < deadline {
        let batch = consumer.poll(Duration::from_millis(300)).await.unwrap();
        assert!(batch.len() <= 7, "{} records in one poll", batch.len());
        more += batch.len();
    }
    assert_eq!(more, 100);
}

/// A topic deleted and created again is a new log: positions from the old
/// one start over by `auto_offset_reset` (a position below the new log end
/// would otherwise silently skip the new topic's first records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_read_from_its_start() {
    let b = bootstrap().await;
    let topic = unique_topic("consume-recreate");
    create_topic(&b, &topic, 1).await;
    produce(&b, &topic, 0..10).await;
    let mut config = earliest(&b);
    config.client.metadata_max_age = Duration::from_millis(500);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign_topic(&topic).await.unwrap();
    assert_eq!(poll_n(&mut consumer, 10).await.len(), 10);
    let tp = TopicPartition::new(&topic, 0);
    assert_eq!(consumer.position(&tp), Some(10));

    let admin = common::admin(&b).await;
    admin.delete_topics(&[&topic]).await.unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    // Deletion is asynchronous: create until the name is free again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = admin
            .create_topics(
                vec![franz_client::admin::NewTopic::new(&topic, 1, 1)],
                false,
            )
            .await
            .unwrap();
        if r[0].1.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} never re-created: {:?}",
            r[0].1
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    produce(&b, &topic, 100..115).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < 15 {
        assert!(Instant::now() < deadline, "read {got:?}");
        // Errors while the topic is gone (unknown topic/partition) retry.
        if let Ok(records) = consumer.poll(Duration::from_millis(300)).await {
            got.extend(records.into_iter().map(|r| r.offset));
        }
    }
    assert_eq!(
        got,
        (0..15).collect::<Vec<_>>(),
        "the new log, from its start"
    );
}
