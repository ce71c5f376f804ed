//! Encode loop for profilers (perf, cachegrind): `encode_probe [value_len] [franz|kp]`.
//! Instruction counts from `valgrind --tool=cachegrind` are the steadiest
//! comparison this noisy VM allows.
use bytes::{Bytes, BytesMut};
use franz_protocol::record::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let value_len: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let kp = args.next().is_some_and(|a| a == "kp");
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let headers = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    let v = Bytes::from(vec![b'x'; value_len]);
    let cap = 1000 * (value_len + 48);
    let kp_records: Vec<Record> = (0..1000)
        .map(|i| {
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
                offset: i,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: Some(Bytes::from_static(b"key-0001")),
                value: Some(v.clone()),
                headers: h,
            }
        })
        .collect();
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        if kp {
            let mut buf = BytesMut::with_capacity(cap);
            let o = RecordEncodeOptions {
                version: 2,
                compression: KpCompression::None,
            };
            RecordBatchEncoder::encode(&mut buf, kp_records.iter(), &o).unwrap();
            n += buf.len();
        } else {
            let mut b = RecordBatchBuilder::with_capacity(cap);
            for i in 0..1000 {
                b.push(1_700_000_000_000 + i, Some(b"key-0001"), Some(&v), &headers);
            }
            n += b.finish(&BatchMeta::default()).unwrap().len();
        }
    }
    println!(
        "{}: {:.1} ns/record ({n})",
        if kp { "kafka-protocol" } else { "franz" },
        t.elapsed().as_nanos() as f64 / (rounds * 1000) as f64
    );
}
