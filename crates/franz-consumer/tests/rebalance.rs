//! Rebalance safety against the shared broker: the group waits for the
//! application before moving a partition (no double handling), the
//! cooperative-sticky hooks fire only for what moves, a slow handler stays in
//! the group through a rebalance, and a member that stops polling is
//! replaced and told so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{admin, bootstrap, create_topic, earliest, group_config, wait_until};
use franz_consumer::assignor::{Assignor, CooperativeStickyAssignor};
use franz_consumer::{
    ConsumeError, GroupConfig, GroupConsumer, GroupProtocol, HookFuture, RebalanceListener,
    TopicPartition,
};
use franz_producer::ProducerRecord;
use franz_testkit::{unique_group, unique_topic};

async fn consumer(b: &str, g: GroupConfig, topic: &str) -> GroupConsumer {
    GroupConsumer::new(earliest(b), g, &[topic]).await.unwrap()
}

/// One hook call, in global order.
#[derive(Debug, Clone)]
struct Hook {
    seq: u64,
    member: &'static str,
    kind: &'static str,
    partitions: Vec<i32>,
}

/// Records hook calls of one member into a shared log.
struct Recorder {
    member: &'static str,
    log: Arc<Mutex<Vec<Hook>>>,
    seq: Arc<AtomicU64>,
}

impl Recorder {
    fn record(&self, kind: &'static str, partitions: &[TopicPartition]) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(Hook {
            seq,
            member: self.member,
            kind,
            partitions: partitions.iter().map(|tp| tp.partition).collect(),
        });
    }
}

impl RebalanceListener for Recorder {
    fn on_assigned<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        Box::pin(async move { self.record("assigned", partitions) })
    }
    fn on_revoked<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        Box::pin(async move { self.record("revoked", partitions) })
    }
    fn on_lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> HookFuture<'a> {
        Box::pin(async move { self.record("lost", partitions) })
    }
}

/// One record handled: by whom, and when.
#[derive(Debug, Clone)]
struct Handled {
    member: &'static str,
    partition: i32,
    offset: i64,
    start: Instant,
    end: Instant,
}

struct Member {
    handled: Arc<Mutex<Vec<Handled>>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    fn owns(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("member stops")
            .unwrap();
    }
}

/// Runs `c`: each record takes `per_record` to handle; the poll's records
/// are committed after they are all handled.
fn run(name: &'static str, mut c: GroupConsumer, per_record: Duration) -> Member {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let assignment = Arc::new(Mutex::new(BTreeSet::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (handled, assignment, errors, stop) = (
            Arc::clone(&handled),
            Arc::clone(&assignment),
            Arc::clone(&errors),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let records = match c.poll(Duration::from_millis(200)).await {
                    Ok(r) => r,
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        continue;
                    }
                };
                *assignment.lock().unwrap() =
                    c.assignment().iter().map(|tp| tp.partition).collect();
                for r in &records {
                    let start = Instant::now();
                    tokio::time::sleep(per_record).await;
                    handled.lock().unwrap().push(Handled {
                        member: name,
                        partition: r.partition,
                        offset: r.offset,
                        start,
                        end: Instant::now(),
                    });
                }
                if let Err(e) = c.commit().await {
                    errors.lock().unwrap().push(format!("commit: {e}"));
                }
            }
            c.close().await.unwrap();
        })
    };
    Member {
        handled,
        assignment,
        errors,
        stop,
        task,
    }
}

async fn produce(b: &str, topic: &str, partitions: i32, per_partition: u32) {
    let t = topic.to_string();
    common::produce(
        b,
        0..(per_partition * u32::try_from(partitions).unwrap()),
        move |i| {
            ProducerRecord::new(t.as_str(), format!("v{i}"))
                .with_partition(i32::try_from(i).unwrap() % partitions)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_never_has_two_handlers_at_once_classic() {
    no_double_handling(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_never_has_two_handlers_at_once_kip848() {
    no_double_handling(GroupProtocol::Consumer).await;
}

/// Member A takes both partitions and works slowly through 60 records;
/// member B joins meanwhile, and one partition moves to it; 20 more records
/// follow the split. From the
/// handling intervals: no offset is handled by both at once (nor twice),
/// and the committed offsets never go backwards.
async fn no_double_handling(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("no-double");
    let group = unique_group("no-double");
    create_topic(&b, &topic, 2).await;
    produce(&b, &topic, 2, 30).await;
    let assignors =
        || -> Vec<Arc<dyn Assignor>> { vec![Arc::new(franz_consumer::assignor::RangeAssignor)] };

    // The committed offsets, watched throughout.
    let watching = Arc::new(AtomicBool::new(true));
    let backwards = Arc::new(Mutex::new(Vec::<String>::new()));
    let watcher = {
        let (watching, backwards, b, group) = (
            Arc::clone(&watching),
            Arc::clone(&backwards),
            b.clone(),
            group.clone(),
        );
        tokio::spawn(async move {
            let admin = admin(&b).await;
            let mut last: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            while watching.load(Ordering::SeqCst) {
                if let Ok(now) = admin.list_group_offsets(&group).await {
                    for (tp, o) in now {
                        let prev = last.insert(tp.clone(), o.committed);
                        if prev.is_some_and(|p| p > o.committed) {
                            backwards
                                .lock()
                                .unwrap()
                                .push(format!("{tp:?}: {prev:?} -> {}", o.committed));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let per_record = Duration::from_millis(100);
    let a = run(
        "a",
        consumer(&b, group_config(&group, protocol, assignors()), &topic).await,
        per_record,
    );
    wait_until("A handles records", || {
        !a.handled.lock().unwrap().is_empty()
    })
    .await;
    let bm = run(
        "b",
        consumer(&b, group_config(&group, protocol, assignors()), &topic).await,
        per_record,
    );
    wait_until("the members split", || {
        a.owns().len() == 1 && bm.owns().len() == 1
    })
    .await;
    // Records written after the split show B handling its partition.
    produce(&b, &topic, 2, 10).await;
    wait_until("every record is handled", || {
        let n = a.handled.lock().unwrap().len() + bm.handled.lock().unwrap().len();
        n >= 80
    })
    .await;
    // Let anything handled twice show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    watching.store(false, Ordering::SeqCst);
    watcher.await.unwrap();

    let mut all: Vec<Handled> = a.handled.lock().unwrap().clone();
    all.extend(bm.handled.lock().unwrap().iter().cloned());
    let moved_to_b: BTreeSet<i32> = bm.owns();
    let errors = (
        a.errors.lock().unwrap().clone(),
        bm.errors.lock().unwrap().clone(),
    );
    a.stop().await;
    bm.stop().await;

    let mut overlaps = Vec::new();
    let mut twice = Vec::new();
    let mut by_offset: BTreeMap<(i32, i64), Vec<&Handled>> = BTreeMap::new();
    for h in &all {
        by_offset
            .entry((h.partition, h.offset))
            .or_default()
            .push(h);
    }
    for ((p, o), hs) in &by_offset {
        if hs.len() > 1 {
            twice.push((*p, *o, hs.iter().map(|h| h.member).collect::<Vec<_>>()));
        }
        for (i, x) in hs.iter().enumerate() {
            for y in &hs[i + 1..] {
                if x.member != y.member && x.start < y.end && y.start < x.end {
                    overlaps.push((*p, *o));
                }
            }
        }
    }
    // Handling of one partition by both members at once, at any offsets.
    let mut concurrent = Vec::new();
    for x in all.iter().filter(|h| h.member == "a") {
        for y in all
            .iter()
            .filter(|h| h.member == "b" && h.partition == x.partition)
        {
            if x.start < y.end && y.start < x.end {
                concurrent.push((x.partition, x.offset, y.offset));
            }
        }
    }
    println!(
        "no_double_handling {protocol:?}: {} handled (a {}, b {}), partition(s) {moved_to_b:?} moved to b, {} handled twice, {} overlapping, errors {errors:?}",
        all.len(),
        all.iter().filter(|h| h.member == "a").count(),
        all.iter().filter(|h| h.member == "b").count(),
        twice.len(),
        overlaps.len() + concurrent.len(),
    );
    assert!(!moved_to_b.is_empty(), "a partition moved to B");
    assert!(
        overlaps.is_empty() && concurrent.is_empty(),
        "offsets handled by both members at once: {overlaps:?}; one partition handled by both at once: {:?}",
        &concurrent[..concurrent.len().min(10)]
    );
    assert!(twice.is_empty(), "offsets handled twice: {twice:?}");
    assert_eq!(by_offset.len(), 80, "every record handled");
    assert!(
        backwards.lock().unwrap().is_empty(),
        "committed offsets went backwards: {:?}",
        backwards.lock().unwrap()
    );
}

/// Three cooperative-sticky members share 6 partitions; a fourth joins,
/// then one leaves. Checked on the hook calls: no revoke for a partition a
/// member keeps, and every moved partition is revoked exactly once by its
/// old owner before its new owner is given it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_hooks_fire_only_for_partitions_that_move() {
    let b = bootstrap().await;
    let topic = unique_topic("coop");
    let group = unique_group("coop");
    create_topic(&b, &topic, 6).await;
    let log = Arc::new(Mutex::new(Vec::<Hook>::new()));
    let seq = Arc::new(AtomicU64::new(0));
    let start = |name: &'static str| {
        let (b, group, topic, log, seq) = (
            b.clone(),
            group.clone(),
            topic.clone(),
            Arc::clone(&log),
            Arc::clone(&seq),
        );
        async move {
            let g = group_config(
                &group,
                GroupProtocol::Classic,
                vec![Arc::new(CooperativeStickyAssignor)],
            );
            let mut c = consumer(&b, g, &topic).await;
            c.set_listener(Recorder {
                member: name,
                log,
                seq,
            });
            run(name, c, Duration::ZERO)
        }
    };
    let settled = |members: &[&Member], n: usize| {
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.owns()).collect();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        members.len() == n
            && union.len() == 6
            && total == 6
            && sets.iter().all(|s| s.len() >= 6 / n)
    };
    let a = start("a").await;
    let bm = start("b").await;
    let c = start("c").await;
    wait_until("three members split 6 partitions", || {
        settled(&[&a, &bm, &c], 3)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: BTreeMap<&str, BTreeSet<i32>> =
        [("a", a.owns()), ("b", bm.owns()), ("c", c.owns())].into();
    let mark1 = seq.load(Ordering::SeqCst);

    let d = start("d").await;
    wait_until("four members split 6 partitions", || {
        settled(&[&a, &bm, &c, &d], 4)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: BTreeMap<&str, BTreeSet<i32>> = [
        ("a", a.owns()),
        ("b", bm.owns()),
        ("c", c.owns()),
        ("d", d.owns()),
    ]
    .into();
    let mark2 = seq.load(Ordering::SeqCst);
    check_moves(
        "a fourth member joins",
        &log.lock().unwrap(),
        mark1,
        mark2,
        &before,
        &after,
    );

    // One leaves (close revokes its partitions and leaves the group).
    a.stop().await;
    wait_until("three members split 6 partitions again", || {
        settled(&[&bm, &c, &d], 3)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_leave: BTreeMap<&str, BTreeSet<i32>> = [
        ("a", BTreeSet::new()),
        ("b", bm.owns()),
        ("c", c.owns()),
        ("d", d.owns()),
    ]
    .into();
    let mark3 = seq.load(Ordering::SeqCst);
    check_moves(
        "a member leaves",
        &log.lock().unwrap(),
        mark2,
        mark3,
        &after,
        &after_leave,
    );
    let hooks = log.lock().unwrap().clone();
    println!(
        "cooperative hooks: {} calls: {:?}",
        hooks.len(),
        hooks
            .iter()
            .map(|h| format!("{}:{}{:?}", h.member, h.kind, h.partitions))
            .collect::<Vec<_>>()
    );
    assert!(
        hooks.iter().all(|h| h.kind != "lost"),
        "nothing is lost: {hooks:?}"
    );
    for m in [bm, c, d] {
        m.stop().await;
    }
}

/// The hooks between `from` and `to` move exactly `before` → `after`.
fn check_moves(
    what: &str,
    hooks: &[Hook],
    from: u64,
    to: u64,
    before: &BTreeMap<&str, BTreeSet<i32>>,
    after: &BTreeMap<&str, BTreeSet<i32>>,
) {
    let window: Vec<&Hook> = hooks
        .iter()
        .filter(|h| h.seq >= from && h.seq < to)
        .collect();
    let empty = BTreeSet::new();
    for (member, owned_before) in before {
        let owned_after = after.get(member).unwrap_or(&empty);
        let revoked: Vec<i32> = window
            .iter()
            .filter(|h| h.member == *member && h.kind == "revoked")
            .flat_map(|h| h.partitions.clone())
            .collect();
        let moved: BTreeSet<i32> = owned_before.difference(owned_after).copied().collect();
        let mut sorted = revoked.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            moved.iter().copied().collect::<Vec<_>>(),
            "{what}: {member} must revoke exactly what it lost, once each (kept {:?}); hooks {window:?}",
            owned_before.intersection(owned_after).collect::<Vec<_>>()
        );
    }
    for (member, owned_after) in after {
        let owned_before = before.get(member).unwrap_or(&empty);
        for p in owned_after.difference(owned_before) {
            let assigned = window
                .iter()
                .find(|h| h.member == *member && h.kind == "assigned" && h.partitions.contains(p))
                .unwrap_or_else(|| {
                    panic!("{what}: {member} was never told it got {p}: {window:?}")
                });
            if let Some(revoke) = window
                .iter()
                .find(|h| h.kind == "revoked" && h.member != *member && h.partitions.contains(p))
            {
                assert!(
                    revoke.seq < assigned.seq,
                    "{what}: {p} given to {member} before {} revoked it: {window:?}",
                    revoke.member
                );
            }
        }
        let kept_assigned: Vec<i32> = window
            .iter()
            .filter(|h| h.member == *member && h.kind == "assigned")
            .flat_map(|h| h.partitions.clone())
            .filter(|p| owned_before.contains(p))
            .collect();
        assert!(
            kept_assigned.is_empty(),
            "{what}: {member} was re-assigned partitions it kept: {kept_assigned:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_stays_in_the_group_through_a_rebalance_classic() {
    slow_handler_survives(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_stays_in_the_group_through_a_rebalance_kip848() {
    slow_handler_survives(GroupProtocol::Consumer).await;
}

/// A handler runs for 12 s, past the session timeout (the member's 6 s
/// classic one; the test broker's `group.consumer.session.timeout.ms` of
/// 10 s under KIP-848) but within the 20 s rebalance timeout, while a new
/// member joins. The member keeps its
/// member id (DescribeGroups lists it), its generation goes up, and it
/// loses nothing.
async fn slow_handler_survives(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("slow-handler");
    let group = unique_group("slow-handler");
    create_topic(&b, &topic, 2).await;
    produce(&b, &topic, 2, 1).await;
    let log = Arc::new(Mutex::new(Vec::<Hook>::new()));
    let seq = Arc::new(AtomicU64::new(0));
    let g = group_config(
        &group,
        protocol,
        vec![Arc::new(franz_consumer::assignor::RangeAssignor)],
    );
    let mut a = consumer(&b, g.clone(), &topic).await;
    a.set_listener(Recorder {
        member: "a",
        log: Arc::clone(&log),
        seq: Arc::clone(&seq),
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got == 0 {
        assert!(Instant::now() < deadline, "A never got records");
        got = a.poll(Duration::from_millis(200)).await.unwrap().len();
    }
    let (id_before, generation_before) = a.member();
    // A is in its handler; B joins meanwhile.
    let joiner = {
        let (b, topic, g) = (b.clone(), topic.clone(), g.clone());
        tokio::spawn(async move {
            let mut bm = consumer(&b, g, &topic).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while bm.assignment().is_empty() {
                assert!(Instant::now() < deadline, "B never got a partition");
                bm.poll(Duration::from_millis(200)).await.unwrap();
            }
            bm
        })
    };
    tokio::time::sleep(Duration::from_secs(12)).await;
    a.commit().await.ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "A never settled at one partition"
        );
        a.poll(Duration::from_millis(200)).await.unwrap();
    }
    let bm = joiner.await.unwrap();
    let (id_after, generation_after) = a.member();
    let hooks = log.lock().unwrap().clone();
    println!(
        "slow handler {protocol:?}: member {id_before} generation {generation_before} -> {id_after} generation {generation_after}; hooks {:?}",
        hooks
            .iter()
            .map(|h| format!("{}{:?}", h.kind, h.partitions))
            .collect::<Vec<_>>()
    );
    assert_eq!(id_after, id_before, "not evicted: the same member id");
    assert!(
        generation_after > generation_before,
        "the generation went up"
    );
    assert!(
        hooks.iter().all(|h| h.kind != "lost"),
        "nothing lost: {hooks:?}"
    );
    if protocol == GroupProtocol::Classic {
        let described = admin(&b)
            .await
            .describe_groups(&[group.as_str()])
            .await
            .unwrap();
        let members: Vec<String> = described[0]
            .1
            .as_ref()
            .unwrap()
            .members
            .iter()
            .map(|m| m.member_id.clone())
            .collect();
        assert!(
            members.contains(&id_before),
            "DescribeGroups lists {id_before}: {members:?}"
        );
        assert_eq!(members.len(), 2);
    }
    a.close().await.unwrap();
    bm.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_is_replaced_and_told_classic() {
    stops_polling(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_is_replaced_and_told_kip848() {
    stops_polling(GroupProtocol::Consumer).await;
}

/// A stops polling for longer than its 3 s `max_poll_interval` while its
/// heartbeats would keep it in the group: it leaves, B gets every
/// partition, A's next poll says why, and the poll after rejoins.
async fn stops_polling(protocol: GroupProtocol) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let b = bootstrap().await;
    let topic = unique_topic("poll-interval");
    let group = unique_group("poll-interval");
    create_topic(&b, &topic, 2).await;
    let mut g = group_config(
        &group,
        protocol,
        vec![Arc::new(franz_consumer::assignor::RangeAssignor)],
    );
    g.max_poll_interval = Duration::from_secs(3);
    let log = Arc::new(Mutex::new(Vec::<Hook>::new()));
    let seq = Arc::new(AtomicU64::new(0));
    let mut a = consumer(&b, g.clone(), &topic).await;
    a.set_listener(Recorder {
        member: "a",
        log: Arc::clone(&log),
        seq: Arc::clone(&seq),
    });
    let bm = run("b", consumer(&b, g.clone(), &topic).await, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() != 1 || bm.owns().len() != 1 {
        assert!(Instant::now() < deadline, "the members never split");
        a.poll(Duration::from_millis(200)).await.unwrap();
    }
    // A's application wedges.
    wait_until("B owns every partition", || bm.owns().len() == 2).await;
    let err = a.poll(Duration::from_millis(200)).await.unwrap_err();
    assert!(
        matches!(err, ConsumeError::PollIntervalExceeded { .. }),
        "typed error, got {err}"
    );
    assert!(err.is_retriable());
    let hooks = log.lock().unwrap().clone();
    assert!(
        hooks.iter().any(|h| h.kind == "lost"),
        "on_lost ran for A's partition: {hooks:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() != 1 {
        assert!(Instant::now() < deadline, "A never rejoined");
        a.poll(Duration::from_millis(200)).await.unwrap();
    }
    wait_until("B gives a partition back", || bm.owns().len() == 1).await;
    println!(
        "poll interval {protocol:?}: {err}; A hooks {:?}",
        hooks
            .iter()
            .map(|h| format!("{}{:?}", h.kind, h.partitions))
            .collect::<Vec<_>>()
    );
    a.close().await.unwrap();
    bm.stop().await;
}
