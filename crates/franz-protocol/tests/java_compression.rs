//! Compression interop with the Java client, both ways, for every codec:
//! batches the Java producer (`ProducerPerformance`) compressed decode with
//! franz, and batches franz compressed are read by the Java console
//! consumer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use std::time::Duration;

use common::RawConn;
use franz_protocol::Message;
use franz_protocol::compression::Compression;
use franz_protocol::messages::*;
use franz_protocol::primitives::{DecodeLimits, Uuid};
use franz_protocol::record::{
    BatchDecodeOptions, BatchMeta, Header, RecordBatchBuilder, RecordBatches,
};
use franz_test_support::bootstrap_blocking;
use franz_testkit::{KafkaDistribution, unique_topic};

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn fetch_all(stream: &mut RawConn, topic_id: Uuid, want: usize) -> Vec<(Compression, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < want {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {want} records",
            out.len()
        );
        let records = stream.fetch(topic_id, offset, 1 << 20);
        for batch in RecordBatches::new(records, BatchDecodeOptions::default()) {
            let batch = batch.unwrap();
            let codec = batch.attributes.compression().unwrap();
            let recs = batch.records(&DecodeLimits::default()).unwrap();
            for r in &recs {
                let r = r.unwrap();
                if r.offset >= offset {
                    out.push((codec, r.value.unwrap().to_vec()));
                    offset = r.offset + 1;
                }
            }
        }
    }
    out
}

#[test]
fn franz_decodes_what_the_java_producer_compressed() {
    let bootstrap = bootstrap_blocking();
    let dist = KafkaDistribution::resolve().unwrap();
    let mut stream = RawConn::connect(&bootstrap, "franz-compression");
    for codec in CODECS {
        let topic = unique_topic(&format!("java-{}", codec.name()));
        let topic_id = stream.create_topic(&topic, 1);
        dist.run_tool(
            "org.apache.kafka.tools.ProducerPerformance",
            &[
                "--topic",
                &topic,
                "--num-records",
                "500",
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--producer-props",
                &format!("bootstrap.servers={bootstrap}"),
                &format!("compression.type={}", codec.name()),
                "linger.ms=20",
                "batch.size=16384",
            ],
            Duration::from_secs(180),
        )
        .unwrap();
        let got = fetch_all(&mut stream, topic_id, 500);
        assert_eq!(got.len(), 500, "{codec:?}");
        assert!(
            got.iter().all(|(c, v)| *c == codec && v.len() == 100),
            "{codec:?}"
        );
    }
}

#[test]
fn the_java_consumer_reads_what_franz_compressed() {
    if franz_testkit::real_broker_only(
        "raw Produce at every version franz speaks (v12 is not served by franz-mock)",
    ) {
        return;
    }
    if franz_testkit::needs_kafka(
        (4, 0),
        "raw Produce at every version franz speaks, up to Kafka 4.x's (v12)",
    ) {
        return;
    }
    let bootstrap = bootstrap_blocking();
    let dist = KafkaDistribution::resolve().unwrap();
    let mut stream = RawConn::connect(&bootstrap, "franz-compression");
    for codec in CODECS {
        let topic = unique_topic(&format!("franz-{}", codec.name()));
        stream.create_topic(&topic, 1);
        let mut b = RecordBatchBuilder::new();
        for i in 0..50 {
            let headers = [
                Header::new("codec", codec.name()),
                Header::new("codec", "again"),
            ];
            b.push(
                1_700_000_000_000 + i,
                Some(format!("k{i}").as_bytes()),
                Some(format!("v{i}-{}", "z".repeat(40)).as_bytes()),
                &headers,
            );
        }
        let batch = b
            .finish(&BatchMeta {
                compression: codec,
                ..BatchMeta::default()
            })
            .unwrap();
        stream.produce(&topic, ProduceRequest::MAX_VERSION, batch);
        let out = dist
            .run_tool(
                "org.apache.kafka.tools.consumer.ConsoleConsumer",
                &[
                    "--bootstrap-server",
                    &bootstrap,
                    "--topic",
                    &topic,
                    "--from-beginning",
                    "--max-messages",
                    "50",
                    "--timeout-ms",
                    "60000",
                    "--property",
                    "print.key=true",
                    "--property",
                    "print.headers=true",
                ],
                Duration::from_secs(120),
            )
            .unwrap();
        let lines: Vec<&str> = out.lines().filter(|l| l.contains("\tk")).collect();
        assert_eq!(lines.len(), 50, "{codec:?}:\n{out}");
        for (i, line) in lines.iter().enumerate() {
            assert!(
                line.contains(&format!("codec:{},codec:again", codec.name())),
                "{line}"
            );
            assert!(line.contains(&format!("\tk{i}\tv{i}-")), "{line}");
        }
    }
}
