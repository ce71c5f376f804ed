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
use std::time::Instant;

use franz_benches::{
    Measured, arg, client_command, create_topic, java_perf_tool, print_records_table, result_field,
    run_measured, sibling_bin,
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
            create_topic(&dist, &bootstrap, &topic, 6);
            let started = Instant::now();
            let (out, cpu, rss) = match client {
                "java" => {
                    let payload = work.join(format!("payload-{size}"));
                    std::fs::write(&payload, vec![b'x'; size]).expect("payload");
                    let mut cmd =
                        java_perf_tool(&dist, "org.apache.kafka.tools.ProducerPerformance");
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
                    run_measured(client_command(bin, &bootstrap, &topic, n, Some(size)))
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
    print_records_table(&results);
    let _ = std::fs::remove_dir_all(Path::new(&work));
}
