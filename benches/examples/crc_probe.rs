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
