//! The handlers' shared state (`ApiState`): the store and the page-token codec.

use actix_web::web;

use crate::page_token::PageTokenCodec;

/// Shared state of the API handlers.
#[derive(Debug)]
pub struct ApiState<S> {
    pub store: S,
    /// Also app data of its own, so that the list query's extractor can decode page tokens
    /// without knowing the store type.
    pub page_tokens: web::Data<PageTokenCodec>,
}

impl<S> ApiState<S> {
    pub fn new(store: S, page_tokens: PageTokenCodec) -> Self {
        Self {
            store,
            page_tokens: web::Data::new(page_tokens),
        }
    }
}
