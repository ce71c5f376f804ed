//! Whatever a client sends, the mock's request decoding refuses it with a
//! reason or accepts it: it never panics and never allocates past its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = franz_mock::check_request_frame(data);
});
