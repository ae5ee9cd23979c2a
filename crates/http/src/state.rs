//! The handlers' shared state (`ApiState`): the store, and the page-token codec that `configure`
//! registers as app data (the one way handlers reach it: the list query's extractor).

use actix_web::web;

use crate::page_token::PageTokenCodec;

/// Shared state of the API handlers.
#[derive(Debug)]
pub struct ApiState<S> {
    pub store: S,
    /// Registered as app data of its own by `configure`: the list query's extractor decodes page
    /// tokens with it (without knowing the store type) and hands it to the handler to encode the
    /// next one. Not read from here.
    pub(crate) page_tokens: web::Data<PageTokenCodec>,
}

impl<S> ApiState<S> {
    pub fn new(store: S, page_tokens: PageTokenCodec) -> Self {
        Self {
            store,
            page_tokens: web::Data::new(page_tokens),
        }
    }
}
