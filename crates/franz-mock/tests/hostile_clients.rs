//! Hostile clients: truncated frames, huge or negative lengths, garbage,
//! unknown and unserved APIs get a closed connection (or, for an
//! ApiVersions version the mock does not speak, the KIP-511 v0 answer),
//! never a panic, and the cluster keeps serving everyone else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use franz_mock::MockCluster;
use franz_protocol::frame::encode_request;
use franz_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, DeleteRecordsRequest};
use franz_protocol::{ErrorCode, Message};

fn connect(kafka: &MockCluster) -> TcpStream {
    let s = TcpStream::connect(kafka.bootstrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `bytes` and reports whether the server closed the connection
/// (EOF or reset) rather than answering.
fn closed_after(kafka: &MockCluster, bytes: &[u8], then_close_write: bool) -> bool {
    let mut s = connect(kafka);
    let _ = s.write_all(bytes);
    if then_close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = [0u8; 64];
    // Any byte back would be an answer; a short read is what we look for.
    #[allow(clippy::disallowed_methods)]
    let got = s.read(&mut buf);
    matches!(got, Ok(0) | Err(_))
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// An ApiVersions round trip at `version`: the decoded answer.
fn api_versions(kafka: &MockCluster, version: i16) -> ApiVersionsResponse {
    let mut s = connect(kafka);
    let mut w = BytesMut::new();
    let req = ApiVersionsRequest {
        client_software_name: "hostile-test".into(),
        client_software_version: "1".into(),
        ..Default::default()
    };
    if version <= 4 {
        encode_request(&mut w, 7, Some("t"), version, &req).unwrap();
    } else {
        // A version the codec cannot encode: header only, as a newer client would send.
        let mut body = Vec::new();
        body.extend_from_slice(&18i16.to_be_bytes());
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&7i32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.push(0); // tagged fields
        body.extend_from_slice(&[0, 0, 0]); // empty compact strings + tags
        w.extend_from_slice(&frame(&body));
    }
    s.write_all(&w).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    assert_eq!(&resp[..4], &7i32.to_be_bytes(), "correlation id echoed");
    // The answer is v0-framed when the version was refused.
    let answer_version = if version <= 4 { version } else { 0 };
    ApiVersionsResponse::decode(bytes::Bytes::copy_from_slice(&resp[4..]), answer_version).unwrap()
}

#[test]
fn malformed_frames_close_the_connection_and_the_cluster_keeps_serving() {
    let kafka = MockCluster::start().unwrap();
    // Lengths: negative, past socket.request.max.bytes, shorter than a header.
    assert!(closed_after(&kafka, &(-1i32).to_be_bytes(), false));
    assert!(closed_after(&kafka, &i32::MAX.to_be_bytes(), false));
    assert!(closed_after(&kafka, &frame(&[0, 18]), false));
    // Truncated: the length promises 100 bytes, 10 arrive, then EOF.
    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0; 10]);
    assert!(closed_after(&kafka, &truncated, true));
    // A stray partial length prefix.
    assert!(closed_after(&kafka, &[0, 0], true));
    // Garbage with a plausible length.
    let garbage: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(closed_after(&kafka, &frame(&garbage), false));
    // An unknown API key (999).
    let mut unknown = Vec::new();
    unknown.extend_from_slice(&999i16.to_be_bytes());
    unknown.extend_from_slice(&0i16.to_be_bytes());
    unknown.extend_from_slice(&1i32.to_be_bytes());
    unknown.extend_from_slice(&(-1i16).to_be_bytes());
    assert!(closed_after(&kafka, &frame(&unknown), false));
    // A known API the mock does not serve (DeleteRecords): closed, as it is
    // not announced in ApiVersions.
    let mut w = BytesMut::new();
    encode_request(&mut w, 1, None, 0, &DeleteRecordsRequest::default()).unwrap();
    assert!(closed_after(&kafka, &w, false));
    // A served API whose body is cut short.
    let mut w = BytesMut::new();
    encode_request(
        &mut w,
        1,
        None,
        9,
        &franz_protocol::messages::MetadataRequest::default(),
    )
    .unwrap();
    let mut cut = w[4..w.len() - 1].to_vec();
    cut.truncate(cut.len().saturating_sub(1));
    assert!(closed_after(&kafka, &frame(&cut), false));

    // Still serving: ApiVersions answers with exactly the served APIs.
    let ok = api_versions(&kafka, 3);
    assert_eq!(ErrorCode::from_code(ok.error_code), ErrorCode::None);
    assert!(
        ok.api_keys
            .iter()
            .any(|k| k.api_key == 0 && k.max_version == 11)
    );
    assert!(
        !ok.api_keys.iter().any(|k| k.api_key == 21),
        "DeleteRecords is not announced"
    );
}

#[test]
fn an_api_versions_version_the_mock_does_not_speak_gets_the_v0_fallback() {
    let kafka = MockCluster::start().unwrap();
    let answer = api_versions(&kafka, 9);
    assert_eq!(
        ErrorCode::from_code(answer.error_code),
        ErrorCode::UnsupportedVersion
    );
    let av = answer.api_keys.iter().find(|k| k.api_key == 18).unwrap();
    assert_eq!((av.min_version, av.max_version), (0, 4));
}

#[test]
fn the_request_decoder_refuses_every_prefix_of_a_valid_frame_without_panicking() {
    let mut w = BytesMut::new();
    let req = franz_protocol::messages::MetadataRequest::default();
    encode_request(&mut w, 5, Some("client"), 12, &req).unwrap();
    let body = &w[4..];
    assert!(franz_mock::check_request_frame(body).is_ok());
    for cut in 0..body.len() {
        assert!(
            franz_mock::check_request_frame(&body[..cut]).is_err(),
            "a {cut}-byte prefix was accepted"
        );
    }
}
