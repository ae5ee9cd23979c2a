//! The JSON request body as a typed extractor, read with our own limits and errors so that every
//! failure is a problem+json: `Content-Type` (a JSON media type the body type accepts, UTF-8),
//! at most [`MAX_BODY_BYTES`], valid UTF-8, a JSON object, and the offending field's path when a
//! member does not fit.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub(crate) const JSON: &str = "application/json";
pub(crate) const MERGE_PATCH_JSON: &str = "application/merge-patch+json";

/// A request body type and the media types it is accepted as (those of its `request_body` in the
/// spec), lower case.
pub(crate) trait RequestBody: DeserializeOwned {
    const MEDIA_TYPES: &'static [&'static str];
}

/// A JSON body parsed into `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: RequestBody> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The headers may rule the body out before any of it is read.
        let checked = require_json(req, T::MEDIA_TYPES).and_then(|()| declared_length(req));
        let payload = web::Payload::from_request(req, payload).into_inner();
        Box::pin(async move {
            checked?;
            let body = payload
                .map_err(|e| ApiError::MalformedBody(format!("reading the body failed: {e}")))?
                // Stops reading, without buffering the rest, once the limit is passed.
                .to_bytes_limited(MAX_BODY_BYTES)
                .await
                .map_err(|_| ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                })?
                .map_err(|e| ApiError::MalformedBody(format!("reading the body failed: {e}")))?;
            parse_json(&body).map(JsonBody)
        })
    }
}

/// Checks `Content-Type` against the accepted JSON media types (charset must be UTF-8 if given).
fn require_json(req: &HttpRequest, accepted: &[&str]) -> Result<(), ApiError> {
    let refuse = |got: Option<&str>| {
        let expected = accepted.join(" or ");
        ApiError::UnsupportedMediaType(match got {
            None => format!("Content-Type must be {expected}"),
            Some(got) => format!("Content-Type must be {expected} (UTF-8), got {got:?}"),
        })
    };
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse(None))?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let charset_ok = parts.all(|p| match p.trim().split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if !accepted.iter().any(|a| a.eq_ignore_ascii_case(essence)) || !charset_ok {
        return Err(refuse(Some(value)));
    }
    Ok(())
}

/// A declared `Content-Length` above [`MAX_BODY_BYTES`] is refused (413) before any of the body
/// is read.
fn declared_length(req: &HttpRequest) -> Result<(), ApiError> {
    match req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(len) if len > MAX_BODY_BYTES as u64 => Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }),
        _ => Ok(()),
    }
}

/// Parses a JSON body into `T`, naming the offending field on failure.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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
                Ok(_) => ApiError::invalid_field("body", "must be a JSON object"),
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
                ApiError::invalid_field(name, strip_position(&message))
            }
            _ => ApiError::MalformedBody(format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedBody(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// `invalid type: integer `1`, expected a string at line 1 column 9` → without the position.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}
