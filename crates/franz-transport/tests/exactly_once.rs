//! Exactly-once handling (`TransportServerConfig::exactly_once`), on a
//! broker of its own behind the fault proxy:
//!
//! 1. a server **subprocess** (this test binary in child mode) handles a
//!    request: its reply, and an audit record written through its
//!    [`Outbox`], go into its transaction, with the request's offset;
//! 2. the proxy swallows its EndTxn, so the transaction never commits, and
//!    the subprocess is SIGKILLed: killed between handling and committing;
//! 3. another member takes the partition over once the transaction times
//!    out (the broker aborts it), handles the request again and answers;
//! 4. a `read_committed` client gets exactly that one reply, and Java's
//!    `read_committed` consumer finds one reply and one audit record for
//!    the request: the dead server's are in the log, aborted, never seen.
//!
//! The same crash without exactly-once (the proxy swallowing the dead
//! server's OffsetCommit instead) leaves two replies and two audit records
//! visible, which shows the check can fail.
//!
//! `harness = false`: `main` is either the test or, with `FRANZ_EOS_TARGET`
//! set, the server subprocess.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_consumer::{IsolationLevel, OffsetReset};
use franz_producer::ProducerRecord;
use franz_testkit::proxy::api_key;
use franz_testkit::{KafkaCluster, subprocess, unique_group, unique_topic};
use franz_transport::{
    ExactlyOnce, Outbox, Payload, RpcError, TransportClient, TransportClientConfig,
    TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

const CHILD_ENV: &str = "FRANZ_EOS_TARGET";
const CHILD_CLIENT_ID: &str = "eos-target";
/// EndTxn's API key (the proxy's table stops before it).
const END_TXN: i16 = 26;

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
        "a_server_killed_before_its_commit_leaves_one_visible_reply",
        a_server_killed_before_its_commit_leaves_one_visible_reply(),
    );
}

fn server_config(spec: &Value, client_id: &str, transactional_id: &str) -> TransportServerConfig {
    let mut config = TransportServerConfig::new(
        spec["bootstrap"].as_str().unwrap(),
        spec["group"].as_str().unwrap(),
    );
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config.consumer.client.client_id = client_id.to_string();
    config.producer.client.client_id = client_id.to_string();
    config.session_timeout = Duration::from_secs(6);
    if spec["exactly_once"].as_bool().unwrap() {
        config.exactly_once = Some(ExactlyOnce {
            transactional_id: transactional_id.to_string(),
            transaction_timeout: Duration::from_secs(5),
        });
        config.consumer.isolation_level = IsolationLevel::ReadCommitted;
    }
    config
}

/// Answers `{by, id}` and writes the same to the audit topic through its
/// outbox.
async fn start_server(spec: &Value, by: &'static str, client_id: &str) -> TransportServer {
    let audit = spec["audit"].as_str().unwrap().to_string();
    let txn_id = format!("{}-{by}", spec["group"].as_str().unwrap());
    TransportServer::builder(server_config(spec, client_id, &txn_id))
        .message(
            spec["pattern"].as_str().unwrap(),
            move |Payload(v): Payload<Value>, outbox: Outbox| {
                let audit = audit.clone();
                async move {
                    let body = json!({"by": by, "id": v["id"]});
                    outbox
                        .send(ProducerRecord::new(audit.as_str(), body.to_string()))
                        .await?;
                    Ok::<_, RpcError>(body)
                }
            },
        )
        .start()
        .await
        .unwrap()
}

async fn child(spec: Value) {
    let _server = start_server(&spec, "dead", CHILD_CLIENT_ID).await;
    println!("READY");
    std::future::pending::<()>().await;
}

/// The values of `topic` a Java read_committed consumer sees that concern
/// request `id`: who wrote them.
async fn visible(bootstrap: &str, topic: &str, id: u64) -> Vec<String> {
    franz_testkit::java_read_committed(bootstrap, topic)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.value).ok())
        .filter(|v| v["id"] == id)
        .map(|v| v["by"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn crash_between_handling_and_commit(cluster: &KafkaCluster, exactly_once: bool) {
    let b = cluster.bootstrap();
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    proxy.clear_faults();
    let pattern = unique_topic("eos.charge");
    let reply = format!("{pattern}.reply");
    let audit = unique_topic("eos.audit");
    common::create_topics(&b, &[(&pattern, 1), (&reply, 1), (&audit, 1)]).await;
    let spec = json!({
        "bootstrap": b, "group": unique_group("eos-server"), "pattern": pattern,
        "audit": audit, "exactly_once": exactly_once,
    });
    let mut target = subprocess::spawn_self(CHILD_ENV, &spec.to_string(), Some("READY")).unwrap();

    let mut config = TransportClientConfig::new(&b, &unique_group("eos-replies"));
    config.request_timeout = Duration::from_secs(90);
    config.consumer.isolation_level = IsolationLevel::ReadCommitted;
    let client = Arc::new(TransportClient::connect(config, &[&pattern]).await.unwrap());

    // Killed between handling and committing: its commit never arrives.
    let commit_api = if exactly_once {
        END_TXN
    } else {
        api_key::OFFSET_COMMIT
    };
    proxy.swallow_requests_from(commit_api, CHILD_CLIENT_ID);
    let request = {
        let (client, pattern) = (Arc::clone(&client), pattern.clone());
        tokio::spawn(async move { client.send::<_, Value>(&pattern, &json!({"id": 1})).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.swallowed_requests(commit_api) == 0 {
        assert!(
            Instant::now() < deadline,
            "the subprocess never tried to commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    target.kill().unwrap();
    target.wait().unwrap();

    let survivor = start_server(&spec, "survivor", "eos-survivor").await;
    let answer = request.await.unwrap().unwrap();
    let replies = visible(&b, &reply, 1).await;
    let audits = visible(&b, &audit, 1).await;
    if exactly_once {
        // The dead server's outbox record and reply are in the log (a
        // read_uncommitted reader sees them), in its aborted transaction.
        let written: Vec<Value> = common::read(&b, &audit, 2)
            .await
            .iter()
            .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
            .collect();
        assert!(
            written.contains(&json!({"by": "dead", "id": 1})),
            "the crash came after the write: {written:?}"
        );
        assert_eq!(answer, json!({"by": "survivor", "id": 1}));
        assert_eq!(replies, ["survivor"], "one reply visible to read_committed");
        assert_eq!(audits, ["survivor"], "one outbox record visible");
    } else {
        assert_eq!(
            answer,
            json!({"by": "dead", "id": 1}),
            "seen before the crash"
        );
        assert_eq!(
            replies,
            ["dead", "survivor"],
            "without exactly-once the crash leaves two replies"
        );
        assert_eq!(audits, ["dead", "survivor"]);
    }
    Arc::into_inner(client).unwrap().close().await.unwrap();
    survivor.shutdown(Duration::from_secs(20)).await.unwrap();
}

async fn a_server_killed_before_its_commit_leaves_one_visible_reply() {
    let cluster = KafkaCluster::builder().fault_proxy().start().await.unwrap();
    crash_between_handling_and_commit(&cluster, true).await;
    crash_between_handling_and_commit(&cluster, false).await;
}
