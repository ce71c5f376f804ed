//! Latency floor: one record's produce-to-consume p50/p99, timed as Kafka's `EndToEndLatency` does.
//! That is: send, wait for the ack, poll until the record arrives; and again with the
//! consumer's fetch already waiting at the broker. Prints µs.
//! Run: `e2e_latency <bootstrap> <topic> [records]`. Kafka's own tool gives a comparison:
//! `EndToEndLatency <bootstrap> <topic> 2000 all 100`.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure
use std::time::{Duration, Instant};

use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "e2e".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let producer = Producer::new(ProducerConfig {
        linger: Duration::ZERO,
        ..ProducerConfig::new(&bootstrap)
    })
    .await?;
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Latest;
    let mut consumer = Consumer::new(config).await?;
    consumer.assign_topic(&topic).await?;
    consumer.poll(Duration::from_millis(100)).await?;
    let (mut ack, mut e2e) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t = Instant::now();
        producer
            .send(ProducerRecord::new(topic.as_str(), format!("{i:0100}")))
            .await?
            .await?;
        ack.push(t.elapsed().as_micros());
        loop {
            if !consumer.poll(Duration::from_secs(5)).await?.is_empty() {
                break;
            }
        }
        e2e.push(t.elapsed().as_micros());
    }
    // Parked: the consumer polls all along, so its fetch waits at the broker
    // when the record is appended (as a server waiting for requests does).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let reader = tokio::spawn(async move {
        loop {
            match consumer.poll(Duration::from_millis(500)).await {
                Ok(records) => {
                    for _ in records {
                        if tx.send(Instant::now()).is_err() {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    });
    let mut parked = Vec::new();
    for i in 0..n {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        // Not waiting for the ack: the arrival is what is timed.
        let _ack = producer
            .send(ProducerRecord::new(topic.as_str(), format!("{i:0100}")))
            .await?;
        if let Some(arrived) = rx.recv().await {
            parked.push(arrived.duration_since(t).as_micros());
        }
    }
    reader.abort();
    for (label, v) in [
        ("produce ack", &mut ack),
        ("end to end", &mut e2e),
        ("end to end, fetch parked", &mut parked),
    ] {
        v.sort_unstable();
        println!(
            "{label}: p50 {} µs, p99 {} µs",
            v[v.len() / 2],
            v[v.len() * 99 / 100]
        );
    }
    Ok(())
}
