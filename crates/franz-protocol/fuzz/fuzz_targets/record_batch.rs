//! Record batch decoding over arbitrary bytes: walk the batches, decompress,
//! iterate every record and header. The first byte picks CRC verification.
#![no_main]

use bytes::Bytes;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::{BatchDecodeOptions, RecordBatches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let limits = DecodeLimits {
        max_decompressed_len: 1 << 20,
        ..DecodeLimits::default()
    };
    let opts = BatchDecodeOptions {
        verify_crc: flags & 1 == 1,
        limits,
    };
    for batch in RecordBatches::new(Bytes::copy_from_slice(rest), opts).flatten() {
        let _ = batch.last_sequence();
        if let Ok(records) = batch.records(&limits) {
            for r in records.iter().flatten() {
                let _ = (r.key, r.value, r.control());
                for h in r.headers() {
                    let _ = (h.key, h.value);
                }
            }
        }
    }
});
