//! Encode cost by record shape, against the cost of just copying the bytes
//! (`shape_probe`, or `shape_probe tiny` for one shape under a profiler).
use bytes::Bytes;
use franz_protocol::record::*;
use std::time::Instant;
fn run(label: &str, key: Option<&[u8]>, v: &[u8], headers: &[Header]) {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..400 {
            let mut b = RecordBatchBuilder::with_capacity(160_000);
            for i in 0..1000 {
                b.push(1_700_000_000_000 + i, key, Some(v), headers);
            }
            std::hint::black_box(b.finish(&BatchMeta::default()).unwrap());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 400_000.0);
    }
    println!("{label}: {best:.1} ns/record");
}
fn main() {
    let h = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    let v = Bytes::from(vec![b'x'; 100]);
    if std::env::args().count() > 1 {
        run("tiny value", None, &v[..8], &[]);
        return;
    }
    run("full", Some(b"key-0001"), &v, &h);
    run("no headers", Some(b"key-0001"), &v, &[]);
    run("no key/headers", None, &v, &[]);
    run("tiny value", None, &v[..8], &[]);
    floor();
}
/// The floor: copy 14 bytes per record into a fresh buffer, then CRC it.
fn floor() {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..400 {
            let mut b = bytes::BytesMut::with_capacity(160_000);
            for i in 0..1000u32 {
                bytes::BufMut::put_slice(&mut b, &std::hint::black_box([i as u8; 14]));
            }
            std::hint::black_box(franz_protocol::record::crc32c(&b));
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 400_000.0);
    }
    println!("floor 14B put_slice: {best:.1} ns/record");
}
