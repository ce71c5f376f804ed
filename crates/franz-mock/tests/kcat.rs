//! A foreign client against franz-mock: kcat (librdkafka 2.x, from Debian's
//! `kcat` package) produces with headers in every codec (idempotent in one
//! of them) and consumes what it wrote, through a topic it auto-creates and
//! topics created beforehand. The stored batches are kcat's own, in its codec.
//!
//! Needs `kcat` on PATH (CI installs it); without it the test fails, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use std::io::Write;
use std::process::{Command, Stdio};

use franz_mock::MockCluster;
use franz_protocol::compression::Compression;
use franz_protocol::record::{BatchDecodeOptions, RecordBatch};

fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("kcat is missing ({e}): install Debian's kcat package (apt-get install kcat)")
        });
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kcat_produces_and_consumes_with_headers_in_every_codec() {
    let mock = MockCluster::builder()
        .default_partitions(2)
        .start()
        .unwrap();
    let b = mock.bootstrap();
    for (codec, compression, create) in [
        ("none", Compression::None, false),
        ("gzip", Compression::Gzip, true),
        ("snappy", Compression::Snappy, true),
        ("lz4", Compression::Lz4, true),
        ("zstd", Compression::Zstd, true),
    ] {
        let topic = format!("kcat-{codec}");
        if create {
            mock.create_topic(&topic, 3).unwrap();
        }
        let input: String = (0..200).map(|i| format!("k{i}:value-{i}\n")).collect();
        let idempotent = if codec == "gzip" { "true" } else { "false" };
        kcat(
            &[
                "-P",
                "-b",
                &b,
                "-t",
                &topic,
                "-K",
                ":",
                "-H",
                "trace=abc",
                "-H",
                &format!("codec={codec}"),
                "-X",
                &format!("compression.type={codec}"),
                "-X",
                &format!("enable.idempotence={idempotent}"),
                "-X",
                "linger.ms=50",
            ],
            Some(&input),
        );
        let out = kcat(
            &[
                "-C",
                "-b",
                &b,
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%k|%s|%h\n",
            ],
            None,
        );
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_by_key(|l| l.split('|').next().and_then(|k| k[1..].parse::<u32>().ok()));
        assert_eq!(lines.len(), 200, "{codec}: {out}");
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(
                *line,
                format!("k{i}|value-{i}|trace=abc,codec={codec}"),
                "{codec}"
            );
        }
        // What the mock stored is kcat's own batches, in kcat's codec.
        let partitions = if create { 3 } else { 2 };
        let (mut batches, mut compressed) = (0, 0);
        for p in 0..partitions {
            for raw in mock.batches(&topic, p) {
                let mut bytes = raw.clone();
                let batch =
                    RecordBatch::decode(&mut bytes, &BatchDecodeOptions::default()).unwrap();
                // librdkafka sends a batch uncompressed when compressing
                // would not make it smaller.
                let c = batch.attributes.compression();
                assert!(
                    c == Some(compression) || c == Some(Compression::None),
                    "{codec}: {c:?}"
                );
                compressed += usize::from(c == Some(compression));
                assert_eq!(batch.producer_id >= 0, idempotent == "true", "{codec}");
                batches += 1;
            }
        }
        assert!(
            batches > 0 && compressed > 0,
            "{codec}: {compressed} of {batches} batches in the codec"
        );
    }
    assert!(
        mock.topics().contains(&"kcat-none".to_string()),
        "auto-created by kcat's metadata request"
    );
}
