//! CRC-32C GB/s, crc32c vs crc-fast, 64 B to 1 MiB: why franz-protocol computes CRCs with crc-fast.
//! It found crc-fast 2x as fast on 1 MiB and 5x on 1 KiB (cited in
//! `crates/franz-protocol/Cargo.toml`; `crc32c` stays as the test oracle). Run: `crc_probe`.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure
use std::time::Instant;
fn main() {
    for len in [64usize, 140, 1200, 140_000, 1_050_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let iters = 200_000_000 / len.max(1);
        let t = Instant::now();
        let mut x = 0u32;
        for _ in 0..iters {
            x ^= crc32c::crc32c(std::hint::black_box(&data));
        }
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut y = 0u32;
        for _ in 0..iters {
            y ^= crc_fast::checksum(
                crc_fast::CrcAlgorithm::Crc32Iscsi,
                std::hint::black_box(&data),
            ) as u32;
        }
        let b = t.elapsed().as_secs_f64();
        assert_eq!(x, y);
        let gb = (len * iters) as f64 / 1e9;
        println!(
            "{len:>8} B: crc32c {:.1} GB/s, crc-fast {:.1} GB/s",
            gb / a,
            gb / b
        );
    }
}
