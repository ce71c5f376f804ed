//! One benchmark client process: librdkafka through the `rdkafka` crate
//! (feature `peers`). `BaseProducer` with a poll loop, its fastest API.
//! Prints `RESULT records=N secs=S failed=F`. With `--transaction N` it is
//! transactional and commits after every N records.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

#[cfg(feature = "peers")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use rdkafka::ClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

    // The driver asks whether this binary was built with the peer.
    if std::env::args().any(|a| a == "--probe") {
        return Ok(());
    }

    struct Counter(AtomicU64);
    impl ClientContext for Counter {}
    impl ProducerContext for Counter {
        type DeliveryOpaque = ();
        fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
            if r.is_err() {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    use franz_benches::arg;
    let records: u64 = arg("--records", "1000000").parse()?;
    let topic = arg("--topic", "bench");
    let transaction: u64 = arg("--transaction", "0").parse()?;
    let mut config = ClientConfig::new();
    if transaction > 0 {
        config.set(
            "transactional.id",
            format!("rdkafka-produce-{}", std::process::id()),
        );
    }
    let producer: BaseProducer<Counter> = config
        .set("bootstrap.servers", arg("--bootstrap", "127.0.0.1:9092"))
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("compression.type", arg("--compression", "none"))
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "65536")
        .create_with_context(Counter(AtomicU64::new(0)))?;
    let payload = franz_benches::payload_from_args();
    let timeout = Duration::from_secs(60);
    if transaction > 0 {
        producer.init_transactions(timeout)?;
    }
    let started = Instant::now();
    for i in 0..records {
        if transaction > 0 && i % transaction == 0 {
            if i > 0 {
                producer.commit_transaction(timeout)?;
            }
            producer.begin_transaction()?;
        }
        let mut record = BaseRecord::<(), [u8]>::to(&topic).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(Duration::ZERO);
    }
    if transaction > 0 {
        producer.commit_transaction(timeout)?;
    }
    producer.flush(Duration::from_secs(120))?;
    let secs = started.elapsed().as_secs_f64();
    let failed = producer.context().0.load(Ordering::Relaxed);
    println!("RESULT records={records} secs={secs:.3} failed={failed}");
    Ok(())
}

#[cfg(not(feature = "peers"))]
fn main() {
    eprintln!("rdkafka-produce needs `--features peers` (it builds librdkafka with cmake)");
    std::process::exit(2);
}
