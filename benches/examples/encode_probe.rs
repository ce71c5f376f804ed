use franz_protocol::record::*;
use std::time::Instant;
fn main() {
    let headers = vec![Header::new("trace-id", &b"0123456789abcdef"[..])];
    let v = vec![b'x'; 100];
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..2000 {
        let mut b = RecordBatchBuilder::with_capacity(1000 * 132);
        for i in 0..1000 {
            b.push(1_700_000_000_000 + i, Some(b"key-0001"), Some(&v), &headers);
        }
        n += b.finish(&BatchMeta::default()).unwrap().len();
    }
    println!(
        "encode: {:.1} ns/record ({n})",
        t.elapsed().as_nanos() as f64 / 2_000_000.0
    );
}
