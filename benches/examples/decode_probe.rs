use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::*;
use std::time::Instant;
fn main() {
    let headers = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    let mut b = RecordBatchBuilder::new();
    for i in 0..1000 {
        let v = vec![b'x'; 100];
        b.push(i, Some(b"key-0001"), Some(&v), &headers);
    }
    let wire = b.finish(&BatchMeta::default()).unwrap();
    for verify in [true, false] {
        let opts = BatchDecodeOptions {
            verify_crc: verify,
            ..Default::default()
        };
        let t = Instant::now();
        let mut n = 0usize;
        for _ in 0..2000 {
            let mut buf = wire.clone();
            let batch = RecordBatch::decode(&mut buf, &opts).unwrap();
            let recs = batch.records(&DecodeLimits::default()).unwrap();
            for r in &recs {
                let r = r.unwrap();
                n += r.value.unwrap().len();
                for h in r.headers() {
                    n += h.key.len();
                }
            }
        }
        println!(
            "verify={verify}: {:.1} ns/record ({n})",
            t.elapsed().as_nanos() as f64 / 2_000_000.0
        );
    }
    let t = Instant::now();
    let mut c = 0u32;
    for _ in 0..2000 {
        c ^= franz_protocol::record::crc32c(&wire[21..]);
    }
    println!(
        "crc alone: {:.1} ns/record ({c})",
        t.elapsed().as_nanos() as f64 / 2_000_000.0
    );
}
#[allow(dead_code)]
fn encode_probe() {}
