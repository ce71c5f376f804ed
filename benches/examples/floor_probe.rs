//! Encode floor: ns/record to copy 1000 values into a new buffer and CRC it; no encoder beats it.
//! The lower bound for the record-batch encoder's ns/record (`just bench-codec`, `encode_ratio`)
//! and for the clients' CPU per record (`bench limits`).
//! Run: `floor_probe [value_len]` (default 100).
fn main() {
    let value_len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let ns = franz_benches::copy_crc_floor_ns(value_len, 2_000_000);
    println!("floor: {ns:.1} ns/record");
}
