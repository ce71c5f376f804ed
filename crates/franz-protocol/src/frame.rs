//! Request and response framing: the size prefix and headers.
//!
//! - Request header v1: api key, api version, correlation id, nullable
//!   client id (always a classic int16 string). v2 adds a tagged section and
//!   is used exactly when the request version is flexible.
//! - Response header v0: correlation id. v1 adds a tagged section and is used
//!   when the response version is flexible, except that ApiVersions responses
//!   always use v0 (KIP-511), so a client can read one whatever it asked for.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::messages::{AnyRequest, ApiKey, Message, Request};
use crate::primitives::{DecodeLimits, RawTaggedField, Reader, Writer};

/// A request header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHeader {
    /// The API key.
    pub api_key: i16,
    /// The API version of the body.
    pub api_version: i16,
    /// Echoed in the response, to match the two.
    pub correlation_id: i32,
    /// The client id (null allowed).
    pub client_id: Option<String>,
    /// Unknown tagged fields (v2).
    pub unknown_tagged_fields: Vec<RawTaggedField>,
}

/// A response header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHeader {
    /// The request's correlation id.
    pub correlation_id: i32,
    /// Unknown tagged fields (v1).
    pub unknown_tagged_fields: Vec<RawTaggedField>,
}

/// The request header version for `api` at `version`: 2 if flexible, else 1.
pub fn request_header_version(api: ApiKey, version: i16) -> i16 {
    if api.is_flexible(version) { 2 } else { 1 }
}

/// The response header version for `api` at `version`: 1 if flexible, else
/// 0, and always 0 for ApiVersions.
pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    if api != ApiKey::ApiVersions && api.is_flexible(version) {
        1
    } else {
        0
    }
}

impl RequestHeader {
    /// Appends the header in `header_version` (1 or 2).
    pub fn encode(&self, w: &mut BytesMut, header_version: i16) -> Result<(), EncodeError> {
        w.put_i16(self.api_key);
        w.put_i16(self.api_version);
        w.put_i32(self.correlation_id);
        w.put_nullable_string(self.client_id.as_deref(), false, "RequestHeader.ClientId")?;
        if header_version >= 2 {
            crate::messages::write_tagged(w, Vec::new(), &self.unknown_tagged_fields)?;
        }
        Ok(())
    }

    /// Reads a header; the version follows from the API key and version read.
    pub fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut h = Self {
            api_key: r.i16("RequestHeader.ApiKey")?,
            api_version: r.i16("RequestHeader.ApiVersion")?,
            correlation_id: r.i32("RequestHeader.CorrelationId")?,
            client_id: None,
            unknown_tagged_fields: Vec::new(),
        };
        h.client_id = r.nullable_string("RequestHeader.ClientId", false)?;
        let flexible =
            ApiKey::from_i16(h.api_key).is_some_and(|api| api.is_flexible(h.api_version));
        if flexible {
            r.tagged_fields("RequestHeader", &mut h.unknown_tagged_fields, |_, _| {
                Ok(false)
            })?;
        }
        Ok(h)
    }
}

impl ResponseHeader {
    /// Appends the header in `header_version` (0 or 1).
    pub fn encode(&self, w: &mut BytesMut, header_version: i16) -> Result<(), EncodeError> {
        w.put_i32(self.correlation_id);
        if header_version >= 1 {
            crate::messages::write_tagged(w, Vec::new(), &self.unknown_tagged_fields)?;
        }
        Ok(())
    }

    /// Reads a header of `header_version` (0 or 1).
    pub fn decode(r: &mut Reader, header_version: i16) -> Result<Self, DecodeError> {
        let mut h = Self {
            correlation_id: r.i32("ResponseHeader.CorrelationId")?,
            unknown_tagged_fields: Vec::new(),
        };
        if header_version >= 1 {
            r.tagged_fields("ResponseHeader", &mut h.unknown_tagged_fields, |_, _| {
                Ok(false)
            })?;
        }
        Ok(h)
    }
}

/// Appends a whole request frame (size prefix, header, body) for `body` at
/// `version`. On error nothing is left appended.
pub fn encode_request<M: Request>(
    w: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &M,
) -> Result<(), EncodeError> {
    let start = w.len();
    let result = (|| {
        let api = ApiKey::from_i16(M::API_KEY).ok_or(EncodeError::UnsupportedVersion {
            api: M::NAME,
            version,
        })?;
        w.put_i32(0);
        RequestHeader {
            api_key: M::API_KEY,
            api_version: version,
            correlation_id,
            client_id: client_id.map(str::to_owned),
            unknown_tagged_fields: Vec::new(),
        }
        .encode(w, request_header_version(api, version))?;
        body.encode(w, version)?;
        let len = i32::try_from(w.len() - start - 4).map_err(|_| EncodeError::TooLong {
            field: "request frame",
            length: w.len() - start - 4,
        })?;
        w[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    })();
    if result.is_err() {
        w.truncate(start);
    }
    result
}

/// Decodes a response frame body (after the size prefix): the header for
/// `M` at `version`, then the body. Returns both.
pub fn decode_response<M: Message>(
    frame: Bytes,
    version: i16,
    limits: DecodeLimits,
) -> Result<(ResponseHeader, M), DecodeError> {
    let api = ApiKey::from_i16(M::API_KEY).ok_or(DecodeError::UnsupportedVersion {
        api: M::NAME,
        version,
    })?;
    let mut r = Reader::with_limits(frame, limits);
    let header = ResponseHeader::decode(&mut r, response_header_version(api, version))
        .map_err(|e| e.in_message(M::NAME, version))?;
    let body = M::decode_with_limits(r.into_rest(), version, limits)?;
    Ok((header, body))
}

/// Decodes a request frame body (broker direction): header, then body.
pub fn decode_request(
    frame: Bytes,
    limits: DecodeLimits,
) -> Result<(RequestHeader, AnyRequest), DecodeError> {
    let mut r = Reader::with_limits(frame, limits);
    let header = RequestHeader::decode(&mut r)?;
    let body = AnyRequest::decode(header.api_key, header.api_version, r.into_rest(), limits)?;
    Ok((header, body))
}

/// Reads the correlation id at the start of a response frame body without
/// decoding anything else (to route a response to its caller).
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ApiVersionsRequest, MetadataRequest};

    #[test]
    fn header_versions_follow_flexibility_with_the_api_versions_exception() {
        assert_eq!(request_header_version(ApiKey::Metadata, 8), 1);
        assert_eq!(request_header_version(ApiKey::Metadata, 9), 2);
        assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
        assert_eq!(request_header_version(ApiKey::ApiVersions, 3), 2);
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
    }

    #[test]
    fn request_frames_carry_size_header_and_body() {
        let mut w = BytesMut::new();
        encode_request(&mut w, 7, Some("franz"), 3, &ApiVersionsRequest::default()).unwrap();
        let size = i32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize;
        assert_eq!(size, w.len() - 4);
        let (h, body) = decode_request(w.freeze().slice(4..), DecodeLimits::default()).unwrap();
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (18, 3, 7));
        assert_eq!(h.client_id.as_deref(), Some("franz"));
        assert!(matches!(body, AnyRequest::ApiVersions(_)));
    }

    #[test]
    fn a_failed_encode_leaves_nothing_behind() {
        let mut w = BytesMut::from(&b"keep"[..]);
        // v0 lacks AllowAutoTopicCreation's non-default value `false`.
        let req = MetadataRequest {
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        };
        assert!(encode_request(&mut w, 1, None, 0, &req).is_err());
        assert_eq!(&w[..], b"keep");
    }

    /// `RawTaggedFieldWriterTest`'s vector: tags 2 (`01 02 03`) and 5
    /// (`04 05`) give `02 02 03 01 02 03 05 02 04 05`, whatever order they
    /// are held in; no fields is one `00`; a reused tag is an error.
    #[test]
    fn tagged_field_sections_match_the_java_vectors() {
        let raw = |tag: u32, data: &'static [u8]| RawTaggedField {
            tag,
            data: Bytes::from_static(data),
        };
        for fields in [
            [raw(2, b"\x01\x02\x03"), raw(5, b"\x04\x05")],
            [raw(5, b"\x04\x05"), raw(2, b"\x01\x02\x03")],
        ] {
            let mut w = BytesMut::new();
            crate::messages::write_tagged(&mut w, Vec::new(), &fields).unwrap();
            assert_eq!(&w[..], b"\x02\x02\x03\x01\x02\x03\x05\x02\x04\x05");
        }
        let mut w = BytesMut::new();
        crate::messages::write_tagged(&mut w, Vec::new(), &[]).unwrap();
        assert_eq!(&w[..], b"\x00");
        let clash = crate::messages::write_tagged(
            &mut BytesMut::new(),
            vec![(2, Bytes::from_static(b"\x09"))],
            &[raw(2, b"\x01")],
        );
        assert_eq!(clash, Err(EncodeError::DuplicateTag { tag: 2 }));
    }

    /// `RequestHeaderTest`: header v1 with an empty client id is 10 bytes,
    /// v2 adds the empty tag section; a null client id is length -1; and the
    /// worked example, ApiVersions v3, correlation id 1, client id "rs".
    #[test]
    fn request_headers_match_the_java_vectors() {
        let header = |version: i16, client_id: Option<&str>| {
            let mut w = BytesMut::new();
            encode_request(
                &mut w,
                1,
                client_id,
                version,
                &ApiVersionsRequest::default(),
            )
            .unwrap();
            w.freeze().slice(4..)
        };
        // ApiVersions v2 uses header v1, v3 header v2.
        assert_eq!(
            &header(2, Some(""))[..10],
            b"\x00\x12\x00\x02\x00\x00\x00\x01\x00\x00"
        );
        assert_eq!(
            &header(3, Some(""))[..11],
            b"\x00\x12\x00\x03\x00\x00\x00\x01\x00\x00\x00"
        );
        assert_eq!(&header(2, None)[8..10], b"\xff\xff");
        assert_eq!(
            &header(3, Some("rs"))[..13],
            b"\x00\x12\x00\x03\x00\x00\x00\x01\x00\x02\x72\x73\x00"
        );
    }

    /// Java's rule for a field the chosen version lacks: a non-default value
    /// is an error naming the message, version and field; the default, or
    /// any value of an ignorable field, is dropped silently.
    #[test]
    fn fields_a_version_lacks_follow_the_java_encoding_rule() {
        let metadata = |allow: bool| MetadataRequest {
            allow_auto_topic_creation: allow,
            ..MetadataRequest::default()
        };
        let mut w = BytesMut::new();
        match encode_request(&mut w, 1, None, 3, &metadata(false)) {
            Err(EncodeError::FieldNotSupported {
                api,
                version,
                field,
            }) => {
                assert_eq!(
                    (api, version, field),
                    (
                        "MetadataRequest",
                        3,
                        "MetadataRequest.AllowAutoTopicCreation"
                    )
                );
            }
            other => panic!("expected FieldNotSupported, got {other:?}"),
        }
        // The default (true) is not written and not an error.
        let (mut with_default, mut plain) = (BytesMut::new(), BytesMut::new());
        encode_request(&mut with_default, 1, None, 3, &metadata(true)).unwrap();
        encode_request(&mut plain, 1, None, 3, &MetadataRequest::default()).unwrap();
        assert_eq!(with_default, plain);
        // ClientSoftwareName (v3+) is ignorable: dropped at v2, whatever it holds.
        let named = ApiVersionsRequest {
            client_software_name: "franz".into(),
            client_software_version: "1.0".into(),
            ..ApiVersionsRequest::default()
        };
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        encode_request(&mut a, 1, None, 2, &named).unwrap();
        encode_request(&mut b, 1, None, 2, &ApiVersionsRequest::default()).unwrap();
        assert_eq!(a, b);
        // At v3 it is written.
        let mut v3 = BytesMut::new();
        encode_request(&mut v3, 1, None, 3, &named).unwrap();
        assert!(v3.windows(5).any(|w| w == b"franz"));
    }
}
