//! Tracing: a span per handled record, and W3C trace context carried in a
//! `traceparent` Kafka header so that traces cross services.
//!
//! The client starts a trace for each request or event it sends (unless the
//! caller's `Message` brings its own `traceparent`); a server's span records
//! the trace id, and its replies carry the same trace id with a new span
//! id. franz does not depend on OpenTelemetry: an application that exports
//! spans reads the `trace_id` field, or the header through `Ctx`.

use franz_consumer::ConsumerRecord;

use crate::nest::{self, ReplyTo};

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

/// The span a handler runs in.
pub(crate) fn handler_span(
    record: &ConsumerRecord,
    kind: &'static str,
    reply_to: Option<&ReplyTo>,
) -> tracing::Span {
    let correlation_id = reply_to
        .and_then(|to| std::str::from_utf8(&to.correlation_id).ok())
        .unwrap_or("");
    let trace_id = record
        .header(TRACEPARENT)
        .and_then(|v| parse(v).map(|(t, _)| t))
        .unwrap_or("");
    tracing::info_span!(
        "franz.transport.handle",
        pattern = %record.topic,
        kind,
        correlation_id,
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
        trace_id,
    )
}

/// `(trace id, parent id)` of a valid version-00 `traceparent`.
pub fn parse(value: &[u8]) -> Option<(&str, &str)> {
    let s = std::str::from_utf8(value).ok()?;
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some((trace, parent))
}

/// A `traceparent` continuing `parent`'s trace with a new span id, or
/// starting a new trace when `parent` is missing or invalid.
pub fn child_of(parent: Option<&[u8]>) -> String {
    let span = random_hex(16);
    match parent.and_then(parse) {
        Some((trace, _)) => format!("00-{trace}-{span}-01"),
        None => format!("00-{}-{span}-01", random_hex(32)),
    }
}

/// `n` random lowercase hex characters, never all zeros.
fn random_hex(n: usize) -> String {
    loop {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&nest::correlation_id());
        }
        s.truncate(n);
        if s.bytes().any(|b| b != b'0') {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_child_keeps_the_trace_and_a_bad_parent_starts_one() {
        let root = child_of(None);
        let (trace, span) = parse(root.as_bytes()).unwrap();
        let child = child_of(Some(root.as_bytes()));
        let (t2, s2) = parse(child.as_bytes()).unwrap();
        assert_eq!(trace, t2);
        assert_ne!(span, s2);
        assert!(parse(b"00-abc-def-01").is_none());
        assert!(parse(b"00-00000000000000000000000000000000-0000000000000001-01").is_none());
        let fresh = child_of(Some(b"garbage"));
        assert!(parse(fresh.as_bytes()).is_some());
    }
}
