//! The NestJS wire layer over arbitrary headers and values: a request's
//! reply address, a reply's metadata, the value and error parsing, as a
//! server and a client read them off records they did not write.
//!
//! Input: headers as `[key_len u8][key][flag u8][value_len u8][value]...`
//! (flag 0: a null value), then a zero byte, then the record's value (none
//! when the input ends at the zero byte).
#![no_main]

use bytes::Bytes;
use franz_transport::nest;
use libfuzzer_sys::fuzz_target;

fn split(data: &[u8]) -> (Vec<(Bytes, Option<Bytes>)>, Option<Bytes>) {
    let mut headers = Vec::new();
    let mut rest = data;
    while let Some((&klen, after)) = rest.split_first() {
        if klen == 0 {
            let value = (!after.is_empty()).then(|| Bytes::copy_from_slice(after));
            return (headers, value);
        }
        let Some(key) = after.get(..usize::from(klen)) else { break };
        let after = &after[usize::from(klen)..];
        let Some((&flag, after)) = after.split_first() else { break };
        let Some((&vlen, after)) = after.split_first() else { break };
        let Some(value) = after.get(..usize::from(vlen)) else { break };
        headers.push((
            Bytes::copy_from_slice(key),
            (flag != 0).then(|| Bytes::copy_from_slice(value)),
        ));
        rest = &after[usize::from(vlen)..];
    }
    (headers, None)
}

fuzz_target!(|data: &[u8]| {
    let (headers, value) = split(data);
    let view = || headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
    let _ = nest::reply_to(view());
    if let Some(meta) = nest::reply_meta(view()) {
        if let Some(err) = &meta.error {
            let _ = nest::remote_error(err.as_ref());
        }
    }
    let _ = nest::read_reply(view(), value.as_ref());
    if let Ok(v) = nest::decode(value.as_ref()) {
        let _ = v.to_json();
    }
});
