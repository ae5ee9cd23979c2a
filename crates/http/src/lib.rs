//! The HTTP edge of the items service (actix-web).
//!
//! Only this crate knows status codes and JSON wire shapes. Handlers parse the request into domain
//! types, call the [`ItemStore`](items_domain::ItemStore) port and turn the outcome into a response;
//! every error becomes an RFC 9457 `application/problem+json` body through [`ApiError`], mapped to a
//! status in one place.

mod dto;
mod error;
mod extract;
mod health;
mod items;
mod page_token;
mod problem;

use actix_web::web;
use items_domain::ItemStore;

pub use dto::{CreateItemRequest, ItemList, ItemResponse, PatchItemRequest};
pub use error::{ApiError, RETRY_AFTER_SECONDS};
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

/// Registers every route of the API. The route table lives here and only here.
pub fn configure<S: ItemStore>(
    state: web::Data<ApiState<S>>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .service(
                web::resource("/items")
                    .route(web::get().to(items::list::<S>))
                    .route(web::post().to(items::create::<S>))
                    .default_service(error::method_not_allowed("GET, POST")),
            )
            .service(
                web::resource("/items/{id}")
                    .route(web::get().to(items::get::<S>))
                    .route(web::patch().to(items::update::<S>))
                    .route(web::delete().to(items::delete::<S>))
                    .default_service(error::method_not_allowed("GET, PATCH, DELETE")),
            )
            .service(
                web::resource("/healthz")
                    .route(web::get().to(health::healthz))
                    .default_service(error::method_not_allowed("GET")),
            )
            .service(
                web::resource("/readyz")
                    .route(web::get().to(health::readyz::<S>))
                    .default_service(error::method_not_allowed("GET")),
            )
            .default_service(web::to(error::not_found));
    }
}
