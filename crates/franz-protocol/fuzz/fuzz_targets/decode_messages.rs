//! Every request and response decoder, dispatched by (API key, version) from
//! the first three input bytes (API, version, request or response). Whatever
//! decodes must re-encode and decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use franz_protocol::messages::{AnyRequest, AnyResponse, ApiKey};
use franz_protocol::primitives::DecodeLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let apis = ApiKey::ALL;
    let api = apis[data[0] as usize % apis.len()];
    let (lo, hi) = api.versions();
    let version = lo + (data[1] as i16 % (hi - lo + 1));
    let as_request = data[2] & 1 == 1;
    let body = Bytes::copy_from_slice(&data[3..]);
    let limits = DecodeLimits {
        max_array_len: 10_000,
        max_bytes_len: 1 << 20,
        max_decompressed_len: 1 << 20,
    };
    if as_request {
        if let Ok(m) = AnyRequest::decode(api.key(), version, body, limits) {
            let mut w = BytesMut::new();
            if m.encode(&mut w, version).is_ok() {
                let again = AnyRequest::decode(api.key(), version, w.freeze(), limits).expect("re-decode");
                assert_eq!(again, m);
            }
        }
    } else if let Ok(m) = AnyResponse::decode(api.key(), version, body, limits) {
        let mut w = BytesMut::new();
        if m.encode(&mut w, version).is_ok() {
            let again = AnyResponse::decode(api.key(), version, w.freeze(), limits).expect("re-decode");
            assert_eq!(again, m);
        }
    }
});
