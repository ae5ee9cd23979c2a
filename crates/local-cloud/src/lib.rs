//! A local Google Cloud for `cargo xtask deploy`: the control planes it calls, following the
//! public REST definitions (the JSON the official `google-cloud-*` Rust clients send and read):
//!
//! - Cloud Run Admin API v2 (`run.rs`): `GET/PATCH /v2/{service}`, `GET /v2/{revision}`,
//!   `GET /v2/projects/*/locations/*/operations/*`. A patch whose template differs creates a
//!   revision, which the [`DataPlane`] starts; the operation ends when it is ready (the patched
//!   service) or failed (the revision's condition), and then routes the traffic.
//! - API Gateway v1 (`apigateway.rs`): `GET/PATCH /v1/{gateway}` (`updateMask=apiConfig`),
//!   `POST /v1/{api}/configs?apiConfigId=`, `GET /v1/{api}/configs[/{id}]`, `DELETE /v1/{config}`,
//!   operations. A gateway pointed at a config has the [`GatewayPlane`] serve it.
//! - Cloud Run Admin API v2 jobs (`jobs.rs`): create, get, patch, run (an operation ending with
//!   the `Execution`), executions get and list; the [`DataPlane`] runs each task's container.
//! - Secret Manager v1 (`secrets.rs`): secrets create/get, `addVersion`, versions list/get/access;
//!   a new version reaches the `latest` secret volumes of running revisions.
//! - An OCI distribution registry standing in for Artifact Registry (`registry.rs`).
//!
//! Long-running operations (`google.longrunning.Operation`) end after a few polls at least:
//! `done`, then `response` with its `@type`, or `error`. Errors are Google's shape. Failures can be
//! injected per call. The test-facing helpers (`add_service`, `add_config`, `add_gateway`,
//! `calls`, `traffic`, `inject`, the state's `traffic_history` and `probes`) are those of the test
//! fake this crate replaced.
//!
//! With the [`Stub`] plane the control plane also answers what the deploy checks: a tagged
//! revision URL `http://ADDR/run/<region>/<tag>` (`/health/ready`, `/items`) and a gateway host
//! `http://ADDR/gw/<gateway>` (`/items`).
//!
//! A local-only extension, not part of any Google API: `POST /local/faults/{revision}` with
//! `{"added_latency_ms": N, "error_ratio": R, "error_status": S}` injects that [`Fault`] in front
//! of the revision's instances (`DELETE` removes it), for end-to-end tests of a running cloud;
//! `POST|DELETE /local/image-faults` with `{"image": REF, …}` does so for every revision, present
//! or future, whose ingress container runs `REF`.

mod apigateway;
mod gateways;
mod google;
mod jobs;
mod plane;
mod registry;
mod run;
mod secrets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

pub use gateways::LocalGateways;
pub use plane::{
    DataPlane, Fault, Files, GatewayPlane, HttpProbe, Iam, RevisionSpec, ServiceId, Stub, TaskExit,
    TaskSpec, TrafficTarget, parse_service,
};
pub use registry::Registry;

/// Polls before an operation of a [`Stub`] cloud is done, however fast its work (so that callers
/// poll, as they must on Google Cloud).
const STUB_POLLS: u32 = 2;

/// One traffic entry as observed (`trafficStatuses`): (revision, percent, tag).
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
    /// The call starts an operation that ends with this error (google.rpc.Code number) and changes
    /// nothing.
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

/// What an operation ended with: the response, or (google.rpc.Code, message).
pub(crate) type Outcome = Result<Value, (i32, String)>;

#[derive(Debug)]
struct Operation {
    polls_left: u32,
    response_type: &'static str,
    outcome: Option<Outcome>,
}

/// Everything the cloud holds, as the REST resources it answers with.
#[derive(Debug, Default)]
pub struct State {
    pub services: BTreeMap<String, Value>,
    pub revisions: BTreeMap<String, Value>,
    pub gateways: BTreeMap<String, Value>,
    pub configs: BTreeMap<String, Value>,
    /// Secret Manager: `projects/{p}/secrets/{s}` → its versions' payloads (version n at n-1).
    pub secrets: BTreeMap<String, Vec<Vec<u8>>>,
    /// Every traffic split a service served, in order: (service, [(revision, percent, tag)]).
    pub traffic_history: Vec<(String, Vec<Entry>)>,
    pub calls: Vec<Call>,
    /// Paths under /run or /gw that answered (the [`Stub`] plane).
    pub probes: Vec<String>,
    /// Each revision's template, under its name (what a reused name is compared with).
    revision_templates: BTreeMap<String, Value>,
    /// Faults injected into every revision of an image (`/local/image-faults`).
    image_faults: BTreeMap<String, Fault>,
    /// Cloud Run jobs and their executions.
    pub jobs: BTreeMap<String, Value>,
    pub executions: BTreeMap<String, Value>,
    operations: BTreeMap<String, Operation>,
    injected: Vec<Injected>,
    fail_next_operation: Option<(i32, String)>,
    polls: u32,
    next_id: u64,
    clock: u64,
}

impl State {
    /// A new pending operation under `location`; its name and its first answer.
    fn new_operation(&mut self, location: &str, response_type: &'static str) -> (String, Value) {
        self.next_id += 1;
        let name = format!("{location}/operations/op-{}", self.next_id);
        self.operations.insert(
            name.clone(),
            Operation {
                polls_left: self.polls,
                response_type,
                outcome: None,
            },
        );
        (name.clone(), json!({"name": name, "done": false}))
    }

    fn finish(&mut self, name: &str, outcome: Outcome) {
        if let Some(op) = self.operations.get_mut(name) {
            op.outcome = Some(outcome);
        }
    }

    /// `operations.get`: `done` once the work ended and the operation was polled enough.
    fn poll(&mut self, name: &str) -> Option<Value> {
        let op = self.operations.get_mut(name)?;
        if op.polls_left > 0 {
            op.polls_left -= 1;
            return Some(json!({"name": name, "done": false}));
        }
        Some(match &op.outcome {
            None => json!({"name": name, "done": false}),
            Some(Ok(response)) => {
                let mut response = response.clone();
                if let Some(map) = response.as_object_mut() {
                    map.insert("@type".into(), json!(op.response_type));
                }
                json!({"name": name, "done": true, "response": response})
            }
            Some(Err((code, message))) => json!({"name": name, "done": true,
                "error": {"code": code, "message": message, "status": google::code_name(*code)}}),
        })
    }

    /// Whether an operation of `response_type` is still running.
    fn running(&self, response_type: &str) -> bool {
        self.operations
            .values()
            .any(|o| o.outcome.is_none() && o.response_type == response_type)
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

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// What the request handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) plane: Arc<dyn DataPlane>,
    pub(crate) gateways: Arc<dyn GatewayPlane>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Answers a call that starts an operation: runs `work` in the background (unless a failure was
/// injected for this call: then the operation fails and nothing changes).
pub(crate) fn start_operation(
    shared: &Arc<Shared>,
    s: &mut State,
    location: &str,
    response_type: &'static str,
    work: impl Future<Output = Outcome> + 'static,
) -> HttpResponse {
    let injected = s.fail_next_operation.take();
    let (name, first) = s.new_operation(location, response_type);
    let shared = shared.clone();
    actix_web::rt::spawn(async move {
        let outcome = match injected {
            Some(fail) => Err(fail),
            None => work.await,
        };
        shared.lock().finish(&name, outcome);
    });
    HttpResponse::Ok().json(first)
}

/// The local cloud's control plane, listening on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct LocalCloud {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The stub planes, when [`LocalCloud::start`] made them.
    stub: Option<Arc<Stub>>,
}

impl LocalCloud {
    /// The control plane with the [`Stub`] planes, on a free port: what deploy's tests use.
    pub fn start() -> Self {
        let stub = Arc::new(Stub::default());
        let mut cloud = Self::start_with(stub.clone(), stub.clone(), ("127.0.0.1", 0), STUB_POLLS)
            .unwrap_or_else(|e| panic!("starting the local cloud: {e:#}"));
        stub.set_addr(cloud.addr);
        cloud.stub = Some(stub);
        cloud
    }

    /// The stub planes of a cloud [`LocalCloud::start`] made.
    pub fn stub(&self) -> Option<&Stub> {
        self.stub.as_deref()
    }

    /// The control plane driving `plane` and `gateways`, on `bind`, on a thread of its own.
    /// Operations are done after at least `polls` polls.
    pub fn start_with(
        plane: Arc<dyn DataPlane>,
        gateways: Arc<dyn GatewayPlane>,
        bind: (&str, u16),
        polls: u32,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                polls,
                ..State::default()
            }),
            plane,
            gateways,
        });
        let listener = std::net::TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(shared.clone());
        spawn_server("local-cloud", move || {
            Ok(HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(16 << 20))
                    .default_service(web::to(handle))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run())
        })?;
        Ok(Self {
            addr,
            shared,
            stub: None,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// A Cloud Run service serving `revision` (which exists) to 100% via "latest": its template
    /// has the `app` container (port 8080) and an OpenTelemetry collector sidecar.
    pub fn add_service(&self, project: &str, region: &str, service: &str, revision: &str) {
        let name = format!("projects/{project}/locations/{region}/services/{service}");
        let template = json!({
            "revision": revision,
            "serviceAccount": format!("{service}-runtime@{project}.iam.gserviceaccount.com"),
            "containers": [
                {"name": "app", "image": "europe-west1-docker.pkg.dev/p/items/items-service@sha256:old", "ports": [{"containerPort": 8080}]},
                {"name": "collector", "image": "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.1"}
            ]
        });
        self.with(|s| {
            let uri = format!("https://{service}-xyz-{region}.a.run.app");
            run::insert_ready(s, &name, &uri, template, revision);
        });
    }

    pub fn add_gateway(&self, project: &str, region: &str, gateway: &str, config: &str) {
        let name = format!("projects/{project}/locations/{region}/gateways/{gateway}");
        let hostname = format!("{}/gw/{gateway}", self.url());
        self.with(|s| apigateway::insert_gateway(s, &name, config, &hostname));
    }

    /// An ACTIVE config `id` of `api` (`projects/p/locations/global/apis/a`), created at tick `at`.
    pub fn add_config(&self, api: &str, id: &str, at: u64) {
        let name = format!("{api}/configs/{id}");
        self.with(|s| {
            s.configs.insert(
                name.clone(),
                json!({"name": name, "state": "ACTIVE", "createTime": google::timestamp(at)}),
            );
        });
    }

    /// Adds a version of secret `projects/{p}/secrets/{s}` (what `google_secret_manager_secret_version`
    /// does); its number.
    pub fn add_secret_version(&self, secret: &str, payload: &[u8]) -> usize {
        self.with(|s| {
            let versions = s.secrets.entry(secret.to_owned()).or_default();
            versions.push(payload.to_vec());
            versions.len()
        })
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
        self.with(|s| run::summarize(&s.services[service]))
    }

    /// Makes `gateway` report `url` as its host (a local gateway instead of the stub's `/gw/…`).
    pub fn set_gateway_hostname(&self, gateway: &str, url: &str) {
        self.with(|s| {
            if let Some(gw) = s.gateways.get_mut(gateway) {
                gw["defaultHostname"] = json!(url);
            }
        });
    }

    pub fn gateway_config(&self, gateway: &str) -> String {
        self.with(|s| {
            s.gateways
                .get(gateway)
                .and_then(|g| g["apiConfig"].as_str())
                .unwrap_or("")
                .to_owned()
        })
    }

    pub fn config_names(&self) -> Vec<String> {
        self.with(|s| s.configs.keys().cloned().collect())
    }

    /// Injects `fault` into `revision`'s requests (`None` removes it).
    pub fn set_fault(&self, revision: &str, fault: Option<Fault>) {
        self.shared.plane.set_fault(revision, fault);
    }

    /// Creates service `name` from `template` (a `RevisionTemplate` in JSON), as Terraform's
    /// `google_cloud_run_v2_service` does, with `iam` as its invoker policy; waits until its first
    /// revision serves. Its URL.
    pub async fn create_service(
        &self,
        name: &str,
        template: Value,
        listen: SocketAddr,
        iam: Iam,
    ) -> anyhow::Result<String> {
        run::create(&self.shared, name, template, listen, iam).await
    }

    /// Creates job `name` (`projects/*/locations/*/jobs/*`) from `template` (an
    /// `ExecutionTemplate` in JSON), as Terraform's `google_cloud_run_v2_job` does.
    pub fn create_job(&self, name: &str, template: Value) -> anyhow::Result<()> {
        anyhow::ensure!(
            name.split('/').count() == 6 && name.contains("/jobs/"),
            "{name}: not projects/*/locations/*/jobs/*"
        );
        self.with(|s| {
            anyhow::ensure!(!s.jobs.contains_key(name), "{name} exists");
            jobs::insert_job(s, name, template, &Value::Null);
            Ok(())
        })
    }

    /// Runs job `name` once, as `jobs.run` does, and waits for its execution to end: the
    /// `Execution` (JSON), or the failure message of its `Completed` condition.
    pub async fn run_job(&self, name: &str) -> Result<Value, String> {
        jobs::run_and_wait(&self.shared, name).await
    }

    /// Creates `gateway` serving `config` (which exists), as Terraform's
    /// `google_api_gateway_gateway` does; its hostname.
    pub async fn create_gateway(&self, gateway: &str, config: &str) -> anyhow::Result<String> {
        apigateway::create_gateway(&self.shared, gateway, config).await
    }

    /// Creates config `name` from one OpenAPI document, ACTIVE at once.
    pub fn create_config(&self, name: &str, file_name: &str, document: &[u8], account: &str) {
        self.with(|s| apigateway::insert_config(s, name, file_name, document, account));
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let shared = shared.into_inner();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    if let Some(revision) = path.strip_prefix("/local/faults/") {
        return local_fault(&shared, &method, revision, &body);
    }
    if path == "/local/image-faults" {
        return local_image_fault(&shared, &method, &body);
    }
    let mut s = shared.lock();
    s.calls.push(Call {
        method: method.clone(),
        path: path.clone(),
        query: req.query_string().to_owned(),
    });

    // What the deploy checks call, when the stub plane serves them.
    if let Some(rest) = path
        .strip_prefix("/run/")
        .or_else(|| path.strip_prefix("/gw/"))
    {
        if let Some(FailAs::Http(code, status, message)) = s.take_injected(&method, &path) {
            return google::error(code, status, &message);
        }
        s.probes.push(path.clone());
        return if rest.ends_with("/health/ready") {
            HttpResponse::Ok().json(json!({"status": "ready"}))
        } else if rest.ends_with("/items") {
            HttpResponse::Ok().json(json!({"items": [], "next_page_token": null}))
        } else {
            google::error(404, "NOT_FOUND", "no such path")
        };
    }

    let injected = s.take_injected(&method, &path);
    if let Some(FailAs::Http(code, status, message)) = &injected {
        return google::error(*code, status, message);
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
            Err(e) => {
                return google::error(400, "INVALID_ARGUMENT", &format!("body is not JSON: {e}"));
            }
        }
    };

    let Some((version, name)) = path
        .strip_prefix("/v2/")
        .map(|n| ("v2", n))
        .or_else(|| path.strip_prefix("/v1/").map(|n| ("v1", n)))
    else {
        return google::error(404, "NOT_FOUND", &format!("no route {path}"));
    };
    let name = name.to_owned();
    let segments: Vec<&str> = name.split('/').collect();
    // Secret Manager: projects/{p}/secrets/… (global, no location).
    if version == "v1"
        && segments.len() >= 3
        && segments[0] == "projects"
        && segments[2].split(':').next() == Some("secrets")
    {
        let request = Request {
            method: &method,
            name: &name,
            segments: &segments,
            location: segments[..2].join("/"),
            query: &query,
            body,
        };
        return secrets::handle(&shared, &mut s, request);
    }
    // projects/{p}/locations/{l}/{collection}/{id}[/{sub}/{id}]
    if segments.len() < 4 || segments[0] != "projects" || segments[2] != "locations" {
        return google::error(404, "NOT_FOUND", &format!("no route {path}"));
    }
    let request = Request {
        method: &method,
        name: &name,
        segments: &segments,
        location: segments[..4].join("/"),
        query: &query,
        body,
    };
    match (version, segments.get(4).copied().unwrap_or("")) {
        (_, "operations") if method == "GET" && segments.len() == 6 => match s.poll(&name) {
            Some(op) => HttpResponse::Ok().json(op),
            None => google::error(404, "NOT_FOUND", &format!("operation {name} not found")),
        },
        ("v2", "services") => run::handle(&shared, &mut s, request),
        ("v2", "jobs") => jobs::handle(&shared, &mut s, request),
        ("v1", "gateways" | "apis") => apigateway::handle(&shared, &mut s, request),
        _ => google::error(404, "NOT_FOUND", &format!("no route {method} {path}")),
    }
}

/// `POST|DELETE /local/faults/{revision}`: the local-only fault injection (see the module's doc).
fn local_fault(shared: &Shared, method: &str, revision: &str, body: &[u8]) -> HttpResponse {
    if revision.is_empty() || revision.contains('/') {
        return google::error(404, "NOT_FOUND", "no such revision name");
    }
    match method {
        "DELETE" => {
            shared.plane.set_fault(revision, None);
            HttpResponse::NoContent().finish()
        }
        "POST" => match parse_fault(body) {
            Ok(fault) => {
                shared.plane.set_fault(revision, Some(fault));
                HttpResponse::NoContent().finish()
            }
            Err(refused) => *refused,
        },
        _ => google::error(405, "METHOD_NOT_ALLOWED", "POST or DELETE"),
    }
}

/// A [`Fault`] from the local fault body (see the module's doc).
fn parse_fault(body: &[u8]) -> Result<Fault, Box<HttpResponse>> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(google::error(
            400,
            "INVALID_ARGUMENT",
            "body is not JSON",
        )));
    };
    let ratio = v["error_ratio"].as_f64().unwrap_or(0.0);
    let status = u16::try_from(v["error_status"].as_u64().unwrap_or(503)).unwrap_or(0);
    if !(0.0..=1.0).contains(&ratio) || !(100..=599).contains(&status) {
        return Err(Box::new(google::error(
            400,
            "INVALID_ARGUMENT",
            "error_ratio must be in 0..=1 and error_status in 100..=599",
        )));
    }
    Ok(Fault {
        added_latency: std::time::Duration::from_millis(
            v["added_latency_ms"].as_u64().unwrap_or(0),
        ),
        error_ratio: ratio,
        error_status: status,
    })
}

/// `POST|DELETE /local/image-faults` with `{"image": REF, …the fault}`: the fault is injected
/// into every revision whose ingress container runs image `REF`, those created later included
/// (revision names are generated: a drill cannot name the revision beforehand).
fn local_image_fault(shared: &Shared, method: &str, body: &[u8]) -> HttpResponse {
    let image = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["image"].as_str().map(str::to_owned))
        .filter(|i| !i.is_empty());
    let Some(image) = image else {
        return google::error(400, "INVALID_ARGUMENT", "image is required");
    };
    let fault = match method {
        "DELETE" => None,
        "POST" => match parse_fault(body) {
            Ok(fault) => Some(fault),
            Err(refused) => return *refused,
        },
        _ => return google::error(405, "METHOD_NOT_ALLOWED", "POST or DELETE"),
    };
    let mut s = shared.lock();
    let revisions = run::revisions_running(&s, &image);
    match &fault {
        Some(fault) => s.image_faults.insert(image, fault.clone()),
        None => s.image_faults.remove(&image),
    };
    drop(s);
    for revision in revisions {
        shared.plane.set_fault(&revision, fault.clone());
    }
    HttpResponse::NoContent().finish()
}

/// A control-plane request, parsed.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The resource name (the path after `/v1/` or `/v2/`).
    pub(crate) name: &'a str,
    pub(crate) segments: &'a [&'a str],
    /// `projects/{p}/locations/{l}`.
    pub(crate) location: String,
    pub(crate) query: &'a BTreeMap<String, String>,
    pub(crate) body: Value,
}

impl Request<'_> {
    pub(crate) fn route(&self) -> String {
        format!("no route {} /{}", self.method, self.name)
    }
}

/// Runs the server `build` makes on a thread of its own, in an actix System of its own (the
/// control plane and the registry both serve beside a caller's runtime); returns once it listens.
pub(crate) fn spawn_server(
    name: &str,
    build: impl FnOnce() -> std::io::Result<actix_web::dev::Server> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match build() {
                    Ok(server) => {
                        let _ = tx.send(Ok(()));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv()??;
    Ok(())
}

#[cfg(test)]
mod job_tests;
#[cfg(test)]
mod tests;
