//! The client on a three-node cluster under faults: routing, a stopped
//! leader, a node coming back without leaking connections, a paused broker,
//! broker throttling (KIP-219) honoured instead of retried into, and a
//! new-leader hint (KIP-951) from a real broker followed without a refresh.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_client::admin::NewTopic;
use franz_client::franz_protocol::ErrorCode;
use franz_client::franz_protocol::messages::{
    MetadataRequest, ProduceRequest, ProduceResponse, produce_request,
};
use franz_client::franz_protocol::record::{BatchMeta, RecordBatchBuilder};
use franz_client::{Admin, Client, ClientConfig, ClientError, ConnectionKind};
use franz_testkit::{KafkaCluster, KafkaDistribution, unique_topic};

fn batch(n: usize, value_len: usize) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    let value = vec![b'x'; value_len];
    for i in 0..n {
        b.push(1_700_000_000_000 + i as i64, None, Some(&value), &[]);
    }
    b.finish(&BatchMeta::default()).unwrap()
}

fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![produce_request::TopicProduceData {
            name: topic.into(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: partition,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Produces to the current leader, turning partition errors into client
/// errors so `Client::retry` can act on them. Returns (leader, response).
async fn produce_once(
    client: &Client,
    topic: &str,
    partition: i32,
) -> Result<(i32, ProduceResponse), ClientError> {
    let conn = client
        .leader_connection(topic, partition, ConnectionKind::Produce)
        .await?;
    let resp = conn
        .send(&produce_request(topic, partition, batch(3, 10)))
        .await?;
    let p = &resp.responses[0].partition_responses[0];
    ClientError::check(
        p.error_code,
        || format!("produce to {topic}-{partition}"),
        p.error_message.clone(),
    )?;
    Ok((conn.addr().node_id, resp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_leader_loss_recovery_and_no_leaks_on_three_nodes() {
    if franz_testkit::real_broker_only("kills nodes of its own three-node cluster") {
        return;
    }
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let config = ClientConfig {
        request_timeout: Duration::from_secs(5),
        socket_connection_setup_timeout: Duration::from_secs(3),
        ..ClientConfig::new(&cluster.bootstrap())
    };
    let client = Client::connect(config.clone()).await.unwrap();
    assert_eq!(client.metadata().brokers.len(), 3);
    let admin = Admin::new(client.clone());
    let topic = unique_topic("faults");
    admin
        .create_topics(vec![NewTopic::new(topic.clone(), 3, 3)], false)
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();

    // Routing: each partition's leader connection is to that leader.
    let t = client.topic_metadata(&topic).await.unwrap();
    assert_eq!(t.partitions.len(), 3);
    for p in &t.partitions {
        assert_eq!(p.replicas.len(), 3);
        let conn = client
            .leader_connection(&topic, p.partition, ConnectionKind::Produce)
            .await
            .unwrap();
        assert_eq!(conn.addr().node_id, p.leader);
    }
    let old_leader = t.partitions[0].leader;
    let deadline = || Instant::now() + Duration::from_secs(60);
    client
        .retry("produce", deadline(), || produce_once(&client, &topic, 0))
        .await
        .unwrap();

    // A second client caches the leader now and sends nothing until the
    // old leader is back as a follower.
    let stale = Client::connect(config).await.unwrap();
    stale.topic_metadata(&topic).await.unwrap();
    let stale_epoch = stale.metadata().topics[&topic].partitions[0].leader_epoch;

    // Stop the leader: the next produce reaches the new leader after a
    // metadata refresh.
    cluster.stop(old_leader).await.unwrap();
    let (new_leader, _) = client
        .retry("produce after leader loss", deadline(), || {
            produce_once(&client, &topic, 0)
        })
        .await
        .unwrap();
    assert_ne!(new_leader, old_leader);
    assert_eq!(
        client.metadata().topics[&topic].partitions[0].leader,
        new_leader
    );

    // The node comes back; traffic keeps flowing to all partitions, and the
    // client holds at most one connection per broker and kind.
    cluster.restart(old_leader).await.unwrap();
    cluster
        .wait_for_full_isr(Duration::from_secs(120))
        .await
        .unwrap();

    // KIP-951: the restarted broker is a follower now. The stale client's
    // produce to it is refused with the new leader named in the response,
    // and the client routes there without a metadata refresh.
    let before = stale.metadata();
    assert_eq!(before.topics[&topic].partitions[0].leader, old_leader);
    let conn = stale
        .connection(old_leader, ConnectionKind::Produce)
        .await
        .unwrap();
    let resp = conn
        .send(&produce_request(&topic, 0, batch(1, 10)))
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(
        ErrorCode::from_code(p.error_code),
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(p.current_leader.leader_id, new_leader, "{p:?}");
    assert!(p.current_leader.leader_epoch > stale_epoch, "{p:?}");
    assert_eq!(stale.follow_produce_hints(&resp), 1);
    let after = stale.metadata();
    assert_eq!(after.topics[&topic].partitions[0].leader, new_leader);
    assert_eq!(
        after.fetched_at, before.fetched_at,
        "followed without a metadata refresh"
    );
    // The same news again is stale: nothing changes.
    assert_eq!(stale.follow_produce_hints(&resp), 0);

    for _ in 0..5 {
        for p in 0..3 {
            client
                .retry("produce after recovery", deadline(), || {
                    produce_once(&client, &topic, p)
                })
                .await
                .unwrap();
        }
        client.refresh_metadata_for(&[]).await.unwrap();
    }
    let open = client.open_connections();
    assert!(
        open <= 3 * 2 + 3,
        "{open} connections: one per broker and kind at most (plus bootstrap)"
    );

    // A paused broker: a request to it times out within its deadline, and
    // the connection is closed rather than left hanging.
    let victim = client.metadata().topics[&topic].partitions[1].leader;
    let conn = client
        .connection(victim, ConnectionKind::Other)
        .await
        .unwrap();
    cluster.pause(victim).unwrap();
    let started = Instant::now();
    let err = conn
        .send_timeout(&MetadataRequest::default(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(!conn.is_open());
    cluster.resume(victim).unwrap();
    client
        .retry("after resume", deadline(), || async {
            client
                .connection(victim, ConnectionKind::Other)
                .await?
                .send(&MetadataRequest::default())
                .await
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_quota_throttles_and_the_client_waits_as_told() {
    if franz_testkit::real_broker_only("client quotas (kafka-configs) are not in franz-mock") {
        return;
    }
    let kafka = KafkaCluster::shared().await.unwrap();
    let bootstrap = kafka.bootstrap();
    let client_id = format!("throttled-{}", unique_topic("q"));
    // 2 KiB/s for this client id only.
    KafkaDistribution::resolve()
        .unwrap()
        .run_tool(
            "kafka.admin.ConfigCommand",
            &[
                "--bootstrap-server",
                &bootstrap,
                "--alter",
                "--add-config",
                "producer_byte_rate=2048",
                "--entity-type",
                "clients",
                "--entity-name",
                &client_id,
            ],
            Duration::from_secs(120),
        )
        .unwrap();
    let client = Client::connect(ClientConfig::new(&bootstrap).with_client_id(client_id))
        .await
        .unwrap();
    let topic = unique_topic("throttle");
    Admin::new(client.clone())
        .create_topics(vec![NewTopic::new(topic.clone(), 1, 1)], false)
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    let conn = client
        .leader_connection(&topic, 0, ConnectionKind::Produce)
        .await
        .unwrap();
    // Quotas take a moment to reach the broker: produce until throttled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let throttle_ms = loop {
        let resp = conn
            .send(&produce_request(&topic, 0, batch(20, 1000)))
            .await
            .unwrap();
        if resp.throttle_time_ms > 0 {
            break resp.throttle_time_ms;
        }
        assert!(Instant::now() < deadline, "never throttled");
    };
    assert!(
        throttle_ms >= 1000,
        "20 KB at 2 KiB/s should throttle for seconds, got {throttle_ms} ms"
    );
    // The throttle counts inside a request's timeout: one whose deadline
    // falls inside the muted time fails at once, unsent, and the connection
    // stays usable.
    let version = conn.version_of::<MetadataRequest>().unwrap();
    let started = Instant::now();
    let short = conn
        .send_sized(
            &MetadataRequest::default(),
            version,
            Duration::from_millis(200),
            64,
        )
        .await;
    assert!(
        matches!(short, Err(franz_client::ClientError::Timeout { .. })),
        "{short:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(150));
    // The next request waits out the throttle instead of being sent at once.
    let started = Instant::now();
    conn.send(&MetadataRequest::default()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(throttle_ms as u64 * 8 / 10),
        "sent after {waited:?}, throttle was {throttle_ms} ms"
    );
    let m = client.metrics();
    assert!(m.values().any(|s| s.throttled_responses >= 1), "{m:?}");
}

/// A broker that stops reading (a zero window): the connection's writer
/// blocks once the socket buffers are full, its queue (1,024 frames) fills
/// behind it, and every request still fails by its own deadline, counted
/// from when it was asked for, including those that never found room in
/// the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_fails_queued_requests_by_their_deadline() {
    if franz_testkit::real_broker_only("a fault proxy in front of its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder().fault_proxy().start().await.unwrap();
    let topic = unique_topic("zero-window");
    franz_test_support::create_topic(&cluster.direct_bootstrap(), &topic, 1).await;
    let timeout = Duration::from_secs(3);
    let client = Client::connect(ClientConfig {
        request_timeout: timeout,
        ..ClientConfig::new(&cluster.bootstrap())
    })
    .await
    .unwrap();
    let conn = client
        .leader_connection(&topic, 0, ConnectionKind::Produce)
        .await
        .unwrap();
    cluster.proxy(1).unwrap().stop_reading(true);

    // 48 MiB of produce requests, more than any socket buffers hold, then
    // 1,100 small requests: more than the queue has room for.
    let big = batch(1024, 1000);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let (conn, req) = (conn.clone(), produce_request(&topic, 0, big.clone()));
        tasks.spawn(async move { conn.send(&req).await.map(|_| ()) });
    }
    for _ in 0..1_100 {
        let conn = conn.clone();
        tasks.spawn(async move { conn.send(&MetadataRequest::default()).await.map(|_| ()) });
    }
    let (mut failed, mut answered) = (0, 0);
    let all = tokio::time::timeout(timeout + Duration::from_secs(5), async {
        while let Some(result) = tasks.join_next().await {
            match result.unwrap() {
                // The frame the proxy was already reading when it stopped.
                Ok(()) => answered += 1,
                Err(err) => {
                    assert!(
                        err.is_timeout() || matches!(err, ClientError::ConnectionClosed { .. }),
                        "{err}"
                    );
                    failed += 1;
                }
            }
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "{} of 1,148 requests were still waiting {:?} after they were asked for",
        1_148 - failed - answered,
        started.elapsed()
    );
    assert!(
        answered <= 1,
        "{answered} answered through a proxy that stopped reading"
    );
    assert_eq!(failed + answered, 1_148);
    assert!(!conn.is_open(), "a stuck writer poisons the connection");
    cluster.proxy(1).unwrap().stop_reading(false);
}
