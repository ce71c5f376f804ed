//! Encode floor: ns/record to copy 1000 values into a new buffer and CRC it; no encoder beats it.
//! The lower bound for the record-batch encoder's ns/record (`just bench-codec`, `encode_ratio`).
//! Run: `floor_probe [value_len]` (default 100).
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure
use bytes::{BufMut, BytesMut};
use std::time::Instant;
fn main() {
    let value_len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let v = vec![b'x'; value_len + 30];
    let rounds = 2000;
    let t = Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        let mut b = BytesMut::with_capacity(1000 * (value_len + 48));
        for _ in 0..1000 {
            b.put_slice(std::hint::black_box(&v));
        }
        n += u64::from(franz_protocol::record::crc32c(&b));
        n += b.freeze().len() as u64;
    }
    println!(
        "floor: {:.1} ns/record ({n})",
        t.elapsed().as_nanos() as f64 / (rounds * 1000) as f64
    );
}
