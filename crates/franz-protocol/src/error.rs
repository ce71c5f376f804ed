//! Codec errors. Decoding never panics: every malformed input becomes a
//! [`DecodeError`] that names what was being read, and message decoders add
//! the API and version around it.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside `field`.
    #[error("{field}: needed {needed} bytes, {remaining} remain")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// A length or count is negative where that is not allowed, larger than
    /// the bytes that remain, or above the configured limit.
    #[error("{field}: length {length} out of range (limit {limit})")]
    LengthOutOfRange {
        /// What was being read.
        field: &'static str,
        /// The length on the wire.
        length: i64,
        /// The largest length that was acceptable here.
        limit: usize,
    },
    /// A varint ran past its maximum width (5 bytes for 32 bits, 10 for 64).
    #[error("{field}: varint too long")]
    VarintTooLong {
        /// What was being read.
        field: &'static str,
    },
    /// A string is not UTF-8.
    #[error("{field}: invalid UTF-8")]
    InvalidUtf8 {
        /// What was being read.
        field: &'static str,
    },
    /// A value that the protocol does not allow.
    #[error("{field}: {reason}")]
    InvalidValue {
        /// What was being read.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes were left over after a complete message or record.
    #[error("{field}: {remaining} unexpected bytes after the end")]
    TrailingBytes {
        /// What was being read.
        field: &'static str,
        /// How many bytes were left.
        remaining: usize,
    },
    /// A record batch's CRC-32C does not match its contents.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the batch header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// Decompression failed or exceeded its output limit.
    #[error("{codec} decompression: {reason}")]
    Decompression {
        /// The codec.
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Decompressed output would exceed the configured limit (a zip bomb,
    /// or a batch larger than the fetch allows).
    #[error("{codec} decompression: output exceeds the {limit}-byte limit")]
    DecompressedTooLarge {
        /// The codec.
        codec: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The version is outside what franz implements for this API.
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion {
        /// The API name.
        api: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// An error inside a message, with the API and version it was read as.
    #[error("{api} v{version}: {source}")]
    InMessage {
        /// The message type, e.g. `MetadataResponse`.
        api: &'static str,
        /// The version it was decoded as.
        version: i16,
        /// The underlying error (it names the field).
        source: Box<Self>,
    },
}

impl DecodeError {
    /// Always `false`: the same bytes decode the same way. A caller that
    /// fetches again may get other bytes, which is its decision.
    pub fn is_retriable(&self) -> bool {
        false
    }

    /// Wraps this error with the message and version being decoded.
    pub fn in_message(self, api: &'static str, version: i16) -> Self {
        match self {
            e @ Self::InMessage { .. } => e,
            e => Self::InMessage {
                api,
                version,
                source: Box::new(e),
            },
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field holds a non-default value that the chosen version cannot carry
    /// and that the spec does not mark ignorable (the Java client's rule).
    #[error("{api} v{version}: field {field} is not supported in this version")]
    FieldNotSupported {
        /// The message type.
        api: &'static str,
        /// The version being written.
        version: i16,
        /// The field.
        field: &'static str,
    },
    /// A null in a field that is not nullable in the chosen version.
    #[error("{api} v{version}: field {field} is null but not nullable in this version")]
    NullNotAllowed {
        /// The message type.
        api: &'static str,
        /// The version being written.
        version: i16,
        /// The field.
        field: &'static str,
    },
    /// A string, byte array or array too long for its length prefix.
    #[error("{field}: length {length} does not fit the wire format")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        length: usize,
    },
    /// Decompressed output would exceed the configured limit (a zip bomb,
    /// or a batch larger than the fetch allows).
    #[error("{codec} decompression: output exceeds the {limit}-byte limit")]
    DecompressedTooLarge {
        /// The codec.
        codec: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The version is outside what franz implements for this API.
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion {
        /// The message type.
        api: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// Two tagged fields of one struct share a tag (an unknown field kept
    /// from a decode, or added by hand, reuses a known field's tag).
    #[error("two tagged fields with tag {tag}")]
    DuplicateTag {
        /// The tag.
        tag: u32,
    },
    /// Compression failed.
    #[error("{codec} compression: {reason}")]
    Compression {
        /// The codec.
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl EncodeError {
    /// Always `false`: the same message encodes the same way.
    pub fn is_retriable(&self) -> bool {
        false
    }
}
