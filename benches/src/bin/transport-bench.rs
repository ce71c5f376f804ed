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
//! `just bench-transport` (or `cargo run --release --manifest-path
//! benches/Cargo.toml --bin transport-bench -- --requests 20000`).

use std::process::Command;

use franz_benches::{arg, create_topic, ratio_cells, result_field, run_measured, sibling_bin};
use franz_testkit::{KafkaCluster, KafkaDistribution, node, unique_topic};

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
    let cluster = KafkaCluster::builder()
        .heap_mb(1024)
        .exclusive(false)
        .start_blocking()
        .expect("broker");
    let bootstrap = cluster.bootstrap();
    let dist = KafkaDistribution::resolve().expect("kafka jars");
    let node_dir = node::ensure_npm_packages().expect("npm packages (NestJS, KafkaJS)");
    let mut results = Vec::new();
    for (concurrency, partitions) in [(1usize, 1usize), (64, 1), (64, 4)] {
        let n = if concurrency == 1 {
            requests / 10
        } else {
            requests
        };
        for peer in ["franz", "nestjs"] {
            let topic = unique_topic(&format!("bench.echo.{peer}"));
            for (t, parts) in [(topic.clone(), partitions), (format!("{topic}.reply"), 1)] {
                create_topic(&dist, &bootstrap, &t, parts);
            }
            let mut cmd = if peer == "franz" {
                Command::new(sibling_bin("franz-echo"))
            } else {
                let mut c = Command::new("node");
                c.current_dir(&node_dir).arg("nest-echo-bench.mjs");
                c
            };
            if peer == "franz" {
                cmd.args([
                    "--bootstrap",
                    &bootstrap,
                    "--topic",
                    &topic,
                    "--requests",
                    &n.to_string(),
                    "--concurrency",
                    &concurrency.to_string(),
                    "--partitions-concurrently",
                    &partitions.to_string(),
                ]);
            } else {
                cmd.args([
                    &bootstrap,
                    &topic,
                    &n.to_string(),
                    &concurrency.to_string(),
                    &partitions.to_string(),
                ]);
            }
            let (out, cpu, _) = run_measured(cmd);
            assert_eq!(
                result_field(&out, "failed="),
                0.0,
                "{peer}: requests failed:\n{out}"
            );
            let m = Measured {
                peer,
                concurrency,
                partitions,
                requests: n,
                per_sec: n as f64 / result_field(&out, "secs="),
                p50_us: result_field(&out, "p50_us="),
                p99_us: result_field(&out, "p99_us="),
                cpu_secs: cpu,
            };
            eprintln!(
                "{peer} c={concurrency} p={partitions}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {cpu:.2} CPU-s",
                m.per_sec,
                m.p50_us / 1000.0,
                m.p99_us / 1000.0
            );
            results.push(m);
        }
    }
    println!(
        "| in flight | partitions | peer | requests | requests/s | p50 ms | p99 ms | CPU-s per 1k requests | req/s franz/NestJS | CPU franz/NestJS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
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
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.3} | {rate} | {cpu} |",
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
