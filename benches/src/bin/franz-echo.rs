//! One transport benchmark process: a franz `TransportServer` echoing on
//! `--topic` and a `TransportClient` calling it `--requests` times with
//! `--concurrency` requests in flight, handling up to
//! `--partitions-concurrently` partitions at once. Prints
//! `RESULT requests=N secs=S failed=F p50_us=.. p99_us=..`.
//!
//! With `--floor`, it measures the broker's own floor instead: one record
//! at a time produced (acks all, linger 0) and read back by a consumer
//! assigned the partition, `--requests` times; the latency is one
//! produce-to-consume hop (a request and its reply make two).
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use franz_transport::Payload;
use std::sync::Arc;
use std::time::{Duration, Instant};

use franz_benches::arg;
use franz_transport::{
    RpcError, TransportClient, TransportClientConfig, TransportServer, TransportServerConfig,
};
use serde_json::{Value, json};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = arg("--bootstrap", "127.0.0.1:9092");
    let topic = arg("--topic", "bench.echo");
    let requests: usize = arg("--requests", "20000").parse()?;
    let concurrency: usize = arg("--concurrency", "64").parse()?;
    let partitions_concurrently: usize = arg("--partitions-concurrently", "1").parse()?;
    if std::env::args().any(|a| a == "--floor") {
        return floor(&bootstrap, &topic, requests).await;
    }
    let group = format!("franz-echo-{}", std::process::id());
    let mut config = TransportServerConfig::new(&bootstrap, &group);
    config.partitions_concurrently = partitions_concurrently;
    let server = TransportServer::builder(config)
        .message(&topic, |Payload(v): Payload<Value>| async move {
            Ok::<_, RpcError>(v)
        })
        .start()
        .await?;
    let client = Arc::new(
        TransportClient::connect(
            TransportClientConfig::new(&bootstrap, &format!("{group}-client")),
            &[&topic],
        )
        .await?,
    );
    let payload = json!({"id": 0, "pad": "x".repeat(100)});
    for _ in 0..100 {
        let _: Value = client.send(&topic, &payload).await?; // warm-up
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, topic, payload) = (Arc::clone(&client), topic.clone(), payload.clone());
        let n = requests / concurrency + usize::from(w < requests % concurrency);
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            let mut failed = 0usize;
            for _ in 0..n {
                let t = Instant::now();
                match client.send::<_, Value>(&topic, &payload).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        });
    }
    let (mut latencies, mut failed) = (Vec::new(), 0);
    while let Some(done) = workers.join_next().await {
        let (l, f) = done?;
        latencies.extend(l);
        failed += f;
    }
    report(requests, started.elapsed().as_secs_f64(), failed, latencies);
    if let Some(client) = Arc::into_inner(client) {
        client.close().await?;
    }
    server.shutdown(std::time::Duration::from_secs(30)).await?;
    Ok(())
}

/// Prints the `RESULT` line.
fn report(requests: usize, secs: f64, failed: usize, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::ZERO)
            .as_micros()
    };
    println!(
        "RESULT requests={requests} secs={secs:.3} failed={failed} p50_us={} p99_us={}",
        pct(0.5),
        pct(0.99)
    );
}

/// The broker floor: produce one record while a consumer task waits in
/// its fetch, and time it from the send to its arrival there; `n` times.
async fn floor(bootstrap: &str, topic: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    use franz_consumer::{Consumer, ConsumerConfig, TopicPartition};
    use franz_producer::{Producer, ProducerConfig, ProducerRecord};
    let producer = Producer::new(ProducerConfig {
        linger: Duration::ZERO,
        ..ProducerConfig::new(bootstrap)
    })
    .await?;
    let mut config = ConsumerConfig::new(bootstrap);
    config.fetch_max_wait = Duration::from_millis(100);
    // The topic is new: read it from the start, or the first record can be
    // written before the consumer's position is set and never arrive.
    config.auto_offset_reset = franz_consumer::OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    consumer.assign(&[TopicPartition::new(topic, 0)]).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match consumer.poll(Duration::from_secs(1)).await {
                Ok(records) => {
                    for r in records {
                        if tx.send((r.value, Instant::now())).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => eprintln!("floor consumer: {e}"),
            }
        }
    });
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n + 100 {
        let value = format!("{i:0>120}");
        let t = Instant::now();
        // Its arrival at the consumer is what counts, not the ack.
        let _delivery = producer
            .send(ProducerRecord::new(topic, value.clone()).with_partition(0))
            .await?;
        let arrived = loop {
            let (v, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .map_err(|_| format!("record {i} did not arrive within 30 s"))?
                .ok_or("the floor consumer stopped")?;
            if v.as_deref() == Some(value.as_bytes()) {
                break at;
            }
        };
        if i >= 100 {
            latencies.push(arrived - t); // after 100 warm-up rounds
        }
    }
    report(n, started.elapsed().as_secs_f64(), 0, latencies);
    reader.abort();
    producer.close(Duration::from_secs(5)).await?;
    Ok(())
}
