//! OpenAPI 3.1 → OpenAPI 3.0 (`openapi/items.openapi-3.0.json`), for consumers and client
//! generators (progenitor, for `items-client`) that read only 3.0.
//!
//! The two versions share their structure (paths, operations, parameters, request bodies,
//! responses, links, components); they differ in the schema dialect: 3.1 uses JSON Schema 2020-12,
//! 3.0 an extended subset of draft 5. So [`to_openapi30`] walks the document, converts every
//! schema it finds (`type: [T, "null"]` → `nullable`, `const` → one-value `enum`, numeric
//! `exclusiveMinimum` → `minimum` plus a flag, `examples` → `example`, `$ref` with siblings →
//! `allOf`) and drops what 3.0 cannot say, with a warning naming the place, never silently.
//!
//! [`for_client_generators`] narrows a 3.0 document further for generators that type only
//! `application/json` bodies: see there.

use serde_json::{Map, Value};

use crate::downgrade::{self, Convert, SAME, Warnings};

/// The `openapi` version written.
pub const OPENAPI_30_VERSION: &str = "3.0.3";

/// A converted document and what had to be simplified.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub document: Value,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Openapi30Error {
    #[error("the API description is not OpenAPI 3.1: \"openapi\" is {0:?}")]
    NotOpenApi31(String),
}

/// Converts an OpenAPI 3.1 document to OpenAPI 3.0.3.
pub fn to_openapi30(api: &Value) -> Result<Converted, Openapi30Error> {
    downgrade::openapi31_version(api)
        .map_err(|version| Openapi30Error::NotOpenApi31(version.to_owned()))?;
    let mut w = Warnings::default();
    let mut out = Map::new();
    for (key, value) in api.as_object().into_iter().flatten() {
        match key.as_str() {
            "openapi" => {
                out.insert(key.clone(), Value::String(OPENAPI_30_VERSION.to_owned()));
            }
            "info" => {
                out.insert(key.clone(), info(value, &mut w));
            }
            "paths" => {
                let mut paths = Map::new();
                for (path, item) in value.as_object().into_iter().flatten() {
                    paths.insert(
                        path.clone(),
                        path_item(item, &format!("paths/{path}"), &mut w),
                    );
                }
                out.insert(key.clone(), Value::Object(paths));
            }
            "components" => {
                out.insert(key.clone(), components(value, &mut w));
            }
            "jsonSchemaDialect" => {}
            "webhooks" => w.add(key, "webhooks have no 3.0 form and were left out"),
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if !out.contains_key("paths") {
        out.insert("paths".to_owned(), Value::Object(Map::new()));
    }
    Ok(Converted {
        document: Value::Object(out),
        warnings: w.0,
    })
}

/// Narrows a 3.0 document for client generators that type only `application/json` bodies
/// (progenitor): a request body keeps only its `application/json` media type when it has one,
/// and `application/*+json` media types (`application/problem+json`) are read as
/// `application/json`. The wire stays the same: the service accepts `application/json` wherever
/// it accepts a `+json` type, and a client decodes the body as JSON either way.
pub fn for_client_generators(document: &mut Value) {
    fn json_only(content: &mut Value, request: bool) {
        let Some(media) = content.as_object_mut() else {
            return;
        };
        if request && media.contains_key("application/json") {
            media.retain(|k, _| k == "application/json");
            return;
        }
        let json_like: Vec<String> = media
            .keys()
            .filter(|k| k.starts_with("application/") && k.ends_with("+json"))
            .cloned()
            .collect();
        for k in json_like {
            if let Some(v) = media.remove(&k) {
                media.entry("application/json").or_insert(v);
            }
        }
    }
    fn response(r: &mut Value) {
        if let Some(c) = r.get_mut("content") {
            json_only(c, false);
        }
        // Links drive stateful testing, not code: progenitor's `openapiv3` model fails to read a
        // link's `operationId` through its two flattened fields, so they are left out here.
        if let Some(r) = r.as_object_mut() {
            r.remove("links");
        }
    }
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                if let Some(c) = op.pointer_mut("/requestBody/content") {
                    json_only(c, true);
                }
                for r in op
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                    .into_iter()
                    .flat_map(|o| o.values_mut())
                {
                    response(r);
                }
            }
        }
    }
    if let Some(rs) = document
        .pointer_mut("/components/responses")
        .and_then(Value::as_object_mut)
    {
        rs.values_mut().for_each(response);
    }
}

fn info(value: &Value, w: &mut Warnings) -> Value {
    let mut out = value.as_object().cloned().unwrap_or_default();
    if out.remove("summary").is_some() {
        w.add("info/summary", "has no 3.0 form and was left out");
    }
    if let Some(license) = out.get_mut("license").and_then(Value::as_object_mut)
        && license.remove("identifier").is_some()
    {
        w.add(
            "info/license/identifier",
            "has no 3.0 form and was left out",
        );
    }
    Value::Object(out)
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn path_item(value: &Value, at: &str, w: &mut Warnings) -> Value {
    let mut out = Map::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        let here = format!("{at}/{key}");
        let converted = match key.as_str() {
            "parameters" => list(v, &here, w, parameter),
            k if METHODS.contains(&k) => operation(v, &here, w),
            _ => v.clone(),
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

fn operation(value: &Value, at: &str, w: &mut Warnings) -> Value {
    let mut out = Map::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        let here = format!("{at}/{key}");
        let converted = match key.as_str() {
            "parameters" => list(v, &here, w, parameter),
            "requestBody" => with_content(v, &here, w),
            "responses" => map(v, &here, w, response),
            "callbacks" => {
                w.add(&here, "callbacks were left out");
                continue;
            }
            _ => v.clone(),
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

fn components(value: &Value, w: &mut Warnings) -> Value {
    let mut out = Map::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        let here = format!("components/{key}");
        let converted = match key.as_str() {
            "schemas" => map(v, &here, w, schema),
            "parameters" => map(v, &here, w, parameter),
            "requestBodies" => map(v, &here, w, with_content),
            "responses" => map(v, &here, w, response),
            "headers" => map(v, &here, w, parameter),
            "pathItems" => {
                w.add(&here, "has no 3.0 form and was left out");
                continue;
            }
            _ => v.clone(),
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

fn map(value: &Value, at: &str, w: &mut Warnings, f: Convert) -> Value {
    let mut out = Map::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        out.insert(key.clone(), f(v, &format!("{at}/{key}"), w));
    }
    Value::Object(out)
}

fn list(value: &Value, at: &str, w: &mut Warnings, f: Convert) -> Value {
    Value::Array(
        value
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, v)| f(v, &format!("{at}/{i}"), w))
            .collect(),
    )
}

/// A parameter or a header: its `schema`, or the schemas of its `content`.
fn parameter(value: &Value, at: &str, w: &mut Warnings) -> Value {
    let mut out = value.as_object().cloned().unwrap_or_default();
    if let Some(s) = out.get_mut("schema") {
        *s = schema(s, &format!("{at}/schema"), w);
    }
    if let Some(c) = out.get_mut("content") {
        *c = content(c, &format!("{at}/content"), w);
    }
    Value::Object(out)
}

/// A request body (or anything with `content`).
fn with_content(value: &Value, at: &str, w: &mut Warnings) -> Value {
    let mut out = value.as_object().cloned().unwrap_or_default();
    if let Some(c) = out.get_mut("content") {
        *c = content(c, &format!("{at}/content"), w);
    }
    Value::Object(out)
}

fn response(value: &Value, at: &str, w: &mut Warnings) -> Value {
    let mut out = with_content(value, at, w);
    if let Some(h) = out.get_mut("headers") {
        *h = map(h, &format!("{at}/headers"), w, parameter);
    }
    out
}

fn content(value: &Value, at: &str, w: &mut Warnings) -> Value {
    map(value, at, w, |media, here, w| {
        let mut out = media.as_object().cloned().unwrap_or_default();
        if let Some(s) = out.get_mut("schema") {
            *s = schema(s, &format!("{here}/schema"), w);
        }
        Value::Object(out)
    })
}

/// Keywords that mean the same in 3.1 and 3.0, beyond those all three versions share
/// ([`SAME`]).
const SAME_IN_30: [&str; 11] = [
    "required",
    "readOnly",
    "writeOnly",
    "deprecated",
    "example",
    "discriminator",
    "xml",
    "externalDocs",
    "type",
    "properties",
    "items",
];

/// Converts one JSON Schema (3.1 dialect) to a 3.0 Schema Object.
pub(crate) fn schema(value: &Value, at: &str, w: &mut Warnings) -> Value {
    let Some(object) = value.as_object() else {
        // `true`/`false` schemas.
        if value == &Value::Bool(false) {
            w.add(at, "a false schema became {not: {}}");
            return serde_json::json!({"not": {}});
        }
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    let mut nullable = false;
    for (key, v) in object {
        let here = format!("{at}/{key}");
        match key.as_str() {
            "type" => nullable |= schema_type(v, &mut out),
            "properties" => {
                out.insert(key.clone(), map(v, &here, w, schema));
            }
            "items" | "not" => {
                out.insert(key.clone(), schema(v, &here, w));
            }
            "additionalProperties" => {
                let converted = downgrade::additional_properties(v, &here, w, schema);
                out.insert(key.clone(), converted);
            }
            "allOf" | "oneOf" | "anyOf" => nullable |= alternatives(key, v, &here, &mut out, w),
            "$ref" => {
                out.insert(key.clone(), v.clone());
            }
            "const" => {
                out.insert("enum".to_owned(), Value::Array(vec![v.clone()]));
            }
            "examples" => downgrade::first_example(v, object, &mut out),
            "exclusiveMinimum" | "exclusiveMaximum" => downgrade::exclusive_bound(key, v, &mut out),
            k if SAME.contains(&k) || SAME_IN_30.contains(&k) || k.starts_with("x-") => {
                out.insert(key.clone(), v.clone());
            }
            "contentMediaType" | "contentEncoding" | "$comment" | "$schema" | "$id" => {}
            other => w.add(
                at,
                format!("the keyword {other} has no 3.0 form and was left out"),
            ),
        }
    }
    if nullable {
        out.insert("nullable".to_owned(), Value::Bool(true));
    }
    ref_without_siblings(out)
}

/// `type`: a name as it is, `"null"` or `[T, "null"]` as nullable, `[T, U]` as `anyOf`. Returns
/// whether `null` was among the types.
fn schema_type(v: &Value, out: &mut Map<String, Value>) -> bool {
    match v {
        Value::Array(types) => {
            let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
            match non_null.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".to_owned(), (*one).clone());
                }
                many => {
                    let any: Vec<Value> = many
                        .iter()
                        .map(|t| serde_json::json!({ "type": t }))
                        .collect();
                    out.insert("anyOf".to_owned(), Value::Array(any));
                }
            }
            non_null.len() < types.len()
        }
        Value::String(t) if t == "null" => true,
        _ => {
            out.insert("type".to_owned(), v.clone());
            false
        }
    }
}

/// `allOf`/`oneOf`/`anyOf` (`key`): a `{type: null}` alternative makes the schema nullable (the
/// return value), and a `oneOf`/`anyOf` left with one alternative is that alternative.
fn alternatives(
    key: &str,
    v: &Value,
    here: &str,
    out: &mut Map<String, Value>,
    w: &mut Warnings,
) -> bool {
    let mut nullable = false;
    let mut parts = Vec::new();
    for (i, part) in v.as_array().into_iter().flatten().enumerate() {
        if part.get("type").is_some_and(|t| t == "null")
            && part.as_object().is_some_and(|o| o.len() == 1)
        {
            nullable = true;
        } else {
            parts.push(schema(part, &format!("{here}/{i}"), w));
        }
    }
    match (key, parts.len()) {
        // `oneOf: [X, null]` is a nullable X.
        ("oneOf" | "anyOf", 1) => {
            let only = parts.remove(0);
            merge_single(out, only);
        }
        _ => {
            out.insert(key.to_owned(), Value::Array(parts));
        }
    }
    nullable
}

/// 3.0 ignores the siblings of `$ref`: keep them around an `allOf`.
fn ref_without_siblings(mut out: Map<String, Value>) -> Value {
    if out.contains_key("$ref") && out.len() > 1 {
        let reference = out.remove("$ref").unwrap_or_default();
        let mut wrapped = Map::new();
        wrapped.insert(
            "allOf".to_owned(),
            Value::Array(vec![serde_json::json!({ "$ref": reference })]),
        );
        wrapped.extend(out);
        return Value::Object(wrapped);
    }
    Value::Object(out)
}

/// Puts the one remaining alternative of a `oneOf`/`anyOf` in place: its keywords, or an
/// `allOf` around a `$ref` (which takes no siblings in 3.0).
fn merge_single(out: &mut Map<String, Value>, only: Value) {
    match only {
        Value::Object(o) if !o.contains_key("$ref") => {
            for (k, v) in o {
                out.entry(k).or_insert(v);
            }
        }
        other => {
            out.insert("allOf".to_owned(), Value::Array(vec![other]));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(s: Value) -> (Value, Vec<String>) {
        let mut w = Warnings::default();
        (schema(&s, "s", &mut w), w.0)
    }

    #[test]
    fn nullable_types_and_refs() {
        assert_eq!(
            one(json!({"type": ["string", "null"], "maxLength": 3})).0,
            json!({"type": "string", "maxLength": 3, "nullable": true})
        );
        assert_eq!(
            one(json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/A"}]})).0,
            json!({"allOf": [{"$ref": "#/components/schemas/A"}], "nullable": true})
        );
        assert_eq!(
            one(json!({"$ref": "#/components/schemas/A", "description": "d"})).0,
            json!({"allOf": [{"$ref": "#/components/schemas/A"}], "description": "d"})
        );
    }

    #[test]
    fn bounds_const_and_examples() {
        assert_eq!(
            one(json!({"type": "integer", "exclusiveMinimum": 0, "const": 1, "examples": [1, 2]}))
                .0,
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true, "enum": [1], "example": 1})
        );
    }

    #[test]
    fn unknown_keywords_are_named() {
        let (out, warnings) = one(json!({"type": "array", "prefixItems": [{"type": "string"}]}));
        assert_eq!(out, json!({"type": "array"}));
        assert_eq!(
            warnings,
            ["s: the keyword prefixItems has no 3.0 form and was left out"]
        );
    }

    #[test]
    fn documents_convert_and_narrow() {
        let api = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1", "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
            "paths": {"/a": {"patch": {
                "requestBody": {"content": {
                    "application/json": {"schema": {"type": ["string", "null"]}},
                    "application/merge-patch+json": {"schema": {"type": ["string", "null"]}}
                }},
                "responses": {"400": {"description": "x", "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/P"}}
                }}}
            }}},
            "components": {"schemas": {"P": {"type": "object"}}}
        });
        let converted = to_openapi30(&api).expect("converts");
        let mut doc = converted.document;
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(
            doc["paths"]["/a"]["patch"]["requestBody"]["content"]["application/merge-patch+json"]["schema"],
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            converted.warnings,
            ["info/license/identifier: has no 3.0 form and was left out"]
        );
        for_client_generators(&mut doc);
        let op = &doc["paths"]["/a"]["patch"];
        assert_eq!(
            op["requestBody"]["content"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["application/json".to_owned()])
        );
        assert!(op["responses"]["400"]["content"]["application/json"].is_object());
        assert!(to_openapi30(&json!({"openapi": "3.0.0"})).is_err());
    }
}
