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
use std::time::Instant;

use franz_benches::{
    Measured, arg, client_command, create_topic, java_perf_tool, print_records_table, result_field,
    run_measured, sibling_bin,
};
use franz_testkit::{KafkaCluster, KafkaDistribution, unique_topic};

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
        create_topic(&dist, &bootstrap, &topic, 6);
        let preload = client_command(
            sibling_bin("franz-produce"),
            &bootstrap,
            &topic,
            n,
            Some(size),
        );
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
                let mut cmd = java_perf_tool(&dist, "org.apache.kafka.tools.ConsumerPerformance");
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
                run_measured(client_command(bin, &bootstrap, &topic, n, None))
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
    print_records_table(&results);
}
