//! The protocol's primitive types: fixed-width integers, varints, classic and
//! compact strings, bytes and arrays, UUIDs and tagged-field sections.
//!
//! [`Reader`] decodes from a [`Bytes`] buffer: byte arrays come back as
//! slices of that buffer (no copy), and every length is checked against the
//! bytes that remain and against [`DecodeLimits`] before anything is
//! allocated. [`Writer`] appends to a [`BytesMut`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};

/// Upper bounds on lengths read from the wire, on top of "no more than the
/// bytes that remain".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest array element count.
    pub max_array_len: usize,
    /// Largest string or byte-array length.
    pub max_bytes_len: usize,
    /// Largest total output of one decompression.
    pub max_decompressed_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_array_len: 10_000_000,
            max_bytes_len: 256 << 20,
            max_decompressed_len: 256 << 20,
        }
    }
}

/// A zero-copy decoder over a [`Bytes`] buffer.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    limits: DecodeLimits,
}

macro_rules! fixed {
    ($($name:ident: $ty:ty = $get:ident;)*) => {$(
        #[doc = concat!("Reads a big-endian `", stringify!($ty), "`.")]
        pub fn $name(&mut self, field: &'static str) -> Result<$ty, DecodeError> {
            self.need(std::mem::size_of::<$ty>(), field)?;
            Ok(self.buf.$get())
        }
    )*};
}

impl Reader {
    /// A reader over `buf` with default limits.
    pub fn new(buf: Bytes) -> Self {
        Self::with_limits(buf, DecodeLimits::default())
    }

    /// A reader over `buf` with the given limits.
    pub fn with_limits(buf: Bytes, limits: DecodeLimits) -> Self {
        Self { buf, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> &Bytes {
        &self.buf
    }

    /// Consumes the reader, returning the unread bytes.
    pub fn into_rest(self) -> Bytes {
        self.buf
    }

    /// Fails if any bytes are left (decoders must consume whole frames).
    pub fn finish(&self, field: &'static str) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            remaining => Err(DecodeError::TrailingBytes { field, remaining }),
        }
    }

    fn need(&self, needed: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < needed {
            return Err(DecodeError::Truncated {
                field,
                needed,
                remaining: self.buf.len(),
            });
        }
        Ok(())
    }

    fixed! {
        i8: i8 = get_i8;
        i16: i16 = get_i16;
        i32: i32 = get_i32;
        i64: i64 = get_i64;
        u16: u16 = get_u16;
        u32: u32 = get_u32;
        f64: f64 = get_f64;
    }

    /// Reads a boolean (any non-zero byte is true, as in Java).
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.i8(field)? != 0)
    }

    /// Reads a 16-byte UUID.
    pub fn uuid(&mut self, field: &'static str) -> Result<[u8; 16], DecodeError> {
        self.need(16, field)?;
        let mut id = [0u8; 16];
        self.buf.copy_to_slice(&mut id);
        Ok(id)
    }

    /// Takes the next `n` bytes as a zero-copy slice.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        self.need(n, field)?;
        self.buf.advance(n);
        Ok(())
    }

    /// Reads an unsigned varint of at most 32 bits (5 bytes).
    pub fn uvarint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.i8(field)? as u8;
            // The fifth byte may only carry the top 4 bits.
            if i == 4 && b > 0x0f {
                return Err(DecodeError::VarintTooLong { field });
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong { field })
    }

    /// Reads an unsigned varint of at most 64 bits (10 bytes).
    pub fn uvarlong(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.i8(field)? as u8;
            if i == 9 && b > 0x01 {
                return Err(DecodeError::VarintTooLong { field });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong { field })
    }

    /// Reads a zigzag-encoded signed varint (32 bits).
    pub fn varint(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let v = self.uvarint(field)?;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    /// Reads a zigzag-encoded signed varlong (64 bits).
    pub fn varlong(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let v = self.uvarlong(field)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// Reads a length prefix: int16 (`STRING`), int32 (`BYTES`, arrays) or
    /// compact uvarint(len+1). `None` is null. The length is checked against
    /// `limit` and the bytes that remain times `min_unit`.
    fn length(
        &mut self,
        field: &'static str,
        form: LengthForm,
        limit: usize,
        min_unit: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let len: i64 = match form {
            LengthForm::Int16 => i64::from(self.i16(field)?),
            LengthForm::Int32 => i64::from(self.i32(field)?),
            LengthForm::Compact => i64::from(self.uvarint(field)?) - 1,
        };
        if len < 0 {
            return if len == -1 {
                Ok(None)
            } else {
                Err(DecodeError::LengthOutOfRange {
                    field,
                    length: len,
                    limit,
                })
            };
        }
        let len = len as usize;
        let fits = len
            .checked_mul(min_unit)
            .is_some_and(|n| n <= self.buf.len());
        if len > limit || !fits {
            return Err(DecodeError::LengthOutOfRange {
                field,
                length: len as i64,
                limit: limit.min(self.buf.len() / min_unit.max(1)),
            });
        }
        Ok(Some(len))
    }

    /// Reads a nullable byte array (`BYTES`/`COMPACT_BYTES`), zero-copy.
    pub fn nullable_byte_array(
        &mut self,
        field: &'static str,
        compact: bool,
    ) -> Result<Option<Bytes>, DecodeError> {
        let form = if compact {
            LengthForm::Compact
        } else {
            LengthForm::Int32
        };
        match self.length(field, form, self.limits.max_bytes_len, 1)? {
            Some(n) => Ok(Some(self.buf.split_to(n))),
            None => Ok(None),
        }
    }

    /// Reads a non-null byte array.
    pub fn byte_array(&mut self, field: &'static str, compact: bool) -> Result<Bytes, DecodeError> {
        self.nullable_byte_array(field, compact)?
            .ok_or(DecodeError::InvalidValue {
                field,
                reason: "null where a value is required",
            })
    }

    /// Reads a nullable string (`STRING`/`COMPACT_STRING`).
    pub fn nullable_string(
        &mut self,
        field: &'static str,
        compact: bool,
    ) -> Result<Option<String>, DecodeError> {
        let form = if compact {
            LengthForm::Compact
        } else {
            LengthForm::Int16
        };
        match self.length(field, form, self.limits.max_bytes_len, 1)? {
            Some(n) => {
                let raw = self.buf.split_to(n);
                String::from_utf8(raw.to_vec())
                    .map(Some)
                    .map_err(|_| DecodeError::InvalidUtf8 { field })
            }
            None => Ok(None),
        }
    }

    /// Reads a non-null string.
    pub fn string(&mut self, field: &'static str, compact: bool) -> Result<String, DecodeError> {
        self.nullable_string(field, compact)?
            .ok_or(DecodeError::InvalidValue {
                field,
                reason: "null where a value is required",
            })
    }

    /// Reads a nullable array's element count. Each element takes at least
    /// one byte on the wire, so a count above the remaining bytes is rejected
    /// before any allocation.
    pub fn nullable_array_len(
        &mut self,
        field: &'static str,
        compact: bool,
    ) -> Result<Option<usize>, DecodeError> {
        let form = if compact {
            LengthForm::Compact
        } else {
            LengthForm::Int32
        };
        self.length(field, form, self.limits.max_array_len, 1)
    }

    /// Reads a non-null array's element count.
    pub fn array_len(&mut self, field: &'static str, compact: bool) -> Result<usize, DecodeError> {
        self.nullable_array_len(field, compact)?
            .ok_or(DecodeError::InvalidValue {
                field,
                reason: "null array where a value is required",
            })
    }

    /// Reads a tagged-field section, calling `known(tag, reader)` for each
    /// field with a reader over exactly its bytes. `known` returns `false`
    /// for tags it does not know; their raw bytes go to `unknown` in wire
    /// order, so a message re-encodes identically.
    pub fn tagged_fields(
        &mut self,
        field: &'static str,
        unknown: &mut Vec<RawTaggedField>,
        mut known: impl FnMut(u32, &mut Self) -> Result<bool, DecodeError>,
    ) -> Result<(), DecodeError> {
        let count = self.uvarint(field)? as usize;
        // Each tagged field takes at least two bytes (tag and size).
        if count > self.buf.len() / 2 {
            return Err(DecodeError::LengthOutOfRange {
                field,
                length: count as i64,
                limit: self.buf.len() / 2,
            });
        }
        let mut last: Option<u32> = None;
        for _ in 0..count {
            let tag = self.uvarint(field)?;
            if last.is_some_and(|l| tag <= l) {
                return Err(DecodeError::InvalidValue {
                    field,
                    reason: "tagged fields out of order or repeated",
                });
            }
            last = Some(tag);
            let size = self.uvarint(field)? as usize;
            let data = self.bytes(size, field)?;
            let mut sub = Self::with_limits(data.clone(), self.limits);
            if known(tag, &mut sub)? {
                sub.finish(field)?;
            } else {
                unknown.push(RawTaggedField { tag, data });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum LengthForm {
    Int16,
    Int32,
    Compact,
}

/// A Kafka UUID (topic ids, directory ids): 16 raw bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero id, which Kafka uses for "no id".
    pub const ZERO: Self = Self([0; 16]);

    /// Whether this is [`Uuid::ZERO`].
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl std::fmt::Display for Uuid {
    /// Kafka's text form: URL-safe base64 without padding (22 characters).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut acc = 0u32;
        let mut bits = 0;
        for b in self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 6 {
                bits -= 6;
                write!(f, "{}", ALPHABET[((acc >> bits) & 63) as usize] as char)?;
            }
        }
        if bits > 0 {
            write!(
                f,
                "{}",
                ALPHABET[((acc << (6 - bits)) & 63) as usize] as char
            )?;
        }
        Ok(())
    }
}

/// A tagged field this version of franz does not know, kept as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawTaggedField {
    /// The tag number.
    pub tag: u32,
    /// The field's bytes.
    pub data: Bytes,
}

/// Appending encoders for the protocol's primitive forms.
pub trait Writer {
    /// Writes an unsigned varint.
    fn put_uvarint(&mut self, v: u32);
    /// Writes an unsigned varlong.
    fn put_uvarlong(&mut self, v: u64);
    /// Writes a zigzag varint.
    fn put_varint(&mut self, v: i32);
    /// Writes a zigzag varlong.
    fn put_varlong(&mut self, v: i64);
    /// Writes a UUID.
    fn put_uuid(&mut self, id: &[u8; 16]);
    /// Writes a boolean as 0 or 1.
    fn put_bool(&mut self, v: bool);
    /// Writes a nullable string, classic (int16 length) or compact.
    fn put_nullable_string(
        &mut self,
        s: Option<&str>,
        compact: bool,
        field: &'static str,
    ) -> Result<(), EncodeError>;
    /// Writes a nullable byte array, classic (int32 length) or compact.
    fn put_nullable_byte_array(
        &mut self,
        b: Option<&[u8]>,
        compact: bool,
        field: &'static str,
    ) -> Result<(), EncodeError>;
    /// Writes an array length (`None` = null), classic (int32) or compact.
    fn put_array_len(
        &mut self,
        len: Option<usize>,
        compact: bool,
        field: &'static str,
    ) -> Result<(), EncodeError>;
    /// Writes a tagged field header and body: tag, size, then bytes.
    fn put_tagged_field(&mut self, tag: u32, data: &[u8]) -> Result<(), EncodeError>;
}

impl Writer for BytesMut {
    fn put_uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.put_u8(v as u8);
    }

    fn put_uvarlong(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.put_u8(v as u8);
    }

    fn put_varint(&mut self, v: i32) {
        self.put_uvarint(((v << 1) ^ (v >> 31)) as u32);
    }

    fn put_varlong(&mut self, v: i64) {
        self.put_uvarlong(((v << 1) ^ (v >> 63)) as u64);
    }

    fn put_uuid(&mut self, id: &[u8; 16]) {
        self.put_slice(id);
    }

    fn put_bool(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }

    fn put_nullable_string(
        &mut self,
        s: Option<&str>,
        compact: bool,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        match (s, compact) {
            (None, true) => self.put_uvarint(0),
            (None, false) => self.put_i16(-1),
            (Some(s), true) => {
                self.put_uvarint(compact_len(s.len(), field)?);
                self.put_slice(s.as_bytes());
            }
            (Some(s), false) => {
                let len = i16::try_from(s.len()).map_err(|_| EncodeError::TooLong {
                    field,
                    length: s.len(),
                })?;
                self.put_i16(len);
                self.put_slice(s.as_bytes());
            }
        }
        Ok(())
    }

    fn put_nullable_byte_array(
        &mut self,
        b: Option<&[u8]>,
        compact: bool,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        match b {
            None => self.put_array_len(None, compact, field),
            Some(b) => {
                self.put_array_len(Some(b.len()), compact, field)?;
                self.put_slice(b);
                Ok(())
            }
        }
    }

    fn put_array_len(
        &mut self,
        len: Option<usize>,
        compact: bool,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        match (len, compact) {
            (None, true) => self.put_uvarint(0),
            (None, false) => self.put_i32(-1),
            (Some(n), true) => self.put_uvarint(compact_len(n, field)?),
            (Some(n), false) => self
                .put_i32(i32::try_from(n).map_err(|_| EncodeError::TooLong { field, length: n })?),
        }
        Ok(())
    }

    fn put_tagged_field(&mut self, tag: u32, data: &[u8]) -> Result<(), EncodeError> {
        self.put_uvarint(tag);
        let size = u32::try_from(data.len()).map_err(|_| EncodeError::TooLong {
            field: "tagged field",
            length: data.len(),
        })?;
        self.put_uvarint(size);
        self.put_slice(data);
        Ok(())
    }
}

fn compact_len(len: usize, field: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(len)
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(EncodeError::TooLong { field, length: len })
}

/// Bytes an unsigned varint of `v` takes.
#[inline]
pub fn uvarint_len(v: u32) -> usize {
    // 7 payload bits per byte; branch-free, as it runs for every record field.
    let bits = 32 - (v | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Bytes a zigzag varint of `v` takes.
#[inline]
pub fn varint_len(v: i32) -> usize {
    uvarint_len(((v << 1) ^ (v >> 31)) as u32)
}

/// Bytes a zigzag varlong of `v` takes.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - (z | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// The branch-free length formulas agree with the bytes actually written
    /// at every 7-bit boundary, for unsigned, zigzag int and zigzag long.
    #[test]
    fn varint_lengths_match_encodings_at_every_boundary() {
        let mut values: Vec<i64> = vec![0, 1, -1, i64::MAX, i64::MIN];
        for shift in 1..64 {
            let edge = 1i64 << shift;
            values.extend([1, 0, -1].map(|d| edge.wrapping_add(d)));
            values.extend([1, 0, -1].map(|d| edge.wrapping_neg().wrapping_add(d)));
        }
        for &v in &values {
            let mut b = BytesMut::new();
            b.put_varlong(v);
            assert_eq!(varlong_len(v), b.len(), "varlong {v}");
            if let Ok(v32) = i32::try_from(v) {
                let mut b = BytesMut::new();
                b.put_varint(v32);
                assert_eq!(varint_len(v32), b.len(), "varint {v32}");
            }
            if let Ok(u) = u32::try_from(v) {
                let mut b = BytesMut::new();
                b.put_uvarint(u);
                assert_eq!(uvarint_len(u), b.len(), "uvarint {u}");
            }
        }
    }

    // From docs/test-vectors.md §2 (Kafka's ByteUtilsTest).
    const UVARINT: &[(i32, &str)] = &[
        (0, "00"),
        (1, "01"),
        (63, "3f"),
        (64, "40"),
        (8191, "ff 3f"),
        (8192, "80 40"),
        (1048575, "ff ff 3f"),
        (1048576, "80 80 40"),
        (i32::MAX, "ff ff ff ff 07"),
        (-1, "ff ff ff ff 0f"),
        (-64, "c0 ff ff ff 0f"),
        (-8192, "80 c0 ff ff 0f"),
        (-8193, "ff bf ff ff 0f"),
        (i32::MIN, "80 80 80 80 08"),
    ];

    const VARINT: &[(i32, &str)] = &[
        (0, "00"),
        (-1, "01"),
        (1, "02"),
        (63, "7e"),
        (-64, "7f"),
        (64, "80 01"),
        (-65, "81 01"),
        (8191, "fe 7f"),
        (-8192, "ff 7f"),
        (8192, "80 80 01"),
        (-8193, "81 80 01"),
        (1048575, "fe ff 7f"),
        (-1048576, "ff ff 7f"),
        (1048576, "80 80 80 01"),
        (-1048577, "81 80 80 01"),
        (134217727, "fe ff ff 7f"),
        (-134217728, "ff ff ff 7f"),
        (134217728, "80 80 80 80 01"),
        (-134217729, "81 80 80 80 01"),
        (i32::MAX, "fe ff ff ff 0f"),
        (i32::MIN, "ff ff ff ff 0f"),
    ];

    const VARLONG: &[(i64, &str)] = &[
        (17179869183, "fe ff ff ff 7f"),
        (-17179869184, "ff ff ff ff 7f"),
        (17179869184, "80 80 80 80 80 01"),
        (-17179869185, "81 80 80 80 80 01"),
        (2199023255551, "fe ff ff ff ff 7f"),
        (-2199023255552, "ff ff ff ff ff 7f"),
        (2199023255552, "80 80 80 80 80 80 01"),
        (-2199023255553, "81 80 80 80 80 80 01"),
        (281474976710655, "fe ff ff ff ff ff 7f"),
        (-281474976710656, "ff ff ff ff ff ff 7f"),
        (281474976710656, "80 80 80 80 80 80 80 01"),
        (-281474976710657, "81 80 80 80 80 80 80 01"),
        (36028797018963967, "fe ff ff ff ff ff ff 7f"),
        (-36028797018963968, "ff ff ff ff ff ff ff 7f"),
        (36028797018963968, "80 80 80 80 80 80 80 80 01"),
        (-36028797018963969, "81 80 80 80 80 80 80 80 01"),
        (4611686018427387903, "fe ff ff ff ff ff ff ff 7f"),
        (-4611686018427387904, "ff ff ff ff ff ff ff ff 7f"),
        (4611686018427387904, "80 80 80 80 80 80 80 80 80 01"),
        (-4611686018427387905, "81 80 80 80 80 80 80 80 80 01"),
        (i64::MAX, "fe ff ff ff ff ff ff ff ff 01"),
        (i64::MIN, "ff ff ff ff ff ff ff ff ff 01"),
    ];

    /// float64 is the IEEE-754 bit pattern as a big-endian int64.
    const FLOAT64: &[(f64, u64)] = &[
        (0.0, 0x0000_0000_0000_0000),
        (-0.0, 0x8000_0000_0000_0000),
        (1.0, 0x3FF0_0000_0000_0000),
        (-1.0, 0xBFF0_0000_0000_0000),
        (123e45, 0x49B5_8B82_C0E0_BB00),
        (-123e45, 0xC9B5_8B82_C0E0_BB00),
        (f64::from_bits(1), 0x0000_0000_0000_0001), // Double.MIN_VALUE
    ];

    #[test]
    fn float64_vectors() {
        for &(v, bits) in FLOAT64 {
            let mut b = BytesMut::new();
            b.put_f64(v);
            assert_eq!(b.to_vec(), bits.to_be_bytes(), "{v}");
            let back = Reader::new(b.freeze()).f64("v").unwrap();
            assert_eq!(back.to_bits(), bits, "{v}");
        }
    }

    #[test]
    fn unsigned_varint_vectors() {
        for &(v, h) in UVARINT {
            let mut b = BytesMut::new();
            b.put_uvarint(v as u32);
            assert_eq!(b.to_vec(), hex(h), "{v}");
            assert_eq!(uvarint_len(v as u32), b.len());
            let mut r = Reader::new(Bytes::from(hex(h)));
            assert_eq!(r.uvarint("v").unwrap() as i32, v);
            r.finish("v").unwrap();
        }
    }

    #[test]
    fn zigzag_varint_and_varlong_vectors() {
        for &(v, h) in VARINT {
            let mut b = BytesMut::new();
            b.put_varint(v);
            assert_eq!(b.to_vec(), hex(h), "{v}");
            assert_eq!(varint_len(v), b.len());
            assert_eq!(Reader::new(Bytes::from(hex(h))).varint("v").unwrap(), v);
            // Every int32 row encodes identically as a varlong.
            let mut l = BytesMut::new();
            l.put_varlong(i64::from(v));
            assert_eq!(l.to_vec(), hex(h));
            assert_eq!(
                Reader::new(Bytes::from(hex(h))).varlong("v").unwrap(),
                i64::from(v)
            );
        }
        for &(v, h) in VARLONG {
            let mut b = BytesMut::new();
            b.put_varlong(v);
            assert_eq!(b.to_vec(), hex(h), "{v}");
            assert_eq!(varlong_len(v), b.len());
            assert_eq!(Reader::new(Bytes::from(hex(h))).varlong("v").unwrap(), v);
        }
    }

    #[test]
    fn over_long_varints_are_rejected() {
        let err = Reader::new(Bytes::from(hex("ff ff ff ff ff 01"))).varint("v");
        assert_eq!(err, Err(DecodeError::VarintTooLong { field: "v" }));
        let mut eleven = vec![0xffu8; 10];
        eleven.push(0x01);
        assert!(Reader::new(Bytes::from(eleven)).varlong("v").is_err());
    }

    #[test]
    fn lengths_are_bounded_by_the_remaining_bytes() {
        // A string claiming 1000 bytes with 3 present.
        let mut r = Reader::new(Bytes::from_static(&[0x03, 0xe8, b'a', b'b', b'c']));
        assert!(matches!(
            r.string("s", false),
            Err(DecodeError::LengthOutOfRange { length: 1000, .. })
        ));
        // An array claiming i32::MAX elements allocates nothing and fails.
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0]));
        assert!(r.array_len("a", false).is_err());
        // A configured limit applies even when the bytes are there.
        let limits = DecodeLimits {
            max_bytes_len: 2,
            ..DecodeLimits::default()
        };
        let mut r = Reader::with_limits(Bytes::from_static(&[0, 3, b'a', b'b', b'c']), limits);
        assert!(r.string("s", false).is_err());
    }

    #[test]
    fn null_and_empty_are_distinct() {
        let mut b = BytesMut::new();
        b.put_nullable_string(None, true, "s").unwrap();
        b.put_nullable_string(Some(""), true, "s").unwrap();
        b.put_nullable_byte_array(None, false, "b").unwrap();
        b.put_nullable_byte_array(Some(b""), false, "b").unwrap();
        let mut r = Reader::new(b.freeze());
        assert_eq!(r.nullable_string("s", true).unwrap(), None);
        assert_eq!(r.nullable_string("s", true).unwrap(), Some(String::new()));
        assert_eq!(r.nullable_byte_array("b", false).unwrap(), None);
        assert_eq!(
            r.nullable_byte_array("b", false).unwrap(),
            Some(Bytes::new())
        );
        r.finish("end").unwrap();
    }

    #[test]
    fn byte_arrays_are_zero_copy_slices() {
        let buf = Bytes::from_static(&[0, 0, 0, 3, 7, 8, 9]);
        let base = buf.as_ptr() as usize;
        let got = Reader::new(buf).byte_array("b", false).unwrap();
        assert_eq!(got.as_ptr() as usize, base + 4);
    }

    #[test]
    fn unknown_tagged_fields_are_kept_in_order() {
        let mut b = BytesMut::new();
        b.put_uvarint(2);
        b.put_tagged_field(0, &[1, 2]).unwrap();
        b.put_tagged_field(5, &[9]).unwrap();
        let mut r = Reader::new(b.freeze());
        let mut unknown = Vec::new();
        let mut seen0 = None;
        r.tagged_fields("tags", &mut unknown, |tag, sub| {
            if tag == 0 {
                seen0 = Some(sub.i16("t0")?);
                Ok(true)
            } else {
                Ok(false)
            }
        })
        .unwrap();
        assert_eq!(seen0, Some(0x0102));
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].tag, 5);
        assert_eq!(unknown[0].data.as_ref(), &[9]);
    }
}
