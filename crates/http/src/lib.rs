//! The HTTP edge of the items service (actix-web).
//!
//! Only this crate knows status codes and JSON wire shapes. Handlers parse the request into domain
//! types, call the [`ItemStore`](items_domain::ItemStore) port and turn the outcome into a response;
//! every error becomes an RFC 9457 `application/problem+json` body through [`ApiError`], mapped to a
//! status in one place.

mod body;
mod cors;
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
mod responses;
mod routes;
mod state;

use actix_web::web;
use items_domain::ItemStore;

pub use body::MAX_BODY_BYTES;
pub use cors::{CorsSettings, preflight_problems};
pub use docs::{CONTENT_SECURITY_POLICY, DOCS_PATH, OPENAPI_PATH};
pub use dto::{CreateItemRequest, ItemList, ItemResponse, PatchItemRequest};
pub use error::{ApiError, RETRY_AFTER_SECONDS};
pub use health::{HEALTH_LIVE, HEALTH_READY};
pub use middleware::{RequestTelemetry, RequestTelemetryService};
pub use openapi::{ApiDoc, openapi, openapi_json};
pub use page_token::PageTokenCodec;
pub use problem::{InvalidParam, PROBLEM_JSON, Problem};
pub use state::ApiState;

/// Registers every route of the API: the handlers of the route table (`routes.rs`), one resource
/// per path with a problem+json 405 (with `Allow`) for other methods, and a 404 for unknown
/// paths.
pub fn configure<S: ItemStore>(
    state: web::Data<ApiState<S>>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state.page_tokens.clone());
        cfg.app_data(web::ThinData(docs::SpecJson(openapi_json())));
        cfg.app_data(state);
        routes::register::<S>(cfg);
        cfg.default_service(web::to(error::not_found));
    }
}
