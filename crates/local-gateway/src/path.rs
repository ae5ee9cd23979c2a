//! Path templates, request-path normalisation and ESPv2's path translation (esp-v2
//! `util/httppattern/util.go`, `helpers/backend_route.go`, `routegen/proxy_backend.go`).

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}` (or `{name=*}`): exactly one non-empty segment, `[^/]+`.
    Variable(String),
}

/// A path template of the config, e.g. `/items/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As written in the config (ESPv2 quotes it in its 405 message).
    pub text: String,
    segments: Vec<Segment>,
}

impl Template {
    pub fn parse(text: &str) -> Self {
        let segments = text
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(var) => Segment::Variable(var.split('=').next().unwrap_or(var).to_owned()),
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        Self {
            text: text.to_owned(),
            segments,
        }
    }

    /// Matches a normalised path (no query): case-sensitive literals, a variable is one
    /// non-empty segment, one trailing `/` is optional. Returns the variable bindings.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        self.matches_segments(&path_segments(path))
    }

    /// [`Template::matches`] on the path's [`path_segments`], split once for every template.
    pub fn matches_segments(&self, parts: &[&str]) -> Option<Vec<(String, String)>> {
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut bindings = Vec::new();
        for (part, segment) in parts.iter().zip(&self.segments) {
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Variable(name) if !part.is_empty() => {
                    bindings.push((name.clone(), (*part).to_owned()));
                }
                _ => return None,
            }
        }
        Some(bindings)
    }

    /// How specific the template is: literal segments win over variables when several match.
    pub fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

/// The segments of a normalised path that templates match: one trailing `/` dropped, none for
/// `/`.
pub fn path_segments(path: &str) -> Vec<&str> {
    let trimmed = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    if trimmed == "/" || trimmed.is_empty() {
        vec![]
    } else {
        trimmed.split('/').skip(1).collect()
    }
}

/// Envoy's path normalisation before routing, both on in ESPv2 by default (esp-v2
/// `options/configgenerator.go`: `NormalizePath`, `MergeSlashesInPath`; escaped slashes kept):
/// first `normalize_path` (envoy `PathUtil::canonicalPath`, Chromium's `url_canon` path rules):
/// `\` becomes `/`, a `%XX` of an unreserved character (letters, digits, `-._~`) is decoded, so
/// `%2E` counts as `.`, other escapes stay, and dot segments are resolved (RFC 3986 5.2.4: a
/// final `.` or `..` leaves a trailing `/`); then `merge_slashes`.
pub fn normalize(path: &str) -> String {
    let bytes = path.as_bytes();
    let plain = !bytes.iter().any(|b| matches!(b, b'%' | b'\\'))
        && !bytes.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return path.to_owned();
    }
    let canonical = canonical_chars(path);
    let segments: Vec<&str> = canonical.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if i == last {
            out.push("");
        }
    }
    let mut normalized = String::with_capacity(canonical.len());
    for s in &out {
        // merge_slashes: never two `/` in a row.
        if !normalized.ends_with('/') {
            normalized.push('/');
        }
        normalized.push_str(s);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    normalized
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `\` → `/` and the unreserved characters' escapes decoded.
fn canonical_chars(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => out.push('/'),
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| Some(hex(h[0])? << 4 | hex(h[1])?))
                    .filter(|d| unreserved(*d));
                match decoded {
                    Some(d) => {
                        out.push(char::from(d));
                        i += 3;
                        continue;
                    }
                    None => out.push('%'),
                }
            }
            _ => {
                // A char boundary: the path's non-ASCII bytes are copied whole.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&path[i..i + len]);
                i += len;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// `%XX` decoded (as Envoy decodes query parameters, `parseAndDecodeQueryString`); a `%` without
/// two hex digits stays.
pub fn percent_decode(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('%') {
        return std::borrow::Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(d) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex(h[0])? << 4 | hex(h[1])?))
        {
            out.push(d);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `x-google-backend.path_translation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    AppendPathToAddress,
    ConstantAddress,
}

/// The path (and query) sent to the backend (esp-v2 `path_rewrite/config_parser_impl.cc`):
/// - APPEND_PATH_TO_ADDRESS: the address path with one trailing `/` removed (even a lone `/`),
///   then the original path and query; an address without a path leaves the request unchanged.
/// - CONSTANT_ADDRESS: the address path (`/` when empty, one trailing `/` removed), the original
///   query, then the template's variables as `name=value` (`?` or `&` as needed).
///
/// `path_and_query` is the request's (normalised) path with its query; `bindings` are the
/// template's variables in order.
pub fn translate(
    translation: Translation,
    address_path: &str,
    path_and_query: &str,
    bindings: &[(String, String)],
) -> String {
    match translation {
        Translation::AppendPathToAddress => {
            let prefix = address_path.strip_suffix('/').unwrap_or(address_path);
            format!("{prefix}{path_and_query}")
        }
        Translation::ConstantAddress => {
            let mut path = if address_path.is_empty() {
                "/".to_owned()
            } else if address_path.len() > 1 && address_path.ends_with('/') {
                address_path[..address_path.len() - 1].to_owned()
            } else {
                address_path.to_owned()
            };
            let extracted = bindings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            match path_and_query.find('?') {
                None => {
                    if !extracted.is_empty() {
                        path.push('?');
                        path.push_str(&extracted);
                    }
                }
                Some(at) => {
                    path.push_str(&path_and_query[at..]);
                    if !extracted.is_empty() {
                        path.push('&');
                        path.push_str(&extracted);
                    }
                }
            }
            path
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn append_path_to_address_keeps_path_and_query_after_the_address_path() {
        let t = Translation::AppendPathToAddress;
        // Address without a path: the request path is unchanged.
        assert_eq!(translate(t, "", "/items/1?a=b", &[]), "/items/1?a=b");
        // One trailing slash of the address path is removed, even a lone "/".
        assert_eq!(translate(t, "/", "/items", &[]), "/items");
        assert_eq!(
            translate(t, "/api/", "/items/7?x=1", &[]),
            "/api/items/7?x=1"
        );
        assert_eq!(translate(t, "/api", "/items/7", &[]), "/api/items/7");
    }

    #[test]
    fn constant_address_sends_path_parameters_as_query_parameters() {
        let t = Translation::ConstantAddress;
        let ids = b(&[("cid", "123"), ("uid", "456")]);
        // The facts' example: the original query first, then the bindings.
        assert_eq!(
            translate(t, "/getUser", "/users/123/orders/456?timezone=EST", &ids),
            "/getUser?timezone=EST&cid=123&uid=456"
        );
        assert_eq!(
            translate(t, "/getUser", "/users/123/orders/456", &ids),
            "/getUser?cid=123&uid=456"
        );
        // Empty address path: "/".
        assert_eq!(translate(t, "", "/items", &[]), "/");
        assert_eq!(translate(t, "", "/items?page_size=2", &[]), "/?page_size=2");
        // A trailing slash is removed unless the path is just "/".
        assert_eq!(
            translate(t, "/get/", "/items/1", &b(&[("id", "1")])),
            "/get?id=1"
        );
        // Duplicates are possible: a query parameter of the same name is kept.
        assert_eq!(
            translate(t, "/get", "/items/1?id=9", &b(&[("id", "1")])),
            "/get?id=9&id=1"
        );
    }

    #[test]
    fn templates_match_one_segment_per_variable_case_sensitively_with_optional_trailing_slash() {
        let t = Template::parse("/items/{id}");
        assert_eq!(t.matches("/items/42"), Some(b(&[("id", "42")])));
        assert_eq!(t.matches("/items/42/"), Some(b(&[("id", "42")])));
        assert_eq!(t.matches("/items/42/x"), None);
        assert_eq!(t.matches("/items/"), None);
        assert_eq!(t.matches("/Items/42"), None);
        let list = Template::parse("/items");
        assert_eq!(list.matches("/items"), Some(vec![]));
        assert_eq!(list.matches("/items/"), Some(vec![]));
        assert_eq!(list.matches("/ITEMS"), None);
        assert_eq!(Template::parse("/").matches("/"), Some(vec![]));
    }

    /// Envoy normalises before routing (`normalize_path`: `PathUtil::canonicalPath`, Chromium's
    /// `url_canon` path rules; then `merge_slashes`), both on in ESPv2 (esp-v2
    /// `options/configgenerator.go`).
    #[test]
    fn paths_are_normalised_like_envoy_does() {
        for (raw, want) in [
            ("/items", "/items"),
            ("/items//1", "/items/1"),
            ("//items///1//", "/items/1/"),
            ("/a/./b/../items", "/a/items"),
            ("/items/", "/items/"),
            ("/", "/"),
            ("/../..", "/"),
            // RFC 3986 5.2.4: a final dot segment leaves the slash.
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            // Dot segments before merging slashes: `..` removes the empty segment.
            ("/a//../b", "/a/b"),
            // Escaped unreserved characters are decoded, %2E is a dot.
            ("/%69tems/%31", "/items/1"),
            ("/items/%7e%2D%5F", "/items/~-_"),
            ("/a/%2E%2E/items", "/items"),
            ("/a/%2e/items", "/a/items"),
            ("/a/.%2E/items", "/items"),
            // Other escapes stay, escaped slashes included (ESPv2 keeps them unchanged).
            ("/items/a%2Fb", "/items/a%2Fb"),
            ("/items/a%20b", "/items/a%20b"),
            ("/items/100%", "/items/100%"),
            ("/items/%zz", "/items/%zz"),
            // Backslashes are slashes.
            ("/items\\1", "/items/1"),
            ("\\items\\..\\x", "/x"),
        ] {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("a.b.c"), "a.b.c");
        assert_eq!(percent_decode("a%2Eb%2ec"), "a.b.c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
