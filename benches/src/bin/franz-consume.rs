//! One benchmark client process: franz's consumer. Reads `--records`
//! records from every partition of `--topic`, from the beginning, touching
//! each key and value, and prints `RESULT records=N secs=S bytes=B`.
//!
//! Settings match the other clients: Java's fetch defaults (fetch.min.bytes
//! 1, fetch.max.wait 500 ms, 1 MiB per partition, 50 MiB per fetch), CRC
//! checked, no group (partitions assigned), timing from the first poll.
//! `--sessions false` turns KIP-227 fetch sessions off.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use std::time::{Duration, Instant};

use franz_benches::arg;
use franz_consumer::{Consumer, ConsumerConfig, OffsetReset};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = arg("--bootstrap", "127.0.0.1:9092");
    let topic = arg("--topic", "bench");
    let records: u64 = arg("--records", "1000000").parse()?;
    let sessions: bool = arg("--sessions", "true").parse()?;
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_sessions = sessions;
    let mut consumer = Consumer::new(config).await?;
    consumer.assign_topic(&topic).await?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < records {
        let batch = consumer.poll(Duration::from_secs(1)).await?;
        if batch.is_empty() && started.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {n} of {records} records after 300 s").into());
        }
        for r in &batch {
            bytes += (r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())) as u64;
        }
        n += batch.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT records={n} secs={secs:.3} bytes={bytes}");
    Ok(())
}
