//! OpenAPI 3.1 → Swagger 2.0 for parameters, request bodies, responses and schemas.
//!
//! What 2.0 cannot say is simplified, never dropped silently: every simplification adds a
//! warning naming the place (`definitions/ItemResponse/properties/description: …`). Output maps
//! are built in sorted key order, so the result does not depend on serde_json's `preserve_order`.

use serde_json::{Map, Value};

use crate::downgrade::{self, SAME, Warnings};
use crate::sorted_json::sorted_entries as sorted;

/// Rewrites a 3.1 `$ref` to its 2.0 place; external references are kept as they are (the
/// built-in checks reject them with a clear message).
pub(crate) fn convert_ref(reference: &str) -> String {
    if let Some(name) = reference.strip_prefix("#/components/schemas/") {
        format!("#/definitions/{name}")
    } else if let Some(name) = reference.strip_prefix("#/components/responses/") {
        format!("#/responses/{name}")
    } else if let Some(name) = reference.strip_prefix("#/components/parameters/") {
        format!("#/parameters/{name}")
    } else {
        reference.to_owned()
    }
}

/// `{"$ref": …}` pointing at the 2.0 place of a 3.1 reference.
fn reference_object(reference: &str) -> Value {
    let mut out = Map::new();
    out.insert("$ref".to_owned(), Value::String(convert_ref(reference)));
    Value::Object(out)
}

/// Converts a JSON Schema (OpenAPI 3.1 dialect) to a Swagger 2.0 schema.
pub(crate) fn schema(value: &Value, at: &str, warnings: &mut Warnings) -> Value {
    let Some(object) = value.as_object() else {
        // `true`/`false` schemas: 2.0 has only objects.
        warnings.add(at, "a boolean schema became an unconstrained schema");
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for (key, v) in sorted(object) {
        let here = format!("{at}/{key}");
        match key.as_str() {
            "$ref" => {
                out.insert(
                    key.clone(),
                    Value::String(convert_ref(v.as_str().unwrap_or_default())),
                );
            }
            k if SAME.contains(&k) => {
                out.insert(key.clone(), v.clone());
            }
            "required" | "readOnly" | "example" => {
                out.insert(key.clone(), v.clone());
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), v.clone());
            }
            "type" => schema_type(v, at, &here, &mut out, warnings),
            "properties" => {
                let mut props = Map::new();
                for (name, prop) in sorted(v.as_object().unwrap_or(&Map::new())) {
                    props.insert(
                        name.clone(),
                        schema(prop, &format!("{here}/{name}"), warnings),
                    );
                }
                out.insert(key.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(key.clone(), schema(v, &here, warnings));
            }
            "additionalProperties" => {
                let converted = downgrade::additional_properties(v, &here, warnings, schema);
                out.insert(key.clone(), converted);
            }
            "allOf" => {
                let parts = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .enumerate()
                            .map(|(i, s)| schema(s, &format!("{here}/{i}"), warnings))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(parts));
            }
            _ => dropped_or_rewritten(key, v, object, at, &mut out, warnings),
        }
    }
    Value::Object(out)
}

/// `type`: a name as it is; `[T, "null"]` as `T` with `x-nullable`; any other list has no
/// 2.0 form.
fn schema_type(
    v: &Value,
    at: &str,
    here: &str,
    out: &mut Map<String, Value>,
    warnings: &mut Warnings,
) {
    match v {
        Value::String(_) => {
            out.insert("type".to_owned(), v.clone());
        }
        Value::Array(types) => {
            let non_null: Vec<&Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .collect();
            if non_null.len() < types.len() {
                out.insert("x-nullable".to_owned(), Value::Bool(true));
            }
            match non_null.as_slice() {
                [one] => {
                    if non_null.len() < types.len() {
                        warnings.add(
                            at,
                            format!(
                                "type [{}, null] became type {} with x-nullable: true",
                                one.as_str().unwrap_or_default(),
                                one.as_str().unwrap_or_default()
                            ),
                        );
                    }
                    out.insert("type".to_owned(), (*one).clone());
                }
                _ => warnings.add(
                    at,
                    format!("type {v} has no 2.0 form; the type constraint was dropped"),
                ),
            }
        }
        _ => warnings.add(here, "a malformed type was dropped"),
    }
}

/// The keywords 2.0 spells another way (`const`, `examples`, exclusive bounds) or cannot say;
/// `object` is the whole schema.
fn dropped_or_rewritten(
    key: &str,
    v: &Value,
    object: &Map<String, Value>,
    at: &str,
    out: &mut Map<String, Value>,
    warnings: &mut Warnings,
) {
    match key {
        "oneOf" | "anyOf" => {
            warnings.add(
                at,
                format!("{key} has no 2.0 form; the schema became unconstrained"),
            );
        }
        "const" => {
            warnings.add(at, "const became a one-value enum");
            out.insert("enum".to_owned(), Value::Array(vec![v.clone()]));
        }
        "examples" => {
            downgrade::first_example(v, object, out);
            if v.as_array().is_some_and(|a| a.len() > 1) {
                warnings.add(at, "examples kept only the first one as example");
            }
        }
        "exclusiveMinimum" | "exclusiveMaximum" => downgrade::exclusive_bound(key, v, out),
        "writeOnly" | "deprecated" | "contentMediaType" | "contentEncoding" => {
            warnings.add(at, format!("{key} has no 2.0 form and was left out"));
        }
        other => warnings.add(
            at,
            format!("the keyword {other} has no 2.0 form and was left out"),
        ),
    }
}

/// Converts a 3.1 parameter object (not `in: body`) to a 2.0 parameter.
pub(crate) fn parameter(value: &Value, at: &str, warnings: &mut Warnings) -> Value {
    let Some(object) = value.as_object() else {
        return value.clone();
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return reference_object(reference);
    }
    let mut out = Map::new();
    for (key, v) in sorted(object) {
        match key.as_str() {
            "name" | "in" | "description" | "required" | "allowEmptyValue" => {
                out.insert(key.clone(), v.clone());
            }
            "schema" => {}
            "deprecated" | "example" | "examples" | "style" | "explode" | "allowReserved" => {
                warnings.add(
                    at,
                    format!("{key} has no 2.0 parameter form and was left out"),
                );
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), v.clone());
            }
            other => warnings.add(at, format!("{other} was left out")),
        }
    }
    if object.get("in").and_then(Value::as_str) == Some("path") {
        out.insert("required".to_owned(), Value::Bool(true));
    }
    // 2.0 non-body parameters carry a primitive type inline, not a schema.
    let converted = object
        .get("schema")
        .map(|s| schema(s, &format!("{at}/schema"), warnings))
        .unwrap_or_default();
    match converted.as_object() {
        Some(s) if s.get("type").is_some_and(|t| t != "object") && !s.contains_key("$ref") => {
            for (k, v) in sorted(s) {
                if k == "x-nullable" {
                    // A parameter cannot be null on the wire: absent is how it says "none".
                    continue;
                }
                out.insert(k.clone(), v.clone());
            }
        }
        _ => {
            warnings.add(
                at,
                "a parameter schema that is not a primitive type became type string",
            );
            out.insert("type".to_owned(), Value::String("string".to_owned()));
        }
    }
    let mut sorted_out = Map::new();
    for (k, v) in sorted(&out) {
        sorted_out.insert(k.clone(), v.clone());
    }
    Value::Object(sorted_out)
}

/// Converts a 3.1 response (or a `$ref` to one); returns it with the media types it produces.
pub(crate) fn response(value: &Value, at: &str, warnings: &mut Warnings) -> (Value, Vec<String>) {
    let Some(object) = value.as_object() else {
        return (value.clone(), vec![]);
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return (reference_object(reference), vec![]);
    }
    let mut out = Map::new();
    out.insert(
        "description".to_owned(),
        object
            .get("description")
            .cloned()
            .unwrap_or_else(|| Value::String(String::new())),
    );
    let mut produces = Vec::new();
    if let Some(content) = object.get("content").and_then(Value::as_object) {
        let (types, chosen) = media_types(content, at, "one schema per response", warnings);
        produces = types;
        if let Some(s) = chosen {
            out.insert(
                "schema".to_owned(),
                schema(s, &format!("{at}/schema"), warnings),
            );
        }
    }
    if let Some(headers) = object.get("headers").and_then(Value::as_object) {
        out.insert(
            "headers".to_owned(),
            response_headers(headers, at, warnings),
        );
    }
    for key in object.keys() {
        if !["description", "content", "headers"].contains(&key.as_str()) {
            warnings.add(
                at,
                format!("{key} has no 2.0 response form and was left out"),
            );
        }
    }
    (Value::Object(out), produces)
}

/// The media types of a `content` map and the one schema 2.0 keeps for all of them (the first);
/// a media type with another schema is named in a warning saying that 2.0 `keeps`.
fn media_types<'a>(
    content: &'a Map<String, Value>,
    at: &str,
    keeps: &str,
    warnings: &mut Warnings,
) -> (Vec<String>, Option<&'a Value>) {
    let mut types = Vec::new();
    let mut chosen: Option<&Value> = None;
    for (media_type, media) in sorted(content) {
        types.push(media_type.clone());
        match (chosen, media.get("schema")) {
            (None, Some(s)) => chosen = Some(s),
            (Some(c), Some(s)) if c != s => warnings.add(
                at,
                format!("{media_type} has its own schema; 2.0 keeps {keeps}"),
            ),
            _ => {}
        }
    }
    (types, chosen)
}

/// A response's headers: 2.0 gives each a primitive type (and format) inline.
fn response_headers(headers: &Map<String, Value>, at: &str, warnings: &mut Warnings) -> Value {
    let mut converted = Map::new();
    for (name, header) in sorted(headers) {
        let here = format!("{at}/headers/{name}");
        let mut h = Map::new();
        if let Some(d) = header.get("description") {
            h.insert("description".to_owned(), d.clone());
        }
        let s = header
            .get("schema")
            .map(|s| schema(s, &here, warnings))
            .unwrap_or_default();
        let ty = s
            .get("type")
            .cloned()
            .unwrap_or_else(|| Value::String("string".to_owned()));
        h.insert("type".to_owned(), ty);
        if let Some(f) = s.get("format") {
            h.insert("format".to_owned(), f.clone());
        }
        converted.insert(name.clone(), Value::Object(h));
    }
    Value::Object(converted)
}

/// Converts a 3.1 request body into a 2.0 `in: body` parameter and the media types it consumes.
pub(crate) fn request_body(
    value: &Value,
    at: &str,
    warnings: &mut Warnings,
) -> (Value, Vec<String>) {
    let mut out = Map::new();
    if let Some(d) = value.get("description") {
        out.insert("description".to_owned(), d.clone());
    }
    out.insert("in".to_owned(), Value::String("body".to_owned()));
    out.insert("name".to_owned(), Value::String("body".to_owned()));
    out.insert(
        "required".to_owned(),
        value.get("required").cloned().unwrap_or(Value::Bool(false)),
    );
    let (consumes, chosen) = match value.get("content").and_then(Value::as_object) {
        Some(content) => media_types(content, at, "one body schema", warnings),
        None => (Vec::new(), None),
    };
    if value.get("$ref").is_some() {
        warnings.add(at, "a referenced request body became an unconstrained body");
    }
    out.insert(
        "schema".to_owned(),
        chosen
            .map(|s| schema(s, &format!("{at}/schema"), warnings))
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    (Value::Object(out), consumes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nullable_types_become_x_nullable_with_a_warning() {
        let mut w = Warnings::default();
        let out = schema(
            &json!({"type": ["string", "null"], "maxLength": 3}),
            "definitions/A",
            &mut w,
        );
        assert_eq!(
            out,
            json!({"type": "string", "x-nullable": true, "maxLength": 3})
        );
        assert_eq!(
            w.0,
            ["definitions/A: type [string, null] became type string with x-nullable: true"]
        );
    }

    #[test]
    fn refs_move_to_definitions_and_one_of_is_named() {
        let mut w = Warnings::default();
        let out = schema(
            &json!({"properties": {"a": {"$ref": "#/components/schemas/B"}, "c": {"oneOf": [{"type": "string"}]}}}),
            "definitions/X",
            &mut w,
        );
        assert_eq!(out["properties"]["a"]["$ref"], "#/definitions/B");
        assert_eq!(
            w.0,
            ["definitions/X/properties/c: oneOf has no 2.0 form; the schema became unconstrained"]
        );
    }

    #[test]
    fn exclusive_bounds_and_const() {
        let mut w = Warnings::default();
        let out = schema(
            &json!({"type": "integer", "exclusiveMinimum": 0, "const": 1}),
            "x",
            &mut w,
        );
        assert_eq!(
            out,
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true, "enum": [1]})
        );
        assert_eq!(w.0, ["x: const became a one-value enum"]);
    }

    #[test]
    fn parameters_carry_their_type_inline() {
        let mut w = Warnings::default();
        let out = parameter(
            &json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64", "minimum": 1}}),
            "p",
            &mut w,
        );
        assert_eq!(
            out,
            json!({"name": "id", "in": "path", "required": true, "type": "integer", "format": "int64", "minimum": 1})
        );
        assert!(w.0.is_empty());
    }
}
