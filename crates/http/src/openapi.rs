//! The consumer spec (OpenAPI 3.1): the route table's paths (`routes.rs`) with this API's info,
//! tags and shared components, built once.
//!
//! The same document is served at `GET /openapi.json`, committed as `openapi/items.openapi.json`
//! (`cargo xtask render --check` fails on drift) and is the input of `items-gateway-spec`, which
//! renders the API Gateway configs from it.

use std::sync::LazyLock;

use utoipa::{Modify, OpenApi};

use crate::health::Status;
use crate::responses::{
    BadRequest, IdempotentItemGone, NoSuchFile, NotFound, PayloadTooLarge, PreconditionFailed,
    Unavailable, Unprocessable, UnsupportedMediaType,
};
use crate::routes;

/// The OpenAPI document of the items API: the paths come from the route table.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Items API",
        description = "Create, list, read, update and delete items.\n\n\
            Errors are RFC 9457 `application/problem+json` bodies (`Problem`). Updates are JSON \
            merge patches (RFC 7396) and take `If-Match` with the item's `ETag`; creates take an \
            optional `Idempotency-Key`. Behind API Gateway every request also needs the credentials \
            named in that environment's gateway config (an API key and/or a JWT)."
    ),
    modifiers(&RouteTable),
    components(
        schemas(
            crate::dto::ItemResponse,
            crate::dto::ItemList,
            crate::dto::CreateItemRequest,
            crate::dto::PatchItemRequest,
            crate::problem::Problem,
            crate::problem::InvalidParam,
            Status,
        ),
        responses(
            BadRequest,
            NotFound,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            Unavailable,
            NoSuchFile,
            IdempotentItemGone,
        )
    ),
    tags(
        (name = "items", description = "The item collection."),
        (name = "health", description = "Liveness and readiness probes."),
        (name = "meta", description = "This API's own description."),
    )
)]
pub struct ApiDoc;

/// Adds the route table's paths (and the schemas they use) to the document.
struct RouteTable;

impl Modify for RouteTable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(routes::Paths::openapi());
    }
}

static SPEC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

static SPEC_JSON: LazyLock<String> = LazyLock::new(|| {
    // utoipa 5.5 serializes a response link's `operationId` as `operation_id` (its `Link` lacks
    // the camelCase rename), which OpenAPI tools then reject or ignore; the key occurs nowhere
    // else in the document (operations serialize `operationId` correctly).
    let mut json = serde_json::to_string_pretty(&*SPEC)
        .unwrap_or_default()
        .replace("\"operation_id\": ", "\"operationId\": ");
    json.push('\n');
    json
});

/// The consumer spec (OpenAPI 3.1), built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    &SPEC
}

/// The consumer spec as pretty JSON with a final newline: exactly the bytes served at
/// [`OPENAPI_PATH`](crate::OPENAPI_PATH) and committed as `openapi/items.openapi.json`.
pub fn openapi_json() -> &'static str {
    &SPEC_JSON
}
