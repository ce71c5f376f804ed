//! The transport across a dead broker (an owned single node, SIGKILLed and
//! restarted): a request sent while the broker is down is answered once it
//! is back, events emitted during the outage are each handled and
//! committed, and nothing needs restarting by hand.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use franz_transport::Payload;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_consumer::TopicPartition;
use franz_testkit::KafkaCluster;
use franz_transport::{
    RpcError, TransportClient, TransportClientConfig, TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_events_survive_a_broker_restart() {
    if franz_testkit::real_broker_only("restarts its own broker") {
        return;
    }
    let cluster = KafkaCluster::single_owned().await.unwrap();
    let b = cluster.bootstrap();
    let admin = Admin::new(Client::connect(ClientConfig::new(&b)).await.unwrap());
    let new = ["svc.echo", "svc.echo.reply", "svc.audit"]
        .iter()
        .map(|t| NewTopic::new(*t, 1, 1))
        .collect();
    for (t, r) in admin.create_topics(new, false).await.unwrap() {
        r.unwrap_or_else(|e| panic!("{t}: {e}"));
    }

    let audited: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::default();
    let server = {
        let audited = Arc::clone(&audited);
        TransportServer::builder(TransportServerConfig::new(&b, "svc"))
            .message("svc.echo", |Payload(v): Payload<Value>| async move {
                Ok::<_, RpcError>(v)
            })
            .event("svc.audit", move |Payload(e): Payload<Value>| {
                let audited = Arc::clone(&audited);
                async move {
                    let n = e["n"].as_u64().unwrap_or_default();
                    *audited.lock().unwrap().entry(n).or_default() += 1;
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap()
    };
    let mut config = TransportClientConfig::new(&b, "svc-client");
    config.request_timeout = Duration::from_secs(90);
    let client = Arc::new(
        TransportClient::connect(config, &["svc.echo"])
            .await
            .unwrap(),
    );
    let before: Value = client.send("svc.echo", &json!({"n": 0})).await.unwrap();
    assert_eq!(before, json!({"n": 0}));

    cluster.kill(1).unwrap();
    // Sent while the broker is dead: the producer holds them (within
    // delivery_timeout) and the reply comes after the restart.
    let in_flight = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.send::<_, Value>("svc.echo", &json!({"n": 1})).await })
    };
    let emitted = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            for n in 0..5u64 {
                client.emit("svc.audit", &json!({"n": n})).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(1).await.unwrap();

    let reply = tokio::time::timeout(Duration::from_secs(120), in_flight)
        .await
        .expect("the request sent during the outage was never answered")
        .unwrap()
        .unwrap();
    assert_eq!(reply, json!({"n": 1}));
    emitted.await.unwrap();
    let after: Value = client.send("svc.echo", &json!({"n": 2})).await.unwrap();
    assert_eq!(after, json!({"n": 2}));

    // Every event handled (at least once; after a clean recovery, once) and
    // the group's offset committed past all five.
    let tp = TopicPartition::new("svc.audit", 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = admin.list_group_offsets("svc").await.ok();
        let done = committed
            .as_ref()
            .and_then(|c| c.get(&tp))
            .is_some_and(|o| o.committed == 5);
        if done && audited.lock().unwrap().len() == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events not all handled and committed: {:?}, {committed:?}",
            audited.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(audited.lock().unwrap().values().all(|n| *n >= 1));

    Arc::into_inner(client).unwrap().close().await.unwrap();
    server
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .unwrap();
}
