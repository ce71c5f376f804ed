//! Interop with Spring Kafka 4.1 (from Maven, on its own kafka-clients),
//! both ways, on the shared broker:
//! - a `ReplyingKafkaTemplate` calls a franz server: Spring's correlation
//!   id is 16 raw bytes, echoed back as they came;
//! - a franz client calls a `@KafkaListener` with `@SendTo`: Spring reads
//!   `kafka_replyPartition` as a 4-byte big-endian int and sends one reply
//!   with no end marker, so the client is set to `ServerDialect::SpringKafka`;
//!   in the NestJS dialect the call cannot complete.
//!
//! The peer program is `crates/franz-testkit/java/SpringEcho.java`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to wait

use std::sync::Arc;
use std::time::Duration;

use franz_testkit::spring::SpringPeer;
use franz_testkit::{KafkaCluster, unique_group, unique_topic};
use franz_transport::{
    Payload, RpcError, ServerDialect, TransportClient, TransportClientConfig, TransportError,
    TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

mod common;

/// The value of `key=` on the Spring client's `RESULT` line.
fn field(out: &str, key: &str) -> f64 {
    franz_testkit::result_field(out, key)
        .unwrap_or_else(|| panic!("no {key} in the Spring client's output:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spring_replying_template_calls_a_franz_server() {
    if franz_testkit::real_broker_only("runs Spring Kafka's Java client") {
        return;
    }
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let topic = unique_topic("spring.to.franz");
    let reply = format!("{topic}.reply");
    common::create_topics(&b, &[(&topic, 2), (&reply, 1)]).await;
    let group = unique_group("franz-for-spring");
    let server = TransportServer::builder(TransportServerConfig::new(&b, &group))
        .message(&topic, |Payload(v): Payload<Value>| async move {
            Ok::<_, RpcError>(v)
        })
        .start()
        .await
        .unwrap();
    common::wait_for_group_members(&b, &group, 1).await;

    let out = {
        let (b, topic) = (b.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            SpringPeer::resolve()
                .expect("Spring Kafka from Maven")
                .client(&b, &topic, 200, 8, Duration::from_secs(240))
        })
        .await
        .unwrap()
        .expect("the Spring client ran")
    };
    // Every request got its own reply ("id":i checked by SpringEcho),
    // after its warm-up of 40.
    assert_eq!(field(&out, "requests="), 200.0, "{out}");
    assert_eq!(field(&out, "failed="), 0.0, "{out}");
    server.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_franz_client_calls_a_spring_listener() {
    if franz_testkit::real_broker_only("runs Spring Kafka's Java client") {
        return;
    }
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let topic = unique_topic("franz.to.spring");
    let reply = format!("{topic}.reply");
    common::create_topics(&b, &[(&topic, 2), (&reply, 2)]).await;
    let group = unique_group("spring-listener");
    let _spring = {
        let (b, topic, group) = (b.clone(), topic.clone(), group.clone());
        tokio::task::spawn_blocking(move || {
            SpringPeer::resolve()
                .expect("Spring Kafka from Maven")
                .server(&b, &topic, &group, 1)
        })
        .await
        .unwrap()
        .expect("the Spring listener started")
    };

    let mut config = TransportClientConfig::new(&b, &unique_group("franz-replies"));
    config.server_dialect = ServerDialect::SpringKafka;
    config.request_timeout = Duration::from_secs(20);
    let client = Arc::new(TransportClient::connect(config, &[&topic]).await.unwrap());
    let mut calls = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (client, topic) = (Arc::clone(&client), topic.clone());
        calls.spawn(async move {
            for i in (worker..100).step_by(8) {
                let request = json!({"id": i, "pad": "x".repeat(50)});
                let reply: Value = client.send(&topic, &request).await.unwrap();
                assert_eq!(reply, request, "request {i} got another's reply");
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }

    // In the NestJS dialect the call cannot complete: Spring cannot read the
    // decimal reply partition as an int, and would send no end marker
    // anyway (what the setting is for).
    let mut nest_form = TransportClientConfig::new(&b, &unique_group("franz-replies-nest"));
    nest_form.request_timeout = Duration::from_secs(5);
    let nest_client = TransportClient::connect(nest_form, &[&topic])
        .await
        .unwrap();
    let err = nest_client
        .send::<_, Value>(&topic, &json!({"id": -1}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Timeout { .. }),
        "expected a timeout, got {err:?}"
    );
}
