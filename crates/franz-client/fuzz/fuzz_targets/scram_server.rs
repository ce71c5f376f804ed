//! The SCRAM client against arbitrary server messages: server-first (nonce,
//! salt, iteration count, extensions, errors) and server-final (signature
//! or error). Input: a byte picking the hash, then server-first, a zero
//! byte, server-final. A hostile server must get a typed refusal, never a
//! panic, and never more than the capped key derivation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&hash, rest)) = data.split_first() else { return };
    let (first, last) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    franz_client::fuzz_scram_exchange(hash & 1 == 1, first, last);
});
