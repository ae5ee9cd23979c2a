//! The "Reviewed divergences" of gateway-facts.md: one test each, whose expected status, message
//! and headers come from the ESPv2, Envoy or jwt_verify_lib source named beside it. The config
//! is tests/fixtures/fidelity.yaml; the backend a stub that echoes what it received.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use items_local_gateway::{LOCAL_API_KEY, LocalGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const KEY: &str = LOCAL_API_KEY;

fn firebase_claims() -> Value {
    json!({"iss": FIREBASE_ISSUER, "aud": "local-project", "sub": "u", "exp": now() + 600})
}

fn firebase_with(patch: Value) -> String {
    let mut c = firebase_claims();
    for (k, v) in patch.as_object().expect("object") {
        c[k] = v.clone();
    }
    token(c)
}

// ----- JWTs ----------------------------------------------------------------------------------------

/// envoy `jwt_authn/extractor.cc`: the `value_prefix` (`Bearer `) is searched case-sensitively;
/// `bearer <t>` yields no token, so the JWT is missing.
#[tokio::test]
async fn the_bearer_prefix_is_case_sensitive() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    let path = "/v1/shelves/1/books/2";
    for value in [format!("bearer {t}"), format!("BEARER {t}")] {
        let r = gw
            .get(path)
            .header("authorization", value)
            .send()
            .await
            .expect("r");
        assert_jwt_refused(&gw, r, path, 401, "Jwt is missing").await;
    }
    echo(gw.get(path).header("authorization", format!("Bearer {t}"))).await;
}

/// envoy `authenticator.cc doneWithStatus`: every token found (header and `?access_token=`)
/// must verify.
#[tokio::test]
async fn several_tokens_in_one_request_must_all_verify() {
    let (_stub, gw) = fixture_gateway().await;
    let good = firebase_token("u");
    let expired = firebase_with(json!({"exp": now() - 600}));
    let path = format!("/v1/shelves/1/books/2?access_token={expired}");
    let r = gw.get(&path).bearer_auth(&good).send().await.expect("r");
    assert_jwt_refused(&gw, r, &path, 401, "Jwt is expired").await;
    let path = format!("/v1/shelves/1/books/2?access_token={good}");
    let r = gw.get(&path).bearer_auth(&expired).send().await.expect("r");
    assert_jwt_refused(&gw, r, &path, 401, "Jwt is expired").await;
    echo(gw.get(&path).bearer_auth(&good)).await;
}

/// envoy `JwtIssuerChecker`: a location accepts the issuers of the providers that declared it.
/// `/custom` reads only `X-My-Jwt: Token` and `?jwt=`; `/any-jwt` has firebase (defaults) OR
/// custom; verifier.cc `AnyVerifierImpl` reports "unknown issuer" over "missing".
#[tokio::test]
async fn a_location_accepts_only_its_providers_issuers() {
    let (_stub, gw) = fixture_gateway().await;
    let firebase = firebase_token("u");
    let path = format!("/custom?jwt={firebase}");
    let r = gw.get(&path).send().await.expect("r");
    assert_jwt_refused(&gw, r, &path, 401, "Jwt issuer is not configured").await;
    let custom = token(json!({"iss": "https://custom.example",
        "aud": "https://fidelity.apigateway.local-project.cloud.goog", "exp": now() + 60}));
    let r = gw
        .get("/any-jwt")
        .bearer_auth(&custom)
        .send()
        .await
        .expect("r");
    assert_jwt_refused(&gw, r, "/any-jwt", 401, "Jwt issuer is not configured").await;
    echo(
        gw.get("/any-jwt")
            .header("x-my-jwt", format!("Token {custom}")),
    )
    .await;
    echo(gw.get("/any-jwt").bearer_auth(&firebase)).await;
}

/// jwt_verify_lib `struct_utils.cc GetUInt64`: numeric claims are doubles, truncated; negative
/// ones are refused with `status.cc`'s text.
#[tokio::test]
async fn float_times_pass_and_negative_ones_are_refused() {
    let (_stub, gw) = fixture_gateway().await;
    let path = "/v1/shelves/1/books/2";
    let float = firebase_with(json!({"exp": now() as f64 + 600.5, "iat": now() as f64 - 0.25}));
    echo(gw.get(path).bearer_auth(&float)).await;
    for claim in ["exp", "nbf", "iat"] {
        let t = firebase_with(json!({ claim: -5 }));
        let r = gw.get(path).bearer_auth(&t).send().await.expect("r");
        let message = format!("Jwt payload [{claim}] field is not a positive 64 bit integer");
        assert_jwt_refused(&gw, r, path, 401, &message).await;
    }
}

/// jwt_verify_lib `check_audience.cc sanitizeAudience`: `http://`/`https://` and one trailing
/// `/` are stripped on both sides (the fixture allows `local-project,other-audience`).
#[tokio::test]
async fn audiences_compare_without_scheme_and_one_trailing_slash() {
    let (_stub, gw) = fixture_gateway().await;
    let path = "/v1/shelves/1/books/2";
    for aud in [
        "https://local-project",
        "http://local-project/",
        "other-audience/",
    ] {
        echo(
            gw.get(path)
                .bearer_auth(firebase_with(json!({ "aud": aud }))),
        )
        .await;
    }
    for aud in ["local-project//", "https://local-project/x"] {
        let r = gw
            .get(path)
            .bearer_auth(firebase_with(json!({ "aud": aud })))
            .send()
            .await
            .expect("r");
        assert_jwt_refused(&gw, r, path, 403, "Audiences in Jwt are not allowed").await;
    }
}

/// jwt_verify_lib `status.cc` (the texts since 13e329d, as esp-v2#342 shows ESPv2 answering).
#[tokio::test]
async fn malformed_tokens_get_the_current_jwt_verify_lib_texts() {
    let (_stub, gw) = fixture_gateway().await;
    let path = "/v1/shelves/1/books/2";
    let rs = "eyJhbGciOiJSUzI1NiJ9"; // {"alg":"RS256"}
    for (t, message) in [
        (
            "a.b",
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        ("!!.e30.AA", "Jwt header is an invalid Base64url encoded"),
        ("bm90IGpzb24.e30.AA", "Jwt header is an invalid JSON"),
        (
            &format!("{rs}.!!.AA"),
            "Jwt payload is an invalid Base64url encoded",
        ),
        (
            &format!("{rs}.bm90IGpzb24.AA"),
            "Jwt payload is an invalid JSON",
        ),
        (
            &format!("{rs}.e30.!!"),
            "Jwt signature is an invalid Base64url encoded",
        ),
    ] {
        let r = gw
            .get(path)
            .header("x-goog-iap-jwt-assertion", t)
            .send()
            .await
            .expect("r");
        assert_jwt_refused(&gw, r, path, 401, message).await;
    }
}

// ----- routing -------------------------------------------------------------------------------------

/// esp-v2 `header_sanitizer` (`handleHttpMethodOverride`) and
/// `tests/integration_test/http_method_override_test.go`: the override is the method for
/// routing, the backend and the log, and the header is removed.
#[tokio::test]
async fn x_http_method_override_applies_before_routing() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    let e = echo(
        gw.client
            .post(gw.url("/v1/shelves/1/books/2"))
            .header("x-http-method-override", "GET")
            .bearer_auth(&t)
            .body("test-body"),
    )
    .await;
    assert_eq!(e["method"], "GET");
    assert!(e["headers"].get("x-http-method-override").is_none(), "{e}");
    assert_eq!(e["body_len"], 9);
    assert_eq!(gw.logs()[0]["httpRequest"]["requestMethod"], "GET");
    // "Overridden POST is rejected because DELETE is not defined in the service config".
    let r = gw
        .client
        .post(gw.url(&format!("/v1/shelves?key={KEY}")))
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .expect("r");
    assert_reply(r, 405, "The current request is matched to the defined url template \"/v1/shelves\" but its http method is not allowed").await;
    // Envoy matches `:method` exactly: a lowercase override names no defined method.
    let r = gw
        .client
        .post(gw.url("/open"))
        .header("x-http-method-override", "get")
        .send()
        .await
        .expect("r");
    assert_reply(r, 405, "The current request is matched to the defined url template \"/open\" but its http method is not allowed").await;
}

/// A request sent byte for byte (reqwest's URL parser would normalise the path itself): the
/// status and the body.
async fn raw_get(gw: &Gw, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(gw.gateway.addr())
        .await
        .expect("connect");
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        gw.gateway.addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Envoy normalises the path before routing (ESPv2 defaults `normalize_path`, `merge_slashes`;
/// envoy `PathUtil::canonicalPath`, Chromium `url_canon`): unreserved escapes decoded, `%2E` a
/// dot, dot segments resolved, `\` a slash, slashes merged; the backend gets the result.
#[tokio::test]
async fn the_path_is_normalised_before_routing() {
    let (_stub, gw) = fixture_gateway().await;
    for target in [
        "/%6Fpen",
        "/x/../open",
        "/x/%2E%2E/open",
        "//open",
        "/./open",
        "/x\\..\\open",
    ] {
        let (status, body) = raw_get(&gw, target).await;
        assert_eq!(status, 200, "{target}: {body}");
        let e: Value = serde_json::from_str(&body).expect("echo");
        assert_eq!(e["path"], "/open", "{target}");
    }
    // ESPv2 reports the normalised `:path` (`handler_impl.cc`: `info.url = path_`).
    for log in gw.logs() {
        assert_eq!(log["httpRequest"]["requestUrl"], "/open");
    }
    // An escaped slash stays escaped: no template matches.
    let (status, body) = raw_get(&gw, "/v1/shelves/1%2Fbooks/2").await;
    assert_eq!(status, 404, "{body}");
}

/// esp-v2 `handler_utils.cc extractAPIKeyFromQuery`: a present `key` parameter ends the search
/// even when empty, and an empty key is no key (`handler_impl.h hasApiKey`): 401.
#[tokio::test]
async fn an_empty_key_parameter_is_a_missing_key() {
    let (_stub, gw) = fixture_gateway().await;
    let t = firebase_token("u");
    let missing = "UNAUTHENTICATED: Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
    for path in [
        "/v1/shelves?key=".to_owned(),
        format!("/v1/shelves?key=&api_key={KEY}"),
    ] {
        let r = gw.get(&path).bearer_auth(&t).send().await.expect("r");
        assert_reply(r, 401, missing).await;
    }
    let r = gw
        .get("/v1/shelves?key=")
        .header("x-api-key", KEY)
        .bearer_auth(&t)
        .send()
        .await
        .expect("r");
    assert_reply(r, 401, missing).await;
    for log in gw.logs() {
        assert_eq!(
            log["response_code_detail"],
            "service_control_bad_request{MISSING_API_KEY}"
        );
        assert!(
            log.get("api_key").is_none(),
            "ESPv2 logs no empty key: {log}"
        );
    }
}

// ----- the backend call ------------------------------------------------------------------------------

/// A backend whose first `resets` connections are closed after the request is read, without an
/// answer; later ones get `200 ok`. Counts connections.
async fn resetting_backend(resets: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                if n >= resets {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
                // Dropped: the connection closes (before any answer for the first ones).
            });
        }
    });
    (url, seen)
}

/// ESPv2's default retry (`--backend_retry_ons reset,connect-failure,refused-stream`,
/// `--backend_retry_num 1`; esp-v2 `options/configgenerator.go`), for any method: a POST whose
/// connection is reset before the answer is sent again; two resets give Envoy's 503
/// (`backend_retry_test.go`: "retried and the latest reset reason: ...").
#[tokio::test]
async fn a_reset_before_the_answer_is_retried_once_post_included() {
    let t = firebase_token("u");
    let post = |gw: &Gw| {
        gw.client
            .post(gw.url(&format!("/v1/shelves?key={KEY}")))
            .bearer_auth(&t)
            .body("a body")
            .send()
    };
    let (url, seen) = resetting_backend(1).await;
    let gw = gateway_with(fixture("fidelity.yaml"), &url, |_| {}).await;
    let r = post(&gw).await.expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "ok");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one retry");

    let (url, seen) = resetting_backend(usize::MAX).await;
    let gw = gateway_with(fixture("fidelity.yaml"), &url, |_| {}).await;
    let r = post(&gw).await.expect("r");
    assert_reply(r, 503, "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination").await;
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one try and one retry");
    let log = gw.logs().pop().expect("logged");
    assert_eq!(
        log["response_code_detail"],
        "upstream_reset_before_response_started{connection_termination}"
    );
}

// ----- traces and logs ----------------------------------------------------------------------------

/// esp-v2 `options/common.go`: `--tracing_sample_rate` 0.001 by default; an incoming context
/// keeps its own decision.
#[tokio::test]
async fn new_traces_are_sampled_at_espv2s_default_rate() {
    let stub = Stub::start().await;
    let config = items_local_gateway::GatewayConfig::new("x", "http://y");
    assert!((config.trace_sample_rate - 0.001).abs() < f64::EPSILON);
    let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |_| {}).await;
    for _ in 0..200 {
        assert_eq!(gw.status("/open").await, 200);
    }
    let sampled = gw
        .logs()
        .iter()
        .filter(|l| l["logging.googleapis.com/trace_sampled"] == true)
        .count();
    // Binomial(200, 0.001): more than 4 has a probability below 1e-5.
    assert!(sampled <= 4, "{sampled} of 200 sampled");
    let e = echo(gw.get("/open").header(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ))
    .await;
    assert!(
        e["headers"]["traceparent"]
            .as_str()
            .expect("tp")
            .ends_with("-01")
    );
    for (rate, want) in [(1.0, true), (0.0, false)] {
        let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |c| {
            c.trace_sample_rate = rate
        })
        .await;
        let e = echo(gw.get("/open")).await;
        let tp = e["headers"]["traceparent"].as_str().expect("tp");
        assert_eq!(tp.ends_with("-01"), want, "{rate}: {tp}");
        assert_eq!(gw.logs()[0]["logging.googleapis.com/trace_sampled"], want);
    }
}

/// What ESPv2 writes (esp-v2 `request_builder.cc FillLogEntry`): the deadline's detail is
/// Envoy's `response_timeout` (as a real API Gateway log shows); `jwt_payloads` only with
/// `--log_jwt_payloads` (`handler_utils.cc extractJwtPayload`: `path=value;`).
#[tokio::test]
async fn access_log_fields_are_espv2s() {
    let (stub, gw) = fixture_gateway().await;
    let r = gw.get("/slow").send().await.expect("r");
    assert_eq!(r.status(), 504);
    let log = gw.logs().pop().expect("logged");
    assert_eq!(log["response_code_detail"], "response_timeout");
    // `httpRequest` has ESPv2's fields: no user agent (`FillLogEntry` sets none).
    let http = log["httpRequest"].as_object().expect("httpRequest");
    let mut fields: Vec<_> = http.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "latency",
            "protocol",
            "remoteIp",
            "requestMethod",
            "requestSize",
            "requestUrl",
            "responseSize",
            "status"
        ]
    );
    assert!(
        log.get("error_cause").is_none(),
        "no Service Control error: {log}"
    );
    let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |c| {
        c.log_jwt_payloads = vec!["sub".into(), "iat".into(), "missing".into()];
    })
    .await;
    let t = firebase_with(json!({"sub": "user-9", "iat": 1_700_000_000.7}));
    echo(gw.get("/v1/shelves/1/books/2").bearer_auth(&t)).await;
    assert_eq!(gw.logs()[0]["jwt_payloads"], "sub=user-9;iat=1700000000;");
}

/// Issue 19: the gateway's log holds what ESPv2 reports (the API key in `api_key`) and no
/// token: not from `Authorization`, `?access_token=` or a custom query location, not in
/// `requestUrl`, whether the JWT passed or not.
#[tokio::test]
async fn no_token_reaches_the_gateways_log() {
    let (_stub, gw) = fixture_gateway().await;
    let good = firebase_token("u");
    let expired = firebase_with(json!({"exp": now() - 600}));
    let custom = token(json!({"iss": "https://custom.example",
        "aud": "https://fidelity.apigateway.local-project.cloud.goog", "exp": now() + 60}));
    echo(gw.get(&format!("/v1/shelves?key={KEY}")).bearer_auth(&good)).await;
    echo(gw.get(&format!("/v1/shelves/1/books/2?access_token={good}&page=2"))).await;
    let r = gw
        .get(&format!("/v1/shelves/1/books/2?access_token={expired}"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    echo(gw.get(&format!("/custom?jwt={custom}"))).await;
    let r = gw
        .get(&format!("/nope?access_token={good}"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404);
    let logs = gw.logs();
    assert_eq!(logs.len(), 5);
    for line in &logs {
        let text = line.to_string();
        for t in [&good, &expired, &custom] {
            assert!(!text.contains(t.as_str()), "a token in {text}");
            // Not even a part of one (its signature).
            assert!(!text.contains(t.rsplit('.').next().expect("sig")), "{text}");
        }
    }
    assert_eq!(logs[0]["api_key"], KEY);
    assert_eq!(
        logs[1]["httpRequest"]["requestUrl"],
        "/v1/shelves/1/books/2?access_token=REDACTED&page=2"
    );
    assert_eq!(logs[3]["httpRequest"]["requestUrl"], "/custom?jwt=REDACTED");
}

// ----- configs API Gateway does not deploy -----------------------------------------------------

/// API Gateway's "OpenAPI 2.0 feature limitations": an OR with an API key alternative, two
/// OAuth2 schemes ANDed, `- {}` beside OAuth2, partial-segment templates; and `x-google-allow:
/// all`, which the local gateway does not emulate. The gateway refuses to start on them.
#[tokio::test]
async fn configs_api_gateway_does_not_deploy_are_refused_when_loaded() {
    let fixture_text = std::fs::read_to_string(fixture("fidelity.yaml")).expect("fixture");
    let dir = std::env::temp_dir().join(format!("local-gateway-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (i, (from, to, why)) in [
        (
            "      - firebase: []\n      responses",
            "      - api_key: []\n      - firebase: []\n      responses",
            "alternatives (OR) where one has an API key",
        ),
        (
            "      - firebase: []\n      responses",
            "      - firebase: []\n        custom: []\n      responses",
            "two OAuth2 schemes ANDed",
        ),
        (
            "      - firebase: []\n      responses",
            "      - firebase: []\n      - {}\n      responses",
            "an empty requirement (- {}) beside OAuth2",
        ),
        ("  /open:\n", "  /open/item_{id}:\n", "partial-segment"),
        (
            "swagger: '2.0'\n",
            "swagger: '2.0'\nx-google-allow: all\n",
            "x-google-allow",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(fixture_text.contains(from), "{from}");
        let path = dir.join(format!("refused-{i}.yaml"));
        std::fs::write(&path, fixture_text.replacen(from, to, 1)).expect("write");
        let config = items_local_gateway::GatewayConfig::new(&path, "http://127.0.0.1:9");
        let Err(err) = LocalGateway::start(config).await else {
            panic!("{why}: the gateway started");
        };
        assert!(format!("{err:#}").contains(why), "{why}: {err:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
