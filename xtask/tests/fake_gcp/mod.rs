//! A fake Google Cloud control plane for `cargo xtask deploy`, following the public REST
//! definitions of the calls it makes:
//!
//! - Cloud Run Admin API v2: `GET/PATCH /v2/{service.name}` (the patch is a long-running
//!   operation whose response is the `Service`), `GET /v2/{revision name}`,
//!   `GET /v2/projects/*/locations/*/operations/*`;
//! - API Gateway v1: `GET/PATCH /v1/{gateway name}` (`updateMask=apiConfig`),
//!   `POST /v1/{api}/configs?apiConfigId=`, `GET /v1/{api}/configs[/{id}]`,
//!   `DELETE /v1/{config}`, `GET /v1/projects/*/locations/*/operations/*`.
//!
//! Operations finish after a few polls (`done`, then `response` with its `@type`, or `error`).
//! Errors are Google's shape: `{"error":{"code":404,"message":"…","status":"NOT_FOUND"}}`.
//! Failures can be injected per call. Enum values are accepted as numbers (what the Rust clients
//! send, `$alt=json;enum-encoding=int`) or names, and answered as names.
//!
//! It also serves what the deploy checks: a tagged revision URL `http://ADDR/run/<region>/<tag>`
//! (`/health/ready`, `/items`) and a gateway host `http://ADDR/gw/<gateway>` (`/items`).

#![allow(dead_code, clippy::unwrap_used)]

pub mod gateway;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// Polls before an operation is done.
const POLLS: u32 = 2;

/// One traffic entry: (revision, percent, tag).
pub type Entry = (String, i64, String);

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
}

impl Call {
    pub fn mutating(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
    }
}

/// How an injected failure shows.
#[derive(Debug, Clone)]
pub enum FailAs {
    /// The call itself answers with this HTTP status and Google error status.
    Http(u16, &'static str, String),
    /// The call starts an operation that ends with this error (google.rpc.Code number).
    Operation(i32, String),
}

#[derive(Debug, Clone)]
struct Injected {
    method: String,
    path_suffix: String,
    /// Let this many matching calls pass first.
    skip: usize,
    fail: FailAs,
}

type Effect = Box<dyn FnOnce(&mut State) -> Result<Value, (i32, String)> + Send>;

struct Operation {
    name: String,
    polls_left: u32,
    response_type: &'static str,
    effect: Option<Effect>,
    outcome: Option<Result<Value, (i32, String)>>,
}

#[derive(Default)]
pub struct State {
    pub services: BTreeMap<String, Value>,
    pub revisions: BTreeMap<String, Value>,
    pub gateways: BTreeMap<String, Value>,
    pub configs: BTreeMap<String, Value>,
    /// Every traffic split a service had, in order: (service, [(revision, percent, tag)]).
    pub traffic_history: Vec<(String, Vec<Entry>)>,
    pub calls: Vec<Call>,
    /// Paths under /run or /gw that answered.
    pub probes: Vec<String>,
    operations: BTreeMap<String, Operation>,
    injected: Vec<Injected>,
    fail_next_operation: Option<(i32, String)>,
    next_id: u64,
    clock: u64,
    addr: Option<SocketAddr>,
}

/// The fake, listening on 127.0.0.1.
#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(16 << 20))
                        .default_service(web::to(handle))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .unwrap();
                let addr = server.addrs()[0];
                tx.send(addr).unwrap();
                server.run().await
            })
        });
        let addr = rx.recv().unwrap();
        state.lock().unwrap().addr = Some(addr);
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// A Cloud Run service serving `revision` (which exists) to 100% via "latest".
    pub fn add_service(&self, project: &str, region: &str, service: &str, revision: &str) {
        let name = format!("projects/{project}/locations/{region}/services/{service}");
        self.with(|s| {
            let rev_name = format!("{name}/revisions/{revision}");
            s.revisions.insert(
                rev_name.clone(),
                json!({"name": rev_name, "service": name, "containers": [{"name": "app", "image": "old"}]}),
            );
            let mut svc = json!({
                "name": name,
                "uid": format!("uid-{region}"),
                "generation": "1",
                "uri": format!("https://{service}-xyz-{region}.a.run.app"),
                "template": {
                    "revision": revision,
                    "serviceAccount": format!("{service}-runtime@{project}.iam.gserviceaccount.com"),
                    "containers": [
                        {"name": "collector", "image": "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.1"},
                        {"name": "app", "image": "europe-west1-docker.pkg.dev/p/items/items-service@sha256:old", "ports": [{"containerPort": 8080}]}
                    ]
                },
                "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
                "latestReadyRevision": rev_name,
                "latestCreatedRevision": rev_name,
                "etag": "\"e1\""
            });
            s.refresh_statuses(&mut svc);
            s.services.insert(name, svc);
        });
    }

    pub fn add_gateway(&self, project: &str, region: &str, gateway: &str, config: &str) {
        let name = format!("projects/{project}/locations/{region}/gateways/{gateway}");
        let addr = self.addr;
        self.with(|s| {
            s.gateways.insert(
                name.clone(),
                json!({
                    "name": name,
                    "apiConfig": config,
                    "state": "ACTIVE",
                    "defaultHostname": format!("http://{addr}/gw/{gateway}"),
                }),
            );
        });
    }

    /// An ACTIVE config `id` of `api` (`projects/p/locations/global/apis/a`), created at tick `at`.
    pub fn add_config(&self, api: &str, id: &str, at: u64) {
        let name = format!("{api}/configs/{id}");
        self.with(|s| {
            s.configs.insert(
                name.clone(),
                json!({"name": name, "state": "ACTIVE", "createTime": timestamp(at)}),
            );
        });
    }

    /// The `skip+1`-th call `method … path_suffix` fails as `fail`.
    pub fn inject(&self, method: &str, path_suffix: &str, skip: usize, fail: FailAs) {
        self.with(|s| {
            s.injected.push(Injected {
                method: method.to_owned(),
                path_suffix: path_suffix.to_owned(),
                skip,
                fail,
            });
        });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// (revision, percent, tag) of a service's traffic now.
    pub fn traffic(&self, service: &str) -> Vec<Entry> {
        self.with(|s| summarize(&s.services[service]))
    }

    /// Makes `gateway` report `url` as its host (a local gateway instead of the fake's `/gw/…`).
    pub fn set_gateway_hostname(&self, gateway: &str, url: &str) {
        self.with(|s| {
            s.gateways.get_mut(gateway).unwrap()["defaultHostname"] = json!(url);
        });
    }

    pub fn gateway_config(&self, gateway: &str) -> String {
        self.with(|s| {
            s.gateways[gateway]["apiConfig"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
    }

    pub fn config_names(&self) -> Vec<String> {
        self.with(|s| s.configs.keys().cloned().collect())
    }
}

fn timestamp(tick: u64) -> String {
    format!(
        "2024-01-01T{:02}:{:02}:{:02}Z",
        tick / 3600,
        (tick / 60) % 60,
        tick % 60
    )
}

/// (revision, percent, tag) of each traffic entry, "latest" resolved.
fn summarize(service: &Value) -> Vec<Entry> {
    service["trafficStatuses"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|t| {
                    (
                        t["revision"].as_str().unwrap_or("").to_owned(),
                        t["percent"].as_i64().unwrap_or(0),
                        t["tag"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The resource, or Google's answer for a missing one.
fn found(resource: Option<&Value>, name: &str) -> HttpResponse {
    match resource {
        Some(resource) => HttpResponse::Ok().json(resource),
        None => not_found(name),
    }
}

/// Google's answer for a missing resource.
fn not_found(name: &str) -> HttpResponse {
    error(
        404,
        "NOT_FOUND",
        &format!("Resource '{name}' was not found"),
    )
}

/// A Google-style error response.
fn error(http: u16, status: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(http).unwrap())
        .content_type("application/json")
        .json(json!({"error": {"code": http, "message": message, "status": status}}))
}

fn code_name(code: i32) -> &'static str {
    match code {
        3 => "INVALID_ARGUMENT",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        9 => "FAILED_PRECONDITION",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

fn is_type(value: &Value, number: i64, name: &str) -> bool {
    value.as_i64() == Some(number) || value.as_str() == Some(name)
}

impl State {
    fn new_operation(
        &mut self,
        location: &str,
        response_type: &'static str,
        effect: Effect,
    ) -> Value {
        self.next_id += 1;
        let name = format!("{location}/operations/op-{}", self.next_id);
        // An injected failure replaces what the operation would have done.
        let effect: Effect = match self.fail_next_operation.take() {
            Some(fail) => Box::new(move |_: &mut State| Err(fail)),
            None => effect,
        };
        self.operations.insert(
            name.clone(),
            Operation {
                name: name.clone(),
                polls_left: POLLS,
                response_type,
                effect: Some(effect),
                outcome: None,
            },
        );
        json!({"name": name, "done": false})
    }

    fn poll(&mut self, name: &str) -> Option<Value> {
        let mut op = self.operations.remove(name)?;
        if op.outcome.is_none() {
            if op.polls_left > 0 {
                op.polls_left -= 1;
            } else if let Some(effect) = op.effect.take() {
                op.outcome = Some(effect(self));
            }
        }
        let body = match &op.outcome {
            None => json!({"name": op.name, "done": false}),
            Some(Ok(response)) => {
                let mut response = response.clone();
                if let Some(map) = response.as_object_mut() {
                    map.insert("@type".into(), json!(op.response_type));
                }
                json!({"name": op.name, "done": true, "response": response})
            }
            Some(Err((code, message))) => {
                json!({"name": op.name, "done": true, "error": {"code": code, "message": message}})
            }
        };
        self.operations.insert(name.to_owned(), op);
        Some(body)
    }

    /// `trafficStatuses` from `traffic`, with a URL per tag.
    fn refresh_statuses(&self, service: &mut Value) {
        let addr = self.addr.map(|a| a.to_string()).unwrap_or_default();
        let region = service["name"]
            .as_str()
            .and_then(|n| n.split('/').nth(3))
            .unwrap_or("")
            .to_owned();
        let latest = service["latestReadyRevision"]
            .as_str()
            .and_then(|n| n.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        let statuses: Vec<Value> = service["traffic"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let latest_type = is_type(&t["type"], 1, "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST");
                let revision = if latest_type {
                    latest.clone()
                } else {
                    t["revision"].as_str().unwrap_or("").to_owned()
                };
                let tag = t["tag"].as_str().unwrap_or("").to_owned();
                let mut status = json!({
                    "type": if latest_type { "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" } else { "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION" },
                    "revision": revision,
                    "percent": t["percent"].as_i64().unwrap_or(0),
                });
                if !tag.is_empty() {
                    status["tag"] = json!(tag);
                    status["uri"] = json!(format!("http://{addr}/run/{region}/{tag}"));
                }
                status
            })
            .collect();
        service["trafficStatuses"] = Value::Array(statuses);
    }

    fn take_injected(&mut self, method: &str, path: &str) -> Option<FailAs> {
        let index = self
            .injected
            .iter()
            .position(|i| i.method == method && path.ends_with(&i.path_suffix))?;
        if self.injected[index].skip > 0 {
            self.injected[index].skip -= 1;
            return None;
        }
        Some(self.injected.remove(index).fail)
    }
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.calls.push(Call {
        method: method.clone(),
        path: path.clone(),
        query: req.query_string().to_owned(),
    });

    // What the deploy checks call.
    if let Some(rest) = path
        .strip_prefix("/run/")
        .or_else(|| path.strip_prefix("/gw/"))
    {
        if let Some(FailAs::Http(code, status, message)) = s.take_injected(&method, &path) {
            return error(code, status, &message);
        }
        s.probes.push(path.clone());
        return if rest.ends_with("/health/ready") {
            HttpResponse::Ok().json(json!({"status": "ready"}))
        } else if rest.ends_with("/items") {
            HttpResponse::Ok().json(json!({"items": [], "next_page_token": null}))
        } else {
            error(404, "NOT_FOUND", "no such path")
        };
    }

    let injected = s.take_injected(&method, &path);
    if let Some(FailAs::Http(code, status, message)) = &injected {
        return error(*code, status, message);
    }
    s.fail_next_operation = match injected {
        Some(FailAs::Operation(code, message)) => Some((code, message)),
        _ => None,
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, "INVALID_ARGUMENT", &format!("body is not JSON: {e}")),
        }
    };

    let Some((version, name)) = path
        .strip_prefix("/v2/")
        .map(|n| ("v2", n))
        .or_else(|| path.strip_prefix("/v1/").map(|n| ("v1", n)))
    else {
        return error(404, "NOT_FOUND", &format!("no route {path}"));
    };
    let name = name.to_owned();
    let segments: Vec<&str> = name.split('/').collect();
    // projects/{p}/locations/{l}/{collection}/{id}[/{sub}/{id}]
    if segments.len() < 4 || segments[0] != "projects" || segments[2] != "locations" {
        return error(404, "NOT_FOUND", &format!("no route {path}"));
    }
    let location = segments[..4].join("/");
    let collection = segments.get(4).copied().unwrap_or("");

    match (version, method.as_str(), collection, segments.len()) {
        (_, "GET", "operations", 6) => match s.poll(&name) {
            Some(op) => HttpResponse::Ok().json(op),
            None => error(404, "NOT_FOUND", &format!("operation {name} not found")),
        },
        ("v2", "GET", "services", 6) => found(s.services.get(&name), &name),
        ("v2", "GET", "services", 8) if segments[6] == "revisions" => {
            found(s.revisions.get(&name), &name)
        }
        ("v2", "PATCH", "services", 6) => patch_service(&mut s, &location, &name, body),
        ("v1", "GET", "gateways", 6) => found(s.gateways.get(&name), &name),
        ("v1", "PATCH", "gateways", 6) => {
            let mask = query.get("updateMask").cloned().unwrap_or_default();
            if !mask
                .split(',')
                .any(|m| m == "apiConfig" || m == "api_config")
            {
                return error(400, "INVALID_ARGUMENT", "updateMask must name apiConfig");
            }
            let Some(config) = body["apiConfig"].as_str().map(str::to_owned) else {
                return error(400, "INVALID_ARGUMENT", "apiConfig is required");
            };
            if !s.gateways.contains_key(&name) {
                return not_found(&name);
            }
            let gateway = name.clone();
            let op = s.new_operation(
                &location,
                "type.googleapis.com/google.cloud.apigateway.v1.Gateway",
                Box::new(move |s: &mut State| {
                    if !s.configs.contains_key(&config) {
                        return Err((5, format!("API config {config} not found")));
                    }
                    let gw = s.gateways.get_mut(&gateway).unwrap();
                    gw["apiConfig"] = json!(config);
                    Ok(gw.clone())
                }),
            );
            HttpResponse::Ok().json(op)
        }
        ("v1", "GET", "apis", 7) if segments[6] == "configs" => {
            let prefix = format!("{name}/");
            let configs: Vec<Value> = s
                .configs
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            HttpResponse::Ok().json(json!({"apiConfigs": configs}))
        }
        ("v1", "GET", "apis", 8) if segments[6] == "configs" => found(s.configs.get(&name), &name),
        ("v1", "POST", "apis", 7) if segments[6] == "configs" => {
            let Some(id) = query.get("apiConfigId").cloned() else {
                return error(400, "INVALID_ARGUMENT", "apiConfigId is required");
            };
            let config_name = format!("{name}/{id}");
            if s.configs.contains_key(&config_name) {
                return error(
                    409,
                    "ALREADY_EXISTS",
                    &format!("Resource '{config_name}' already exists"),
                );
            }
            if s.operations
                .values()
                .any(|o| o.outcome.is_none() && o.response_type.ends_with("ApiConfig"))
            {
                return error(409, "ABORTED", "another API config is being created");
            }
            let documents = body["openapiDocuments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let Some(contents) = documents
                .first()
                .and_then(|d| d["document"]["contents"].as_str())
            else {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    "openapiDocuments[0].document.contents is required",
                );
            };
            let Ok(yaml) = base64_decode(contents) else {
                return error(400, "INVALID_ARGUMENT", "contents is not base64");
            };
            if !String::from_utf8_lossy(&yaml).contains("swagger") {
                return error(400, "INVALID_ARGUMENT", "not an OpenAPI 2.0 document");
            }
            if body["gatewayServiceAccount"]
                .as_str()
                .unwrap_or("")
                .is_empty()
            {
                return error(400, "INVALID_ARGUMENT", "gatewayServiceAccount is required");
            }
            let account = body["gatewayServiceAccount"].clone();
            let op = s.new_operation(
                &location,
                "type.googleapis.com/google.cloud.apigateway.v1.ApiConfig",
                Box::new(move |s: &mut State| {
                    s.clock += 1;
                    let config = json!({
                        "name": config_name,
                        "state": "ACTIVE",
                        "createTime": timestamp(10_000 + s.clock),
                        "gatewayServiceAccount": account,
                    });
                    s.configs.insert(config_name.clone(), config.clone());
                    Ok(config)
                }),
            );
            HttpResponse::Ok().json(op)
        }
        ("v1", "DELETE", "apis", 8) if segments[6] == "configs" => {
            if !s.configs.contains_key(&name) {
                return not_found(&name);
            }
            if s.gateways.values().any(|g| g["apiConfig"] == json!(name)) {
                return error(
                    400,
                    "FAILED_PRECONDITION",
                    &format!("{name} is used by a gateway"),
                );
            }
            let config = name.clone();
            let op = s.new_operation(
                &location,
                "type.googleapis.com/google.protobuf.Empty",
                Box::new(move |s: &mut State| {
                    s.configs.remove(&config);
                    Ok(json!({}))
                }),
            );
            HttpResponse::Ok().json(op)
        }
        _ => error(404, "NOT_FOUND", &format!("no route {method} {path}")),
    }
}

/// `services.patch`: validates the traffic, creates the template's revision when it is new, and
/// applies everything when the operation completes.
fn patch_service(s: &mut State, location: &str, name: &str, body: Value) -> HttpResponse {
    let Some(current) = s.services.get(name).cloned() else {
        return not_found(name);
    };
    if body["name"].as_str() != Some(name) {
        return error(400, "INVALID_ARGUMENT", "service.name must match the URL");
    }
    let traffic = body["traffic"].as_array().cloned().unwrap_or_default();
    let total: i64 = traffic
        .iter()
        .map(|t| t["percent"].as_i64().unwrap_or(0))
        .sum();
    if total != 100 {
        return error(
            400,
            "INVALID_ARGUMENT",
            &format!("traffic percents sum to {total}, not 100"),
        );
    }
    let new_revision = body["template"]["revision"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let creates = !new_revision.is_empty()
        && current["template"]["revision"].as_str() != Some(new_revision.as_str());
    let new_revision_name = format!("{name}/revisions/{new_revision}");
    if creates && s.revisions.contains_key(&new_revision_name) {
        return error(
            409,
            "ALREADY_EXISTS",
            &format!("Revision named '{new_revision}' already exists."),
        );
    }
    for t in &traffic {
        if is_type(&t["type"], 2, "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION") {
            let rev = t["revision"].as_str().unwrap_or("");
            let known = s.revisions.contains_key(&format!("{name}/revisions/{rev}"));
            if !(known || creates && rev == new_revision) {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Revision '{rev}' does not exist."),
                );
            }
        }
    }
    let service_name = name.to_owned();
    let op = s.new_operation(
        location,
        "type.googleapis.com/google.cloud.run.v2.Service",
        Box::new(move |s: &mut State| {
            let mut svc = s.services[&service_name].clone();
            if creates {
                let image = body["template"]["containers"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["name"] == "app"))
                    .map(|c| c["image"].clone())
                    .unwrap_or(Value::Null);
                s.revisions.insert(
                    new_revision_name.clone(),
                    json!({"name": new_revision_name, "service": service_name, "containers": [{"name": "app", "image": image}]}),
                );
                svc["template"] = body["template"].clone();
                svc["latestCreatedRevision"] = json!(new_revision_name);
                svc["latestReadyRevision"] = json!(new_revision_name);
            }
            svc["traffic"] = body["traffic"].clone();
            let generation = svc["generation"].as_str().and_then(|g| g.parse::<i64>().ok()).unwrap_or(1);
            svc["generation"] = json!((generation + 1).to_string());
            s.refresh_statuses(&mut svc);
            s.traffic_history.push((service_name.clone(), summarize(&svc)));
            s.services.insert(service_name.clone(), svc.clone());
            Ok(svc)
        }),
    );
    HttpResponse::Ok().json(op)
}

fn base64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s)
}
