//! `cargo xtask failover` against a stand-in of the two Google APIs it calls, built from their
//! REST references (the citations are in `xtask/release/src/failover.rs`'s module comment):
//! - Compute Engine v1: `backendServices.get`/`patch` with the `fingerprint` lock (a stale one is
//!   412 conditionNotMet), `regionNetworkEndpointGroups.get`, `globalOperations.get`;
//! - Cloud SQL Admin v1: `instances.get`, `instances.promoteReplica` (query `failover`, empty body),
//!   `operations.get`.
//!
//! Where the stand-in stops: operations are DONE on their second read (Google's take seconds to
//! minutes); a patch's other merge-patch fields, IAM and quota are not modelled; the promoted
//! instance's state is the only effect of a promotion.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

const PROJECT: &str = "items-prod-4821";
const SERVICE: &str = "items-prod-gateways";
const COMPUTE: &str = "https://www.googleapis.com/compute/v1";

fn neg_link(region: &str) -> String {
    format!(
        "{COMPUTE}/projects/{PROJECT}/regions/{region}/networkEndpointGroups/items-prod-{region}"
    )
}

#[derive(Default)]
struct Google {
    backends: Vec<String>,
    fingerprint: u32,
    /// Operation name → reads so far.
    operations: Vec<(String, u32, Option<String>)>,
    replica_type: String,
    promoted_with_failover: Option<bool>,
    /// The error the next promotion's operation ends with.
    promote_error: Option<String>,
    patches: u32,
    /// Someone else changes the backend service right after each read (a concurrent drain of
    /// asia-northeast1).
    concurrent_change: bool,
}

type Shared = Arc<Mutex<Google>>;

fn error(status: u16, reason: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
        "error": { "code": status, "message": message, "errors": [{ "reason": reason, "message": message }] }
    }))
}

fn operation(g: &mut Google, kind: &str, error: Option<String>) -> Value {
    let name = format!("operation-{kind}-{}", g.operations.len());
    g.operations.push((name.clone(), 0, error));
    json!({ "kind": "compute#operation", "name": name, "status": "RUNNING" })
}

async fn backend_service(g: web::Data<Shared>, path: web::Path<(String, String)>) -> HttpResponse {
    let mut g = g.lock().unwrap();
    if path.1 != SERVICE {
        return error(
            404,
            "notFound",
            &format!(
                "The resource 'projects/{PROJECT}/global/backendServices/{}' was not found",
                path.1
            ),
        );
    }
    let backends: Vec<Value> = g.backends.iter().map(|b| json!({ "group": b })).collect();
    let body = json!({
        "name": SERVICE, "backends": backends, "fingerprint": format!("fp{}", g.fingerprint)
    });
    if g.concurrent_change {
        let other = neg_link("asia-northeast1");
        g.backends.retain(|b| *b != other);
        g.fingerprint += 1;
    }
    HttpResponse::Ok().json(body)
}

async fn patch_backend_service(g: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    let mut g = g.lock().unwrap();
    if body["fingerprint"].as_str() != Some(&format!("fp{}", g.fingerprint)) {
        return error(
            412,
            "conditionNotMet",
            "Supplied fingerprint does not match current metadata fingerprint.",
        );
    }
    g.backends = body["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["group"].as_str().unwrap().to_owned())
        .collect();
    g.fingerprint += 1;
    g.patches += 1;
    let op = operation(&mut g, "patch", None);
    HttpResponse::Ok().json(op)
}

async fn neg(path: web::Path<(String, String, String)>) -> HttpResponse {
    let (_, region, name) = path.into_inner();
    if name != format!("items-prod-{region}") {
        return error(404, "notFound", "not found");
    }
    HttpResponse::Ok().json(json!({ "name": name, "selfLink": neg_link(&region) }))
}

/// Compute's `globalOperations.get` and Cloud SQL's `operations.get`: DONE on the second read.
async fn get_operation(g: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("op").unwrap().to_owned();
    let mut g = g.lock().unwrap();
    let Some(op) = g.operations.iter_mut().find(|o| o.0 == name) else {
        return error(404, "notFound", "operation not found");
    };
    op.1 += 1;
    let mut body = json!({ "name": op.0, "status": if op.1 >= 2 { "DONE" } else { "RUNNING" } });
    if op.1 >= 2
        && let Some(message) = &op.2
    {
        body["error"] = json!({ "errors": [{ "code": "INTERNAL_ERROR", "message": message }] });
    }
    HttpResponse::Ok().json(body)
}

async fn instance(g: web::Data<Shared>, path: web::Path<(String, String)>) -> HttpResponse {
    let g = g.lock().unwrap();
    if path.1 != "items-prod-dr" {
        return error(
            404,
            "instanceDoesNotExist",
            "The Cloud SQL instance does not exist.",
        );
    }
    HttpResponse::Ok().json(json!({
        "name": "items-prod-dr", "instanceType": g.replica_type, "state": "RUNNABLE",
        "region": "us-central1", "masterInstanceName": "items-prod-4821:items-prod"
    }))
}

async fn promote(g: web::Data<Shared>, query: web::Query<Vec<(String, String)>>) -> HttpResponse {
    let mut g = g.lock().unwrap();
    let failover = query.iter().any(|(k, v)| k == "failover" && v == "true");
    g.promoted_with_failover = Some(failover);
    let failure = g.promote_error.take();
    if failure.is_none() {
        g.replica_type = "CLOUD_SQL_INSTANCE".into();
    }
    let mut op = operation(&mut g, "promote", failure);
    op["kind"] = json!("sql#operation");
    op["operationType"] = json!("PROMOTE_REPLICA");
    HttpResponse::Ok().json(op)
}

/// Starts the stand-in; returns its base URL and state.
fn google(regions: &[&str]) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Google {
        backends: regions.iter().map(|r| neg_link(r)).collect(),
        replica_type: "READ_REPLICA_INSTANCE".into(),
        ..Google::default()
    }));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let data = web::Data::new(state.clone());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route(
                        "/compute/v1/projects/{p}/global/backendServices/{s}",
                        web::get().to(backend_service),
                    )
                    .route(
                        "/compute/v1/projects/{p}/global/backendServices/{s}",
                        web::patch().to(patch_backend_service),
                    )
                    .route(
                        "/compute/v1/projects/{p}/regions/{r}/networkEndpointGroups/{n}",
                        web::get().to(neg),
                    )
                    .route(
                        "/compute/v1/projects/{p}/global/operations/{op}",
                        web::get().to(get_operation),
                    )
                    .route("/v1/projects/{p}/instances/{i}", web::get().to(instance))
                    .route(
                        "/v1/projects/{p}/instances/{i}/promoteReplica",
                        web::post().to(promote),
                    )
                    .route(
                        "/v1/projects/{p}/operations/{op}",
                        web::get().to(get_operation),
                    )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    (url, state)
}

fn failover(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask-release"))
        .arg("failover")
        .args(args)
        .args(["--env", "prod", "--anonymous", "--poll-interval-ms", "10"])
        .args(["--compute-endpoint", url, "--sqladmin-endpoint", url])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const REGIONS: [&str; 3] = ["europe-west1", "us-central1", "asia-northeast1"];

#[test]
fn drain_removes_only_that_region_and_restore_puts_it_back() {
    let (url, g) = google(&REGIONS);
    let out = failover(&url, &["drain", "--region", "us-central1", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        g.lock().unwrap().backends,
        vec![neg_link("europe-west1"), neg_link("asia-northeast1")]
    );
    assert!(
        text(&out).contains("global_lb_drained_regions = [\"us-central1\"]"),
        "{}",
        text(&out)
    );

    // Again: nothing to do, nothing sent.
    let out = failover(&url, &["drain", "--region", "us-central1", "--yes"]);
    assert!(
        out.status.success() && text(&out).contains("nothing to drain"),
        "{}",
        text(&out)
    );
    assert_eq!(g.lock().unwrap().patches, 1);

    let out = failover(&url, &["restore", "--region", "us-central1", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let backends = g.lock().unwrap().backends.clone();
    assert_eq!(backends.len(), 3);
    assert!(backends.contains(&neg_link("us-central1")));
}

#[test]
fn the_last_region_is_never_drained() {
    let (url, g) = google(&["europe-west1"]);
    let out = failover(&url, &["drain", "--region", "europe-west1", "--yes"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("last region"), "{}", text(&out));
    assert_eq!(g.lock().unwrap().patches, 0);
}

#[test]
fn a_change_made_since_the_read_is_not_overwritten() {
    let (url, g) = google(&REGIONS);
    g.lock().unwrap().concurrent_change = true;
    let out = failover(&url, &["drain", "--region", "us-central1", "--yes"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("412") && text(&out).contains("changed since it was read"),
        "{}",
        text(&out)
    );
    // The concurrent drain stands; us-central1 is still served.
    assert_eq!(
        g.lock().unwrap().backends,
        vec![neg_link("europe-west1"), neg_link("us-central1")]
    );
}

#[test]
fn without_a_terminal_or_yes_nothing_changes() {
    let (url, g) = google(&REGIONS);
    let out = failover(&url, &["drain", "--region", "us-central1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("pass --yes"), "{}", text(&out));
    let out = failover(&url, &["promote-replica"]);
    assert!(!out.status.success());
    let g = g.lock().unwrap();
    assert_eq!((g.patches, g.promoted_with_failover), (0, None));
}

#[test]
fn an_unknown_region_is_refused_naming_the_known_ones() {
    let (url, _) = google(&REGIONS);
    let out = failover(&url, &["drain", "--region", "europe-west9", "--yes"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("europe-west1, us-central1, asia-northeast1"),
        "{}",
        text(&out)
    );
}

#[test]
fn promote_replica_waits_for_the_operation_and_refuses_a_primary() {
    let (url, g) = google(&REGIONS);
    let out = failover(&url, &["promote-replica", "--failover", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(g.lock().unwrap().promoted_with_failover, Some(true));
    // Now a primary: a second promotion is refused before anything is sent.
    g.lock().unwrap().promoted_with_failover = None;
    let out = failover(&url, &["promote-replica", "--yes"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not a read replica"), "{}", text(&out));
    assert_eq!(g.lock().unwrap().promoted_with_failover, None);
}

#[test]
fn a_failed_promotion_is_reported_with_googles_error() {
    let (url, g) = google(&REGIONS);
    g.lock().unwrap().promote_error = Some("The replica is not in a state to be promoted.".into());
    let out = failover(&url, &["promote-replica", "--yes"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("The replica is not in a state to be promoted."),
        "{}",
        text(&out)
    );
    assert_eq!(g.lock().unwrap().promoted_with_failover, Some(false));
}
