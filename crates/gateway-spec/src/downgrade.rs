//! What both conversions of the 3.1 document to an older version (Swagger 2.0 for API Gateway,
//! OpenAPI 3.0 for generators) share: the warnings they collect, the schema keywords every version
//! spells alike, and the JSON Schema 2020-12 keywords both older dialects spell the same other way.

use serde_json::{Map, Value};

/// Collects the warnings of one conversion.
#[derive(Debug, Default)]
pub(crate) struct Warnings(pub(crate) Vec<String>);

impl Warnings {
    pub(crate) fn add(&mut self, at: &str, what: impl std::fmt::Display) {
        self.0.push(format!("{at}: {what}"));
    }
}

/// Converts one schema (or part of a document) at a place, adding warnings.
pub(crate) type Convert = fn(&Value, &str, &mut Warnings) -> Value;

/// The `openapi` version of `api` when it is 3.1, else what it is (`""` when absent).
pub(crate) fn openapi31_version(api: &Value) -> Result<&str, &str> {
    let version = api.get("openapi").and_then(Value::as_str).unwrap_or("");
    if version.starts_with("3.1") {
        Ok(version)
    } else {
        Err(version)
    }
}

/// Schema keywords that mean the same in 3.1, 3.0 and 2.0 and are copied as they are
/// (`openapi30` adds those that 3.0 shares with 3.1 only).
pub(crate) const SAME: [&str; 16] = [
    "title",
    "description",
    "format",
    "default",
    "multipleOf",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "enum",
];

/// `exclusiveMinimum`/`exclusiveMaximum`: a number in 3.1, a flag on `minimum`/`maximum` in 3.0
/// and 2.0.
pub(crate) fn exclusive_bound(key: &str, v: &Value, out: &mut Map<String, Value>) {
    let bound = if key == "exclusiveMinimum" {
        "minimum"
    } else {
        "maximum"
    };
    if v.is_number() {
        out.insert(bound.to_owned(), v.clone());
        out.insert(key.to_owned(), Value::Bool(true));
    } else {
        out.insert(key.to_owned(), v.clone());
    }
}

/// `examples` (a list in 3.1) becomes the single `example` of 3.0 and 2.0, unless the schema
/// (`object`) has its own.
pub(crate) fn first_example(v: &Value, object: &Map<String, Value>, out: &mut Map<String, Value>) {
    if let Some(first) = v.as_array().and_then(|a| a.first())
        && !object.contains_key("example")
    {
        out.insert("example".to_owned(), first.clone());
    }
}

/// `additionalProperties`: a flag as it is, a schema converted.
pub(crate) fn additional_properties(
    v: &Value,
    at: &str,
    w: &mut Warnings,
    schema: Convert,
) -> Value {
    match v {
        Value::Bool(_) => v.clone(),
        _ => schema(v, at, w),
    }
}
