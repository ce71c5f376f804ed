//! A franz client and server against a broker with topic auto-creation on
//! and no topics created beforehand, as a NestJS deployment on a default
//! broker runs: the request, reply and event topics come into being from the
//! clients' own metadata requests (`allow.auto.create.topics`, default true,
//! as Java and KafkaJS ask). An owned broker, since the shared one has
//! auto-creation off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use franz_transport::Payload;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use franz_testkit::{KafkaCluster, unique_group, unique_topic};
use franz_transport::{
    TransportClient, TransportClientConfig, TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_needs_creating_beforehand_when_the_broker_auto_creates() {
    let cluster = KafkaCluster::builder()
        .nodes(1)
        .broker_config("auto.create.topics.enable", "true")
        .broker_config("num.partitions", "2")
        .start()
        .await
        .unwrap();
    let b = cluster.bootstrap();
    let (pattern, event) = (unique_topic("order.created"), unique_topic("order.shipped"));
    let events = Arc::new(AtomicU32::new(0));
    let mut config = TransportServerConfig::new(&b, &unique_group("auto"));
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
        TransportClientConfig::new(&b, &unique_group("auto-client")),
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
