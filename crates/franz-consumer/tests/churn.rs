//! Membership churn: three group members consume 300,000 records while
//! members are SIGKILLed (no LeaveGroup, no last commit) and restarted.
//!
//! A member is a subprocess: this test binary re-executed to run only
//! [`churn_member_process`], which (with `FRANZ_CHURN_MEMBER` set) polls
//! forever and reports on stdout, one flushed line per event:
//! - `H <partition> <offset>`: a record handed out by `poll`, before it is
//!   handled;
//! - `C <partition> <next_offset>`: a commit of that offset succeeded (the
//!   member commits, after handling a poll's records, each partition's last
//!   handled offset + 1);
//! - `A <partitions, comma separated>`: after a poll that changed the
//!   assignment;
//! - `E <error>`: a poll failed (the member keeps polling);
//! - `R <error>`: a commit was refused (around a rebalance; nothing of it
//!   was committed).
//!
//! The parent reads every line, tagged with the incarnation that wrote it
//! (`m<slot>.<restart>`), and checks at-least-once delivery with a bounded
//! number of duplicates:
//! - nothing is skipped: every produced record is handed out;
//! - every duplicate is explained: the previous handout of that offset was
//!   in an uncommitted tail, i.e. its incarnation never committed past the
//!   offset before losing the partition (an `A` line without it, its death)
//!   or before handing the offset out again itself (a rewind to the
//!   committed offset, as after an eager rebalance that kept the partition);
//! - the duplicates are at most the sum of those tails (the bound);
//! - an incarnation's commits of a partition never go backwards, and once
//!   the last members are idle the group's committed offsets are the log
//!   end offsets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

#[path = "churn/analysis.rs"]
mod analysis;
mod common;
#[path = "churn/members.rs"]
mod members;

use analysis::*;
use members::Members;

use common::{bootstrap, create_topic};
use franz_test_support::create_topic_with;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use franz_client::admin::OffsetSpec;
use franz_consumer::assignor::RangeAssignor;
use franz_consumer::{GroupConsumer, GroupProtocol, TopicPartition};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::history::{History, SendOutcome};
use franz_testkit::{KafkaCluster, unique_group, unique_topic};

const PARTITIONS: i32 = 6;
const RECORDS: u32 = 300_000;
/// Records produced per burst, with a pause after each: production lasts
/// about 30 s, so the first kills land while records keep arriving.
const CHUNK: u32 = 10_000;
const CHUNK_PAUSE: Duration = Duration::from_secs(1);
const MEMBERS: usize = 3;
const KILLS: usize = 4;
/// Longer than the session timeout (6 s) plus a rebalance: each kill's
/// rebalance completes before the next kill.
const KILL_EVERY: Duration = Duration::from_secs(12);
const RESTART_AFTER: Duration = Duration::from_millis(500);
/// How long records flow between two brokers' restarts.
const RESTART_EVERY: Duration = Duration::from_secs(5);
const PRODUCE_DEADLINE: Duration = Duration::from_secs(120);
const CONSUME_DEADLINE: Duration = Duration::from_secs(180);
const COMMIT_DEADLINE: Duration = Duration::from_secs(60);
/// How long the last members run idle before the group's offsets are read.
const IDLE: Duration = Duration::from_secs(2);
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Lines of each member's stderr and unparsed stdout kept for reports.
const TAIL: usize = 12;
/// A member exits on its own after this long, in case nobody kills it.
const MEMBER_MAX_LIFETIME: Duration = Duration::from_secs(600);

/// The two protocols' runs share two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_classic_members_lose_nothing() {
    churn(GroupProtocol::Classic, Fault::MemberKills).await;
}

/// The same with KIP-848's protocol: the coordinator assigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_kip848_members_lose_nothing() {
    churn(GroupProtocol::Consumer, Fault::MemberKills).await;
}

/// #15's rolling restart: the same three members and producer on a
/// three-node cluster of the test's own (replication 3,
/// `min.insync.replicas=2`), while every broker in turn is stopped
/// cleanly, started again, and given back its full ISR. No member dies:
/// nothing may be lost, and the duplicates stay within the same bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_every_broker_loses_nothing() {
    if franz_testkit::real_broker_only("restarts the brokers of its own three-node cluster") {
        return;
    }
    churn(GroupProtocol::Classic, Fault::RollingRestart).await;
}

/// What the run inflicts while the records flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// [`KILLS`] member SIGKILLs, one every [`KILL_EVERY`], each member
    /// restarted [`RESTART_AFTER`] later.
    MemberKills,
    /// Every broker of an owned three-node cluster stopped and restarted in
    /// turn, [`RESTART_EVERY`] apart, each waiting for the full ISR.
    RollingRestart,
}

// ---------------------------------------------------------------------------
// The member subprocess.

/// One group member, when run by [`churn`] (`FRANZ_CHURN_MEMBER` set): polls
/// and commits until it is killed. Otherwise passes at once.
#[test]
fn churn_member_process() {
    let Some(label) = std::env::var_os("FRANZ_CHURN_MEMBER") else {
        return;
    };
    let label = label.to_string_lossy().into_owned();
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (bootstrap, group, topic) = (
        var("FRANZ_CHURN_BOOTSTRAP"),
        var("FRANZ_CHURN_GROUP"),
        var("FRANZ_CHURN_TOPIC"),
    );
    let protocol = match var("FRANZ_CHURN_PROTOCOL").as_str() {
        "classic" => GroupProtocol::Classic,
        "consumer" => GroupProtocol::Consumer,
        other => panic!("FRANZ_CHURN_PROTOCOL={other}: expected classic or consumer"),
    };
    // The parent holds our stdin open: end of input means it is gone (it
    // died without killing us), so stop rather than consume forever.
    std::thread::spawn(|| {
        // Read to the end (the parent never writes); EOF or an error
        // means the parent is gone.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(MEMBER_MAX_LIFETIME);
        std::process::exit(0);
    });
    // libtest has printed `test churn_member_process ... ` without a line
    // end: end that line so that ours start on their own.
    emit(&mut std::io::stdout().lock(), format_args!(""));
    eprintln!("member {label} starting ({protocol:?}, group {group}, topic {topic})");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(member(&bootstrap, &group, &topic, protocol));
}

/// Writes one line and flushes it, so that whatever the member did before
/// a SIGKILL is in the pipe. A closed pipe means the parent is gone.
fn emit(out: &mut impl std::io::Write, line: std::fmt::Arguments<'_>) {
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

async fn member(bootstrap: &str, group: &str, topic: &str, protocol: GroupProtocol) {
    let config = common::earliest(bootstrap);
    let g = common::group_config(group, protocol, vec![Arc::new(RangeAssignor)]);
    let mut consumer = loop {
        match GroupConsumer::new(config.clone(), g.clone(), &[topic]).await {
            Ok(c) => break c,
            Err(e) => {
                emit(&mut std::io::stdout().lock(), format_args!("E {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut assignment: Option<BTreeSet<i32>> = None;
    loop {
        let polled = consumer.poll(Duration::from_millis(300)).await;
        let now: BTreeSet<i32> = consumer
            .assignment()
            .into_iter()
            .filter(|tp| tp.topic == topic)
            .map(|tp| tp.partition)
            .collect();
        if assignment.as_ref() != Some(&now) {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            emit(
                &mut std::io::stdout().lock(),
                format_args!("A {}", list.join(",")),
            );
            assignment = Some(now);
        }
        let records = match polled {
            Ok(records) => records,
            Err(e) => {
                emit(&mut std::io::stdout().lock(), format_args!("E {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // "Handling" a record is announcing it.
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        {
            let mut out = std::io::stdout().lock();
            for r in &records {
                emit(&mut out, format_args!("H {} {}", r.partition, r.offset));
                let n = next.entry(r.partition).or_insert(0);
                *n = (*n).max(r.offset + 1);
            }
        }
        if next.is_empty() {
            continue;
        }
        // The handling takes a while, so that kills land between handing
        // records out and committing them.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let offsets: Vec<(TopicPartition, i64)> = next
            .iter()
            .map(|(p, n)| (TopicPartition::new(topic, *p), *n))
            .collect();
        match consumer.commit_offsets(&offsets).await {
            Ok(()) => {
                let mut out = std::io::stdout().lock();
                for (p, n) in &next {
                    emit(&mut out, format_args!("C {p} {n}"));
                }
            }
            // Refused (CommitFailed around a rebalance): nothing was
            // committed; the records may be handed out again, and the
            // bound counts them.
            Err(e) => {
                emit(&mut std::io::stdout().lock(), format_args!("R {e}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The parent: members' output.

#[derive(Default)]
struct Shared {
    incarnations: Vec<Incarnation>,
    /// Per partition, which offsets some member handed out.
    handled: BTreeMap<i32, Vec<bool>>,
    /// Per partition, how many leading offsets are known handed out.
    prefix: BTreeMap<i32, usize>,
    /// Per partition, the highest offset a `C` line reported.
    committed: BTreeMap<i32, i64>,
}

impl Shared {
    fn record(&mut self, incarnation: usize, at: Instant, event: Event) {
        match &event {
            Event::Handed { partition, offset } => {
                if let Ok(o) = usize::try_from(*offset) {
                    let bits = self.handled.entry(*partition).or_default();
                    if bits.len() <= o {
                        bits.resize(o + 1, false);
                    }
                    bits[o] = true;
                }
            }
            Event::Committed { partition, next } => {
                let c = self.committed.entry(*partition).or_insert(0);
                *c = (*c).max(*next);
            }
            _ => {}
        }
        self.incarnations[incarnation].events.push((at, event));
    }

    /// Whether every offset below `ends` has been handed out.
    fn all_handled(&mut self, ends: &BTreeMap<i32, i64>) -> bool {
        let mut complete = true;
        for (&p, &end) in ends {
            let bits = self.handled.get(&p).map(Vec::as_slice).unwrap_or_default();
            let prefix = self.prefix.entry(p).or_insert(0);
            while *prefix < bits.len() && bits[*prefix] {
                *prefix += 1;
            }
            complete &= *prefix >= usize::try_from(end).unwrap_or(0);
        }
        complete
    }

    fn describe_missing(&self, ends: &BTreeMap<i32, i64>) -> String {
        let mut out = String::new();
        for (&p, &end) in ends {
            let bits = self.handled.get(&p).map(Vec::as_slice).unwrap_or_default();
            let missing: Vec<i64> = (0..end)
                .filter(|&o| !usize::try_from(o).is_ok_and(|o| bits.get(o) == Some(&true)))
                .collect();
            if !missing.is_empty() {
                let _ = writeln!(
                    out,
                    "  partition {p}: {} of {end} offsets never handed out: {}",
                    missing.len(),
                    ranges(missing)
                );
            }
        }
        out
    }

    /// Every incarnation's state and last lines, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::new();
        for inc in &self.incarnations {
            let (mut handed, mut commits, mut refused, mut errors) = (0, 0, 0, 0);
            let mut assignment = None;
            let mut last_errors = VecDeque::new();
            for (_, e) in &inc.events {
                match e {
                    Event::Assigned(set) => assignment = Some(set),
                    Event::Handed { .. } => handed += 1,
                    Event::Committed { .. } => commits += 1,
                    Event::CommitRefused(e) => {
                        refused += 1;
                        push_tail(&mut last_errors, &format!("commit: {e}"));
                    }
                    Event::PollError(e) => {
                        errors += 1;
                        push_tail(&mut last_errors, &format!("poll: {e}"));
                    }
                }
            }
            let _ = writeln!(
                out,
                "  {} (started at +{:.1}s, {}{}): {handed} handed out, {commits} commits, \
                 {refused} refused, {errors} poll errors, last assignment {assignment:?}",
                inc.label,
                inc.started.as_secs_f64(),
                inc.fate.as_deref().unwrap_or("running"),
                if inc.closed { ", stdout closed" } else { "" },
            );
            for e in last_errors {
                let _ = writeln!(out, "    error: {e}");
            }
            for l in &inc.other {
                let _ = writeln!(out, "    stdout: {l}");
            }
            for l in &inc.stderr {
                let _ = writeln!(out, "    stderr: {l}");
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    if tail.len() >= TAIL {
        tail.pop_front();
    }
    tail.push_back(line.to_string());
}

/// Calls `each` with every line of `stream` until end of file.
fn read_lines(stream: impl Read, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => each(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r'])),
        }
    }
}

/// `3-10, 15, 20-30`, at most eight spans.
fn ranges(sorted: impl IntoIterator<Item = i64>) -> String {
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for o in sorted {
        match spans.last_mut() {
            Some((_, hi)) if *hi + 1 == o => *hi = o,
            _ => spans.push((o, o)),
        }
    }
    let shown: Vec<String> = spans
        .iter()
        .take(8)
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    match spans.len().saturating_sub(8) {
        0 => shown.join(", "),
        more => format!("{} and {more} more spans", shown.join(", ")),
    }
}

// ---------------------------------------------------------------------------
// The parent: the test.

/// Produces `RECORDS` records over many keys in bursts of `CHUNK`; returns
/// where each landed.
async fn produce_in_chunks(bootstrap: String, topic: String) -> Vec<(i32, i64)> {
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    let topic: Arc<str> = Arc::from(topic.as_str());
    let mut acked = Vec::with_capacity(RECORDS as usize);
    let mut start = 0;
    while start < RECORDS {
        let end = (start + CHUNK).min(RECORDS);
        let mut acks = Vec::with_capacity(CHUNK as usize);
        for i in start..end {
            let record =
                ProducerRecord::new(Arc::clone(&topic), format!("v{i}")).with_key(format!("k{i}"));
            acks.push(producer.send(record).await.unwrap());
        }
        for a in acks {
            let m = a.await.unwrap();
            acked.push((m.partition, m.offset));
        }
        start = end;
        if start < RECORDS {
            tokio::time::sleep(CHUNK_PAUSE).await;
        }
    }
    producer.close(Duration::from_secs(10)).await.unwrap();
    acked
}

async fn churn(protocol: GroupProtocol, fault: Fault) {
    if common::kip848_unavailable(protocol) {
        return;
    }
    let _one_at_a_time = SERIAL.lock().await;
    let name = match (protocol, fault) {
        (GroupProtocol::Classic, Fault::MemberKills) => "classic",
        (GroupProtocol::Consumer, Fault::MemberKills) => "consumer",
        (_, Fault::RollingRestart) => "rolling-restart",
    };
    let cluster = match fault {
        Fault::MemberKills => None,
        Fault::RollingRestart => Some(KafkaCluster::three_nodes().await.unwrap()),
    };
    let b = match &cluster {
        Some(c) => c.bootstrap(),
        None => bootstrap().await,
    };
    let tag = format!("churn-{name}");
    let (topic, group) = (unique_topic(&tag), unique_group(&tag));
    match fault {
        Fault::MemberKills => create_topic(&b, &topic, PARTITIONS).await,
        Fault::RollingRestart => {
            create_topic_with(&b, &topic, PARTITIONS, 3, &[("min.insync.replicas", "2")]).await;
        }
    }
    let protocol_name = match protocol {
        GroupProtocol::Classic => "classic",
        GroupProtocol::Consumer => "consumer",
    };

    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut members = Members::new(Arc::clone(&shared), &b, &group, &topic, protocol_name);
    let t0 = members.t0;
    let producer = tokio::spawn(produce_in_chunks(b.clone(), topic.clone()));
    for slot in 0..MEMBERS {
        members.start(slot);
    }

    let mut faults = 0;
    match &cluster {
        // Kill one member every KILL_EVERY, rotating slots; its
        // replacement starts RESTART_AFTER later.
        None => {
            for k in 0..KILLS {
                members.watch(t0 + KILL_EVERY * (k as u32 + 1)).await;
                let slot = k % MEMBERS;
                members.kill(slot, "SIGKILLed");
                members.watch(Instant::now() + RESTART_AFTER).await;
                members.start(slot);
                faults += 1;
            }
        }
        // Stop and start every broker in turn, as an upgrade would, each
        // back in every ISR before the next goes down.
        Some(cluster) => {
            for node in cluster.node_ids() {
                members.watch(Instant::now() + RESTART_EVERY).await;
                let restart = async {
                    cluster.stop(node).await.unwrap();
                    cluster.restart(node).await.unwrap();
                    cluster
                        .wait_for_full_isr(Duration::from_secs(180))
                        .await
                        .unwrap();
                };
                tokio::pin!(restart);
                // Keep watching the members while the broker cycles.
                loop {
                    tokio::select! {
                        () = &mut restart => break,
                        () = tokio::time::sleep(CHECK_EVERY) => members.check_alive(),
                    }
                }
                println!(
                    "churn {name}: broker {node} restarted, ISR full at +{:.1}s",
                    t0.elapsed().as_secs_f64()
                );
                faults += 1;
            }
        }
    }

    let produce_deadline = Instant::now() + PRODUCE_DEADLINE;
    while !producer.is_finished() {
        if Instant::now() >= produce_deadline {
            panic!(
                "{name}: the {RECORDS} records were not all acknowledged within {PRODUCE_DEADLINE:?} \
                 of the last kill"
            );
        }
        members.watch(Instant::now() + CHECK_EVERY).await;
    }
    let acked = producer.await.expect("the producer failed");
    let produced_at = t0.elapsed();

    // Where the records are: offsets 0..end of every partition, each once.
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(p, o) in &acked {
        by_partition.entry(p).or_default().push(o);
    }
    let mut ends: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for (p, offsets) in &mut by_partition {
        offsets.sort_unstable();
        let n = offsets.len() as i64;
        assert!(
            offsets.iter().copied().eq(0..n),
            "{name}: partition {p}'s acknowledged offsets are not 0..{n} (first {:?}, last {:?})",
            offsets.first(),
            offsets.last()
        );
        ends.insert(*p, n);
    }
    assert_eq!(acked.len(), RECORDS as usize);
    let admin = common::admin(&b).await;
    let specs: Vec<(TopicPartition, OffsetSpec)> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(topic.as_str(), p), OffsetSpec::Latest))
        .collect();
    for (tp, listed) in admin.list_offsets(&specs).await.unwrap() {
        assert_eq!(
            listed.unwrap().offset,
            ends[&tp.partition],
            "{name}: partition {}'s end offset is not what the producer's acks say",
            tp.partition
        );
    }

    // Every record is handed out at least once.
    let deadline = Instant::now() + CONSUME_DEADLINE;
    loop {
        if lock(&shared).all_handled(&ends) {
            break;
        }
        if Instant::now() >= deadline {
            let s = lock(&shared);
            let (missing, state) = (s.describe_missing(&ends), s.describe());
            drop(s);
            panic!(
                "{name}: {CONSUME_DEADLINE:?} after the last kill, records were never handed out:\n\
                 {missing}members:\n{state}"
            );
        }
        members.watch(Instant::now() + CHECK_EVERY).await;
    }
    let handled_at = t0.elapsed();

    // The last members commit up to the end of every partition.
    let deadline = Instant::now() + COMMIT_DEADLINE;
    loop {
        let behind: Vec<String> = {
            let s = lock(&shared);
            ends.iter()
                .filter(|&(p, end)| s.committed.get(p).copied().unwrap_or(0) < *end)
                .map(|(p, end)| {
                    format!("partition {p}: committed {:?} of {end}", s.committed.get(p))
                })
                .collect()
        };
        if behind.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let state = lock(&shared).describe();
            panic!(
                "{name}: every record was handed out, but {COMMIT_DEADLINE:?} later the members' \
                 commits had not reached the end offsets: {}\nmembers:\n{state}",
                behind.join("; ")
            );
        }
        members.watch(Instant::now() + CHECK_EVERY).await;
    }
    let committed_at = t0.elapsed();

    // Idle for a while, then the group's offsets are the end offsets.
    members.watch(Instant::now() + IDLE).await;
    let committed = admin.list_group_offsets(&group).await.unwrap();
    let wrong: Vec<String> = ends
        .iter()
        .filter_map(|(p, end)| {
            let got = committed
                .get(&TopicPartition::new(topic.as_str(), *p))
                .map(|o| o.committed);
            (got != Some(*end)).then(|| format!("partition {p}: {got:?}, end {end}"))
        })
        .collect();
    if !wrong.is_empty() {
        let state = lock(&shared).describe();
        panic!(
            "{name}: the group's committed offsets are not the end offsets: {}\nmembers:\n{state}",
            wrong.join("; ")
        );
    }

    members.kill_all("killed at the end");
    members.join_readers().await;
    let incarnations = std::mem::take(&mut lock(&shared).incarnations);
    let a = analyse(&incarnations, &ends);

    let fault_text = match fault {
        Fault::MemberKills => format!("{faults} member SIGKILLs"),
        Fault::RollingRestart => format!("{faults} broker restarts"),
    };
    println!(
        "churn {name}: {RECORDS} records on {PARTITIONS} partitions, {MEMBERS} members, \
         {fault_text} ({} incarnations): {} handed out, {} duplicates \
         ({} offsets, {} by the same incarnation), bound {}; {} commits refused, \
         {} poll errors, {} handed out outside the assignment; produced by +{:.1}s, \
         all handed out by +{:.1}s, committed by +{:.1}s",
        incarnations.len(),
        a.handed,
        a.duplicates,
        a.duplicated_offsets,
        a.same_incarnation_duplicates,
        a.bound,
        a.refused_commits,
        a.poll_errors,
        a.outside_assignment,
        produced_at.as_secs_f64(),
        handled_at.as_secs_f64(),
        committed_at.as_secs_f64(),
    );

    // The same run under the testkit's history checker: nothing acknowledged
    // lost, no commit past an offset nobody handed out.
    let report = history_of(&topic, &acked, &incarnations).check();
    println!(
        "{} (bound {})",
        report.chaos_row(
            &format!("group churn ({name})"),
            &format!("{RECORDS} records"),
            &fault_text,
            t0.elapsed()
        ),
        a.bound
    );
    println!("churn {name} under the history checker: {report}");
    assert!(report.is_ok(), "{name}: {report}");

    assert!(
        a.skipped.is_empty(),
        "{name}: records never handed out:\n{}",
        a.skipped.join("\n")
    );
    assert!(
        a.backwards.is_empty(),
        "{name}: an incarnation's commits went backwards:\n{}",
        a.backwards.join("\n")
    );
    assert!(
        a.unexplained_count == 0,
        "{name}: {} of {} duplicates are not explained by an uncommitted tail \
         (the earlier handout was committed before the partition was lost), e.g.:\n{}",
        a.unexplained_count,
        a.duplicates,
        a.unexplained.join("\n")
    );
    assert!(
        a.duplicates <= a.bound,
        "{name}: {} duplicates, more than the {} records handed out after their \
         incarnation's last commit",
        a.duplicates,
        a.bound
    );
}

/// The run as a [`History`]: record `i` (key `k{i}`) acknowledged at
/// `acked[i]`, every member's hand-outs and commits.
fn history_of(topic: &str, acked: &[(i32, i64)], incarnations: &[Incarnation]) -> History {
    let mut history = History::new();
    let mut at = HashMap::new();
    for (i, (partition, offset)) in acked.iter().enumerate() {
        let id = (0, i as u64);
        history.send(id, Some(&format!("k{i}")));
        history.sent(
            id,
            SendOutcome::Acked {
                partition: (topic.to_string(), *partition),
                offset: *offset,
            },
        );
        at.insert((*partition, *offset), id);
    }
    for inc in incarnations {
        for (_, event) in &inc.events {
            match event {
                Event::Handed { partition, offset } => {
                    if let Some(id) = at.get(&(*partition, *offset)) {
                        history.delivered(
                            &inc.label,
                            (topic.to_string(), *partition),
                            *offset,
                            *id,
                        );
                    }
                }
                Event::Committed { partition, next } => {
                    history.committed(&inc.label, (topic.to_string(), *partition), *next);
                }
                _ => {}
            }
        }
    }
    history
}
