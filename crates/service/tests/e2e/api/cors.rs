//! CORS on the running service: what a browser's preflight and its request get, for an origin
//! of the `cors` settings and for another (the browser's view of it is `.ci/run`'s Chromium test,
//! openapi/clients/typescript/src/browser).

use serde_json::Value;

use crate::support::spawn_app_with;

const ALLOWED: &str = "http://127.0.0.1:5173";
const OTHER: &str = "http://127.0.0.1:5174";

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_headers_and_another_does_not() {
    let app = spawn_app_with(|s| s.cors.allow_origins = vec![ALLOWED.to_owned()]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/items/1"))
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header(
                "access-control-request-headers",
                "content-type,if-match,x-api-key",
            )
            .send()
    };
    let ok = preflight(ALLOWED).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        header(&ok, "access-control-allow-origin").as_deref(),
        Some(ALLOWED)
    );
    assert!(
        header(&ok, "access-control-allow-methods")
            .unwrap()
            .contains("PATCH")
    );
    assert_eq!(
        header(&ok, "access-control-max-age").as_deref(),
        Some("3600")
    );

    let refused = preflight(OTHER).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/cors-refused", "{problem}");

    // The request itself: created by both (the server does not refuse), readable by one.
    for (origin, allow) in [(ALLOWED, Some(ALLOWED)), (OTHER, None)] {
        let created = app
            .client
            .post(app.url("/items"))
            .header("origin", origin)
            .json(&serde_json::json!({"name": "from a page"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        assert_eq!(
            header(&created, "access-control-allow-origin").as_deref(),
            allow
        );
        if allow.is_some() {
            let exposed = header(&created, "access-control-expose-headers")
                .unwrap()
                .to_ascii_lowercase();
            for name in ["etag", "location", "idempotent-replayed"] {
                assert!(exposed.contains(name), "{exposed}");
            }
        }
    }

    // Without the Origin and preflight headers, OPTIONS stays the API's 405.
    let plain = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 405);
}
