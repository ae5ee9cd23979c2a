//! The route table: the one list of handlers from which both the spec's paths and the actix
//! routes are built.
//!
//! Each handler declares its method, path, parameters, bodies and responses once, with
//! `#[utoipa::path(...)]`; its operationId is its name. `routes!` takes the list and makes
//! - [`Paths`], utoipa's `paths(...)` over the list (with the schemas they use), which
//!   `openapi.rs` puts into the document, and
//! - [`register`], which serves each handler at the path and method of that same `utoipa::Path`
//!   impl (`__path_<handler>`, named by `pastey`), so the server serves exactly what the spec
//!   describes, and a handler without `#[utoipa::path]` does not compile.
//!
//! Handlers are generic over the store (`items::get_item::<S>`): the `ItemStore` port is not
//! dyn-compatible, and utoipa-actix-web's registration needs actix's non-generic route macros.

use std::collections::BTreeSet;

use actix_web::http::Method;
use actix_web::http::header::HeaderValue;
use actix_web::{Route, web};
use items_domain::ItemStore;
use utoipa::openapi::path::HttpMethod;

use crate::{docs, error, health, items};

/// A handler of the list: where the spec says it is served, and a maker of its actix route.
struct Endpoint {
    path: String,
    methods: Vec<HttpMethod>,
    route: fn() -> Route,
}

impl Endpoint {
    fn new<P: utoipa::Path>(route: fn() -> Route) -> Self {
        Self {
            path: P::path(),
            methods: P::methods(),
            route,
        }
    }
}

/// `routes! { module::handler, module::generic_handler::<S>, … }`: see the module docs.
macro_rules! routes {
    ($($module:ident :: $handler:ident $(::<$store:ident>)?,)+) => {
        /// The spec's paths: one operation per handler of the list.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($module::$handler),+))]
        pub(crate) struct Paths;

        fn endpoints<S: ItemStore>() -> Vec<Endpoint> {
            pastey::paste! {
                vec![$(
                    Endpoint::new::<$module::[<__path_ $handler>]>(
                        || web::to($module::$handler $(::<$store>)?),
                    ),
                )+]
            }
        }
    };
}

routes! {
    items::list_items::<S>,
    items::create_item::<S>,
    items::get_item::<S>,
    items::update_item::<S>,
    items::delete_item::<S>,
    health::health_live,
    health::health_ready::<S>,
    docs::get_openapi,
    docs::get_docs,
    docs::get_docs_asset,
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

/// Registers one resource per path of the list and one route per operation, with a problem+json
/// 405 naming the path's methods (`Allow`) for any other method.
pub(crate) fn register<S: ItemStore>(cfg: &mut web::ServiceConfig) {
    let endpoints = endpoints::<S>();
    // In the order of the list, the busiest paths first: actix tries the resources in turn, and
    // each one with a `{segment}` runs a regex (sorted, `/docs/{file}` came before `/items/{id}`
    // and ran for every item request; with `regex` too, GET /items/{id} went from 68.1k to 58.6k
    // instructions, `callgrind`, docs/performance.md).
    let mut paths: Vec<&str> = Vec::new();
    for endpoint in &endpoints {
        if !paths.contains(&endpoint.path.as_str()) {
            paths.push(&endpoint.path);
        }
    }
    for path in paths {
        // OpenAPI path templates (`/items/{id}`) are actix patterns as they are.
        let mut resource = web::resource(path);
        let mut allowed = BTreeSet::new();
        for endpoint in endpoints.iter().filter(|e| e.path == path) {
            for method in &endpoint.methods {
                resource = resource.route((endpoint.route)().method(actix_method(method)));
                allowed.insert(method);
            }
        }
        let allow = allowed
            .into_iter()
            .map(|m| actix_method(m).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let allow = HeaderValue::from_str(&allow).expect("method names are header-safe");
        cfg.service(resource.default_service(error::method_not_allowed(allow)));
    }
}

#[cfg(test)]
mod tests {
    use actix_web::dev::ResourceDef;

    use super::endpoints;

    /// actix tries the resources in the list's order, so a path must not be one an earlier
    /// pattern already matches (a `/items/search` after `/items/{id}` would go to `get_item`).
    #[test]
    fn no_path_is_shadowed_by_an_earlier_one() {
        // The check sees a shadowed path.
        assert!(ResourceDef::new("/items/{id}").is_match("/items/search"));
        let endpoints = endpoints::<items_memstore::MemStore>();
        let paths: Vec<&str> = endpoints.iter().map(|e| e.path.as_str()).collect();
        for (i, later) in paths.iter().enumerate() {
            for earlier in paths[..i].iter().filter(|p| *p != later) {
                assert!(
                    !ResourceDef::new(*earlier).is_match(later),
                    "{later} is registered after {earlier}, which matches it: list it first"
                );
            }
        }
    }
}
