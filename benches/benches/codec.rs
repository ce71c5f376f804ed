//! Record-batch encode and decode: franz-protocol against the kafka-protocol
//! crate, same workloads, same run.
//!
//! Workloads: 1,000 records with an 8-byte key, a 100 B or 1 KiB value and
//! one header, uncompressed and lz4. Decode walks every record and touches
//! key, value and every header, with CRC verification on for both (the
//! kafka-protocol decoder always verifies). Throughput is in bytes of the
//! encoded batch, so criterion prints GB/s; time per iteration / 1000 is
//! ns per record.
//!
//! Run: `just bench-codec` (or `cargo bench --manifest-path benches/Cargo.toml --bench codec`).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use franz_protocol::compression::Compression;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::{
    BatchDecodeOptions, BatchMeta, Header, RecordBatch, RecordBatchBuilder,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KpTimestampType,
};

const RECORDS: usize = 1000;

struct Workload {
    name: String,
    value_len: usize,
    compression: Compression,
}

fn workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for value_len in [100, 1024] {
        for compression in [Compression::None, Compression::Lz4] {
            out.push(Workload {
                name: format!("{}B-{}", value_len, compression.name()),
                value_len,
                compression,
            });
        }
    }
    out
}

fn values(value_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..RECORDS)
        .map(|i| {
            let key = format!("key-{i:04}").into_bytes();
            // Compressible but not trivial: a counter in repeating text.
            let value: Vec<u8> = format!("{i:08} payload text ")
                .bytes()
                .cycle()
                .take(value_len)
                .collect();
            (key, value)
        })
        .collect()
}

/// Both encoders get the same up-front capacity: the size of the encoded
/// batch. Growing from a guess would measure reallocation, not encoding.
fn franz_encode(
    data: &[(Vec<u8>, Vec<u8>)],
    headers: &[Header],
    compression: Compression,
    capacity: usize,
) -> Bytes {
    let mut b = RecordBatchBuilder::with_capacity(capacity);
    for (i, (k, v)) in data.iter().enumerate() {
        b.push(1_700_000_000_000 + i as i64, Some(k), Some(v), headers);
    }
    b.finish(&BatchMeta {
        compression,
        ..BatchMeta::default()
    })
    .expect("encode")
}

fn franz_decode(wire: &Bytes) -> usize {
    let mut buf = wire.clone();
    let batch = RecordBatch::decode(&mut buf, &BatchDecodeOptions::default()).expect("decode");
    let records = batch.records(&DecodeLimits::default()).expect("records");
    let mut touched = 0;
    for r in &records {
        let r = r.expect("record");
        touched += r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len);
        for h in r.headers() {
            touched += h.key.len() + h.value.map_or(0, <[u8]>::len);
        }
    }
    touched
}

fn kp_records(data: &[(Vec<u8>, Vec<u8>)]) -> Vec<KpRecord> {
    data.iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("trace-id"),
                Some(Bytes::from_static(b"0123456789abcdef")),
            );
            KpRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: KpTimestampType::Creation,
                offset: i as i64,
                // kafka-protocol starts a new batch whenever offset - sequence changes.
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::copy_from_slice(k)),
                value: Some(Bytes::copy_from_slice(v)),
                headers,
            }
        })
        .collect()
}

fn kp_encode(records: &[KpRecord], compression: Compression, capacity: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(capacity);
    let options = RecordEncodeOptions {
        version: 2,
        compression: match compression {
            Compression::Lz4 => KpCompression::Lz4,
            _ => KpCompression::None,
        },
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("kp encode");
    buf.freeze()
}

fn kp_decode(wire: &Bytes) -> usize {
    let mut buf = wire.clone();
    let set = RecordBatchDecoder::decode(&mut buf).expect("kp decode");
    let mut touched = 0;
    for r in &set.records {
        touched += r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len);
        for (k, v) in &r.headers {
            touched += k.len() + v.as_ref().map_or(0, Bytes::len);
        }
    }
    touched
}

fn bench(c: &mut Criterion) {
    let headers = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    for w in workloads() {
        let data = values(w.value_len);
        let kp = kp_records(&data);
        // The uncompressed size bounds what either encoder needs.
        let capacity = franz_encode(&data, &headers, Compression::None, 0).len();
        let franz_wire = franz_encode(&data, &headers, w.compression, capacity);
        let kp_wire = kp_encode(&kp, w.compression, capacity);
        // Same content either way: each decoder touches the same bytes.
        assert_eq!(franz_decode(&franz_wire), kp_decode(&kp_wire));
        assert_eq!(franz_decode(&kp_wire), kp_decode(&franz_wire));

        let mut g = c.benchmark_group(format!("encode/{}", w.name));
        g.throughput(Throughput::Bytes(franz_wire.len() as u64));
        g.bench_function(BenchmarkId::new("franz", RECORDS), |b| {
            b.iter(|| {
                black_box(franz_encode(
                    black_box(&data),
                    &headers,
                    w.compression,
                    capacity,
                ))
            })
        });
        g.bench_function(BenchmarkId::new("kafka-protocol", RECORDS), |b| {
            b.iter(|| black_box(kp_encode(black_box(&kp), w.compression, capacity)))
        });
        g.finish();

        let mut g = c.benchmark_group(format!("decode/{}", w.name));
        g.throughput(Throughput::Bytes(franz_wire.len() as u64));
        g.bench_function(BenchmarkId::new("franz", RECORDS), |b| {
            b.iter(|| black_box(franz_decode(black_box(&franz_wire))))
        });
        g.bench_function(BenchmarkId::new("kafka-protocol", RECORDS), |b| {
            b.iter(|| black_box(kp_decode(black_box(&kp_wire))))
        });
        g.finish();
    }
}

criterion_group! {
    name = codec;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(codec);
