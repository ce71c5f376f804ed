//! Consumer benchmark driver: one broker from the harness, a 6-partition
//! topic per record size preloaded by franz's producer, then each client as
//! its own process, in turn, reading the same topic from the beginning:
//! franz, librdkafka (the `rdkafka` crate, when built with `--features
//! peers`) and the Java `ConsumerPerformance` tool.
//!
//! Every client uses Java's fetch defaults (fetch.min.bytes 1, fetch.max.wait
//! 500 ms, 1 MiB per partition, 50 MiB per fetch) and checks CRCs. franz and
//! librdkafka are assigned the partitions; the Java tool joins a group, and
//! its `fetch.nMsg.sec` (which leaves out the join) is the figure used.
//! Measured per client: records/s, CPU-seconds per million records
//! (utime+stime of the process, all threads) and peak RSS (VmHWM, sampled).
//! The log is read from the page cache for every client (the preload put it
//! there). Ratios are franz/peer.
//!
//! `just bench-consumer` (or `cargo run --release --bin consumer-bench
//! [--features peers] -- --records 2000000`).

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

/// `key=value` fields of the `RESULT` line a client prints.
fn result_field(out: &str, key: &str) -> f64 {
    out.lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{out}"))
        .split_whitespace()
        .find_map(|p| p.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `fetch.nMsg.sec`, the last column of ConsumerPerformance's summary.
fn java_records_per_sec(out: &str) -> f64 {
    out.lines()
        .rfind(|l| l.split(", ").count() == 10 && !l.starts_with("start.time"))
        .and_then(|l| l.split(", ").nth(9))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary in ConsumerPerformance output:\n{out}"))
}

fn main() {
    let records: u64 = arg("--records", "2000000").parse().expect("--records");
    let cluster = KafkaCluster::builder()
        .heap_mb(2048)
        .exclusive(false)
        .start_blocking()
        .expect("broker");
    let bootstrap = cluster.bootstrap();
    let dist = KafkaDistribution::resolve().expect("kafka jars");
    let rdkafka = sibling_bin("rdkafka-consume");
    let with_rdkafka = rdkafka.exists()
        && Command::new(&rdkafka)
            .arg("--probe")
            .output()
            .is_ok_and(|o| o.status.code() != Some(2));
    let mut results = Vec::new();
    for size in [100usize, 1024] {
        let n = if size == 100 { records } else { records / 3 };
        let topic = unique_topic(&format!("consume-bench-{size}"));
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
        let mut preload = Command::new(sibling_bin("franz-produce"));
        preload.args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--records",
            &n.to_string(),
            "--size",
            &size.to_string(),
        ]);
        let (out, _, _) = run_measured(preload);
        assert_eq!(result_field(&out, "failed="), 0.0, "preload failed: {out}");

        let mut clients: Vec<&'static str> = vec!["franz"];
        if with_rdkafka {
            clients.push("librdkafka");
        }
        clients.push("java");
        for client in clients {
            let started = Instant::now();
            let (out, cpu, rss) = if client == "java" {
                let mut cmd = dist.tool_command("org.apache.kafka.tools.ConsumerPerformance");
                // The perf tools' own heap, as kafka-consumer-perf-test.sh sets it.
                let args: Vec<String> = cmd
                    .get_args()
                    .map(|a| a.to_string_lossy().replace("-Xmx256m", "-Xmx512m"))
                    .collect();
                cmd = Command::new(dist.java());
                cmd.args(
                    args.iter()
                        .filter(|a| *a != "-XX:TieredStopAtLevel=1" && *a != "-XX:+UseSerialGC"),
                );
                cmd.args([
                    "--bootstrap-server",
                    &bootstrap,
                    "--topic",
                    &topic,
                    "--messages",
                    &n.to_string(),
                    "--timeout",
                    "60000",
                ]);
                run_measured(cmd)
            } else {
                let bin = if client == "franz" {
                    sibling_bin("franz-consume")
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
                ]);
                run_measured(cmd)
            };
            let rps = if client == "java" {
                java_records_per_sec(&out)
            } else {
                let got = result_field(&out, "records=");
                assert!(got >= n as f64, "{client} read {got} of {n} records");
                got / result_field(&out, "secs=")
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
}
