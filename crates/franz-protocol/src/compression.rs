//! Record-batch compression codecs, all pure Rust: gzip (`flate2` with
//! miniz_oxide), snappy (`snap`, plus the xerial framing the Java client
//! writes), lz4 (`lz4_flex`, the standard frame format) and zstd (`ruzstd`).
//!
//! Decompression is bounded: output beyond the caller's limit is a
//! [`DecodeError::Decompression`], never an out-of-memory, so a zip bomb in
//! a fetch response costs at most the limit.
//!
//! zstd compression uses ruzstd's only implemented level (close to zstd's
//! level 1) whatever level is asked for; decompression handles any level.

use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};

/// A batch compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing on write, framed or raw on read).
    Snappy,
    /// lz4 frame format.
    Lz4,
    /// zstd (needs Produce v7+ / Fetch v10+).
    Zstd,
}

impl Compression {
    /// The attribute bits.
    pub fn bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// From attribute bits 0-2.
    pub fn from_bits(bits: i16) -> Option<Self> {
        match bits & 0x07 {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The codec's name as Kafka spells it (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Parses Kafka's name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_BLOCK: usize = 32 * 1024;

/// Appends `input` compressed with `codec` to `out`. `level` applies to gzip
/// (0-9); other codecs use their default.
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut BytesMut,
    level: Option<u32>,
) -> Result<(), EncodeError> {
    let err = |reason: String| EncodeError::Compression {
        codec: codec.name(),
        reason,
    };
    match codec {
        Compression::None => out.put_slice(input),
        Compression::Gzip => {
            let level = flate2::Compression::new(level.unwrap_or(6).min(9));
            let mut enc = flate2::write::GzEncoder::new(out.writer(), level);
            enc.write_all(input).map_err(|e| err(e.to_string()))?;
            enc.finish().map_err(|e| err(e.to_string()))?;
        }
        Compression::Snappy => {
            // xerial block stream: magic, version 1, compatible version 1,
            // then [int32 length][raw snappy block] per 32 KiB of input.
            out.put_slice(&XERIAL_MAGIC);
            out.put_i32(1);
            out.put_i32(1);
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).map_err(|e| err(e.to_string()))?;
                let len = i32::try_from(block.len()).map_err(|_| err("block too large".into()))?;
                out.put_i32(len);
                out.put_slice(&block);
            }
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
            enc.write_all(input).map_err(|e| err(e.to_string()))?;
            enc.finish().map_err(|e| err(e.to_string()))?;
        }
        Compression::Zstd => {
            let mut w = out.writer();
            ruzstd::encoding::compress(input, &mut w, ruzstd::encoding::CompressionLevel::Fastest);
        }
    }
    Ok(())
}

/// Decompresses `input`, failing once the output would exceed `limit` bytes.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let err = |reason: String| DecodeError::Decompression {
        codec: codec.name(),
        reason,
    };
    match codec {
        Compression::None => Ok(Bytes::copy_from_slice(input)),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(input), limit, codec),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), limit, codec),
        Compression::Zstd => {
            let dec =
                ruzstd::decoding::StreamingDecoder::new(input).map_err(|e| err(e.to_string()))?;
            read_bounded(dec, limit, codec)
        }
        Compression::Snappy => {
            if input.starts_with(&XERIAL_MAGIC) {
                decompress_xerial(input, limit)
            } else {
                snappy_block(input, limit, &mut Vec::new()).map(Bytes::from)
            }
        }
    }
}

fn read_bounded(reader: impl Read, limit: usize, codec: Compression) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly the limit" from "more".
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Decompression {
            codec: codec.name(),
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(too_large(codec, limit));
    }
    Ok(Bytes::from(out))
}

fn too_large(codec: Compression, limit: usize) -> DecodeError {
    DecodeError::DecompressedTooLarge {
        codec: codec.name(),
        limit,
    }
}

/// Decompresses one raw snappy block, appending to `out`, within `limit`
/// total bytes. The declared length is checked before allocating.
fn snappy_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    let err = |reason: String| DecodeError::Decompression {
        codec: "snappy",
        reason,
    };
    let len = snap::raw::decompress_len(block).map_err(|e| err(e.to_string()))?;
    if out.len().saturating_add(len) > limit {
        return Err(too_large(Compression::Snappy, limit));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| err(e.to_string()))?;
    Ok(std::mem::take(out))
}

fn decompress_xerial(input: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let err = |reason: &str| DecodeError::Decompression {
        codec: "snappy",
        reason: reason.to_string(),
    };
    let mut rest = input
        .get(16..)
        .ok_or_else(|| err("xerial header truncated"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len_bytes = rest
            .get(..4)
            .ok_or_else(|| err("xerial block length truncated"))?;
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let len = usize::try_from(len).map_err(|_| err("negative xerial block length"))?;
        let block = rest
            .get(4..4 + len)
            .ok_or_else(|| err("xerial block truncated"))?;
        out = snappy_block(block, limit, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..100_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect();
        for codec in ALL {
            let mut out = BytesMut::new();
            compress(codec, &input, &mut out, None).unwrap();
            if codec != Compression::None {
                assert!(out.len() < input.len(), "{codec:?} did not compress");
            }
            let back = decompress(codec, &out, 1 << 20).unwrap();
            assert_eq!(back.as_ref(), &input[..], "{codec:?}");
            // Empty input too.
            let mut out = BytesMut::new();
            compress(codec, &[], &mut out, None).unwrap();
            assert!(decompress(codec, &out, 10).unwrap().is_empty());
        }
    }

    #[test]
    fn zip_bombs_hit_the_limit_not_the_allocator() {
        let zeros = vec![0u8; 4 << 20];
        for codec in ALL.into_iter().skip(1) {
            let mut bomb = BytesMut::new();
            compress(codec, &zeros, &mut bomb, Some(9)).unwrap();
            assert!(bomb.len() < 300_000, "{codec:?}: {}", bomb.len());
            let err = decompress(codec, &bomb, 1 << 20).unwrap_err();
            assert!(
                matches!(err, DecodeError::DecompressedTooLarge { limit, .. } if limit == 1 << 20),
                "{codec:?}: {err}"
            );
        }
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let block = snap::raw::Encoder::new()
            .compress_vec(b"hello hello hello")
            .unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &block, 100)
                .unwrap()
                .as_ref(),
            b"hello hello hello"
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for codec in ALL.into_iter().skip(1) {
            let r = decompress(codec, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3], 1000);
            assert!(r.is_err(), "{codec:?}");
        }
    }

    #[test]
    fn names_and_bits() {
        for codec in ALL {
            assert_eq!(Compression::from_bits(codec.bits()), Some(codec));
            assert_eq!(Compression::from_name(codec.name()), Some(codec));
        }
        assert_eq!(Compression::from_bits(5), None);
    }
}
