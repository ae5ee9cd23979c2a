//! One environment's API Gateway settings: `deploy/environments/<env>.toml`.
//!
//! Parsing is strict: unknown keys, missing keys, an unsupported region and a malformed URL are
//! errors naming the file and the key (`deploy/environments/dev.toml: regions[1].backend_url: …`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

/// Regions where API Gateway runs.
pub const GATEWAY_REGIONS: [&str; 10] = [
    "asia-northeast1",
    "australia-southeast1",
    "europe-west1",
    "europe-west2",
    "us-east1",
    "us-east4",
    "us-central1",
    "us-west2",
    "us-west3",
    "us-west4",
];

/// A problem with an environment file, naming the file and (when there is one) the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}{sep}{message}", sep = if key.is_empty() { "" } else { ": " })]
pub struct EnvError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// The settings of one environment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The environment's name: the file stem (`dev`), not a key of the file.
    #[serde(skip)]
    pub name: String,
    /// The file it was read from, for messages.
    #[serde(skip)]
    pub file: String,
    pub project_id: String,
    pub api_id: String,
    pub service: String,
    pub gateway_service_account: String,
    pub keep_api_configs: u32,
    /// The API's managed service (`<api_id>-<hash>.apigateway.<project>.cloud.goog`, Terraform
    /// output `managed_service` of the API). Optional until the API exists; when set it becomes
    /// the config's `host` and lets CORS preflights through (`x-google-endpoints`).
    #[serde(default)]
    pub managed_service: Option<String>,
    pub auth: Auth,
    pub quota: Quota,
    pub backend: Backend,
    pub cors: Cors,
    pub regions: Vec<Region>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Require an API key (`?key=`, `?api_key=` or `x-api-key`).
    pub api_key: bool,
    /// Accepted JWT issuers; any one of them will do.
    #[serde(default)]
    pub jwt: Vec<Jwt>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// The security definition's name in the config.
    pub name: String,
    pub issuer: String,
    pub jwks_uri: String,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per minute per consumer project (identified by its API key).
    pub requests_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Seconds API Gateway waits for the backend, unless the operation has its own.
    pub deadline_seconds: f64,
    /// Per-operation deadlines, by operationId.
    #[serde(default)]
    pub deadlines: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub max_age_seconds: u32,
    /// Response headers a page may read (`ETag`, `Location`, `Idempotent-Replayed`). The
    /// gateway passes the service's `Access-Control-*` headers through; this table is also the
    /// service's `cors` settings in the environment (crates/service/src/settings).
    #[serde(default)]
    pub expose_headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub gateway_id: String,
    /// The Cloud Run service's URL in this region (`https://…run.app`, no path).
    pub backend_url: String,
}

impl Environment {
    /// Reads and checks `path`; the environment is named after the file stem.
    pub fn load(path: &Path) -> Result<Self, EnvError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| EnvError {
            file: file.clone(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::parse(&name, &file, &text)
    }

    /// Parses and checks the text of an environment file. `file` only names it in messages.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<Self, EnvError> {
        let error = |key: &str, message: String| EnvError {
            file: file.to_owned(),
            key: key.to_owned(),
            message,
        };
        let de =
            toml::Deserializer::parse(text).map_err(|e| error("", first_reason(&e.to_string())))?;
        let mut env: Environment = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            // toml's message carries a snippet; its first line is the reason.
            error(&key, first_reason(&e.into_inner().to_string()))
        })?;
        env.name = name.to_owned();
        env.file = file.to_owned();
        env.check().map_err(|(key, message)| error(&key, message))?;
        Ok(env)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let err = |key: &str, message: String| Err((key.to_owned(), message));
        if !is_id(&self.name) {
            return err(
                "",
                format!(
                    "the environment name {:?} (the file name) must be lowercase letters, digits and dashes",
                    self.name
                ),
            );
        }
        if !is_id(&self.api_id) {
            return err(
                "api_id",
                format!(
                    "{:?} must be lowercase letters, digits and dashes, starting with a letter",
                    self.api_id
                ),
            );
        }
        // `<api>-<env>-<10 hex>` must fit the 63 characters of an API config id.
        let id_len = self.api_id.len() + self.name.len() + 2 + crate::config_id::HASH_LEN;
        if id_len > 63 {
            return err(
                "api_id",
                format!(
                    "config ids `{}-{}-<hash>` would be {id_len} characters; API Gateway allows 63",
                    self.api_id, self.name
                ),
            );
        }
        for (key, value) in [
            ("project_id", &self.project_id),
            ("service", &self.service),
            ("gateway_service_account", &self.gateway_service_account),
        ] {
            if value.trim().is_empty() {
                return err(key, "must not be empty".to_owned());
            }
        }
        if self.keep_api_configs == 0 || self.keep_api_configs > 100 {
            return err(
                "keep_api_configs",
                format!(
                    "{} is not between 1 and 100 (API Gateway keeps at most 100 configs per API)",
                    self.keep_api_configs
                ),
            );
        }
        if let Some(service) = &self.managed_service {
            let suffix = format!(".apigateway.{}.cloud.goog", self.project_id);
            let prefix = format!("{}-", self.api_id);
            if !service.starts_with(&prefix) || !service.ends_with(&suffix) || service.contains(':')
            {
                return err(
                    "managed_service",
                    format!("{service:?} is not of the form {prefix}<hash>{suffix}"),
                );
            }
        }
        self.check_auth()?;
        if self.quota.requests_per_minute == 0 {
            return err("quota.requests_per_minute", "must be at least 1".to_owned());
        }
        check_deadline("backend.deadline_seconds", self.backend.deadline_seconds)?;
        for (operation, seconds) in &self.backend.deadlines {
            check_deadline(&format!("backend.deadlines.{operation}"), *seconds)?;
        }
        self.check_cors()?;
        self.check_regions()
    }

    fn check_auth(&self) -> Result<(), (String, String)> {
        if !self.auth.api_key {
            // Quotas are counted per consumer project, which only the API key identifies.
            return Err((
                "auth.api_key".to_owned(),
                "must be true: API Gateway counts the per-consumer quota by API key".to_owned(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, jwt) in self.auth.jwt.iter().enumerate() {
            let key = |k: &str| format!("auth.jwt[{i}].{k}");
            if jwt.name.is_empty()
                || jwt.name == "api_key"
                || !jwt
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err((
                    key("name"),
                    format!(
                        "{:?} must be letters, digits, `_` or `-` (and not api_key)",
                        jwt.name
                    ),
                ));
            }
            if !names.insert(&jwt.name) {
                return Err((key("name"), format!("{:?} is used twice", jwt.name)));
            }
            if jwt.issuer.trim().is_empty() {
                return Err((key("issuer"), "must not be empty".to_owned()));
            }
            check_https_url(&jwt.jwks_uri, UrlKind::Any).map_err(|m| (key("jwks_uri"), m))?;
            if jwt.audiences.is_empty() || jwt.audiences.iter().any(|a| a.trim().is_empty()) {
                return Err((
                    key("audiences"),
                    "must list at least one non-empty audience".to_owned(),
                ));
            }
            if jwt.audiences.iter().any(|a| a.contains(',')) {
                return Err((
                    key("audiences"),
                    "an audience must not contain a comma (x-google-audiences is comma-separated)"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }

    fn check_cors(&self) -> Result<(), (String, String)> {
        for (i, origin) in self.cors.allow_origins.iter().enumerate() {
            if origin != "*" {
                check_https_url(origin, UrlKind::Origin)
                    .map_err(|m| (format!("cors.allow_origins[{i}]"), m))?;
            }
        }
        const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        for (i, method) in self.cors.allow_methods.iter().enumerate() {
            if !METHODS.contains(&method.as_str()) {
                return Err((
                    format!("cors.allow_methods[{i}]"),
                    format!("{method:?} is not one of {}", METHODS.join(", ")),
                ));
            }
        }
        for (key, headers) in [
            ("allow_headers", &self.cors.allow_headers),
            ("expose_headers", &self.cors.expose_headers),
        ] {
            for (i, header) in headers.iter().enumerate() {
                if header.is_empty()
                    || !header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err((
                        format!("cors.{key}[{i}]"),
                        format!("{header:?} is not a header name"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_regions(&self) -> Result<(), (String, String)> {
        if self.regions.is_empty() {
            return Err((
                "regions".to_owned(),
                "at least one [[regions]] entry is needed".to_owned(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut gateways = BTreeSet::new();
        for (i, region) in self.regions.iter().enumerate() {
            let key = |k: &str| format!("regions[{i}].{k}");
            if !GATEWAY_REGIONS.contains(&region.name.as_str()) {
                return Err((
                    key("name"),
                    format!(
                        "API Gateway does not run in {:?}; it runs in {}",
                        region.name,
                        GATEWAY_REGIONS.join(", ")
                    ),
                ));
            }
            if !names.insert(&region.name) {
                return Err((key("name"), format!("{:?} is listed twice", region.name)));
            }
            if !is_id(&region.gateway_id) || region.gateway_id.len() > 63 {
                return Err((
                    key("gateway_id"),
                    format!(
                        "{:?} must be lowercase letters, digits and dashes (at most 63), starting with a letter",
                        region.gateway_id
                    ),
                ));
            }
            if !gateways.insert(&region.gateway_id) {
                return Err((
                    key("gateway_id"),
                    format!("{:?} is used twice", region.gateway_id),
                ));
            }
            check_https_url(&region.backend_url, UrlKind::Origin)
                .map_err(|m| (key("backend_url"), m))?;
        }
        Ok(())
    }

    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The deadline of one operation.
    pub fn deadline(&self, operation_id: &str) -> f64 {
        self.backend
            .deadlines
            .get(operation_id)
            .copied()
            .unwrap_or(self.backend.deadline_seconds)
    }
}

/// `[a-z][a-z0-9-]*`, not ending with a dash.
fn is_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_deadline(key: &str, seconds: f64) -> Result<(), (String, String)> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err((
            key.to_owned(),
            format!("{seconds} is not a number of seconds between 0 and 3600"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlKind {
    /// `https://host` with no path, query, fragment or port (a backend or a CORS origin).
    Origin,
    /// Any `https://host/path` without user info or fragment.
    Any,
}

/// A deliberately strict `https` URL check (no `url` dependency for a handful of known shapes).
fn check_https_url(url: &str, kind: UrlKind) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{url:?} is not a valid URL: {why}"));
    let Some(rest) = url.strip_prefix("https://") else {
        return bad("it must start with https://");
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return bad("user info is not allowed");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) || !host.contains('.') {
        return bad("the host name is malformed");
    }
    if let Some(port) = port {
        if kind == UrlKind::Origin {
            return bad("a port is not allowed here");
        }
        if port.parse::<u16>().is_err() {
            return bad("the port is malformed");
        }
    }
    match kind {
        UrlKind::Origin if !path.is_empty() && path != "/" => {
            bad("it must not have a path, query or fragment")
        }
        UrlKind::Any if path.contains('#') || path.contains(char::is_whitespace) => {
            bad("fragments and spaces are not allowed")
        }
        _ => Ok(()),
    }
}

/// toml's message carries a snippet; its last non-empty line is the reason.
fn first_reason(message: &str) -> String {
    message
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = include_str!("../../../deploy/environments/dev.toml");

    fn parse(text: &str) -> Result<Environment, EnvError> {
        Environment::parse("dev", "deploy/environments/dev.toml", text)
    }

    fn message(text: &str) -> String {
        parse(text).expect_err("must fail").to_string()
    }

    #[test]
    fn the_real_environments_parse() {
        for env in ["dev", "stage", "prod"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../deploy/environments/{env}.toml"));
            let parsed = Environment::load(&path).unwrap();
            assert_eq!(parsed.name, env);
            assert!(parsed.regions.len() >= 2);
        }
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = DEV.replace("[quota]", "[quota]\nburst = 3");
        let m = message(&text);
        assert!(m.starts_with("deploy/environments/dev.toml: quota"), "{m}");
        assert!(m.contains("unknown field `burst`"), "{m}");
    }

    #[test]
    fn unknown_top_level_key() {
        let m = message(&format!("colour = \"blue\"\n{DEV}"));
        assert!(m.contains("unknown field `colour`"), "{m}");
    }

    #[test]
    fn missing_key_names_it() {
        let text = DEV.replace("api_id = \"items-api\"\n", "");
        let m = message(&text);
        assert!(m.contains("missing field `api_id`"), "{m}");
    }

    #[test]
    fn unsupported_region() {
        let text = DEV.replace("name = \"us-central1\"", "name = \"us-central2\"");
        let m = message(&text);
        assert!(
            m.starts_with("deploy/environments/dev.toml: regions[1].name: API Gateway does not run in \"us-central2\""),
            "{m}"
        );
    }

    #[test]
    fn malformed_backend_url() {
        for (bad, why) in [
            ("http://items.run.app", "https://"),
            ("https://items.run.app/v1", "path"),
            ("https://items.run.app:8443", "port"),
            ("https://exa mple.run.app", "host"),
            ("https://", "host"),
        ] {
            let text = DEV.replace("https://items-104857600001.europe-west1.run.app", bad);
            let m = message(&text);
            assert!(
                m.starts_with("deploy/environments/dev.toml: regions[0].backend_url: ")
                    && m.contains(why),
                "{bad}: {m}"
            );
        }
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = DEV.replace("requests_per_minute = 600", "requests_per_minute = \"600\"");
        let m = message(&text);
        assert!(
            m.starts_with("deploy/environments/dev.toml: quota.requests_per_minute: "),
            "{m}"
        );
    }

    #[test]
    fn malformed_jwks_uri_and_duplicate_region() {
        let m = message(&DEV.replace(
            "https://www.googleapis.com/service_accounts",
            "ftp://www.googleapis.com/service_accounts",
        ));
        assert!(m.contains("auth.jwt[0].jwks_uri"), "{m}");
        let m = message(&DEV.replace("name = \"us-central1\"", "name = \"europe-west1\""));
        assert!(
            m.contains("regions[1].name: \"europe-west1\" is listed twice"),
            "{m}"
        );
    }

    #[test]
    fn quota_needs_an_api_key() {
        let m = message(&DEV.replace("api_key = true", "api_key = false"));
        assert!(m.contains("auth.api_key: must be true"), "{m}");
    }

    /// `text` with its `managed_service` line set to `value`.
    fn with_managed_service(text: &str, value: &str) -> String {
        text.lines()
            .map(|line| {
                if line.starts_with("managed_service = ") {
                    format!("managed_service = {value:?}")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn bad_deadline_and_managed_service() {
        let m = message(&DEV.replace("list_items = 30.0", "list_items = -1.0"));
        assert!(m.contains("backend.deadlines.list_items"), "{m}");
        let m = message(&with_managed_service(
            DEV,
            "other-1.apigateway.x.cloud.goog",
        ));
        assert!(m.contains("managed_service: "), "{m}");
    }
}
