//! `Message<T>`, what `send` and `emit` take: a value with Nest's optional key, headers, partition and timestamp; `IntoMessage`.

use super::*;

/// A record for `emit` or `send`: value (a tombstone when `None`), key,
/// headers, and optionally the partition and timestamp. NestJS's
/// `{key, value, headers, partition, timestamp}` envelope.
///
/// ```
/// use franz_transport::Message;
/// let m = Message::new(serde_json::json!({"id": "0c3f9a12"}))
///     .key("customer-7")
///     .header("x-source", "gateway");
/// let tombstone = Message::<()>::tombstone().key("customer-7");
/// # let _ = (m, tombstone);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Message<T> {
    /// The value; `None` sends a null value (a tombstone).
    pub value: Option<T>,
    /// The key: murmur2 picks the partition from it, as KafkaJS does.
    pub key: Option<Bytes>,
    /// Headers, after the transport's own.
    pub headers: Vec<(String, Bytes)>,
    /// An explicit partition.
    pub partition: Option<i32>,
    /// The record's timestamp in ms since the epoch (`None`: now).
    pub timestamp: Option<i64>,
}

impl<T> Message<T> {
    /// A message of `value`.
    pub fn new(value: T) -> Self {
        Self {
            value: Some(value),
            key: None,
            headers: Vec::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// A message with a null value: a tombstone for a compacted topic.
    pub fn tombstone() -> Self {
        Self {
            value: None,
            key: None,
            headers: Vec::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// With key `key`, as bytes.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With a key encoded as NestJS encodes keys: a string as itself, a
    /// number as its text, an object as JSON, so franz and Nest producers
    /// put the same key on the same partition.
    pub fn nest_key<K: Serialize + ?Sized>(mut self, key: &K) -> Result<Self, TransportError> {
        self.key = codec::encode(&codec::Json, key)?;
        Ok(self)
    }

    /// With header `name` = `value` too.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// On partition `partition`.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// With timestamp `ms` (since the epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// What `emit` and `send` take: a [`Message`], or a plain value by
/// reference.
pub trait IntoMessage {
    /// The value's type.
    type Value: Serialize;
    /// The message.
    fn into_message(self) -> Message<Self::Value>;
}

impl<T: Serialize> IntoMessage for Message<T> {
    type Value = T;
    fn into_message(self) -> Self {
        self
    }
}

impl<'a, T: Serialize + ?Sized> IntoMessage for &'a T {
    type Value = &'a T;
    fn into_message(self) -> Message<&'a T> {
        Message::new(self)
    }
}
