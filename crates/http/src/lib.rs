//! The HTTP edge of the items service (actix-web).
//!
//! Only this crate knows status codes and JSON wire shapes. Handlers parse the request into domain
//! types, call the [`ItemStore`](items_domain::ItemStore) port and turn the outcome into a response;
//! every error becomes an RFC 9457 `application/problem+json` body through [`ApiError`], mapped to a
//! status in one place.

mod docs;
mod dto;
mod error;
mod extract;
mod health;
mod items;
mod middleware;
pub mod openapi;
mod page_token;
mod problem;

use actix_web::web;
use items_domain::ItemStore;

pub use docs::{CONTENT_SECURITY_POLICY, DOCS_PATH};
pub use dto::{CreateItemRequest, ItemList, ItemResponse, PatchItemRequest};
pub use error::{ApiError, RETRY_AFTER_SECONDS};
pub use middleware::{RequestTelemetry, RequestTelemetryService};
pub use openapi::{ApiDoc, OPENAPI_PATH, openapi, openapi_json};
pub use page_token::PageTokenCodec;
pub use problem::{InvalidParam, PROBLEM_JSON, Problem};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the API handlers.
#[derive(Debug)]
pub struct ApiState<S> {
    pub store: S,
    pub page_tokens: PageTokenCodec,
}

impl<S> ApiState<S> {
    pub fn new(store: S, page_tokens: PageTokenCodec) -> Self {
        Self { store, page_tokens }
    }
}

/// Registers every route of the API: one resource per path of the OpenAPI spec ([`openapi()`]),
/// one route per operation, a problem+json 405 (with `Allow`) for other methods and a 404 for
/// unknown paths. The route table is the spec: see [`openapi`](mod@openapi).
pub fn configure<S: ItemStore>(
    state: web::Data<ApiState<S>>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state);
        openapi::register::<S>(cfg);
        cfg.default_service(web::to(error::not_found));
    }
}
