//! Unique names, so tests sharing one cluster never collide, and Kafka-style
//! random ids.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// 64 random bits from the std hasher's per-process random keys, mixed with
/// the clock and a counter (no RNG crate needed for names).
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn unique(kind: &str, prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("{clean}-{kind}{n}-{:08x}", random_u64() as u32)
}

/// A topic name no other test (in this or any other process) will use,
/// e.g. `unique_topic("produce-roundtrip")` → `produce-roundtrip-t3-9f1c22ab`.
pub fn unique_topic(prefix: &str) -> String {
    unique("t", prefix)
}

/// A consumer-group id no other test will use.
pub fn unique_group(prefix: &str) -> String {
    unique("g", prefix)
}

/// A new random id in Kafka's text form: 16 bytes, base64url, no padding
/// (22 characters), as `kafka-storage random-uuid` prints.
pub(crate) fn kafka_uuid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_be_bytes());
    // Kafka reserves the all-zero id and id 1; 2^-64 odds, but be exact.
    bytes[0] |= 0x40;
    let mut out = String::with_capacity(22);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_legal() {
        let a = unique_topic("my test/topic");
        let b = unique_topic("my test/topic");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test-topic-t"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
    }

    #[test]
    fn kafka_uuids_are_22_base64url_chars() {
        let id = kafka_uuid();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, kafka_uuid());
    }
}
