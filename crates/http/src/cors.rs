//! Cross-origin requests from browser apps (CORS), answered by the service itself.
//!
//! API Gateway adds no `Access-Control-*` header of its own: with `x-google-endpoints:
//! [{name: <service>, allowCors: true}]` in the config it passes each preflight `OPTIONS` to the
//! backend, without API key or JWT checks, and passes every response through unchanged (esp-v2
//! `src/go/configgenerator/routegen/proxy_cors.go`; Google's "Enabling CORS support for
//! Endpoints", "Handle CORS in your backend application"). So the service answers preflights and
//! adds the CORS headers to its responses, with `actix-cors` configured from the `cors` settings
//! (which each environment takes from the `[cors]` table of `deploy/environments/<env>.toml`, the
//! same table that makes the rendered gateway configs pass preflights through).
//!
//! A request whose `Origin` is not listed is served as if it had none: no
//! `Access-Control-Allow-Origin`, so a browser withholds the response from the page, while
//! non-browser clients that happen to send an `Origin` are not refused. A preflight from such an
//! origin, or asking for a method or header that is not allowed, is a 400 problem.

use actix_cors::{Cors, CorsError};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::HeaderName;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use serde::Deserialize;

use actix_web::ResponseError as _;

use crate::error::ApiError;

/// The `cors` settings: who may call the API from a browser, and what the page may read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins (`scheme://host[:port]`, as browsers send them in `Origin`) whose pages may call
    /// the API. Empty: no cross-origin call is allowed; `["*"]`: any origin (answered with `*`).
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for.
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for.
    pub allow_headers: Vec<String>,
    /// Response headers a page may read besides the CORS-safelisted ones (`ETag`, `Location`,
    /// `Idempotent-Replayed`, …).
    pub expose_headers: Vec<String>,
    /// Seconds a browser may cache a preflight's answer (`Access-Control-Max-Age`).
    pub max_age_seconds: u32,
}

impl CorsSettings {
    /// Checks every value, naming the key and the value that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.allows_any_origin() && self.allow_origins.len() > 1 {
            return Err("cors.allow_origins: \"*\" must be the only entry".to_owned());
        }
        for (i, origin) in self.allow_origins.iter().enumerate() {
            if origin == "*" {
                continue;
            }
            check_origin(origin).map_err(|why| format!("cors.allow_origins[{i}]: {why}"))?;
        }
        for (i, method) in self.allow_methods.iter().enumerate() {
            let ok = !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && Method::from_bytes(method.as_bytes()).is_ok();
            if !ok {
                return Err(format!(
                    "cors.allow_methods[{i}]: {method:?} is not an upper-case HTTP method"
                ));
            }
        }
        for (key, headers) in [
            ("allow_headers", &self.allow_headers),
            ("expose_headers", &self.expose_headers),
        ] {
            for (i, name) in headers.iter().enumerate() {
                if name == "*" || HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!("cors.{key}[{i}]: {name:?} is not a header name"));
                }
            }
        }
        Ok(())
    }

    /// The middleware: `App::new().wrap(settings.middleware())`, inside the telemetry middleware
    /// so that preflights are logged and traced like every request.
    pub fn middleware(&self) -> Cors {
        let mut cors = Cors::default()
            .allowed_methods(self.allow_methods.iter().map(String::as_str))
            .allowed_headers(self.allow_headers.iter().map(String::as_str))
            .expose_headers(self.expose_headers.iter().map(String::as_str))
            .max_age(Some(self.max_age_seconds as usize))
            // The default, said out loud: an unlisted origin gets no CORS headers, not a refusal.
            .block_on_origin_mismatch(false);
        if self.allows_any_origin() {
            return cors.allow_any_origin().send_wildcard();
        }
        for origin in &self.allow_origins {
            cors = cors.allowed_origin(origin);
        }
        cors
    }

    fn allows_any_origin(&self) -> bool {
        self.allow_origins.iter().any(|o| o == "*")
    }
}

/// An `Origin` value as browsers send it: `http` or `https`, a lower-case host, an optional port,
/// nothing else (no path, not even `/`, which would never match).
fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with https:// or http://"))?;
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => rest,
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !host_ok {
        return Err(format!(
            "{origin:?} must be scheme://host[:port] with a lower-case host and no path, as \
             browsers send it in Origin"
        ));
    }
    Ok(())
}

/// Turns actix-cors's plain-text refusals of a preflight into problem+json, like every other
/// error of this API. Wrap it around [`CorsSettings::middleware`] (`.wrap(cors).wrap(preflight_problems())`).
pub fn preflight_problems<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().handler(StatusCode::BAD_REQUEST, |res: ServiceResponse<B>| {
        let Some(cors) = res
            .response()
            .error()
            .and_then(|e| e.as_error::<CorsError>())
        else {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        };
        let response = ApiError::CorsRefused(cors.to_string()).error_response();
        let (request, _) = res.into_parts();
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(request, response).map_into_right_body(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::header;
    use actix_web::test as web_test;
    use actix_web::{App, HttpResponse, web};

    use super::*;

    fn settings() -> CorsSettings {
        CorsSettings {
            allow_origins: vec![
                "https://app.example.com".into(),
                "http://127.0.0.1:5173".into(),
            ],
            allow_methods: vec!["GET".into(), "POST".into(), "PATCH".into()],
            allow_headers: vec!["Content-Type".into(), "If-Match".into(), "X-Api-Key".into()],
            expose_headers: vec![
                "ETag".into(),
                "Location".into(),
                "Idempotent-Replayed".into(),
            ],
            max_age_seconds: 600,
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (change, key) in [
            (
                (|s: &mut CorsSettings| s.allow_origins.push("https://app.example.com/".into()))
                    as fn(&mut CorsSettings),
                "cors.allow_origins[2]",
            ),
            (|s| s.allow_origins[0] = "*".into(), "cors.allow_origins"),
            (
                |s| s.allow_origins[0] = "https://App.example.com".into(),
                "cors.allow_origins[0]",
            ),
            (
                |s| s.allow_methods[1] = "post".into(),
                "cors.allow_methods[1]",
            ),
            (
                |s| s.allow_headers[0] = "Content Type".into(),
                "cors.allow_headers[0]",
            ),
            (
                |s| s.expose_headers[2] = "*".into(),
                "cors.expose_headers[2]",
            ),
        ] {
            let mut s = settings();
            change(&mut s);
            let err = s.validate().unwrap_err();
            assert!(err.starts_with(key), "{key}: {err}");
        }
        settings().validate().unwrap();
    }

    async fn call(req: web_test::TestRequest) -> actix_web::dev::ServiceResponse {
        let app = web_test::init_service(
            App::new()
                .wrap(settings().middleware())
                .wrap(preflight_problems())
                .route(
                    "/items",
                    web::get().to(|| async {
                        HttpResponse::Ok().insert_header(("ETag", "\"1\"")).finish()
                    }),
                ),
        )
        .await;
        web_test::call_service(&app, req.to_request())
            .await
            .map_into_boxed_body()
    }

    fn get(res: &actix_web::dev::ServiceResponse, name: &str) -> Option<String> {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[actix_web::test]
    async fn an_allowed_origin_gets_its_preflight_and_reads_the_exposed_headers() {
        let res = call(
            web_test::TestRequest::default()
                .method(Method::OPTIONS)
                .uri("/items")
                .insert_header((header::ORIGIN, "https://app.example.com"))
                .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "PATCH"))
                .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, "if-match,x-api-key")),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            get(&res, "access-control-allow-origin").as_deref(),
            Some("https://app.example.com")
        );
        let methods = get(&res, "access-control-allow-methods").unwrap();
        assert!(methods.contains("PATCH"), "{methods}");
        assert_eq!(get(&res, "access-control-max-age").as_deref(), Some("600"));

        let res = call(
            web_test::TestRequest::get()
                .uri("/items")
                .insert_header((header::ORIGIN, "http://127.0.0.1:5173")),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            get(&res, "access-control-allow-origin").as_deref(),
            Some("http://127.0.0.1:5173")
        );
        let exposed = get(&res, "access-control-expose-headers")
            .unwrap()
            .to_lowercase();
        for name in ["etag", "location", "idempotent-replayed"] {
            assert!(exposed.contains(name), "{exposed}");
        }
    }

    #[actix_web::test]
    async fn another_origin_gets_no_allow_origin_and_its_preflight_is_a_problem() {
        let res = call(
            web_test::TestRequest::get()
                .uri("/items")
                .insert_header((header::ORIGIN, "https://evil.example.net")),
        )
        .await;
        assert_eq!(res.status(), 200, "served, but without CORS headers");
        // (actix-cors still lists the exposed headers; without Allow-Origin a browser reads none.)
        assert_eq!(get(&res, "access-control-allow-origin"), None);

        for (origin, method) in [
            ("https://evil.example.net", "GET"),
            ("https://app.example.com", "PUT"),
        ] {
            let res = call(
                web_test::TestRequest::default()
                    .method(Method::OPTIONS)
                    .uri("/items")
                    .insert_header((header::ORIGIN, origin))
                    .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, method)),
            )
            .await;
            assert_eq!(res.status(), 400, "{origin} {method}");
            assert_eq!(get(&res, "access-control-allow-origin"), None);
            assert_eq!(
                get(&res, "content-type").as_deref(),
                Some(crate::PROBLEM_JSON)
            );
            let body: serde_json::Value = web_test::read_body_json(res).await;
            assert_eq!(body["status"], 400, "{body}");
        }
    }
}
