//! Classic consumer groups against the shared broker: members split the
//! partitions, a leaving member's partitions move to the others, and a new
//! member resumes from the committed offsets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use common::{Seen, admin, bootstrap, create_topic, member, run_member, static_member, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz_consumer::{GroupProtocol, TopicPartition};
use franz_producer::ProducerRecord;
use franz_testkit::{unique_group, unique_topic};

async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<u32>) {
    common::produce(bootstrap, range, |i| {
        ProducerRecord::new(topic, format!("v{i}")).with_key(format!("k{i}"))
    })
    .await;
}

fn partitions_of(seen: &Mutex<Seen>) -> BTreeSet<i32> {
    seen.lock()
        .unwrap()
        .assignment
        .iter()
        .map(|tp| tp.partition)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_take_over_when_one_leaves() {
    split_and_take_over(GroupProtocol::Classic).await;
}

/// The same with KIP-848's protocol: the coordinator assigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_members_split_partitions_and_take_over_when_one_leaves() {
    split_and_take_over(GroupProtocol::Consumer).await;
}

async fn split_and_take_over(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("group-split");
    let group = unique_group("group-split");
    create_topic(&b, &topic, 4).await;

    let (seen_a, stop_a) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(AtomicBool::new(false)),
    );
    let (seen_b, stop_b) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(AtomicBool::new(false)),
    );
    let task_a = run_member(
        member(&b, &group, &topic, protocol).await,
        Arc::clone(&seen_a),
        Arc::clone(&stop_a),
    );
    wait_until("the first member owns all partitions", || {
        partitions_of(&seen_a).len() == 4
    })
    .await;
    let task_b = run_member(
        member(&b, &group, &topic, protocol).await,
        Arc::clone(&seen_b),
        Arc::clone(&stop_b),
    );
    wait_until("the members split the partitions", || {
        let (a, bb) = (partitions_of(&seen_a), partitions_of(&seen_b));
        a.len() == 2 && bb.len() == 2 && a.is_disjoint(&bb)
    })
    .await;

    produce(&b, &topic, 0..200).await;
    let total = |s: &Arc<Mutex<Seen>>| s.lock().unwrap().records.len();
    wait_until("200 records arrive", || {
        total(&seen_a) + total(&seen_b) >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut owner: BTreeMap<i32, &str> = BTreeMap::new();
    let mut unique = BTreeSet::new();
    for (name, seen) in [("a", &seen_a), ("b", &seen_b)] {
        for r in &seen.lock().unwrap().records {
            assert!(
                unique.insert((r.partition, r.offset)),
                "duplicate {}@{}",
                r.partition,
                r.offset
            );
            assert_eq!(
                *owner.entry(r.partition).or_insert(name),
                name,
                "partition {} read by both",
                r.partition
            );
        }
    }
    assert_eq!(unique.len(), 200);

    // A leaves: B takes over everything and reads only what is new.
    stop_a.store(true, Ordering::Relaxed);
    task_a.await.unwrap();
    wait_until("the remaining member owns all partitions", || {
        partitions_of(&seen_b).len() == 4
    })
    .await;
    let before = total(&seen_b);
    produce(&b, &topic, 200..240).await;
    wait_until("40 more records arrive", || total(&seen_b) >= before + 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh: Vec<(i32, i64)> = seen_b.lock().unwrap().records[before..]
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    assert_eq!(fresh.len(), 40, "exactly the new records, none re-read");
    for key in &fresh {
        assert!(unique.insert(*key), "re-delivered {key:?}");
    }

    stop_b.store(true, Ordering::Relaxed);
    task_b.await.unwrap();
    // Every record is committed: the group's offsets are the log ends.
    let committed = admin(&b).await.list_group_offsets(&group).await.unwrap();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in &unique {
        let e = ends.entry(*p).or_default();
        *e = (*e).max(o + 1);
    }
    for (p, end) in ends {
        let tp = TopicPartition::new(topic.as_str(), p);
        assert_eq!(
            committed.get(&tp).map(|o| o.committed),
            Some(end),
            "partition {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_from_the_committed_offsets() {
    resume(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kip848_member_resumes_from_the_committed_offsets() {
    resume(GroupProtocol::Consumer).await;
}

async fn resume(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("group-resume");
    let group = unique_group("group-resume");
    create_topic(&b, &topic, 1).await;
    produce(&b, &topic, 0..10).await;

    let mut first = member(&b, &group, &topic, protocol).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 10 && Instant::now() < deadline {
        got.extend(first.poll(Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(got.len(), 10);
    // Commit only 7: the handler "failed" on the last three.
    first
        .commit_offsets(&[(TopicPartition::new(topic.as_str(), 0), 7)])
        .await
        .unwrap();
    first.close().await.unwrap();

    produce(&b, &topic, 10..15).await;
    let mut second = member(&b, &group, &topic, protocol).await;
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while again.len() < 8 && Instant::now() < deadline {
        again.extend(second.poll(Duration::from_millis(500)).await.unwrap());
    }
    let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (7..15).collect::<Vec<i64>>(),
        "resumes at the committed offset"
    );
    second.close().await.unwrap();
}

/// Static membership (KIP-345, and KIP-848's static members): a member
/// that restarts with the same `group_instance_id` within the session
/// timeout gets its partitions back, and the other member is not disturbed
/// (same partitions, same generation or epoch: no rebalance happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_a_rebalance() {
    static_restart(GroupProtocol::Classic).await;
}

/// The same with KIP-848's protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_static_member_restarts_without_a_rebalance() {
    static_restart(GroupProtocol::Consumer).await;
}

async fn static_restart(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("group-static");
    let group = unique_group("group-static");
    create_topic(&b, &topic, 4).await;
    let start = |instance: &'static str| {
        let (b, group, topic) = (b.clone(), group.clone(), topic.clone());
        async move {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let consumer = static_member(&b, &group, &topic, protocol, Some(instance)).await;
            let task = run_member(consumer, Arc::clone(&seen), Arc::clone(&stop));
            (seen, stop, task)
        }
    };
    let (seen_a, stop_a, task_a) = start("instance-a").await;
    wait_until("the first member owns all partitions", || {
        partitions_of(&seen_a).len() == 4
    })
    .await;
    let (seen_b, stop_b, task_b) = start("instance-b").await;
    wait_until("the members split the partitions", || {
        let (a, bb) = (partitions_of(&seen_a), partitions_of(&seen_b));
        a.len() == 2 && bb.len() == 2 && a.is_disjoint(&bb)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (parts_a, parts_b) = (partitions_of(&seen_a), partitions_of(&seen_b));
    let generation_a = seen_a.lock().unwrap().generation;

    // B stops (a static member does not leave) and its next instance
    // starts well within the 6 s session timeout.
    stop_b.store(true, Ordering::Relaxed);
    task_b.await.unwrap();
    let (seen_b2, stop_b2, task_b2) = start("instance-b").await;
    wait_until("the new instance owns its predecessor's partitions", || {
        partitions_of(&seen_b2) == parts_b
    })
    .await;
    // Past the session timeout of the old instance: had it been dropped,
    // a rebalance would have happened by now.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(partitions_of(&seen_a), parts_a, "A's partitions moved");
    assert_eq!(partitions_of(&seen_b2), parts_b, "B's partitions moved");
    assert_eq!(
        seen_a.lock().unwrap().generation,
        generation_a,
        "A saw a rebalance"
    );

    produce(&b, &topic, 0..100).await;
    let total = |s: &Arc<Mutex<Seen>>| s.lock().unwrap().records.len();
    wait_until("100 records arrive", || {
        total(&seen_a) + total(&seen_b2) >= 100
    })
    .await;
    for s in [&seen_a, &seen_b2] {
        s.lock().unwrap().records.clear();
    }
    stop_a.store(true, Ordering::Relaxed);
    stop_b2.store(true, Ordering::Relaxed);
    task_a.await.unwrap();
    task_b2.await.unwrap();
}

/// Pausing every partition for longer than the session timeout keeps the
/// member in the group (same id and generation: heartbeats go on while
/// `poll` returns nothing); resumed, it reads on. `commit_record` commits
/// the offset after the record, and `committed` reads it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_member_keeps_its_membership_and_commit_record_adds_one() {
    let b = bootstrap().await;
    let topic = unique_topic("group-pause");
    let group = unique_group("group-pause");
    create_topic(&b, &topic, 2).await;
    produce(&b, &topic, 0..10).await;
    let mut m = member(&b, &group, &topic, GroupProtocol::Classic).await;
    m.wait_for_assignment(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(m.assignment().len(), 2);
    let before = m.member();
    let all = m.assignment();
    m.pause(&all).unwrap();
    // Past the 6 s session timeout, polling but fetching nothing.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert!(m.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    }
    assert_eq!(m.member(), before, "still the same member and generation");
    m.resume(&all).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "only {} records after resume",
            got.len()
        );
        got.extend(m.poll(Duration::from_millis(300)).await.unwrap());
    }
    let last = got.iter().max_by_key(|r| (r.partition, r.offset)).unwrap();
    m.commit_record(last).await.unwrap();
    let committed = m.committed().await.unwrap();
    assert_eq!(
        committed.get(&TopicPartition::new(topic.as_str(), last.partition)),
        Some(&(last.offset + 1))
    );
    m.close().await.unwrap();
}
