//! Differential test of franz's codec against the Java client's own generated
//! message classes (`org.apache.kafka.common.message.*Data` from the pinned
//! kafka-clients on the harness classpath).
//!
//! For every API, every version franz speaks, request and response, several
//! random valid messages: franz encodes; Kafka's class must read the bytes
//! exactly and write back the very same bytes; franz then decodes Kafka's
//! bytes to an equal message. A self round-trip cannot catch a field franz
//! reads and writes wrongly in the same way; this can.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use franz_protocol::messages::{AnyRequest, AnyResponse, ApiKey};
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::sample::SampleGen;
use franz_testkit::KafkaDistribution;

const SAMPLES_PER_VERSION: u64 = 6;

enum Case {
    Request(ApiKey, i16, AnyRequest, Bytes),
    Response(ApiKey, i16, AnyResponse, Bytes),
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn franz_and_the_java_client_encode_every_message_identically() {
    let dist = KafkaDistribution::resolve().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/ProtocolDifferential.java");
    let classes = dist.compile_java(&source).unwrap();

    let mut cases = Vec::new();
    let mut input = String::new();
    for &api in ApiKey::ALL {
        let (lo, hi) = api.versions();
        for version in lo..=hi {
            for seed in 0..SAMPLES_PER_VERSION {
                let mut g =
                    SampleGen::new(seed * 1_000_003 + (api.key() as u64) * 101 + version as u64);
                let req = AnyRequest::sample(api, &mut g, version);
                let mut buf = BytesMut::new();
                req.encode(&mut buf, version).unwrap();
                let _ = writeln!(input, "{}Request {version} {}", api.name(), hex(&buf));
                cases.push(Case::Request(api, version, req, buf.freeze()));

                let resp = AnyResponse::sample(api, &mut g, version);
                let mut buf = BytesMut::new();
                resp.encode(&mut buf, version).unwrap();
                let _ = writeln!(input, "{}Response {version} {}", api.name(), hex(&buf));
                cases.push(Case::Response(api, version, resp, buf.freeze()));
            }
        }
    }

    let output = dist
        .run_java(
            &classes,
            "ProtocolDifferential",
            input.into_bytes(),
            Duration::from_secs(600),
        )
        .unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one answer per case");

    let mut failures = Vec::new();
    let mut unknown_to_java = 0usize;
    for (case, line) in cases.iter().zip(&lines) {
        let (label, ours) = match case {
            Case::Request(api, v, _, b) => (format!("{}Request v{v}", api.name()), b),
            Case::Response(api, v, _, b) => (format!("{}Response v{v}", api.name()), b),
        };
        let Some(java_hex) = line.strip_prefix("OK ") else {
            // Under `just compat` an older Java client does not know every
            // version franz speaks (Kafka 3.9 stops at Produce v11), or knows
            // an unreleased draft of it (3.9's ListOffsets v10 and EndTxn v5):
            // those cases are counted, not compared. On the pinned release
            // Java must read every case.
            if !franz_testkit::kafka_at_least((4, 1)) {
                unknown_to_java += 1;
                continue;
            }
            failures.push(format!(
                "{label}: Java could not read franz's bytes: {line}\n  franz: {}",
                hex(ours)
            ));
            continue;
        };
        let java = Bytes::from(unhex(java_hex));
        if java != ours {
            failures.push(format!(
                "{label}: encodings differ\n  franz: {}\n  java:  {java_hex}",
                hex(ours)
            ));
            continue;
        }
        // And franz reads Java's bytes back to the same message.
        let same = match case {
            Case::Request(api, v, m, _) => {
                AnyRequest::decode(api.key(), *v, java, DecodeLimits::default()).as_ref() == Ok(m)
            }
            Case::Response(api, v, m, _) => {
                AnyResponse::decode(api.key(), *v, java, DecodeLimits::default()).as_ref() == Ok(m)
            }
        };
        if !same {
            failures.push(format!("{label}: franz decodes Java's bytes differently"));
        }
    }
    if unknown_to_java > 0 {
        eprintln!(
            "{unknown_to_java} of {} cases Kafka {}'s Java client cannot read were not compared",
            cases.len(),
            franz_testkit::kafka_version()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{} messages matched the Java client byte for byte",
        cases.len()
    );
}
