//! Record batch vectors from `docs/test-vectors.md` §3–§4
//! (transcribed here as test data), plus behaviour the Java tests assert.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use bytes::{Bytes, BytesMut};
use franz_protocol::DecodeError;
use franz_protocol::compression::Compression;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::{
    BatchDecodeOptions, BatchMeta, ControlType, Header, RecordBatch, RecordBatchBuilder,
    RecordBatches, TimestampType, wrap_sequence,
};

fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

const SARAMA_EMPTY: &str = "0000000000000000 00000031 00000000 02 595fb7dd 0000 00000000
  0000000000000000 0000000000000000 0000000000000000 0000 00000000 00000000";
const SARAMA_ONE: &str = "0000000000000000 00000046 00000000 02 547961fd 0000 00000000
  000001588dcd5938 0000000000000000 0000000000000000 0000 00000000 00000001
  28 00 0a 00 08 01020304 06 050607 02 06 08090a 04 0b0c";
const JAVA_A: &str = "0000000000000000 0000004c ffffffff 02 efd2117e 0000 00000002
  0000000000000001 0000000000000003 ffffffffffffffff ffff ffffffff 00000003
  10 00 00 00 02 61 02 31 00
  10 00 02 02 02 62 02 32 00
  10 00 04 04 02 63 02 33 00";
const JAVA_B: &str = "000000000012d687 00000043 ffffffff 02 ddd6267b 0000 00000001
  0000000000000001 0000000000000002 ffffffffffffffff ffff ffffffff 00000002
  10 00 00 00 02 61 02 76 00
  10 00 02 02 02 62 02 76 00";
const JAVA_C: &str = "0000000000000000 00000040 ffffffff 02 ee19a643 0000 00000000
  0000018bcfe56800 0000018bcfe56800 ffffffffffffffff ffff ffffffff 00000001
  1c 00 00 00 01 0a 68656c6c6f 02 02 68 01";
const JAVA_D: &str = "0000000000000000 0000003a ffffffff 02 5fc9226a 0000 00000000
  0000018bcfe56800 0000018bcfe56800 00000000000003e8 0000 00000000 00000001
  10 00 00 00 02 6b 02 76 00";

fn decode_one(bytes: Bytes) -> RecordBatch {
    let mut b = bytes;
    let batch = RecordBatch::decode(&mut b, &BatchDecodeOptions::default()).unwrap();
    assert!(b.is_empty());
    batch
}

#[test]
fn crc32c_vectors() {
    for (input, crc) in [
        ("Some String", 0x2445_290Fu32),
        ("123456789", 0xE306_9283),
        ("", 0),
        ("a", 0xC1D0_4330),
        ("Any String you want", 0x73C6_E69B),
    ] {
        assert_eq!(
            franz_protocol::record::crc32c(input.as_bytes()),
            crc,
            "{input:?}"
        );
    }
}

/// Our SIMD CRC-32C agrees with the `crc32c` crate for every length up to
/// 4 KiB plus a few large sizes and every start alignment: SIMD code switches
/// strategy by length and alignment, so each path is covered.
#[test]
fn crc32c_agrees_with_an_independent_implementation() {
    let data: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for offset in 0..64 {
        for len in (0..=4096).chain([8191, 16_384, 65_536, 69_000 - 64]) {
            let slice = &data[offset..offset + len];
            assert_eq!(
                franz_protocol::record::crc32c(slice),
                crc32c::crc32c(slice),
                "offset {offset}, length {len}"
            );
        }
    }
}

#[test]
fn sarama_fixtures_decode() {
    let empty = decode_one(hex(SARAMA_EMPTY));
    assert_eq!(empty.crc, 0x595F_B7DD);
    assert_eq!(empty.record_count, 0);
    assert_eq!(
        empty
            .records(&DecodeLimits::default())
            .unwrap()
            .iter()
            .count(),
        0
    );

    let one = decode_one(hex(SARAMA_ONE));
    assert_eq!(one.crc, 0x5479_61FD);
    assert_eq!(one.base_timestamp, 1_479_847_795_000);
    let records = one.records(&DecodeLimits::default()).unwrap();
    let recs: Vec<_> = records.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!(r.key, Some(&[1u8, 2, 3, 4][..]));
    assert_eq!(r.value, Some(&[5u8, 6, 7][..]));
    assert_eq!(r.timestamp, 1_479_847_795_005);
    let headers: Vec<_> = r.headers().collect();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].key, &[8u8, 9, 10][..]);
    assert_eq!(headers[0].value, Some(&[11u8, 12][..]));
}

#[test]
fn sarama_empty_batch_encodes_identically() {
    let meta = BatchMeta {
        partition_leader_epoch: 0,
        producer_id: 0,
        producer_epoch: 0,
        base_sequence: 0,
        ..BatchMeta::default()
    };
    let built = RecordBatchBuilder::new().finish(&meta).unwrap();
    assert_eq!(built, hex(SARAMA_EMPTY));
    let control = RecordBatchBuilder::new()
        .finish(&BatchMeta {
            control: true,
            ..meta
        })
        .unwrap();
    assert_eq!(&control[17..21], &0x512E_43D9u32.to_be_bytes());
}

#[test]
fn java_equivalent_batches_encode_byte_for_byte() {
    let mut a = RecordBatchBuilder::new();
    for (ts, k, v) in [(1, "a", "1"), (2, "b", "2"), (3, "c", "3")] {
        a.push(ts, Some(k.as_bytes()), Some(v.as_bytes()), &[]);
    }
    assert_eq!(a.finish(&BatchMeta::default()).unwrap(), hex(JAVA_A));

    let mut b = RecordBatchBuilder::new();
    b.push(1, Some(b"a"), Some(b"v"), &[]);
    b.push(2, Some(b"b"), Some(b"v"), &[]);
    let meta = BatchMeta {
        base_offset: 1_234_567,
        ..BatchMeta::default()
    };
    assert_eq!(b.finish(&meta).unwrap(), hex(JAVA_B));

    let mut c = RecordBatchBuilder::new();
    c.push(
        1_700_000_000_000,
        None,
        Some(b"hello"),
        &[Header {
            key: "h".into(),
            value: None,
        }],
    );
    assert_eq!(c.finish(&BatchMeta::default()).unwrap(), hex(JAVA_C));

    let mut d = RecordBatchBuilder::new();
    d.push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[]);
    let meta = BatchMeta {
        producer_id: 1000,
        producer_epoch: 0,
        base_sequence: 0,
        ..BatchMeta::default()
    };
    assert_eq!(d.finish(&meta).unwrap(), hex(JAVA_D));
}

#[test]
fn java_equivalent_batches_decode() {
    let a = decode_one(hex(JAVA_A));
    assert_eq!(a.crc, 0xEFD2_117E);
    let records = a.records(&DecodeLimits::default()).unwrap();
    let got: Vec<(i64, i64, &[u8], &[u8])> = records
        .iter()
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.timestamp, r.key.unwrap(), r.value.unwrap())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1, &b"a"[..], &b"1"[..]),
            (1, 2, &b"b"[..], &b"2"[..]),
            (2, 3, &b"c"[..], &b"3"[..])
        ]
    );

    let b = decode_one(hex(JAVA_B));
    assert_eq!(b.base_offset, 1_234_567);
    let offs: Vec<i64> = b
        .records(&DecodeLimits::default())
        .unwrap()
        .iter()
        .map(|r| r.unwrap().offset)
        .collect();
    assert_eq!(offs, vec![1_234_567, 1_234_568]);

    let c = decode_one(hex(JAVA_C));
    let recs = c.records(&DecodeLimits::default()).unwrap();
    let r = recs.iter().next().unwrap().unwrap();
    assert_eq!(r.key, None, "null key stays null");
    let h: Vec<_> = r.headers().collect();
    assert_eq!(h[0].value, None, "null header value stays null");

    let d = decode_one(hex(JAVA_D));
    assert_eq!(
        (d.producer_id, d.producer_epoch, d.base_sequence),
        (1000, 0, 0)
    );
}

#[test]
fn a_changed_byte_inside_the_crc_span_is_caught_and_outside_is_not() {
    // testInvalidCrc: lastOffsetDelta (offset 23) set to 23.
    let mut bad = BytesMut::from(&hex(JAVA_A)[..]);
    bad[23..27].copy_from_slice(&23i32.to_be_bytes());
    let err =
        RecordBatch::decode(&mut bad.clone().freeze(), &BatchDecodeOptions::default()).unwrap_err();
    assert!(matches!(err, DecodeError::CrcMismatch { .. }), "{err}");
    // With verification off it decodes (as librdkafka's check.crcs=false).
    let opts = BatchDecodeOptions {
        verify_crc: false,
        ..BatchDecodeOptions::default()
    };
    assert!(RecordBatch::decode(&mut bad.freeze(), &opts).is_ok());
    // baseOffset and partitionLeaderEpoch are outside the CRC.
    let mut moved = BytesMut::from(&hex(JAVA_A)[..]);
    moved[0..8].copy_from_slice(&99i64.to_be_bytes());
    moved[12..16].copy_from_slice(&7i32.to_be_bytes());
    assert_eq!(decode_one(moved.freeze()).base_offset, 99);
}

#[test]
fn batch_length_too_small_is_rejected() {
    let mut bad = BytesMut::from(&hex(JAVA_A)[..]);
    bad[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(RecordBatch::decode(&mut bad.freeze(), &BatchDecodeOptions::default()).is_err());
}

#[test]
fn record_count_must_match_the_records() {
    for (count, compression) in [
        (2i32, Compression::None),
        (4, Compression::None),
        (2, Compression::Gzip),
        (4, Compression::Gzip),
    ] {
        let mut b = RecordBatchBuilder::new();
        for i in 0..3u8 {
            b.push(i64::from(i), Some(&[i]), Some(&[i]), &[]);
        }
        let meta = BatchMeta {
            compression,
            ..BatchMeta::default()
        };
        let mut bytes = BytesMut::from(&b.finish(&meta).unwrap()[..]);
        bytes[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]); // the oracle, not ours
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let batch = decode_one(bytes.freeze());
        let records = batch.records(&DecodeLimits::default()).unwrap();
        let results: Vec<_> = records.iter().collect();
        assert!(
            results.iter().any(Result::is_err),
            "count {count} {compression:?} accepted"
        );
    }
}

#[test]
fn sequences_wrap_to_zero() {
    let mut b = RecordBatchBuilder::new();
    for _ in 0..3 {
        b.push(0, None, Some(b"x"), &[]);
    }
    let meta = BatchMeta {
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: i32::MAX - 1,
        ..BatchMeta::default()
    };
    let batch = decode_one(b.finish(&meta).unwrap());
    assert_eq!(batch.last_sequence(), 0);
    assert_eq!(wrap_sequence(i32::MAX, 1), 0);
    assert_eq!(wrap_sequence(5, 2), 7);
}

#[test]
fn headers_keep_order_duplicates_and_nulls_in_every_codec() {
    let headers = vec![
        Header::new("dup", "1"),
        Header {
            key: "null".into(),
            value: None,
        },
        Header::new("dup", "2"),
        Header::new("empty", ""),
    ];
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut b = RecordBatchBuilder::new();
        b.push(10, Some(b""), None, &headers);
        b.push(5, None, Some(b""), &[]);
        b.push(20, Some(b"k"), Some(b"value"), &headers[..1]);
        let meta = BatchMeta {
            compression,
            ..BatchMeta::default()
        };
        let batch = decode_one(b.finish(&meta).unwrap());
        assert_eq!(batch.attributes.compression(), Some(compression));
        assert_eq!(batch.max_timestamp, 20);
        let records = batch.records(&DecodeLimits::default()).unwrap();
        let recs: Vec<_> = records.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (recs[0].key, recs[0].value),
            (Some(&b""[..]), None),
            "empty key, tombstone"
        );
        assert_eq!(
            (recs[1].key, recs[1].value),
            (None, Some(&b""[..])),
            "null key, empty value"
        );
        assert_eq!(recs[1].timestamp, 5, "negative timestamp delta");
        let h: Vec<(Vec<u8>, Option<Vec<u8>>)> = recs[0]
            .headers()
            .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            h,
            vec![
                (b"dup".to_vec(), Some(b"1".to_vec())),
                (b"null".to_vec(), None),
                (b"dup".to_vec(), Some(b"2".to_vec())),
                (b"empty".to_vec(), Some(Vec::new())),
            ]
        );
    }
}

#[test]
fn uncompressed_values_are_slices_of_the_fetched_buffer() {
    let mut b = RecordBatchBuilder::new();
    b.push(
        0,
        Some(b"key"),
        Some(b"some value"),
        &[Header::new("h", "hv")],
    );
    let wire = b.finish(&BatchMeta::default()).unwrap();
    let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    let batch = decode_one(wire.clone());
    let records = batch.records(&DecodeLimits::default()).unwrap();
    let r = records.iter().next().unwrap().unwrap();
    for part in [
        r.key.unwrap(),
        r.value.unwrap(),
        r.headers().next().unwrap().value.unwrap(),
    ] {
        assert!(range.contains(&(part.as_ptr() as usize)), "copied");
    }
    let shared = r.value_bytes().unwrap();
    assert!(range.contains(&(shared.as_ptr() as usize)));
}

#[test]
fn a_truncated_trailing_batch_ends_the_walk_quietly() {
    let a = hex(JAVA_A);
    let b = hex(JAVA_B);
    let mut joined = BytesMut::new();
    joined.extend_from_slice(&a);
    joined.extend_from_slice(&b[..b.len() - 5]);
    let mut it = RecordBatches::new(joined.freeze(), BatchDecodeOptions::default());
    assert_eq!(it.next().unwrap().unwrap().record_count, 3);
    assert!(it.next().is_none());
    assert!(it.truncated());
    // Fewer than 12 bytes left over is truncation too.
    let mut joined = BytesMut::from(&a[..]);
    joined.extend_from_slice(&b[..7]);
    let mut it = RecordBatches::new(joined.freeze(), BatchDecodeOptions::default());
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().is_none());
    assert!(it.truncated());
}

#[test]
fn control_records_are_recognised() {
    let mut b = RecordBatchBuilder::new();
    let value = [0u8, 0, 0, 0, 0, 5]; // version 0, coordinator epoch 5
    b.push(0, Some(&[0, 0, 0, 1]), Some(&value), &[]);
    let meta = BatchMeta {
        control: true,
        transactional: true,
        producer_id: 9,
        producer_epoch: 0,
        ..BatchMeta::default()
    };
    let batch = decode_one(b.finish(&meta).unwrap());
    assert!(batch.attributes.is_control() && batch.attributes.is_transactional());
    let records = batch.records(&DecodeLimits::default()).unwrap();
    let r = records.iter().next().unwrap().unwrap();
    assert_eq!(r.control().unwrap().kind, ControlType::Commit);
}

/// LogAppendTime batches: every record's timestamp is the batch's max
/// timestamp (the broker's append time), whatever deltas the records carry.
#[test]
fn log_append_time_gives_every_record_the_batch_timestamp() {
    let mut b = RecordBatchBuilder::new();
    for ts in [1_000, 1_500, 1_200] {
        b.push(ts, None, Some(b"v"), &[]);
    }
    let meta = BatchMeta {
        timestamp_type: TimestampType::LogAppendTime,
        ..BatchMeta::default()
    };
    let batch = decode_one(b.finish(&meta).unwrap());
    assert_eq!(
        batch.attributes.timestamp_type(),
        TimestampType::LogAppendTime
    );
    assert_eq!(batch.max_timestamp, 1_500);
    let records = batch.records(&DecodeLimits::default()).unwrap();
    let ts: Vec<i64> = records.iter().map(|r| r.unwrap().timestamp).collect();
    assert_eq!(ts, vec![1_500; 3]);
}

/// Offsets are outside the CRC, so a CRC-valid batch may claim any base
/// offset: at the ends of the i64 range, offsets wrap as Java's long
/// arithmetic does and nothing panics (tests run with overflow checks on).
#[test]
fn extreme_base_offsets_wrap_instead_of_panicking() {
    for base_offset in [i64::MAX, i64::MAX - 1, i64::MIN] {
        let mut b = RecordBatchBuilder::new();
        for i in 0..3 {
            b.push(i64::MAX - 5 + i, None, Some(b"v"), &[]);
        }
        let meta = BatchMeta {
            base_offset,
            ..BatchMeta::default()
        };
        let batch = decode_one(b.finish(&meta).unwrap());
        assert_eq!(batch.last_offset(), base_offset.wrapping_add(2));
        let records = batch.records(&DecodeLimits::default()).unwrap();
        let offsets: Vec<i64> = records.iter().map(|r| r.unwrap().offset).collect();
        assert_eq!(
            offsets,
            (0..3)
                .map(|d| base_offset.wrapping_add(d))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let good = hex(JAVA_A);
    for _ in 0..20_000 {
        let mut bytes = BytesMut::from(&good[..]);
        for _ in 0..(next() % 6) {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] = next() as u8;
        }
        let cut = (next() % (bytes.len() as u64 + 1)) as usize;
        let opts = BatchDecodeOptions {
            verify_crc: next() % 2 == 0,
            ..BatchDecodeOptions::default()
        };
        for batch in RecordBatches::new(bytes.freeze().slice(..cut), opts).flatten() {
            if let Ok(records) = batch.records(&DecodeLimits::default()) {
                for r in records.iter().flatten() {
                    let _ = r.headers().count();
                }
            }
        }
    }
}

/// Seeded random batches cover every encoder path: values below and above
/// the large-value cut-over, keys and header fields either side of the
/// fixed-size copy limits, length prefixes guessed right and wrong (from
/// the last record, or from size bounds for large values), null keys,
/// values and header values, negative timestamp deltas. Each
/// batch decodes to exactly what was pushed, and `size`/`record_size` agree
/// with the bytes written.
#[test]
fn random_batches_round_trip_through_every_encoder_path() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let pool: Vec<u8> = (0..16384u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let slice = |rng: &mut XorShift, max: usize| -> Option<Vec<u8>> {
        match rng.below(8) {
            0 => None,
            _ => {
                let len = rng.below(max + 1);
                let at = rng.below(pool.len() - len);
                Some(pool[at..at + len].to_vec())
            }
        }
    };
    for round in 0..300 {
        let mut b = RecordBatchBuilder::with_capacity(rng.below(4096));
        let mut pushed = Vec::new();
        let base = 1_700_000_000_000i64;
        for _ in 0..1 + rng.below(40) {
            let ts = base + rng.below(2000) as i64 - 1000;
            let key_max = if rng.below(2) == 0 { 20 } else { 300 };
            let key = slice(&mut rng, key_max);
            let value_max = [200, 2000, 12000][rng.below(3)];
            let value = slice(&mut rng, value_max);
            let mut headers = Vec::new();
            for i in 0..rng.below(6) {
                let name = "h".repeat(rng.below(40)) + &i.to_string();
                headers.push(Header {
                    key: name,
                    value: slice(&mut rng, 120).map(Bytes::from),
                });
            }
            let before = b.size();
            let expected = b.record_size(ts, key.as_deref(), value.as_deref(), &headers);
            b.push(ts, key.as_deref(), value.as_deref(), &headers);
            assert_eq!(b.size() - before, expected, "round {round}");
            pushed.push((ts, key, value, headers));
        }
        let size = b.size();
        let wire = b.finish(&BatchMeta::default()).unwrap();
        assert_eq!(wire.len(), size, "round {round}");
        let batch = decode_one(wire);
        let records = batch.records(&DecodeLimits::default()).unwrap();
        let got: Vec<_> = records.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), pushed.len(), "round {round}");
        for (i, (r, (ts, key, value, headers))) in got.iter().zip(&pushed).enumerate() {
            assert_eq!(r.offset, i as i64, "round {round} record {i}");
            assert_eq!(r.timestamp, *ts, "round {round} record {i}");
            assert_eq!(r.key, key.as_deref(), "round {round} record {i}");
            assert_eq!(r.value, value.as_deref(), "round {round} record {i}");
            let h: Vec<_> = r.headers().map(|h| (h.key, h.value)).collect();
            let want: Vec<_> = headers
                .iter()
                .map(|h| (h.key.as_bytes(), h.value.as_deref()))
                .collect();
            assert_eq!(h, want, "round {round} record {i}");
        }
    }
}

/// Records alternating either side of each varint width boundary of the
/// length prefix (bodies of 64 B, 8 KiB and 1 MiB) make the builder's
/// width guess miss on every record; each must still decode exactly.
#[test]
fn record_sizes_alternating_across_prefix_widths_round_trip() {
    for boundary in [64usize, 8192, 1 << 20] {
        let mut b = RecordBatchBuilder::new();
        let mut pushed = Vec::new();
        for i in 0..40usize {
            // Body = 1 attribute + 1 ts + offset + 1 key + value length and
            // bytes + 1 header count: aim a few bytes either side.
            let len = boundary - 12 + (i % 2) * 16 + (i % 5);
            let value = vec![(i % 251) as u8; len];
            b.push(1_000 + i as i64, None, Some(&value), &[]);
            pushed.push(value);
        }
        let wire = b.finish(&BatchMeta::default()).unwrap();
        let batch = decode_one(wire);
        let records = batch.records(&DecodeLimits::default()).unwrap();
        let got: Vec<_> = records.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), pushed.len(), "boundary {boundary}");
        for (i, (r, v)) in got.iter().zip(&pushed).enumerate() {
            assert_eq!(r.offset, i as i64, "boundary {boundary} record {i}");
            assert_eq!(r.value, Some(&v[..]), "boundary {boundary} record {i}");
        }
    }
}

/// A small deterministic generator (no dependency, same cases every run).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}
