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
