//! Typed extractors for the path, header and query inputs of the handlers. Each parses its input
//! into a domain type when the request arrives, or rejects the request with the [`ApiError`] that
//! names the input (a 400 problem+json; `error.rs` decides the status).

use std::borrow::Cow;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};
use items_domain::{
    DomainError, ETag, IdempotencyKey, ItemId, PageRequest, PageSize, Precondition,
};

use crate::error::ApiError;
use crate::page_token::PageTokenCodec;

// Header and parameter formats are written into the spec as `pattern`s (ECMA-262 and Python
// `re` agree on their syntax) so that what the spec allows is what these extractors accept;
// tests/spec_patterns.rs checks each against the domain parsers and the page-token codec.

/// Implements `FromRequest` for an extractor whose input is all in the request head, parsed by
/// `$parse: fn(&HttpRequest) -> Result<Self, ApiError>`.
macro_rules! from_request_head {
    ($extractor:ty, $parse:expr) => {
        impl FromRequest for $extractor {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready($parse(req))
            }
        }
    };
}

/// The `{id}` path parameter.
#[derive(Debug)]
pub(crate) struct ItemIdParam(pub(crate) ItemId);

from_request_head!(ItemIdParam, |req: &HttpRequest| {
    let raw = req.match_info().get("id").unwrap_or_default();
    ItemId::parse(raw)
        .map(ItemIdParam)
        .map_err(ApiError::bad_param)
});

/// A header's value, which must be visible ASCII; `label` names the header in the 400.
fn header_str<'a>(
    req: &'a HttpRequest,
    name: &HeaderName,
    label: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    req.headers()
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_param(DomainError::new(label, "must be visible ASCII")))
        })
        .transpose()
}

/// `If-Match`: the update's precondition.
#[derive(Debug)]
pub(crate) struct IfMatch(pub(crate) Precondition);

from_request_head!(IfMatch, |req: &HttpRequest| {
    Ok(IfMatch(
        match header_str(req, &header::IF_MATCH, "If-Match")? {
            None => Precondition::None,
            Some(v) if v.trim() == "*" => Precondition::Exists,
            // Strong comparison (RFC 9110 §13.1.1): weak tags and tags that do not parse can
            // never match, so the update fails with 412.
            Some(v) => Precondition::OneOf(v.split(',').filter_map(ETag::parse_strong).collect()),
        },
    ))
});

/// `If-None-Match`: the entity tags the client holds, or `*`.
#[derive(Debug)]
pub(crate) struct IfNoneMatch(Option<HeaderValue>);

impl IfNoneMatch {
    /// Whether the client's copy is current (weak comparison, RFC 9110 §13.1.2). The tags are
    /// read only here, so a request without a current item never parses them.
    pub(crate) fn matches(&self, current: ETag) -> bool {
        let Some(tags) = self.0.as_ref().and_then(|v| v.to_str().ok()) else {
            return false;
        };
        tags.trim() == "*"
            || tags
                .split(',')
                .filter_map(ETag::parse)
                .any(|t| t == current)
    }
}

from_request_head!(IfNoneMatch, |req: &HttpRequest| {
    // Checked now, so a malformed header is a 400 before the store is asked; matched later.
    header_str(req, &header::IF_NONE_MATCH, "If-None-Match")?;
    Ok(IfNoneMatch(
        req.headers().get(header::IF_NONE_MATCH).cloned(),
    ))
});

/// `Idempotency-Key`, when the client sent one.
#[derive(Debug)]
pub(crate) struct IdempotencyKeyHeader(pub(crate) Option<IdempotencyKey>);

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

from_request_head!(IdempotencyKeyHeader, |req: &HttpRequest| {
    header_str(req, &IDEMPOTENCY_KEY, "Idempotency-Key")?
        .map(IdempotencyKey::parse)
        .transpose()
        .map(IdempotencyKeyHeader)
        .map_err(ApiError::bad_param)
});

/// The list query: `page_size` and `page_token` (decoded with the app's [`PageTokenCodec`]), and
/// that codec, which signs the next page's token: the handlers' one way to it.
#[derive(Debug)]
pub(crate) struct ListQuery {
    pub(crate) page: PageRequest,
    pub(crate) page_tokens: web::Data<PageTokenCodec>,
}

/// One query parameter: its first value, and whether it came more than once.
#[derive(Default)]
struct QueryParam<'q> {
    value: Option<Cow<'q, str>>,
    repeated: bool,
}

impl<'q> QueryParam<'q> {
    fn push(&mut self, value: Cow<'q, str>) {
        self.repeated |= self.value.is_some();
        self.value.get_or_insert(value);
    }

    /// Each parameter at most once: `?page_size=50&page_size=1` is ambiguous, so it is refused
    /// rather than resolved by position.
    fn once(self, name: &'static str) -> Result<Option<Cow<'q, str>>, ApiError> {
        if self.repeated {
            return Err(ApiError::bad_param(DomainError::new(
                name,
                "must be given at most once",
            )));
        }
        Ok(self.value)
    }
}

fn list_query(req: &HttpRequest) -> Result<ListQuery, ApiError> {
    let (mut size, mut token) = (QueryParam::default(), QueryParam::default());
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        // Parameters we do not know pass (API Gateway forwards `key`/`api_key` in the query).
        match &*key {
            "page_size" => size.push(value),
            "page_token" => token.push(value),
            _ => {}
        }
    }
    let size = size
        .once("page_size")?
        .map(|s| PageSize::parse(&s))
        .transpose()
        .map_err(ApiError::bad_param)?
        .unwrap_or_default();
    let page_tokens = req
        .app_data::<web::Data<PageTokenCodec>>()
        .ok_or_else(|| ApiError::Internal("no PageTokenCodec in the app data".into()))?
        .clone();
    let after = token
        .once("page_token")?
        .map(|token| page_tokens.decode(&token))
        .transpose()
        .map_err(ApiError::bad_param)?;
    Ok(ListQuery {
        page: PageRequest { after, size },
        page_tokens,
    })
}

from_request_head!(ListQuery, list_query);
