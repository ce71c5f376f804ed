//! A franz member and a KafkaJS consumer (NestJS's default assigner,
//! `RoundRobinAssigner`) share one classic group on the shared broker:
//! they split the partitions between them and read every record once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_consumer::assignor::RoundRobinAssignor;
use franz_consumer::{ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaCluster, node, unique_group, unique_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franz_and_kafkajs_split_a_round_robin_group() {
    let b = KafkaCluster::shared().await.unwrap().bootstrap();
    let topic = unique_topic("kafkajs-group");
    let group = unique_group("kafkajs-group");
    let admin = Admin::new(Client::connect(ClientConfig::new(&b)).await.unwrap());
    let created = admin
        .create_topics(vec![NewTopic::new(&topic, 4, 1)], false)
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();

    // KafkaJS joins first and stays 40 s.
    let kafkajs = {
        let (b, topic, group) = (b.clone(), topic.clone(), group.clone());
        tokio::task::spawn_blocking(move || {
            node::run_script(
                "kafkajs-group-member.mjs",
                &[&b, &topic, &group, "40"],
                Duration::from_secs(240),
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = admin.describe_groups(&[group.as_str()]).await.unwrap();
        if d[0]
            .1
            .as_ref()
            .is_ok_and(|g| g.members.len() == 1 && g.state == "Stable")
        {
            break;
        }
        assert!(Instant::now() < deadline, "KafkaJS never joined: {d:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut config = ConsumerConfig::new(&b);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_max_wait = Duration::from_millis(200);
    let mut g = GroupConfig::new(group.as_str());
    g.session_timeout = Duration::from_secs(10);
    g.heartbeat_interval = Duration::from_millis(500);
    g.rebalance_timeout = Duration::from_secs(30);
    g.revoke_timeout = Duration::from_secs(15);
    g.assignors = vec![Arc::new(RoundRobinAssignor)];
    let mut franz = GroupConsumer::new(config, g, &[topic.as_str()])
        .await
        .unwrap();
    let mut mine = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while franz.assignment().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "franz never got half the partitions: {:?}",
            franz.assignment()
        );
        mine.extend(franz.poll(Duration::from_millis(300)).await.unwrap());
    }
    // The split while both are members. (When KafkaJS leaves at the end,
    // franz takes its partitions over: the assignment read after that says
    // nothing about the split.)
    let ours: BTreeSet<i32> = franz.assignment().iter().map(|tp| tp.partition).collect();

    let producer = Producer::new(ProducerConfig::new(&b)).await.unwrap();
    let mut acks = Vec::new();
    for i in 0..100 {
        let rec = ProducerRecord::new(topic.as_str(), format!("v{i}")).with_key(format!("k{i}"));
        acks.push(producer.send(rec).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
    // Read until KafkaJS is done; commit as we go.
    while !kafkajs.is_finished() {
        mine.extend(franz.poll(Duration::from_millis(300)).await.unwrap());
        let _ = franz.commit().await;
    }
    let out = kafkajs.await.unwrap().unwrap();
    franz.close().await.unwrap();

    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let theirs: BTreeSet<i32> = line("assignment")
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        ours.is_disjoint(&theirs),
        "franz {ours:?}, KafkaJS {theirs:?}"
    );
    assert_eq!(
        ours.union(&theirs).count(),
        4,
        "franz {ours:?}, KafkaJS {theirs:?}"
    );

    let mut seen = BTreeSet::new();
    for r in &mine {
        assert!(
            ours.contains(&r.partition),
            "franz read partition {}",
            r.partition
        );
        assert!(
            seen.insert((r.partition, r.offset)),
            "franz read {}@{} twice",
            r.partition,
            r.offset
        );
    }
    for rec in line("received") {
        let (p, o) = rec.split_once(':').unwrap();
        let (p, o): (i32, i64) = (p.parse().unwrap(), o.parse().unwrap());
        assert!(theirs.contains(&p), "KafkaJS read partition {p}: {out}");
        assert!(
            seen.insert((p, o)),
            "{p}@{o} read twice (franz and KafkaJS): {out}"
        );
    }
    assert_eq!(
        seen.len(),
        100,
        "every record read once between them: {out}"
    );
}
