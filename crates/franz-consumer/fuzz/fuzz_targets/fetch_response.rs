//! The consumer's fetch-response path over arbitrary bytes: a Fetch
//! response decoded at a version the first byte picks, then each
//! partition's records run through the consumer's `PartitionDecoder` with
//! the response's aborted transactions, read-committed and
//! read-uncommitted, from a position the second byte picks.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use franz_consumer::IsolationLevel;
use franz_consumer::fetch::{Aborted, PartitionDecoder};
use franz_protocol::Message;
use franz_protocol::messages::FetchResponse;
use franz_protocol::primitives::DecodeLimits;
use franz_protocol::record::BatchDecodeOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [v, position, rest @ ..] = data else { return };
    let version = 4 + i16::from(*v % 14); // 4..=17
    let limits = DecodeLimits {
        max_decompressed_len: 1 << 20,
        ..DecodeLimits::default()
    };
    let Ok(resp) = FetchResponse::decode_with_limits(Bytes::copy_from_slice(rest), version, limits)
    else {
        return;
    };
    let opts = BatchDecodeOptions {
        verify_crc: false,
        limits,
    };
    let topic: Arc<str> = Arc::from("t");
    for t in &resp.responses {
        for p in &t.partitions {
            let aborted: Vec<Aborted> = p
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| Aborted {
                    first_offset: a.first_offset,
                    producer_id: a.producer_id,
                })
                .collect();
            let records = p.records.clone().unwrap_or_default();
            for isolation in [IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted] {
                let mut d = PartitionDecoder::new(
                    &topic,
                    p.partition_index,
                    records.clone(),
                    &aborted,
                    isolation,
                    &opts,
                );
                let mut at = i64::from(*position);
                while let Some(Ok(batch)) = d.next_batch(at) {
                    at = batch.next_position;
                    for r in &batch.records {
                        let _ = (&r.key, &r.value, r.headers.len());
                    }
                }
            }
        }
    }
});
