//! franz-protocol against a real broker, using only the codec and a plain
//! blocking `TcpStream`: ApiVersions (and its fallback), Metadata,
//! CreateTopics, Produce in every codec with headers fetched back byte for
//! byte, a fetch cut at `partition_max_bytes`, ListOffsets, FindCoordinator
//! and DeleteTopics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

mod common;

use bytes::{Bytes, BytesMut};
use common::RawConn;
use franz_protocol::compression::Compression;
use franz_protocol::frame::{self, ResponseHeader};
use franz_protocol::messages::*;
use franz_protocol::primitives::{DecodeLimits, Reader};
use franz_protocol::record::{
    BatchDecodeOptions, BatchMeta, Header, RecordBatchBuilder, RecordBatches,
};
use franz_protocol::{ErrorCode, Message};
use franz_test_support::bootstrap_blocking;
use franz_testkit::unique_topic;

fn batch_with_headers(compression: Compression, n: usize) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    let headers = vec![
        Header::new("trace", "a"),
        Header::new("trace", "b"),
        Header {
            key: "nothing".into(),
            value: None,
        },
    ];
    for i in 0..n {
        let value = format!("value {i} {}", "x".repeat(i % 50));
        b.push(
            1_700_000_000_000 + i as i64,
            Some(format!("key-{i}").as_bytes()),
            Some(value.as_bytes()),
            &headers,
        );
    }
    b.finish(&BatchMeta {
        compression,
        ..BatchMeta::default()
    })
    .unwrap()
}

#[test]
fn api_versions_negotiates_and_falls_back() {
    if franz_testkit::real_broker_only(
        "walks every API and version franz speaks, some of which franz-mock does not serve",
    ) {
        return;
    }
    let mut conn = RawConn::connect(&bootstrap_blocking(), "franz-conformance");
    let resp = conn.call(
        ApiVersionsRequest::MAX_VERSION,
        &ApiVersionsRequest {
            client_software_name: "franz".into(),
            client_software_version: "0.1.0".into(),
            ..Default::default()
        },
    );
    assert_eq!(resp.error_code, 0);
    // Every API franz speaks has a version in common with the broker.
    for &api in ApiKey::ALL {
        let (lo, hi) = api.versions();
        let b = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == api.key())
            .unwrap_or_else(|| panic!("broker lacks {}", api.name()));
        assert!(
            b.min_version <= hi && b.max_version >= lo,
            "{}: ours {lo}-{hi}, broker {}-{}",
            api.name(),
            b.min_version,
            b.max_version
        );
    }
    assert!(
        !resp.finalized_features.is_empty(),
        "v3+ reports finalized features"
    );

    // A version the broker does not know: it answers UNSUPPORTED_VERSION in
    // the v0 format, listing its own ApiVersions range.
    let mut w = BytesMut::new();
    frame::encode_request(&mut w, 99, Some("franz"), 3, &ApiVersionsRequest::default()).unwrap();
    w[6..8].copy_from_slice(&127i16.to_be_bytes());
    let raw = conn.send_raw(&w);
    let mut r = Reader::new(raw);
    let header = ResponseHeader::decode(&mut r, 0).unwrap();
    assert_eq!(header.correlation_id, 99);
    let v0 = ApiVersionsResponse::decode(r.into_rest(), 0).unwrap();
    assert_eq!(
        ErrorCode::from_code(v0.error_code),
        ErrorCode::UnsupportedVersion
    );
    let own = v0
        .api_keys
        .iter()
        .find(|k| k.api_key == 18)
        .expect("ApiVersions range");
    assert!(own.max_version >= 3);
    // Retrying at the broker's max works on the same connection.
    // (v3+ needs a client software name matching Kafka's pattern.)
    let again = conn.call(
        own.max_version.min(ApiVersionsRequest::MAX_VERSION),
        &ApiVersionsRequest {
            client_software_name: "franz".into(),
            client_software_version: "0.1.0".into(),
            ..Default::default()
        },
    );
    assert_eq!(again.error_code, 0);
}

#[test]
fn metadata_create_produce_fetch_list_offsets_and_delete() {
    if franz_testkit::real_broker_only(
        "walks every API version franz speaks (Produce v12, ...), some of which franz-mock does not serve",
    ) {
        return;
    }
    if franz_testkit::needs_kafka(
        (4, 0),
        "every API version franz speaks, up to Kafka 4.x's (Produce v12, ...)",
    ) {
        return;
    }
    let mut conn = RawConn::connect(&bootstrap_blocking(), "franz-conformance");
    let topic = unique_topic("codec-conformance");
    let topic_id = conn.create_topic(&topic, 2);

    let md = conn.call(
        MetadataRequest::MAX_VERSION,
        &MetadataRequest {
            topics: Some(vec![metadata_request::MetadataRequestTopic {
                name: Some(topic.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    assert!(!md.brokers.is_empty());
    let t = &md.topics[0];
    assert_eq!(t.name.as_deref(), Some(topic.as_str()));
    assert_eq!(t.topic_id, topic_id);
    assert_eq!(t.partitions.len(), 2);

    // Produce one batch per codec (headers with a duplicate key and a null
    // value) and fetch each back: bytes 21 to the end match what was sent.
    let mut offset = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let sent = batch_with_headers(codec, 20);
        let base = conn.produce(&topic, ProduceRequest::MAX_VERSION, sent.clone());
        assert_eq!(base, offset);
        let records = conn.fetch(topic_id, base, 1 << 20);
        let batch = RecordBatches::new(records, BatchDecodeOptions::default())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(batch.base_offset, base);
        assert_eq!(
            &batch.raw()[21..],
            &sent[21..],
            "{codec:?}: the broker changed the batch"
        );
        let recs = batch.records(&DecodeLimits::default()).unwrap();
        let first = recs.iter().next().unwrap().unwrap();
        assert_eq!(first.key, Some(&b"key-0"[..]));
        assert_eq!(first.headers().count(), 3);
        offset += 20;
    }

    // A fetch cut at partition_max_bytes ends in a truncated batch.
    let a = batch_with_headers(Compression::None, 5);
    let b = batch_with_headers(Compression::None, 5);
    let base = conn.produce(&topic, ProduceRequest::MAX_VERSION, a.clone());
    conn.produce(&topic, ProduceRequest::MAX_VERSION, b);
    let cut = conn.fetch(topic_id, base, (a.len() + 30) as i32);
    assert_eq!(cut.len(), a.len() + 30);
    let mut batches = RecordBatches::new(cut, BatchDecodeOptions::default());
    assert_eq!(batches.next().unwrap().unwrap().record_count, 5);
    assert!(batches.next().is_none());
    assert!(batches.truncated());

    // ListOffsets: earliest and latest.
    for (ts, want) in [(-2i64, 0i64), (-1, offset + 10)] {
        let resp = conn.call(
            ListOffsetsRequest::MAX_VERSION,
            &ListOffsetsRequest {
                replica_id: -1,
                topics: vec![list_offsets_request::ListOffsetsTopic {
                    name: topic.clone(),
                    partitions: vec![list_offsets_request::ListOffsetsPartition {
                        partition_index: 0,
                        timestamp: ts,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.offset, want, "timestamp {ts}");
    }

    // Produce v3 (the 4.0 floor) still works.
    let old = batch_with_headers(Compression::Gzip, 2);
    assert_eq!(conn.produce(&topic, 3, old), offset + 10);

    let del = conn.call(
        DeleteTopicsRequest::MAX_VERSION,
        &DeleteTopicsRequest {
            topics: vec![delete_topics_request::DeleteTopicState {
                name: Some(topic.clone()),
                ..Default::default()
            }],
            timeout_ms: 30_000,
            ..Default::default()
        },
    );
    assert_eq!(del.responses[0].error_code, 0);
}

#[test]
fn find_coordinator_locates_a_group_coordinator() {
    let mut conn = RawConn::connect(&bootstrap_blocking(), "franz-conformance");
    let group = franz_testkit::unique_group("codec");
    let resp = conn.call(
        FindCoordinatorRequest::MAX_VERSION,
        &FindCoordinatorRequest {
            key_type: 0,
            coordinator_keys: vec![group.clone()],
            ..Default::default()
        },
    );
    let c = &resp.coordinators[0];
    assert_eq!(c.key, group);
    assert_eq!(
        ErrorCode::from_code(c.error_code),
        ErrorCode::None,
        "{:?}",
        c.error_message
    );
    assert!(c.node_id >= 0 && c.port > 0);
    // v0 speaks the single-key form.
    let old = conn.call(
        0,
        &FindCoordinatorRequest {
            key: group,
            ..Default::default()
        },
    );
    assert_eq!(old.error_code, 0);
    assert_eq!(old.node_id, c.node_id);
}

#[test]
fn unknown_topics_give_typed_error_codes() {
    let mut conn = RawConn::connect(&bootstrap_blocking(), "franz-conformance");
    let md = conn.call(
        MetadataRequest::MAX_VERSION,
        &MetadataRequest {
            topics: Some(vec![metadata_request::MetadataRequestTopic {
                name: Some(unique_topic("never-created")),
                ..Default::default()
            }]),
            allow_auto_topic_creation: false,
            ..Default::default()
        },
    );
    let code = ErrorCode::from_code(md.topics[0].error_code);
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition);
    assert!(code.is_retriable());
}
