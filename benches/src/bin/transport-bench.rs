//! Transport benchmark driver: request-reply over Kafka, franz against
//! NestJS. One broker from the harness; each peer runs as its own process
//! holding both its server and its client (franz: `franz-echo`; NestJS:
//! `tests/node/nest-echo-bench.mjs` with `@nestjs/microservices` 11.2 on
//! KafkaJS 2.2.4), echoing a ~120-byte JSON payload.
//!
//! Three setups: one request in flight on a 1-partition topic; 64 in
//! flight on it; and 64 in flight on a 4-partition topic with both servers
//! handling the 4 partitions at once (franz `partitions_concurrently`,
//! KafkaJS `partitionsConsumedConcurrently`, both 4; the default of both is
//! 1). Measured per peer and setup: requests/s, p50 and p99 latency, and
//! CPU-seconds per thousand requests (utime+stime of the process, all
//! threads). Ratios are franz/NestJS.
//!
//! Each setup runs `--runs` times (default 3), the peers alternating which
//! goes first, and the table holds the medians. Beside them, the broker's
//! floor: one produce-to-consume hop timed by `franz-echo --floor` (a
//! producer and a consumer waiting in its fetch); a request and its reply
//! are two hops.
//!
//! `just bench-transport` (or `cargo run --release --manifest-path
//! benches/Cargo.toml --bin transport-bench -- --requests 20000 --runs 3`).

use std::process::Command;

use franz_benches::{arg, create_topic, ratio_cells, result_field, run_measured, sibling_bin};
use franz_testkit::{KafkaCluster, KafkaDistribution, node, unique_topic};

#[derive(Clone)]
struct Measured {
    peer: &'static str,
    concurrency: usize,
    partitions: usize,
    requests: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_secs: f64,
}

fn main() {
    let requests: usize = arg("--requests", "20000").parse().expect("--requests");
    let runs: usize = arg("--runs", "3").parse().expect("--runs");
    let cluster = KafkaCluster::builder()
        .heap_mb(1024)
        .exclusive(false)
        .start_blocking()
        .expect("broker");
    let bootstrap = cluster.bootstrap();
    let dist = KafkaDistribution::resolve().expect("kafka jars");
    let node_dir = node::ensure_npm_packages().expect("npm packages (NestJS, KafkaJS)");
    let mut all: Vec<Measured> = Vec::new();
    let mut floors: Vec<(f64, f64)> = Vec::new();
    for run in 0..runs {
        let topic = unique_topic("bench.floor");
        create_topic(&dist, &bootstrap, &topic, 1);
        let mut cmd = Command::new(sibling_bin("franz-echo"));
        cmd.args(["--floor", "--bootstrap", &bootstrap, "--topic", &topic]);
        cmd.args(["--requests", "1000"]);
        let (out, _, _) = run_measured(cmd);
        floors.push((result_field(&out, "p50_us="), result_field(&out, "p99_us=")));
        for (concurrency, partitions) in [(1usize, 1usize), (64, 1), (64, 4)] {
            let n = if concurrency == 1 {
                requests / 10
            } else {
                requests
            };
            let order = if run % 2 == 0 {
                ["franz", "nestjs"]
            } else {
                ["nestjs", "franz"]
            };
            for peer in order {
                let m = measure(
                    &dist,
                    &bootstrap,
                    &node_dir,
                    peer,
                    concurrency,
                    partitions,
                    n,
                );
                eprintln!(
                    "run {run}: {peer} c={concurrency} p={partitions}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.2} CPU-s",
                    m.per_sec,
                    m.p50_us / 1000.0,
                    m.p99_us / 1000.0,
                    m.cpu_secs
                );
                all.push(m);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Medians per peer and setup, field by field.
    let mut results: Vec<Measured> = Vec::new();
    for m in &all {
        if results.iter().any(|r| {
            r.peer == m.peer && r.concurrency == m.concurrency && r.partitions == m.partitions
        }) {
            continue;
        }
        let same: Vec<&Measured> = all
            .iter()
            .filter(|r| {
                r.peer == m.peer && r.concurrency == m.concurrency && r.partitions == m.partitions
            })
            .collect();
        let field = |f: fn(&Measured) -> f64| median(same.iter().map(|r| f(r)).collect());
        results.push(Measured {
            per_sec: field(|r| r.per_sec),
            p50_us: field(|r| r.p50_us),
            p99_us: field(|r| r.p99_us),
            cpu_secs: field(|r| r.cpu_secs),
            ..m.clone()
        });
    }
    let floor_p50 = median(floors.iter().map(|f| f.0).collect());
    let floor_p99 = median(floors.iter().map(|f| f.1).collect());
    println!(
        "Medians of {runs} alternated runs. Broker floor, one produce-to-consume hop: p50 {:.2} ms, p99 {:.2} ms (a request and its reply are two hops: {:.2} ms at p50).\n",
        floor_p50 / 1000.0,
        floor_p99 / 1000.0,
        2.0 * floor_p50 / 1000.0
    );
    println!(
        "| in flight | partitions | peer | requests | requests/s | p50 ms | p99 ms | CPU-s per 1k requests | req/s franz/NestJS | p50 franz/NestJS | p99 franz/NestJS | CPU franz/NestJS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        let franz = results
            .iter()
            .find(|f| {
                f.peer == "franz" && f.concurrency == r.concurrency && f.partitions == r.partitions
            })
            .expect("franz row");
        let cpu_per_k = |m: &Measured| m.cpu_secs / (m.requests as f64 / 1000.0);
        let (rate, cpu) = ratio_cells(
            r.peer == "franz",
            (franz.per_sec, r.per_sec),
            (cpu_per_k(franz), cpu_per_k(r)),
        );
        let (p50, p99) = if r.peer == "franz" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.2}", franz.p50_us / r.p50_us),
                format!("{:.2}", franz.p99_us / r.p99_us),
            )
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {rate} | {p50} | {p99} | {cpu} |",
            r.concurrency,
            r.partitions,
            r.peer,
            r.requests,
            r.per_sec,
            r.p50_us / 1000.0,
            r.p99_us / 1000.0,
            cpu_per_k(r)
        );
    }
}

/// One peer's run of one setup, on fresh topics.
fn measure(
    dist: &KafkaDistribution,
    bootstrap: &str,
    node_dir: &std::path::Path,
    peer: &'static str,
    concurrency: usize,
    partitions: usize,
    n: usize,
) -> Measured {
    let topic = unique_topic(&format!("bench.echo.{peer}"));
    for (t, parts) in [(topic.clone(), partitions), (format!("{topic}.reply"), 1)] {
        create_topic(dist, bootstrap, &t, parts);
    }
    let mut cmd = if peer == "franz" {
        let mut c = Command::new(sibling_bin("franz-echo"));
        c.args(["--bootstrap", bootstrap, "--topic", &topic]);
        c.args(["--requests", &n.to_string()]);
        c.args(["--concurrency", &concurrency.to_string()]);
        c.args(["--partitions-concurrently", &partitions.to_string()]);
        c
    } else {
        let mut c = Command::new("node");
        c.current_dir(node_dir).arg("nest-echo-bench.mjs");
        c.args([bootstrap, &topic, &n.to_string()]);
        c.args([&concurrency.to_string(), &partitions.to_string()]);
        c
    };
    cmd.env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    let (out, cpu, _) = run_measured(cmd);
    assert_eq!(
        result_field(&out, "failed="),
        0.0,
        "{peer}: requests failed:\n{out}"
    );
    Measured {
        peer,
        concurrency,
        partitions,
        requests: n,
        per_sec: n as f64 / result_field(&out, "secs="),
        p50_us: result_field(&out, "p50_us="),
        p99_us: result_field(&out, "p99_us="),
        cpu_secs: cpu,
    }
}
