//! This API's own description: `GET /openapi.json`, the spec the route table builds, and
//! `GET /docs`, the interactive API reference (Swagger UI), served by the service itself.
//!
//! Swagger UI's files come from `utoipa-swagger-ui` with its `vendored` feature: the release zip
//! ships inside the `utoipa-swagger-ui-vendored` crate and is unpacked at build time, so neither
//! the build nor the page needs the internet (release builds embed the files in the binary; debug
//! builds read them from the build directory). The page is our own small HTML file plus
//! [`DOCS_JS`], an external script, so it runs under a strict Content-Security-Policy
//! ([`CONTENT_SECURITY_POLICY`]: nothing inline, nothing from another origin). It loads the spec
//! from the served `/openapi.json`, relative to the page, so it works behind any host.
//!
//! Behind API Gateway the page, its files and `/openapi.json` need the API key but no JWT (their
//! `x-gateway-auth: api-key` extension; a browser cannot attach a token to a page load): open
//! `/docs?key=API_KEY` and the page sends the key as the `x-api-key` header (one of ESPv2's
//! default key locations, gateway-facts.md §2) with the spec request and the requests that "Try
//! it out" sends, never in their URLs, so it stays out of the logs of every request the page makes
//! (the page load's own `?key=` is redacted in the service's log). Item operations still need a
//! JWT where the environment configures issuers.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_swagger_ui::Config;

use crate::responses::NoSuchFile;

/// Where the service serves its own spec.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where the page is served.
pub const DOCS_PATH: &str = "/docs";

/// Sent with the page and its files: scripts, styles and requests only to this origin, images
/// also as `data:` URLs (Swagger UI's icons), no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page. Relative URLs: `docs/…` are the files below, `openapi.json` the spec.
const DOCS_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Items API reference</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/docs.js"></script>
</body>
</html>
"#;

/// Starts Swagger UI on the served spec. With `?key=…` in the page's URL (API Gateway), every
/// request to this origin (the spec, "Try it out") carries the key as the `x-api-key` header, not
/// in its URL. Swagger UI's `requestInterceptor` sees the spec request as well as "Try it out".
const DOCS_JS: &str = r##""use strict";
(function () {
  var key = new URLSearchParams(window.location.search).get("key");
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: function (request) {
      var url = new URL(request.url, window.location.href);
      if (key && url.origin === window.location.origin && !url.searchParams.has("key")) {
        request.headers["x-api-key"] = key;
      }
      return request;
    }
  });
})();
"##;

/// A file of the page.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) enum DocsAsset {
    #[serde(rename = "swagger-ui.css")]
    Css,
    #[serde(rename = "swagger-ui-bundle.js")]
    Bundle,
    #[serde(rename = "docs.js")]
    Init,
    #[serde(rename = "favicon-32x32.png")]
    Favicon,
}

impl DocsAsset {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "swagger-ui.css" => Self::Css,
            "swagger-ui-bundle.js" => Self::Bundle,
            "docs.js" => Self::Init,
            "favicon-32x32.png" => Self::Favicon,
            _ => return None,
        })
    }

    /// The file's bytes and media type.
    fn file(self) -> Option<(Bytes, &'static str)> {
        let (name, media_type) = match self {
            Self::Init => return Some((Bytes::from_static(DOCS_JS.as_bytes()), "text/javascript")),
            Self::Css => ("swagger-ui.css", "text/css"),
            Self::Bundle => ("swagger-ui-bundle.js", "text/javascript"),
            Self::Favicon => ("favicon-32x32.png", "image/png"),
        };
        let file = utoipa_swagger_ui::serve(name, SWAGGER_CONFIG.clone()).ok()??;
        let bytes = match file.bytes {
            Cow::Borrowed(b) => Bytes::from_static(b),
            Cow::Owned(v) => Bytes::from(v),
        };
        Some((bytes, media_type))
    }
}

/// Only `serve`'s own initializer reads it; we serve [`DOCS_JS`] instead.
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> =
    LazyLock::new(|| Arc::new(Config::from(OPENAPI_PATH)));

fn with_policy(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The spec served at [`OPENAPI_PATH`], as app data: the document is built from the route table,
/// which lists [`get_openapi`], so the handler is handed the document rather than reaching for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpecJson(pub(crate) &'static str);

/// This API's OpenAPI 3.1 description
///
/// The document this service was built from; API Gateway configs are rendered from it too.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    extensions(("x-gateway-auth" = json!("api-key"))),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
            body = Object),
    )
)]
pub(crate) async fn get_openapi(spec: web::ThinData<SpecJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(spec.0.0)
}

/// Interactive API reference
///
/// Swagger UI on this API's OpenAPI document: every operation, its parameters, bodies and
/// responses, and "Try it out" to send a request. Behind API Gateway open it as
/// `/docs?key=API_KEY` (no JWT needed): the page sends the key with its requests.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    extensions(("x-gateway-auth" = json!("api-key"))),
    responses(
        (status = 200, description = "The HTML page (Swagger UI)", content_type = "text/html",
            body = String),
    )
)]
pub(crate) async fn get_docs() -> HttpResponse {
    with_policy(
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .body(DOCS_HTML),
    )
}

/// A file of the API reference page
///
/// The scripts, style sheet and icon that `/docs` loads.
#[utoipa::path(
    get,
    path = "/docs/{asset}",
    tag = "meta",
    extensions(("x-gateway-auth" = json!("api-key"))),
    params(("asset" = inline(DocsAsset), Path, description = "The file's name.")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/png"),
        )),
        (status = 404, response = NoSuchFile),
    )
)]
pub(crate) async fn get_docs_asset(asset: web::Path<String>) -> HttpResponse {
    let Some((bytes, media_type)) = DocsAsset::from_name(&asset).and_then(DocsAsset::file) else {
        return crate::error::not_found().await;
    };
    with_policy(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(media_type)))
            .insert_header((
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ))
            .body(bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_there() {
        for asset in [
            DocsAsset::Css,
            DocsAsset::Bundle,
            DocsAsset::Init,
            DocsAsset::Favicon,
        ] {
            let (bytes, _) = asset.file().unwrap_or_else(|| panic!("{asset:?} missing"));
            assert!(bytes.len() > 100, "{asset:?} is {} bytes", bytes.len());
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(!DOCS_HTML.contains("<script>"));
        assert!(!DOCS_HTML.contains("<style"));
        assert!(!DOCS_HTML.contains("style="));
        assert!(!DOCS_HTML.contains("://"));
    }
}
