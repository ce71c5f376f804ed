//! A franz client and server against a broker with topic auto-creation on
//! and no topics created beforehand, as a NestJS deployment on a default
//! broker runs: the request, reply and event topics come into being from the
//! clients' own metadata requests (`allow.auto.create.topics`, default true,
//! as Java and KafkaJS ask). An owned broker, since the shared one has
//! auto-creation off; and the same scenario on franz-mock (auto-creation on
//! by default), where NestJS 11 apps (KafkaJS 2.2.4, old non-flexible API
//! versions) also serve and call each other and franz with nothing created
//! beforehand.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use franz_transport::Payload;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod common;

use franz_testkit::node::NestVersion;
use franz_testkit::{KafkaCluster, unique_group, unique_topic};
use franz_transport::{
    TransportClient, TransportClientConfig, TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_needs_creating_beforehand_when_the_broker_auto_creates() {
    if franz_testkit::real_broker_only(
        "its own auto-creating broker (tests/mock_auto_create covers franz-mock's)",
    ) {
        return;
    }
    let cluster = KafkaCluster::builder()
        .nodes(1)
        .broker_config("auto.create.topics.enable", "true")
        .broker_config("num.partitions", "2")
        .start()
        .await
        .unwrap();
    franz_round_trip(&cluster.bootstrap()).await;
}

/// The same on franz-mock: it runs in every mode, since it needs no broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franz_mock_auto_creates_what_franz_and_nestjs_apps_use() {
    let mock = franz_mock::MockCluster::builder()
        .default_partitions(2)
        .start()
        .unwrap();
    let b = mock.bootstrap();
    franz_round_trip(&b).await;

    // A NestJS server and a NestJS client, through the mock, nothing created
    // beforehand: the client's request, the server's reply and error, the event.
    let (charge, created) = (
        unique_topic("nest.auto.charge"),
        unique_topic("nest.auto.created"),
    );
    let group = unique_group("nest-auto");
    let server = common::spawn_script(
        NestVersion::V11,
        "nest-server.mjs",
        vec![
            b.clone(),
            group.clone(),
            charge.clone(),
            created.clone(),
            "20".into(),
        ],
    );
    common::wait_for_group_members(&b, &format!("{group}-server"), 1).await;
    let client_group = unique_group("nest-auto-client");
    let out = common::run_nest(
        NestVersion::V11,
        "nest-client.mjs",
        &[&b, &client_group, &charge, &created],
    )
    .await;
    assert_eq!(
        common::json_line(&out, "reply "),
        json!({"order": 7, "charged": 1250, "by": "nest"})
    );
    assert_eq!(
        common::json_line(&out, "error "),
        json!({"status": "error", "message": "nothing to charge"})
    );
    let served = server.await.unwrap().unwrap();
    assert_eq!(
        common::json_line(&served, "events "),
        json!([{"order": 7, "status": "created"}])
    );
    for topic in [&charge, &format!("{charge}.reply"), &created] {
        assert!(
            mock.topics().contains(topic),
            "{topic} was auto-created: {:?}",
            mock.topics()
        );
    }
}

/// A franz client and server, request and event, on topics that do not exist yet.
async fn franz_round_trip(b: &str) {
    let (pattern, event) = (unique_topic("order.created"), unique_topic("order.shipped"));
    let events = Arc::new(AtomicU32::new(0));
    let mut config = TransportServerConfig::new(b, &unique_group("auto"));
    // New groups start at the latest offset (as NestJS): read the event that
    // creates the topic too.
    config.consumer.auto_offset_reset = franz_consumer::OffsetReset::Earliest;
    let server = {
        let events = Arc::clone(&events);
        TransportServer::builder(config)
            .message(&pattern, |Payload(v): Payload<Value>| async move {
                Ok(json!({"id": v["id"], "status": "INVOICED"}))
            })
            .event(&event, move |Payload(_v): Payload<Value>| {
                let events = Arc::clone(&events);
                async move {
                    events.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap()
    };
    let client = TransportClient::connect(
        TransportClientConfig::new(b, &unique_group("auto-client")),
        &[pattern.as_str()],
    )
    .await
    .unwrap();
    let reply: Value = client.send(&pattern, &json!({"id": "a1"})).await.unwrap();
    assert_eq!(reply, json!({"id": "a1", "status": "INVOICED"}));
    client.emit(&event, &json!({"id": "a1"})).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the event was never handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await.unwrap();
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}
