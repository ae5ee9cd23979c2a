//! End to end: Client → local gateway → the real service → PostgreSQL (a fresh database per
//! test), with the committed config `openapi/gateway/dev-europe-west1.yaml` and, for quotas and
//! CORS, a config rendered by `items-gateway-spec` from a fixture environment.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use items_gateway_spec::Environment;
use items_local_gateway::{LOCAL_API_KEY, SigningKey, TokenRequest, spec::Spec, user_token};
use items_service::{Application, PlatformIdentity, Settings, SettingsSources};
use serde_json::{Value, json};

const KEY: &str = LOCAL_API_KEY;

/// The real service on a fresh, migrated database; returns its base URL.
async fn spawn_service() -> String {
    let db_url = items_testkit::fresh_database()
        .await
        .expect("fresh database");
    let mut settings = Settings::load(&SettingsSources::default()).expect("settings");
    settings.server.port = 0;
    settings.server.workers = Some(1);
    settings.database = items_repository::DatabaseSettings {
        pool: settings.database.pool.clone(),
        ..items_repository::DatabaseSettings::from_url(&db_url)
    };
    let app = Application::build(&settings, &PlatformIdentity::default())
        .await
        .expect("app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run());
    url
}

fn environment(name: &str) -> Environment {
    Environment::load(&repo_root().join(format!("deploy/environments/{name}.toml")))
        .expect("environment")
}

/// The dev config of europe-west1 in front of a real service.
async fn dev_gateway() -> Gw {
    let service = spawn_service().await;
    let env = environment("dev");
    let file = items_local_gateway::config_file(&repo_root(), "dev", "europe-west1");
    gateway_with(file, &service, |c| {
        c.gateway_service_account = env.gateway_service_account.clone();
        c.producer_project = env.project_id.clone();
    })
    .await
}

/// A token for the config's first JWT provider (its issuer and first audience).
fn token_for(spec: &Spec, sub: &str, aud: Option<&str>, lifetime_secs: i64) -> String {
    let provider = spec.provider(None).expect("the config has a JWT provider");
    user_token(&TokenRequest {
        issuer: provider.issuer.clone(),
        audience: aud
            .map(str::to_owned)
            .or_else(|| provider.audiences.as_ref().and_then(|a| a.first().cloned()))
            .expect("an audience"),
        subject: sub.to_owned(),
        lifetime_secs,
    })
    .expect("token")
}

impl Gw {
    /// A request with the key and a valid token.
    fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.client
            .request(method, self.url(&format!("{path}{sep}key={KEY}")))
            .bearer_auth(token_for(self.gateway.spec(), "e2e-user", None, 600))
    }
}

#[tokio::test]
async fn every_route_of_the_config_works_through_the_gateway_with_a_key_and_a_token() {
    let gw = dev_gateway().await;
    let created = gw
        .authed(reqwest::Method::POST, "/items")
        .json(&json!({"name": "through the gateway"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let item: Value = created.json().await.expect("json");
    let id = item["id"].as_i64().expect("id").to_string();

    let doc: Value = yaml_serde::from_slice(gw.gateway.config_bytes()).expect("the config is YAML");
    let mut seen = BTreeSet::new();
    // Every operation of the file; DELETE last so that the item exists for the others.
    let mut operations: Vec<(String, String)> = gw
        .gateway
        .spec()
        .routes
        .iter()
        .flat_map(|r| {
            r.operations
                .keys()
                .map(|m| (m.clone(), r.template.text.clone()))
        })
        .collect();
    operations.sort_by_key(|(m, _)| m == "DELETE");
    for (method, template) in operations {
        let path = concrete_path(&doc, &template, &method, &id);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let request = gw.authed(m, &path);
        let request = match method.as_str() {
            "POST" => request.json(&json!({"name": "another"})),
            "PATCH" => request
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"description": "patched"}"#),
            _ => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        seen.insert(format!("{method} {template}"));
    }
    // Every operation of the API (the consumer spec, derived from the route table) went
    // through, and the config has no other.
    assert_eq!(
        seen,
        api_operations(),
        "operations sent through the gateway"
    );
    // The item is gone: the DELETE reached the database.
    let r = gw
        .authed(reqwest::Method::GET, &format!("/items/{id}"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "the service's own 404 passes through unchanged"
    );
}

/// `METHOD /template` of every operation of the consumer spec (`items_http::openapi_json()`).
fn api_operations() -> BTreeSet<String> {
    let api: Value = serde_json::from_str(items_http::openapi_json()).expect("spec");
    let mut operations = BTreeSet::new();
    for (template, item) in api["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if op.get("operationId").is_some() {
                operations.insert(format!("{} {template}", method.to_ascii_uppercase()));
            }
        }
    }
    assert!(operations.contains("GET /items/{id}"), "{operations:?}");
    operations
}

/// `template` with each path parameter replaced by the first value of its `enum`, its
/// `example`, or else the id of an existing item.
fn concrete_path(doc: &Value, template: &str, method: &str, id: &str) -> String {
    let parameters = doc["paths"][template][method.to_ascii_lowercase()]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut path = template.to_owned();
    for p in parameters.iter().filter(|p| p["in"] == "path") {
        let name = p["name"].as_str().expect("name");
        let value = p["enum"][0]
            .as_str()
            .or_else(|| p["example"].as_str())
            .unwrap_or(id);
        path = path.replace(&format!("{{{name}}}"), value);
    }
    path
}

#[tokio::test]
async fn each_auth_failure_is_answered_by_the_gateway() {
    let gw = dev_gateway().await;
    let spec = gw.gateway.spec().clone();
    let good = token_for(&spec, "u", None, 600);
    let r = gw.get("/items").send().await.expect("r");
    assert_reply(r, 401, "Jwt is missing").await;
    let r = gw.get("/items").bearer_auth(&good).send().await.expect("r");
    assert_reply(r, 401, "UNAUTHENTICATED: Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.").await;
    let r = gw
        .get("/items?key=not-a-key")
        .bearer_auth(&good)
        .send()
        .await
        .expect("r");
    assert_reply(
        r,
        400,
        "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.",
    )
    .await;
    let path = format!("/items?key={KEY}");
    let cases = [
        (
            token_for(&spec, "u", Some("another-project"), 600),
            403,
            "Audiences in Jwt are not allowed",
        ),
        (token_for(&spec, "u", None, -120), 401, "Jwt is expired"),
        (
            SigningKey::local_google()
                .sign(&claims(&good))
                .expect("sign"),
            401,
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
    ];
    for (token, status, message) in cases {
        let r = gw.get(&path).bearer_auth(&token).send().await.expect("r");
        let headers = assert_reply(r, status, message).await;
        assert!(
            headers["www-authenticate"]
                .to_str()
                .expect("ascii")
                .ends_with(", error=\"invalid_token\""),
        );
    }
    // The key alone, in the header, with the token as access_token.
    let r = gw
        .get(&format!("/items?access_token={good}"))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn undefined_paths_and_methods_never_reach_the_service() {
    let gw = dev_gateway().await;
    let r = gw
        .authed(reqwest::Method::GET, "/nope")
        .send()
        .await
        .expect("r");
    assert_reply(r, 404, "The current request is not defined by this API.").await;
    let r = gw
        .authed(reqwest::Method::PUT, "/items/1")
        .send()
        .await
        .expect("r");
    assert_reply(
        r,
        405,
        "The current request is matched to the defined url template \"/items/{id}\" but its http method is not allowed",
    )
    .await;
}

/// Each committed config, as its YAML says, enforced without a backend: every path's undefined
/// methods get ESPv2's 405 naming the template as written (esp-v2 `routegen/deny_invalid_method.go`),
/// its defined ones are routed (never 404/405), and a path outside the config gets 404 (`deny_all.go`).
#[tokio::test]
async fn each_committed_config_routes_as_its_yaml_says() {
    let dir = repo_root().join("openapi/gateway");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("openapi/gateway") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc: Value =
            yaml_serde::from_slice(&std::fs::read(&path).expect("read")).expect("yaml");
        let gw = gateway_with(path.clone(), "http://127.0.0.1:9", |c| {
            c.log = items_local_gateway::LogSink::Off
        })
        .await;
        let cors = doc["x-google-endpoints"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["allowCors"] == true));
        for (template, item) in doc["paths"].as_object().expect("paths") {
            let concrete: String = template
                .split('/')
                .map(|s| if s.starts_with('{') { "1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                let m =
                    reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("m");
                let r = gw
                    .client
                    .request(m, gw.url(&concrete))
                    .send()
                    .await
                    .expect("r");
                let status = r.status().as_u16();
                if item.get(method).is_some() || (method == "options" && cors) {
                    assert!(
                        ![404, 405].contains(&status),
                        "{}: {method} {template}: {status}",
                        path.display()
                    );
                } else if method != "head" {
                    assert_reply(r, 405, &format!("The current request is matched to the defined url template \"{template}\" but its http method is not allowed")).await;
                }
            }
        }
        let r = gw.get("/not-in-the-config").send().await.expect("r");
        assert_reply(r, 404, "The current request is not defined by this API.").await;
        gw.gateway.stop().await;
        files += 1;
    }
    assert!(files >= 2, "no committed configs in {}", dir.display());
}

/// A config rendered by items-gateway-spec (as `cargo xtask render`) from the fixture
/// environment `tests/fixtures/gateway-test.toml`: 3 requests a minute, CORS with a managed service.
fn render_fixture(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture("gateway-test.toml")).expect("fixture env");
    let env = Environment::parse("gateway-test", "gateway-test.toml", &text).expect("env parses");
    let api: Value = serde_json::from_str(items_http::openapi_json()).expect("spec");
    let rendered =
        items_gateway_spec::render(&api, &env, &env.regions[0].name, None).expect("renders");
    let path = dir.join(&rendered.file_name);
    std::fs::write(&path, rendered.yaml).expect("write");
    path
}

#[tokio::test]
async fn quota_and_cors_through_a_rendered_fixture_environment() {
    let service = spawn_service().await;
    let dir = std::env::temp_dir().join(format!("local-gateway-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = render_fixture(&dir);
    let gw = gateway_with(file, &service, |_| {}).await;
    assert!(gw.gateway.spec().allow_cors);

    // CORS: the preflight reaches the service with no key and no token (it is the service's
    // answer, a problem+json, not the gateway's).
    let r = gw
        .client
        .request(reqwest::Method::OPTIONS, gw.url("/items"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("r");
    let log = gw.logs().pop().expect("logged");
    assert_eq!(log["response_code_detail"], "via_upstream", "{log}");
    assert_ne!(r.status(), 401);
    let r = gw
        .client
        .request(reqwest::Method::OPTIONS, gw.url("/nope"))
        .send()
        .await
        .expect("r");
    assert_reply(r, 404, "The current request is not defined by this API.").await;

    // Quota: 3 a minute per key.
    for _attempt in 0..3 {
        let minute = now() / 60;
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let r = gw
                .authed(reqwest::Method::GET, "/items")
                .send()
                .await
                .expect("r");
            statuses.push(r.status().as_u16());
            if r.status() == 429 {
                assert_eq!(r.headers()["content-type"], "application/json");
                let body: Value = r.json().await.expect("json");
                let message = body["message"].as_str().expect("message");
                assert!(message.starts_with("RESOURCE_EXHAUSTED: "), "{body}");
                // Charged to the key's project (the producer project here).
                assert!(message.contains("'project_number:"), "{body}");
                assert_eq!(
                    body,
                    json!({"code": 429, "message": message}),
                    "only code and message"
                );
            }
        }
        if now() / 60 != minute {
            continue;
        }
        // Earlier attempts in this minute may have used some already.
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        assert!(statuses.iter().filter(|s| **s == 200).count() <= 3);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    panic!("three minute boundaries in a row");
}

#[tokio::test]
async fn the_service_receives_the_userinfo_the_id_token_and_the_callers_authorization() {
    let service = spawn_service().await;
    let tap = Tap::start(&service).await;
    let env = environment("dev");
    let file = items_local_gateway::config_file(&repo_root(), "dev", "europe-west1");
    let gw = gateway_with(file, &tap.url, |c| {
        c.gateway_service_account = env.gateway_service_account.clone();
    })
    .await;
    let token = token_for(gw.gateway.spec(), "carol", None, 600);
    let r = gw
        .client
        .post(gw.url(&format!("/items?key={KEY}")))
        .bearer_auth(&token)
        .header("x-apigateway-api-userinfo", "forged")
        .json(&json!({"name": "seen by the service"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 201, "the service created the item");
    let seen = tap.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 1);
    let get = |name: &str| -> Vec<&str> {
        seen[0]
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let payload = token.split('.').nth(1).expect("payload");
    assert_eq!(
        get("x-apigateway-api-userinfo"),
        [payload],
        "verified payload only, forged copy removed"
    );
    assert_eq!(
        get("x-forwarded-authorization"),
        [format!("Bearer {token}").as_str()]
    );
    let id_token = get("authorization")[0]
        .strip_prefix("Bearer ")
        .expect("bearer");
    let c = claims(id_token);
    assert_eq!(c["iss"], "https://accounts.google.com");
    assert_eq!(c["aud"], "https://items-104857600001.europe-west1.run.app");
    assert_eq!(c["email"], env.gateway_service_account.as_str());
    assert_eq!(get("x-forwarded-proto"), ["http"]);
    assert_eq!(get("traceparent").len(), 1);
    assert_eq!(get("x-request-id").len(), 1);
}

#[tokio::test]
async fn the_api_reference_opens_in_a_browser_with_only_the_api_key() {
    // `x-gateway-auth: api-key` in the consumer spec: the page, its files and the spec need the
    // key but no JWT (a browser cannot attach one to a page load); the items still need both.
    let gw = dev_gateway().await;
    for path in [
        "/docs",
        "/docs/docs.js",
        "/docs/swagger-ui-bundle.js",
        "/openapi.json",
    ] {
        let r = gw
            .get(&format!("{path}?key={KEY}"))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(gw.status("/docs").await, 401, "no key");
    assert_eq!(gw.status(&format!("/items?key={KEY}")).await, 401, "no JWT");
}
