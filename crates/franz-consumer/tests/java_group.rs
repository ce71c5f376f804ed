//! Two franz members and a real Java `KafkaConsumer` (Kafka 4.1.1,
//! `group.protocol=classic`, `tests/java/JavaGroupMember.java`) share one
//! classic group on the shared broker. Each case is run twice, once with a
//! franz member as the group leader (it runs the assignor for everyone,
//! Java included) and once with Java leading. The group must settle into a
//! disjoint cover of the partitions in which every member owns some, and
//! then read every record exactly once between the three members.
//!
//! - range: everyone offers `[range, cooperative-sticky]`, so the group
//!   picks `range` and rebalances eagerly.
//! - cooperative: everyone offers `cooperative-sticky` alone (KIP-429:
//!   incremental rebalances, revoked partitions move a round later).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use franz_consumer::assignor::{Assignor, CooperativeStickyAssignor, RangeAssignor};
use franz_consumer::{GroupConsumer, GroupProtocol};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::{KafkaDistribution, unique_group, unique_topic};

const PARTITIONS: i32 = 6;
const RECORDS: u32 = 600;
/// How long any one wait may take before the test fails with a report.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the group's partitioning must hold unchanged to count as settled.
const SETTLED_FOR: Duration = Duration::from_secs(2);
/// After the last record arrives, how long the count must stay put (so a
/// late duplicate is seen before the assertion).
const QUIET_FOR: Duration = Duration::from_secs(1);
const JAVA_MAIN: &str = "JavaGroupMember";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_franz_share_a_range_group_franz_leads() {
    mixed_group(Assignors::Range, Leader::Franz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_franz_share_a_range_group_java_leads() {
    mixed_group(Assignors::Range, Leader::Java).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_franz_share_a_cooperative_group_franz_leads() {
    mixed_group(Assignors::Cooperative, Leader::Franz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_franz_share_a_cooperative_group_java_leads() {
    mixed_group(Assignors::Cooperative, Leader::Java).await;
}

/// What every member (franz and Java alike) offers, in preference order.
#[derive(Clone, Copy, Debug)]
enum Assignors {
    /// `[range, cooperative-sticky]`: the group picks `range`.
    Range,
    /// `[cooperative-sticky]`.
    Cooperative,
}

impl Assignors {
    fn java_arg(self) -> &'static str {
        match self {
            Self::Range => "range,cooperative-sticky",
            Self::Cooperative => "cooperative-sticky",
        }
    }

    fn franz(self) -> Vec<Arc<dyn Assignor>> {
        match self {
            Self::Range => vec![Arc::new(RangeAssignor), Arc::new(CooperativeStickyAssignor)],
            Self::Cooperative => vec![Arc::new(CooperativeStickyAssignor)],
        }
    }

    /// The protocol the coordinator must choose.
    fn chosen(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::Cooperative => "cooperative-sticky",
        }
    }
}

/// Who joins the empty group first (and so leads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leader {
    Franz,
    Java,
}

async fn mixed_group(assignors: Assignors, leader: Leader) {
    let label = format!("{assignors:?}/{leader:?} leads");
    let b = common::bootstrap().await;
    let topic = unique_topic("java-group");
    let group_id = unique_group("java-group");
    common::create_topic(&b, &topic, PARTITIONS).await;
    let (dist, classes) = tokio::task::spawn_blocking(java_classes).await.unwrap();
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();

    let mut group = Group::default();
    match leader {
        Leader::Franz => {
            group
                .franz
                .push(FranzMember::start("franz-a", &b, &group_id, &topic, assignors).await);
            group
                .wait_for("franz-a (the leader) owns every partition", || {
                    group.franz[0].assignment() == all
                })
                .await;
            group.java = Some(JavaMember::spawn(
                &dist, &classes, &b, &group_id, &topic, assignors,
            ));
            group
                .franz
                .push(FranzMember::start("franz-b", &b, &group_id, &topic, assignors).await);
        }
        Leader::Java => {
            group.java = Some(JavaMember::spawn(
                &dist, &classes, &b, &group_id, &topic, assignors,
            ));
            group
                .wait_for("Java (the leader) is ASSIGNED every partition", || {
                    group.java().owned() == all
                })
                .await;
            for name in ["franz-a", "franz-b"] {
                group
                    .franz
                    .push(FranzMember::start(name, &b, &group_id, &topic, assignors).await);
            }
        }
    }

    // Settled: the three assignments partition the topic, nobody is empty,
    // and that has held unchanged for SETTLED_FOR.
    let mut since: Option<(Instant, Vec<BTreeSet<i32>>)> = None;
    group
        .wait_for(
            "the three members split all partitions disjointly and keep it for 2 s",
            || {
                let sets = group.assignments();
                if !partitions_the_topic(&sets, &all) {
                    since = None;
                    return false;
                }
                let unchanged = matches!(&since, Some((_, prev)) if *prev == sets);
                if !unchanged {
                    since = Some((Instant::now(), sets));
                    return false;
                }
                since
                    .as_ref()
                    .is_some_and(|(t, _)| t.elapsed() >= SETTLED_FOR)
            },
        )
        .await;
    let settled = group.assignments();
    group
        .check_description(&b, &group_id, assignors.chosen())
        .await;

    let produced = produce(&b, &topic).await;
    let spread: BTreeSet<i32> = produced.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        spread, all,
        "the keys did not reach every partition; the test needs records on each"
    );
    group
        .wait_for(&format!("{RECORDS} records are handled"), || {
            group.handled_total() >= produced.len()
        })
        .await;
    let mut last = (group.handled_total(), Instant::now());
    group
        .wait_for("no further records arrive for 1 s", || {
            let now = group.handled_total();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() >= QUIET_FOR
        })
        .await;

    // Every produced (partition, offset) was handled exactly once, by one
    // of the three members, and nothing else was handled.
    let mut handled: BTreeMap<(i32, i64), Vec<&'static str>> = BTreeMap::new();
    let per_member = group.handled();
    for (name, records) in &per_member {
        for key in records {
            handled.entry(*key).or_default().push(*name);
        }
    }
    let total: usize = per_member.iter().map(|(_, r)| r.len()).sum();
    let missing: Vec<_> = produced
        .iter()
        .filter(|k| !handled.contains_key(*k))
        .collect();
    let twice: Vec<_> = handled.iter().filter(|(_, by)| by.len() != 1).collect();
    let unexpected: Vec<_> = handled.keys().filter(|k| !produced.contains(*k)).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && unexpected.is_empty() && total == produced.len(),
        "{label}: {total} records handled for {} produced; missing {} (first: {:?}); \
         handled more than once {} (first: {:?}); never produced {} (first: {:?})\n{}",
        produced.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
        group.report(),
    );

    let names = group.names();
    let summary: Vec<String> = names
        .iter()
        .zip(&settled)
        .zip(&per_member)
        .map(|((name, parts), (_, records))| {
            format!("{name} {} records on {parts:?}", records.len())
        })
        .collect();
    println!(
        "java_group {label}: protocol {}; {}; {total} of {} handled once each",
        assignors.chosen(),
        summary.join(", "),
        produced.len()
    );

    group.stop().await;
}

/// True when `sets` are non-empty, pairwise disjoint, and cover `all`.
fn partitions_the_topic(sets: &[BTreeSet<i32>], all: &BTreeSet<i32>) -> bool {
    let mut union = BTreeSet::new();
    for s in sets {
        if s.is_empty() || !s.is_disjoint(&union) {
            return false;
        }
        union.extend(s);
    }
    union == *all
}

/// Produces `RECORDS` records with distinct keys and values (the default
/// partitioner spreads the keys) and returns where each one landed.
async fn produce(bootstrap: &str, topic: &str) -> BTreeSet<(i32, i64)> {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut acks = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(topic, format!("v{i}")).with_key(format!("k{i}"));
        acks.push(producer.send(record).await.unwrap());
    }
    let mut landed = BTreeSet::new();
    for a in acks {
        let meta = a.await.unwrap();
        assert!(
            landed.insert((meta.partition, meta.offset)),
            "two acks for {}@{}",
            meta.partition,
            meta.offset
        );
    }
    producer.close(Duration::from_secs(10)).await.unwrap();
    landed
}

/// The Kafka distribution and `JavaGroupMember`'s class folder, compiled
/// once per test process (the four tests run in parallel and would
/// otherwise race javac on the same output folder). Blocking.
fn java_classes() -> (Arc<KafkaDistribution>, PathBuf) {
    static CLASSES: OnceLock<Result<(Arc<KafkaDistribution>, PathBuf), String>> = OnceLock::new();
    CLASSES
        .get_or_init(|| {
            let dist = KafkaDistribution::resolve().map_err(|e| e.to_string())?;
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/JavaGroupMember.java");
            let classes = dist.compile_java(&source).map_err(|e| e.to_string())?;
            Ok((dist, classes))
        })
        .clone()
        .unwrap_or_else(|e| panic!("cannot run the Java group member: {e}"))
}

/// The members of one run, in the order they joined.
#[derive(Default)]
struct Group {
    franz: Vec<FranzMember>,
    java: Option<JavaMember>,
}

impl Group {
    fn java(&self) -> &JavaMember {
        self.java.as_ref().expect("the Java member has started")
    }

    fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.franz.iter().map(|f| f.name).collect();
        if self.java.is_some() {
            names.push("java");
        }
        names
    }

    /// Each member's current partitions, in [`names`](Self::names) order.
    fn assignments(&self) -> Vec<BTreeSet<i32>> {
        let mut sets: Vec<_> = self.franz.iter().map(FranzMember::assignment).collect();
        if let Some(java) = &self.java {
            sets.push(java.owned());
        }
        sets
    }

    /// What each member handled so far, as (partition, offset).
    fn handled(&self) -> Vec<(&'static str, Vec<(i32, i64)>)> {
        let mut out: Vec<_> = self
            .franz
            .iter()
            .map(|f| (f.name, f.state.lock().unwrap().records.clone()))
            .collect();
        if let Some(java) = &self.java {
            out.push(("java", java.records()));
        }
        out
    }

    fn handled_total(&self) -> usize {
        self.handled().iter().map(|(_, r)| r.len()).sum()
    }

    /// Everything a failure message needs: each franz member's state and
    /// the tail of Java's stdout.
    fn report(&self) -> String {
        let mut out = String::new();
        for f in &self.franz {
            let s = f.state.lock().unwrap();
            out.push_str(&format!(
                "{}: assignment {:?}, {} records handled, {} commits refused, error {:?}, task finished {}\n",
                f.name,
                s.assignment,
                s.records.len(),
                s.commit_errors,
                s.error,
                f.task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished),
            ));
        }
        match &self.java {
            Some(java) => out.push_str(&format!(
                "java: owned {:?}, {} records handled, {}; last lines of its stdout:\n{}\n",
                java.owned(),
                java.records().len(),
                java.status(),
                java.tail(40),
            )),
            None => out.push_str("java: not started\n"),
        }
        out
    }

    /// Polls `cond` every 100 ms for up to [`DEADLINE`]; fails at once,
    /// with [`report`](Self::report), if a franz member hit an error or Java
    /// exited, and at the deadline if `cond` never held.
    async fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let broken = self.franz.iter().any(|f| {
                // A task ends before `stop` only on an error (or a panic).
                f.state.lock().unwrap().error.is_some()
                    || f.task
                        .as_ref()
                        .is_some_and(tokio::task::JoinHandle::is_finished)
            }) || self.java.as_ref().is_some_and(JavaMember::exited);
            assert!(
                !broken,
                "a member failed while waiting until {what}\n{}",
                self.report()
            );
            if cond() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {}s waiting until {what}\n{}",
                DEADLINE.as_secs(),
                self.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The coordinator's view agrees: Stable, three members (one of them
    /// the Java client), and the expected assignor chosen.
    async fn check_description(&self, bootstrap: &str, group_id: &str, protocol: &str) {
        let admin = common::admin(bootstrap).await;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let d = admin.describe_groups(&[group_id]).await.unwrap();
            let desc = d[0].1.as_ref();
            if let Ok(g) = desc
                && g.state == "Stable"
                && g.members.len() == 3
            {
                assert_eq!(
                    g.protocol,
                    protocol,
                    "the coordinator chose another assignor: {g:?}\n{}",
                    self.report()
                );
                assert!(
                    g.members.iter().any(|m| m.client_id == "java-member"),
                    "the Java client is not a member: {g:?}\n{}",
                    self.report()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the group never described as Stable with 3 members: {desc:?}\n{}",
                self.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops Java first (`stop` on stdin; it must close and print `CLOSED`),
    /// then the franz members, which leave the group and close.
    async fn stop(mut self) {
        if let Some(java) = self.java.take() {
            let (status, tail) = java.stop().await;
            let closed = tail.lines().any(|l| l == "CLOSED");
            assert!(
                status.is_some_and(|s| s.success()) && closed,
                "the Java member did not close cleanly (status {status:?}); last lines:\n{tail}"
            );
        }
        for f in &self.franz {
            f.stop.store(true, Ordering::Relaxed);
        }
        for f in &mut self.franz {
            let task = f.task.take().expect("the task is awaited once");
            let done = tokio::time::timeout(DEADLINE, task)
                .await
                .unwrap_or_else(|_| panic!("{} did not stop within 60 s", f.name));
            done.unwrap()
                .unwrap_or_else(|e| panic!("{} failed: {e}", f.name));
        }
    }
}

/// What a franz member's task reports while it runs.
#[derive(Default)]
struct FranzState {
    records: Vec<(i32, i64)>,
    assignment: BTreeSet<i32>,
    commit_errors: usize,
    error: Option<String>,
}

struct FranzMember {
    name: &'static str,
    state: Arc<Mutex<FranzState>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl FranzMember {
    async fn start(
        name: &'static str,
        bootstrap: &str,
        group_id: &str,
        topic: &str,
        assignors: Assignors,
    ) -> Self {
        let g = common::group_config(group_id, GroupProtocol::Classic, assignors.franz());
        let consumer = GroupConsumer::new(common::earliest(bootstrap), g, &[topic])
            .await
            .unwrap();
        let state = Arc::new(Mutex::new(FranzState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = run_franz(consumer, Arc::clone(&state), Arc::clone(&stop));
        Self {
            name,
            state,
            stop,
            task: Some(task),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.state.lock().unwrap().assignment.clone()
    }
}

/// Polls, records what it handled, and commits after every poll (a commit
/// refused during a rebalance is expected and only counted) until `stop`,
/// then closes. A poll error ends the task and is kept in `state`.
fn run_franz(
    mut consumer: GroupConsumer,
    state: Arc<Mutex<FranzState>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let records = match consumer.poll(Duration::from_millis(300)).await {
                Ok(records) => records,
                Err(e) => {
                    let e = format!("poll: {e}");
                    state.lock().unwrap().error = Some(e.clone());
                    return Err(e);
                }
            };
            {
                let mut s = state.lock().unwrap();
                s.records
                    .extend(records.iter().map(|r| (r.partition, r.offset)));
                s.assignment = consumer
                    .assignment()
                    .iter()
                    .map(|tp| tp.partition)
                    .collect();
            }
            if consumer.commit().await.is_err() {
                state.lock().unwrap().commit_errors += 1;
            }
        }
        consumer.close().await.map_err(|e| format!("close: {e}"))
    })
}

/// The Java member: a child process whose stdout lines are collected on a
/// thread. Dropping it kills the process if it is still running.
struct JavaMember {
    child: Mutex<Child>,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl JavaMember {
    fn spawn(
        dist: &KafkaDistribution,
        classes: &Path,
        bootstrap: &str,
        group_id: &str,
        topic: &str,
        assignors: Assignors,
    ) -> Self {
        let mut child = dist
            .spawn_java(
                classes,
                JAVA_MAIN,
                &[bootstrap, group_id, topic, assignors.java_arg()],
            )
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("spawn_java pipes stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        Self {
            child: Mutex::new(child),
            stdin,
            lines,
            reader: Some(reader),
        }
    }

    /// The partitions Java owns now, replayed from its listener's lines:
    /// `ASSIGNED` adds, `REVOKED` and `LOST` remove. That reads both the
    /// eager listener (revoke all, then assign all) and the cooperative one
    /// (only what is added or removed).
    fn owned(&self) -> BTreeSet<i32> {
        let mut owned = BTreeSet::new();
        for line in self.lines.lock().unwrap().iter() {
            if let Some(rest) = line.strip_prefix("ASSIGNED") {
                owned.extend(partition_list(rest));
            } else if let Some(rest) = line
                .strip_prefix("REVOKED")
                .or_else(|| line.strip_prefix("LOST"))
            {
                for p in partition_list(rest) {
                    owned.remove(&p);
                }
            }
        }
        owned
    }

    /// Every `RECORD <partition> <offset>` line so far.
    fn records(&self) -> Vec<(i32, i64)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("RECORD "))
            .map(|rest| {
                let (p, o) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad Java line `RECORD {rest}`"));
                (
                    p.parse()
                        .unwrap_or_else(|_| panic!("bad partition in `{rest}`")),
                    o.parse()
                        .unwrap_or_else(|_| panic!("bad offset in `{rest}`")),
                )
            })
            .collect()
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn exited(&self) -> bool {
        !matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    fn status(&self) -> String {
        match self.child.lock().unwrap().try_wait() {
            Ok(None) => "running".into(),
            Ok(Some(status)) => format!("exited ({status})"),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// Sends `stop`, closes stdin and waits (up to [`DEADLINE`]) for the
    /// process to exit and its stdout to end; returns the exit status
    /// (`None` if it had to be killed) and the last lines it printed.
    async fn stop(mut self) -> (Option<ExitStatus>, String) {
        if let Some(mut stdin) = self.stdin.take() {
            // A child that already exited closed the pipe; its status says why.
            let _ = stdin.write_all(b"stop\n");
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let mut child = self.child.lock().unwrap();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The pipe ends with the process; give the reader a moment to drain it.
        let reader = self.reader.take().expect("the reader is joined once");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
        (status, self.tail(40))
    }
}

impl Drop for JavaMember {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses ` 0,3,5` (possibly empty) into partition numbers.
fn partition_list(rest: &str) -> impl Iterator<Item = i32> + '_ {
    rest.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("bad partition `{s}` in a Java listener line"))
        })
}
