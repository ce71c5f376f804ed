//! Group coordinator failover on three owned brokers (replication 3, the
//! offsets topic too): the broker coordinating a group is SIGKILLed while
//! two members consume and commit. The members find the new coordinator on
//! their own, every record produced before and after the kill is consumed,
//! and the group's committed offsets reach the end of every partition:
//! nothing is lost, and no poll or member fails.
//!
//! Both group protocols run on the same cluster, one after the other, each
//! killing (and then restarting) its own group's coordinator.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use common::{Seen, admin, member, run_member, wait_until};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_client::CoordinatorType;
use franz_client::admin::NewTopic;
use franz_consumer::GroupProtocol;
use franz_producer::ProducerRecord;
use franz_testkit::{KafkaCluster, unique_group, unique_topic};

const PARTITIONS: i32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_survive_the_group_coordinator_dying() {
    if franz_testkit::real_broker_only("kills the coordinator of its own three-node cluster") {
        return;
    }
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    for protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
        if common::kip848_unavailable(protocol) {
            continue;
        }
        survive_coordinator_kill(&cluster, protocol).await;
    }
}

async fn survive_coordinator_kill(cluster: &KafkaCluster, protocol: GroupProtocol) {
    let b = cluster.bootstrap();
    let tag = format!("failover-{protocol:?}").to_lowercase();
    let (topic, group) = (unique_topic(&tag), unique_group(&tag));
    let admin = admin(&b).await;
    let created = admin
        .create_topics(vec![NewTopic::new(&topic, PARTITIONS, 3)], false)
        .await
        .unwrap();
    created[0].1.as_ref().unwrap();
    let produce = |range: std::ops::Range<u32>| {
        let (b, topic) = (b.clone(), topic.clone());
        async move {
            common::produce(&b, range, |i| {
                ProducerRecord::new(topic.as_str(), format!("v{i}")).with_key(format!("k{i}"))
            })
            .await;
        }
    };
    produce(0..1500).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<Arc<Mutex<Seen>>> = (0..2).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for s in &seen {
        tasks.push(run_member(
            member(&b, &group, &topic, protocol).await,
            Arc::clone(s),
            Arc::clone(&stop),
        ));
    }
    let distinct = |seen: &[Arc<Mutex<Seen>>]| {
        seen.iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap()
                    .records
                    .iter()
                    .map(|r| r.key.clone())
                    .collect::<Vec<_>>()
            })
            .collect::<BTreeSet<_>>()
            .len()
    };
    wait_until("the members consume the first records", || {
        distinct(&seen) >= 500
    })
    .await;

    let coordinator = admin
        .client()
        .coordinator(CoordinatorType::Group, &group)
        .await
        .unwrap();
    cluster.kill(coordinator).unwrap();
    produce(1500..3000).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let offsets = admin.list_group_offsets(&group).await;
        let committed: i64 = offsets
            .as_ref()
            .map(|offsets| offsets.values().map(|o| o.committed).sum())
            .unwrap_or_default();
        let consumed = distinct(&seen);
        if consumed == 3000 && committed == 3000 {
            break;
        }
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a member stopped ({protocol:?}): its poll or close failed"
        );
        assert!(
            Instant::now() < deadline,
            "{protocol:?}, coordinator {coordinator} killed: {consumed} of 3000 records \
             consumed, {committed} committed ({offsets:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a member failed while leaving the group");
    }
    cluster.restart(coordinator).await.unwrap();
    cluster
        .wait_for_full_isr(Duration::from_secs(120))
        .await
        .unwrap();
}
