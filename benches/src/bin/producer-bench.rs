//! Producer benchmark driver: one broker from the harness, then each client
//! as its own process, in turn, on a fresh 6-partition topic: franz,
//! librdkafka (the `rdkafka` crate, when built with `--features peers`) and
//! the Java `ProducerPerformance` with a fixed payload file.
//!
//! Settings for every client: acks=all, idempotence on, no compression,
//! linger 5 ms, batch size 1 MiB. Measured per client: records/s (from the
//! client's own timing of its send phase), CPU-seconds per million records
//! (utime+stime of the process, all threads, from `getrusage` of the waited
//! child) and peak RSS (VmHWM, sampled). Ratios are franz/peer.
//!
//! `just bench-producer` (or `cargo run --release --bin producer-bench
//! [--features peers] -- --records 1000000`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use franz_benches::{arg, ratio_cells, run_measured, sibling_bin};
use franz_testkit::{KafkaCluster, KafkaDistribution, unique_topic};

struct Measured {
    client: &'static str,
    size: usize,
    records: u64,
    records_per_sec: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
}

fn parse_result(out: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{out}"));
    let get = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|p| p.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert_eq!(get("failed="), 0.0, "records failed: {line}");
    get("records=") / get("secs=")
}

fn java_records_per_sec(out: &str) -> f64 {
    // "1000000 records sent, 512345.6 records/sec (48.86 MB/sec), ..."
    out.lines()
        .rfind(|l| l.contains("records sent"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no summary in ProducerPerformance output:\n{out}"))
}

fn main() {
    let records: u64 = arg("--records", "1000000").parse().expect("--records");
    let cluster = KafkaCluster::builder()
        .heap_mb(2048)
        .exclusive(false)
        .start_blocking()
        .expect("broker");
    let bootstrap = cluster.bootstrap();
    let dist = KafkaDistribution::resolve().expect("kafka jars");
    let work = std::env::temp_dir().join(format!("franz-producer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let rdkafka = sibling_bin("rdkafka-produce");
    let with_rdkafka = rdkafka.exists()
        && Command::new(&rdkafka)
            .arg("--probe")
            .output()
            .is_ok_and(|o| o.status.code() != Some(2));
    let mut results = Vec::new();
    for size in [100usize, 1024] {
        let n = if size == 100 { records } else { records / 3 };
        let mut clients: Vec<&'static str> = vec!["franz"];
        if with_rdkafka {
            clients.push("librdkafka");
        }
        clients.push("java");
        for client in clients {
            let topic = unique_topic(&format!("bench-{client}-{size}"));
            dist.run_tool(
                "org.apache.kafka.tools.TopicCommand",
                &[
                    "--bootstrap-server",
                    &bootstrap,
                    "--create",
                    "--topic",
                    &topic,
                    "--partitions",
                    "6",
                    "--replication-factor",
                    "1",
                ],
                Duration::from_secs(120),
            )
            .expect("create topic");
            let started = Instant::now();
            let (out, cpu, rss) = match client {
                "java" => {
                    let payload = work.join(format!("payload-{size}"));
                    std::fs::write(&payload, vec![b'x'; size]).expect("payload");
                    let mut cmd = dist.tool_command("org.apache.kafka.tools.ProducerPerformance");
                    // The perf tools' own heap, as kafka-producer-perf-test.sh sets it.
                    let args: Vec<String> = cmd
                        .get_args()
                        .map(|a| a.to_string_lossy().replace("-Xmx256m", "-Xmx512m"))
                        .collect();
                    cmd = Command::new(dist.java());
                    cmd.args(
                        args.iter().filter(|a| {
                            *a != "-XX:TieredStopAtLevel=1" && *a != "-XX:+UseSerialGC"
                        }),
                    );
                    cmd.args([
                        "--topic",
                        &topic,
                        "--num-records",
                        &n.to_string(),
                        "--throughput",
                        "-1",
                    ])
                    .arg("--payload-file")
                    .arg(&payload)
                    .args([
                        "--producer-props",
                        &format!("bootstrap.servers={bootstrap}"),
                    ])
                    .args([
                        "acks=all",
                        "enable.idempotence=true",
                        "linger.ms=5",
                        "batch.size=1048576",
                        "compression.type=none",
                        "buffer.memory=67108864",
                    ]);
                    run_measured(cmd)
                }
                name => {
                    let bin = if name == "franz" {
                        sibling_bin("franz-produce")
                    } else {
                        rdkafka.clone()
                    };
                    let mut cmd = Command::new(bin);
                    cmd.args([
                        "--bootstrap",
                        &bootstrap,
                        "--topic",
                        &topic,
                        "--records",
                        &n.to_string(),
                        "--size",
                        &size.to_string(),
                    ]);
                    run_measured(cmd)
                }
            };
            let rps = if client == "java" {
                java_records_per_sec(&out)
            } else {
                parse_result(&out)
            };
            eprintln!(
                "{client} {size}B: {rps:.0} rec/s, {cpu:.2} CPU-s, {rss:.0} MiB ({:?})",
                started.elapsed()
            );
            results.push(Measured {
                client,
                size,
                records: n,
                records_per_sec: rps,
                cpu_secs: cpu,
                peak_rss_mib: rss,
            });
        }
    }
    println!(
        "| size | client | records | records/s | CPU-s per M records | peak RSS MiB | records/s ratio franz/peer | CPU ratio franz/peer |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        let franz = results
            .iter()
            .find(|f| f.client == "franz" && f.size == r.size)
            .expect("franz row");
        let cpu_per_m = |m: &Measured| m.cpu_secs / (m.records as f64 / 1e6);
        let (rate, cpu) = ratio_cells(
            r.client == "franz",
            (franz.records_per_sec, r.records_per_sec),
            (cpu_per_m(franz), cpu_per_m(r)),
        );
        println!(
            "| {} B | {} | {} | {:.0} | {:.2} | {:.0} | {} | {} |",
            r.size,
            r.client,
            r.records,
            r.records_per_sec,
            cpu_per_m(r),
            r.peak_rss_mib,
            rate,
            cpu
        );
    }
    let _ = std::fs::remove_dir_all(Path::new(&work));
}
