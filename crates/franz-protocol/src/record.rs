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

/// Options for decoding batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDecodeOptions {
    /// Verify each batch's CRC-32C (librdkafka and the Java perf tools can
    /// turn this off; franz verifies by default).
    pub verify_crc: bool,
    /// Length limits, including the decompressed size.
    pub limits: DecodeLimits,
}

impl Default for BatchDecodeOptions {
    fn default() -> Self {
        Self {
            verify_crc: true,
            limits: DecodeLimits::default(),
        }
    }
}

/// One record batch: the decoded header and the (possibly compressed)
/// records behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The leader epoch the broker stamped.
    pub partition_leader_epoch: i32,
    /// Attributes.
    pub attributes: BatchAttributes,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Producer id (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record (-1 when not idempotent).
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
    /// The stored CRC.
    pub crc: u32,
    raw: Bytes,
}

impl RecordBatch {
    /// Decodes the batch at the start of `buf`, which must hold all of it,
    /// and advances `buf` past it.
    pub fn decode(buf: &mut Bytes, opts: &BatchDecodeOptions) -> Result<Self, DecodeError> {
        let total = peek_batch_len(buf)?;
        if total > buf.len() {
            return Err(DecodeError::Truncated {
                field: "RecordBatch",
                needed: total,
                remaining: buf.len(),
            });
        }
        let raw = buf.split_to(total);
        let mut h = &raw[..];
        let base_offset = h.get_i64();
        h.advance(4); // batch length
        let partition_leader_epoch = h.get_i32();
        let magic = h.get_i8();
        if magic != 2 {
            return Err(DecodeError::InvalidValue {
                field: "RecordBatch.Magic",
                reason: "only magic 2 batches exist since Kafka 4.0",
            });
        }
        let crc = h.get_u32();
        if opts.verify_crc {
            let computed = crc32c(&raw[CRC_START..]);
            if computed != crc {
                return Err(DecodeError::CrcMismatch {
                    stored: crc,
                    computed,
                });
            }
        }
        let batch = Self {
            base_offset,
            partition_leader_epoch,
            attributes: BatchAttributes(h.get_i16()),
            last_offset_delta: h.get_i32(),
            base_timestamp: h.get_i64(),
            max_timestamp: h.get_i64(),
            producer_id: h.get_i64(),
            producer_epoch: h.get_i16(),
            base_sequence: h.get_i32(),
            record_count: h.get_i32(),
            crc,
            raw,
        };
        if batch.record_count < 0 {
            return Err(DecodeError::InvalidValue {
                field: "RecordBatch.RecordCount",
                reason: "negative",
            });
        }
        Ok(batch)
    }

    /// The whole batch as it was on the wire.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        // Wrapping, as Java's long arithmetic: hostile offsets must not panic.
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Sequence of the last record, wrapping past `i32::MAX` to 0 as the
    /// broker does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        wrap_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// The records section (compressed if the batch is).
    pub fn records_section(&self) -> Bytes {
        self.raw.slice(BATCH_HEADER_LEN..)
    }

    /// The records, decompressed if needed, ready to iterate.
    pub fn records(&self, limits: &DecodeLimits) -> Result<BatchRecords, DecodeError> {
        let codec = self
            .attributes
            .compression()
            .ok_or(DecodeError::InvalidValue {
                field: "RecordBatch.Attributes",
                reason: "unknown compression codec",
            })?;
        let section = self.records_section();
        let data = match codec {
            Compression::None => section,
            codec => compression::decompress(codec, &section, limits.max_decompressed_len)?,
        };
        Ok(BatchRecords {
            data,
            count: self.record_count,
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            log_append_time: (self.attributes.timestamp_type() == TimestampType::LogAppendTime)
                .then_some(self.max_timestamp),
        })
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

/// Total size of the batch starting at `buf` (header length check included).
fn peek_batch_len(buf: &[u8]) -> Result<usize, DecodeError> {
    if buf.len() < LENGTH_FIELD_END {
        return Err(DecodeError::Truncated {
            field: "RecordBatch",
            needed: LENGTH_FIELD_END,
            remaining: buf.len(),
        });
    }
    let len = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let min = (BATCH_HEADER_LEN - LENGTH_FIELD_END) as i32;
    if len < min {
        return Err(DecodeError::LengthOutOfRange {
            field: "RecordBatch.BatchLength",
            length: i64::from(len),
            limit: usize::MAX,
        });
    }
    Ok(LENGTH_FIELD_END + len as usize)
}

/// Iterates the batches in a fetch response's `records` bytes.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    rest: Bytes,
    opts: BatchDecodeOptions,
    truncated: bool,
    failed: bool,
}

impl RecordBatches {
    /// Batches in `records`.
    pub fn new(records: Bytes, opts: BatchDecodeOptions) -> Self {
        Self {
            rest: records,
            opts,
            truncated: false,
            failed: false,
        }
    }

    /// Whether the walk ended at a partial trailing batch (which the broker
    /// sends when it cuts a response at the byte limit; fetch again from the
    /// next offset to get it whole).
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl Iterator for RecordBatches {
    type Item = Result<RecordBatch, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        // A trailing fragment shorter than a header, or a batch whose length
        // runs past the end, is the broker's truncation, not corruption.
        let whole = match peek_batch_len(&self.rest) {
            Ok(total) => total <= self.rest.len(),
            Err(DecodeError::Truncated { .. }) => false,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if !whole {
            self.truncated = true;
            self.rest.clear();
            return None;
        }
        let r = RecordBatch::decode(&mut self.rest, &self.opts);
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// The records of one batch, decompressed.
#[derive(Debug, Clone)]
pub struct BatchRecords {
    data: Bytes,
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
}

impl BatchRecords {
    /// The record bytes every [`RecordRef`] slices into.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Iterates the records. The iterator checks that the batch holds exactly
    /// `record_count` records and no stray bytes.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            records: self,
            pos: 0,
            left: self.count,
            failed: false,
        }
    }
}

impl<'a> IntoIterator for &'a BatchRecords {
    type Item = Result<RecordRef<'a>, DecodeError>;
    type IntoIter = RecordIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`BatchRecords`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    records: &'a BatchRecords,
    pos: usize,
    left: i32,
    failed: bool,
}

/// One record, borrowing from its batch's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp (the append time for LogAppendTime batches).
    pub timestamp: i64,
    /// Key (`None` = null).
    pub key: Option<&'a [u8]>,
    /// Value (`None` = null, a tombstone).
    pub value: Option<&'a [u8]>,
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    headers: &'a [u8],
    header_count: usize,
    data: &'a Bytes,
}

impl<'a> RecordRef<'a> {
    /// The headers, in order; duplicate keys and null values kept.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            rest: self.headers,
            left: self.header_count,
        }
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count
    }

    /// The key as shared `Bytes` (one reference-count increment, no copy).
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key.map(|k| self.data.slice_ref(k))
    }

    /// The value as shared `Bytes` (no copy).
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.map(|v| self.data.slice_ref(v))
    }

    /// A slice of the batch buffer as shared `Bytes`.
    pub fn share(&self, part: &[u8]) -> Bytes {
        self.data.slice_ref(part)
    }

    /// For records of a control batch: the marker in the key.
    pub fn control(&self) -> Option<ControlRecord> {
        let k = self.key?;
        if k.len() < 4 {
            return None;
        }
        let version = i16::from_be_bytes([k[0], k[1]]);
        let kind = match i16::from_be_bytes([k[2], k[3]]) {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            other => ControlType::Other(other),
        };
        (version >= 0).then_some(ControlRecord { version, kind })
    }
}

/// A control record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// Key version.
    pub version: i16,
    /// Marker type.
    pub kind: ControlType,
}

/// Control record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// Transaction aborted.
    Abort,
    /// Transaction committed.
    Commit,
    /// A type this version of franz does not know.
    Other(i16),
}

/// One header of a [`RecordRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Key bytes (UTF-8 by convention, not checked).
    pub key: &'a [u8],
    /// Value (`None` = null).
    pub value: Option<&'a [u8]>,
}

/// Iterator over a record's headers (validated when the record was read).
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut c = Cursor {
            buf: self.rest,
            pos: 0,
        };
        let header = c.header().ok()?;
        self.rest = &self.rest[c.pos..];
        Some(header)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let data = &self.records.data;
        if self.left == 0 {
            if self.pos != data.len() {
                self.failed = true;
                return Some(Err(DecodeError::TrailingBytes {
                    field: "RecordBatch.Records",
                    remaining: data.len() - self.pos,
                }));
            }
            return None;
        }
        let r = self.read_record();
        match &r {
            Ok(_) => self.left -= 1,
            Err(_) => self.failed = true,
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.left).unwrap_or(0);
        (0, Some(n))
    }
}

impl<'a> RecordIter<'a> {
    fn read_record(&mut self) -> Result<RecordRef<'a>, DecodeError> {
        self.parse_record().map_err(malformed)
    }

    #[inline]
    fn parse_record(&mut self) -> Result<RecordRef<'a>, Fault> {
        let records = self.records;
        let data: &'a Bytes = &records.data;
        let mut c = Cursor {
            buf: &data[..],
            pos: self.pos,
        };
        let len = c.varint("Record.Length")?;
        let len = usize::try_from(len).map_err(|_| "Record.Length")?;
        let end = c
            .pos
            .checked_add(len)
            .filter(|e| *e <= data.len())
            .ok_or("Record.Length")?;
        // Parse within the record's own bounds.
        let mut c = Cursor {
            buf: &data[..end],
            pos: c.pos,
        };
        let attributes = c.u8("Record.Attributes")? as i8;
        let timestamp_delta = c.varlong("Record.TimestampDelta")?;
        let offset_delta = c.varint("Record.OffsetDelta")?;
        let key = c.nullable_slice("Record.Key")?;
        let value = c.nullable_slice("Record.Value")?;
        let header_count = c.varint("Record.HeaderCount")?;
        let header_count = usize::try_from(header_count)
            .ok()
            .filter(|n| *n <= end - c.pos)
            .ok_or("Record.HeaderCount")?;
        let headers_start = c.pos;
        for _ in 0..header_count {
            c.header()?;
        }
        let headers = &data[headers_start..c.pos];
        if c.pos != end {
            // The record's length claims bytes its fields do not use.
            return Err("Record.Length");
        }
        self.pos = end;
        Ok(RecordRef {
            offset: records.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: records
                .log_append_time
                .unwrap_or_else(|| records.base_timestamp.wrapping_add(timestamp_delta)),
            key,
            value,
            attributes,
            headers,
            header_count,
            data,
        })
    }
}

/// A bounds-checked cursor for the record's zigzag-varint fields.
///
/// On the hot path errors are just the field name (a `&'static str` that
/// fits in registers); [`RecordIter`] turns one into a [`DecodeError`].
/// Building a full error per field read, even lazily, kept these functions
/// from inlining and cost more than the parsing.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

type Fault = &'static str;

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn u8(&mut self, field: Fault) -> Result<u8, Fault> {
        let b = *self.buf.get(self.pos).ok_or(field)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn uvarlong_slow(&mut self, field: Fault, max_bytes: u32) -> Result<u64, Fault> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.u8(field)?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(field)
    }

    #[inline(always)]
    fn uvarlong(&mut self, field: Fault, max_bytes: u32) -> Result<u64, Fault> {
        // Most record varints are one byte.
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.uvarlong_slow(field, max_bytes),
        }
    }

    #[inline(always)]
    fn varint(&mut self, field: Fault) -> Result<i32, Fault> {
        let v = u32::try_from(self.uvarlong(field, 5)?).map_err(|_| field)?;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    #[inline(always)]
    fn varlong(&mut self, field: Fault) -> Result<i64, Fault> {
        let v = self.uvarlong(field, 10)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    #[inline(always)]
    fn nullable_slice(&mut self, field: Fault) -> Result<Option<&'a [u8]>, Fault> {
        let len = self.varint(field)?;
        if len < 0 {
            return if len == -1 { Ok(None) } else { Err(field) };
        }
        let end = self.pos + len as usize;
        let s = self.buf.get(self.pos..end).ok_or(field)?;
        self.pos = end;
        Ok(Some(s))
    }

    #[inline(always)]
    fn header(&mut self) -> Result<HeaderRef<'a>, Fault> {
        let key = self.nullable_slice("Header.Key")?.ok_or("Header.Key")?;
        let value = self.nullable_slice("Header.Value")?;
        Ok(HeaderRef { key, value })
    }
}

/// The error for a malformed record field.
fn malformed(field: Fault) -> DecodeError {
    DecodeError::InvalidValue {
        field,
        reason: "malformed, truncated or out-of-range record field",
    }
}

/// An owned record header, as producers hand them over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Key.
    pub key: String,
    /// Value (`None` = null).
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// What goes into the batch header besides the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// Base offset (0 from producers; the broker assigns offsets).
    pub base_offset: i64,
    /// Leader epoch (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Codec for the records section.
    pub compression: Compression,
    /// Codec level, where the codec has one.
    pub compression_level: Option<u32>,
    /// Always CreateTime from producers.
    pub timestamp_type: TimestampType,
    /// Transactional batch.
    pub transactional: bool,
    /// Control batch.
    pub control: bool,
    /// Producer id (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch (-1 when not idempotent).
    pub producer_epoch: i16,
    /// First sequence (-1 when not idempotent).
    pub base_sequence: i32,
}

impl Default for BatchMeta {
    fn default() -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: -1,
            compression: Compression::None,
            compression_level: None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Builds one batch, appending each record straight into its buffer.
///
/// ```
/// use franz_protocol::record::{BatchDecodeOptions, BatchMeta, RecordBatch, RecordBatchBuilder};
/// let mut b = RecordBatchBuilder::new();
/// b.push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[]);
/// let mut bytes = b.finish(&BatchMeta::default()).unwrap();
/// let batch = RecordBatch::decode(&mut bytes, &BatchDecodeOptions::default()).unwrap();
/// assert_eq!(batch.record_count, 1);
/// ```
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    /// The batch so far: room for the header, then the records. Between
    /// pushes its length is exactly the bytes written.
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Width of the last record's length prefix: the guess for the next one
    /// when its size bounds leave the width open.
    prefix_hint: usize,
}

impl Default for RecordBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    /// An empty batch with room for about `bytes` of records.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + bytes + SCRATCH);
        buf.put_bytes(0, BATCH_HEADER_LEN);
        Self {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            prefix_hint: 1,
        }
    }

    /// Records so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if finished uncompressed.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// The size one more record would add.
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let body = self.body_len(timestamp, key, value, headers);
        varint_len(body as i32) + body
    }

    fn body_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let ts_delta = if self.count == 0 {
            0
        } else {
            timestamp.wrapping_sub(self.base_timestamp)
        };
        1 + varlong_len(ts_delta)
            + varint_len(self.count)
            + field_len(key)
            + field_len(value)
            + headers_len(headers)
    }

    /// Appends a record. Offsets count up from 0; timestamps are stored as
    /// deltas from the first record's.
    #[inline]
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        // The length prefix comes first but depends on the body's size.
        // Sizing every field before writing it cost more than writing it, so
        // the body is written once behind a prefix of guessed width, and
        // moved in the rare case the guess was wrong. Records in a batch are
        // mostly alike, so the guess is the last record's width; a large
        // value gets a guess from size bounds instead, so that records
        // alternating across a width boundary never move kilobytes each.
        let guess = if value.map_or(0, <[u8]>::len) < GUESS_FROM_BOUNDS {
            self.prefix_hint
        } else {
            self.prefix_width(key, value, headers)
        };
        let start = self.buf.len();
        let mut w = RecordWriter::new(&mut self.buf, start + guess);
        let count = self.count;
        // The common shape, a short key and short headers, takes two
        // windows of short writes around one value copy.
        let short = |b: Option<&[u8]>| b.is_none_or(|b| b.len() <= SMALL_FIELD);
        let short_key = short(key);
        if !short_key {
            w.group(|w| w.head(ts_delta, count));
            w.field(key);
        }
        w.group(|w| {
            if short_key {
                w.head(ts_delta, count);
                w.short_nullable(key);
            }
            if short(value) {
                w.short_nullable(value);
            } else {
                w.length(value);
            }
        });
        if !short(value) {
            w.append(value);
        }
        // The header count shares a window with the first header if short.
        let mut rest = headers;
        w.group(|w| {
            w.varint(headers.len() as i32);
            if let Some((h, tail)) = headers.split_first()
                && short(Some(h.key.as_bytes()))
                && short(h.value.as_deref())
            {
                w.short_nullable(Some(h.key.as_bytes()));
                w.short_nullable(h.value.as_deref());
                rest = tail;
            }
        });
        for h in rest {
            let (k, v) = (Some(h.key.as_bytes()), h.value.as_deref());
            if short(k) && short(v) {
                w.group(|w| {
                    w.short_nullable(k);
                    w.short_nullable(v);
                });
            } else {
                w.field(k);
                w.field(v);
            }
        }
        self.prefix_hint = w.finish_record(start, guess);
        self.count += 1;
    }

    /// The width of a record's length prefix, from bounds on its body size:
    /// exact unless the bounds straddle a varint boundary (bodies near 8 KiB
    /// or 1 MiB), then the last record's width.
    #[inline(always)]
    fn prefix_width(&self, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
        let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
        let mut fields = len(key) + len(value);
        for h in headers {
            fields += h.key.len() + len(h.value.as_deref());
        }
        // Smallest: every varint one byte. Largest: every varint at full
        // width (attributes 1, timestamp delta 10, offset delta and the four
        // lengths 5 each, 5 for each header field's length).
        let fixed = 6 + 2 * headers.len();
        let low = width_of(fields + fixed);
        let high = width_of(fields + fixed + 24 + 8 * headers.len());
        if low == high { low } else { self.prefix_hint }
    }

    /// Finishes the batch: header, optional compression, CRC.
    pub fn finish(self, meta: &BatchMeta) -> Result<Bytes, EncodeError> {
        let Self {
            mut buf,
            count,
            base_timestamp,
            max_timestamp,
            ..
        } = self;
        let max_timestamp = if count == 0 {
            base_timestamp
        } else {
            max_timestamp
        };
        if meta.compression != Compression::None {
            let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + buf.len() / 2);
            out.put_bytes(0, BATCH_HEADER_LEN);
            compression::compress(
                meta.compression,
                &buf[BATCH_HEADER_LEN..],
                &mut out,
                meta.compression_level,
            )?;
            buf = out;
        }
        let batch_len =
            i32::try_from(buf.len() - LENGTH_FIELD_END).map_err(|_| EncodeError::TooLong {
                field: "RecordBatch",
                length: buf.len(),
            })?;
        let attributes = BatchAttributes::new(
            meta.compression,
            meta.timestamp_type,
            meta.transactional,
            meta.control,
        );
        let mut h = &mut buf[..BATCH_HEADER_LEN];
        h.put_i64(meta.base_offset);
        h.put_i32(batch_len);
        h.put_i32(meta.partition_leader_epoch);
        h.put_i8(2);
        h.put_u32(0); // CRC, below
        h.put_i16(attributes.0);
        h.put_i32((count - 1).max(0));
        h.put_i64(base_timestamp);
        h.put_i64(max_timestamp);
        h.put_i64(meta.producer_id);
        h.put_i16(meta.producer_epoch);
        h.put_i32(meta.base_sequence);
        h.put_i32(count);
        let crc = crc32c(&buf[CRC_START..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

/// Bytes a nullable record field takes: length varint, then bytes.
fn field_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| varint_len(b.len() as i32) + b.len())
}

/// Bytes a record's headers take (count and fields).
fn headers_len(headers: &[Header]) -> usize {
    let mut n = varint_len(headers.len() as i32);
    for h in headers {
        n += field_len(Some(h.key.as_bytes())) + field_len(h.value.as_deref());
    }
    n
}

/// The width of the varint length prefix for a record body of `len` bytes.
#[inline(always)]
fn width_of(len: usize) -> usize {
    varint_len(i32::try_from(len).unwrap_or(i32::MAX))
}

/// Bytes a group of short writes may touch: a record's head (attributes
/// and deltas, 16 bytes) or a header count (5), then two short fields
/// (a 5-byte length and 16 bytes each).
const WINDOW: usize = 64;

/// Values from this size on get their record's prefix width from size
/// bounds, not from the last record (see `push`).
const GUESS_FROM_BOUNDS: usize = 2048;

/// Scratch the writer appends when it runs short of a window: a window,
/// and the up to 5 bytes a record's length prefix may start past the end.
/// Every scratch byte is zeroed and then overwritten or dropped, so more
/// costs time: 256 measured 20 % slower than this on 100-byte values.
const SCRATCH: usize = WINDOW + 8;

/// Fields up to this size are copied with fixed-size moves, not `memcpy`.
/// (Wider fixed moves for values up to 128 B measured slower than `memcpy`.)
const SMALL_FIELD: usize = 16;

/// Appends one record's fields to the batch buffer.
///
/// Lengths, deltas and short fields are stored in groups into a fixed-size
/// window of initialised scratch bytes kept just past the write position
/// (`buf[pos..]`): one bounds check per group, and fixed-size moves instead
/// of `memcpy` calls. Long fields are appended with one `memcpy`. The batch
/// is never zero-filled ahead, so no byte of a value is written twice.
/// Slices are taken with `get_mut`, so a logic error cannot panic; the
/// round-trip tests catch it.
struct RecordWriter<'a> {
    buf: &'a mut BytesMut,
    pos: usize,
}

impl<'a> RecordWriter<'a> {
    /// A writer at `pos`, which may be a few bytes past the buffer's end
    /// (the room left for the length prefix).
    #[inline(always)]
    fn new(buf: &'a mut BytesMut, pos: usize) -> Self {
        Self { buf, pos }
    }

    /// Runs a group of short writes in the window at the position, and
    /// moves past what they wrote.
    #[inline(always)]
    fn group(&mut self, f: impl FnOnce(&mut Window<'_>)) {
        if self.buf.len() < self.pos + WINDOW {
            self.buf.put_bytes(0, SCRATCH);
        }
        let at = self.pos;
        let written = match self
            .buf
            .get_mut(at..at + WINDOW)
            .and_then(|s| <&mut [u8; WINDOW]>::try_from(s).ok())
        {
            Some(w) => {
                let mut w = Window { w, p: 0 };
                f(&mut w);
                w.p
            }
            None => 0,
        };
        self.pos += written;
    }

    /// A nullable key, value or header field of any size.
    #[inline(always)]
    fn field(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) if b.len() > SMALL_FIELD => {
                self.group(|w| w.varint(b.len() as i32));
                self.append(Some(b));
            }
            _ => self.group(|w| w.short_nullable(b)),
        }
    }

    /// Appends a field's bytes with one `memcpy`, past the scratch.
    #[inline(always)]
    fn append(&mut self, b: Option<&[u8]>) {
        if let Some(b) = b {
            self.buf.truncate(self.pos);
            self.buf.extend_from_slice(b);
            self.pos += b.len();
        }
    }

    /// Writes the length prefix in front of the body that starts `guess`
    /// bytes after `start`, moving the body if the guess was wrong, and
    /// trims the scratch. Returns the prefix width.
    #[inline(always)]
    fn finish_record(mut self, start: usize, guess: usize) -> usize {
        let body = self.pos - (start + guess);
        let width = width_of(body);
        if width != guess {
            if self.buf.len() < self.pos + WINDOW {
                self.buf.put_bytes(0, SCRATCH);
            }
            if let Some(record) = self.buf.get_mut(start..start + width.max(guess) + body) {
                record.copy_within(guess..guess + body, width);
            }
        }
        let end = start + width + body;
        self.pos = start;
        self.group(|w| w.varint(body as i32));
        self.buf.truncate(end);
        width
    }
}

/// A fixed-size window of scratch bytes at the writer's position: writes
/// are checked against a constant, and `p` stays in a register.
struct Window<'w> {
    w: &'w mut [u8; WINDOW],
    p: usize,
}

impl Window<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.w.get_mut(self.p) {
            *slot = b;
        }
        self.p += 1;
    }

    #[inline(always)]
    fn uvarlong(&mut self, mut v: u64) {
        // Most record varints are one byte; a plain loop is shortest for them.
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline(always)]
    fn varint(&mut self, v: i32) {
        self.uvarlong(u64::from(zigzag32(v)));
    }

    #[inline(always)]
    fn varlong(&mut self, v: i64) {
        self.uvarlong(((v << 1) ^ (v >> 63)) as u64);
    }

    /// A record's head: attributes, timestamp delta, offset delta.
    #[inline(always)]
    fn head(&mut self, ts_delta: i64, offset_delta: i32) {
        self.byte(0); // attributes
        self.varlong(ts_delta);
        self.varint(offset_delta);
    }

    /// A nullable field's length (-1 for null).
    #[inline(always)]
    fn length(&mut self, b: Option<&[u8]>) {
        self.varint(b.map_or(-1, |b| b.len() as i32));
    }

    /// A nullable field of at most `SMALL_FIELD` bytes.
    #[inline(always)]
    fn short_nullable(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.short_field(b),
            None => self.byte(1), // zigzag(-1)
        }
    }

    /// A non-null field of at most `SMALL_FIELD` bytes: length, then the
    /// bytes as two overlapping fixed-size moves (a `memcpy` call costs more
    /// than the bytes it moves).
    #[inline(always)]
    fn short_field(&mut self, src: &[u8]) {
        self.varint(src.len() as i32);
        let (n, at, w) = (src.len(), self.p, &mut self.w[..]);
        match n {
            0..4 => {
                for (slot, b) in w.iter_mut().skip(at).zip(src) {
                    *slot = *b;
                }
            }
            4..8 => copy_overlapping::<4>(w, at, src),
            _ => copy_overlapping::<8>(w, at, src),
        }
        self.p += n;
    }
}

/// Copies all of `src` (`N..=2N` bytes) into `dst` at `at` as two `N`-byte
/// moves, the first and the last `N` bytes, which overlap in the middle.
#[inline(always)]
fn copy_overlapping<const N: usize>(dst: &mut [u8], at: usize, src: &[u8]) {
    let n = src.len();
    copy_fixed::<N>(dst, at, src, 0);
    copy_fixed::<N>(dst, at + n - N, src, n - N);
}

/// Copies `N` bytes of `src` from `from` into `dst` at `at`, as one fixed-size
/// move (nothing if either range is out of bounds).
#[inline(always)]
fn copy_fixed<const N: usize>(dst: &mut [u8], at: usize, src: &[u8], from: usize) {
    if let (Some(s), Some(d)) = (
        src.get(from..from + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok()),
        dst.get_mut(at..at + N),
    ) {
        d.copy_from_slice(&s);
    }
}

#[inline(always)]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Rewrites the producer fields of a finished batch in place and fixes the
/// CRC (used when a producer bumps its epoch and re-sequences a batch).
pub fn set_producer_fields(
    batch: &mut BytesMut,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), EncodeError> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(EncodeError::TooLong {
            field: "RecordBatch",
            length: batch.len(),
        });
    }
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}
