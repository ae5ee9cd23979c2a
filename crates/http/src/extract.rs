//! Request-body reading with our own limits and errors, so every failure is a problem+json.

use actix_web::http::header;
use actix_web::{HttpRequest, http::StatusCode, web};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::{ApiError, MAX_BODY_BYTES};

/// Checks `Content-Type` against the accepted JSON media types (charset must be UTF-8 if given).
pub(crate) fn require_json(req: &HttpRequest, accepted: &[&str]) -> Result<(), ApiError> {
    let expected = accepted.join(" or ");
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| ApiError::UnsupportedMediaType(format!("Content-Type must be {expected}")))?
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType(format!("Content-Type must be {expected}")))?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset_ok = parts.all(|p| match p.trim().split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if !accepted.contains(&essence.as_str()) || !charset_ok {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be {expected} (UTF-8), got {value:?}"
        )));
    }
    Ok(())
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] without buffering it.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > MAX_BODY_BYTES as u64
    {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::MalformedBody(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body into `T`, naming the offending field on failure.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::MalformedBody(
            "the body is not valid UTF-8".to_owned(),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedBody(
            "the body is empty; a JSON object is required".to_owned(),
        ));
    }
    // serde would accept a struct written as an array; the API takes objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => ApiError::invalid_param(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "body",
                    "must be a JSON object",
                ),
                Err(e) => ApiError::MalformedBody(format!("malformed JSON: {e}")),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                // The path names the field, an unknown one included (`foo`, `items[0].name`).
                let name = if path == "." { "body".to_owned() } else { path };
                ApiError::invalid_param(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    name,
                    strip_position(&message),
                )
            }
            _ => ApiError::MalformedBody(format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedBody(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// `invalid type: integer `1`, expected a string at line 1 column 9` → without the position.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
