//! Idempotent recovery against a real broker's answers (KIP-360): a
//! produce response that cannot be read after the broker wrote the batch
//! leaves the batch's fate unknown, so its sequence must never go to the
//! next batch; a batch the broker refuses as out of order, or from an
//! unknown producer, costs exactly one epoch bump and is written once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{assert_exactly_once_in_order, proxied_broker_with_topic, read_all};
use franz_client::ClientConfig;
use franz_client::franz_protocol::frame::{
    ResponseHeader, decode_request, decode_response, encode_request, response_header_version,
};
use franz_client::franz_protocol::messages::{AnyRequest, ApiKey, ProduceResponse};
use franz_client::franz_protocol::primitives::DecodeLimits;
use franz_client::franz_protocol::record::set_producer_fields;
use franz_client::franz_protocol::{ErrorCode, Message};
use franz_producer::{Producer, ProducerConfig, ProducerRecord};
use franz_testkit::proxy::api_key;

/// One record per batch (sent and awaited one at a time), so that a
/// reused sequence would cover exactly the next record: the broker would
/// take it for a duplicate of the unreadable batch and acknowledge it
/// without writing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_produce_response_is_resolved_by_resending_the_same_sequence() {
    if franz_testkit::real_broker_only("a fault proxy rewriting its own broker's answers") {
        return;
    }
    let (cluster, c, topic) = proxied_broker_with_topic("unknown-fate").await;
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    let producer = Producer::new(one_record_per_batch(&cluster.bootstrap()))
        .await
        .unwrap();
    let epoch_before = producer.producer_id_and_epoch().unwrap();
    let n = 10u64;
    let mut offsets = BTreeSet::new();
    for i in 0..n {
        if i == 4 {
            // The next produce response, after the broker wrote the batch,
            // arrives cut to its correlation id and two bytes: unreadable.
            let armed = Arc::new(AtomicBool::new(true));
            proxy.rewrite_responses(api_key::PRODUCE, move |_version, frame| {
                armed
                    .swap(false, Ordering::SeqCst)
                    .then(|| frame[..frame.len().min(6)].to_vec())
            });
        }
        let rec = ProducerRecord::new(topic.as_str(), format!("{i}|payload")).with_key("k");
        let meta = producer
            .send_and_wait(rec)
            .await
            .unwrap_or_else(|e| panic!("record {i} was not delivered: {e}"));
        assert!(
            offsets.insert(meta.offset),
            "record {i} acknowledged at offset {} already given to another record",
            meta.offset
        );
    }
    assert_eq!(proxy.rewritten_responses(api_key::PRODUCE), 1);
    let read = read_all(&c, &topic, n as usize, Duration::from_secs(30)).await;
    assert_exactly_once_in_order(&read, n);
    assert_eq!(
        offsets,
        (0..n as i64).collect::<BTreeSet<_>>(),
        "every acknowledged offset holds its own record"
    );
    assert_eq!(
        producer.producer_id_and_epoch().unwrap(),
        epoch_before,
        "resolved by the resend: no bump needed"
    );
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// Moves the base sequence of `producer_id`'s record batch in a Produce
/// request frame by `shift`, with a fresh CRC: the broker sees a sequence
/// gap and refuses the batch for real (OUT_OF_ORDER_SEQUENCE_NUMBER,
/// nothing written). Rewriting only the answer would not do: the broker
/// would have written the batch, and a resend under a new epoch would be a
/// true duplicate.
fn shift_sequence(frame: &[u8], producer_id: i64, shift: i32) -> Option<Vec<u8>> {
    let (header, body) =
        decode_request(Bytes::copy_from_slice(frame), DecodeLimits::default()).ok()?;
    let AnyRequest::Produce(mut req) = body else {
        return None;
    };
    for t in &mut req.topic_data {
        for p in &mut t.partition_data {
            let mut batch = BytesMut::from(&p.records.as_ref()?[..]);
            let epoch = i16::from_be_bytes(batch.get(51..53)?.try_into().ok()?);
            let seq = i32::from_be_bytes(batch.get(53..57)?.try_into().ok()?);
            set_producer_fields(&mut batch, producer_id, epoch, seq + shift).ok()?;
            p.records = Some(batch.freeze());
        }
    }
    let mut w = BytesMut::new();
    encode_request(
        &mut w,
        header.correlation_id,
        header.client_id.as_deref(),
        header.api_version,
        &req,
    )
    .ok()?;
    Some(w[4..].to_vec())
}

/// Rewrites every partition's `from` error code to `to` in a Produce
/// response frame.
fn rewrite_code(version: i16, frame: &[u8], from: ErrorCode, to: ErrorCode) -> Option<Vec<u8>> {
    let (header, mut resp) = decode_response::<ProduceResponse>(
        Bytes::copy_from_slice(frame),
        version,
        DecodeLimits::default(),
    )
    .ok()?;
    let mut hit = false;
    for t in &mut resp.responses {
        for p in &mut t.partition_responses {
            if p.error_code == from.code() {
                p.error_code = to.code();
                hit = true;
            }
        }
    }
    if !hit {
        return None;
    }
    let mut w = BytesMut::new();
    ResponseHeader {
        correlation_id: header.correlation_id,
        unknown_tagged_fields: Vec::new(),
    }
    .encode(&mut w, response_header_version(ApiKey::Produce, version))
    .ok()?;
    resp.encode(&mut w, version).ok()?;
    Some(w.to_vec())
}

/// The injected-error test. The first injection: the proxy moves one
/// batch's sequence so that the broker refuses it as out of order. The
/// second: the same, and the broker's OUT_OF_ORDER_SEQUENCE_NUMBER reaches
/// the producer as UNKNOWN_PRODUCER_ID (Kafka 4 answers a producer it has
/// no state for by accepting any sequence, so a real UNKNOWN_PRODUCER_ID
/// cannot be provoked through Produce; the refusal underneath is real).
/// Each costs exactly one epoch bump (same producer id, epoch + 1), the
/// batch is then written once, in order, and nothing times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_out_of_order_then_unknown_producer_each_bump_once_and_deliver_once() {
    if franz_testkit::real_broker_only("a fault proxy rewriting its own broker's requests") {
        return;
    }
    let (cluster, c, topic) = proxied_broker_with_topic("injected").await;
    let proxy = cluster.proxy(cluster.node_ids()[0]).unwrap();
    let producer = Producer::new(one_record_per_batch(&cluster.bootstrap()))
        .await
        .unwrap();
    let (pid, epoch0) = producer.producer_id_and_epoch().unwrap();
    let n = 12u64;
    let mut offsets = BTreeSet::new();
    for i in 0..n {
        let injected = match i {
            4 => Some(None),
            8 => Some(Some(ErrorCode::UnknownProducerId)),
            _ => None,
        };
        if let Some(answer_as) = injected {
            let armed = Arc::new(AtomicBool::new(true));
            proxy.rewrite_requests(api_key::PRODUCE, move |_version, frame| {
                if !armed.load(Ordering::SeqCst) {
                    return None;
                }
                let shifted = shift_sequence(frame, pid, 1000)?;
                armed.store(false, Ordering::SeqCst);
                Some(shifted)
            });
            if let Some(code) = answer_as {
                let armed = Arc::new(AtomicBool::new(true));
                proxy.rewrite_responses(api_key::PRODUCE, move |version, frame| {
                    if !armed.load(Ordering::SeqCst) {
                        return None;
                    }
                    let out =
                        rewrite_code(version, frame, ErrorCode::OutOfOrderSequenceNumber, code)?;
                    armed.store(false, Ordering::SeqCst);
                    Some(out)
                });
            }
        }
        let rec = ProducerRecord::new(topic.as_str(), format!("{i}|payload")).with_key("k");
        let meta = producer
            .send_and_wait(rec)
            .await
            .unwrap_or_else(|e| panic!("record {i} was not delivered: {e}"));
        assert!(
            offsets.insert(meta.offset),
            "record {i} acknowledged at offset {} already given to another record",
            meta.offset
        );
        let expected_epoch = epoch0 + i16::from(i >= 4) + i16::from(i >= 8);
        assert_eq!(
            producer.producer_id_and_epoch().unwrap(),
            (pid, expected_epoch),
            "after record {i}: exactly one bump per injection, same producer id"
        );
    }
    assert_eq!(proxy.rewritten_requests(api_key::PRODUCE), 2);
    assert_eq!(proxy.rewritten_responses(api_key::PRODUCE), 1);
    let read = read_all(&c, &topic, n as usize, Duration::from_secs(30)).await;
    assert_exactly_once_in_order(&read, n);
    assert_eq!(offsets, (0..n as i64).collect::<BTreeSet<_>>());
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// Linger 0 and short timeouts: records sent and awaited one at a time
/// each make a batch of their own.
fn one_record_per_batch(bootstrap: &str) -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        delivery_timeout: Duration::from_secs(60),
        ..ProducerConfig::from_client_config(ClientConfig {
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::new(bootstrap)
        })
    }
}
