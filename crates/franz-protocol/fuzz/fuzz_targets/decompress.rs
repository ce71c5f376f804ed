//! Decompression of arbitrary bytes in every codec, bounded at 1 MiB.
#![no_main]

use franz_protocol::compression::{Compression, decompress};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&codec, rest)) = data.split_first() else { return };
    let codec = match codec % 4 {
        0 => Compression::Gzip,
        1 => Compression::Snappy,
        2 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    if let Ok(out) = decompress(codec, rest, 1 << 20) {
        assert!(out.len() <= 1 << 20);
    }
});
