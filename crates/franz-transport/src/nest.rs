//! The NestJS Kafka transporter's wire format, sans-io: header names, how
//! values are serialized and parsed, how requests, replies and events are
//! laid out. Every rule here is from `docs/nestjs-wire.md`
//! (§1–§4), which records what `@nestjs/microservices` 10–12 and KafkaJS 2
//! do.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Header names (Spring Kafka's, plus two of Nest's own).
pub mod headers {
    /// Correlation id: 21 lowercase hex characters from a Nest client.
    pub const CORRELATION_ID: &str = "kafka_correlationId";
    /// The topic replies go to: `<pattern>.reply`.
    pub const REPLY_TOPIC: &str = "kafka_replyTopic";
    /// The partition replies go to, as ASCII decimal.
    pub const REPLY_PARTITION: &str = "kafka_replyPartition";
    /// A reply that carries an error (JSON, or a raw string).
    pub const NEST_ERR: &str = "kafka_nest-err";
    /// The last message of a reply stream (one byte 0x00; presence counts).
    pub const NEST_IS_DISPOSED: &str = "kafka_nest-is-disposed";
}

/// The reply topic of a message pattern.
pub fn reply_topic(pattern: &str) -> String {
    format!("{pattern}.reply")
}

/// A value as Nest's `KafkaParser.decode` sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum NestValue {
    /// No bytes (a null value or header).
    Null,
    /// Bytes starting with 0x00 (schema-registry framing) stay binary.
    Binary(Bytes),
    /// UTF-8 text that is not JSON, or does not start with `{` or `[`.
    Text(String),
    /// Text starting with `{` or `[` that parses as JSON.
    Json(Value),
}

/// Why a payload could not become the type a handler or caller wanted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Binary data (starting with 0x00) where JSON or text was expected.
    #[error("binary payload (first byte 0x00) where JSON or text was expected")]
    Binary,
    /// Bytes that are not UTF-8.
    #[error("payload is not UTF-8")]
    NotUtf8,
    /// The parsed value does not fit the type.
    #[error("payload does not fit the expected type: {0}")]
    Shape(serde_json::Error),
}

impl PayloadError {
    /// Always `false`: the same bytes fail the same way (a poison record).
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// Parses a value or header as Nest does: null stays null, a leading 0x00
/// keeps the bytes binary, `{`/`[` text is tried as JSON (kept as text when
/// it fails), anything else is text.
pub fn decode(bytes: Option<&Bytes>) -> Result<NestValue, PayloadError> {
    let Some(b) = bytes else {
        return Ok(NestValue::Null);
    };
    if b.first() == Some(&0) {
        return Ok(NestValue::Binary(b.clone()));
    }
    let text = std::str::from_utf8(b).map_err(|_| PayloadError::NotUtf8)?;
    if (text.starts_with('{') || text.starts_with('['))
        && let Ok(v) = serde_json::from_str(text)
    {
        return Ok(NestValue::Json(v));
    }
    Ok(NestValue::Text(text.to_string()))
}

impl NestValue {
    /// The value as JSON: text becomes a JSON string (so `"42"` arrives as
    /// the string `"42"`, exactly as a Nest handler would see it).
    pub fn to_json(&self) -> Result<Value, PayloadError> {
        match self {
            Self::Null => Ok(Value::Null),
            Self::Binary(_) => Err(PayloadError::Binary),
            Self::Text(s) => Ok(Value::String(s.clone())),
            Self::Json(v) => Ok(v.clone()),
        }
    }

    /// Deserializes into `T`. Numbers and booleans sent by Nest arrive as
    /// text, so a `T` of `u32` also accepts the text `"42"`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        let json = self.to_json()?;
        match serde_json::from_value::<T>(json.clone()) {
            Ok(v) => Ok(v),
            Err(first) => match &json {
                // `"42"` → 42, `"true"` → true: Nest stringifies scalars.
                Value::String(s) => {
                    serde_json::from_str::<T>(s).map_err(|_| PayloadError::Shape(first))
                }
                _ => Err(PayloadError::Shape(first)),
            },
        }
    }
}

/// Serializes as Nest's `KafkaRequestSerializer.encode`: null → no bytes,
/// strings raw (not JSON-quoted), numbers and booleans as their text,
/// objects and arrays as JSON.
pub fn encode_json(v: &Value) -> Option<Bytes> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone().into_bytes())),
        Value::Bool(b) => Some(Bytes::from(b.to_string().into_bytes())),
        Value::Number(n) => Some(Bytes::from(n.to_string().into_bytes())),
        Value::Array(_) | Value::Object(_) => Some(Bytes::from(v.to_string().into_bytes())),
    }
}

/// Serializes any `T` through [`encode_json`].
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Option<Bytes>, serde_json::Error> {
    Ok(encode_json(&serde_json::to_value(v)?))
}

/// A fresh correlation id in Nest's format: 21 lowercase hex characters.
/// Plain hex never starts with `{` or `[`, so Nest never JSON-parses it.
pub fn correlation_id() -> String {
    let mut raw = [0u8; 11];
    if getrandom::fill(&mut raw).is_err() {
        // No OS randomness: fall back to time and a counter, still unique
        // within this process.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw[..11].copy_from_slice(&nanos.to_le_bytes()[..11]);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    raw.iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .take(21)
        .map(char::from)
        .collect()
}

/// A record to produce, before it meets the producer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingRecord {
    /// Topic.
    pub topic: String,
    /// An explicit partition (replies go to exactly the asked-for one).
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
    /// The record's timestamp in ms since the epoch (`None`: now).
    pub timestamp: Option<i64>,
}

/// How a request writes its `kafka_replyPartition` header. Servers of
/// franz read both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyPartitionHeader {
    /// ASCII decimal, as NestJS writes and reads it (the default).
    #[default]
    Decimal,
    /// A 4-byte big-endian int, as Spring Kafka writes it. A Spring
    /// `@KafkaListener` with `@SendTo` reads the header as an int and fails
    /// on anything shorter, so a client calling one needs this.
    BigEndianI32,
}

impl ReplyPartitionHeader {
    /// The header's value for `partition`.
    pub fn encode(self, partition: i32) -> Bytes {
        match self {
            Self::Decimal => Bytes::from(partition.to_string()),
            Self::BigEndianI32 => Bytes::copy_from_slice(&partition.to_be_bytes()),
        }
    }
}

/// A request to a message pattern: topic `<pattern>`, the three request
/// headers, replies expected on `<pattern>.reply` partition `reply_partition`
/// (written as `format` says).
pub fn request(
    pattern: &str,
    key: Option<Bytes>,
    value: Option<Bytes>,
    correlation_id: &str,
    reply_partition: i32,
    format: ReplyPartitionHeader,
) -> OutgoingRecord {
    OutgoingRecord {
        topic: pattern.to_string(),
        partition: None,
        key,
        value,
        headers: vec![
            (
                headers::CORRELATION_ID.into(),
                Bytes::from(correlation_id.to_string()),
            ),
            (
                headers::REPLY_TOPIC.into(),
                Bytes::from(reply_topic(pattern)),
            ),
            (
                headers::REPLY_PARTITION.into(),
                format.encode(reply_partition),
            ),
        ],
        ..OutgoingRecord::default()
    }
}

/// An event: topic `<pattern>`, no request headers, no reply.
pub fn event(pattern: &str, key: Option<Bytes>, value: Option<Bytes>) -> OutgoingRecord {
    OutgoingRecord {
        topic: pattern.to_string(),
        partition: None,
        key,
        value,
        headers: Vec::new(),
        ..OutgoingRecord::default()
    }
}

/// What a server needs from a request's headers to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The correlation id, echoed on every reply message.
    pub correlation_id: Bytes,
    /// Where replies go.
    pub topic: String,
    /// Which partition; `None` lets the producer choose (Nest does the same
    /// when the header is missing, so such a client reads every partition).
    pub partition: Option<i32>,
}

/// The reply address of a request, or `None` for an event (Nest treats a
/// message without a correlation id or reply topic as an event).
pub fn reply_to<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], Option<&'a Bytes>)>,
) -> Option<ReplyTo> {
    let (mut id, mut topic, mut partition) = (None, None, None);
    for (k, v) in headers {
        let Some(v) = v else { continue };
        match k {
            k if k == headers::CORRELATION_ID.as_bytes() => id = Some(v.clone()),
            k if k == headers::REPLY_TOPIC.as_bytes() => {
                topic = std::str::from_utf8(v).ok().map(str::to_string)
            }
            k if k == headers::REPLY_PARTITION.as_bytes() => partition = parse_partition(v),
            _ => {}
        }
    }
    Some(ReplyTo {
        correlation_id: id?,
        topic: topic?,
        partition,
    })
}

/// `parseFloat` of the ASCII decimal Nest writes; Spring's 4-byte
/// big-endian int is accepted too.
fn parse_partition(v: &[u8]) -> Option<i32> {
    if let Ok(s) = std::str::from_utf8(v)
        && let Ok(f) = s.trim().parse::<f64>()
        && f.fract() == 0.0
        && (0.0..=f64::from(i32::MAX)).contains(&f)
    {
        return Some(f as i32);
    }
    <[u8; 4]>::try_from(v)
        .ok()
        .map(i32::from_be_bytes)
        .filter(|p| *p >= 0)
}

/// One reply message for `to`: the value (or an error as JSON in
/// `kafka_nest-err` with a null value), and `kafka_nest-is-disposed` on the
/// last message of the stream.
pub fn reply(to: &ReplyTo, outcome: Result<Option<Bytes>, Value>, last: bool) -> OutgoingRecord {
    let mut headers = vec![(
        headers::CORRELATION_ID.to_string(),
        to.correlation_id.clone(),
    )];
    let value = match outcome {
        Ok(v) => v,
        Err(err) => {
            let text = match err {
                Value::String(s) => s,
                other => other.to_string(),
            };
            headers.push((headers::NEST_ERR.into(), Bytes::from(text)));
            None
        }
    };
    if last {
        headers.push((headers::NEST_IS_DISPOSED.into(), Bytes::from_static(&[0])));
    }
    OutgoingRecord {
        topic: to.topic.clone(),
        partition: to.partition,
        key: None,
        value,
        headers,
        ..OutgoingRecord::default()
    }
}

/// The error body Nest's `BaseRpcExceptionFilter` sends for
/// `RpcException("message")`.
pub fn rpc_error(message: &str) -> Value {
    serde_json::json!({ "status": "error", "message": message })
}

/// A reply message as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyMessage {
    /// A value; `last` when it carries `kafka_nest-is-disposed`.
    Value {
        /// The parsed value.
        value: NestValue,
        /// Whether the stream ends here.
        last: bool,
    },
    /// The remote handler failed (the stream ends).
    Error(Value),
}

/// What a reply message's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMeta {
    /// The correlation id.
    pub correlation_id: String,
    /// `kafka_nest-err`'s value when present (the remote error).
    pub error: Option<Option<Bytes>>,
    /// `kafka_nest-is-disposed` is present: the stream ends here.
    pub last: bool,
}

/// Reads a reply's headers, or `None` when it has no correlation id (Nest
/// drops those too).
pub fn reply_meta<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], Option<&'a Bytes>)>,
) -> Option<ReplyMeta> {
    let (mut id, mut error, mut last) = (None, None, false);
    for (k, v) in headers {
        match k {
            k if k == headers::CORRELATION_ID.as_bytes() => {
                id = v
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_string);
            }
            k if k == headers::NEST_ERR.as_bytes() => error = Some(v.cloned()),
            k if k == headers::NEST_IS_DISPOSED.as_bytes() => last = true,
            _ => {}
        }
    }
    Some(ReplyMeta {
        correlation_id: id?,
        error,
        last,
    })
}

/// The remote error a `kafka_nest-err` header carries, parsed as Nest's
/// client parses it (JSON when it starts with `{` or `[`, else a string).
pub fn remote_error(header: Option<&Bytes>) -> Value {
    match decode(header).and_then(|v| v.to_json()) {
        Ok(v) => v,
        Err(_) => Value::String(
            header.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned()),
        ),
    }
}

/// Reads a reply: its correlation id and what it says (the value parsed
/// as Nest's JSON), or `None` when it has no correlation id.
pub fn read_reply<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], Option<&'a Bytes>)>,
    value: Option<&Bytes>,
) -> Option<(String, Result<ReplyMessage, PayloadError>)> {
    let meta = reply_meta(headers)?;
    if let Some(e) = meta.error {
        return Some((
            meta.correlation_id,
            Ok(ReplyMessage::Error(remote_error(e.as_ref()))),
        ));
    }
    Some((
        meta.correlation_id,
        decode(value).map(|value| ReplyMessage::Value {
            value,
            last: meta.last,
        }),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn decoding_follows_kafka_parser() {
        assert_eq!(decode(None).unwrap(), NestValue::Null);
        assert_eq!(
            decode(Some(&b("42"))).unwrap(),
            NestValue::Text("42".into())
        );
        assert_eq!(
            decode(Some(&b(r#""x""#))).unwrap(),
            NestValue::Text(r#""x""#.into())
        );
        assert_eq!(
            decode(Some(&b(""))).unwrap(),
            NestValue::Text(String::new())
        );
        assert_eq!(
            decode(Some(&b(r#"{"a":1}"#))).unwrap(),
            NestValue::Json(json!({"a": 1}))
        );
        assert_eq!(
            decode(Some(&b("[1,2]"))).unwrap(),
            NestValue::Json(json!([1, 2]))
        );
        assert_eq!(
            decode(Some(&b("{oops"))).unwrap(),
            NestValue::Text("{oops".into()),
            "bad JSON stays text"
        );
        let framed = Bytes::from_static(&[0, 0, 0, 0, 7, b'{']);
        assert_eq!(
            decode(Some(&framed)).unwrap(),
            NestValue::Binary(framed.clone())
        );
        assert!(matches!(
            decode(Some(&Bytes::from_static(&[0xff, 0xfe]))),
            Err(PayloadError::NotUtf8)
        ));
    }

    #[test]
    fn encoding_follows_kafka_request_serializer() {
        assert_eq!(encode_json(&Value::Null), None);
        assert_eq!(
            encode_json(&json!("plain")),
            Some(b("plain")),
            "strings are not JSON-quoted"
        );
        assert_eq!(encode_json(&json!(42)), Some(b("42")));
        assert_eq!(encode_json(&json!(true)), Some(b("true")));
        assert_eq!(encode_json(&json!({"id": 7})), Some(b(r#"{"id":7}"#)));
        assert_eq!(encode(&vec![1, 2]).unwrap(), Some(b("[1,2]")));
    }

    #[test]
    fn scalars_round_trip_as_nest_delivers_them() {
        // Nest sends 42 as the text "42"; a Rust handler asking for a number
        // still gets 42, one asking for a String gets "42".
        let v = decode(Some(&b("42"))).unwrap();
        assert_eq!(v.parse::<u32>().unwrap(), 42);
        assert_eq!(v.parse::<String>().unwrap(), "42");
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Order {
            id: u32,
        }
        let v = decode(Some(&b(r#"{"id":7}"#))).unwrap();
        assert_eq!(v.parse::<Order>().unwrap(), Order { id: 7 });
        assert!(matches!(
            decode(Some(&b("nope"))).unwrap().parse::<Order>(),
            Err(PayloadError::Shape(_))
        ));
        assert!(matches!(
            decode(Some(&Bytes::from_static(&[0, 1])))
                .unwrap()
                .parse::<Order>(),
            Err(PayloadError::Binary)
        ));
    }

    #[test]
    fn correlation_ids_are_21_lowercase_hex() {
        let a = correlation_id();
        assert_eq!(a.len(), 21);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, correlation_id());
    }

    fn pairs(r: &OutgoingRecord) -> Vec<(&[u8], Option<&Bytes>)> {
        r.headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), Some(v)))
            .collect()
    }

    #[test]
    fn a_request_carries_the_three_headers_and_the_server_reads_them() {
        let r = request(
            "orders.create",
            None,
            Some(b("{}")),
            "0123456789abcdef01234",
            2,
            ReplyPartitionHeader::Decimal,
        );
        assert_eq!(r.topic, "orders.create");
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "kafka_correlationId",
                "kafka_replyTopic",
                "kafka_replyPartition"
            ]
        );
        let to = reply_to(pairs(&r)).unwrap();
        assert_eq!(to.topic, "orders.create.reply");
        assert_eq!(to.partition, Some(2));
        assert_eq!(&to.correlation_id[..], b"0123456789abcdef01234");
        assert_eq!(
            reply_to(pairs(&event("orders.created", None, None))),
            None,
            "events get no reply"
        );
        // Spring writes the partition as a 4-byte big-endian int.
        let spring = [
            (headers::CORRELATION_ID.as_bytes(), Some(&b("x"))),
            (headers::REPLY_TOPIC.as_bytes(), Some(&b("t.reply"))),
            (
                headers::REPLY_PARTITION.as_bytes(),
                Some(&Bytes::from_static(&[0, 0, 0, 3])),
            ),
        ];
        assert_eq!(reply_to(spring).unwrap().partition, Some(3));
        // And a client writes either form; a server reads both back.
        for format in [
            ReplyPartitionHeader::Decimal,
            ReplyPartitionHeader::BigEndianI32,
        ] {
            let r = request("p", None, None, "id", 7, format);
            assert_eq!(
                reply_to(pairs(&r)).unwrap().partition,
                Some(7),
                "{format:?}"
            );
        }
        assert_eq!(
            &ReplyPartitionHeader::BigEndianI32.encode(3)[..],
            &[0, 0, 0, 3]
        );
    }

    #[test]
    fn replies_echo_the_id_and_mark_the_end() {
        let to = ReplyTo {
            correlation_id: b("abc"),
            topic: "p.reply".into(),
            partition: Some(1),
        };
        let last = reply(&to, Ok(Some(b(r#"{"ok":true}"#))), true);
        assert_eq!((last.topic.as_str(), last.partition), ("p.reply", Some(1)));
        assert_eq!(
            last.headers.last().unwrap(),
            &(
                headers::NEST_IS_DISPOSED.to_string(),
                Bytes::from_static(&[0])
            )
        );
        let (id, msg) = read_reply(pairs(&last), last.value.as_ref()).unwrap();
        assert_eq!(id, "abc");
        assert_eq!(
            msg.unwrap(),
            ReplyMessage::Value {
                value: NestValue::Json(json!({"ok": true})),
                last: true
            }
        );

        let err = reply(&to, Err(rpc_error("no stock")), true);
        assert_eq!(err.value, None, "an error reply has a null value");
        let (_, msg) = read_reply(pairs(&err), None).unwrap();
        assert_eq!(
            msg.unwrap(),
            ReplyMessage::Error(json!({"status": "error", "message": "no stock"}))
        );

        // Nest's "no handler" reply is a raw string in the error header.
        let raw = reply(
            &to,
            Err(json!(
                "There is no matching message handler defined in the remote service."
            )),
            false,
        );
        let (_, msg) = read_reply(pairs(&raw), None).unwrap();
        assert_eq!(
            msg.unwrap(),
            ReplyMessage::Error(json!(
                "There is no matching message handler defined in the remote service."
            ))
        );
        assert!(
            read_reply(Vec::new(), Some(&b("x"))).is_none(),
            "no id: dropped"
        );
    }
}
