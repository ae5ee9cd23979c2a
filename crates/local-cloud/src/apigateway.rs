//! API Gateway v1: configs (create, get, list, delete) and gateways (get, patch), served by the
//! [`GatewayPlane`](crate::GatewayPlane).
//!
//! From the API's reference (apigateway.googleapis.com v1, `ApiConfig`, `Gateway`): configs are
//! created from base64 `openapiDocuments` with a `gatewayServiceAccount`; a gateway is re-pointed
//! with `PATCH …?updateMask=apiConfig`; both are long-running operations. A config a gateway
//! serves cannot be deleted. Configs are created one at a time (docs/GUIDE's checked facts); a
//! second create while one runs is refused here.

use std::sync::Arc;

use actix_web::HttpResponse;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::google::{error, found, not_found, timestamp};
use crate::{Request, Shared, State, start_operation};

const GATEWAY_TYPE: &str = "type.googleapis.com/google.cloud.apigateway.v1.Gateway";
const CONFIG_TYPE: &str = "type.googleapis.com/google.cloud.apigateway.v1.ApiConfig";
const EMPTY_TYPE: &str = "type.googleapis.com/google.protobuf.Empty";

pub(crate) fn handle(shared: &Arc<Shared>, s: &mut State, r: Request<'_>) -> HttpResponse {
    let configs = r.segments.get(6) == Some(&"configs");
    match (r.segments[4], r.method, r.segments.len()) {
        ("gateways", "GET", 6) => found(s.gateways.get(r.name), r.name),
        ("gateways", "PATCH", 6) => patch_gateway(shared, s, &r),
        ("apis", "GET", 7) if configs => {
            let prefix = format!("{}/", r.name);
            let list: Vec<Value> = s
                .configs
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            HttpResponse::Ok().json(json!({"apiConfigs": list}))
        }
        ("apis", "GET", 8) if configs => found(s.configs.get(r.name), r.name),
        ("apis", "POST", 7) if configs => create_config(shared, s, &r),
        ("apis", "DELETE", 8) if configs => delete_config(shared, s, &r),
        _ => error(404, "NOT_FOUND", &r.route()),
    }
}

pub(crate) fn insert_gateway(s: &mut State, name: &str, config: &str, hostname: &str) {
    s.gateways.insert(
        name.to_owned(),
        json!({"name": name, "apiConfig": config, "state": "ACTIVE", "defaultHostname": hostname}),
    );
}

/// An ACTIVE config `name` holding one OpenAPI document.
pub(crate) fn insert_config(
    s: &mut State,
    name: &str,
    file_name: &str,
    document: &[u8],
    account: &str,
) {
    let tick = 10_000 + s.tick();
    s.configs.insert(
        name.to_owned(),
        json!({
            "name": name,
            "state": "ACTIVE",
            "createTime": timestamp(tick),
            "gatewayServiceAccount": account,
            "openapiDocuments": [{"document": {"path": file_name,
                "contents": base64::engine::general_purpose::STANDARD.encode(document)}}],
        }),
    );
}

/// The first OpenAPI document of config `name`, decoded.
fn document(s: &State, name: &str) -> Option<Vec<u8>> {
    let config = s.configs.get(name)?;
    let contents = config["openapiDocuments"][0]["document"]["contents"].as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(contents)
        .ok()
}

fn patch_gateway(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let mask = r.query.get("updateMask").cloned().unwrap_or_default();
    if !mask
        .split(',')
        .any(|m| m == "apiConfig" || m == "api_config")
    {
        return error(400, "INVALID_ARGUMENT", "updateMask must name apiConfig");
    }
    let Some(config) = r.body["apiConfig"].as_str().map(str::to_owned) else {
        return error(400, "INVALID_ARGUMENT", "apiConfig is required");
    };
    if !s.gateways.contains_key(r.name) {
        return not_found(r.name);
    }
    let gateway = r.name.to_owned();
    let shared2 = shared.clone();
    let work = async move {
        let doc = {
            let s = shared2.lock();
            // A config added without a document (`LocalCloud::add_config`) is served as it is.
            document(&s, &config).or_else(|| s.configs.contains_key(&config).then(Vec::new))
        };
        let Some(doc) = doc else {
            return Err((5, format!("API config {config} not found")));
        };
        let hostname = shared2
            .gateways
            .serve(&gateway, &doc)
            .await
            .map_err(|e| (13, format!("serving {config} on {gateway}: {e:#}")))?;
        let mut s = shared2.lock();
        let gw = s
            .gateways
            .get_mut(&gateway)
            .ok_or((5, format!("{gateway} was deleted")))?;
        gw["apiConfig"] = json!(config);
        if let Some(hostname) = hostname {
            gw["defaultHostname"] = json!(hostname);
        }
        Ok(gw.clone())
    };
    start_operation(shared, s, &r.location, GATEWAY_TYPE, work)
}

fn create_config(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let Some(id) = r.query.get("apiConfigId").cloned() else {
        return error(400, "INVALID_ARGUMENT", "apiConfigId is required");
    };
    let config_name = format!("{}/{id}", r.name);
    if s.configs.contains_key(&config_name) {
        return error(
            409,
            "ALREADY_EXISTS",
            &format!("Resource '{config_name}' already exists"),
        );
    }
    if s.running(CONFIG_TYPE) {
        return error(409, "ABORTED", "another API config is being created");
    }
    let documents = r.body["openapiDocuments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(first) = documents.first() else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "openapiDocuments[0].document.contents is required",
        );
    };
    let Some(yaml) = first["document"]["contents"]
        .as_str()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
    else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "openapiDocuments[0].document.contents must be base64",
        );
    };
    if !String::from_utf8_lossy(&yaml).contains("swagger") {
        return error(400, "INVALID_ARGUMENT", "not an OpenAPI 2.0 document");
    }
    let account = r.body["gatewayServiceAccount"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    if account.is_empty() {
        return error(400, "INVALID_ARGUMENT", "gatewayServiceAccount is required");
    }
    let file_name = first["document"]["path"].as_str().unwrap_or("").to_owned();
    let shared2 = shared.clone();
    let work = async move {
        let mut s = shared2.lock();
        insert_config(&mut s, &config_name, &file_name, &yaml, &account);
        Ok(s.configs[&config_name].clone())
    };
    start_operation(shared, s, &r.location, CONFIG_TYPE, work)
}

fn delete_config(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    if !s.configs.contains_key(r.name) {
        return not_found(r.name);
    }
    if s.gateways.values().any(|g| g["apiConfig"] == json!(r.name)) {
        return error(
            400,
            "FAILED_PRECONDITION",
            &format!("{} is used by a gateway", r.name),
        );
    }
    let config = r.name.to_owned();
    let shared2 = shared.clone();
    let work = async move {
        shared2.lock().configs.remove(&config);
        Ok(json!({}))
    };
    start_operation(shared, s, &r.location, EMPTY_TYPE, work)
}

/// Creates `gateway` serving `config` (Terraform's `google_api_gateway_gateway`); its hostname.
pub(crate) async fn create_gateway(
    shared: &Arc<Shared>,
    gateway: &str,
    config: &str,
) -> anyhow::Result<String> {
    let doc = document(&shared.lock(), config)
        .ok_or_else(|| anyhow::anyhow!("API config {config} does not exist"))?;
    let hostname = shared
        .gateways
        .serve(gateway, &doc)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{gateway} got no hostname"))?;
    insert_gateway(&mut shared.lock(), gateway, config, &hostname);
    Ok(hostname)
}
