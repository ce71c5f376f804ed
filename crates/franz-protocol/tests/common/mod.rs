//! A raw blocking connection for the codec's broker suites: only the codec
//! and a plain `TcpStream`, no client layer. The broker's address comes
//! from `franz_test_support::bootstrap_blocking`.
#![allow(clippy::disallowed_methods)] // test support drives real time: it waits and measures
#![allow(dead_code)] // each suite uses its own subset

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use franz_protocol::frame::{self, ResponseHeader};
use franz_protocol::messages::*;
use franz_protocol::primitives::{DecodeLimits, Uuid};
use franz_protocol::{ErrorCode, Message, Request};

/// One connection to the first bootstrap broker, speaking frames by hand.
pub(crate) struct RawConn {
    stream: TcpStream,
    next_id: i32,
    client_id: &'static str,
}

impl RawConn {
    /// Connects to the first broker of `bootstrap`.
    pub(crate) fn connect(bootstrap: &str, client_id: &'static str) -> Self {
        let addr = bootstrap.split(',').next().unwrap().to_string();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            stream,
            next_id: 1,
            client_id,
        }
    }

    /// Writes `frame` and returns the next response frame's body.
    pub(crate) fn send_raw(&mut self, frame: &[u8]) -> Bytes {
        self.stream.write_all(frame).unwrap();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).unwrap();
        Bytes::from(body)
    }

    /// Sends `req` as `version` and decodes the matching response.
    pub(crate) fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let id = self.next_id;
        self.next_id += 1;
        let mut w = BytesMut::new();
        frame::encode_request(&mut w, id, Some(self.client_id), version, req).unwrap();
        let resp = self.send_raw(&w);
        let (header, body): (ResponseHeader, R::Response) =
            frame::decode_response(resp, version, DecodeLimits::default()).unwrap();
        assert_eq!(header.correlation_id, id);
        body
    }

    /// Creates `name` with `partitions` partitions and waits until the
    /// broker's metadata gives every partition a leader (CreateTopics returns
    /// once the controller has the topic; the broker's cache may lag).
    /// Produces `batch` to partition 0 of `topic` with acks=all and
    /// returns its base offset. A broker can list a new partition's leader
    /// in Metadata a moment before its replica manager leads it, and answer
    /// NOT_LEADER_OR_FOLLOWER (CI saw it once); every client retries a
    /// retriable code, and so does this, for 15 s.
    pub(crate) fn produce(&mut self, topic: &str, version: i16, batch: Bytes) -> i64 {
        let req = ProduceRequest {
            acks: -1,
            timeout_ms: 30_000,
            topic_data: vec![produce_request::TopicProduceData {
                name: topic.into(),
                partition_data: vec![produce_request::PartitionProduceData {
                    index: 0,
                    records: Some(batch),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let resp = self.call(version, &req);
            let p = &resp.responses[0].partition_responses[0];
            let code = ErrorCode::from_code(p.error_code);
            if code.is_retriable() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            assert_eq!(code, ErrorCode::None, "{topic}: {:?}", p.error_message);
            return p.base_offset;
        }
    }

    /// Fetches partition 0 of `topic_id` from `offset` (up to
    /// `partition_max_bytes`, waiting at most 200 ms) and returns its
    /// records, failing the test on any error code.
    pub(crate) fn fetch(&mut self, topic_id: Uuid, offset: i64, partition_max_bytes: i32) -> Bytes {
        let req = FetchRequest {
            max_wait_ms: 200,
            min_bytes: 1,
            topics: vec![fetch_request::FetchTopic {
                topic_id,
                partitions: vec![fetch_request::FetchPartition {
                    partition: 0,
                    fetch_offset: offset,
                    partition_max_bytes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let resp = self.call(FetchRequest::MAX_VERSION, &req);
        assert_eq!(resp.error_code, 0);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(ErrorCode::from_code(p.error_code), ErrorCode::None);
        p.records.clone().unwrap_or_default()
    }

    pub(crate) fn create_topic(&mut self, name: &str, partitions: i32) -> Uuid {
        let req = CreateTopicsRequest {
            topics: vec![create_topics_request::CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: 1,
                ..Default::default()
            }],
            timeout_ms: 30_000,
            ..Default::default()
        };
        let resp = self.call(CreateTopicsRequest::MAX_VERSION, &req);
        let t = &resp.topics[0];
        assert_eq!(
            ErrorCode::from_code(t.error_code),
            ErrorCode::None,
            "{:?}",
            t.error_message
        );
        assert_eq!(t.num_partitions, partitions);
        assert!(!t.topic_id.is_zero());
        let id = t.topic_id;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let md = self.call(
                MetadataRequest::MAX_VERSION,
                &MetadataRequest {
                    topics: Some(vec![metadata_request::MetadataRequestTopic {
                        name: Some(name.to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            );
            if md.topics.first().is_some_and(|t| {
                t.error_code == 0
                    && t.partitions.len() == partitions as usize
                    && t.partitions.iter().all(|p| p.leader_id >= 0)
            }) {
                return id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "topic {name} never got leaders"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
