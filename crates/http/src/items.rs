//! The `/items` handlers.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, web};
use items_domain::{ETag, Item, ItemPatch, ItemStore, NewItem, StoreError};
use serde::Serialize;

use crate::body::{JSON, JsonBody, MERGE_PATCH_JSON, RequestBody};
use crate::dto::{
    CreateItemRequest, ItemJson, ItemList, ItemListJson, ItemResponse, PatchItemRequest,
};
use crate::error::ApiError;
use crate::extract::{IdempotencyKeyHeader, IfMatch, IfNoneMatch, ItemIdParam, ListQuery};
use crate::responses::{
    BadRequest, IdempotentItemGone, NotFound, PayloadTooLarge, PreconditionFailed, Unavailable,
    Unprocessable, UnsupportedMediaType,
};
use crate::state::ApiState;

impl RequestBody for CreateItemRequest {
    const MEDIA_TYPES: &'static [&'static str] = &[JSON];
}

impl RequestBody for PatchItemRequest {
    const MEDIA_TYPES: &'static [&'static str] = &[MERGE_PATCH_JSON, JSON];
}

/// 200/201 with the item, its `ETag` and JSON.
fn item_response(status: StatusCode, item: &Item) -> Result<HttpResponse, ApiError> {
    json_response(
        HttpResponse::build(status).insert_header((header::ETAG, etag_value(item.etag()))),
        &ItemJson(item),
        json_size(std::slice::from_ref(item)),
    )
}

/// An `ETag` header value: `"<version>"`.
fn etag_value(etag: ETag) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(etag.0).as_bytes();
    let mut value = [b'"'; 22];
    value[1..=digits.len()].copy_from_slice(digits);
    HeaderValue::from_bytes(&value[..digits.len() + 2])
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The JSON body of `value`, written into a buffer of `capacity` bytes (serde_json's own
/// `to_vec` starts at 128 bytes and doubles: 7 copies for a page of 50).
fn json_response(
    response: &mut HttpResponseBuilder,
    value: &impl Serialize,
    capacity: usize,
) -> Result<HttpResponse, ApiError> {
    let mut body = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut body, value).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(response
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(JSON)))
        .body(body))
}

/// About what the JSON of `items` takes: the members' names and timestamps (~150 bytes), the
/// text, and room for a page token.
fn json_size(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| {
            160 + i.name.as_str().len() + i.description.as_ref().map_or(0, |d| d.as_str().len())
        })
        .sum::<usize>()
        + 64
}

/// Get one item
///
/// With `If-None-Match` naming the current ETag (or `*`), the answer is 304 without a body.
#[utoipa::path(
    get,
    path = "/items/{id}",
    tag = "items",
    params(
        ("id" = i64, Path, minimum = 1, description = "The item's id: a positive integer."),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "ETags the client holds (comma-separated, weak `W/` tags allowed) or `*`: 304 when one is current."),
    ),
    responses(
        (status = 200, description = "The item.", body = ItemResponse, headers(("ETag" = String, description = "The item's entity tag, for `If-Match` and `If-None-Match`."))),
        (status = 304, description = "The item has not changed.", headers(("ETag" = String, description = "The item's entity tag, for `If-Match` and `If-None-Match`."))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get_item<S: ItemStore>(
    ItemIdParam(id): ItemIdParam,
    if_none_match: IfNoneMatch,
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    let item = state.store.get(id).await?;
    if if_none_match.matches(item.etag()) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag_value(item.etag())))
            .finish());
    }
    item_response(StatusCode::OK, &item)
}

/// List items
///
/// Ordered by id; keyset-paginated with opaque, tamper-evident page tokens.
#[utoipa::path(
    get,
    path = "/items",
    tag = "items",
    params(
        ("page_size" = Option<i32>, Query, minimum = 1, maximum = 100,
            description = "Items per page, 1 to 100 (default 50)."),
        ("page_token" = Option<String>, Query, pattern = "^A[Q-Za-f][A-Za-z0-9_-]{31}[AQgw]$",
            description = "`next_page_token` of the previous page, exactly as this API returned it: a token \
                it did not issue (or that was altered) is a 400. Each parameter at most once."),
    ),
    responses(
        (status = 200, description = "One page of items.", body = ItemList),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list_items<S: ItemStore>(
    ListQuery { page, page_tokens }: ListQuery,
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    let page = state.store.list(page).await?;
    // The wire shape is `ItemList`'s, written from the items as they are.
    json_response(
        &mut HttpResponse::Ok(),
        &ItemListJson {
            items: &page.items,
            next_page_token: page.next_after.map(|id| page_tokens.encode(id)),
        },
        json_size(&page.items),
    )
}

/// Create an item
///
/// With an `Idempotency-Key`, repeating the same request replays the first answer
/// (`Idempotent-Replayed: true`), or a 409 once that item has been deleted; the same key with
/// another body is a 422.
#[utoipa::path(
    post,
    path = "/items",
    tag = "items",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = r"^[\x21-\x7E]{1,255}$",
            description = "1 to 255 visible ASCII characters, unique per create the client means: \
                retrying the same request with the same key replays the first answer, also after the \
                item was changed (for `database.idempotency_key_ttl_hours`), and is a 409 once the item \
                has been deleted; the same key with another body is a 422. Never reuse a key for a different request."),
    ),
    request_body(content = CreateItemRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new item (or the replay of an earlier create with this key).",
            body = ItemResponse, links(
                ("GetItem" = (operation_id = "get_item", parameters(("id" = "$response.body#/id")))),
                ("UpdateItem" = (operation_id = "update_item", parameters(
                    ("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))),
                ("DeleteItem" = (operation_id = "delete_item", parameters(("id" = "$response.body#/id")))),
            ), headers(
                ("ETag" = String, description = "The item's entity tag, for `If-Match` and `If-None-Match`."),
                ("Location" = String, description = "The item's URL: `/items/{id}`."),
                ("Idempotent-Replayed" = String,
                    description = "`true` when this answer replays an earlier create."),
            )),
        (status = 400, response = BadRequest),
        (status = 409, response = IdempotentItemGone),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn create_item<S: ItemStore>(
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    JsonBody(body): JsonBody<CreateItemRequest>,
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    let new_item = NewItem::try_from(body)?;
    let outcome = state.store.create(new_item, key).await?;
    // A replay answers with the item as first created; if that item has been deleted since, the
    // replayed 201 would name a resource that no longer exists: say so instead (409).
    if outcome.replayed
        && matches!(
            state.store.get(outcome.item.id).await,
            Err(StoreError::NotFound)
        )
    {
        return Err(ApiError::IdempotentItemGone);
    }
    let location = format!("/items/{}", outcome.item.id);
    let mut response = item_response(StatusCode::CREATED, &outcome.item)?;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    if outcome.replayed {
        headers.insert(
            header::HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Update an item
///
/// A JSON merge patch (RFC 7396): members present replace, `"description": null` removes the
/// description, absent members are left alone.
#[utoipa::path(
    patch,
    path = "/items/{id}",
    tag = "items",
    params(
        ("id" = i64, Path, minimum = 1, description = "The item's id: a positive integer."),
        ("If-Match" = Option<String>, Header, nullable = false,
            description = "The item's current ETag as returned by this API (`\"<version>\"`), several \
                comma-separated, or `*`: 412 when none is current. Strong comparison: a weak `W/` tag, \
                or a value that is not an entity tag, never matches."),
    ),
    request_body(content(
        (PatchItemRequest = "application/merge-patch+json"),
        (PatchItemRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "The updated item.", body = ItemResponse, headers(("ETag" = String, description = "The item's entity tag, for `If-Match` and `If-None-Match`."))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn update_item<S: ItemStore>(
    ItemIdParam(id): ItemIdParam,
    IfMatch(precondition): IfMatch,
    JsonBody(body): JsonBody<PatchItemRequest>,
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    let patch = ItemPatch::try_from(body)?;
    let item = state.store.update(id, patch, precondition).await?;
    item_response(StatusCode::OK, &item)
}

/// Delete an item
#[utoipa::path(
    delete,
    path = "/items/{id}",
    tag = "items",
    params(("id" = i64, Path, minimum = 1, description = "The item's id: a positive integer.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn delete_item<S: ItemStore>(
    ItemIdParam(id): ItemIdParam,
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    state.store.delete(id).await?;
    Ok(HttpResponse::NoContent().finish())
}
