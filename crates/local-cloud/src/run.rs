//! Cloud Run Admin API v2: services (get, patch), revisions (get), run by the [`DataPlane`].
//!
//! Semantics encoded here, with their sources (the field comments are Google's, from
//! `google/cloud/run/v2/*.proto` as shipped in the `google-cloud-run-v2` crate's `model.rs`):
//! - `RevisionTemplate.revision`: "The unique name for the revision. If this field is omitted, it
//!   will be automatically generated based on the Service name." A patch whose template differs
//!   from the service's creates a revision; naming one that exists with another configuration is
//!   refused with 409 "Revision named '…' with different configuration already exists."
//!   (googleapis/google-cloud-python#14259, hashicorp/terraform-provider-google#14569).
//! - `Service.traffic`: "If traffic is empty or not provided, defaults to 100% traffic to the
//!   latest `Ready` Revision."
//! - `Service.reconciling`: "If reconciliation failed, `traffic_statuses`, `observed_generation`,
//!   and `latest_ready_revision` will have the state of the last serving revision … Additional
//!   information on the failure can be found in `terminal_condition` and `conditions`."
//! - `Service.etag`: "May be used to detect modification conflict during updates." A stale etag
//!   is refused with `ABORTED` (HTTP 409), AIP-154 "Resource freshness validation" (changed from
//!   FAILED_PRECONDITION in aip-dev/google.aip.dev#705). Cloud Run's exact message is not
//!   published; ours names both etags. The check and the new etag are one step (under the
//!   state's lock), so of two patches sent with the same etag only the first is accepted.
//! - `Service.annotations` are kept as sent ("should be preserved when modifying objects"), and
//!   `updateMask=annotations` (`UpdateServiceRequest.update_mask`: "The list of fields to be
//!   updated") changes only them: no new generation of the template, no traffic change. Keys in
//!   the namespaces v2 rejects (`run.googleapis.com`, …) are not checked here.
//! - A revision that does not become ready fails the operation with its condition, as Cloud Run
//!   words it: "Revision '…' is not ready and cannot serve traffic. <reason>" (the message
//!   `gcloud run deploy` prints, e.g. "The user-provided container failed to start and listen on
//!   the port defined provided by the PORT=8080 environment variable.").
//! - The ingress container of a multi-container revision is the one that declares `ports`
//!   (Cloud Run "Deploying multiple containers to a service (sidecars)"); only it is run here.
//! - Startup probe defaults when a field is unset: period 10 s, timeout 1 s, failure threshold 3,
//!   initial delay 0 (Cloud Run "Configure container health checks for services").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use google_cloud_run_v2::model::RevisionTemplate;
use serde_json::{Value, json};

use crate::google::{self, LATEST, REVISION, error, found, not_found};
use crate::plane::{Files, HttpProbe, Iam, RevisionSpec, ServiceId, TrafficTarget, parse_service};
use crate::{Entry, Outcome, Request, Shared, State, start_operation};

const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";

pub(crate) fn handle(shared: &Arc<Shared>, s: &mut State, r: Request<'_>) -> HttpResponse {
    match (r.method, r.segments.len()) {
        ("GET", 6) => found(s.services.get(r.name), r.name),
        ("GET", 8) if r.segments[6] == "revisions" => found(s.revisions.get(r.name), r.name),
        ("PATCH", 6) => patch(shared, s, &r),
        _ => error(404, "NOT_FOUND", &r.route()),
    }
}

/// (revision, percent, tag) of each observed traffic entry.
pub(crate) fn summarize(service: &Value) -> Vec<Entry> {
    service["trafficStatuses"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|t| {
                    (
                        str_of(&t["revision"]),
                        t["percent"].as_i64().unwrap_or(0),
                        str_of(&t["tag"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A new opaque etag, quoted as Google's are.
fn etag(s: &mut State) -> Value {
    json!(format!("\"e{}\"", s.tick()))
}

fn template_of(value: &Value) -> Option<RevisionTemplate> {
    serde_json::from_value(value.clone()).ok()
}

/// A generated revision name: `<service>-<generation, 5 digits>-<3 letters>` (the form Cloud Run
/// gives revisions, e.g. `hello-00001-abc`).
fn generated_name(service: &str, generation: i64) -> String {
    let suffix: String = (0..3).map(|_| fastrand::lowercase()).collect();
    format!("{service}-{generation:05}-{suffix}")
}

fn generation(service: &Value) -> i64 {
    service["generation"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// A ready service serving `revision` (created from `template`) to 100% via "latest"; no
/// data plane involved (the stub's starting point).
pub(crate) fn insert_ready(s: &mut State, name: &str, uri: &str, template: Value, revision: &str) {
    let rev_name = format!("{name}/revisions/{revision}");
    let revision_resource = revision_resource(s, name, &rev_name, &template, Ok(()));
    s.revisions.insert(rev_name.clone(), revision_resource);
    let region = parse_service(name).map(|id| id.region).unwrap_or_default();
    let tag = etag(s);
    let mut service = json!({
        "name": name,
        "uid": format!("uid-{region}"),
        "generation": "1",
        "observedGeneration": "1",
        "uri": uri,
        "template": template,
        "traffic": [{"type": LATEST, "percent": 100}],
        "latestReadyRevision": rev_name,
        "latestCreatedRevision": rev_name,
        "reconciling": false,
        "terminalCondition": ready_condition(Ok(())),
        "etag": tag,
    });
    service["trafficStatuses"] = statuses(&service, &[]);
    s.services.insert(name.to_owned(), service);
}

/// The `Ready` condition: succeeded, or failed with `message`.
fn ready_condition(result: Result<(), &str>) -> Value {
    match result {
        Ok(()) => json!({"type": "Ready", "state": "CONDITION_SUCCEEDED"}),
        Err(message) => json!({"type": "Ready", "state": "CONDITION_FAILED",
                               "severity": "ERROR", "message": message}),
    }
}

/// A `Revision` created from `template`: the template's fields (containers, volumes, service
/// account, scaling …) under the revision's name.
fn revision_resource(
    s: &mut State,
    service: &str,
    rev_name: &str,
    template: &Value,
    ready: Result<(), &str>,
) -> Value {
    let mut named = template.clone();
    named["revision"] = json!(short(rev_name));
    s.revision_templates.insert(rev_name.to_owned(), named);
    let mut revision = template.as_object().cloned().unwrap_or_default();
    revision.remove("revision");
    let tick = s.tick();
    revision.insert("name".into(), json!(rev_name));
    revision.insert("uid".into(), json!(format!("uid-{tick}")));
    revision.insert("generation".into(), json!("1"));
    revision.insert("createTime".into(), json!(google::timestamp(tick)));
    revision.insert("service".into(), json!(service));
    revision.insert("reconciling".into(), json!(false));
    revision.insert("conditions".into(), json!([ready_condition(ready)]));
    revision.insert("etag".into(), etag(s));
    Value::Object(revision)
}

/// The observed traffic: each entry of `traffic` with its revision resolved ("latest" is the
/// latest ready revision, as Knative's status.traffic reports it) and its tag's URL.
fn statuses(service: &Value, tag_urls: &[(String, String)]) -> Value {
    let latest = short(service["latestReadyRevision"].as_str().unwrap_or("")).to_owned();
    let entries: Vec<Value> = service["traffic"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let is_latest =
                google::is_enum(&t["type"], 1, LATEST) || str_of(&t["revision"]).is_empty();
            let revision = if is_latest {
                latest.clone()
            } else {
                short(t["revision"].as_str().unwrap_or("")).to_owned()
            };
            let mut status = json!({
                "type": if is_latest { LATEST } else { REVISION },
                "revision": revision,
                "percent": t["percent"].as_i64().unwrap_or(0),
            });
            let tag = str_of(&t["tag"]);
            if !tag.is_empty() {
                status["tag"] = json!(tag);
                if let Some((_, url)) = tag_urls.iter().find(|(t, _)| *t == tag) {
                    status["uri"] = json!(url);
                }
            }
            status
        })
        .collect();
    Value::Array(entries)
}

/// `services.patch`: checks the request against the service as it is, then reconciles in the
/// background (a new revision when the template changed, then the traffic).
fn patch(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let name = r.name;
    let Some(current) = s.services.get(name).cloned() else {
        return not_found(name);
    };
    let body = &r.body;
    // `UpdateService` is `patch: "/v2/{service.name=projects/*/locations/*/services/*}"`, body
    // `service` (google/cloud/run/v2/service.proto): gRPC transcoding takes the name from the URL
    // (google.api.HttpRule), so a body may leave it out, as hashicorp/terraform-provider-google's
    // update does (resourceCloudRunV2ServiceUpdate sends no name).
    if body["name"]
        .as_str()
        .is_some_and(|sent| !sent.is_empty() && sent != name)
    {
        return error(400, "INVALID_ARGUMENT", "service.name must match the URL");
    }
    let sent_etag = body["etag"].as_str().unwrap_or("");
    if !sent_etag.is_empty() && Some(sent_etag) != current["etag"].as_str() {
        return error(
            409,
            "ABORTED",
            &format!(
                "The etag {sent_etag} of service {name} does not match its current etag {}: it was modified since it was read.",
                current["etag"].as_str().unwrap_or("")
            ),
        );
    }
    if r.query.get("updateMask").map(String::as_str) == Some("annotations") {
        return patch_annotations(shared, s, r);
    }
    let mut traffic = body["traffic"].as_array().cloned().unwrap_or_default();
    if traffic.is_empty() {
        traffic = vec![json!({"type": LATEST, "percent": 100})];
    }
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
    let template = if body["template"].is_object() {
        body["template"].clone()
    } else {
        current["template"].clone()
    };
    let Some(typed) = template_of(&template) else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "service.template is not a RevisionTemplate",
        );
    };
    // An empty `revision` asks Cloud Run for a generated name: it is no change by itself. A
    // template equal to the service's creates no revision ("When you deploy to a service or
    // change the configuration of a service, an immutable revision is created", Cloud Run
    // "Manage revisions"; a traffic-only update creates none, `gcloud run services
    // update-traffic`).
    let mut serving = template_of(&current["template"]);
    if typed.revision.is_empty()
        && let Some(serving) = serving.as_mut()
    {
        serving.revision.clear();
    }
    let changed = serving.as_ref() != Some(&typed);
    let new_revision = if !changed {
        None
    } else if typed.revision.is_empty() {
        let mut rev = generated_name(short(name), generation(&current) + 1);
        while s.revisions.contains_key(&format!("{name}/revisions/{rev}")) {
            rev = generated_name(short(name), generation(&current) + 1);
        }
        Some(rev)
    } else {
        let rev = typed.revision.clone();
        match s.revision_templates.get(&format!("{name}/revisions/{rev}")) {
            None => Some(rev),
            // Naming an existing revision with its own configuration creates nothing.
            Some(existing) if template_of(existing).as_ref() == Some(&typed) => None,
            // Revisions are immutable: the name is taken by another configuration. Cloud Run
            // answers 409 (googleapis/google-cloud-python#14259) with status ALREADY_EXISTS
            // (code 6 in the audit log quoted in GoogleCloudPlatform/k8s-config-connector#772)
            // and this message (both sources).
            Some(_) => {
                return error(
                    409,
                    "ALREADY_EXISTS",
                    &format!("Revision named '{rev}' with different configuration already exists."),
                );
            }
        }
    };
    for t in &traffic {
        if google::is_enum(&t["type"], 2, REVISION) {
            let rev = short(t["revision"].as_str().unwrap_or("")).to_owned();
            let known = s.revisions.contains_key(&format!("{name}/revisions/{rev}"));
            if !(known || new_revision.as_deref() == Some(rev.as_str())) {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Revision '{rev}' does not exist."),
                );
            }
        }
    }
    if s.fail_next_operation.is_none() {
        let tag = etag(s);
        if let Some(service) = s.services.get_mut(name) {
            service["etag"] = tag;
            if body["annotations"].is_object() {
                service["annotations"] = body["annotations"].clone();
            }
        }
    }
    let work = reconcile(
        shared.clone(),
        name.to_owned(),
        template,
        Value::Array(traffic),
        new_revision,
    );
    start_operation(shared, s, &r.location, SERVICE_TYPE, work)
}

/// `services.patch?updateMask=annotations` (etag checked by the caller): the new annotations and
/// etag at once; the operation answers the service.
fn patch_annotations(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let mut updated = Value::Null;
    if s.fail_next_operation.is_none() {
        let tag = etag(s);
        if let Some(service) = s.services.get_mut(r.name) {
            service["annotations"] = if r.body["annotations"].is_object() {
                r.body["annotations"].clone()
            } else {
                json!({})
            };
            service["etag"] = tag;
            updated = service.clone();
        }
    }
    start_operation(
        shared,
        s,
        &r.location,
        SERVICE_TYPE,
        async move { Ok(updated) },
    )
}

/// Brings service `name` to `template` and `traffic`: stores the new spec, starts `new_revision`
/// (when the template changed) and routes the traffic once it is ready.
async fn reconcile(
    shared: Arc<Shared>,
    name: String,
    template: Value,
    traffic: Value,
    new_revision: Option<String>,
) -> Outcome {
    let id = parse_service(&name).ok_or((5, format!("{name} is not a service")))?;
    // The new spec, at once.
    let spec = {
        let mut s = shared.lock();
        let tag = etag(&mut s);
        let service = s
            .services
            .get_mut(&name)
            .ok_or((5, format!("{name} was deleted")))?;
        let generation = generation(service) + 1;
        service["generation"] = json!(generation.to_string());
        service["template"] = template.clone();
        service["traffic"] = traffic.clone();
        service["reconciling"] = json!(true);
        service["etag"] = tag;
        match &new_revision {
            Some(rev) => {
                let rev_name = format!("{name}/revisions/{rev}");
                service["latestCreatedRevision"] = json!(rev_name);
                Some(revision_spec(&s, &id, rev, &template))
            }
            None => None,
        }
    };
    if let (Some(rev), Some(spec)) = (&new_revision, spec) {
        let started = match spec {
            Ok(spec) => {
                let fault = shared.lock().image_faults.get(&spec.image).cloned();
                if fault.is_some() {
                    shared.plane.set_fault(&spec.name, fault);
                }
                shared.plane.deploy_revision(spec).await
            }
            Err(message) => Err(message),
        };
        let mut s = shared.lock();
        let rev_name = format!("{name}/revisions/{rev}");
        let resource = revision_resource(
            &mut s,
            &name,
            &rev_name,
            &template,
            started.as_ref().map(|_| ()).map_err(String::as_str),
        );
        s.revisions.insert(rev_name.clone(), resource);
        if let Err(reason) = started {
            let message =
                format!("Revision '{rev}' is not ready and cannot serve traffic. {reason}");
            if let Some(service) = s.services.get_mut(&name) {
                service["reconciling"] = json!(false);
                service["terminalCondition"] = ready_condition(Err(&message));
            }
            return Err((9, message));
        }
        if let Some(service) = s.services.get_mut(&name) {
            service["latestReadyRevision"] = json!(rev_name);
        }
    }
    route(&shared, &id, &name).await
}

/// Routes the service's traffic spec on the data plane and records what it serves.
async fn route(shared: &Arc<Shared>, id: &ServiceId, name: &str) -> Outcome {
    let targets: Vec<TrafficTarget> = {
        let s = shared.lock();
        let service = s
            .services
            .get(name)
            .ok_or((5, format!("{name} was deleted")))?;
        summarize(&json!({"trafficStatuses": statuses(service, &[])}))
            .into_iter()
            .map(|(revision, percent, tag)| TrafficTarget {
                revision,
                percent: u32::try_from(percent).unwrap_or(0),
                tag: (!tag.is_empty()).then_some(tag),
            })
            .collect()
    };
    let urls = shared
        .plane
        .set_traffic(id, &targets)
        .await
        .map_err(|e| (13, format!("routing traffic of {name}: {e:#}")))?;
    let mut s = shared.lock();
    let service = s
        .services
        .get_mut(name)
        .ok_or((5, format!("{name} was deleted")))?;
    service["trafficStatuses"] = statuses(service, &urls);
    service["observedGeneration"] = service["generation"].clone();
    service["reconciling"] = json!(false);
    service["terminalCondition"] = ready_condition(Ok(()));
    let service = service.clone();
    s.traffic_history
        .push((name.to_owned(), summarize(&service)));
    Ok(service)
}

/// Creates service `name` from `template` (Terraform's `google_cloud_run_v2_service`): the data
/// plane's front end with `iam`, then its first revision at 100%. Its URL.
pub(crate) async fn create(
    shared: &Arc<Shared>,
    name: &str,
    mut template: Value,
    listen: std::net::SocketAddr,
    iam: Iam,
) -> anyhow::Result<String> {
    let id = parse_service(name)
        .ok_or_else(|| anyhow::anyhow!("{name}: not projects/*/locations/*/services/*"))?;
    anyhow::ensure!(
        template_of(&template).is_some(),
        "the template of {name} is not a RevisionTemplate"
    );
    let custom_audiences = iam.custom_audiences.clone();
    let uri = shared.plane.add_service(&id, listen, iam).await?;
    let revision = match template["revision"].as_str() {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => generated_name(&id.name, 1),
    };
    template["revision"] = json!(revision);
    {
        let mut s = shared.lock();
        anyhow::ensure!(!s.services.contains_key(name), "{name} exists");
        let tag = etag(&mut s);
        s.services.insert(
            name.to_owned(),
            json!({"name": name, "uid": format!("uid-{}", id.region), "generation": "0",
                   "uri": uri, "customAudiences": custom_audiences, "template": {},
                   "traffic": [], "etag": tag}),
        );
    }
    let traffic = json!([{"type": LATEST, "percent": 100}]);
    reconcile(
        shared.clone(),
        name.to_owned(),
        template,
        traffic,
        Some(revision),
    )
    .await
    .map_err(|(_, message)| anyhow::anyhow!(message))?;
    Ok(uri)
}

/// What the data plane runs for revision `rev` of `template`: its ingress container, with secret
/// env values and volumes resolved from the cloud's Secret Manager.
fn revision_spec(
    s: &State,
    id: &ServiceId,
    rev: &str,
    template: &Value,
) -> Result<RevisionSpec, String> {
    let container = ingress_container(template).ok_or("the template has no container")?;
    let (env, files) = resolve_container(s, &id.project, container, template)?;
    let port = container["ports"][0]["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(8080);
    let probe = &container["startupProbe"];
    let seconds = |v: &Value, default: u64| Duration::from_secs(v.as_u64().unwrap_or(default));
    let startup_probe = probe["httpGet"].is_object().then(|| HttpProbe {
        path: probe["httpGet"]["path"].as_str().unwrap_or("/").to_owned(),
        port: probe["httpGet"]["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(port),
        initial_delay: seconds(&probe["initialDelaySeconds"], 0),
        period: seconds(&probe["periodSeconds"], 10),
        timeout: seconds(&probe["timeoutSeconds"], 1),
        failure_threshold: probe["failureThreshold"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(3),
    });
    Ok(RevisionSpec {
        service: id.clone(),
        name: rev.to_owned(),
        image: str_of(&container["image"]),
        command: strings(&container["command"]),
        args: strings(&container["args"]),
        env,
        files,
        container_port: port,
        startup_probe,
        configuration: id.name.clone(),
    })
}

/// The strings of a JSON array (none when it is not one).
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A container's environment (secret references resolved, as Cloud Run does at instance start:
/// "Environment variables … are resolved at instance startup time", Cloud Run "Configure
/// secrets for services") and its secret volume files, from `template`'s `volumes` (Cloud SQL
/// and other volumes are not emulated).
pub(crate) fn resolve_container(
    s: &State,
    project: &str,
    container: &Value,
    template: &Value,
) -> Result<(Vec<(String, String)>, Files), String> {
    let mut env = Vec::new();
    for e in container["env"].as_array().cloned().unwrap_or_default() {
        let name = str_of(&e["name"]);
        let value = match e["valueSource"]["secretKeyRef"].as_object() {
            Some(reference) => {
                let bytes = secret(
                    s,
                    project,
                    reference
                        .get("secret")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    reference
                        .get("version")
                        .and_then(Value::as_str)
                        .unwrap_or("latest"),
                )?;
                String::from_utf8(bytes).map_err(|_| format!("secret of {name} is not UTF-8"))?
            }
            None => str_of(&e["value"]),
        };
        env.push((name, value));
    }
    let mut files = Vec::new();
    for (path, secret_name, version) in secret_items(container, template)? {
        files.push((path, secret(s, project, &secret_name, &version)?));
    }
    Ok((env, files))
}

/// Each secret volume item the container mounts: (path in the container, secret, version).
fn secret_items(
    container: &Value,
    template: &Value,
) -> Result<Vec<(PathBuf, String, String)>, String> {
    let volumes = template["volumes"].as_array().cloned().unwrap_or_default();
    let mut items = Vec::new();
    for mount in container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(volume) = volumes.iter().find(|v| v["name"] == mount["name"]) else {
            return Err(format!("volume {} is not defined", mount["name"]));
        };
        let Some(secret_volume) = volume["secret"].as_object() else {
            continue; // Cloud SQL and other volumes are not emulated.
        };
        let secret_name = secret_volume
            .get("secret")
            .and_then(Value::as_str)
            .unwrap_or("");
        let dir = PathBuf::from(str_of(&mount["mountPath"]));
        for item in secret_volume
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let version = item["version"].as_str().unwrap_or("latest");
            items.push((
                dir.join(str_of(&item["path"])),
                secret_name.to_owned(),
                version.to_owned(),
            ));
        }
    }
    Ok(items)
}

/// `secret` as a full name: `projects/{p}/secrets/{s}` as given, or `{s}` in `project`.
pub(crate) fn full_secret_name(project: &str, secret: &str) -> String {
    if secret.starts_with("projects/") {
        secret.to_owned()
    } else {
        format!("projects/{project}/secrets/{secret}")
    }
}

/// The files each revision of a service mounts from `secret` at version `latest`, with the
/// payload they show now: what a running instance reads after a version was added (Cloud Run
/// "Configure secrets for services": "When reading a volume, Cloud Run always fetches the secret
/// value from the Secret Manager to use the value with the latest version."). Versions pinned by
/// number never change. (service, revision, files) for every revision that mounts it.
pub(crate) fn latest_files(s: &State, secret: &str) -> Vec<(ServiceId, String, Files)> {
    let mut out = Vec::new();
    for (name, revision) in &s.revisions {
        let Some((service, short_name)) = name.split_once("/revisions/") else {
            continue;
        };
        let Some(id) = parse_service(service) else {
            continue;
        };
        let Some(container) = ingress_container(revision) else {
            continue;
        };
        let mut files = Vec::new();
        for (path, secret_name, version) in secret_items(container, revision).unwrap_or_default() {
            if version == "latest"
                && full_secret_name(&id.project, &secret_name) == secret
                && let Ok(bytes) = self::secret(s, &id.project, &secret_name, "latest")
            {
                files.push((path, bytes));
            }
        }
        if !files.is_empty() {
            out.push((id, short_name.to_owned(), files));
        }
    }
    out
}

/// The short names of the revisions whose ingress container runs `image`.
pub(crate) fn revisions_running(s: &State, image: &str) -> Vec<String> {
    s.revisions
        .iter()
        .filter(|(_, r)| ingress_container(r).is_some_and(|c| c["image"] == image))
        .map(|(name, _)| short(name).to_owned())
        .collect()
}

/// The container that serves: the one that declares `ports`, else the first.
fn ingress_container(template: &Value) -> Option<&Value> {
    let containers = template["containers"].as_array()?;
    containers
        .iter()
        .find(|c| c["ports"].as_array().is_some_and(|p| !p.is_empty()))
        .or_else(|| containers.first())
}

/// The payload of `secret` (`projects/{p}/secrets/{s}` or, in the service's project, `{s}`) at
/// `version` (a number or `latest`).
pub(crate) fn secret(
    s: &State,
    project: &str,
    secret: &str,
    version: &str,
) -> Result<Vec<u8>, String> {
    let full = full_secret_name(project, secret);
    let versions = s
        .secrets
        .get(&full)
        .ok_or_else(|| format!("Secret {full} was not found"))?;
    let index = match version {
        "latest" => versions.len().checked_sub(1),
        n => n.parse::<usize>().ok().and_then(|n| n.checked_sub(1)),
    };
    index
        .and_then(|i| versions.get(i))
        .cloned()
        .ok_or_else(|| format!("Secret version {full}/versions/{version} was not found"))
}
