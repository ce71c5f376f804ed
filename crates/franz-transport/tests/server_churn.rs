//! #15's transport under churn: two server **subprocesses** (this test
//! binary, re-run in child mode) share one server group on a three-node
//! cluster of the test's own while a client sends requests and emits events
//! without pause. Every [`KILL_EVERY`] one server is SIGKILLed (no leave,
//! no last commit) and a new one started in its slot.
//!
//! What must hold:
//! - every request gets its own reply (the reply names the request's id and
//!   its doubled value) or a typed [`TransportError::Timeout`]: never a
//!   reply meant for another request, never another error;
//! - every event the client emitted (the broker acknowledged it) is handled
//!   at least once, judged by the testkit's history checker: each event is
//!   a send, its place found by reading the event topic back, and each
//!   handling (the server appends id, partition and offset to a file of its
//!   incarnation before the handler returns) a delivery. Nothing lost,
//!   nothing at two offsets, nothing out of order within a key.
//!
//! `FRANZ_CHAOS_SERVER_KILLS` (default 3) sets the kills. `harness = false`:
//! `main` is either the test or, with `FRANZ_CHURN_SERVER` set, a server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use franz_consumer::OffsetReset;
use franz_testkit::history::{History, SendOutcome};
use franz_testkit::{KafkaCluster, subprocess, unique_group, unique_topic};
use franz_transport::{
    Ctx, Message, Payload, RpcError, TransportClient, TransportClientConfig, TransportError,
    TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

const CHILD_ENV: &str = "FRANZ_CHURN_SERVER";
const SERVERS: usize = 2;
const PARTITIONS: i32 = 4;
/// Longer than the session timeout (6 s) plus a rebalance, so that each
/// kill's takeover is done before the next kill.
const KILL_EVERY: Duration = Duration::from_secs(12);
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
/// A request not answered within this is a typed timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    if franz_testkit::real_broker_only("three brokers of its own and killed server processes") {
        return;
    }
    let runtime = subprocess::runtime();
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        runtime.block_on(server(serde_json::from_str(&spec).unwrap()));
        return;
    }
    subprocess::run_single_test(
        &runtime,
        "killed_servers_lose_no_event_and_answer_no_request_wrongly",
        killed_servers_lose_no_event_and_answer_no_request_wrongly(),
    );
}

/// A server: answers `compute` with `{id, doubled, by}` and records each
/// event it handles (`<id> <partition> <offset>`) in its own file, flushed
/// before the handler returns (so before the offset can be committed).
async fn server(spec: Value) {
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let label = s("label");
    let mut config = TransportServerConfig::new(&s("bootstrap"), &s("group"));
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config.session_timeout = Duration::from_secs(6);
    let handled = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s("handled_file"))
            .unwrap(),
    ));
    let by = label.clone();
    let _server = TransportServer::builder(config)
        .message(&s("requests"), move |Payload(v): Payload<Value>| {
            let by = by.clone();
            async move {
                let id = v["id"].as_u64().unwrap();
                Ok::<_, RpcError>(json!({"id": id, "doubled": id * 2, "by": by}))
            }
        })
        .event(&s("events"), move |Payload(v): Payload<Value>, ctx: Ctx| {
            let handled = Arc::clone(&handled);
            async move {
                let mut f = handled.lock().unwrap();
                writeln!(f, "{} {} {}", v["id"], ctx.partition(), ctx.offset()).unwrap();
                f.flush().unwrap();
                Ok::<_, RpcError>(())
            }
        })
        .start()
        .await
        .unwrap();
    println!("READY");
    std::future::pending::<()>().await;
}

struct Servers {
    spec: Value,
    dir: std::path::PathBuf,
    running: Vec<Option<Child>>,
    incarnations: usize,
}

impl Servers {
    fn start(&mut self, slot: usize) {
        let mut spec = self.spec.clone();
        let label = format!("s{slot}.{}", self.incarnations);
        spec["label"] = json!(label);
        spec["handled_file"] = json!(self.dir.join(&label).display().to_string());
        self.incarnations += 1;
        self.running[slot] =
            Some(subprocess::spawn_self(CHILD_ENV, &spec.to_string(), Some("READY")).unwrap());
    }

    fn kill(&mut self, slot: usize) {
        if let Some(mut child) = self.running[slot].take() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "server {slot} died on its own"
            );
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Every handling any incarnation recorded: (event id, partition, offset, incarnation).
    fn handled(&self) -> Vec<(u64, i32, i64, String)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            let who = path.file_name().unwrap().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let mut parts = line.split(' ');
                // A SIGKILL can cut the last line short: only whole ones count.
                if let (Some(id), Some(p), Some(o)) = (parts.next(), parts.next(), parts.next())
                    && let (Ok(id), Ok(p), Ok(o)) = (id.parse(), p.parse(), o.parse())
                {
                    out.push((id, p, o, who.clone()));
                }
            }
        }
        out
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for mut child in self.running.iter_mut().filter_map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Default)]
struct Requests {
    replied: AtomicU64,
    timed_out: AtomicU64,
}

async fn killed_servers_lose_no_event_and_answer_no_request_wrongly() {
    let kills: usize = std::env::var("FRANZ_CHAOS_SERVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let started = Instant::now();
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let b = cluster.bootstrap();
    let requests = unique_topic("churn.compute");
    let events = unique_topic("churn.events");
    let reply = format!("{requests}.reply");
    common::create_topics(
        &b,
        &[
            (&requests, PARTITIONS),
            (&reply, PARTITIONS),
            (&events, PARTITIONS),
        ],
    )
    .await;
    let dir = std::env::temp_dir().join(unique_topic("server-churn"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut servers = Servers {
        spec: json!({
            "bootstrap": b, "group": unique_group("server-churn"),
            "requests": requests, "events": events,
        }),
        dir,
        running: (0..SERVERS).map(|_| None).collect(),
        incarnations: 0,
    };
    for slot in 0..SERVERS {
        servers.start(slot);
    }

    let mut config = TransportClientConfig::new(&b, &unique_group("server-churn-replies"));
    config.request_timeout = REQUEST_TIMEOUT;
    let client = Arc::new(
        TransportClient::connect(config, &[&requests])
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Requests::default());
    let next_id = Arc::new(AtomicU64::new(0));

    // Requests: IN_FLIGHT loops, each sending one request after another.
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, stop, tally, next_id, pattern) = (
            Arc::clone(&client),
            Arc::clone(&stop),
            Arc::clone(&tally),
            Arc::clone(&next_id),
            requests.clone(),
        );
        senders.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                match client.send::<_, Value>(&pattern, &json!({"id": id})).await {
                    Ok(reply) => {
                        assert_eq!(
                            (reply["id"].as_u64(), reply["doubled"].as_u64()),
                            (Some(id), Some(id * 2)),
                            "request {id} got another request's reply: {reply}"
                        );
                        tally.replied.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TransportError::Timeout { .. }) => {
                        tally.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("request {id}: neither a reply nor a timeout: {e:?}"),
                }
            }
        });
    }
    // Events: one emitter, keyed over 16 keys, each emit acknowledged.
    let emitter = {
        let (client, stop, pattern) = (Arc::clone(&client), Arc::clone(&stop), events.clone());
        tokio::spawn(async move {
            let mut emitted = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{}", seq % 16);
                let payload = json!({"id": seq});
                let message = Message::new(&payload).key(key.clone());
                match client.emit(&pattern, message).await {
                    Ok(()) => emitted.push((seq, key, true)),
                    Err(_) => emitted.push((seq, key, false)),
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            emitted
        })
    };

    for k in 0..kills {
        tokio::time::sleep(KILL_EVERY).await;
        let slot = k % SERVERS;
        servers.kill(slot);
        tokio::time::sleep(Duration::from_millis(500)).await;
        servers.start(slot);
    }
    tokio::time::sleep(KILL_EVERY).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let emitted = emitter.await.unwrap();
    assert_eq!(client.pending_requests(), 0, "every request settled");

    // Where each event is: read the event topic back.
    let acked = emitted.iter().filter(|(_, _, ok)| *ok).count();
    let log = common::read(&b, &events, acked).await;
    let mut place: HashMap<u64, (i32, i64)> = HashMap::new();
    for r in &log {
        let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        place.insert(v["id"].as_u64().unwrap(), (r.partition, r.offset));
    }
    let mut history = History::new();
    for (seq, key, ok) in &emitted {
        history.send((1, *seq), Some(key));
        let outcome = match (ok, place.get(seq)) {
            (true, Some((p, o))) => SendOutcome::Acked {
                partition: (events.clone(), *p),
                offset: *o,
            },
            // Acknowledged but not in the log: a producer loss, which
            // the checker reports (at offset -1).
            (true, None) => SendOutcome::Acked {
                partition: (events.clone(), -1),
                offset: -1,
            },
            (false, _) => SendOutcome::Indeterminate,
        };
        history.sent((1, *seq), outcome);
    }
    // Every acknowledged event handled at least once, within a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let mut h = history.clone();
        for (id, p, o, who) in servers.handled() {
            h.delivered(&who, (events.clone(), p), o, (1, id));
        }
        let report = h.check();
        if report.lost.is_empty() || Instant::now() >= deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (replied, timed_out) = (
        tally.replied.load(Ordering::Relaxed),
        tally.timed_out.load(Ordering::Relaxed),
    );
    let records = format!(
        "{} requests ({replied} replied, {timed_out} timed out, 0 wrong) + {} events",
        replied + timed_out,
        emitted.len()
    );
    let faults = format!("{kills} server SIGKILLs");
    println!(
        "{}",
        report.chaos_row(
            "transport under server SIGKILLs",
            &records,
            &faults,
            started.elapsed()
        )
    );
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(replied > 0, "no request was answered");
    drop(servers);
    drop(cluster);
}
