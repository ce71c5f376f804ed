//! One benchmark client process: franz's producer. Sends `--records`
//! records of `--size` bytes (one fixed payload, null keys) to `--topic`
//! and prints `RESULT records=N secs=S failed=F`. With `--transaction N`
//! it is transactional and commits after every N records.
//!
//! `--payload-file F` sends F's bytes as every value instead, and
//! `--compression lz4|zstd|...` compresses batches. `--create-partitions N`
//! first creates the topic with N partitions, and deletes it at the end
//! (for profiling by hand, outside the driver, which manages its own topics).
//!
//! Settings match the other clients: acks=all, idempotence on, no
//! compression, linger 5 ms, batch size 1 MiB, 64 MiB of buffer.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use std::time::{Duration, Instant};

use bytes::Bytes;
use franz_benches::arg;
use franz_producer::{Producer, ProducerConfig, ProducerRecord};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = arg("--bootstrap", "127.0.0.1:9092");
    let topic: std::sync::Arc<str> = arg("--topic", "bench").into();
    let records: u64 = arg("--records", "1000000").parse()?;
    let compression = arg("--compression", "none");
    let transaction: u64 = arg("--transaction", "0").parse()?;
    let in_flight: usize = arg("--in-flight", "5").parse()?;
    let config = ProducerConfig {
        linger: Duration::from_millis(5),
        batch_size: 1024 * 1024,
        buffer_memory: 64 * 1024 * 1024,
        max_in_flight_requests_per_connection: in_flight,
        compression_type: franz_protocol::compression::Compression::from_name(&compression)
            .ok_or_else(|| format!("unknown --compression {compression}"))?,
        transactional_id: (transaction > 0)
            .then(|| format!("franz-produce-{}", std::process::id())),
        ..ProducerConfig::new(&bootstrap)
    };
    let create: i32 = arg("--create-partitions", "0").parse()?;
    // The admin for a topic of its own: created now, deleted at the end.
    let own_topic = if create > 0 {
        let client =
            franz_client::Client::connect(franz_client::ClientConfig::new(&bootstrap)).await?;
        let admin = franz_client::Admin::new(client);
        let new = franz_client::admin::NewTopic::new(topic.to_string(), create, 1);
        for (name, result) in admin.create_topics(vec![new], false).await? {
            result.map_err(|e| format!("creating {name}: {e}"))?;
        }
        Some(admin)
    } else {
        None
    };
    let producer = Producer::new(config).await?;
    if transaction > 0 {
        producer.init_transactions().await?;
    }
    let payload = Bytes::from(franz_benches::payload_from_args());
    let started = Instant::now();
    let mut window = std::collections::VecDeque::with_capacity(200_000);
    let mut failed = 0u64;
    for i in 0..records {
        if transaction > 0 && i % transaction == 0 {
            if i > 0 {
                producer.commit_transaction().await?;
            }
            producer.begin_transaction()?;
        }
        let rec = ProducerRecord {
            topic: std::sync::Arc::clone(&topic),
            value: Some(payload.clone()),
            ..ProducerRecord::default()
        };
        window.push_back(producer.send(rec).await?);
        if window.len() >= 200_000 {
            for f in window.drain(..100_000) {
                failed += u64::from(f.await.is_err());
            }
        }
    }
    if transaction > 0 {
        producer.commit_transaction().await?;
    }
    for f in window {
        failed += u64::from(f.await.is_err());
    }
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT records={records} secs={secs:.3} failed={failed}");
    producer.close(Duration::from_secs(30)).await?;
    if let Some(admin) = own_topic {
        for (name, result) in admin.delete_topics(&[&topic]).await? {
            result.map_err(|e| format!("deleting {name}: {e}"))?;
        }
    }
    Ok(())
}
