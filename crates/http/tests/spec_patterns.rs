//! The spec's `pattern`s say exactly what the handlers accept: each is compiled (Rust's regex
//! reads the same syntax as ECMA-262 and Python `re` here) and checked against the domain parsers
//! on values either side of each rule. A schema-valid request must not be refused for its format.

use items_domain::{Description, IdempotencyKey, ItemId, ItemName};
use regex::Regex;
use serde_json::Value;

fn spec() -> Value {
    serde_json::from_str(items_http::openapi_json()).expect("the spec is JSON")
}

fn pattern(at: &Value) -> Regex {
    let p = at["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("no pattern in {at}"));
    Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn param<'a>(spec: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    spec["paths"][path][method]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

const SAMPLES: &[&str] = &[
    "first item",
    "  padded  ",
    "émoji 🦀 and עברית",
    "",
    " ",
    "\t",
    "tab\tinside",
    "line\nbreak",
    "cr\rlf\r\n",
    "nul\0byte",
    "bell\u{7}",
    "del\u{7f}",
    "c1\u{85}control",
    "c1\u{9b}csi",
    "\u{a0}",
    "\u{feff}",
    "\u{2028}",
    "x",
];

#[test]
fn name_and_description_patterns_match_the_domain_rules() {
    let spec = spec();
    let schemas = &spec["components"]["schemas"];
    for body in ["CreateItemRequest", "PatchItemRequest"] {
        let name = pattern(&schemas[body]["properties"]["name"]);
        let description = pattern(&schemas[body]["properties"]["description"]);
        for s in SAMPLES {
            assert_eq!(
                name.is_match(s),
                ItemName::parse(s).is_ok(),
                "{body}.name {s:?}"
            );
            assert_eq!(
                description.is_match(s),
                Description::parse(s).is_ok(),
                "{body}.description {s:?}"
            );
        }
    }
}

#[test]
fn header_patterns_match_what_the_handlers_accept() {
    let spec = spec();
    let key = pattern(param(&spec, "/items", "post", "Idempotency-Key"));
    for s in ["k", "0b9f6c1e-key", "~!@#", "has space", "", "é", "tab\t"] {
        assert_eq!(key.is_match(s), IdempotencyKey::parse(s).is_ok(), "{s:?}");
    }
    assert!(key.is_match(&"k".repeat(255)) && !key.is_match(&"k".repeat(256)));
}

#[test]
fn page_token_pattern_matches_every_token_the_api_issues() {
    let spec = spec();
    let token = pattern(param(&spec, "/items", "get", "page_token"));
    let codec = items_http::PageTokenCodec::new(b"a key for the pattern test");
    for id in [1, 2, 63, 64, 1000, 123_456_789, i64::MAX] {
        let issued = codec.encode(ItemId::new(id).unwrap());
        assert!(token.is_match(&issued), "{issued} (after {id})");
    }
    for s in ["", "not-a-token", "AQ", &"A".repeat(34)] {
        assert!(!token.is_match(s), "{s:?}");
    }
}
