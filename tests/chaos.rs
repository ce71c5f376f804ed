//! Chaos on three brokers, judged by the testkit's history checker.
//!
//! **Leader kills.** An idempotent producer (acks=all, a 5-minute delivery
//! timeout) writes `FRANZ_CHAOS_RECORDS` records (default 100,000, the CI
//! smoke form; `just chaos` runs 1,000,000) at a bounded rate to a topic of
//! six partitions, replication 3, `min.insync.replicas=2`. At evenly spaced
//! record milestones the leader of partition 0 is SIGKILLed
//! (`FRANZ_CHAOS_KILLS`, default 3; `just chaos` runs 10) while records
//! flow: the test waits for a new leader epoch, restarts the broker, and
//! waits for the full ISR before the next kill. The producer runs half an
//! interval past each milestone and waits there for the kill's cycle to
//! end, so every kill lands mid-stream. Every send's fate goes into a [`History`]; a
//! consumer then reads the topic back from the start and every record it
//! hands out goes in too. The checker must find nothing lost, duplicated or
//! reordered within a key; a timed-out send is indeterminate, allowed to be
//! absent.
//!
//! **A leader cut off.** The same run, but at each milestone the leader
//! is paused (SIGSTOP) past the broker session timeout instead
//! (`FRANZ_CHAOS_PAUSES`, default 2, over `FRANZ_CHAOS_PAUSE_RECORDS`,
//! default 60,000): the controller fences it and elects another leader
//! while its sockets stay open and silent, so clients learn of it only
//! through their request timeouts and fresh metadata. Then it runs again
//! (SIGCONT), finds itself fenced, and catches up to the full ISR.
//!
//! The report line (scenario, records, faults, lost, duplicated, reordered,
//! indeterminate, wall time) is printed for the closing notes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig, TopicPartition};
use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};
use franz_producer::{Acks, ProduceError, Producer, ProducerConfig, ProducerRecord};
use franz_testkit::history::{History, SendOutcome};
use franz_testkit::{KafkaCluster, unique_topic};
use tokio::sync::Mutex;

const PARTITIONS: i32 = 6;
const WRITER: u32 = 1;
/// Records per second the producer is held to at most.
const RATE: u64 = 20_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The scenarios each own a three-node cluster; two cores run one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// What happens to the leader at each milestone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderFault {
    /// SIGKILL, then a restart.
    Kill,
    /// SIGSTOP past the broker session timeout (6 s), so that the
    /// controller fences it and elects another leader while the paused
    /// broker still holds its sockets open; then SIGCONT.
    Pause,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_lose_and_duplicate_nothing() {
    if franz_testkit::real_broker_only("kills and restarts brokers of its own three-node cluster") {
        return;
    }
    let records = env_or("FRANZ_CHAOS_RECORDS", 100_000);
    let kills = env_or("FRANZ_CHAOS_KILLS", 3);
    leader_faults(LeaderFault::Kill, records, kills).await;
}

/// #15's "leader cut off": the partition leader is paused (SIGSTOP) past
/// the broker session timeout. Its sockets stay open and silent, so a
/// client learns of the failover only through its request timeout and
/// fresh metadata; nothing may be lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_loses_and_duplicates_nothing() {
    if franz_testkit::real_broker_only("pauses brokers of its own three-node cluster") {
        return;
    }
    let records = env_or("FRANZ_CHAOS_PAUSE_RECORDS", 60_000);
    let pauses = env_or("FRANZ_CHAOS_PAUSES", 2);
    leader_faults(LeaderFault::Pause, records, pauses).await;
}

/// The broker's `broker.session.timeout.ms` in the testkit's clusters,
/// and a margin: a paused leader is fenced within it.
const FENCED_WITHIN: Duration = Duration::from_secs(9);

async fn leader_faults(fault: LeaderFault, records: u64, kills: u64) {
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let bootstrap = cluster.bootstrap();
    // Requests to a silent (paused) broker give up after 5 s, so that
    // the test's own metadata lookups move on to a live one.
    let client = Client::connect(ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(&bootstrap)
    })
    .await
    .unwrap();
    let topic = unique_topic(match fault {
        LeaderFault::Kill => "chaos-leader-kills",
        LeaderFault::Pause => "chaos-leader-paused",
    });
    let created = Admin::new(client.clone())
        .create_topics(
            vec![NewTopic::new(topic.clone(), PARTITIONS, 3).config("min.insync.replicas", "2")],
            false,
        )
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();

    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        enable_idempotence: Some(true),
        delivery_timeout: Duration::from_secs(300),
        linger: Duration::from_millis(5),
        ..ProducerConfig::from_client_config(ClientConfig {
            // A paused leader answers nothing: its requests time out
            // after this, and the producer fails over.
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::new(&bootstrap)
        })
    })
    .await
    .unwrap();
    let history = Arc::new(Mutex::new(History::new()));
    let sent = Arc::new(AtomicU64::new(0));
    // Kills land while records flow: the producer runs half an interval
    // past each milestone, then waits there until that kill's cycle
    // (restart, full ISR) is over, so no kill falls after the last record.
    let interval = records / (kills + 1);
    let allowed = Arc::new(AtomicU64::new(interval + interval / 2));
    let producing = tokio::spawn(produce(
        producer.clone(),
        topic.clone(),
        records,
        Arc::clone(&sent),
        Arc::clone(&allowed),
        Arc::clone(&history),
    ));

    for kill in 1..=kills {
        let milestone = records * kill / (kills + 1);
        while sent.load(Ordering::Relaxed) < milestone {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = leader_of(&client, &topic).await;
        match fault {
            LeaderFault::Kill => cluster.kill(before.0).unwrap(),
            LeaderFault::Pause => cluster.pause(before.0).unwrap(),
        }
        let faulted = Instant::now();
        // A new leader, under a new epoch, before the broker comes back.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now = leader_of(&client, &topic).await;
            if now.1 > before.1 && now.0 >= 0 && now.0 != before.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no new leader after killing {}",
                before.0
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Records flowed through the election: the kill was mid-stream.
        assert!(
            sent.load(Ordering::Relaxed) < records,
            "fault {kill} came after the last record"
        );
        match fault {
            LeaderFault::Kill => cluster.restart(before.0).await.unwrap(),
            LeaderFault::Pause => {
                // Held past the session timeout: fenced, not merely slow.
                tokio::time::sleep(FENCED_WITHIN.saturating_sub(faulted.elapsed())).await;
                cluster.resume(before.0).unwrap();
            }
        }
        cluster
            .wait_for_full_isr(Duration::from_secs(180))
            .await
            .unwrap();
        allowed.store(
            if kill == kills {
                records
            } else {
                interval * (kill + 1) + interval / 2
            },
            Ordering::Relaxed,
        );
    }
    producing.await.unwrap();
    producer.close(Duration::from_secs(30)).await.unwrap();

    let expected = {
        let h = history.lock().await;
        h.check().acked
    };
    consume_all(&bootstrap, &topic, expected, &history).await;
    let report = history.lock().await.check();
    let (scenario, faults) = match fault {
        LeaderFault::Kill => ("leader kills", format!("{kills} leader SIGKILLs")),
        LeaderFault::Pause => (
            "leader cut off",
            format!("{kills} leader SIGSTOPs past the session timeout"),
        ),
    };
    println!(
        "{}",
        report.chaos_row(
            scenario,
            &format!("{records} records"),
            &faults,
            started.elapsed()
        )
    );
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.sent as u64, records);
}

/// The leader of partition 0 and its epoch, from fresh metadata. A
/// lookup that fails (it asked a paused broker, say) is tried again.
async fn leader_of(client: &Client, topic: &str) -> (i32, i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.refresh_metadata_for(&[topic.to_string()]).await {
            Ok(md) => {
                let p = &md.topics[topic].partitions[0];
                return (p.leader, p.leader_epoch);
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no metadata for 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Sends `records` records at most [`RATE`] per second, never past
/// `allowed`, each keyed `k<seq % 97>` with value `<writer>:<seq>`, and
/// records each fate.
async fn produce(
    producer: Producer,
    topic: String,
    records: u64,
    sent: Arc<AtomicU64>,
    allowed: Arc<AtomicU64>,
    history: Arc<Mutex<History>>,
) {
    let mut started = Instant::now();
    let mut paced_from = 0;
    let mut acks = tokio::task::JoinSet::new();
    for seq in 0..records {
        if seq >= allowed.load(Ordering::Relaxed) {
            while seq >= allowed.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (started, paced_from) = (Instant::now(), seq);
        }
        let key = format!("k{}", seq % 97);
        history.lock().await.send((WRITER, seq), Some(&key));
        let record = ProducerRecord::new(topic.as_str(), format!("{WRITER}:{seq}")).with_key(key);
        let outcome = match producer.send(record).await {
            Ok(ack) => {
                let history = Arc::clone(&history);
                acks.spawn(async move {
                    let outcome = match ack.await {
                        Ok(meta) => SendOutcome::Acked {
                            partition: (meta.topic.to_string(), meta.partition),
                            offset: meta.offset,
                        },
                        Err(e) => fate_of(&e),
                    };
                    history.lock().await.sent((WRITER, seq), outcome);
                });
                None
            }
            // Refused before it was queued: never written.
            Err(_refused) => Some(SendOutcome::Failed),
        };
        if let Some(outcome) = outcome {
            history.lock().await.sent((WRITER, seq), outcome);
        }
        sent.store(seq + 1, Ordering::Relaxed);
        // Hold the rate: sleep off any lead over RATE records per second.
        let due = Duration::from_secs_f64((seq + 1 - paced_from) as f64 / RATE as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed())
            && ahead > Duration::from_millis(5)
        {
            tokio::time::sleep(ahead).await;
        }
        while acks.try_join_next().is_some() {}
    }
    while acks.join_next().await.is_some() {}
}

/// A failed delivery: written for sure not (refused before it was sent), or
/// of unknown fate.
fn fate_of(e: &ProduceError) -> SendOutcome {
    match e {
        ProduceError::DeliveryTimeout { sent: false, .. } | ProduceError::Closed => {
            SendOutcome::Failed
        }
        _ => SendOutcome::Indeterminate,
    }
}

/// Reads every partition from the start until `expected` distinct offsets
/// were handed out (or two minutes pass), recording each delivery.
async fn consume_all(bootstrap: &str, topic: &str, expected: usize, history: &Mutex<History>) {
    let mut config = ConsumerConfig::new(bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&partitions).await.unwrap();
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < expected && Instant::now() < deadline {
        let batch = consumer.poll(Duration::from_secs(1)).await.unwrap();
        let mut h = history.lock().await;
        for r in batch {
            let value = r.value.as_deref().unwrap_or_default();
            let text = std::str::from_utf8(value).unwrap();
            let (writer, seq) = text.split_once(':').unwrap();
            h.delivered(
                "reader",
                (r.topic.to_string(), r.partition),
                r.offset,
                (writer.parse().unwrap(), seq.parse().unwrap()),
            );
            seen += 1;
        }
    }
    consumer.close().await;
}
