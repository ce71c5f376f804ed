//! A rebalance under load on a broker of the test's own (behind a proxy
//! that records OffsetCommits): a second server joins while the first runs
//! a slow handler. No record is handled by two members at once, none is
//! handled twice (the revoke commits what the first member earned), and
//! the first member commits nothing for a partition once the second owns
//! it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_client::admin::NewTopic;
use franz_client::franz_protocol::frame::decode_request;
use franz_client::franz_protocol::messages::AnyRequest;
use franz_client::franz_protocol::primitives::DecodeLimits;
use franz_client::{Admin, Client, ClientConfig};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::proxy::{RecordedRequest, api_key};
use franz_testkit::{KafkaCluster, unique_group, unique_topic};
use franz_transport::{Ctx, Payload, TransportServer, TransportServerConfig};
use serde_json::Value;

/// One handler run: who, which record, when.
#[derive(Debug, Clone)]
struct Run {
    member: &'static str,
    partition: i32,
    offset: i64,
    start: Instant,
    end: Instant,
}

async fn server(
    bootstrap: &str,
    group: &str,
    topic: &str,
    member: &'static str,
    log: Arc<Mutex<Vec<Run>>>,
) -> TransportServer {
    let mut config = TransportServerConfig::new(bootstrap, group);
    config.consumer.client.client_id = member.to_string();
    config.consumer.auto_offset_reset = franz_consumer::OffsetReset::Earliest;
    TransportServer::builder(config)
        .event(topic, move |Payload(v): Payload<Value>, ctx: Ctx| {
            let log = Arc::clone(&log);
            async move {
                let start = Instant::now();
                if v == "slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                log.lock().unwrap().push(Run {
                    member,
                    partition: ctx.partition(),
                    offset: ctx.offset(),
                    start,
                    end: Instant::now(),
                });
            }
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_while_a_slow_handler_runs() {
    if franz_testkit::real_broker_only("a fault proxy in front of its own broker") {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = KafkaCluster::builder().fault_proxy().start().await.unwrap();
    let b = cluster.bootstrap();
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    let topic = unique_topic("rebalance.events");
    let admin = Admin::new(Client::connect(ClientConfig::new(&b)).await.unwrap());
    for (t, r) in admin
        .create_topics(
            vec![
                NewTopic::new(&topic, 2, 1),
                NewTopic::new(format!("{topic}.DLT"), 2, 1),
            ],
            false,
        )
        .await
        .unwrap()
    {
        r.unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    let group = unique_group("rebalance");
    let log = Arc::new(Mutex::new(Vec::new()));
    let first = server(&b, &group, &topic, "server-a", Arc::clone(&log)).await;
    proxy.record_requests(api_key::OFFSET_COMMIT);

    // Events on both partitions, every few ms, with one slow one early.
    let producer = Producer::new(ProducerConfig::new(&b)).await.unwrap();
    let emitter = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..2_000u32 {
                let value = if i == 100 {
                    "slow".to_string()
                } else {
                    i.to_string()
                };
                let mut r = ProducerRecord::new(topic.as_str(), Bytes::from(value));
                r.partition = Some((i % 2) as i32);
                acks.push(producer.send(r).await.unwrap());
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            for a in acks {
                a.await.unwrap();
            }
            producer.close(Duration::from_secs(10)).await.unwrap();
        })
    };
    // Join while the slow handler runs.
    let slow_started = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = log.lock().unwrap().len();
        if n >= 100 {
            break;
        }
        assert!(Instant::now() < slow_started, "events never flowed");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = server(&b, &group, &topic, "server-b", Arc::clone(&log)).await;
    emitter.await.unwrap();

    // Every event handled, by somebody.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let handled: std::collections::BTreeSet<(i32, i64)> = log
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        if handled.len() >= 2_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 2000 handled",
            handled.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = log.lock().unwrap().clone();
    let mut by_record: BTreeMap<(i32, i64), Vec<&Run>> = BTreeMap::new();
    for r in &runs {
        by_record
            .entry((r.partition, r.offset))
            .or_default()
            .push(r);
    }
    for (record, rs) in &by_record {
        for (i, x) in rs.iter().enumerate() {
            for y in &rs[i + 1..] {
                assert!(
                    x.end <= y.start || y.end <= x.start,
                    "{record:?} handled by {} and {} at once",
                    x.member,
                    y.member
                );
            }
        }
    }
    let twice: Vec<_> = by_record
        .iter()
        .filter(|(_, rs)| rs.len() > 1)
        .map(|(k, rs)| (*k, rs.iter().map(|r| r.member).collect::<Vec<_>>()))
        .collect();
    assert!(
        twice.is_empty(),
        "{} records handled twice across the rebalance (offsets earned before the revoke were not committed by it): {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let members: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.member).collect();
    assert_eq!(members.len(), 2, "both members handled events");

    // Commits, in order: once server-b commits a partition, server-a never
    // commits it again.
    let mut b_owns: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    let mut late = Vec::new();
    for RecordedRequest { frame, .. } in proxy.take_recorded_requests(api_key::OFFSET_COMMIT) {
        let (header, body) = decode_request(Bytes::from(frame), DecodeLimits::default()).unwrap();
        let AnyRequest::OffsetCommit(c) = body else {
            panic!("not an OffsetCommit")
        };
        let who = header.client_id.unwrap_or_default();
        for t in c.topics.iter().filter(|t| t.name == topic) {
            for p in &t.partitions {
                match who.as_str() {
                    "server-b" => {
                        b_owns.insert(p.partition_index);
                    }
                    "server-a" if b_owns.contains(&p.partition_index) => {
                        late.push((p.partition_index, p.committed_offset));
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(!b_owns.is_empty(), "server-b committed nothing");
    assert!(
        late.is_empty(),
        "server-a committed partitions server-b owned: {late:?}"
    );
    second.shutdown(Duration::from_secs(30)).await.unwrap();
    first.shutdown(Duration::from_secs(30)).await.unwrap();
}
