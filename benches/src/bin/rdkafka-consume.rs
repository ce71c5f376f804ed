//! One benchmark client process: librdkafka's consumer through the `rdkafka`
//! crate (feature `peers`). `BaseConsumer` with assigned partitions from the
//! beginning, polled in a loop, touching each key and value. Prints
//! `RESULT records=N secs=S bytes=B`.
//!
//! Settings match the other clients: Java's fetch defaults, CRCs checked
//! (`check.crcs`, off by default in librdkafka), timing from the first poll.
//! One setting favours librdkafka: `fetch.queue.backoff.ms` is 10, not its
//! default 1000. With the default it stops fetching for a second each time
//! its prefetch queue fills, which cut it to 0.4 M records/s at 100 B here
//! (2.2 M with 10 ms); the benchmark measures the client at its best.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

#[cfg(feature = "peers")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::{Duration, Instant};

    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    if std::env::args().any(|a| a == "--probe") {
        return Ok(());
    }
    use franz_benches::arg;
    let records: u64 = arg("--records", "1000000").parse()?;
    let topic = arg("--topic", "bench");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", arg("--bootstrap", "127.0.0.1:9092"))
        .set(
            "group.id",
            format!("franz-bench-rdkafka-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "true")
        .set("fetch.queue.backoff.ms", "10") // see above
        .set("fetch.min.bytes", "1")
        .set("fetch.wait.max.ms", "500")
        .set("max.partition.fetch.bytes", "1048576")
        .set("fetch.max.bytes", "52428800")
        .create()?;
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                bytes +=
                    (m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len)) as u64;
                n += 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None if started.elapsed() > Duration::from_secs(300) => {
                return Err(format!("only {n} of {records} records after 300 s").into());
            }
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT records={n} secs={secs:.3} bytes={bytes}");
    Ok(())
}

#[cfg(not(feature = "peers"))]
fn main() {
    eprintln!("rdkafka-consume needs `--features peers` (it builds librdkafka with cmake)");
    std::process::exit(2);
}
