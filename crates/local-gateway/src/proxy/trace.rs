//! Trace ids and request ids: the incoming trace context (or a new trace), the gateway's own span,
//! and `x-request-id`.

use actix_web::HttpRequest;

use super::request::header;

/// The trace (incoming or new), the gateway's span id and whether the trace is sampled: an
/// incoming context keeps its decision, a new trace is sampled with probability `sample_rate`
/// (ESPv2 `--tracing_sample_rate`, Envoy's `random_sampling`; esp-v2 `tracing/tracing.go`).
pub(super) fn ids(req: &HttpRequest, sample_rate: f64) -> (String, String, bool) {
    // Ids need to be unique, not secret: a thread-local generator (as OpenTelemetry's SDK uses),
    // where the operating system's took a system call per id.
    let (trace_id, sampled) = trace_context(req).unwrap_or_else(|| {
        (
            hex(&fastrand::u128(1..).to_be_bytes()),
            fastrand::f64() < sample_rate,
        )
    });
    (trace_id, hex(&fastrand::u64(1..).to_be_bytes()), sampled)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Incoming trace context: `traceparent` first, then `X-Cloud-Trace-Context`
/// (`options/common.go`: trace propagation `traceparent,x-cloud-trace-context`).
fn trace_context(req: &HttpRequest) -> Option<(String, bool)> {
    if let Some(tp) = header(req, "traceparent") {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() == 4
            && parts[1].len() == 32
            && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
            && parts[1] != "00000000000000000000000000000000"
        {
            let sampled = u8::from_str_radix(parts[3], 16).is_ok_and(|f| f & 1 == 1);
            return Some((parts[1].to_ascii_lowercase(), sampled));
        }
    }
    let xctc = header(req, "x-cloud-trace-context")?;
    let (trace, rest) = xctc.split_once('/').unwrap_or((xctc.as_str(), ""));
    if trace.len() != 32 || !trace.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((trace.to_ascii_lowercase(), !rest.contains("o=0")))
}

/// A random (version 4) UUID.
pub(super) fn uuid_v4() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
