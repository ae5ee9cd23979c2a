//! Reading the client's request.

use actix_web::HttpRequest;

/// The header `name` when it is text (`HeaderValue::to_str`: visible ASCII and tabs).
pub(super) fn header(req: &HttpRequest, name: &str) -> Option<String> {
    let bytes = req.headers().get(name)?.as_bytes();
    if !visible_ascii(bytes) {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// What `HeaderValue::to_str` accepts, in a loop without an early exit, which the compiler
/// vectorises: `to_str`'s byte-by-byte loop over the 700-byte `Authorization` of `cargo xtask
/// bench --through-gateway` was 5.7k of the 115k instructions per proxied request (callgrind).
fn visible_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| {
        ok & ((b' '..=b'~').contains(&b) | (b == b'\t'))
    })
}

/// The query's `name=value` pairs, as sent (not decoded).
pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_what_to_str_accepts() {
        for value in [
            &b"Bearer abc.def"[..],
            b"a\tb",
            b"caf\xc3\xa9",
            b"x\x7f",
            b"",
        ] {
            let v = actix_web::http::header::HeaderValue::from_bytes(value);
            let Ok(v) = v else { continue };
            assert_eq!(visible_ascii(v.as_bytes()), v.to_str().is_ok(), "{value:?}");
        }
    }
}
