//! Fidelity: each [confirmed] row of gateway-facts.md about routing, auth, the backend call,
//! CORS, quotas and limits, asserted on status, body and headers, with a stub backend that
//! echoes what it received. The config is tests/fixtures/fidelity.yaml.

mod common;

use std::sync::Arc;

use common::*;
use items_local_gateway::{LOCAL_API_KEY, LocalJwks};
use serde_json::{Value, json};

const KEY: &str = LOCAL_API_KEY;

/// GETs `path` with `Authorization: Bearer <token>` and returns the backend's echo.
async fn echo_bearer(gw: &Gw, path: &str, token: &str) -> Value {
    echo(gw.get(path).header("authorization", bearer(token))).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The claims of the ID token the backend got in `Authorization` (in a backend echo), after
/// checking that Google issued it for the gateway's service account.
fn backend_id_token(echo: &Value) -> Value {
    let id = echo["headers"]["authorization"]
        .as_str()
        .expect("the backend gets an Authorization")
        .strip_prefix("Bearer ")
        .expect("a Bearer token");
    let c = claims(id);
    assert_eq!(c["iss"], "https://accounts.google.com");
    assert_eq!(c["email"], "gw@local-project.iam.gserviceaccount.com");
    c
}

// ----- routing ---------------------------------------------------------------------------------

#[tokio::test]
async fn undefined_paths_are_404_and_matching_is_case_sensitive() {
    let (_stub, gw) = fixture_gateway().await;
    for path in [
        "/nope",
        "/V1/shelves",
        "/v1/shelves/1",
        "/v1/shelves/1/books",
        "/v1/shelves//books/2/x",
    ] {
        let r = gw.get(path).send().await.expect("request");
        assert_reply(r, 404, "The current request is not defined by this API.").await;
    }
    let logs = gw.logs();
    assert_eq!(logs[0]["api_method"], "<Unknown Operation Name>");
    assert_eq!(logs[0]["response_code_detail"], "direct_response");
    assert_eq!(logs[0]["severity"], "ERROR");
}

#[tokio::test]
async fn a_defined_path_with_another_method_is_405_naming_the_template() {
    let (_stub, gw) = fixture_gateway().await;
    let r = gw
        .client
        .delete(gw.url("/v1/shelves"))
        .send()
        .await
        .expect("request");
    assert_reply(
        r,
        405,
        "The current request is matched to the defined url template \"/v1/shelves\" but its http method is not allowed",
    )
    .await;
    let r = gw
        .client
        .put(gw.url("/v1/shelves/7/books/9"))
        .send()
        .await
        .expect("request");
    assert_reply(
        r,
        405,
        "The current request is matched to the defined url template \"/v1/shelves/{shelf}/books/{book}\" but its http method is not allowed",
    )
    .await;
}

#[tokio::test]
async fn a_trailing_slash_is_optional_and_a_parameter_is_one_segment() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u1");
    let e = echo_bearer(&gw, &format!("/v1/shelves/?key={KEY}"), &t).await;
    assert_eq!(e["path"], format!("/api/v1/shelves/?key={KEY}"));
    let e = echo_bearer(&gw, "/v1/shelves/a-b/books/c.d/", &t).await;
    assert_eq!(e["path"], "/getBook?shelf=a-b&book=c.d");
}

// ----- path translation and the backend call ----------------------------------------------------

#[tokio::test]
async fn append_path_to_address_and_constant_address_rewrite_as_espv2_does() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u1");
    let e = echo_bearer(&gw, &format!("/v1/shelves?key={KEY}&page=2"), &t).await;
    assert_eq!(e["path"], format!("/api/v1/shelves?key={KEY}&page=2"));
    assert_eq!(
        e["headers"]["x-envoy-original-path"],
        format!("/v1/shelves?key={KEY}&page=2")
    );
    let e = echo_bearer(&gw, "/v1/shelves/123/books/456?timezone=EST", &t).await;
    assert_eq!(e["path"], "/getBook?timezone=EST&shelf=123&book=456");
    // An address without a path leaves the path alone.
    let e = echo(gw.get("/open?x=1")).await;
    assert_eq!(e["path"], "/open?x=1");
    assert!(e["headers"].get("x-envoy-original-path").is_none());
}

#[tokio::test]
async fn translated_routes_refuse_paths_over_8192_bytes() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    let long = format!("/v1/shelves/{}/books/2", "s".repeat(8200));
    let r = gw.get(&long).bearer_auth(&t).send().await.expect("r");
    assert_reply(r, 400, "Path is too long, max allowed size is 8192.").await;
    // ESPv2 also refuses a raw request target with a fragment (`#`) here; the HTTP parser under
    // the local gateway drops fragments before any code sees them, so that reply is not emulated.
}

#[tokio::test]
async fn the_backend_gets_an_id_token_the_forwarded_authorization_and_the_userinfo() {
    let (stub, gw) = fixture_gateway().await;
    let t = firebase_token("user-7");
    let e = echo(
        gw.get(&format!("/v1/shelves?key={KEY}"))
            .header("authorization", bearer(&t))
            .header("x-forwarded-authorization", "Bearer spoofed")
            .header("x-apigateway-api-userinfo", "spoofed")
            .header("user-agent", "fidelity-test"),
    )
    .await;
    let h = &e["headers"];
    assert_eq!(h["x-forwarded-authorization"], bearer(&t));
    // The verified payload segment, base64url without padding.
    let segment = t.split('.').nth(1).expect("payload");
    assert_eq!(h["x-apigateway-api-userinfo"], segment);
    assert!(!segment.contains('='));
    // The Google-signed ID token.
    let c = backend_id_token(&e);
    assert_eq!(c["aud"], "https://backend.example.run.app");
    assert_eq!(c["email_verified"], true);
    assert!(c["exp"].as_i64().expect("exp") > c["iat"].as_i64().expect("iat"));
    // Signed with RS256 (the local Google key).
    let id = h["authorization"].as_str().expect("authorization");
    let header = claims_of_header(id.strip_prefix("Bearer ").expect("bearer"));
    assert_eq!(header["alg"], "RS256");
    // Host is the backend's; forwarding headers; trace context started; a request id.
    assert_eq!(h["host"], stub.url.trim_start_matches("http://"));
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["forwarded"], "for=\"127.0.0.1\";proto=http");
    assert_eq!(h["user-agent"], "fidelity-test");
    let traceparent = h["traceparent"].as_str().expect("traceparent");
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    let trace = &traceparent[3..35];
    assert!(
        h["x-cloud-trace-context"]
            .as_str()
            .expect("xctc")
            .starts_with(&format!("{trace}/"))
    );
    assert_eq!(h["x-request-id"].as_str().expect("x-request-id").len(), 36);
    assert_eq!(h["x-apigateway-api-consumer-type"], "PROJECT");
    assert!(h["x-apigateway-api-consumer-number"].is_string());
    // The key stays in the forwarded request.
    assert!(
        e["path"]
            .as_str()
            .expect("path")
            .contains(&format!("key={KEY}"))
    );
    // The log line names the operation, the key state and the JWT.
    let log = gw.logs().pop().expect("a log line");
    assert_eq!(log["severity"], "INFO");
    assert_eq!(
        log["api_method"],
        "1.fidelity_apigateway_local_project_cloud_goog.list_shelves"
    );
    assert_eq!(log["api_key_state"], "VERIFIED");
    assert_eq!(log["response_code_detail"], "via_upstream");
    // ESPv2 logs no JWT claims unless `--log_jwt_payloads` names some.
    assert!(log.get("jwt_payloads").is_none(), "{log}");
    assert_eq!(log["httpRequest"]["status"], 200);
    assert_eq!(log["httpRequest"]["requestMethod"], "GET");
    assert_eq!(
        log["httpRequest"]["requestUrl"],
        format!("/v1/shelves?key={KEY}")
    );
    assert!(
        log["httpRequest"]["latency"]
            .as_str()
            .expect("latency")
            .ends_with('s')
    );
    assert_eq!(
        log["logging.googleapis.com/trace"],
        format!("projects/local-project/traces/{trace}")
    );
}

fn claims_of_header(token: &str) -> Value {
    use base64::Engine as _;
    let header = token.split('.').next().expect("header");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("b64"),
    )
    .expect("json")
}

#[tokio::test]
async fn incoming_trace_context_is_continued() {
    let (_stub, gw) = fixture_gateway().await;
    let e = echo(
        gw.get("/open")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("x-request-id", "my-request"),
    )
    .await;
    let tp = e["headers"]["traceparent"].as_str().expect("traceparent");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(tp.ends_with("-01"));
    assert_eq!(e["headers"]["x-request-id"], "my-request");
}

#[tokio::test]
async fn disable_auth_leaves_authorization_alone_and_open_routes_pass_a_client_userinfo() {
    let (_stub, gw) = fixture_gateway().await;
    let e = echo(
        gw.get("/open")
            .header("authorization", "Bearer client-token")
            .header("x-apigateway-api-userinfo", "client-copy"),
    )
    .await;
    assert_eq!(e["headers"]["authorization"], "Bearer client-token");
    assert!(e["headers"].get("x-forwarded-authorization").is_none());
    // No JWT requirement on this route: the client's copy passes (envoy sanitizes only on
    // routes with JWT requirements).
    assert_eq!(e["headers"]["x-apigateway-api-userinfo"], "client-copy");
}

#[tokio::test]
async fn the_deadline_gives_504() {
    let (_stub, gw) = fixture_gateway().await;
    let started = std::time::Instant::now();
    let r = gw.get("/slow").send().await.expect("r");
    assert_reply(r, 504, "upstream request timeout").await;
    let took = started.elapsed();
    assert!(
        took.as_millis() >= 450 && took.as_millis() < 1900,
        "{took:?}"
    );
}

#[tokio::test]
async fn an_unreachable_backend_gives_503() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let gw = gateway_with(fixture("fidelity.yaml"), &url, |_| {}).await;
    let r = gw.get("/open").send().await.expect("r");
    assert_reply(
        r,
        503,
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111",
    )
    .await;
}

// ----- API keys ------------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_missing_401_invalid_400_from_key_api_key_or_x_api_key() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    let r = gw
        .get("/v1/shelves")
        .header("authorization", bearer(&t))
        .send()
        .await
        .expect("r");
    assert_reply(r, 401, "UNAUTHENTICATED: Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.").await;
    let r = gw
        .get("/v1/shelves?key=wrong")
        .header("authorization", bearer(&t))
        .send()
        .await
        .expect("r");
    assert_reply(
        r,
        400,
        "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.",
    )
    .await;
    let logs = gw.logs();
    assert_eq!(
        logs[0]["response_code_detail"],
        "service_control_bad_request{MISSING_API_KEY}"
    );
    // `error_cause` is Service Control's status message, without the code's name (esp-v2
    // `request_builder.cc FillLogEntry`: `info.status.message()`).
    assert_eq!(
        logs[0]["error_cause"],
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
    );
    assert_eq!(
        logs[1]["error_cause"],
        "API key not valid. Please pass a valid API key."
    );
    assert_eq!(
        logs[1]["response_code_detail"],
        "service_control_check_error{API_KEY_INVALID}"
    );
    assert_eq!(logs[1]["api_key_state"], "INVALID");
    for request in [
        gw.get(&format!("/v1/shelves?key={KEY}")),
        gw.get(&format!("/v1/shelves?api_key={KEY}")),
        gw.get("/v1/shelves").header("x-api-key", KEY),
    ] {
        echo(request.header("authorization", bearer(&t))).await;
    }
}

#[tokio::test]
async fn the_key_is_taken_from_query_key_then_api_key_then_header_x_api_key() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    let invalid = "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.";
    // Each pair: the location that wins holds a wrong key, the one after it the right one.
    for request in [
        gw.get(&format!("/v1/shelves?api_key={KEY}&key=wrong")),
        gw.get("/v1/shelves?key=wrong").header("x-api-key", KEY),
        gw.get("/v1/shelves?api_key=wrong").header("x-api-key", KEY),
    ] {
        let r = request
            .header("authorization", bearer(&t))
            .send()
            .await
            .expect("r");
        let headers = assert_reply(r, 400, invalid).await;
        assert!(headers.get("www-authenticate").is_none());
    }
    // And the other way round: the right key where it wins passes.
    for request in [
        gw.get(&format!("/v1/shelves?api_key=wrong&key={KEY}")),
        gw.get(&format!("/v1/shelves?key={KEY}"))
            .header("x-api-key", "wrong"),
        gw.get(&format!("/v1/shelves?api_key={KEY}"))
            .header("x-api-key", "wrong"),
    ] {
        echo(request.header("authorization", bearer(&t))).await;
    }
    let keys: Vec<_> = gw.logs().iter().map(|l| l["api_key"].clone()).collect();
    assert_eq!(
        keys,
        ["wrong", "wrong", "wrong", KEY, KEY, KEY].map(Value::from),
        "the key each request was judged by"
    );
}

#[tokio::test]
async fn a_key_of_a_project_without_the_api_enabled_is_403_permission_denied() {
    let stub = Stub::start().await;
    let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |c| {
        c.api_keys_not_enabled.push("key-of-another-project".into());
    })
    .await;
    let t = firebase_token("u");
    let message = "PERMISSION_DENIED: API fidelity.apigateway.local-project.cloud.goog is not enabled for the project.";
    for request in [
        gw.get("/v1/shelves?key=key-of-another-project"),
        gw.get("/v1/shelves")
            .header("x-api-key", "key-of-another-project"),
    ] {
        let r = request
            .header("authorization", bearer(&t))
            .send()
            .await
            .expect("r");
        let headers = assert_reply(r, 403, message).await;
        assert!(headers.get("x-stub").is_none(), "the backend is not called");
        assert!(headers.get("www-authenticate").is_none());
    }
    let logs = gw.logs();
    for log in &logs {
        assert_eq!(log["severity"], "ERROR");
        assert_eq!(log["http_status_code"], 403);
        assert_eq!(log["httpRequest"]["status"], 403);
        assert_eq!(log["api_key_state"], "NOT ENABLED");
        assert_eq!(log["api_key"], "key-of-another-project");
        assert_eq!(
            log["response_code_detail"],
            "service_control_check_error{SERVICE_NOT_ACTIVATED}"
        );
        assert_eq!(
            log["api_method"],
            "1.fidelity_apigateway_local_project_cloud_goog.list_shelves"
        );
    }
    // The key is only checked where one is required.
    let e = echo(gw.get("/open?key=key-of-another-project")).await;
    assert_eq!(e["path"], "/open?key=key-of-another-project");
    assert_eq!(gw.logs()[2]["api_key_state"], "NOT CHECKED");
    // The usual keys still pass.
    echo_bearer(&gw, &format!("/v1/shelves?key={KEY}"), &t).await;
}

#[tokio::test]
async fn a_missing_jwt_comes_before_a_missing_key() {
    let (_stub, gw) = fixture_gateway().await;
    let r = gw.get("/v1/shelves").send().await.expect("r");
    let headers = assert_reply(r, 401, "Jwt is missing").await;
    assert_eq!(
        headers["www-authenticate"],
        format!("Bearer realm=\"{}\"", gw.url("/v1/shelves")).as_str()
    );
}

/// `security: [{api_key: []}, {}]`: "An empty security requirement (- {}) can be used to make
/// security optional for an API key" (API Gateway "OpenAPI 2.0 feature limitations"); the
/// key is then not checked (api-compiler `isApiKeyRequired`: not every alternative has one).
#[tokio::test]
async fn an_empty_requirement_makes_the_key_optional() {
    let (_stub, gw) = fixture_gateway().await;
    echo(gw.get("/optional-key")).await;
    echo(gw.get("/optional-key?key=unregistered")).await;
    let logs = gw.logs();
    assert_eq!(logs[1]["api_key_state"], "NOT CHECKED");
    assert_eq!(logs[1]["api_key"], "unregistered");
}

// ----- JWTs --------------------------------------------------------------------------------------

async fn jwt_failure(gw: &Gw, token: &str, status: u16, message: &str) {
    let path = format!("/v1/shelves?key={KEY}");
    let r = gw
        .get(&path)
        .header("authorization", bearer(token))
        .send()
        .await
        .expect("r");
    assert_jwt_refused(gw, r, &path, status, message).await;
}

#[tokio::test]
async fn jwt_failures_have_envoys_statuses_messages_and_challenges() {
    let (_stub, gw) = fixture_gateway().await;
    let base =
        json!({"iss": FIREBASE_ISSUER, "aud": "local-project", "sub": "u", "exp": now() + 600});
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        token(c)
    };
    let mut forged = with(json!({}));
    forged.truncate(forged.len() - 6);
    forged.push_str("AAAAAA");
    let cases = [
        (
            with(json!({"iss": "https://elsewhere.example"})),
            401,
            "Jwt issuer is not configured",
        ),
        (with(json!({"exp": now() - 66})), 401, "Jwt is expired"),
        (with(json!({"nbf": now() + 600})), 401, "Jwt not yet valid"),
        (
            with(json!({"aud": "someone-else"})),
            403,
            "Audiences in Jwt are not allowed",
        ),
        (forged, 401, "Jwt verification fails"),
        // jwt_verify_lib `src/status.cc` (the texts since 13e329d).
        (
            "not-a-jwt".into(),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        // After `Bearer ` Envoy takes the first run of base64url characters and dots
        // (extractor.cc `extractJWT`): `.e30.sig`, two sections.
        (
            "!!.e30.sig".into(),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        // `e30.` is the run taken: one section.
        (
            "e30.!!!.sig".into(),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "e30.e30.sig".into(),
            401,
            "Jwt header [alg] field is required and must be a string",
        ),
        // Order: the issuer is checked before expiry, expiry before the audience.
        (
            with(json!({"iss": "x", "exp": 1})),
            401,
            "Jwt issuer is not configured",
        ),
        (with(json!({"aud": "x", "exp": 1})), 401, "Jwt is expired"),
    ];
    for (token, status, message) in &cases {
        jwt_failure(&gw, token, *status, message).await;
    }
    // Within the 60 s clock skew an expired token still passes; any listed audience passes.
    let path = format!("/v1/shelves?key={KEY}");
    echo_bearer(&gw, &path, &with(json!({"exp": now() - 30}))).await;
    echo_bearer(&gw, &path, &with(json!({"aud": ["x", "other-audience"]}))).await;
    let log = &gw.logs()[0];
    assert_eq!(
        log["response_code_detail"],
        "jwt_authn_access_denied{Jwt_issuer_is_not_configured}"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_remote_fetch_failure() {
    let stub = Stub::start().await;
    let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |c| {
        c.jwks = Arc::new(LocalJwks::default().unreachable(
            "https://www.googleapis.com/service_accounts/v1/metadata/x509/securetoken@system.gserviceaccount.com",
        ));
    })
    .await;
    jwt_failure(
        &gw,
        &firebase_token("u"),
        401,
        "Jwks remote fetch is failed",
    )
    .await;
}

#[tokio::test]
async fn jwts_come_from_bearer_access_token_or_the_iap_header() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    echo(gw.get(&format!("/v1/shelves/1/books/2?access_token={t}"))).await;
    echo(
        gw.get("/v1/shelves/1/books/2")
            .header("x-goog-iap-jwt-assertion", &t),
    )
    .await;
    // Not a Bearer value: no token.
    let r = gw
        .get("/v1/shelves/1/books/2")
        .header("authorization", format!("Basic {t}"))
        .send()
        .await
        .expect("r");
    assert_reply(r, 401, "Jwt is missing").await;
}

#[tokio::test]
async fn x_google_jwt_locations_replace_the_defaults() {
    let (_stub, gw) = fixture_gateway().await;
    let t = token(
        json!({"iss": "https://custom.example", "aud": "https://fidelity.apigateway.local-project.cloud.goog", "exp": now() + 60}),
    );
    let r = gw
        .get("/custom")
        .header("authorization", bearer(&t))
        .send()
        .await
        .expect("r");
    assert_reply(r, 401, "Jwt is missing").await;
    echo(gw.get("/custom").header("x-my-jwt", format!("Token {t}"))).await;
    echo(gw.get(&format!("/custom?jwt={t}"))).await;
    // Without x-google-audiences the audience must be https://<service name>.
    let other = token(json!({"iss": "https://custom.example", "aud": "custom", "exp": now() + 60}));
    let path = format!("/custom?jwt={other}");
    let r = gw.get(&path).send().await.expect("r");
    assert_jwt_refused(&gw, r, &path, 403, "Audiences in Jwt are not allowed").await;
    let log = gw.logs().pop().expect("logged");
    assert_eq!(
        log["response_code_detail"],
        "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}"
    );
}

// ----- quotas -----------------------------------------------------------------------------------

/// A 429's body: `RESOURCE_EXHAUSTED: ` + Service Control's description (esp-v2
/// `check_response_convert_utils.cc`, `service_control_quota_test.go`); the description's real
/// text is [not confirmed], so only the prefix and the consumer it names are asserted.
async fn assert_exhausted(response: reqwest::Response, consumer: &str) {
    assert_eq!(response.status(), 429);
    assert!(
        response.headers().get("x-stub").is_none(),
        "the backend is not called"
    );
    assert!(response.headers().get("www-authenticate").is_none());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], 429);
    let message = body["message"].as_str().expect("message");
    assert!(message.starts_with("RESOURCE_EXHAUSTED: "), "{message}");
    assert!(message.contains(&format!("'{consumer}'")), "{message}");
}

/// `1/min/{project}`: limits count per consumer project ("Configuring quotas"), so keys of one
/// project share a bucket and a request without a key is charged to the producer project
/// (consumer `project:<producer>`, esp-v2 `request_builder.cc`).
#[tokio::test]
async fn quota_is_per_consumer_project_per_minute_and_429_when_exhausted() {
    let stub = Stub::start().await;
    for _attempt in 0..3 {
        let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |c| {
            c.api_keys.push("same-project-key".into());
            c.api_keys.push("other-project-key".into());
            c.api_key_projects
                .insert("other-project-key".into(), "another-project".into());
        })
        .await;
        let minute = now() / 60;
        let first = echo(
            gw.get(&format!("/v1/shelves?key={KEY}"))
                .bearer_auth(firebase_token("u")),
        )
        .await;
        let number = first["headers"]["x-apigateway-api-consumer-number"]
            .as_str()
            .expect("consumer number")
            .to_owned();
        let statuses = [
            gw.status(&format!("/limited?key={KEY}")).await,
            gw.status("/limited?key=same-project-key").await,
        ];
        let third = gw
            .get(&format!("/limited?key={KEY}"))
            .send()
            .await
            .expect("r");
        let other = gw
            .get("/limited?key=other-project-key")
            .send()
            .await
            .expect("r");
        let no_key = gw.get("/limited-open").send().await.expect("r");
        if now() / 60 != minute {
            continue; // a new minute began mid-test: the counts restarted
        }
        assert_eq!(
            statuses,
            [200, 200],
            "two keys of one project share the limit of 2"
        );
        assert_exhausted(third, &format!("project_number:{number}")).await;
        assert_eq!(
            other.status(),
            200,
            "a key of another project has its own bucket"
        );
        // Without a key: the producer project, whose keys used its bucket up.
        assert_exhausted(no_key, &format!("project_number:{number}")).await;
        let log = gw
            .logs()
            .into_iter()
            .find(|l| l["http_status_code"] == 429)
            .expect("429 logged");
        assert_eq!(
            log["response_code_detail"],
            "service_control_quota_error{RESOURCE_EXHAUSTED}"
        );
        assert_eq!(log["api_key_state"], "VERIFIED");
        assert_eq!(log["severity"], "ERROR");
        let cause = log["error_cause"].as_str().expect("error_cause");
        assert!(!cause.starts_with("RESOURCE_EXHAUSTED"), "{cause}");
        return;
    }
    panic!("three minute boundaries in a row");
}

/// The backend learns the checked key's project (`X-Apigateway-Api-Consumer-Type: PROJECT`,
/// `-Number`), the project the key belongs to.
#[tokio::test]
async fn the_consumer_number_is_the_keys_project() {
    let (stub, _) = fixture_gateway().await;
    let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |c| {
        c.api_keys.push("other-project-key".into());
        c.api_key_projects
            .insert("other-project-key".into(), "another-project".into());
    })
    .await;
    let t = firebase_token("u");
    let a = echo(gw.get(&format!("/v1/shelves?key={KEY}")).bearer_auth(&t)).await;
    let b = echo(gw.get("/v1/shelves?key=other-project-key").bearer_auth(&t)).await;
    let number = |e: &Value| e["headers"]["x-apigateway-api-consumer-number"].clone();
    assert_eq!(a["headers"]["x-apigateway-api-consumer-type"], "PROJECT");
    assert!(
        number(&a)
            .as_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    );
    assert_ne!(number(&a), number(&b));
}

// ----- CORS ---------------------------------------------------------------------------------------

#[tokio::test]
async fn with_allow_cors_preflights_reach_the_backend_without_key_or_jwt() {
    let (_stub, gw) = fixture_gateway().await;
    let e = echo(
        gw.client
            .request(reqwest::Method::OPTIONS, gw.url("/v1/shelves"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST"),
    )
    .await;
    assert_eq!(e["method"], "OPTIONS");
    assert_eq!(e["path"], "/api/v1/shelves");
    assert_eq!(e["headers"]["origin"], "https://app.example");
    // The same backend auth as the route's operations: an ID token for its jwt_audience.
    assert_eq!(
        backend_id_token(&e)["aud"],
        "https://backend.example.run.app"
    );
    assert!(e["headers"].get("x-forwarded-authorization").is_none());
    assert!(e["headers"].get("x-apigateway-api-userinfo").is_none());
    let log = gw.logs().pop().expect("logged");
    assert_eq!(log["api_key_state"], "NOT CHECKED");
    assert_eq!(log["response_code_detail"], "via_upstream");
    assert!(log.get("jwt_payloads").is_none(), "{log}");
    // On a route that needs only a JWT (and with CONSTANT_ADDRESS) as well.
    let e = echo(
        gw.client
            .request(reqwest::Method::OPTIONS, gw.url("/v1/shelves/1/books/2"))
            .header("origin", "https://app.example"),
    )
    .await;
    assert_eq!(e["path"], "/getBook?shelf=1&book=2");
    assert_eq!(
        backend_id_token(&e)["aud"],
        "https://backend.example.run.app/getBook"
    );
    let r = gw
        .client
        .request(reqwest::Method::OPTIONS, gw.url("/nope"))
        .send()
        .await
        .expect("r");
    assert_reply(r, 404, "The current request is not defined by this API.").await;
}

#[tokio::test]
async fn without_allow_cors_preflights_are_405_on_defined_paths() {
    let stub = Stub::start().await;
    // The committed dev config without its `x-google-endpoints` block (allowCors), as a config
    // rendered for an environment without `[cors]` would be.
    let committed = items_local_gateway::config_file(&repo_root(), "dev", "europe-west1");
    let text = std::fs::read_to_string(&committed).expect("dev config");
    let mut in_endpoints = false;
    let stripped: String = text
        .lines()
        .filter(|line| {
            if line.starts_with("x-google-endpoints:") {
                in_endpoints = true;
                return false;
            }
            if in_endpoints && (line.starts_with("- ") || line.starts_with("  ")) {
                return false;
            }
            in_endpoints = false;
            true
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(!stripped.contains("allowCors"), "{stripped}");
    let config =
        std::env::temp_dir().join(format!("local-gateway-no-cors-{}.yaml", std::process::id()));
    std::fs::write(&config, stripped).expect("writing the config without CORS");
    let gw = gateway_with(config.clone(), &stub.url, |_| {}).await;
    let _ = std::fs::remove_file(&config);
    assert!(!gw.gateway.spec().allow_cors);
    let r = gw
        .client
        .request(reqwest::Method::OPTIONS, gw.url("/items"))
        .send()
        .await
        .expect("r");
    assert_reply(r, 405, "The current request is matched to the defined url template \"/items\" but its http method is not allowed").await;
    let r = gw
        .client
        .request(reqwest::Method::OPTIONS, gw.url("/nope"))
        .send()
        .await
        .expect("r");
    assert_reply(r, 404, "The current request is not defined by this API.").await;
}

// ----- limits -------------------------------------------------------------------------------------

#[tokio::test]
async fn bodies_over_32_mb_are_413_and_headers_over_60_kb_431() {
    let (_stub, gw) = fixture_gateway().await;
    let big = vec![b'x'; 32 * 1024 * 1024 + 1];
    let r = gw
        .client
        .post(gw.url("/open"))
        .body(big)
        .send()
        .await
        .expect("r");
    // POST is not defined on /open: routing would say 405; the size limit comes first.
    assert_local_reply_status(r, 413).await;
    let r = gw
        .get("/open")
        .header("x-big", "y".repeat(61 * 1024))
        .send()
        .await
        .expect("r");
    assert_local_reply_status(r, 431).await;
    // Just under both limits passes.
    let e = echo(gw.get("/open").header("x-big", "y".repeat(50 * 1024))).await;
    assert_eq!(
        e["headers"]["x-big"].as_str().expect("x-big").len(),
        50 * 1024
    );
}

/// A refusal whose status comes from API Gateway's limits ("Quotas and limits": 32 MB, 60 KB)
/// and whose text is [not confirmed] (gateway-facts §1): ESPv2's shape, any message, no backend.
async fn assert_local_reply_status(response: reqwest::Response, status: u16) {
    assert_eq!(response.status().as_u16(), status);
    assert!(
        response.headers().get("x-stub").is_none(),
        "the backend is not called"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], status);
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn header_names_with_underscores_are_refused_as_espv2_does_by_default() {
    let (_stub, gw) = fixture_gateway().await;
    let r = gw
        .get("/open")
        .header("X_INTERNAL", "underscore-header")
        .send()
        .await
        .expect("r");
    assert_reply(r, 400, "Bad Request").await;
    echo(gw.get("/open").header("X-Internal", "dash")).await;
}

#[tokio::test]
async fn jwt_alternatives_accept_a_token_of_either_provider() {
    let (_stub, gw) = fixture_gateway().await;
    echo_bearer(&gw, "/any-jwt", &firebase_token("u")).await;
    let custom = token(json!({
        "iss": "https://custom.example",
        "aud": "https://fidelity.apigateway.local-project.cloud.goog",
        "exp": now() + 60,
    }));
    echo(
        gw.get("/any-jwt")
            .header("x-my-jwt", format!("Token {custom}")),
    )
    .await;
    let r = gw.get("/any-jwt").send().await.expect("r");
    assert_reply(r, 401, "Jwt is missing").await;
}

#[tokio::test]
async fn a_key_on_a_route_that_needs_none_is_not_checked_but_counts_for_quota() {
    let (_stub, gw) = fixture_gateway().await;
    for _attempt in 0..3 {
        let minute = now() / 60;
        let statuses = [
            gw.status("/limited-open?key=unregistered").await,
            gw.status("/limited-open?key=unregistered").await,
            gw.status("/limited-open?key=unregistered").await,
            gw.status("/limited-open").await,
        ];
        if now() / 60 != minute {
            continue;
        }
        // Two a minute for the key (unchecked, but its own consumer), the project untouched.
        assert_eq!(statuses, [200, 200, 429, 200]);
        let log = &gw.logs()[0];
        assert_eq!(log["api_key_state"], "NOT CHECKED");
        assert_eq!(log["api_key"], "unregistered");
        return;
    }
    panic!("three minute boundaries in a row");
}

#[tokio::test]
async fn without_jwt_audience_the_id_token_is_for_the_address_scheme_and_host() {
    let (_stub, gw) = fixture_gateway().await;
    // `/no-audience`: address https://other-backend.example.run.app/base/, no jwt_audience.
    let e = echo(
        gw.get("/no-audience")
            .header("authorization", "Bearer client-token"),
    )
    .await;
    assert_eq!(e["path"], "/base/no-audience");
    // ESPv2's fallback (filtergen/backend_auth.go): scheme and host, no path.
    assert_eq!(
        backend_id_token(&e)["aud"],
        "https://other-backend.example.run.app"
    );
    assert_eq!(
        e["headers"]["x-forwarded-authorization"],
        "Bearer client-token"
    );
}
