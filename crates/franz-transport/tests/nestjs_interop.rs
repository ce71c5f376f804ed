//! Interop with real `@nestjs/microservices` 11.2 and 12.1 (on KafkaJS
//! 2.2.4) from the npm registry, both ways, on the shared broker (each test
//! runs once per NestJS major):
//! - a franz client calls a NestJS server (reply, `RpcException`, event);
//! - a NestJS `ClientKafka` calls a franz server (reply, error, event).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use franz_transport::Payload;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_testkit::node::NestVersion;
use franz_testkit::{KafkaCluster, node, unique_group, unique_topic};
use franz_transport::{
    RpcError, TransportClient, TransportClientConfig, TransportError, TransportServer,
    TransportServerConfig,
};
use serde_json::{Value, json};

#[macro_use]
mod common;

per_nest_version! {
    a_franz_client_calls_a_nestjs_server => franz_client_calls_nest;
    a_nestjs_client_calls_a_franz_server => nest_client_calls_franz;
}

async fn franz_client_calls_nest(nest: NestVersion) {
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let charge = unique_topic("nest.billing.charge");
    let created = unique_topic("nest.orders.created");
    let reply = format!("{charge}.reply");
    common::create_topics(&b, &[(&charge, 1), (&created, 1), (&reply, 1)]).await;
    let group = unique_group("nest-server");

    let nest = {
        let (b, group, charge, created) =
            (b.clone(), group.clone(), charge.clone(), created.clone());
        tokio::task::spawn_blocking(move || {
            node::run_script_on(
                nest,
                "nest-server.mjs",
                &[&b, &group, &charge, &created, "25"],
                Duration::from_secs(240),
            )
        })
    };
    // Nest appends "-server" to the group id.
    common::wait_for_group_members(&b, &format!("{group}-server"), 1).await;

    let client = TransportClient::connect(
        TransportClientConfig::new(&b, &unique_group("franz-replies")),
        &[&charge],
    )
    .await
    .unwrap();
    let receipt: Value = client
        .send(&charge, &json!({"order": 7, "cents": 1250}))
        .await
        .unwrap();
    assert_eq!(receipt, json!({"order": 7, "charged": 1250, "by": "nest"}));
    match client
        .send::<_, Value>(&charge, &json!({"order": 8, "cents": 0}))
        .await
    {
        Err(TransportError::Remote(e)) => {
            assert_eq!(
                e.raw,
                json!({"status": "error", "message": "nothing to charge"})
            );
            assert_eq!(e.status.as_deref(), Some("error"));
            assert_eq!(e.message.as_deref(), Some("nothing to charge"));
        }
        other => panic!("expected Nest's RpcException body, got {other:?}"),
    }
    client
        .emit(&created, &json!({"order": 7, "status": "created"}))
        .await
        .unwrap();
    client.close().await.unwrap();

    let out = nest.await.unwrap().unwrap();
    let events = out
        .lines()
        .find_map(|l| l.strip_prefix("events "))
        .unwrap_or_else(|| panic!("no events line:\n{out}"));
    let events: Value = serde_json::from_str(events).unwrap();
    assert_eq!(events, json!([{"order": 7, "status": "created"}]), "{out}");
}

async fn nest_client_calls_franz(nest: NestVersion) {
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let charge = unique_topic("franz.billing.charge");
    let created = unique_topic("franz.orders.created");
    let reply = format!("{charge}.reply");
    common::create_topics(&b, &[(&charge, 1), (&created, 1), (&reply, 1)]).await;

    let events = Arc::new(Mutex::new(Vec::<Value>::new()));
    let server = {
        let events = Arc::clone(&events);
        TransportServer::builder(TransportServerConfig::new(&b, &unique_group("franz-srv")))
            .message(&charge, |Payload(c): Payload<Value>| async move {
                if c["cents"] == 0 {
                    return Err(RpcError::message("nothing to charge"));
                }
                Ok(json!({"order": c["order"], "charged": c["cents"], "by": "franz"}))
            })
            .event(&created, move |Payload(e): Payload<Value>| {
                let events = Arc::clone(&events);
                async move {
                    events.lock().unwrap().push(e);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap()
    };

    let out = {
        let (b, charge, created) = (b.clone(), charge.clone(), created.clone());
        let group = unique_group("nest-client");
        tokio::task::spawn_blocking(move || {
            node::run_script_on(
                nest,
                "nest-client.mjs",
                &[&b, &group, &charge, &created],
                Duration::from_secs(240),
            )
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert_eq!(
        common::json_line(&out, "reply "),
        json!({"order": 7, "charged": 1250, "by": "franz"})
    );
    assert_eq!(
        common::json_line(&out, "error "),
        json!({"status": "error", "message": "nothing to charge"}),
        "Nest's client sees franz's error as it would a Nest server's"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while events.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the Nest event never arrived:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        *events.lock().unwrap(),
        vec![json!({"order": 7, "status": "created"})]
    );
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}
