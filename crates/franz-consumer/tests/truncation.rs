//! KIP-320 log-truncation detection against a real unclean leader election,
//! on three owned brokers, done deterministically:
//!
//! 1. A topic with one partition on two replicas, A (leader) and B, and
//!    `min.insync.replicas=1`. L records are written while both are in sync.
//! 2. B is killed; once the ISR is {A}, N more records are written and read
//!    by the consumers under test.
//! 3. A is killed and B started: B never saw the N records.
//! 4. B is elected with ElectLeaders of type UNCLEAN (KIP-460).
//! 5. Once metadata shows B leading at a newer leader epoch, M < N new
//!    records are written to B, at offsets L..L+M.
//!
//! The third broker holds no replica of the topic: it keeps the controller
//! quorum (every node is a combined broker and controller) while A and B
//! are down in turn. The recipe (replication 3, killing two
//! replicas) would leave one of three controllers, and no quorum.
//!
//! Asserted on the offsets read after the election:
//! - a consumer whose position (L+N) is beyond the new log end moves to the
//!   divergence point L and reads all M new records (without KIP-320 it
//!   gets OFFSET_OUT_OF_RANGE and, resetting to latest, skips them);
//! - a consumer whose position (L+K, K < M) is below the new log end also
//!   moves to L: without KIP-320 it would silently read L+K.. of the new
//!   history and never see L..L+K;
//! - with `auto_offset_reset = None`, the consumer gets a typed
//!   `LogTruncation` error naming the divergence point, and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::time::{Duration, Instant};

use common::admin;
use franz_client::admin::NewTopic;
use franz_client::franz_protocol::ErrorCode;
use franz_client::franz_protocol::messages::{ElectLeadersRequest, elect_leaders_request};
use franz_client::{Client, ClientConfig, ConnectionKind};
use franz_consumer::{ConsumeError, Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use franz_producer::ProducerRecord;
use franz_testkit::{KafkaCluster, unique_topic};

const L: i64 = 10;
const N: i64 = 100;
const K: i64 = 20;
const M: i64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclean_election_is_detected_and_nothing_new_is_skipped() {
    if franz_testkit::real_broker_only("an unclean election on its own cluster") {
        return;
    }
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let b = cluster.bootstrap();
    let topic = unique_topic("truncation");
    admin(&b)
        .await
        .create_topics(
            vec![NewTopic::new(&topic, 1, 2).config("min.insync.replicas", "1")],
            false,
        )
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    let client = Client::connect(ClientConfig::new(&b)).await.unwrap();
    let p = wait_for(&client, &topic, "both replicas in sync", |p| {
        p.leader >= 0 && p.isr.len() == 2
    })
    .await;
    let leader_a = p.leader;
    let follower_b = *p.replicas.iter().find(|r| **r != leader_a).unwrap();
    let epoch_before = p.leader_epoch;

    produce(&b, &topic, "old", 0..L).await;
    cluster.kill(follower_b).unwrap();
    wait_for(&client, &topic, "B out of the ISR", |p| {
        p.isr == vec![leader_a]
    })
    .await;
    produce(&b, &topic, "old", L..L + N).await;

    let tp = TopicPartition::new(&topic, 0);
    // One consumer reads everything, one only L+K records, one (reset
    // none) everything.
    let mut beyond = consumer(&b, &tp, OffsetReset::Latest).await;
    read_until(&mut beyond, L + N).await;
    let mut below = consumer(&b, &tp, OffsetReset::Latest).await;
    read_until(&mut below, L + K).await;
    // Records fetched past the position are still buffered, and are handed
    // out whatever happens to the log (Java does the same). Start `below`
    // the way a group member restoring its commit does: at the offset, with
    // the committed leader epoch, nothing buffered.
    let epoch = below.position_epoch(&tp);
    below.seek_with_epoch(&tp, L + K, epoch).unwrap();
    let mut strict = consumer(&b, &tp, OffsetReset::None).await;
    read_until(&mut strict, L + N).await;
    assert_eq!(beyond.position(&tp), Some(L + N));
    assert_eq!(below.position(&tp), Some(L + K));
    assert_eq!(beyond.position_epoch(&tp), epoch_before);

    cluster.kill(leader_a).unwrap();
    cluster.restart(follower_b).await.unwrap();
    wait_for(&client, &topic, "A fenced, no leader", |p| p.leader < 0).await;
    elect_unclean(&client, &topic).await;
    let p = wait_for(&client, &topic, "B leading at a newer epoch", |p| {
        p.leader == follower_b && p.leader_epoch > epoch_before
    })
    .await;
    assert!(p.leader_epoch > epoch_before);
    produce(&b, &topic, "new", 0..M).await;

    for (name, c) in [
        ("beyond the log end", &mut beyond),
        ("below the log end", &mut below),
    ] {
        let got = read_records(c, M).await;
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (L..L + M).collect::<Vec<_>>(),
            "{name}: reads from the divergence point"
        );
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (_, v))| *v == format!("new-{i}")),
            "{name}: only the new history: {got:?}"
        );
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no LogTruncation error");
        match strict.poll(Duration::from_millis(500)).await {
            Ok(records) => assert!(records.is_empty(), "nothing is read past a truncation"),
            Err(ConsumeError::LogTruncation {
                offset, end_offset, ..
            }) => {
                assert_eq!((offset, end_offset), (L + N, L));
                break;
            }
            Err(e) if e.is_retriable() => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    // Seeking to the divergence point goes on with the new history.
    strict.seek(&tp, L).unwrap();
    assert_eq!(read_records(&mut strict, M).await.len() as i64, M);
}

async fn consumer(b: &str, tp: &TopicPartition, reset: OffsetReset) -> Consumer {
    let mut config = ConsumerConfig::new(b);
    config.auto_offset_reset = reset;
    config.fetch_max_wait = Duration::from_millis(100);
    config.client.request_timeout = Duration::from_secs(5);
    config.max_poll_records = 5;
    let mut c = Consumer::new(config).await.unwrap();
    c.assign(std::slice::from_ref(tp)).await.unwrap();
    c.seek(tp, 0).unwrap();
    c
}

/// Polls until the position reaches `end` (reading from offset 0).
async fn read_until(c: &mut Consumer, end: i64) {
    let tp = c.assignment()[0].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 0;
    while next < end {
        assert!(Instant::now() < deadline, "read {next} of {end}");
        // Five at a time: every `end` here is a multiple of five, so the
        // position stops exactly there.
        let mut records = c.poll(Duration::from_millis(500)).await.unwrap();
        for r in records.drain(..) {
            assert_eq!(r.offset, next);
            next += 1;
        }
    }
    assert_eq!(c.position(&tp), Some(end));
}

/// Reads `n` records (errors that a retry fixes are tolerated: brokers are
/// coming and going).
async fn read_records(c: &mut Consumer, n: i64) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while (got.len() as i64) < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n}: {got:?}",
            got.len()
        );
        match c.poll(Duration::from_millis(500)).await {
            Ok(records) => got.extend(records.into_iter().map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                )
            })),
            Err(e) if e.is_retriable() => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    got
}

async fn produce(b: &str, topic: &str, tag: &str, range: std::ops::Range<i64>) {
    let range = u32::try_from(range.start).unwrap()..u32::try_from(range.end).unwrap();
    common::produce(b, range, |i| {
        ProducerRecord::new(topic, format!("{tag}-{i}")).with_partition(0)
    })
    .await;
}

async fn elect_unclean(client: &Client, topic: &str) {
    let req = ElectLeadersRequest {
        election_type: 1,
        topic_partitions: Some(vec![elect_leaders_request::TopicPartitions {
            topic: topic.to_string(),
            partitions: vec![0],
            ..Default::default()
        }]),
        timeout_ms: 30_000,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = match client.any_connection(ConnectionKind::Other).await {
            Ok(conn) => conn.send(&req).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(resp) => {
                let codes: Vec<ErrorCode> = resp
                    .replica_election_results
                    .iter()
                    .flat_map(|t| t.partition_result.iter())
                    .map(|p| ErrorCode::from_code(p.error_code))
                    .collect();
                if ErrorCode::from_code(resp.error_code) == ErrorCode::None
                    && codes.iter().all(|c| *c == ErrorCode::None)
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "unclean election refused: {:?} {codes:?}",
                    resp.error_code
                );
            }
            Err(e) => assert!(Instant::now() < deadline, "unclean election failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Refreshes metadata until partition 0 of `topic` satisfies `cond`.
async fn wait_for(
    client: &Client,
    topic: &str,
    what: &str,
    cond: impl Fn(&franz_client::PartitionMetadata) -> bool,
) -> franz_client::PartitionMetadata {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    loop {
        match client.refresh_metadata_for(&[topic.to_string()]).await {
            Ok(md) => {
                if let Some(p) = md
                    .topics
                    .get(topic)
                    .and_then(|t| t.partitions.iter().find(|p| p.partition == 0))
                {
                    if cond(p) {
                        return p.clone();
                    }
                    last = Some(format!("{p:?}"));
                }
            }
            Err(e) => last = Some(format!("metadata failed: {e}")),
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
