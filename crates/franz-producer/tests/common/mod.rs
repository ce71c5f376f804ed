//! Helpers for the producer suites: topic creation and reading a topic back
//! with franz's own fetch, as (offset, key, value) per partition.
#![allow(clippy::disallowed_methods)] // test support drives real time: it waits and measures
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use franz_client::franz_protocol::messages::{FetchRequest, fetch_request};
use franz_client::franz_protocol::primitives::DecodeLimits;
use franz_client::franz_protocol::record::{BatchDecodeOptions, RecordBatches};
use franz_client::{Client, ClientConfig, ConnectionKind};

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) offset: i64,
    /// The record's timestamp (CreateTime: the producer's, ms since the epoch).
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
}

pub(crate) async fn client(bootstrap: &str) -> Client {
    Client::connect(ClientConfig::new(bootstrap)).await.unwrap()
}

#[allow(unused_imports)] // each test file uses its own subset
pub(crate) use franz_test_support::{bootstrap, create_topic_with};

/// Reads every partition of `topic` from offset 0 until `expected` records
/// have been seen (or `timeout`).
pub(crate) async fn read_all(
    client: &Client,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Rec>> {
    let deadline = Instant::now() + timeout;
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        let total: usize = out.values().map(Vec::len).sum();
        if total >= expected {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "read {total} of {expected} records from {topic}"
        );
        let md = client
            .refresh_metadata_for(&[topic.to_string()])
            .await
            .unwrap();
        let t = md.topics[topic].clone();
        for p in &t.partitions {
            let offset = *next.entry(p.partition).or_insert(0);
            let Ok(conn) = client.connection(p.leader, ConnectionKind::Fetch).await else {
                continue;
            };
            let req = FetchRequest {
                max_wait_ms: 50,
                min_bytes: 1,
                max_bytes: 16 << 20,
                topics: vec![fetch_request::FetchTopic {
                    topic: topic.to_string(),
                    topic_id: t.id,
                    partitions: vec![fetch_request::FetchPartition {
                        partition: p.partition,
                        fetch_offset: offset,
                        partition_max_bytes: 8 << 20,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let Ok(resp) = conn.send(&req).await else {
                continue;
            };
            for tr in resp.responses {
                for pr in tr.partitions {
                    let Some(records) = pr.records else { continue };
                    for batch in RecordBatches::new(records, BatchDecodeOptions::default()) {
                        let batch = batch.unwrap();
                        if batch.attributes.is_control() {
                            next.insert(p.partition, batch.last_offset() + 1);
                            continue;
                        }
                        let recs = batch.records(&DecodeLimits::default()).unwrap();
                        for r in &recs {
                            let r = r.unwrap();
                            if r.offset < *next.get(&p.partition).unwrap_or(&0) {
                                continue;
                            }
                            out.entry(p.partition).or_default().push(Rec {
                                offset: r.offset,
                                timestamp: r.timestamp,
                                key: r.key.map(<[u8]>::to_vec),
                                value: r.value.map(<[u8]>::to_vec),
                            });
                            next.insert(p.partition, r.offset + 1);
                        }
                    }
                }
            }
        }
    }
}

/// Checks that every value `0..n` (as decimal text, the first field before
/// `|`) appears exactly once overall, and in ascending order within each
/// partition.
pub(crate) fn assert_exactly_once_in_order(read: &BTreeMap<i32, Vec<Rec>>, n: u64) {
    let mut seen = vec![0u32; n as usize];
    for (p, recs) in read {
        let mut last: Option<u64> = None;
        for r in recs {
            let v = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            let seq: u64 = v.split('|').next().unwrap().parse().unwrap();
            assert!(seq < n, "unexpected value {seq}");
            seen[seq as usize] += 1;
            if let Some(l) = last {
                assert!(seq > l, "partition {p}: {seq} after {l} (out of order)");
            }
            last = Some(seq);
        }
    }
    let missing = seen.iter().filter(|c| **c == 0).count();
    let dups = seen.iter().filter(|c| **c > 1).count();
    assert_eq!(
        (missing, dups),
        (0, 0),
        "{missing} records missing, {dups} duplicated"
    );
}

/// A broker of the test's own behind a fault proxy (`cluster.proxy(1)`), a
/// direct client, and a fresh one-partition topic named after `prefix`.
pub(crate) async fn proxied_broker_with_topic(
    prefix: &str,
) -> (franz_testkit::KafkaCluster, Client, String) {
    let cluster = franz_testkit::KafkaCluster::builder()
        .fault_proxy()
        .start()
        .await
        .unwrap();
    let c = client(&cluster.direct_bootstrap()).await;
    let topic = franz_testkit::unique_topic(prefix);
    franz_test_support::create_topic(&cluster.direct_bootstrap(), &topic, 1).await;
    (cluster, c, topic)
}
