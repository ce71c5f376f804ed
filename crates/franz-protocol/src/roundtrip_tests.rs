//! Round-trip property tests for every message and every version: a random
//! valid message encodes, decodes to an equal value, and re-encodes to the
//! same bytes. Truncations and appended bytes fail with typed errors.

use bytes::BytesMut;

use crate::messages::{AnyRequest, AnyResponse, ApiKey};
use crate::primitives::DecodeLimits;
use crate::sample::SampleGen;

const SEEDS: u64 = 40;

fn check<T: PartialEq + std::fmt::Debug>(
    label: &str,
    version: i16,
    value: &T,
    encode: impl Fn(&T, &mut BytesMut),
    decode: impl Fn(bytes::Bytes) -> Result<T, crate::DecodeError>,
) {
    let mut first = BytesMut::new();
    encode(value, &mut first);
    let first = first.freeze();
    let back =
        decode(first.clone()).unwrap_or_else(|e| panic!("{label} v{version}: {e}\n{value:?}"));
    assert_eq!(&back, value, "{label} v{version}");
    let mut second = BytesMut::new();
    encode(&back, &mut second);
    assert_eq!(
        first,
        second.freeze(),
        "{label} v{version}: re-encoding differs"
    );
    // Every strict prefix is an error, never a panic.
    for cut in 0..first.len() {
        assert!(
            decode(first.slice(..cut)).is_err(),
            "{label} v{version}: prefix {cut} decoded"
        );
    }
    // Trailing garbage is an error.
    let mut longer = BytesMut::from(&first[..]);
    longer.extend_from_slice(&[0]);
    assert!(
        decode(longer.freeze()).is_err(),
        "{label} v{version}: trailing byte accepted"
    );
}

#[test]
fn every_request_and_response_round_trips_in_every_version() {
    let mut checked = 0;
    for &api in ApiKey::ALL {
        let (lo, hi) = api.versions();
        for version in lo..=hi {
            for seed in 0..SEEDS {
                let mut g = SampleGen::new(seed * 7919 + api.key() as u64 * 131 + version as u64);
                let req = AnyRequest::sample(api, &mut g, version);
                check(
                    api.name(),
                    version,
                    &req,
                    |m, w| m.encode(w, version).unwrap(),
                    |b| AnyRequest::decode(api.key(), version, b, DecodeLimits::default()),
                );
                let resp = AnyResponse::sample(api, &mut g, version);
                check(
                    api.name(),
                    version,
                    &resp,
                    |m, w| m.encode(w, version).unwrap(),
                    |b| AnyResponse::decode(api.key(), version, b, DecodeLimits::default()),
                );
                checked += 2;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn arbitrary_bytes_never_panic_any_decoder() {
    let mut g = SampleGen::new(42);
    for &api in ApiKey::ALL {
        let (lo, hi) = api.versions();
        for version in lo..=hi {
            for _ in 0..50 {
                let len = g.below(64) as usize;
                let junk: Vec<u8> = (0..len).map(|_| g.next_u64() as u8).collect();
                let junk = bytes::Bytes::from(junk);
                let _ =
                    AnyRequest::decode(api.key(), version, junk.clone(), DecodeLimits::default());
                let _ = AnyResponse::decode(api.key(), version, junk, DecodeLimits::default());
            }
        }
    }
}

/// Tagged fields this version of franz does not know, at the top level and
/// in a nested struct, between and after known tagged fields: each is kept
/// as raw bytes and written back in tag order, so the message re-encodes
/// byte for byte (a newer broker's additions survive a franz proxy).
#[test]
fn unknown_tagged_fields_survive_a_round_trip_in_place() {
    use crate::messages::api_versions_response::ApiVersion;
    use crate::messages::{AnyResponse, ApiVersionsResponse};
    use crate::primitives::RawTaggedField;

    let raw = |tag: u32, data: &'static [u8]| RawTaggedField {
        tag,
        data: bytes::Bytes::from_static(data),
    };
    let resp = AnyResponse::ApiVersions(ApiVersionsResponse {
        api_keys: vec![ApiVersion {
            api_key: 3,
            min_version: 0,
            max_version: 12,
            unknown_tagged_fields: vec![raw(0, b"\x01"), raw(77, b"nested")],
        }],
        // Known tag 1 (written: not its default), then unknown ones.
        finalized_features_epoch: 5,
        unknown_tagged_fields: vec![raw(4, b"\xAA\xBB"), raw(1000, b"")],
        ..ApiVersionsResponse::default()
    });
    check(
        "ApiVersionsResponse with unknown tags",
        3,
        &resp,
        |m, w| m.encode(w, 3).unwrap(),
        |b| AnyResponse::decode(ApiKey::ApiVersions.key(), 3, b, DecodeLimits::default()),
    );
    // Tags go out in ascending order, known and unknown interleaved.
    let mut w = BytesMut::new();
    resp.encode(&mut w, 3).unwrap();
    // Three fields: tag 1 (8-byte epoch 5), tag 4 (2 bytes), tag 1000
    // (varint e8 07, empty).
    let top: &[u8] = b"\x03\x01\x08\0\0\0\0\0\0\0\x05\x04\x02\xaa\xbb\xe8\x07\x00";
    assert!(w.ends_with(top), "{w:?}");
    // The nested struct's two: tag 0 (1 byte), tag 77 ("nested").
    let nested: &[u8] = b"\x02\x00\x01\x01\x4d\x06nested";
    assert!(w.windows(nested.len()).any(|x| x == nested), "{w:?}");
}

/// A decode error names the message and version it happened in, and the
/// field underneath.
#[test]
fn decode_errors_name_the_api_version_and_field() {
    use crate::DecodeError;
    use crate::messages::MetadataResponse;

    let mut w = BytesMut::new();
    AnyResponse::Metadata(MetadataResponse::default())
        .encode(&mut w, 12)
        .unwrap();
    let cut = w.freeze().slice(..5);
    let err =
        AnyResponse::decode(ApiKey::Metadata.key(), 12, cut, DecodeLimits::default()).unwrap_err();
    match &err {
        DecodeError::InMessage {
            api,
            version,
            source,
        } => {
            assert_eq!((*api, *version), ("MetadataResponse", 12));
            assert!(
                matches!(**source, DecodeError::Truncated { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected InMessage, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("MetadataResponse") && text.contains("12"),
        "{text}"
    );
}
