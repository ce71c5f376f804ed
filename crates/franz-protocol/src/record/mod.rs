//! Record batches (magic 2): zero-copy decoding and direct encoding.
//!
//! ## Decoding
//! [`RecordBatches`] walks the `records` bytes of a fetch response and yields
//! one [`RecordBatch`] per batch; a truncated trailing batch (the broker cuts
//! at `partition_max_bytes`) ends the walk quietly and sets
//! [`RecordBatches::truncated`]. A batch's header is decoded eagerly and its
//! CRC-32C (bytes 21 to the end) verified unless turned off.
//! [`RecordBatch::records`] decompresses if needed (bounded by
//! [`DecodeLimits::max_decompressed_len`]) and returns [`BatchRecords`],
//! whose iterator yields [`RecordRef`]s: keys, values and header values are
//! slices of that buffer, never copies, and a null stays distinct from an
//! empty value. Headers are an ordered list that allows duplicate keys.
//!
//! ## Encoding
//! [`RecordBatchBuilder`] appends records straight into one `BytesMut` that
//! already holds room for the 61-byte header. Each record is written in one
//! pass: its length prefix, which comes first but depends on the rest, is
//! given a guessed width and fixed up after (the body moves only when the
//! guess misses), short fields are stored with fixed-size moves and values
//! with one `memcpy`. [`RecordBatchBuilder::finish`]
//! fills in the header (or compresses the records behind it) and computes
//! the CRC, giving the batch as [`Bytes`] ready to put in a Produce request
//! and to resend unchanged on retry.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::compression::{self, Compression};
use crate::error::{DecodeError, EncodeError};
use crate::primitives::{DecodeLimits, varint_len, varlong_len};

mod decode;
mod encode;

pub use decode::*;
pub use encode::*;

/// Bytes before the first record: the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the CRC-covered region (attributes onward).
const CRC_START: usize = 21;
/// Bytes of header counted by `batchLength` (everything after that field).
const LENGTH_FIELD_END: usize = 12;

/// Whether timestamps were set by the producer or the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamp (attribute bit 3 clear).
    #[default]
    CreateTime,
    /// The broker's append time (bit 3 set; `max_timestamp` holds it).
    LogAppendTime,
}

/// The batch attributes (int16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchAttributes(pub i16);

impl BatchAttributes {
    /// Compression codec (bits 0-2); `None` for an unknown codec.
    pub fn compression(self) -> Option<Compression> {
        Compression::from_bits(self.0)
    }

    /// Timestamp type (bit 3).
    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction (bit 4).
    pub fn is_transactional(self) -> bool {
        self.0 & 0x10 != 0
    }

    /// A control batch holding transaction markers (bit 5).
    pub fn is_control(self) -> bool {
        self.0 & 0x20 != 0
    }

    /// The delete-horizon flag compaction sets (bit 6).
    pub fn has_delete_horizon(self) -> bool {
        self.0 & 0x40 != 0
    }

    /// Builds attributes from their parts.
    pub fn new(
        compression: Compression,
        timestamp_type: TimestampType,
        transactional: bool,
        control: bool,
    ) -> Self {
        let mut bits = compression.bits();
        if timestamp_type == TimestampType::LogAppendTime {
            bits |= 0x08;
        }
        if transactional {
            bits |= 0x10;
        }
        if control {
            bits |= 0x20;
        }
        Self(bits)
    }
}

/// CRC-32C (Castagnoli) of `data`, the checksum a v2 record batch carries
/// over everything from its attributes to its end.
///
/// ```
/// assert_eq!(franz_protocol::record::crc32c(b"123456789"), 0xe306_9283);
/// ```
pub fn crc32c(data: &[u8]) -> u32 {
    // The CRC-32 algorithms return their 32-bit value in the low half.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// `base + delta` in sequence space: past `i32::MAX` it wraps to 0.
pub fn wrap_sequence(base: i32, delta: i32) -> i32 {
    let sum = i64::from(base) + i64::from(delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}
