//! Encode, franz vs kafka-protocol, in interleaved A/B medians: why `record/encode.rs`'s `SMALL_FIELD` is 16.
//! With it, wider fixed-size moves for values up to 128 B measured slower than `memcpy` (372def7).
//! Alternating single batches and taking medians (and p5) cancels the drift a noisy 2-core VM
//! adds between two criterion groups. Run: `encode_ratio [value_len]` (default 100).
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure
use bytes::{Bytes, BytesMut};
use franz_protocol::record::{BatchMeta, Header, RecordBatchBuilder};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let value_len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let headers = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    let data: Vec<(Vec<u8>, Vec<u8>)> = (0..1000)
        .map(|i| (format!("key-{i:04}").into_bytes(), vec![b'x'; value_len]))
        .collect();
    let kp: Vec<Record> = data
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let mut h = kafka_protocol::indexmap::IndexMap::new();
            h.insert(
                StrBytes::from_static_str("trace-id"),
                Some(Bytes::from_static(b"0123456789abcdef")),
            );
            Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::copy_from_slice(k)),
                value: Some(Bytes::copy_from_slice(v)),
                headers: h,
            }
        })
        .collect();
    let franz = |cap: usize| {
        let mut b = RecordBatchBuilder::with_capacity(cap);
        for (i, (k, v)) in data.iter().enumerate() {
            b.push(1_700_000_000_000 + i as i64, Some(k), Some(v), &headers);
        }
        b.finish(&BatchMeta::default()).unwrap()
    };
    let cap = franz(0).len();
    let kpe = || {
        let mut buf = BytesMut::with_capacity(cap);
        let o = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, kp.iter(), &o).unwrap();
        buf.freeze()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..4000 {
        let t = Instant::now();
        black_box(franz(cap));
        a.push(t.elapsed().as_nanos());
        let t = Instant::now();
        black_box(kpe());
        b.push(t.elapsed().as_nanos());
    }
    a.sort_unstable();
    b.sort_unstable();
    // Medians, and the 5th percentile: the fastest runs are the ones the
    // neighbours on this VM disturbed least.
    for (label, q) in [("median", a.len() / 2), ("p5", a.len() / 20)] {
        let (ma, mb) = (a[q], b[q]);
        println!(
            "{value_len} B {label}: franz {:.1} µs, kafka-protocol {:.1} µs, ratio {:.2}x",
            ma as f64 / 1000.0,
            mb as f64 / 1000.0,
            mb as f64 / ma as f64
        );
    }
}
