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
//! Each size is measured `--runs` times (default 3), the clients alternating
//! within each run; the table gives each client's median records/s and
//! median CPU, and the ratio lines give every run's franz/peer ratios and
//! their median (the figure to judge, as the machine drifts between runs).
//!
//! Then a 1,000-partition topic (`--wide-records`, default 500,000 records
//! of 100 B) is read by franz with KIP-227 fetch sessions on and off, and
//! by librdkafka, once each per run.
//!
//! `just bench-consumer` (or `cargo run --release --bin consumer-bench
//! [--features peers] -- --records 2000000 --runs 3`).

use std::process::Command;

use franz_benches::{
    Measured, arg, client_command, create_topic, java_perf_tool, median, print_records_table,
    result_field, run_measured, sibling_bin, summarize,
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
    let runs: usize = arg("--runs", "3").parse().expect("--runs");
    let wide_records: u64 = arg("--wide-records", "500000")
        .parse()
        .expect("--wide-records");
    let mut clients: Vec<&'static str> = vec!["franz"];
    if with_rdkafka {
        clients.push("librdkafka");
    }
    clients.push("java");
    let mut results = Vec::new();
    let mut ratio_lines = Vec::new();
    for size in [100usize, 1024] {
        let n = if size == 100 { records } else { records / 3 };
        let topic = unique_topic(&format!("consume-bench-{size}"));
        preload(&dist, &bootstrap, &topic, 6, n, size);
        let mut per_run: Vec<Vec<Measured>> = Vec::new();
        for run in 0..runs {
            let mut this_run = Vec::new();
            for client in &clients {
                let m = measure(client, &dist, &bootstrap, &topic, n, size, &rdkafka);
                eprintln!(
                    "run {run} {client} {size}B: {:.0} rec/s, {:.2} CPU-s, {:.0} MiB",
                    m.records_per_sec, m.cpu_secs, m.peak_rss_mib
                );
                this_run.push(m);
            }
            per_run.push(this_run);
        }
        let (medians, lines) = summarize(&per_run, &clients);
        results.extend(medians);
        ratio_lines.extend(lines);
    }
    print_records_table(&results);
    println!();
    for l in &ratio_lines {
        println!("{l}");
    }

    // 1,000 partitions: the fetch request itself becomes the cost.
    let wide = unique_topic("consume-bench-wide");
    preload(&dist, &bootstrap, &wide, 1000, wide_records, 100);
    let mut wide_clients: Vec<&'static str> = vec!["franz", "franz (no sessions)"];
    if with_rdkafka {
        wide_clients.push("librdkafka");
    }
    let mut wide_runs = Vec::new();
    for _ in 0..runs {
        for client in &wide_clients {
            wide_runs.push(measure(
                client,
                &dist,
                &bootstrap,
                &wide,
                wide_records,
                100,
                &rdkafka,
            ));
        }
    }
    println!();
    println!("1,000 partitions, {wide_records} records of 100 B, medians of {runs} runs:");
    println!("| client | records/s | CPU-s per M records | peak RSS MiB |");
    println!("| --- | --- | --- | --- |");
    for client in &wide_clients {
        let of = |f: fn(&Measured) -> f64| {
            median(wide_runs.iter().filter(|m| m.client == *client).map(f))
        };
        println!(
            "| {client} | {:.0} | {:.2} | {:.0} |",
            of(|m| m.records_per_sec),
            of(|m| m.cpu_secs) / (wide_records as f64 / 1e6),
            of(|m| m.peak_rss_mib)
        );
    }
}

/// Creates `topic` and fills it with `n` records of `size` bytes.
fn preload(
    dist: &KafkaDistribution,
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    n: u64,
    size: usize,
) {
    create_topic(dist, bootstrap, topic, partitions);
    let preload = client_command(
        sibling_bin("franz-produce"),
        bootstrap,
        topic,
        n,
        Some(size),
    );
    let (out, _, _) = run_measured(preload);
    assert_eq!(result_field(&out, "failed="), 0.0, "preload failed: {out}");
}

/// One client process reading `n` records of `topic` from the start.
fn measure(
    client: &'static str,
    dist: &KafkaDistribution,
    bootstrap: &str,
    topic: &str,
    n: u64,
    size: usize,
    rdkafka: &std::path::Path,
) -> Measured {
    let (out, cpu, rss) = match client {
        "java" => {
            let mut cmd = java_perf_tool(dist, "org.apache.kafka.tools.ConsumerPerformance");
            cmd.args([
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--messages",
                &n.to_string(),
                "--timeout",
                "60000",
            ]);
            run_measured(cmd)
        }
        "franz" => run_measured(client_command(
            sibling_bin("franz-consume"),
            bootstrap,
            topic,
            n,
            None,
        )),
        "franz (no sessions)" => {
            let mut cmd = client_command(sibling_bin("franz-consume"), bootstrap, topic, n, None);
            cmd.args(["--sessions", "false"]);
            run_measured(cmd)
        }
        _ => run_measured(client_command(rdkafka, bootstrap, topic, n, None)),
    };
    let records_per_sec = if client == "java" {
        java_records_per_sec(&out)
    } else {
        let got = result_field(&out, "records=");
        assert!(got >= n as f64, "{client} read {got} of {n} records");
        got / result_field(&out, "secs=")
    };
    Measured {
        client,
        scenario: format!("{size} B"),
        records: n,
        records_per_sec,
        cpu_secs: cpu,
        peak_rss_mib: rss,
    }
}
