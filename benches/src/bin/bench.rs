//! The benchmark suite's driver (`just bench`): one broker from the
//! harness, then every client as its own process, in turn, point by point
//! through the sweeps, each point on a fresh topic deleted afterwards.
//!
//! ```text
//! bench [producer] [consumer] [transport] [limits] [report] [--quick] [--out DIR]
//! ```
//!
//! With no part named it runs them all, then `report`. Every client run is
//! appended to `DIR/<part>.jsonl` (default `benches/results`) as soon as it
//! ends, and a run already on file is not run again: a part cut off (the
//! whole suite does not fit one session) resumes where it stopped. `report`
//! writes `BENCHMARKS.md` beside `DIR`'s parent (the repository root for
//! the default) and the charts into `benches/charts/`. `--quick` is the
//! small form CI runs: a few points, 16 MiB each, one repetition, results
//! under `benches/target/bench-quick`.
//!
//! Clients: franz; librdkafka (the `rdkafka` crate, when built with
//! `--features peers`); the Java client's perf tools; franz-go (the Go
//! program in `benches/peers/franz-go`, built here with `go build`);
//! KafkaJS and NestJS (`tests/node`); Spring Kafka (testkit's
//! `SpringPeer`). The settings of each are in
//! [`SETTINGS`] and in the report.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use franz_benches::report::{self, CODECS, IN_FLIGHT, PARTITIONS, Results, SIZES, TRANSPORT_SIZE};
use franz_benches::store::{Point, Sample, Store};
use franz_benches::{arg, result_field, run_measured, sibling_bin};
use franz_client::admin::NewTopic;
use franz_client::{Admin, Client, ClientConfig};
use franz_testkit::spring::SpringPeer;
use franz_testkit::{KafkaCluster, KafkaDistribution, node, unique_topic};

/// Each client's settings, as the report prints them.
const SETTINGS: &[(&str, &str)] = &[
    (
        "all producers",
        "acks=all with idempotence, linger 5 ms, batches up to 1 MiB, 64 MiB of buffer (equal buffer settings: franz `buffer_memory`, librdkafka `queue.buffering.max.kbytes`, Java `buffer.memory`), no compression unless the point names one, null keys",
    ),
    (
        "all consumers",
        "Java's fetch defaults: fetch.min.bytes 1, fetch.max.wait 500 ms, 1 MiB per partition, 50 MiB per fetch; CRCs checked; every partition from the beginning",
    ),
    (
        "franz",
        "`franz-produce` and `franz-consume` (benches/src/bin): a 2-worker tokio runtime; up to 5 batches in flight per partition; KIP-227 fetch sessions on",
    ),
    (
        "librdkafka",
        "the `rdkafka` crate 0.37 (librdkafka 2.x, built by cmake): `BaseProducer` polled in the send loop, `murmur2_random` partitioner, `queue.buffering.max.messages` 1,000,000; `BaseConsumer` with `fetch.queue.backoff.ms` 10 (its docs' advice for throughput: the default 1000 stalls fetching)",
    ),
    (
        "java",
        "Kafka's own `ProducerPerformance` and `ConsumerPerformance` as `kafka-*-perf-test.sh` run them (512 MiB heap, default JIT and GC); the producer's figure leaves out the first 5 s window (JVM warm-up) when there are at least three; the consumer's `fetch.nMsg.sec` leaves out the group join. CPU includes the JVM's start",
    ),
    (
        "franz-go",
        "franz-go v1.22.3 (`benches/peers/franz-go`): `kgo.ProducerLinger(5ms)`, `ProducerBatchMaxBytes(1 MiB)`, `MaxBufferedRecords(1,000,000)` and `MaxBufferedBytes(64 MiB)`, `RequiredAcks(AllISRAcks)` with its default idempotence, `Produce` with a callback; consuming `FetchMaxBytes(50 MiB)`, `FetchMaxPartitionBytes(1 MiB)`, `FetchMaxWait(500 ms)`, direct (no group), `PollFetches`; GOMAXPROCS = the 2 cores",
    ),
    (
        "kafkajs",
        "KafkaJS 2.2.4 (`tests/node/kafkajs-bench.mjs`): `idempotent: true` (which KafkaJS allows only with `maxInFlightRequests: 1`), `sendBatch` of up to 10,000 records and 900 KiB (KafkaJS does not split a batch by size, and the broker refuses a partition's batch over 1 MiB); consumer in a group with `eachBatch`, timed from the group join; no lz4 or zstd (KafkaJS needs codec plug-ins for them)",
    ),
    (
        "spring",
        "Spring Kafka 4.1.2 on kafka-clients 4.2 (`crates/franz-testkit/java/SpringEcho.java`, no Spring Boot): a `@KafkaListener` with `@SendTo` (container concurrency = the partitions) and a `ReplyingKafkaTemplate` in one JVM (512 MiB heap), both with the client defaults but `linger.ms=0` (Kafka 4's default of 5 ms would be paid twice per request); `min(500, N/5)` warm-up requests before measuring",
    ),
    (
        "nestjs",
        "`@nestjs/microservices` 11.2 on KafkaJS 2.2.4 (`tests/node/nest-echo-bench.mjs`): server and `ClientKafka` in one process, `partitionsConsumedConcurrently` = the partitions",
    ),
];

/// One run's settings.
struct Env {
    /// The broker, stopped when the run ends; its data folders tell when a
    /// deleted topic is gone.
    cluster: KafkaCluster,
    dist: std::sync::Arc<KafkaDistribution>,
    bootstrap: String,
    admin: Admin,
    rt: tokio::runtime::Runtime,
    store: Store,
    quick: bool,
    /// Bytes of values per records point.
    bytes: u64,
    max_records: u64,
    /// Repetitions for the points a goal is judged on.
    goal_reps: u32,
    requests: u64,
    work: PathBuf,
    commit: String,
    rdkafka: bool,
    franz_go: Option<PathBuf>,
    node_dir: Option<PathBuf>,
    spring: Option<std::sync::Arc<SpringPeer>>,
    /// The client runs that failed.
    failures: std::sync::Mutex<Vec<String>>,
}

impl Env {
    fn records_for(&self, size: u64) -> u64 {
        (self.bytes / size).clamp(10_000, self.max_records)
    }

    fn create(&self, topic: &str, partitions: u32) {
        let created = self.rt.block_on(
            self.admin
                .create_topics(vec![NewTopic::new(topic, partitions as i32, 1)], false),
        );
        match created {
            Ok(per) => {
                for (name, r) in per {
                    if let Err(e) = r {
                        panic!("create {name}: {e}");
                    }
                }
            }
            Err(e) => panic!("create {topic}: {e}"),
        }
    }

    /// Deletes `topic` and, for full-size points, waits (up to a minute)
    /// until the broker has removed its logs: a broker deleting a GiB while
    /// the next client runs made that client's rate bimodal (see
    /// ANALYSIS.md). The broker takes tens of seconds to remove a deleted
    /// topic's folders whatever its size, so the small points of `--quick`
    /// (16 MiB each) do not wait: removing them costs the next client
    /// nothing, and waiting tripled the quick run's time in CI.
    fn delete(&self, topic: &str) {
        if let Err(e) = self.rt.block_on(self.admin.delete_topics(&[topic])) {
            eprintln!("bench: could not delete {topic}: {e}");
            return;
        }
        if self.bytes < 256 << 20 {
            return;
        }
        let prefix = format!("{topic}-");
        let dirs: Vec<PathBuf> = self
            .cluster
            .node_ids()
            .into_iter()
            .filter_map(|id| self.cluster.data_dir(id).ok())
            .collect();
        let left = || {
            dirs.iter().any(|d| {
                std::fs::read_dir(d).is_ok_and(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while left() {
            if Instant::now() >= deadline {
                eprintln!("bench: {topic}'s logs are still on disk a minute after deleting it");
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn done(&self, part: &str, client: &str, point: &Point, rep: u32, on_file: &[Sample]) -> bool {
        on_file.iter().any(|s| s.is_run(part, client, point, rep))
    }

    /// Runs one client at one point; a client that fails (a panic in its
    /// measuring, a peer that errors) is reported and counted, and the run
    /// goes on to the next. `main` exits non-zero if any failed.
    fn attempt(&self, what: String, run: impl FnOnce() -> Sample) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(sample) => self.save(sample),
            Err(_) => {
                eprintln!("bench: FAILED: {what}");
                self.failures.lock().expect("failures").push(what);
            }
        }
    }

    fn save(&self, mut sample: Sample) {
        sample.at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        eprintln!(
            "bench: {} {} {:?} rep {}: {:.0}/s, {:.0} CPU ns each, {:.0} MiB{}",
            sample.part,
            sample.client,
            sample.point,
            sample.rep,
            sample.rate(),
            sample.cpu_ns_per_unit(),
            sample.peak_rss_mib,
            if sample.p50_us > 0.0 {
                format!(", p50 {:.2} ms", sample.p50_us / 1e3)
            } else {
                String::new()
            }
        );
        self.store.append(&sample).expect("write results");
    }

    /// A payload file of `size` bytes with no newline (Java's perf tool
    /// splits its payload file on newlines). Uncompressed points repeat one
    /// byte as every peer did before; compressed ones get log-like JSON text
    /// that compresses about as real events do.
    fn payload(&self, size: u64, compressible: bool) -> PathBuf {
        let path = self
            .work
            .join(format!("payload-{size}-{}", u8::from(compressible)));
        if !path.exists() {
            let bytes = if compressible {
                json_like(size as usize)
            } else {
                vec![b'x'; size as usize]
            };
            std::fs::write(&path, bytes).expect("payload file");
        }
        path
    }

    fn sample(&self, part: &str, client: &str, point: &Point, rep: u32) -> Sample {
        Sample {
            part: part.into(),
            client: client.into(),
            point: point.clone(),
            rep,
            units: 0,
            secs: 0.0,
            cpu_secs: 0.0,
            peak_rss_mib: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            commit: self.commit.clone(),
            at: 0,
        }
    }
}

/// Text like a stream of JSON events, `size` bytes, deterministic.
fn json_like(size: usize) -> Vec<u8> {
    let words = ["click", "view", "purchase", "search", "login", "logout"];
    let mut out = Vec::with_capacity(size + 128);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{{\"user\":{},\"event\":\"{}\",\"page\":\"/products/{}\",\"ts\":{}}} ",
            x % 100_000,
            words[(x % 6) as usize],
            (x >> 20) % 10_000,
            1_733_000_000_000 + (x >> 40) % 1_000_000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(size);
    out
}

fn main() {
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .take_while(|a| !a.starts_with("--"))
        .collect();
    let quick = std::env::args().any(|a| a == "--quick");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf();
    let default_out = if quick {
        root.join("benches/target/bench-quick")
    } else {
        root.join("benches/results")
    };
    let out = PathBuf::from(arg("--out", &default_out.to_string_lossy()));
    let store = Store::new(&out);
    let all = parts.is_empty();
    let wants = |p: &str| all || parts.iter().any(|x| x == p);
    let measuring = ["producer", "consumer", "transport", "limits"]
        .iter()
        .any(|p| wants(p));
    let mut failures = Vec::new();
    if measuring {
        let env = start(store.clone(), quick);
        if wants("limits") {
            limits(&env);
        }
        if wants("producer") {
            producer(&env);
        }
        if wants("consumer") {
            consumer(&env);
        }
        if wants("transport") {
            transport(&env);
        }
        failures = env.failures.into_inner().expect("failures");
    }
    if wants("report") {
        let (md, charts) = if quick {
            (out.join("BENCHMARKS.md"), out.join("charts"))
        } else {
            (root.join("BENCHMARKS.md"), root.join("benches/charts"))
        };
        write_report(&store, &md, &charts);
        println!("bench: wrote {}", md.display());
    }
    if !failures.is_empty() {
        eprintln!("bench: {} client runs failed:", failures.len());
        for f in &failures {
            eprintln!("bench:   {f}");
        }
        std::process::exit(1);
    }
}

fn start(store: Store, quick: bool) -> Env {
    let cluster = KafkaCluster::builder()
        .heap_mb(2048)
        // Every point writes up to a GiB per client and deletes its topic;
        // Kafka's default minute before removing deleted logs let them pile
        // up past 15 GiB.
        .broker_config("file.delete.delay.ms", "1000")
        .exclusive(false)
        .start_blocking()
        .expect("a broker for the benchmarks");
    let bootstrap = cluster.bootstrap();
    let dist = KafkaDistribution::resolve().expect("kafka jars");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin = rt
        .block_on(Client::connect(ClientConfig::new(&bootstrap)))
        .map(Admin::new)
        .expect("admin client");
    let work = std::env::temp_dir().join(format!("franz-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let rdkafka = Command::new(sibling_bin("rdkafka-produce"))
        .arg("--probe")
        .output()
        .is_ok_and(|o| o.status.success());
    if !rdkafka {
        eprintln!("bench: librdkafka is not run (build with --features peers to include it)");
    }
    let franz_go = build_franz_go();
    let node_dir = match node::ensure_npm_packages() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("bench: KafkaJS and NestJS are not run: {e}");
            None
        }
    };
    let spring = match SpringPeer::resolve() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("bench: Spring Kafka is not run: {e}");
            None
        }
    };
    let (bytes, max_records) = if quick {
        (16 << 20, 200_000)
    } else {
        (
            arg("--bytes", &(1u64 << 30).to_string())
                .parse()
                .expect("--bytes"),
            arg("--max-records", "10000000")
                .parse()
                .expect("--max-records"),
        )
    };
    Env {
        cluster,
        dist,
        bootstrap,
        admin,
        rt,
        store,
        quick,
        bytes,
        max_records,
        goal_reps: if quick { 1 } else { 3 },
        requests: if quick { 2_000 } else { 20_000 },
        work,
        commit,
        rdkafka,
        franz_go,
        node_dir,
        spring,
        failures: std::sync::Mutex::new(Vec::new()),
    }
}

/// Builds the franz-go peer with the Go toolchain; `None` without one.
fn build_franz_go() -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/franz-go");
    let bin = sibling_bin("franz-go-bench");
    match Command::new("go")
        .current_dir(&src)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .status()
    {
        Ok(s) if s.success() => Some(bin),
        Ok(s) => panic!("go build of the franz-go peer failed: {s}"),
        Err(e) => {
            eprintln!("bench: franz-go is not run: no Go toolchain ({e})");
            None
        }
    }
}

/// The points of the producer part, with their repetitions.
fn producer_points(env: &Env) -> Vec<(Point, u32)> {
    let mut out = Vec::new();
    let goal = |p: &Point| {
        (p.partitions == 6 && (p.size == 100 || p.size == 1024) && p.compression == "none")
            || p.partitions == 1000
    };
    let sizes: &[u64] = if env.quick { &[100, 1024] } else { SIZES };
    for &s in sizes {
        out.push(Point::records(s, 6));
    }
    if !env.quick {
        for &p in PARTITIONS.iter().filter(|&&p| p != 6) {
            out.push(Point::records(100, p));
        }
    }
    let codecs: &[&str] = if env.quick { &["lz4"] } else { CODECS };
    for c in codecs.iter().filter(|&&c| c != "none") {
        let mut p = Point::records(1024, 6);
        p.compression = c.to_string();
        out.push(p);
    }
    if !env.quick {
        let mut p = Point::records(100, 6);
        p.transaction = 10_000;
        out.push(p);
    }
    out.into_iter()
        .map(|p| {
            let reps = if goal(&p) { env.goal_reps } else { 1 };
            (p, reps)
        })
        .collect()
}

fn records_clients(env: &Env, point: &Point, producing: bool) -> Vec<&'static str> {
    let mut c = vec!["franz"];
    if env.rdkafka {
        c.push("librdkafka");
    }
    if point.transaction == 0 {
        c.push("java");
    }
    if env.franz_go.is_some() {
        c.push("franz-go");
    }
    // KafkaJS has no lz4 or zstd without plug-ins, and no transactions here.
    if env.node_dir.is_some() && point.compression == "none" && point.transaction == 0 {
        // 1,000 partitions and 10 B records would each take KafkaJS an hour
        // at full size.
        if env.quick || (point.partitions <= 100 && point.size >= 100) || !producing {
            c.push("kafkajs");
        }
    }
    c
}

fn alternate(clients: &[&'static str], rep: u32) -> Vec<&'static str> {
    let mut order = clients.to_vec();
    if rep % 2 == 1 {
        order.reverse();
    }
    order
}

fn producer(env: &Env) {
    let on_file = env.store.load("producer");
    for (point, reps) in producer_points(env) {
        let clients = records_clients(env, &point, true);
        let n = env.records_for(point.size);
        for rep in 0..reps {
            for client in alternate(&clients, rep) {
                if env.done("producer", client, &point, rep, &on_file) {
                    continue;
                }
                let topic = unique_topic(&format!("bench-p-{client}"));
                env.create(&topic, point.partitions);
                env.attempt(format!("producer {client} {point:?} rep {rep}"), || {
                    produce_once(env, client, &point, rep, &topic, n)
                });
                env.delete(&topic);
            }
        }
    }
}

/// A producer command line shared by the franz, librdkafka and franz-go
/// programs.
fn producer_args(cmd: &mut Command, env: &Env, point: &Point, topic: &str, n: u64) {
    let payload = env.payload(point.size, point.compression != "none");
    cmd.args(["--bootstrap", &env.bootstrap, "--topic", topic])
        .args(["--records", &n.to_string()])
        .args(["--size", &point.size.to_string()])
        .arg("--payload-file")
        .arg(payload)
        .args(["--compression", &point.compression])
        .args(["--transaction", &point.transaction.to_string()]);
}

fn produce_once(env: &Env, client: &str, point: &Point, rep: u32, topic: &str, n: u64) -> Sample {
    let mut s = env.sample("producer", client, point, rep);
    s.units = n;
    let started = Instant::now();
    let (out, cpu, rss) = match client {
        "java" => {
            let mut cmd = franz_benches::java_perf_tool(
                &env.dist,
                "org.apache.kafka.tools.ProducerPerformance",
            );
            cmd.args(["--topic", topic, "--num-records", &n.to_string()])
                .args(["--throughput", "-1", "--payload-file"])
                .arg(env.payload(point.size, point.compression != "none"))
                .args([
                    "--producer-props",
                    &format!("bootstrap.servers={}", env.bootstrap),
                ])
                .args(["acks=all", "enable.idempotence=true", "linger.ms=5"])
                .args(["batch.size=1048576", "buffer.memory=67108864"])
                .arg(format!("compression.type={}", point.compression));
            run_measured(cmd)
        }
        "kafkajs" => {
            let dir = env.node_dir.as_ref().expect("node dir");
            let mut cmd = Command::new("node");
            cmd.current_dir(dir).arg("kafkajs-bench.mjs").arg("produce");
            producer_args(&mut cmd, env, point, topic, n);
            run_measured(cmd)
        }
        "franz-go" => {
            let mut cmd = Command::new(env.franz_go.as_ref().expect("franz-go"));
            cmd.arg("produce");
            producer_args(&mut cmd, env, point, topic, n);
            run_measured(cmd)
        }
        name => {
            let bin = if name == "franz" {
                "franz-produce"
            } else {
                "rdkafka-produce"
            };
            let mut cmd = Command::new(sibling_bin(bin));
            producer_args(&mut cmd, env, point, topic, n);
            run_measured(cmd)
        }
    };
    s.cpu_secs = cpu;
    s.peak_rss_mib = rss;
    if client == "java" {
        s.secs = n as f64 / java_producer_rate(&out);
    } else {
        assert_eq!(
            result_field(&out, "failed="),
            0.0,
            "{client}: records failed:\n{out}"
        );
        s.secs = result_field(&out, "secs=");
    }
    eprintln!("bench: ({client} took {:?} in all)", started.elapsed());
    s
}

/// ProducerPerformance's rate: its windows after the first 5 s (JVM
/// warm-up) when there are at least three, else its summary.
fn java_producer_rate(out: &str) -> f64 {
    let parse = |l: &str| -> Option<(f64, f64)> {
        let mut it = l.split(", ");
        let records: f64 = it.next()?.split_whitespace().next()?.parse().ok()?;
        let rate: f64 = it.next()?.split_whitespace().next()?.parse().ok()?;
        Some((records, rate))
    };
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("records sent")).collect();
    let (windows, summary) = match lines.split_last() {
        Some((last, rest)) => (rest, *last),
        None => panic!("no summary in ProducerPerformance output:\n{out}"),
    };
    if windows.len() >= 3 {
        let (records, secs) = windows[1..]
            .iter()
            .filter_map(|l| parse(l))
            .fold((0.0, 0.0), |(n, t), (r, rate)| (n + r, t + r / rate));
        // The tail after the last window is in the summary only; the
        // windows after warm-up stand for the steady rate.
        if secs > 0.0 {
            return records / secs;
        }
    }
    parse(summary)
        .map(|(_, rate)| rate)
        .unwrap_or_else(|| panic!("no summary in ProducerPerformance output:\n{out}"))
}

fn consumer(env: &Env) {
    let on_file = env.store.load("consumer");
    let mut points: Vec<(Point, u32)> = Vec::new();
    let sizes: &[u64] = if env.quick { &[100, 1024] } else { SIZES };
    for &s in sizes {
        let goal = s == 100 || s == 1024;
        points.push((Point::records(s, 6), if goal { env.goal_reps } else { 1 }));
    }
    if !env.quick {
        for &p in PARTITIONS.iter().filter(|&&p| p != 6) {
            points.push((
                Point::records(100, p),
                if p == 1000 { env.goal_reps } else { 1 },
            ));
        }
    }
    for (point, reps) in points {
        let clients = records_clients(env, &point, false);
        let missing = (0..reps).any(|rep| {
            clients
                .iter()
                .any(|c| !env.done("consumer", c, &point, rep, &on_file))
        });
        if !missing {
            continue;
        }
        let n = env.records_for(point.size);
        let topic = unique_topic("bench-c");
        env.create(&topic, point.partitions);
        let mut preload = Command::new(sibling_bin("franz-produce"));
        producer_args(&mut preload, env, &point, &topic, n);
        let (out, _, _) = run_measured(preload);
        assert_eq!(result_field(&out, "failed="), 0.0, "preload: {out}");
        for rep in 0..reps {
            for client in alternate(&clients, rep) {
                if env.done("consumer", client, &point, rep, &on_file) {
                    continue;
                }
                env.attempt(format!("consumer {client} {point:?} rep {rep}"), || {
                    consume_once(env, client, &point, rep, &topic, n)
                });
            }
        }
        env.delete(&topic);
    }
}

fn consume_once(env: &Env, client: &str, point: &Point, rep: u32, topic: &str, n: u64) -> Sample {
    let mut s = env.sample("consumer", client, point, rep);
    s.units = n;
    let common = |cmd: &mut Command| {
        cmd.args(["--bootstrap", &env.bootstrap, "--topic", topic])
            .args(["--records", &n.to_string()]);
    };
    let (out, cpu, rss) = match client {
        "java" => {
            let mut cmd = franz_benches::java_perf_tool(
                &env.dist,
                "org.apache.kafka.tools.ConsumerPerformance",
            );
            cmd.args(["--bootstrap-server", &env.bootstrap, "--topic", topic])
                .args(["--messages", &n.to_string(), "--timeout", "120000"]);
            run_measured(cmd)
        }
        "kafkajs" => {
            let mut cmd = Command::new("node");
            cmd.current_dir(env.node_dir.as_ref().expect("node dir"))
                .args(["kafkajs-bench.mjs", "consume"]);
            common(&mut cmd);
            run_measured(cmd)
        }
        "franz-go" => {
            let mut cmd = Command::new(env.franz_go.as_ref().expect("franz-go"));
            cmd.arg("consume");
            common(&mut cmd);
            run_measured(cmd)
        }
        name => {
            let mut cmd = Command::new(sibling_bin(if name == "franz" {
                "franz-consume"
            } else {
                "rdkafka-consume"
            }));
            common(&mut cmd);
            run_measured(cmd)
        }
    };
    s.cpu_secs = cpu;
    s.peak_rss_mib = rss;
    if client == "java" {
        // fetch.nMsg.sec, the last column of the summary.
        let rate: f64 = out
            .lines()
            .rfind(|l| l.split(", ").count() == 10 && !l.starts_with("start.time"))
            .and_then(|l| l.split(", ").nth(9))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no summary in ConsumerPerformance output:\n{out}"));
        s.secs = n as f64 / rate;
    } else {
        let got = result_field(&out, "records=");
        assert!(got >= n as f64, "{client} read {got} of {n} records");
        s.secs = result_field(&out, "secs=");
    }
    s
}

fn transport(env: &Env) {
    let on_file = env.store.load("transport");
    let in_flight: &[u32] = if env.quick { &[1, 64] } else { IN_FLIGHT };
    let partitions: &[u32] = if env.quick { &[1] } else { &[1, 4] };
    let mut clients = vec!["franz"];
    if env.node_dir.is_some() {
        clients.push("nestjs");
    }
    if env.spring.is_some() {
        clients.push("spring");
    }
    for &p in partitions {
        for &c in in_flight {
            let mut point = Point::records(TRANSPORT_SIZE, p);
            point.in_flight = c;
            let goal = c == 64 || (c == 1 && p == 1);
            let reps = if goal { env.goal_reps } else { 1 };
            // At one in flight a request is a round trip: fewer of them.
            let n = match c {
                1 => env.requests / 10,
                8 => env.requests / 4,
                _ => env.requests,
            };
            for rep in 0..reps {
                for client in alternate(&clients, rep) {
                    if env.done("transport", client, &point, rep, &on_file) {
                        continue;
                    }
                    env.attempt(format!("transport {client} {point:?} rep {rep}"), || {
                        rpc_once(env, client, &point, rep, n)
                    });
                }
            }
        }
    }
}

fn rpc_once(env: &Env, client: &str, point: &Point, rep: u32, n: u64) -> Sample {
    let topic = unique_topic(&format!("bench.echo.{client}"));
    env.create(&topic, point.partitions);
    env.create(&format!("{topic}.reply"), 1);
    let (c, p) = (point.in_flight.to_string(), point.partitions.to_string());
    let mut cmd = if client == "franz" {
        let mut cmd = Command::new(sibling_bin("franz-echo"));
        cmd.args(["--bootstrap", &env.bootstrap, "--topic", &topic])
            .args(["--requests", &n.to_string(), "--concurrency", &c])
            .args(["--partitions-concurrently", &p]);
        cmd
    } else if client == "spring" {
        let spring = env.spring.as_ref().expect("spring");
        spring.command(&["echo", &env.bootstrap, &topic, &n.to_string(), &c, &p])
    } else {
        let mut cmd = Command::new("node");
        cmd.current_dir(env.node_dir.as_ref().expect("node dir"))
            .arg("nest-echo-bench.mjs")
            .args([&env.bootstrap, &topic, &n.to_string(), &c, &p]);
        cmd
    };
    cmd.env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    let (out, cpu, rss) = run_measured(cmd);
    env.delete(&topic);
    env.delete(&format!("{topic}.reply"));
    assert_eq!(
        result_field(&out, "failed="),
        0.0,
        "{client}: requests failed:\n{out}"
    );
    let mut s = env.sample("transport", client, point, rep);
    s.units = n;
    s.secs = result_field(&out, "secs=");
    s.cpu_secs = cpu;
    s.peak_rss_mib = rss;
    s.p50_us = result_field(&out, "p50_us=");
    s.p99_us = result_field(&out, "p99_us=");
    s
}

/// The limits beside the clients: the copy+CRC floor, the broker's own
/// produce-to-consume latency, and its throughput with Java's perf tool at
/// the settings that tool's users reach for (acks=1, 20 ms linger, 1 MiB
/// batches, lz4 off) at 6 and at 1,000 partitions.
fn limits(env: &Env) {
    let on_file = env.store.load("limits");
    let reps = env.goal_reps;
    for rep in 0..reps {
        let point = Point::records(100, 0);
        if !env.done("limits", "copy+CRC floor", &point, rep, &on_file) {
            let records = 2_000_000u64;
            let ns = franz_benches::copy_crc_floor_ns(100, records);
            let mut s = env.sample("limits", "copy+CRC floor", &point, rep);
            s.units = records;
            s.secs = ns * records as f64 / 1e9;
            s.cpu_secs = s.secs;
            env.save(s);
        }
        let point = Point::records(120, 1);
        if !env.done("limits", "broker produce-to-consume", &point, rep, &on_file) {
            let topic = unique_topic("bench.floor");
            env.create(&topic, 1);
            let mut cmd = Command::new(sibling_bin("franz-echo"));
            cmd.args(["--floor", "--bootstrap", &env.bootstrap, "--topic", &topic])
                .args(["--requests", if env.quick { "300" } else { "2000" }]);
            let (out, cpu, rss) = run_measured(cmd);
            env.delete(&topic);
            let mut s = env.sample("limits", "broker produce-to-consume", &point, rep);
            s.units = result_field(&out, "requests=") as u64;
            s.secs = result_field(&out, "secs=");
            s.cpu_secs = cpu;
            s.peak_rss_mib = rss;
            s.p50_us = result_field(&out, "p50_us=");
            s.p99_us = result_field(&out, "p99_us=");
            env.save(s);
        }
        let partitions: &[u32] = if env.quick { &[6] } else { &[6, 1000] };
        for &p in partitions {
            let point = Point::records(100, p);
            let name = "broker via Java perf, acks=1";
            if env.done("limits", name, &point, rep, &on_file) {
                continue;
            }
            let n = env.records_for(100);
            let topic = unique_topic("bench.ceiling");
            env.create(&topic, p);
            let mut cmd = franz_benches::java_perf_tool(
                &env.dist,
                "org.apache.kafka.tools.ProducerPerformance",
            );
            cmd.args(["--topic", &topic, "--num-records", &n.to_string()])
                .args(["--throughput", "-1", "--record-size", "100"])
                .args([
                    "--producer-props",
                    &format!("bootstrap.servers={}", env.bootstrap),
                ])
                .args(["acks=1", "linger.ms=20", "batch.size=1048576"])
                .args([
                    "buffer.memory=268435456",
                    "max.in.flight.requests.per.connection=5",
                ]);
            let (out, cpu, rss) = run_measured(cmd);
            env.delete(&topic);
            let mut s = env.sample("limits", name, &point, rep);
            s.units = n;
            s.secs = n as f64 / java_producer_rate(&out);
            s.cpu_secs = cpu;
            s.peak_rss_mib = rss;
            env.save(s);
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB, Linux {}; one Kafka {} broker (KRaft, 2 GiB heap) from the test harness on the same machine, so clients and broker share the 2 cores",
        kernel.trim(),
        franz_testkit::kafka_version()
    )
}

fn write_report(store: &Store, md: &Path, charts: &Path) {
    let samples = store.load_all();
    let r = Results::new(&samples);
    std::fs::create_dir_all(charts).expect("charts dir");
    let rel = |p: &Path| -> String {
        let base = md.parent().expect("report dir");
        p.strip_prefix(base)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let commits: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.commit.as_str()).collect();
    let mut t = String::new();
    t.push_str("# franz benchmarks\n\n");
    t.push_str("Written by `just bench` (`benches/src/bin/bench.rs`) from the runs on file in `benches/results/`; every client runs as its own process, one after another, against one broker, and ratios are franz/peer taken within each repetition (the machine drifts between runs; ratios much less). Do not edit by hand: the analysis comes from `benches/ANALYSIS.md`.\n\n");
    t.push_str(&format!(
        "- **Machine:** {}\n- **franz commits measured:** {}\n- **Commands:** `just bench` (all parts, then the report); `just bench producer`, `just bench consumer`, `just bench transport`, `just bench limits` run one part and resume where a cut-off run stopped; `just bench report` rewrites this file; `just bench-quick` is CI's small form.\n- **Sizes:** every records point moves 1 GiB of values, capped at 10,000,000 records (so 10 B points move 100 MB); each point on a fresh topic, deleted afterwards. Points that carry a goal run 3 repetitions with the clients' order alternating (median, min–max); the others one.\n\n",
        machine(),
        commits.into_iter().collect::<Vec<_>>().join(", ")
    ));
    t.push_str("## Goals (issue #16)\n\n");
    t.push_str(&report::goals_table(&report::goals(&r)));
    if let Ok(analysis) =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ANALYSIS.md"))
    {
        t.push('\n');
        t.push_str(&analysis);
    }
    for sweep in report::sweeps() {
        if !sweep
            .points
            .iter()
            .any(|(_, _, p)| r.agg(sweep.part, "franz", p).is_some())
        {
            continue;
        }
        t.push_str(&format!("\n## {}\n\n", sweep.title));
        let chart = charts.join(report::chart_name(&sweep));
        match report::draw_sweep(&r, &sweep, &chart) {
            Ok(()) => t.push_str(&format!("![{}]({})\n\n", sweep.title, rel(&chart))),
            Err(e) => eprintln!("bench: chart {}: {e}", chart.display()),
        }
        t.push_str(&report::sweep_table(&r, &sweep));
    }
    let mut txn = Point::records(100, 6);
    txn.transaction = 10_000;
    if r.agg("producer", "franz", &txn).is_some() {
        t.push_str("\n## Producer: transactions of 10,000 records, 100 B, 6 partitions\n\n");
        let sweep = report::Sweep {
            title: "transactions",
            part: "producer",
            x_label: "",
            points: vec![(0.0, "100 B, txn 10,000".into(), txn)],
            log_x: false,
            unit: "records",
        };
        t.push_str(&report::sweep_table(&r, &sweep));
    }
    t.push_str("\n## Limits\n\n");
    t.push_str(&report::limits_table(&r));
    t.push_str("\n## Settings\n\n");
    for (who, what) in SETTINGS {
        t.push_str(&format!("- **{who}:** {what}\n"));
    }
    std::fs::write(md, t).expect("write the report");
}
