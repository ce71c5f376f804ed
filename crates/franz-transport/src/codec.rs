//! Codecs: how values become record bytes and back, chosen per server,
//! client or pattern.
//!
//! A codec is a trait object, so a pattern's codec is a setting rather than
//! a type parameter every handler carries. Values cross it through
//! `erased-serde`: [`Codec::encode`] takes any `Serialize`, and
//! [`Codec::decode`] hands a deserializer over the bytes to a callback that
//! builds the caller's type. A user's codec (Avro or Protobuf behind a
//! schema registry, say) implements the same two methods.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::nest;

/// A callback that deserializes the caller's type from the deserializer a
/// codec hands it. It may be called more than once (the JSON codec tries
/// Nest's stringified scalars a second way).
pub type Visit<'a> =
    dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error> + 'a;

/// Turns values into record bytes and back.
///
/// ```
/// use bytes::Bytes;
/// use franz_transport::codec::{self, Codec, CodecError, Visit};
///
/// /// Values as upper-case text, say.
/// #[derive(Debug)]
/// struct Shout;
/// impl Codec for Shout {
///     fn name(&self) -> &'static str { "shout" }
///     fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Option<Bytes>, CodecError> {
///         let text = codec::Text.encode(value)?;
///         Ok(text.map(|b| Bytes::from(String::from_utf8_lossy(&b).to_uppercase())))
///     }
///     fn decode(&self, bytes: Option<&Bytes>, visit: &mut Visit<'_>) -> Result<(), CodecError> {
///         codec::Text.decode(bytes, visit)
///     }
/// }
/// let bytes = codec::encode(&Shout, "hi").unwrap();
/// assert_eq!(bytes.as_deref(), Some(&b"HI"[..]));
/// let back: String = codec::decode(&Shout, bytes.as_ref()).unwrap();
/// assert_eq!(back, "HI");
/// ```
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// A short name, for errors and logs.
    fn name(&self) -> &'static str;

    /// Encodes a value; `None` is a null record value.
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Option<Bytes>, CodecError>;

    /// Hands `visit` a deserializer over `bytes` (`None` for a null value).
    fn decode(&self, bytes: Option<&Bytes>, visit: &mut Visit<'_>) -> Result<(), CodecError>;
}

/// A value that did not encode, or bytes that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec}: {reason}")]
pub struct CodecError {
    /// The codec's name.
    pub codec: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl CodecError {
    /// An error of codec `codec`.
    pub fn new(codec: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            codec,
            reason: reason.to_string(),
        }
    }
}

/// Encodes `value` with `codec`.
pub fn encode<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
) -> Result<Option<Bytes>, CodecError> {
    codec.encode(&value)
}

/// Decodes a `T` from `bytes` with `codec`.
pub fn decode<T: DeserializeOwned>(
    codec: &dyn Codec,
    bytes: Option<&Bytes>,
) -> Result<T, CodecError> {
    let mut out = None;
    codec.decode(bytes, &mut |de| {
        out = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    })?;
    out.ok_or_else(|| CodecError::new(codec.name(), "the codec produced no value"))
}

/// The default codec: JSON with NestJS's rules, so NestJS services read
/// what franz writes and the other way round.
///
/// Encoding is Nest's `KafkaRequestSerializer.encode`: null is a null value,
/// strings go raw (not JSON-quoted), numbers and booleans as their text,
/// objects and arrays as JSON. Decoding is Nest's `KafkaParser.decode`: text
/// starting with `{` or `[` is JSON when it parses, other text is a string,
/// and since Nest sends `42` as the text `"42"`, a number or boolean is
/// also read from such text. A value starting with 0x00 (schema-registry
/// framing) is binary and does not decode as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Option<Bytes>, CodecError> {
        let v = serde_json::to_value(value).map_err(|e| CodecError::new("json", e))?;
        Ok(nest::encode_json(&v))
    }

    fn decode(&self, bytes: Option<&Bytes>, visit: &mut Visit<'_>) -> Result<(), CodecError> {
        let json = nest::decode(bytes)
            .and_then(|v| v.to_json())
            .map_err(|e| CodecError::new("json", e))?;
        let text = match &json {
            Value::String(s) => Some(s.clone()),
            _ => None,
        };
        let first = match visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(json)) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // `"42"` → 42, `"true"` → true: Nest stringifies scalars.
        if let Some(text) = text {
            let mut de = serde_json::Deserializer::from_str(&text);
            if visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de)).is_ok()
                && de.end().is_ok()
            {
                return Ok(());
            }
        }
        Err(CodecError::new("json", first))
    }
}

/// MessagePack through `rmp-serde`, structs as maps (`to_vec_named`) so
/// that other languages read them by field name. Every value, null
/// included, is MessagePack bytes; a null record value (a Nest stream's
/// disposal message) decodes as a unit or `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Codec for MsgPack {
    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Option<Bytes>, CodecError> {
        rmp_serde::to_vec_named(value)
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| CodecError::new("msgpack", e))
    }

    fn decode(&self, bytes: Option<&Bytes>, visit: &mut Visit<'_>) -> Result<(), CodecError> {
        let result = match bytes {
            None => visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(
                serde::de::value::UnitDeserializer::<serde::de::value::Error>::new(),
            )),
            Some(b) => {
                let mut de = rmp_serde::Deserializer::from_read_ref(b.as_ref());
                visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))
            }
        };
        result.map_err(|e| CodecError::new("msgpack", e))
    }
}

/// Raw bytes, unchanged both ways: decode into `bytes::Bytes` (or
/// `Option<Bytes>` to see null values), encode `Bytes`, `&[u8]` through
/// `serde_bytes`, or a string. Anything else is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Option<Bytes>, CodecError> {
        erased_serde::serialize(value, RawSerializer).map_err(|e| CodecError::new("raw", e))
    }

    fn decode(&self, bytes: Option<&Bytes>, visit: &mut Visit<'_>) -> Result<(), CodecError> {
        visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(
            RawDeserializer {
                bytes: bytes.map(Bytes::as_ref),
                text: false,
            },
        ))
        .map_err(|e| CodecError::new("raw", e))
    }
}

/// UTF-8 text, unchanged both ways: decode into `String`, encode a string.
/// Bytes that are not UTF-8 are an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl Codec for Text {
    fn name(&self) -> &'static str {
        "text"
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Option<Bytes>, CodecError> {
        let out = erased_serde::serialize(value, RawSerializer)
            .map_err(|e| CodecError::new("text", e))?;
        match &out {
            Some(b) if std::str::from_utf8(b).is_err() => {
                Err(CodecError::new("text", "bytes that are not UTF-8"))
            }
            _ => Ok(out),
        }
    }

    fn decode(&self, bytes: Option<&Bytes>, visit: &mut Visit<'_>) -> Result<(), CodecError> {
        if let Some(b) = bytes
            && std::str::from_utf8(b).is_err()
        {
            return Err(CodecError::new("text", "bytes that are not UTF-8"));
        }
        visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(
            RawDeserializer {
                bytes: bytes.map(Bytes::as_ref),
                text: true,
            },
        ))
        .map_err(|e| CodecError::new("text", e))
    }
}

/// The default codec, shared.
pub(crate) fn default_codec() -> Arc<dyn Codec> {
    Arc::new(Json)
}

/// A record value as a deserializer: bytes (or text), or none for null.
struct RawDeserializer<'a> {
    bytes: Option<&'a [u8]>,
    text: bool,
}

impl<'de> serde::Deserializer<'de> for RawDeserializer<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.bytes {
            None => visitor.visit_unit(),
            Some(b) if self.text => match std::str::from_utf8(b) {
                Ok(s) => visitor.visit_str(s),
                Err(_) => Err(serde::de::Error::custom("bytes that are not UTF-8")),
            },
            Some(b) => visitor.visit_bytes(b),
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.bytes {
            None => visitor.visit_none(),
            Some(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// Takes bytes or a string (or none) and nothing else.
struct RawSerializer;

type Impossible = serde::ser::Impossible<Option<Bytes>, serde::de::value::Error>;

fn not_raw<T>(what: &str) -> Result<T, serde::de::value::Error> {
    Err(serde::ser::Error::custom(format!(
        "a raw value is bytes or a string, not {what}"
    )))
}

macro_rules! reject {
    ($($method:ident($($ty:ty),*) => $what:literal;)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<Option<Bytes>, Self::Error> { not_raw($what) })*
    };
}

impl serde::Serializer for RawSerializer {
    type Ok = Option<Bytes>;
    type Error = serde::de::value::Error;
    type SerializeSeq = Impossible;
    type SerializeTuple = Impossible;
    type SerializeTupleStruct = Impossible;
    type SerializeTupleVariant = Impossible;
    type SerializeMap = Impossible;
    type SerializeStruct = Impossible;
    type SerializeStructVariant = Impossible;

    fn serialize_bytes(self, v: &[u8]) -> Result<Self::Ok, Self::Error> {
        Ok(Some(Bytes::copy_from_slice(v)))
    }
    fn serialize_str(self, v: &str) -> Result<Self::Ok, Self::Error> {
        Ok(Some(Bytes::copy_from_slice(v.as_bytes())))
    }
    fn serialize_none(self) -> Result<Self::Ok, Self::Error> {
        Ok(None)
    }
    fn serialize_unit(self) -> Result<Self::Ok, Self::Error> {
        Ok(None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    reject! {
        serialize_bool(bool) => "a bool";
        serialize_i8(i8) => "a number";
        serialize_i16(i16) => "a number";
        serialize_i32(i32) => "a number";
        serialize_i64(i64) => "a number";
        serialize_u8(u8) => "a number";
        serialize_u16(u16) => "a number";
        serialize_u32(u32) => "a number";
        serialize_u64(u64) => "a number";
        serialize_f32(f32) => "a number";
        serialize_f64(f64) => "a number";
        serialize_char(char) => "a char";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum";
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        not_raw("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        not_raw("a sequence (use bytes::Bytes or serde_bytes for Vec<u8>)")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        not_raw("a tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        not_raw("a tuple struct")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        not_raw("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        not_raw("a map")
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        not_raw("a struct")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        not_raw("an enum")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Order {
        id: String,
        total: u32,
    }

    #[test]
    fn json_follows_nest() {
        let o = Order {
            id: "a1".into(),
            total: 5,
        };
        let b = encode(&Json, &o).unwrap().unwrap();
        assert_eq!(&b[..], br#"{"id":"a1","total":5}"#);
        assert_eq!(decode::<Order>(&Json, Some(&b)).unwrap(), o);
        assert_eq!(encode(&Json, "hi").unwrap().unwrap(), "hi", "strings raw");
        assert_eq!(encode(&Json, &42).unwrap().unwrap(), "42");
        assert_eq!(encode(&Json, &()).unwrap(), None, "null is a null value");
        let n: u32 = decode(&Json, Some(&Bytes::from_static(b"42"))).unwrap();
        assert_eq!(n, 42, "Nest sends numbers as text");
        let s: String = decode(&Json, Some(&Bytes::from_static(b"42"))).unwrap();
        assert_eq!(s, "42");
        let none: Option<Order> = decode(&Json, None).unwrap();
        assert_eq!(none, None);
        let err = decode::<Order>(&Json, Some(&Bytes::from_static(b"{nope"))).unwrap_err();
        assert_eq!(err.codec, "json");
        assert!(decode::<u32>(&Json, Some(&Bytes::from_static(b"42 x"))).is_err());
        assert!(decode::<String>(&Json, Some(&Bytes::from_static(b"\0bin"))).is_err());
    }

    #[test]
    fn msgpack_writes_structs_as_maps() {
        let o = Order {
            id: "a1".into(),
            total: 5,
        };
        let b = encode(&MsgPack, &o).unwrap().unwrap();
        assert_eq!(b[0], 0x82, "a fixmap of two entries, not an array");
        assert_eq!(decode::<Order>(&MsgPack, Some(&b)).unwrap(), o);
        let unit: Option<Order> = decode(&MsgPack, None).unwrap();
        assert_eq!(unit, None);
        let err = decode::<Order>(&MsgPack, Some(&Bytes::from_static(&[0xc1]))).unwrap_err();
        assert_eq!(err.codec, "msgpack");
    }

    #[test]
    fn raw_and_text_pass_bytes_through() {
        let bin = Bytes::from_static(&[0, 1, 0xff]);
        assert_eq!(encode(&Raw, &bin).unwrap(), Some(bin.clone()));
        assert_eq!(decode::<Bytes>(&Raw, Some(&bin)).unwrap(), bin);
        assert_eq!(decode::<Option<Bytes>>(&Raw, None).unwrap(), None);
        assert!(encode(&Raw, &5).is_err(), "a number is not raw");
        assert!(encode(&Raw, &vec![1u8]).is_err(), "Vec<u8> is a sequence");
        assert_eq!(encode(&Text, "héllo").unwrap(), Some(Bytes::from("héllo")));
        assert_eq!(
            decode::<String>(&Text, Some(&Bytes::from("héllo"))).unwrap(),
            "héllo"
        );
        assert_eq!(
            decode::<String>(&Text, Some(&bin)).unwrap_err().codec,
            "text"
        );
        assert!(encode(&Text, &bin).is_err());
    }
}
