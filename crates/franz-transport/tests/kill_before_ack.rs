//! Kill before ack, on a broker of its own behind the fault proxy:
//!
//! 1. a server **subprocess** (this test binary, re-run in child mode)
//!    answers a warm-up request, then handles the real one;
//! 2. the proxy has cut that process's produce path (its requests never
//!    reach the broker), so its reply never reaches the log;
//! 3. the subprocess is SIGKILLed before it could commit;
//! 4. another member takes the partition over and answers the request,
//!    and exactly one reply resolves the caller, within its timeout;
//! 5. a duplicate reply for the same correlation id, as the dead server's
//!    would be had its write landed after all, is tolerated: dropped, with
//!    the next request answered by its own reply.
//!
//! `harness = false`: `main` is either the test or, with
//! `FRANZ_KILL_TARGET` set, the server subprocess.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;
use common::wait_until;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_consumer::OffsetReset;
use franz_testkit::proxy::api_key;
use franz_testkit::{KafkaCluster, subprocess, unique_group, unique_topic};
use franz_transport::nest::headers;
use franz_transport::{
    Payload, RpcError, TransportClient, TransportClientConfig, TransportServer,
    TransportServerConfig,
};
use serde_json::{Value, json};

const CHILD_ENV: &str = "FRANZ_KILL_TARGET";
const CHILD_CLIENT_ID: &str = "kill-target";

fn main() {
    if franz_testkit::real_broker_only(
        "a fault proxy in front of its own broker and a killed server process",
    ) {
        return;
    }
    let runtime = subprocess::runtime();
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(serde_json::from_str(&spec).unwrap()));
        return;
    }
    subprocess::run_single_test(
        &runtime,
        "a_killed_server_s_request_is_answered_once_by_another_member",
        a_killed_server_s_request_is_answered_once_by_another_member(),
    );
}

fn server_config(bootstrap: &str, group: &str, client_id: &str) -> TransportServerConfig {
    let mut config = TransportServerConfig::new(bootstrap, group);
    // The group has no commits yet: a member taking a partition over reads
    // it from the start (the warm-up request may run twice; the test
    // asserts on the killed one).
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config.consumer.client.client_id = client_id.to_string();
    config.producer.client.client_id = client_id.to_string();
    config.session_timeout = Duration::from_secs(6);
    config
}

/// The server subprocess: answers `{by: "child", id}`, appending each id to
/// the handled file first, and serves until it is killed.
async fn child(spec: Value) {
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let handled_file = s("handled_file");
    let _server =
        TransportServer::builder(server_config(&s("bootstrap"), &s("group"), CHILD_CLIENT_ID))
            .message(&s("pattern"), move |Payload(v): Payload<Value>| {
                let handled_file = handled_file.clone();
                async move {
                    use std::io::Write as _;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&handled_file)
                        .unwrap();
                    writeln!(f, "{}", v["id"]).unwrap();
                    Ok::<_, RpcError>(json!({"by": "child", "id": v["id"]}))
                }
            })
            .start()
            .await
            .unwrap();
    println!("READY");
    std::future::pending::<()>().await;
}

fn handled_ids(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

async fn a_killed_server_s_request_is_answered_once_by_another_member() {
    let cluster = KafkaCluster::builder().fault_proxy().start().await.unwrap();
    let b = cluster.bootstrap();
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    let pattern = unique_topic("kill.charge");
    let reply = format!("{pattern}.reply");
    common::create_topics(&b, &[(&pattern, 1), (&reply, 1)]).await;
    let group = unique_group("kill-before-ack");
    let handled_file = std::env::temp_dir().join(unique_topic("kill-handled"));
    let spec = json!({
        "bootstrap": b, "group": group, "pattern": pattern,
        "handled_file": handled_file.display().to_string(),
    });
    let mut target = subprocess::spawn_self(CHILD_ENV, &spec.to_string(), Some("READY")).unwrap();

    let mut config = TransportClientConfig::new(&b, &unique_group("kill-replies"));
    config.request_timeout = Duration::from_secs(60);
    let client = Arc::new(TransportClient::connect(config, &[&pattern]).await.unwrap());
    let warm: Value = client.send(&pattern, &json!({"id": 0})).await.unwrap();
    assert_eq!(warm, json!({"by": "child", "id": 0}));

    // Cut the subprocess's produce path: its reply never reaches the log.
    proxy.swallow_requests_from(api_key::PRODUCE, CHILD_CLIENT_ID);
    let sent = Instant::now();
    let request = {
        let (client, pattern) = (Arc::clone(&client), pattern.clone());
        tokio::spawn(async move { client.send::<_, Value>(&pattern, &json!({"id": 1})).await })
    };
    wait_until("the subprocess to handle request 1", || {
        handled_ids(&handled_file).contains(&1)
    })
    .await;
    wait_until("the subprocess's reply to be swallowed", || {
        proxy.swallowed_requests(api_key::PRODUCE) > 0
    })
    .await;
    // Long enough for a server that commits before its reply is written
    // (NestJS's order) to have committed past the request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    target.kill().unwrap();
    target.wait().unwrap();

    // Another member takes the partition over once the dead one's session
    // ends, and answers from the uncommitted offset.
    let survivor_handled = Arc::new(Mutex::new(Vec::<u64>::new()));
    let survivor = {
        let handled = Arc::clone(&survivor_handled);
        TransportServer::builder(server_config(&b, &group, "survivor"))
            .message(&pattern, move |Payload(v): Payload<Value>| {
                let handled = Arc::clone(&handled);
                async move {
                    let id = v["id"].as_u64().unwrap();
                    handled.lock().unwrap().push(id);
                    Ok::<_, RpcError>(json!({"by": "survivor", "id": id}))
                }
            })
            .start()
            .await
            .unwrap()
    };
    let answer = request.await.unwrap().unwrap();
    assert_eq!(answer, json!({"by": "survivor", "id": 1}));
    assert!(
        sent.elapsed() < Duration::from_secs(60),
        "within the timeout"
    );
    assert!(
        survivor_handled.lock().unwrap().contains(&1),
        "the survivor ran the request the dead server never answered"
    );
    assert_eq!(client.pending_requests(), 0);

    // The dead server's reply lands after all: a duplicate for a request
    // already answered. Read the request's correlation id off its topic.
    let requests = common::read(&b, &pattern, 2).await;
    let killed = requests
        .iter()
        .find(|r| serde_json::from_slice::<Value>(r.value.as_deref().unwrap()).unwrap()["id"] == 1)
        .unwrap();
    let correlation =
        String::from_utf8(killed.header(headers::CORRELATION_ID).unwrap().to_vec()).unwrap();
    let reply_partition =
        String::from_utf8(killed.header(headers::REPLY_PARTITION).unwrap().to_vec()).unwrap();
    common::produce(
        &b,
        &reply,
        reply_partition.parse().unwrap(),
        r#"{"by":"dead","id":1}"#,
        &[
            (headers::CORRELATION_ID, &correlation),
            (headers::NEST_IS_DISPOSED, "\0"),
        ],
    )
    .await;
    let next: Value = client.send(&pattern, &json!({"id": 2})).await.unwrap();
    assert_eq!(next, json!({"by": "survivor", "id": 2}));
    assert_eq!(client.pending_requests(), 0);

    Arc::into_inner(client).unwrap().close().await.unwrap();
    survivor.shutdown(Duration::from_secs(20)).await.unwrap();
    let _ = std::fs::remove_file(&handled_file);
}
