//! Shared pieces of franz's benchmarks (see `benches/`): argument parsing
//! and measuring a client that runs as its own process.
//!
//! # Examples (probes)
//!
//! Small measurements kept because a floor or a design decision rests on
//! them; run from `benches/` (broker ones need a running broker, e.g.
//! `just kafka-up`):
//!
//! - `cargo run --release --example floor_probe`: encode floor, copy + CRC of 1000 values (ns/record).
//! - `cargo run --release --example e2e_latency <bootstrap> <topic>`: latency floor, produce to consume.
//! - `cargo run --release --example crc_probe`: CRC-32C, crc32c vs crc-fast (why crc-fast).
//! - `cargo run --release --example encode_ratio`: encode A/B vs kafka-protocol (why `SMALL_FIELD` = 16).
//! - `cargo run --release --example rpc_phases <bootstrap> <topic>`: request-reply phases (why idle commits).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use franz_testkit::KafkaDistribution;
use nix::sys::resource::{UsageWho, getrusage};

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next().unwrap_or_default();
        }
    }
    default.to_string()
}

/// CPU seconds (user + system) of all waited-for children so far.
pub fn children_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// Peak resident set of `pid` in KiB (VmHWM).
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `cmd`, sampling its peak RSS, and returns (stdout, cpu secs, peak MiB).
pub fn run_measured(mut cmd: Command) -> (String, f64, f64) {
    let before = children_cpu();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    });
    let mut peak = 0;
    loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = reader.join().unwrap_or_default();
    (out, children_cpu() - before, peak as f64 / 1024.0)
}

/// A binary built next to the running one.
pub fn sibling_bin(name: &str) -> PathBuf {
    std::env::current_exe().expect("exe").with_file_name(name)
}

/// The two ratio cells of a results table row, franz over `peer`: rate
/// (higher is better for franz above 1) and CPU per unit of work (lower is
/// better below 1). The franz row itself gets `-`.
pub fn ratio_cells(
    is_franz: bool,
    rates: (f64, f64),
    cpu_per_unit: (f64, f64),
) -> (String, String) {
    if is_franz {
        ("-".to_string(), "-".to_string())
    } else {
        (
            format!("{:.2}", rates.0 / rates.1),
            format!("{:.2}", cpu_per_unit.0 / cpu_per_unit.1),
        )
    }
}

/// A `key=value` field of the `RESULT` line a client process prints.
pub fn result_field(out: &str, key: &str) -> f64 {
    out.lines()
        .find(|l| l.starts_with("RESULT"))
        .and_then(|l| l.split_whitespace().find_map(|p| p.strip_prefix(key)))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

/// A Rust client process of the records benchmarks (`franz-produce`,
/// `rdkafka-consume`...) with the arguments they share; `size` only for
/// producers.
pub fn client_command(
    bin: impl AsRef<std::ffi::OsStr>,
    bootstrap: &str,
    topic: &str,
    records: u64,
    size: Option<usize>,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["--bootstrap", bootstrap, "--topic", topic])
        .args(["--records", &records.to_string()]);
    if let Some(size) = size {
        cmd.args(["--size", &size.to_string()]);
    }
    cmd
}

/// Creates `topic` with `partitions` partitions (replication 1) with Kafka's
/// own `TopicCommand`.
pub fn create_topic(dist: &KafkaDistribution, bootstrap: &str, topic: &str, partitions: usize) {
    dist.run_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ],
        Duration::from_secs(120),
    )
    .expect("create topic");
}

/// A Java perf tool (`ProducerPerformance`, `ConsumerPerformance`) as its
/// `kafka-*-perf-test.sh` runs it: a 512 MiB heap and the JVM's default
/// compiler and collector, not the harness's start-up-tuned flags.
pub fn java_perf_tool(dist: &KafkaDistribution, class: &str) -> Command {
    let tool = dist.tool_command(class);
    let args: Vec<String> = tool
        .get_args()
        .map(|a| a.to_string_lossy().replace("-Xmx256m", "-Xmx512m"))
        .filter(|a| a != "-XX:TieredStopAtLevel=1" && a != "-XX:+UseSerialGC")
        .collect();
    let mut cmd = Command::new(dist.java());
    cmd.args(args);
    cmd
}

/// One client's run in a records benchmark (producer or consumer).
#[derive(Debug, Clone)]
pub struct Measured {
    /// `franz`, `librdkafka` or `java`.
    pub client: &'static str,
    /// The workload, as the table's first column (`100 B`, `100 B, 1 partition`).
    pub scenario: String,
    /// Records moved.
    pub records: u64,
    /// Records per second, by the client's own clock.
    pub records_per_sec: f64,
    /// CPU seconds of the client process (all threads).
    pub cpu_secs: f64,
    /// Peak resident set in MiB.
    pub peak_rss_mib: f64,
}

/// Prints a records benchmark's markdown table, with franz/peer ratios per
/// record size.
pub fn print_records_table(results: &[Measured]) {
    println!(
        "| workload | client | records | records/s | CPU-s per M records | peak RSS MiB | records/s ratio franz/peer | CPU ratio franz/peer |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let cpu_per_m = |m: &Measured| m.cpu_secs / (m.records as f64 / 1e6);
    for r in results {
        let Some(franz) = results
            .iter()
            .find(|f| f.client == "franz" && f.scenario == r.scenario)
        else {
            continue;
        };
        let (rate, cpu) = ratio_cells(
            r.client == "franz",
            (franz.records_per_sec, r.records_per_sec),
            (cpu_per_m(franz), cpu_per_m(r)),
        );
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.0} | {rate} | {cpu} |",
            r.scenario,
            r.client,
            r.records,
            r.records_per_sec,
            cpu_per_m(r),
            r.peak_rss_mib,
        );
    }
}

/// The median (the upper one for an even count; NaN when empty).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// One workload measured over several runs (each a list of clients'
/// results, the clients alternating): each client's medians, and for
/// every peer a line with the per-run franz/peer ratios and their median
/// (the figure to judge: the machine drifts between runs, ratios less).
pub fn summarize(
    per_run: &[Vec<Measured>],
    clients: &[&'static str],
) -> (Vec<Measured>, Vec<String>) {
    let mut medians = Vec::new();
    let mut lines = Vec::new();
    for client in clients {
        let mine: Vec<&Measured> = per_run
            .iter()
            .flatten()
            .filter(|m| m.client == *client)
            .collect();
        let Some(first) = mine.first() else { continue };
        let of = |f: fn(&Measured) -> f64| median(mine.iter().map(|m| f(m)));
        medians.push(Measured {
            client,
            scenario: first.scenario.clone(),
            records: first.records,
            records_per_sec: of(|m| m.records_per_sec),
            cpu_secs: of(|m| m.cpu_secs),
            peak_rss_mib: of(|m| m.peak_rss_mib),
        });
        if *client == "franz" {
            continue;
        }
        let pick = |run: &[Measured], c: &str| {
            run.iter()
                .find(|m| m.client == c)
                .map(|m| (m.records_per_sec, m.cpu_secs))
        };
        let ratios: Vec<(f64, f64)> = per_run
            .iter()
            .filter_map(|run| {
                let (fr, fc) = pick(run, "franz")?;
                let (pr, pc) = pick(run, client)?;
                Some((fr / pr, fc / pc))
            })
            .collect();
        lines.push(format!(
            "{} franz/{client}: records/s ratio per run {:?}, median {:.2}; CPU ratio per run {:?}, median {:.2}",
            first.scenario,
            ratios.iter().map(|r| format!("{:.2}", r.0)).collect::<Vec<_>>(),
            median(ratios.iter().map(|r| r.0)),
            ratios.iter().map(|r| format!("{:.2}", r.1)).collect::<Vec<_>>(),
            median(ratios.iter().map(|r| r.1)),
        ));
    }
    (medians, lines)
}
