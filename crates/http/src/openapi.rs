//! The consumer spec (OpenAPI 3.1) and the route table it drives.
//!
//! Every operation is declared once, on its handler, with `#[utoipa::path(method, path = …,
//! operation_id = …)]`, and listed in [`ApiDoc`]. [`register`] walks the generated spec and
//! registers one actix resource per spec path and one route per spec operation, binding each
//! operation id to its handler in [`handler`]. So the server cannot serve a route that the spec
//! does not describe, and a spec operation without a handler stops the application from being
//! built (every test that builds the app fails, and so does start-up).
//!
//! The same document is served at `GET /openapi.json`, committed as `openapi/items.openapi.json`
//! (`cargo xtask render --check` fails on drift) and is the input of `items-gateway-spec`, which
//! renders the API Gateway configs from it.

use std::sync::LazyLock;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, Route, web};
use items_domain::ItemStore;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, Object, RefOr, Schema, Type};
use utoipa::{OpenApi, ToResponse, ToSchema};

use crate::problem::PROBLEM_JSON;
use crate::{docs, error, health, items};

/// Where the service serves its own spec.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The OpenAPI document of the items API, derived from the handlers' annotations.
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
    paths(
        items::list,
        items::create,
        items::get,
        items::update,
        items::delete,
        health::health_live,
        health::health_ready,
        serve_openapi,
        docs::docs_page,
        docs::docs_asset,
    ),
    components(
        schemas(
            crate::dto::ItemResponse,
            crate::dto::ItemList,
            crate::dto::CreateItemRequest,
            crate::dto::PatchItemRequest,
            crate::problem::Problem,
            crate::problem::InvalidParam,
            health::Status,
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
/// [`OPENAPI_PATH`] and committed as `openapi/items.openapi.json`.
pub fn openapi_json() -> &'static str {
    &SPEC_JSON
}

/// This API's OpenAPI 3.1 description
///
/// The document this service was built from; API Gateway configs are rendered from it too.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi",
    tag = "meta",
    extensions(("x-gateway-auth" = json!("api-key"))),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
            body = Object),
    )
)]
pub(crate) async fn serve_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(openapi_json())
}

/// The handler of one spec operation. A new operation needs an arm here (and its handler in
/// [`ApiDoc`]'s `paths`); [`register`] panics on an operation id without one.
fn handler<S: ItemStore>(operation_id: &str) -> Option<Route> {
    Some(match operation_id {
        "list_items" => web::to(items::list::<S>),
        "create_item" => web::to(items::create::<S>),
        "get_item" => web::to(items::get::<S>),
        "update_item" => web::to(items::update::<S>),
        "delete_item" => web::to(items::delete::<S>),
        "health_live" => web::to(health::health_live),
        "health_ready" => web::to(health::health_ready::<S>),
        "get_openapi" => web::to(serve_openapi),
        "get_docs" => web::to(docs::docs_page),
        "get_docs_asset" => web::to(docs::docs_asset),
        _ => return None,
    })
}

/// One spec path with its operations, in a stable order.
#[derive(Debug)]
pub(crate) struct SpecRoute {
    pub(crate) path: String,
    pub(crate) operations: Vec<(Method, String)>,
    /// The `Allow` header of a 405 on this path.
    pub(crate) allow: String,
}

/// The operations of a path item with their methods, in `HttpMethod` order.
pub fn operations(item: &PathItem) -> Vec<(HttpMethod, &Operation)> {
    [
        (HttpMethod::Get, &item.get),
        (HttpMethod::Put, &item.put),
        (HttpMethod::Post, &item.post),
        (HttpMethod::Delete, &item.delete),
        (HttpMethod::Options, &item.options),
        (HttpMethod::Head, &item.head),
        (HttpMethod::Patch, &item.patch),
        (HttpMethod::Trace, &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Post => Method::POST,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

static ROUTES: LazyLock<Vec<SpecRoute>> = LazyLock::new(|| {
    SPEC.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let operations: Vec<(Method, String)> = operations(item)
                .into_iter()
                .map(|(m, op)| {
                    let id = op.operation_id.clone().unwrap_or_else(|| {
                        panic!("{} {path} has no operationId", actix_method(&m))
                    });
                    (actix_method(&m), id)
                })
                .collect();
            let allow = operations
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            SpecRoute {
                path: path.clone(),
                operations,
                allow,
            }
        })
        .collect()
});

/// The spec's paths and operations, as [`register`] registers them.
pub(crate) fn spec_routes() -> &'static [SpecRoute] {
    &ROUTES
}

/// Registers one resource per spec path and one route per spec operation.
///
/// # Panics
/// When an operation of the spec has no handler: the route table and the spec disagree.
pub(crate) fn register<S: ItemStore>(cfg: &mut web::ServiceConfig) {
    for route in spec_routes() {
        // OpenAPI path templates (`/items/{id}`) are actix patterns as they are.
        let mut resource = web::resource(route.path.as_str());
        for (method, operation_id) in &route.operations {
            let Some(to) = handler::<S>(operation_id) else {
                panic!(
                    "{method} {} (operationId {operation_id}) is in the OpenAPI spec but has no \
                     handler in items_http::openapi::handler",
                    route.path
                );
            };
            resource = resource.route(to.method(method.clone()));
        }
        cfg.service(resource.default_service(error::method_not_allowed(&route.allow)));
    }
}

// ---------------------------------------------------------------------------------------------
// Reusable problem+json responses (`#/components/responses/...`).

fn problem_response(description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description);
    if description.contains("Retry-After") {
        response = response.header(
            "Retry-After",
            Header::builder()
                .schema(Object::with_type(Type::Integer))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    response
        .content(
            PROBLEM_JSON,
            Content::new(Some(RefOr::<Schema>::Ref(
                utoipa::openapi::Ref::from_schema_name(crate::problem::Problem::name()),
            ))),
        )
        .build()
}

macro_rules! problem_responses {
    ($($name:ident => $description:literal,)*) => {$(
        #[doc = $description]
        #[derive(Debug)]
        pub(crate) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem_response($description).into())
            }
        }
    )*};
}

problem_responses! {
    BadRequest => "A malformed parameter, header or body (not JSON at all).",
    NotFound => "No item with this id.",
    PreconditionFailed => "`If-Match` does not match the item's current ETag.",
    PayloadTooLarge => "The request body exceeds 64 KiB.",
    UnsupportedMediaType => "The body is not of an accepted JSON media type (UTF-8).",
    Unprocessable => "The body is JSON but breaks a rule, or the Idempotency-Key was used with another body.",
    Unavailable => "The database cannot be reached right now; retry after `Retry-After` seconds.",
    NoSuchFile => "The API reference page has no file of this name.",
    IdempotentItemGone => "A retry with this `Idempotency-Key`: the create was carried out, but its item has been deleted since.",
}
