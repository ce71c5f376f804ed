//! franz's benchmark suite (issue #16): franz against librdkafka, the Java
//! client, franz-go, KafkaJS and NestJS, each a process of its own.
//!
//! - `src/bin/bench.rs` is the driver (`just bench [part]`,
//!   `just bench-quick`): it walks the sweeps point by point, runs every
//!   client at each point with [`run_measured`], and appends each run to
//!   the [`store`] as soon as it ends, so a cut-off run resumes.
//! - [`report`] turns the samples on file into `BENCHMARKS.md`: medians
//!   with min and max, franz/peer ratios paired by repetition, one chart
//!   per sweep, and every goal judged.
//! - The client programs: `franz-produce`, `franz-consume`, `franz-echo`
//!   (franz), `rdkafka-produce`, `rdkafka-consume` (feature `peers`),
//!   `peers/franz-go` (Go), `tests/node/kafkajs-bench.mjs` and
//!   `tests/node/nest-echo-bench.mjs` (Node.js). Each prints one `RESULT`
//!   line ([`result_field`]).
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

/// The copy+CRC floor: nanoseconds per record to copy `records` values of
/// `value_len` bytes (plus 30 bytes of record framing) into batch buffers
/// of 1,000 and CRC-32C each batch, the least work any encoder does. The
/// lower bound beside the clients' CPU per record (`BENCHMARKS.md`) and the
/// record-batch encoder's (`floor_probe`).
pub fn copy_crc_floor_ns(value_len: usize, records: u64) -> f64 {
    use bytes::{BufMut, BytesMut};
    let v = vec![b'x'; value_len + 30];
    let rounds = records.div_ceil(1000).max(1);
    #[allow(clippy::disallowed_methods)] // measuring is reading the clock
    let t = std::time::Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        let mut b = BytesMut::with_capacity(1000 * (value_len + 48));
        for _ in 0..1000 {
            b.put_slice(std::hint::black_box(&v));
        }
        n += u64::from(franz_protocol::record::crc32c(&b));
        n += b.freeze().len() as u64;
    }
    std::hint::black_box(n);
    t.elapsed().as_nanos() as f64 / (rounds * 1000) as f64
}

/// The producer clients' value: the bytes of `--payload-file` when given
/// (every client of a point sends the same file), else `--size` bytes of
/// `x`.
pub fn payload_from_args() -> Vec<u8> {
    let file = arg("--payload-file", "");
    if file.is_empty() {
        let size: usize = arg("--size", "100").parse().expect("--size");
        vec![b'x'; size]
    } else {
        std::fs::read(&file).unwrap_or_else(|e| panic!("--payload-file {file}: {e}"))
    }
}

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

/// A `key=value` field of the `RESULT` line a client process prints
/// ([`franz_testkit::result_field`]); panics with the output when missing.
pub fn result_field(out: &str, key: &str) -> f64 {
    franz_testkit::result_field(out, key).unwrap_or_else(|| panic!("no {key} in:\n{out}"))
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

/// The median (the upper one for an even count; NaN when empty).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

pub mod report;
pub mod store;
