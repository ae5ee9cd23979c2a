//! Incoming trace context: W3C `traceparent` first, Google's `X-Cloud-Trace-Context` as a
//! fallback. Anything malformed is ignored (the request then starts a fresh trace).

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The caller's span, from the request headers' raw bytes.
pub fn remote_parent(
    traceparent: Option<&[u8]>,
    cloud_trace: Option<&[u8]>,
) -> Option<SpanContext> {
    traceparent
        .and_then(parse_traceparent)
        .or_else(|| cloud_trace.and_then(parse_cloud_trace))
}

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn hex_u128(s: &[u8]) -> Option<u128> {
    u128::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>` (W3C Trace Context level 1). Versions
/// above 00 may append fields; `ff` is invalid; all-zero ids are invalid; hex is lowercase.
pub fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
    let value = value.trim_ascii();
    if value.len() < 55 {
        return None;
    }
    let (version, rest) = (&value[..2], &value[2..]);
    if !is_lower_hex(version) || version == b"ff" {
        return None;
    }
    if version == b"00" && value.len() != 55 {
        return None;
    }
    if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    let rest = &rest[..53];
    if rest[0] != b'-' || rest[33] != b'-' || rest[50] != b'-' {
        return None;
    }
    let (trace, span, flags) = (&rest[1..33], &rest[34..50], &rest[51..53]);
    if !is_lower_hex(trace) || !is_lower_hex(span) || !is_lower_hex(flags) {
        return None;
    }
    let trace_id = TraceId::from(hex_u128(trace)?);
    let span_id = SpanId::from(u64::try_from(hex_u128(span)?).ok()?);
    let flags = u8::try_from(hex_u128(flags)?).ok()?;
    remote(trace_id, span_id, flags & 1 == 1)
}

/// `TRACE_ID/SPAN_ID;o=OPTIONS`: 32 hex digits, a decimal span id, `o=1` when sampled.
pub fn parse_cloud_trace(value: &[u8]) -> Option<SpanContext> {
    let value = std::str::from_utf8(value.trim_ascii()).ok()?;
    let (trace, rest) = value.split_once('/')?;
    let (span, options) = match rest.split_once(';') {
        Some((span, options)) => (span, Some(options)),
        None => (rest, None),
    };
    if trace.len() != 32 || !trace.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if span.is_empty() || span.len() > 20 || !span.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sampled = match options {
        None => false,
        Some("o=1") => true,
        Some("o=0") => false,
        Some(_) => return None,
    };
    let trace_id = TraceId::from(u128::from_str_radix(trace, 16).ok()?);
    let span_id = SpanId::from(span.parse::<u64>().ok()?);
    remote(trace_id, span_id, sampled)
}

fn remote(trace_id: TraceId, span_id: SpanId, sampled: bool) -> Option<SpanContext> {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let cx = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    cx.is_valid().then_some(cx)
}

/// The `traceparent` value for an outgoing call made inside `span`.
pub fn traceparent(span: &SpanContext) -> Option<String> {
    span.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span.trace_id(),
            span.span_id(),
            span.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_a_valid_traceparent() {
        let cx = parse_traceparent(TP.as_bytes()).expect("valid");
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_sampled());
        assert!(cx.is_remote());
        assert_eq!(traceparent(&cx).as_deref(), Some(TP));
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
        }
        // A later version may append fields.
        assert!(parse_traceparent(format!("01{}-what", &TP[2..]).as_bytes()).is_some());
    }

    #[test]
    fn parses_cloud_trace_context() {
        let cx = parse_cloud_trace(b"105445aa7843bc8bf206b12000100000/1;o=1").expect("valid");
        assert_eq!(
            cx.trace_id().to_string(),
            "105445aa7843bc8bf206b12000100000"
        );
        assert_eq!(cx.span_id().to_string(), "0000000000000001");
        assert!(cx.is_sampled());
        let cx = parse_cloud_trace(b"105445aa7843bc8bf206b12000100000/18446744073709551615")
            .expect("valid");
        assert_eq!(cx.span_id().to_string(), "ffffffffffffffff");
        assert!(!cx.is_sampled());
        for bad in [
            "105445aa7843bc8bf206b12000100000",
            "105445aa7843bc8bf206b12000100000/",
            "105445aa7843bc8bf206b12000100000/0;o=1",
            "105445aa7843bc8bf206b1200010000/1;o=1",
            "105445aa7843bc8bf206b12000100000/abc;o=1",
            "105445aa7843bc8bf206b12000100000/18446744073709551616;o=1",
            "105445aa7843bc8bf206b12000100000/1;o=2",
        ] {
            assert!(parse_cloud_trace(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn traceparent_wins_and_malformed_falls_back() {
        let xctc = b"105445aa7843bc8bf206b12000100000/1;o=1".as_slice();
        let cx = remote_parent(Some(TP.as_bytes()), Some(xctc)).unwrap();
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let cx = remote_parent(Some(b"nonsense"), Some(xctc)).unwrap();
        assert_eq!(
            cx.trace_id().to_string(),
            "105445aa7843bc8bf206b12000100000"
        );
        assert!(remote_parent(Some(b"nonsense"), Some(b"junk")).is_none());
        assert!(remote_parent(None, None).is_none());
    }
}
