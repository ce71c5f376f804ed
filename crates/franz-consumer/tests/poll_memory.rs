//! The per-poll byte budget bounds the consumer's memory. Its own test
//! binary (cargo runs one binary's tests as threads of one process), with
//! one test, so the process's peak RSS (VmHWM) is this test's alone.
//!
//! 50 gzip batches of about 20 MiB each once decompressed (a few hundred
//! KiB on the wire) are written to a topic whose `max.message.bytes` is
//! raised to fit them. One fetch of `max_partition_fetch_bytes` brings
//! many of them at once; decoding all of that in one poll would hold
//! hundreds of MiB. With `max_poll_bytes` of 32 MiB, a poll decodes only
//! what its budget admits (at least one whole batch), the rest waits
//! compressed, and the peak RSS while consuming stays under the budget, plus
//! one batch, plus the compressed fetch buffers, plus a stated overhead.
//! Every record arrives, once, in order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{admin, bootstrap};
use franz_client::admin::NewTopic;
use franz_client::franz_protocol::ErrorCode;
use franz_client::franz_protocol::compression::Compression;
use franz_client::franz_protocol::messages::{ProduceRequest, produce_request};
use franz_client::franz_protocol::record::{BatchMeta, RecordBatchBuilder};
use franz_client::{Client, ClientConfig, ConnectionKind};
use franz_consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use franz_testkit::unique_topic;

const BATCHES: usize = 50;
const RECORDS_PER_BATCH: usize = 200;
const VALUE_BYTES: usize = 100 * 1024; // 200 × 100 KiB ≈ 20 MiB per batch
const BUDGET: usize = 32 << 20;
/// Allocator slack, tokio, TLS-free client buffers, the test's own vectors.
const OVERHEAD: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_decodes_only_what_its_byte_budget_admits() {
    let b = bootstrap().await;
    let topic = unique_topic("poll-memory");
    admin(&b)
        .await
        .create_topics(
            vec![NewTopic::new(&topic, 1, 1).config("max.message.bytes", (30 << 20).to_string())],
            false,
        )
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    let mut largest_wire_batch = 0;
    {
        let client = Client::connect(ClientConfig::new(&b)).await.unwrap();
        for batch in 0..BATCHES {
            let bytes = build_batch(batch);
            largest_wire_batch = largest_wire_batch.max(bytes.len());
            produce_raw(&client, &topic, bytes).await;
        }
    }

    let tp = TopicPartition::new(&topic, 0);
    let mut config = ConsumerConfig::new(&b);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.max_poll_bytes = BUDGET;
    config.max_poll_records = usize::MAX;
    let fetch_buffers = u64::try_from(config.max_partition_fetch_bytes).unwrap()
        + u64::try_from(largest_wire_batch).unwrap();
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign(std::slice::from_ref(&tp)).await.unwrap();

    // Forget the producing side's peak: from here on, VmHWM is consuming.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM needs Linux 4.0+");
    let baseline = vm_kib("VmRSS") * 1024;
    let mut next_offset = 0i64;
    let total = i64::try_from(BATCHES * RECORDS_PER_BATCH).unwrap();
    let mut polls = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next_offset < total {
        assert!(Instant::now() < deadline, "read {next_offset} of {total}");
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        polls += usize::from(!records.is_empty());
        let bytes: usize = records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Bytes::len))
            .sum();
        assert!(
            bytes <= BUDGET + RECORDS_PER_BATCH * VALUE_BYTES,
            "a poll returned {bytes} bytes: more than the budget plus one batch"
        );
        for r in records {
            assert_eq!(
                r.offset, next_offset,
                "in order, nothing skipped or repeated"
            );
            let value = r.value.unwrap();
            assert_eq!(value.len(), VALUE_BYTES);
            assert!(value.starts_with(format!("{next_offset:08}").as_bytes()));
            next_offset += 1;
        }
    }
    let peak = vm_kib("VmHWM") * 1024;
    let allowed =
        u64::try_from(BUDGET + RECORDS_PER_BATCH * VALUE_BYTES).unwrap() + fetch_buffers + OVERHEAD;
    eprintln!(
        "peak RSS {} MiB over a baseline of {} MiB ({} MiB allowed), {polls} polls",
        peak >> 20,
        baseline >> 20,
        allowed >> 20
    );
    assert!(
        peak.saturating_sub(baseline) <= allowed,
        "peak RSS grew by {} MiB while consuming; the budget allows {} MiB",
        peak.saturating_sub(baseline) >> 20,
        allowed >> 20
    );
    assert!(polls >= BATCHES / 2, "{polls} polls for {BATCHES} batches");
}

/// One gzip batch of `RECORDS_PER_BATCH` values, each led by its offset.
fn build_batch(batch: usize) -> Bytes {
    let mut b = RecordBatchBuilder::with_capacity(RECORDS_PER_BATCH * VALUE_BYTES);
    let filler: Vec<u8> = b"franz poll memory budget "
        .iter()
        .copied()
        .cycle()
        .take(VALUE_BYTES - 8)
        .collect();
    for i in 0..RECORDS_PER_BATCH {
        let offset = batch * RECORDS_PER_BATCH + i;
        let mut value = format!("{offset:08}").into_bytes();
        value.extend_from_slice(&filler);
        b.push(0, None, Some(&value), &[]);
    }
    b.finish(&BatchMeta {
        compression: Compression::Gzip,
        compression_level: Some(1),
        ..BatchMeta::default()
    })
    .unwrap()
}

async fn produce_raw(client: &Client, topic: &str, records: Bytes) {
    let req = ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![produce_request::TopicProduceData {
            name: topic.to_string(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: 0,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = client
            .topic_metadata(topic)
            .await
            .ok()
            .and_then(|t| t.partitions.first().map(|p| p.leader))
            .filter(|l| *l >= 0);
        if let Some(node) = leader
            && let Ok(conn) = client.connection(node, ConnectionKind::Other).await
            && let Ok(resp) = conn.send(&req).await
        {
            let code = ErrorCode::from_code(resp.responses[0].partition_responses[0].error_code);
            if code == ErrorCode::None {
                return;
            }
            assert!(code.is_retriable(), "produce failed: {code}");
        }
        assert!(Instant::now() < deadline, "could not produce a batch");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `kB` line of /proc/self/status.
fn vm_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}
