//! Exactly-once across crashes, on three brokers: consume-transform-produce
//! of 200,000 records with a transactional franz producer and a
//! read_committed franz group consumer, while
//!
//! 1. the leader of an output partition is killed,
//! 2. the transaction coordinator (the leader of the transactional id's
//!    `__transaction_state` partition) is killed,
//! 3. the group coordinator is killed,
//! 4. the franz process itself is SIGKILLed and started again,
//!
//! each broker restarted (and the ISR full again) before the next fault.
//! The output, read by Java's read_committed consumer, must hold every input
//! record exactly once (count, and each input number once).
//!
//! `harness = false`: `main` is either the test or, with `FRANZ_EOS_APP`
//! set, the consume-transform-produce process the test kills.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig, CoordinatorType, TopicPartition};
use franz_consumer::{ConsumerConfig, GroupConfig, GroupConsumer, IsolationLevel, OffsetReset};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::history::{History, SendOutcome};
use franz_testkit::{KafkaCluster, subprocess, unique_group, unique_topic};
use serde_json::{Value, json};

const CHILD_ENV: &str = "FRANZ_EOS_APP";
const RECORDS: u64 = 200_000;
const PARTITIONS: i32 = 6;

fn main() {
    if franz_testkit::real_broker_only("three brokers of its own, killed mid-run") {
        return;
    }
    let runtime = subprocess::runtime();
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let code = runtime.block_on(app(serde_json::from_str(&spec).unwrap()));
        std::process::exit(code);
    }
    subprocess::run_single_test(
        &runtime,
        "exactly_once_across_broker_and_process_crashes",
        exactly_once_across_broker_and_process_crashes(),
    );
}

fn client_config(bootstrap: &str) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        socket_connection_setup_timeout: Duration::from_secs(3),
        reconnect_backoff_max: Duration::from_millis(500),
        retry_backoff_max: Duration::from_millis(500),
        ..ClientConfig::new(bootstrap)
    }
}

/// The application: read a batch (read_committed), write each record
/// transformed, commit the batch's offsets in the same transaction. An
/// abortable error aborts and rewinds to the committed offsets; anything
/// else ends the process with a code, and the test starts it again.
async fn app(spec: Value) -> i32 {
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let (bootstrap, input, output) = (s("bootstrap"), s("input"), s("output"));
    let consumer_config = ConsumerConfig {
        isolation_level: IsolationLevel::ReadCommitted,
        auto_offset_reset: OffsetReset::Earliest,
        max_poll_records: 200,
        ..ConsumerConfig::from_client_config(client_config(&bootstrap))
    };
    let group = GroupConfig {
        session_timeout: Duration::from_secs(6),
        ..GroupConfig::new(s("group"))
    };
    let mut consumer = match GroupConsumer::new(consumer_config, group, &[input.as_str()]).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eos app: consumer: {e}");
            return 10;
        }
    };
    let producer = match Producer::new(ProducerConfig {
        transaction_timeout: Duration::from_secs(60),
        delivery_timeout: Duration::from_secs(120),
        ..ProducerConfig::from_client_config(client_config(&bootstrap))
            .with_transactional_id(s("transactional_id"))
    })
    .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eos app: producer: {e}");
            return 11;
        }
    };
    if let Err(e) = producer.init_transactions().await {
        eprintln!("eos app: init_transactions: {e}");
        return 12;
    }
    loop {
        let records = match consumer.poll(Duration::from_millis(500)).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => continue,
            Err(e) => {
                eprintln!("eos app: poll: {e}");
                return 13;
            }
        };
        if records.is_empty() {
            continue;
        }
        let result = async {
            producer.begin_transaction()?;
            let mut offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            let mut acks = Vec::with_capacity(records.len());
            for r in &records {
                let value = r.value.as_deref().unwrap_or_default();
                let mut out = value.to_vec();
                out.extend_from_slice(b"|transformed");
                let mut rec = ProducerRecord::new(output.as_str(), out);
                rec.key = r.key.clone();
                acks.push(producer.send(rec).await?);
                offsets.insert(
                    TopicPartition::new(r.topic.to_string(), r.partition),
                    r.offset + 1,
                );
            }
            producer
                .send_offsets_to_transaction(&offsets, &consumer.group_metadata())
                .await?;
            producer.commit_transaction().await?;
            for a in acks {
                a.await?;
            }
            Ok::<(), franz_producer::ProduceError>(())
        }
        .await;
        match result {
            Ok(()) => {}
            Err(e) if e.is_abortable() => {
                eprintln!("eos app: aborting: {e}");
                if let Err(e) = producer.abort_transaction().await {
                    eprintln!("eos app: abort failed: {e}");
                    return 14;
                }
                // Read again from what the group committed: the aborted
                // batch's records go into the next transaction.
                let committed = match consumer.committed().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("eos app: committed offsets: {e}");
                        return 15;
                    }
                };
                for tp in consumer.assignment() {
                    let at = committed.get(&tp).copied().unwrap_or(0);
                    if let Err(e) = consumer.consumer_mut().seek(&tp, at) {
                        eprintln!("eos app: seek {tp}: {e}");
                        return 16;
                    }
                }
            }
            Err(e) => {
                eprintln!("eos app: transaction failed: {e}");
                return 17;
            }
        }
        // A steady pace, so that the faults land mid-stream.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

fn spawn_app(spec: &Value) -> Child {
    subprocess::spawn_self(CHILD_ENV, &spec.to_string(), None).unwrap()
}

/// Input records the group has committed (consumed, transformed and
/// committed in a transaction).
async fn progress(admin: &Admin, group: &str) -> u64 {
    admin
        .list_group_offsets(group)
        .await
        .map(|m| {
            m.values()
                .map(|o| u64::try_from(o.committed.max(0)).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

struct Run {
    cluster: KafkaCluster,
    admin: Admin,
    client: Client,
    spec: Value,
    group: String,
    app: Child,
    restarts: u32,
}

impl Run {
    /// Waits until at least `records` are committed, restarting the app if
    /// it ended on its own.
    async fn wait_progress(&mut self, records: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let done = progress(&self.admin, &self.group).await;
            if done >= records {
                return;
            }
            if let Some(status) = self.app.try_wait().unwrap() {
                eprintln!("eos test: the app ended ({status}); starting it again");
                self.restarts += 1;
                self.app = spawn_app(&self.spec);
            }
            assert!(
                Instant::now() < deadline,
                "stalled at {done} of {records} committed records"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn kill_and_restart(&mut self, node: i32, what: &str) {
        let at = progress(&self.admin, &self.group).await;
        eprintln!("eos test: killing node {node} ({what}) at {at} committed records");
        self.cluster.kill(node).unwrap();
        // The app must make progress without it.
        self.wait_progress(at + 2_000, Duration::from_secs(180))
            .await;
        self.cluster.restart(node).await.unwrap();
        self.cluster
            .wait_for_full_isr(Duration::from_secs(180))
            .await
            .unwrap();
    }

    async fn leader_of(&self, topic: &str, partition: i32) -> i32 {
        let md = self
            .client
            .refresh_metadata_for(&[topic.to_string()])
            .await
            .unwrap();
        md.topics[topic].partitions[usize::try_from(partition).unwrap()].leader
    }

    async fn coordinator(&self, kind: CoordinatorType, key: &str) -> i32 {
        self.client.invalidate_coordinator(kind, key);
        self.client.coordinator(kind, key).await.unwrap()
    }
}

async fn exactly_once_across_broker_and_process_crashes() {
    let started = Instant::now();
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let bootstrap = cluster.bootstrap();
    let client = Client::connect(client_config(&bootstrap)).await.unwrap();
    let admin = Admin::new(client.clone());
    let (input, output) = (unique_topic("eos-in"), unique_topic("eos-out"));
    for t in [&input, &output] {
        admin
            .create_topics(
                vec![NewTopic::new(t.clone(), PARTITIONS, 3).config("min.insync.replicas", "2")],
                false,
            )
            .await
            .unwrap()[0]
            .1
            .as_ref()
            .unwrap();
    }
    // The input, written (and acknowledged) before the app starts.
    let loader = Producer::new(ProducerConfig::from_client_config(client_config(
        &bootstrap,
    )))
    .await
    .unwrap();
    // Every input record goes into the history as a send (writer 1, its
    // number), acknowledged where the loader wrote it; the output records
    // read back are its deliveries. The checker then judges the output:
    // nothing lost, nothing at two offsets, and each key's records in input
    // order.
    let mut history = History::new();
    let mut acks = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{}", i % 1000);
        history.send((1, i), Some(&key));
        let rec = ProducerRecord::new(input.as_str(), i.to_string()).with_key(key);
        acks.push(loader.send(rec).await.unwrap());
    }
    for (i, a) in acks.into_iter().enumerate() {
        let meta = a.await.unwrap();
        history.sent(
            (1, i as u64),
            SendOutcome::Acked {
                partition: (meta.topic.to_string(), meta.partition),
                offset: meta.offset,
            },
        );
    }
    loader.close(Duration::from_secs(10)).await.unwrap();

    let group = unique_group("eos");
    let transactional_id = unique_topic("eos-app");
    let spec = json!({
        "bootstrap": bootstrap,
        "input": input,
        "output": output,
        "group": group,
        "transactional_id": transactional_id,
    });
    let app = spawn_app(&spec);
    let mut run = Run {
        cluster,
        admin,
        client,
        spec,
        group: group.clone(),
        app,
        restarts: 0,
    };
    run.wait_progress(10_000, Duration::from_secs(180)).await;

    let leader = run.leader_of(&output, 0).await;
    run.kill_and_restart(leader, "leader of an output partition")
        .await;
    let txn = run
        .coordinator(CoordinatorType::Transaction, &transactional_id)
        .await;
    run.kill_and_restart(txn, "transaction coordinator").await;
    let grp = run.coordinator(CoordinatorType::Group, &group).await;
    run.kill_and_restart(grp, "group coordinator").await;

    let at = progress(&run.admin, &group).await;
    assert!(at < RECORDS, "the app finished before its own kill ({at})");
    eprintln!("eos test: SIGKILL to the app at {at} committed records");
    run.app.kill().unwrap();
    run.app.wait().unwrap();
    run.app = spawn_app(&run.spec);

    run.wait_progress(RECORDS, Duration::from_secs(600)).await;
    run.app.kill().unwrap();
    run.app.wait().unwrap();

    let read = franz_testkit::java_read_committed(&bootstrap, &output)
        .await
        .unwrap();
    let mut seen = vec![0u32; usize::try_from(RECORDS).unwrap()];
    for r in &read {
        let n: usize = r
            .value
            .strip_suffix("|transformed")
            .unwrap_or_else(|| panic!("unexpected output {:?}", r.value))
            .parse()
            .unwrap();
        seen[n] += 1;
        history.delivered(
            "java-read-committed",
            (output.clone(), r.partition),
            r.offset,
            (1, n as u64),
        );
    }
    let report = history.check();
    println!(
        "{}",
        report.chaos_row(
            "exactly-once consume-transform-produce",
            &format!("{RECORDS} records"),
            "3 broker SIGKILLs (output leader, transaction coordinator, group coordinator) + 1 app SIGKILL",
            started.elapsed()
        )
    );
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    let missing = seen.iter().filter(|c| **c == 0).count();
    let duplicated = seen.iter().filter(|c| **c > 1).count();
    let checksum: u64 = read
        .iter()
        .map(|r| {
            r.value
                .trim_end_matches("|transformed")
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    eprintln!(
        "eos test: {} output records read_committed, {missing} missing, {duplicated} duplicated, {} unplanned app restarts",
        read.len(),
        run.restarts
    );
    assert_eq!((missing, duplicated), (0, 0));
    assert_eq!(read.len() as u64, RECORDS, "count");
    assert_eq!(
        checksum,
        RECORDS * (RECORDS - 1) / 2,
        "checksum of the input numbers"
    );
}
