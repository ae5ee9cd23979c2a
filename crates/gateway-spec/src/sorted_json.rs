//! JSON written with every object's keys in sorted order. `serde_json::Map` keeps insertion
//! order when any crate in the build switches on serde_json's `preserve_order` (a test
//! dependency does), and sorted order otherwise; the rendered bytes, and so the config id, must
//! not depend on which crates happen to share the build.

use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON value serialized with every object's keys in sorted order.
pub(crate) struct Sorted<'a>(pub(crate) &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => sorted_map(map, serializer),
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

/// `value` as pretty JSON (two-space indent, final newline) with every object's keys sorted,
/// whatever serde_json's `preserve_order` feature: the bytes `cargo xtask render` commits.
pub fn to_sorted_json_pretty(value: &Value) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&Sorted(value))?;
    text.push('\n');
    Ok(text)
}

/// The entries of `map` in key order.
pub(crate) fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// For `#[serde(serialize_with)]`: a value with sorted keys.
pub(crate) fn sorted_value<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    Sorted(value).serialize(serializer)
}

/// For `#[serde(serialize_with)]`: a list of values with sorted keys.
pub(crate) fn sorted_vec<S: Serializer>(
    values: &[Value],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(Sorted))
}

/// For `#[serde(serialize_with)]`: a map with sorted keys, its values too.
pub(crate) fn sorted_map<S: Serializer>(
    map: &Map<String, Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let entries = sorted_entries(map);
    let mut out = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in entries {
        out.serialize_entry(key, &Sorted(value))?;
    }
    out.end()
}
