//! Decoding: `RecordBatches` walks a fetch's bytes, `RecordBatch` checks a header and CRC, `BatchRecords` and `RecordRef` give zero-copy records and headers.

use super::*;

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

/// Total size of the batch starting at `buf` (header length check included).
pub(super) fn peek_batch_len(buf: &[u8]) -> Result<usize, DecodeError> {
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
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub(super) type Fault = &'static str;

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
pub(super) fn malformed(field: Fault) -> DecodeError {
    DecodeError::InvalidValue {
        field,
        reason: "malformed, truncated or out-of-range record field",
    }
}
