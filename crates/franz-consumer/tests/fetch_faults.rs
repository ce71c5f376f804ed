//! Fetch faults on three owned brokers (two used), each behind a fault proxy:
//!
//! - **Error isolation.** One broker's Fetch answer carries records for one
//!   partition and UNKNOWN_SERVER_ERROR for another (rewritten by the
//!   proxy), while the other broker's answer is cut. `poll` hands out the
//!   good partition's records, the error comes on a later poll naming its
//!   partition, and no commit ever passes the last returned record + 1.
//! - **KIP-227 sessions.** After the first full fetch, requests to broker 1
//!   are incremental and leave unchanged partitions out (asserted on the
//!   request bytes the proxy recorded). FETCH_SESSION_ID_NOT_FOUND and
//!   INVALID_FETCH_SESSION_EPOCH (injected) and a broker restart each force
//!   a full fetch, and consumption goes on. `close` closes the session.
//! - **Sessionless.** Broker 2 runs with
//!   `max.incremental.fetch.session.cache.slots=0`: every request is full,
//!   and every record still arrives in order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{admin, earliest, group_config};
use franz_client::admin::NewTopic;
use franz_client::franz_protocol::frame::{
    ResponseHeader, decode_request, decode_response, response_header_version,
};
use franz_client::franz_protocol::messages::{AnyRequest, ApiKey, FetchRequest, FetchResponse};
use franz_client::franz_protocol::primitives::DecodeLimits;
use franz_client::franz_protocol::{ErrorCode, Message};
use franz_consumer::assignor::RoundRobinAssignor;
use franz_consumer::{ConsumeError, Consumer, GroupConsumer, GroupProtocol, TopicPartition};
use franz_producer::ProducerRecord;
use franz_testkit::proxy::{RecordedRequest, api_key};
use franz_testkit::{FaultProxy, KafkaCluster, unique_group, unique_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_are_isolated_and_fetch_sessions_recover() {
    if franz_testkit::real_broker_only("a fault proxy in front of its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .nodes(3)
        .fault_proxy()
        .node_config(2, "max.incremental.fetch.session.cache.slots", "0")
        .start()
        .await
        .unwrap();
    let b = cluster.bootstrap();
    let topic = unique_topic("fetch-faults");
    admin(&b)
        .await
        .create_topics(vec![NewTopic::new(&topic, 12, 1)], false)
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    let leaders = leaders(&b, &topic).await;
    let on = |node: i32| -> Vec<i32> {
        leaders
            .iter()
            .filter(|(_, l)| **l == node)
            .map(|(p, _)| *p)
            .collect()
    };
    let (one, two) = (on(1), on(2));
    assert!(
        one.len() >= 3 && two.len() >= 2,
        "partitions should spread over both brokers: {leaders:?}"
    );

    error_isolation(&cluster, &topic, &one, &two).await;
    sessions(&cluster, &topic, &one).await;
    sessionless(&cluster, &topic, &two).await;
}

async fn error_isolation(cluster: &KafkaCluster, topic: &str, one: &[i32], two: &[i32]) {
    let b = cluster.bootstrap();
    let (good, bad, far) = (one[0], one[1], two[0]);
    for p in [good, bad, far] {
        produce_to(&b, topic, p, 0..10).await;
    }
    let topic_id = topic_id(&b, topic).await;
    let (p1, p2) = (cluster.proxy(1).unwrap(), cluster.proxy(2).unwrap());
    let name = topic.to_string();
    p1.rewrite_responses(api_key::FETCH, move |version, frame| {
        rewrite_fetch(version, frame, |resp| {
            for t in &mut resp.responses {
                if t.topic_id != topic_id && t.topic != name {
                    continue;
                }
                for p in &mut t.partitions {
                    if p.partition_index == bad {
                        p.error_code = ErrorCode::UnknownServerError.code();
                        p.records = None;
                    }
                }
            }
        })
    });
    p2.cut_next_response(api_key::FETCH);

    let group = unique_group("isolation");
    let g = group_config(
        &group,
        GroupProtocol::Classic,
        vec![Arc::new(RoundRobinAssignor)],
    );
    let mut config = earliest(&b);
    config.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = GroupConsumer::new(config, g, &[topic]).await.unwrap();

    let mut returned: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut error_after_records = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out: returned {returned:?}, {} errors for partition {bad}",
            errors.len()
        );
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                for r in &records {
                    returned.entry(r.partition).or_default().push(r.offset);
                }
                consumer.commit().await.unwrap();
            }
            Err(ConsumeError::Broker {
                partition, code, ..
            }) => {
                assert_eq!(partition, bad, "the error names its partition");
                assert_eq!(code, ErrorCode::UnknownServerError);
                error_after_records.get_or_insert(returned.get(&good).map_or(0, Vec::len));
                errors.push(partition);
            }
            Err(e) => panic!("unexpected poll error: {e:?}"),
        }
        // No commit passes the last returned record + 1.
        let committed = consumer.committed().await.unwrap();
        for (tp, offset) in &committed {
            let next = returned
                .get(&tp.partition)
                .and_then(|o| o.last())
                .map_or(0, |o| o + 1);
            assert!(
                *offset <= next,
                "{tp:?} committed at {offset}, but only up to {next} was returned"
            );
        }
        let done = |p: i32| returned.get(&p).map_or(0, Vec::len) >= 10;
        if done(good) && done(far) && !errors.is_empty() {
            break;
        }
    }
    assert_eq!(
        returned[&good],
        (0..10).collect::<Vec<_>>(),
        "the good partition's records, once each, in order"
    );
    assert_eq!(returned[&far], (0..10).collect::<Vec<_>>());
    assert!(
        error_after_records.unwrap() > 0,
        "the error came only after the records fetched with it were handed out"
    );
    assert!(!returned.contains_key(&bad));
    assert!(p1.rewritten_responses(api_key::FETCH) > 0);

    // The fault clears: the bad partition is read from where it stood.
    p1.stop_rewriting(api_key::FETCH);
    let deadline = Instant::now() + Duration::from_secs(30);
    while returned.get(&bad).map_or(0, Vec::len) < 10 {
        assert!(Instant::now() < deadline, "bad partition never recovered");
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                for r in records {
                    returned.entry(r.partition).or_default().push(r.offset);
                }
            }
            // Held from a fetch answered before the rewrite stopped.
            Err(ConsumeError::Broker { partition, .. }) if partition == bad => {}
            Err(e) => panic!("unexpected poll error: {e:?}"),
        }
    }
    assert_eq!(returned[&bad], (0..10).collect::<Vec<_>>());
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
}

async fn sessions(cluster: &KafkaCluster, topic: &str, one: &[i32]) {
    let b = cluster.bootstrap();
    let proxy = cluster.proxy(1).unwrap();
    let parts: Vec<TopicPartition> = one.iter().map(|p| TopicPartition::new(topic, *p)).collect();
    let mut config = earliest(&b);
    config.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign(&parts).await.unwrap();
    // Start every partition at its end: only what is produced below counts.
    consumer.seek_to_end().await.unwrap();
    proxy.take_recorded_requests(api_key::FETCH);
    proxy.record_requests(api_key::FETCH);

    let busy = one[0];
    produce_to(&b, topic, busy, 100..105).await;
    read(&mut consumer, busy, 5).await;
    for _ in 0..3 {
        consumer.poll(Duration::from_millis(150)).await.unwrap();
    }
    let requests = fetches(proxy);
    let first = &requests[0];
    assert_eq!(
        (first.session_id, first.session_epoch),
        (0, 0),
        "opens a session"
    );
    assert_eq!(listed(first).len(), one.len(), "the first fetch is full");
    let incremental: Vec<&FetchRequest> = requests[1..].iter().collect();
    assert!(incremental.len() >= 3, "{} requests", requests.len());
    let session = incremental[0].session_id;
    assert_ne!(session, 0, "the broker gave a session");
    for (i, r) in incremental.iter().enumerate() {
        assert_eq!(r.session_id, session);
        assert_eq!(
            r.session_epoch,
            i32::try_from(i + 1).unwrap(),
            "epochs count up"
        );
        let l = listed(r);
        assert!(
            l.iter().all(|p| *p == busy),
            "only the partition whose position moved is listed: {l:?}"
        );
    }
    assert!(
        incremental.iter().any(|r| listed(r) == vec![busy]),
        "the busy partition's new position is sent"
    );
    assert!(
        incremental.iter().any(|r| listed(r).is_empty()),
        "an idle round lists nothing"
    );

    // Injected session errors: each forces a full fetch, and reading goes on.
    for code in [
        ErrorCode::FetchSessionIdNotFound,
        ErrorCode::InvalidFetchSessionEpoch,
    ] {
        let once = Arc::new(AtomicU32::new(1));
        proxy.rewrite_responses(api_key::FETCH, move |version, frame| {
            if once.fetch_sub(1, Ordering::SeqCst) != 1 {
                return None;
            }
            rewrite_fetch(version, frame, |resp| {
                resp.error_code = code.code();
                resp.session_id = 0;
                resp.responses.clear();
            })
        });
        let p = one[1];
        produce_to(&b, topic, p, 0..3).await;
        read(&mut consumer, p, 3).await;
        proxy.stop_rewriting(api_key::FETCH);
        let after = fetches(proxy);
        let full = after
            .iter()
            .position(|r| r.session_epoch == 0)
            .unwrap_or_else(|| panic!("{code:?}: no full fetch followed"));
        assert_eq!(
            listed(&after[full]).len(),
            one.len(),
            "{code:?}: the full fetch lists every partition"
        );
        if code == ErrorCode::InvalidFetchSessionEpoch {
            assert_ne!(after[full].session_id, 0, "replaces the session it names");
        }
    }

    // A broker restart loses every session.
    cluster.restart(1).await.unwrap();
    let p = one[2];
    produce_to(&b, topic, p, 0..3).await;
    read(&mut consumer, p, 3).await;
    let after = fetches(proxy);
    assert!(
        after
            .iter()
            .any(|r| r.session_epoch == 0 && listed(r).len() == one.len()),
        "a full fetch after the restart"
    );

    consumer.close().await;
    let closing = fetches(proxy);
    assert!(
        closing
            .iter()
            .any(|r| r.session_id != 0 && r.session_epoch == -1),
        "close names the session with the final epoch"
    );
}

async fn sessionless(cluster: &KafkaCluster, topic: &str, two: &[i32]) {
    let b = cluster.bootstrap();
    let proxy = cluster.proxy(2).unwrap();
    proxy.take_recorded_requests(api_key::FETCH);
    proxy.record_requests(api_key::FETCH);
    let parts: Vec<TopicPartition> = two.iter().map(|p| TopicPartition::new(topic, *p)).collect();
    let mut config = earliest(&b);
    config.fetch_max_wait = Duration::from_millis(100);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign(&parts).await.unwrap();
    consumer.seek_to_end().await.unwrap();
    let p = two[1];
    for round in 0..3 {
        let from = round * 20;
        produce_to(&b, topic, p, from..from + 20).await;
        let got = read(&mut consumer, p, 20).await;
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 1),
            "in order: {got:?}"
        );
    }
    let requests = fetches(proxy);
    assert!(requests.len() >= 3);
    for r in &requests {
        assert_eq!(r.session_id, 0, "the broker keeps no sessions");
        assert_eq!(listed(r).len(), two.len(), "every request is full");
    }
}

/// Polls until `n` records of partition `p` came; returns their offsets.
async fn read(consumer: &mut Consumer, p: i32, n: usize) -> Vec<i64> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "partition {p}: {} of {n} records",
            got.len()
        );
        for r in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            assert_eq!(r.partition, p, "only {p} had new records");
            got.push(r.offset);
        }
    }
    assert_eq!(got.len(), n, "nothing repeated");
    got
}

async fn produce_to(b: &str, topic: &str, partition: i32, range: std::ops::Range<u32>) {
    common::produce(b, range, |i| {
        ProducerRecord::new(topic, format!("v{i}")).with_partition(partition)
    })
    .await;
}

async fn leaders(b: &str, topic: &str) -> BTreeMap<i32, i32> {
    let client = franz_client::Client::connect(franz_client::ClientConfig::new(b))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = client.topic_metadata(topic).await {
            let m: BTreeMap<i32, i32> = t
                .partitions
                .iter()
                .map(|p| (p.partition, p.leader))
                .collect();
            if !m.is_empty() && m.values().all(|l| *l >= 0) {
                return m;
            }
        }
        assert!(Instant::now() < deadline, "{topic} has no leaders");
        client.refresh_metadata_for(&[topic.to_string()]).await.ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn topic_id(b: &str, topic: &str) -> franz_client::franz_protocol::Uuid {
    let client = franz_client::Client::connect(franz_client::ClientConfig::new(b))
        .await
        .unwrap();
    client.topic_metadata(topic).await.unwrap().id
}

/// Decodes a Fetch answer, lets `edit` change it, and encodes it again.
fn rewrite_fetch(
    version: i16,
    frame: &[u8],
    edit: impl FnOnce(&mut FetchResponse),
) -> Option<Vec<u8>> {
    let (header, mut resp) = decode_response::<FetchResponse>(
        Bytes::copy_from_slice(frame),
        version,
        DecodeLimits::default(),
    )
    .ok()?;
    edit(&mut resp);
    let mut w = BytesMut::new();
    ResponseHeader {
        correlation_id: header.correlation_id,
        unknown_tagged_fields: Vec::new(),
    }
    .encode(&mut w, response_header_version(ApiKey::Fetch, version))
    .ok()?;
    resp.encode(&mut w, version).ok()?;
    Some(w.to_vec())
}

/// The Fetch requests the proxy recorded since the last call.
fn fetches(proxy: &FaultProxy) -> Vec<FetchRequest> {
    proxy
        .take_recorded_requests(api_key::FETCH)
        .into_iter()
        .map(|RecordedRequest { frame, .. }| {
            match decode_request(Bytes::from(frame), DecodeLimits::default())
                .unwrap()
                .1
            {
                AnyRequest::Fetch(f) => f,
                other => panic!("not a fetch: {other:?}"),
            }
        })
        .collect()
}

/// The partitions a Fetch request lists.
fn listed(r: &FetchRequest) -> Vec<i32> {
    let mut l: Vec<i32> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition))
        .collect();
    l.sort_unstable();
    l
}
