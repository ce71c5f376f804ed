//! Producer benchmark driver: one broker from the harness, then each client
//! as its own process, in turn, on a fresh topic per run: franz, librdkafka
//! (the `rdkafka` crate, when built with `--features peers`) and the Java
//! `ProducerPerformance` with a fixed payload file.
//!
//! Workloads: 100 B and 1 KiB records on 6 partitions; 100 B on one
//! partition (where batches in flight per partition, 5 as Java and
//! librdkafka, decide the rate); and 100 B in transactions of 10,000
//! records (franz and librdkafka; commit after every 10,000).
//!
//! Settings for every client: acks=all, idempotence on, no compression,
//! linger 5 ms, batch size 1 MiB. Measured per client: records/s (from the
//! client's own timing of its send phase), CPU-seconds per million records
//! (utime+stime of the process, all threads, from `getrusage` of the waited
//! child) and peak RSS (VmHWM, sampled). Each workload runs `--runs` times
//! (default 3) with the clients' order alternating; the table gives medians
//! and the ratio lines every run's franz/peer ratios and their median.
//!
//! `just bench-producer` (or `cargo run --release --bin producer-bench
//! [--features peers] -- --records 1000000 --runs 3`). `--only LABEL`
//! runs the workloads whose label contains it; `--franz-before PATH` adds
//! an older `franz-produce` binary as one more client.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use franz_benches::{
    Measured, arg, client_command, create_topic, java_perf_tool, print_records_table, result_field,
    run_measured, sibling_bin, summarize,
};
use franz_testkit::{KafkaCluster, KafkaDistribution, unique_topic};

fn parse_result(out: &str) -> f64 {
    assert_eq!(result_field(out, "failed="), 0.0, "records failed:\n{out}");
    result_field(out, "records=") / result_field(out, "secs=")
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

/// One workload of the table.
struct Workload {
    label: &'static str,
    size: usize,
    partitions: usize,
    /// Commit every this many records.
    transaction: Option<u64>,
    /// Records, as a fraction of `--records`.
    share: u64,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        label: "100 B",
        size: 100,
        partitions: 6,
        transaction: None,
        share: 1,
    },
    Workload {
        label: "1 KiB",
        size: 1024,
        partitions: 6,
        transaction: None,
        share: 3,
    },
    Workload {
        label: "100 B, 1 partition",
        size: 100,
        partitions: 1,
        transaction: None,
        share: 2,
    },
    Workload {
        label: "100 B, transactions of 10,000",
        size: 100,
        partitions: 6,
        transaction: Some(10_000),
        share: 2,
    },
];

#[allow(clippy::too_many_arguments)]
fn measure(
    client: &'static str,
    w: &Workload,
    n: u64,
    dist: &KafkaDistribution,
    bootstrap: &str,
    work: &Path,
    rdkafka: &Path,
) -> Measured {
    let topic = unique_topic(&format!("bench-{client}-{}", w.size));
    create_topic(dist, bootstrap, &topic, w.partitions);
    let started = Instant::now();
    let (out, cpu, rss) = match client {
        "java" => {
            let payload = work.join(format!("payload-{}", w.size));
            std::fs::write(&payload, vec![b'x'; w.size]).expect("payload");
            let mut cmd = java_perf_tool(dist, "org.apache.kafka.tools.ProducerPerformance");
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
            let bin = match name {
                "franz" => sibling_bin("franz-produce"),
                "franz (before)" => std::path::PathBuf::from(arg("--franz-before", "")),
                _ => rdkafka.to_path_buf(),
            };
            let mut cmd = client_command(bin, bootstrap, &topic, n, Some(w.size));
            if let Some(every) = w.transaction {
                cmd.args(["--transaction", &every.to_string()]);
            }
            run_measured(cmd)
        }
    };
    let rps = if client == "java" {
        java_records_per_sec(&out)
    } else {
        parse_result(&out)
    };
    eprintln!(
        "{client} {}: {rps:.0} rec/s, {cpu:.2} CPU-s, {rss:.0} MiB ({:?})",
        w.label,
        started.elapsed()
    );
    Measured {
        client,
        scenario: w.label.to_string(),
        records: n,
        records_per_sec: rps,
        cpu_secs: cpu,
        peak_rss_mib: rss,
    }
}

fn main() {
    let records: u64 = arg("--records", "1000000").parse().expect("--records");
    let runs: usize = arg("--runs", "3").parse().expect("--runs");
    let only = arg("--only", "");
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
    let mut ratio_lines = Vec::new();
    for w in WORKLOADS
        .iter()
        .filter(|w| only.is_empty() || w.label.contains(&only))
    {
        let n = records / w.share;
        let mut clients: Vec<&'static str> = vec!["franz"];
        if with_rdkafka {
            clients.push("librdkafka");
        }
        if w.transaction.is_none() {
            clients.push("java");
        }
        // An older franz-produce binary (`--franz-before PATH`), to measure
        // a change against the same broker in the same run.
        if !arg("--franz-before", "").is_empty() && w.transaction.is_none() {
            clients.push("franz (before)");
        }
        let mut per_run = Vec::new();
        for run in 0..runs {
            let mut order = clients.clone();
            if run % 2 == 1 {
                order.reverse();
            }
            per_run.push(
                order
                    .into_iter()
                    .map(|c| measure(c, w, n, &dist, &bootstrap, &work, &rdkafka))
                    .collect::<Vec<_>>(),
            );
        }
        let (medians, lines) = summarize(&per_run, &clients);
        results.extend(medians);
        ratio_lines.extend(lines);
    }
    println!("medians of {runs} alternated runs:");
    print_records_table(&results);
    println!();
    for l in &ratio_lines {
        println!("{l}");
    }
    let _ = std::fs::remove_dir_all(Path::new(&work));
}
