//! Secret Manager v1, the subset rotations use (REST reference,
//! <https://cloud.google.com/secret-manager/docs/reference/rest>):
//!
//! - `POST /v1/projects/{p}/secrets?secretId=S` (`secrets.create`; replication is not modelled),
//!   `GET /v1/projects/{p}/secrets/{s}`;
//! - `POST /v1/projects/{p}/secrets/{s}:addVersion` with `{"payload": {"data": BASE64,
//!   "dataCrc32c": "N"}}` → the new `SecretVersion` (`name` …`/versions/{n}`, numbered from 1,
//!   `state` `ENABLED`); a `dataCrc32c` that does not match the data is refused (the field's
//!   doc: "If specified, SecretManagerService will verify the integrity of the received data");
//! - `GET …/versions` (`versions.list`, newest first: "sorted in reverse by create_time"),
//!   `GET …/versions/{v}`, `GET …/versions/{v}:access` → `{"name", "payload": {"data",
//!   "dataCrc32c"}}`; `{v}` is a number or `latest` ("the most recently created
//!   SecretVersion"), and the answer names the version number it resolved to.
//! - A missing secret: 404 `Secret [NAME] not found or has no versions.`; a missing version:
//!   404 `Secret Version [NAME] not found.` (gcloud's `NOT_FOUND: …` output as captured in
//!   public scripts).
//!
//! Adding a version makes every revision that mounts the secret at `latest` as a volume see it
//! in its running instances (`run::latest_files`); env-var secrets and pinned versions stay as
//! they were. Where it stops: no disabling or destroying of versions, no IAM, no replication,
//! no etags on versions; names keep the project id (Google answers with the project number).

use std::sync::Arc;

use actix_web::HttpResponse;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::google::{self, error};
use crate::{Request, Shared, State};

pub(crate) fn handle(shared: &Arc<Shared>, s: &mut State, r: Request<'_>) -> HttpResponse {
    // projects/{p}/secrets[/{s}[/versions[/{v}]]], the last segment possibly with `:verb`.
    let (path, verb) = match r.name.rsplit_once(':') {
        Some((path, verb)) if !verb.contains('/') => (path, Some(verb)),
        _ => (r.name, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    match (r.method, segments.len(), verb) {
        ("POST", 3, None) => create(s, path, r.query.get("secretId"), &r.body),
        ("GET", 4, None) => secret_resource(s, path),
        ("POST", 4, Some("addVersion")) => add_version(shared, s, path, &r.body),
        ("GET", 5, None) if segments[4] == "versions" => list(s, &segments[..4].join("/")),
        ("GET", 6, None) if segments[4] == "versions" => match version(s, path) {
            Ok((name, _)) => HttpResponse::Ok().json(version_resource(&name)),
            Err(refused) => *refused,
        },
        ("GET", 6, Some("access")) if segments[4] == "versions" => match version(s, path) {
            Ok((name, data)) => HttpResponse::Ok().json(json!({
                "name": name,
                "payload": {
                    "data": base64::engine::general_purpose::STANDARD.encode(&data),
                    "dataCrc32c": crc32c(&data).to_string(),
                },
            })),
            Err(refused) => *refused,
        },
        _ => error(404, "NOT_FOUND", &r.route()),
    }
}

fn missing_secret(name: &str) -> HttpResponse {
    error(
        404,
        "NOT_FOUND",
        &format!("Secret [{name}] not found or has no versions."),
    )
}

fn secret_resource(s: &State, name: &str) -> HttpResponse {
    if !s.secrets.contains_key(name) {
        return missing_secret(name);
    }
    HttpResponse::Ok().json(json!({"name": name, "replication": {"automatic": {}}}))
}

fn create(s: &mut State, parent: &str, id: Option<&String>, body: &Value) -> HttpResponse {
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        return error(400, "INVALID_ARGUMENT", "secretId is required");
    };
    let name = format!("{parent}/{id}");
    if s.secrets.contains_key(&name) {
        return error(
            409,
            "ALREADY_EXISTS",
            &format!("Secret [{name}] already exists."),
        );
    }
    s.secrets.insert(name.clone(), Vec::new());
    let mut secret = json!({"name": name, "replication": {"automatic": {}}});
    if body["labels"].is_object() {
        secret["labels"] = body["labels"].clone();
    }
    HttpResponse::Ok().json(secret)
}

fn version_resource(name: &str) -> Value {
    let number: u64 = name
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    json!({"name": name, "createTime": google::timestamp(number), "state": "ENABLED"})
}

/// `secrets.addVersion`; the versions the secret's `latest` mounts show change with it.
fn add_version(shared: &Arc<Shared>, s: &mut State, secret: &str, body: &Value) -> HttpResponse {
    if !s.secrets.contains_key(secret) {
        return missing_secret(secret);
    }
    let Some(data) = body["payload"]["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
    else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "payload.data must be base64-encoded bytes",
        );
    };
    if let Some(sent) = body["payload"]["dataCrc32c"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            body["payload"]["dataCrc32c"]
                .as_i64()
                .map(|n| n.to_string())
        })
        && sent != crc32c(&data).to_string()
    {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Checksum mismatch: payload.data_crc32c does not match the data.",
        );
    }
    let versions = s.secrets.entry(secret.to_owned()).or_default();
    versions.push(data);
    let name = format!("{secret}/versions/{}", versions.len());
    for (service, revision, files) in crate::run::latest_files(s, secret) {
        shared.plane.update_files(&service, &revision, files);
    }
    HttpResponse::Ok().json(version_resource(&name))
}

fn list(s: &State, secret: &str) -> HttpResponse {
    let Some(versions) = s.secrets.get(secret) else {
        return missing_secret(secret);
    };
    let listed: Vec<Value> = (1..=versions.len())
        .rev()
        .map(|n| version_resource(&format!("{secret}/versions/{n}")))
        .collect();
    HttpResponse::Ok().json(json!({"versions": listed, "totalSize": versions.len()}))
}

/// `…/versions/{n|latest}` → (the version's name with its number, its payload).
fn version(s: &State, name: &str) -> Result<(String, Vec<u8>), Box<HttpResponse>> {
    let (secret, wanted) = name
        .rsplit_once("/versions/")
        .ok_or_else(|| Box::new(error(404, "NOT_FOUND", "no such version")))?;
    let versions = s
        .secrets
        .get(secret)
        .filter(|v| !v.is_empty() || wanted != "latest")
        .ok_or_else(|| Box::new(missing_secret(secret)))?;
    let number = match wanted {
        "latest" => versions.len(),
        n => n.parse::<usize>().unwrap_or(0),
    };
    match number.checked_sub(1).and_then(|i| versions.get(i)) {
        Some(data) => Ok((format!("{secret}/versions/{number}"), data.clone())),
        None => Err(Box::new(error(
            404,
            "NOT_FOUND",
            &format!("Secret Version [{name}] not found."),
        ))),
    }
}

/// CRC32C (Castagnoli), the checksum Secret Manager's `dataCrc32c` carries.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
