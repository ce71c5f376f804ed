//! Encode loop for profilers (perf, callgrind): `encode_probe [value_len]`.
use franz_protocol::record::*;
use std::time::Instant;
fn main() {
    let value_len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let headers = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    let v = vec![b'x'; value_len];
    let rounds = 2_000_000 / value_len.max(100) * 100 / 1000 * 5;
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        let mut b = RecordBatchBuilder::with_capacity(1000 * (value_len + 48));
        for i in 0..1000 {
            b.push(1_700_000_000_000 + i, Some(b"key-0001"), Some(&v), &headers);
        }
        n += b.finish(&BatchMeta::default()).unwrap().len();
    }
    println!(
        "encode: {:.1} ns/record ({n})",
        t.elapsed().as_nanos() as f64 / (rounds * 1000) as f64
    );
}
