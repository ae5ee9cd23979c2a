//! The rendered API Gateway config (Swagger 2.0 with Google's extensions), read once from its
//! bytes into what the gateway enforces.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::path::{Template, Translation};

/// ESPv2's default backend deadline (`util.DefaultResponseDeadline`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the config is not YAML: {0}")]
    Yaml(String),
    #[error("the config is not Swagger 2.0 (swagger: {0:?})")]
    NotSwagger2(String),
    #[error("{0}")]
    Invalid(String),
}

/// A JWT provider: an `oauth2` security definition with `x-google-issuer`.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub jwks_uri: String,
    /// `x-google-audiences` (comma-separated in the config); `None` when absent.
    pub audiences: Option<Vec<String>>,
    pub locations: Vec<JwtLocation>,
}

/// Where a JWT is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtLocation {
    Header { name: String, prefix: String },
    Query(String),
}

impl JwtLocation {
    /// ESPv2's defaults (`filtergen/jwt_authn.go`, `util/util.go`): `Authorization: Bearer`,
    /// `X-Goog-Iap-Jwt-Assertion`, query `access_token`.
    pub(crate) fn defaults() -> Vec<Self> {
        vec![
            JwtLocation::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            JwtLocation::Header {
                name: "x-goog-iap-jwt-assertion".into(),
                prefix: String::new(),
            },
            JwtLocation::Query("access_token".into()),
        ]
    }
}

/// What an operation requires, from its `security` (or the top-level one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// api-compiler `AuthBuilder.isApiKeyRequired`: only when every alternative has an apiKey
    /// scheme (`[{api_key: []}, {}]` makes the key optional).
    pub api_key: bool,
    /// The JWT providers of the alternatives (`AuthRuleGenerator`); a JWT is required when this
    /// is not empty and any one of them may verify it (esp-v2 `filtergen/jwt_authn.go`
    /// `makeJwtRequirement`: one `requires_any`).
    pub jwt_providers: Vec<String>,
}

/// `x-google-backend`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub address: String,
    pub translation: Translation,
    pub jwt_audience: Option<String>,
    pub disable_auth: bool,
    pub deadline: Duration,
    /// The ID token's audience without `jwt_audience`, from `address`.
    default_audience: String,
}

impl Backend {
    fn parse(v: &Value, default_translation: Translation) -> Result<Self, SpecError> {
        let address = v
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| SpecError::Invalid("x-google-backend without address".into()))?
            .to_owned();
        let translation = match v.get("path_translation").and_then(Value::as_str) {
            Some("APPEND_PATH_TO_ADDRESS") => Translation::AppendPathToAddress,
            Some("CONSTANT_ADDRESS") => Translation::ConstantAddress,
            Some(other) => {
                return Err(SpecError::Invalid(format!(
                    "x-google-backend: unknown path_translation {other:?}"
                )));
            }
            None => default_translation,
        };
        // No deadline, or one ≤ 0, is ESPv2's default (esp-v2 `routegen/util.go`,
        // `routegen/helpers/deadline.go`).
        let deadline = match v.get("deadline").and_then(Value::as_f64) {
            Some(s) if s > 0.0 => Duration::from_secs_f64(s),
            _ => DEFAULT_DEADLINE,
        };
        let default_audience = default_audience(&address);
        Ok(Self {
            address,
            translation,
            jwt_audience: v
                .get("jwt_audience")
                .and_then(Value::as_str)
                .map(str::to_owned),
            disable_auth: v
                .get("disable_auth")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            deadline,
            default_audience,
        })
    }

    /// The path of `address` (`""` when it has none).
    pub fn address_path(&self) -> &str {
        let rest = self
            .address
            .split_once("://")
            .map_or(self.address.as_str(), |(_, r)| r);
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// Scheme and host of `address`: ESPv2's audience when `jwt_audience` is absent.
    pub fn address_origin(&self) -> &str {
        &self.default_audience
    }
}

/// esp-v2 `filtergen/backend_auth.go` `BackendAddressToJWTAud`: `https://<hostname>` when the
/// scheme ends in `s` (TLS, `util.ParseBackendProtocol`), else `http://<hostname>`; no scheme
/// means `https` (`util.ParseURI`); port, user info and path are dropped (Go's `URL.Hostname`).
fn default_audience(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("https", address));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = scheme.to_ascii_lowercase().ends_with('s');
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// One method of one path.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    pub operation_id: String,
    pub backend: Option<Backend>,
    pub requirements: Requirements,
    /// `x-google-quota.metricCosts`.
    pub metric_costs: Vec<(String, i64)>,
}

/// A path template with its operations.
#[derive(Debug, Clone)]
pub struct Route {
    pub template: Template,
    /// By upper-case method.
    pub operations: BTreeMap<String, Operation>,
}

/// `x-google-management.quota.limits[]` (per minute).
#[derive(Debug, Clone)]
pub struct QuotaLimit {
    pub name: String,
    pub metric: String,
    pub per_minute: i64,
}

/// The parsed config.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `host`: the managed service name.
    pub host: Option<String>,
    pub title: String,
    pub version: String,
    /// `x-google-endpoints[]` naming the service with `allowCors: true`.
    pub allow_cors: bool,
    pub routes: Vec<Route>,
    pub providers: BTreeMap<String, Provider>,
    pub limits: Vec<QuotaLimit>,
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

impl Spec {
    /// Parses the bytes of a rendered config.
    pub fn parse(bytes: &[u8]) -> Result<Self, SpecError> {
        let doc: Value =
            yaml_serde::from_slice(bytes).map_err(|e| SpecError::Yaml(e.to_string()))?;
        let swagger = doc.get("swagger").and_then(Value::as_str).unwrap_or("");
        if swagger != "2.0" {
            return Err(SpecError::NotSwagger2(swagger.to_owned()));
        }
        // `x-google-allow: all` lets calls outside the config through with no check
        // ("OpenAPI 2.0 extensions"): not emulated, so refused rather than half-served.
        if let Some(allow) = doc.get("x-google-allow")
            && allow.as_str() != Some("configured")
        {
            return Err(SpecError::Invalid(format!(
                "x-google-allow: {allow} (calls outside the config passed through) is not emulated by the local gateway"
            )));
        }
        let host = doc.get("host").and_then(Value::as_str).map(str::to_owned);
        let allow_cors = allow_cors(&doc, host.as_deref());
        let schemes = Schemes::parse(&doc)?;
        let routes = routes(&doc, &schemes)?;
        let text = |pointer: &str| {
            doc.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            host,
            title: text("/info/title"),
            version: text("/info/version"),
            allow_cors,
            routes,
            providers: schemes.providers,
            limits: limits(&doc),
        })
    }

    /// The service name ESPv2 knows the API by: `host`, or a local stand-in.
    pub fn service_name(&self) -> &str {
        self.host
            .as_deref()
            .unwrap_or("local-gateway.apigateway.local")
    }

    /// The first JWT provider (by name), or the one named.
    pub fn provider(&self, name: Option<&str>) -> Option<&Provider> {
        match name {
            Some(n) => self.providers.get(n),
            None => self.providers.values().next(),
        }
    }
}

/// `x-google-endpoints[]` names the service (`host`) with `allowCors: true`.
fn allow_cors(doc: &Value, host: Option<&str>) -> bool {
    doc.get("x-google-endpoints")
        .and_then(Value::as_array)
        .is_some_and(|eps| {
            eps.iter().any(|ep| {
                ep.get("allowCors").and_then(Value::as_bool) == Some(true)
                    && host.is_some()
                    && ep.get("name").and_then(Value::as_str) == host
            })
        })
}

/// The config's `securityDefinitions`: API key schemes and JWT providers.
struct Schemes {
    providers: BTreeMap<String, Provider>,
    key_schemes: Vec<String>,
}

impl Schemes {
    fn parse(doc: &Value) -> Result<Self, SpecError> {
        let mut providers = BTreeMap::new();
        let mut key_schemes = Vec::new();
        if let Some(defs) = doc.get("securityDefinitions").and_then(Value::as_object) {
            for (name, def) in defs {
                match def.get("type").and_then(Value::as_str) {
                    Some("apiKey") => key_schemes.push(name.clone()),
                    Some("oauth2") => {
                        let Some(issuer) = def.get("x-google-issuer").and_then(Value::as_str)
                        else {
                            continue;
                        };
                        providers.insert(name.clone(), parse_provider(name, issuer, def)?);
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            providers,
            key_schemes,
        })
    }

    /// What a `security` list (at `at`) requires. The lists API Gateway does not deploy are
    /// refused ("OpenAPI 2.0 feature limitations", "Multiple Security Requirements"): an OR
    /// with an API key alternative (an empty `- {}` beside a key is the documented optional
    /// key), two OAuth2 schemes ANDed, an empty requirement beside OAuth2.
    fn requirements(&self, security: &Value, at: &str) -> Result<Requirements, SpecError> {
        let alternatives = security.as_array().cloned().unwrap_or_default();
        let refuse = |why: &str| {
            Err(SpecError::Invalid(format!(
                "{at}: {why}, which API Gateway does not deploy (OpenAPI 2.0 feature limitations)"
            )))
        };
        let objects: Vec<_> = alternatives.iter().filter_map(Value::as_object).collect();
        let has_key =
            |o: &&serde_json::Map<String, Value>| o.keys().any(|s| self.key_schemes.contains(s));
        let jwts = |o: &&serde_json::Map<String, Value>| {
            o.keys().filter(|s| self.providers.contains_key(*s)).count()
        };
        let non_empty = objects.iter().filter(|o| !o.is_empty()).count();
        if non_empty > 1 && objects.iter().any(has_key) {
            return refuse("alternatives (OR) where one has an API key");
        }
        if objects.iter().any(|o| jwts(o) > 1) {
            return refuse("two OAuth2 schemes ANDed in one requirement");
        }
        if objects.len() > non_empty && objects.iter().any(|o| jwts(o) > 0) {
            return refuse("an empty requirement (- {}) beside OAuth2");
        }
        let mut req = Requirements::default();
        let mut every_has_key = !alternatives.is_empty();
        for alternative in &alternatives {
            let Some(schemes) = alternative.as_object() else {
                continue;
            };
            every_has_key &= schemes.keys().any(|s| self.key_schemes.contains(s));
            for scheme in schemes.keys() {
                if self.providers.contains_key(scheme) {
                    if !req.jwt_providers.contains(scheme) {
                        req.jwt_providers.push(scheme.clone());
                    }
                } else if !self.key_schemes.contains(scheme) {
                    return Err(SpecError::Invalid(format!(
                        "security names {scheme:?}, which securityDefinitions lacks"
                    )));
                }
            }
        }
        req.api_key = every_has_key;
        Ok(req)
    }
}

/// Every path template with its operations.
fn routes(doc: &Value, schemes: &Schemes) -> Result<Vec<Route>, SpecError> {
    let top_security = doc.get("security").cloned().unwrap_or(Value::Null);
    // A top-level backend translates APPEND_PATH_TO_ADDRESS and an operation's
    // CONSTANT_ADDRESS when path_translation is absent [not confirmed in the facts; ESPv2's
    // and Google's documented defaults]. Our renderer always sets it explicitly.
    let top_backend = doc
        .get("x-google-backend")
        .map(|b| Backend::parse(b, Translation::AppendPathToAddress))
        .transpose()?;
    let mut routes = Vec::new();
    for (template, item) in doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut operations = BTreeMap::new();
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let backend = match op.get("x-google-backend") {
                Some(b) => Some(Backend::parse(b, Translation::ConstantAddress)?),
                None => top_backend.clone(),
            };
            let metric_costs = op
                .pointer("/x-google-quota/metricCosts")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            let requirements = schemes.requirements(
                op.get("security").unwrap_or(&top_security),
                &format!("paths.{template}.{method}.security"),
            )?;
            operations.insert(
                method.to_ascii_uppercase(),
                Operation {
                    method: method.to_ascii_uppercase(),
                    operation_id: op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    backend,
                    requirements,
                    metric_costs,
                },
            );
        }
        // "API Gateway only supports URL path template parameters that represent entire path
        // segments ... partial segments ... will be rejected" (OpenAPI 2.0 feature limitations).
        if let Some(segment) = template.split('/').find(|s| {
            (s.contains('{') || s.contains('}')) && !(s.starts_with('{') && s.ends_with('}'))
        }) {
            return Err(SpecError::Invalid(format!(
                "paths.{template}: the segment {segment:?} is a partial-segment template, which API Gateway rejects"
            )));
        }
        routes.push(Route {
            template: Template::parse(template),
            operations,
        });
    }
    Ok(routes)
}

/// `x-google-management.quota.limits[]` with a per-minute `STANDARD` value.
fn limits(doc: &Value) -> Vec<QuotaLimit> {
    doc.pointer("/x-google-management/quota/limits")
        .and_then(Value::as_array)
        .map(|limits| {
            limits
                .iter()
                .filter_map(|l| {
                    Some(QuotaLimit {
                        name: l.get("name")?.as_str()?.to_owned(),
                        metric: l.get("metric")?.as_str()?.to_owned(),
                        per_minute: l.pointer("/values/STANDARD")?.as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_provider(name: &str, issuer: &str, def: &Value) -> Result<Provider, SpecError> {
    let jwks_uri = def
        .get("x-google-jwks_uri")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let audiences = def
        .get("x-google-audiences")
        .and_then(Value::as_str)
        .map(|a| {
            a.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
    // x-google-jwt-locations replaces every default location (`jwt_locations_test.go`).
    let locations = match def.get("x-google-jwt-locations").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|l| {
                if let Some(h) = l.get("header").and_then(Value::as_str) {
                    Ok(JwtLocation::Header {
                        name: h.to_ascii_lowercase(),
                        prefix: l
                            .get("value_prefix")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    })
                } else if let Some(q) = l.get("query").and_then(Value::as_str) {
                    Ok(JwtLocation::Query(q.to_owned()))
                } else {
                    Err(SpecError::Invalid(format!(
                        "securityDefinitions.{name}: x-google-jwt-locations entry without header or query"
                    )))
                }
            })
            .collect::<Result<_, _>>()?,
        None => JwtLocation::defaults(),
    };
    Ok(Provider {
        name: name.to_owned(),
        issuer: issuer.to_owned(),
        jwks_uri,
        audiences,
        locations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIDELITY: &[u8] = include_bytes!("../tests/fixtures/fidelity.yaml");

    fn operation<'a>(spec: &'a Spec, template: &str, method: &str) -> &'a Operation {
        let route = spec
            .routes
            .iter()
            .find(|r| r.template.text == template)
            .unwrap_or_else(|| panic!("no route {template}"));
        &route.operations[method]
    }

    fn backend<'a>(spec: &'a Spec, template: &str) -> &'a Backend {
        operation(spec, template, "GET")
            .backend
            .as_ref()
            .expect("x-google-backend")
    }

    #[test]
    fn without_a_deadline_the_backend_gets_espv2s_default_of_15_s() {
        let spec = Spec::parse(FIDELITY).expect("the fixture parses");
        // `/open` has no `deadline`; `/slow` has 0.5.
        assert_eq!(backend(&spec, "/open").deadline, Duration::from_secs(15));
        assert_eq!(backend(&spec, "/slow").deadline, Duration::from_millis(500));
        // 0 and negative deadlines are "not specified" (esp-v2 `routegen/util.go`).
        for deadline in ["0", "-3"] {
            let yaml = format!(
                "swagger: '2.0'\nhost: svc.example\npaths:\n  /a:\n    get:\n      operationId: a\n      x-google-backend:\n        address: https://b.example\n        deadline: {deadline}\n"
            );
            let spec = Spec::parse(yaml.as_bytes()).expect("parses");
            assert_eq!(
                backend(&spec, "/a").deadline,
                DEFAULT_DEADLINE,
                "{deadline}"
            );
        }
        assert_eq!(DEFAULT_DEADLINE, Duration::from_secs(15));
    }

    /// API Gateway's "OpenAPI 2.0 feature limitations" (Multiple Security Requirements, URL
    /// Path Templating): configs it does not deploy are refused when loaded.
    #[test]
    fn configs_api_gateway_does_not_deploy_are_refused() {
        let config = |security: &str, path: &str, extra: &str| {
            format!(
                "swagger: '2.0'\nhost: svc.example\n{extra}securityDefinitions:\n  api_key:\n    type: apiKey\n    name: key\n    in: query\n  a:\n    type: oauth2\n    flow: implicit\n    authorizationUrl: ''\n    x-google-issuer: https://a.example\n  b:\n    type: oauth2\n    flow: implicit\n    authorizationUrl: ''\n    x-google-issuer: https://b.example\npaths:\n  {path}:\n    get:\n      operationId: op\n      security: {security}\n      x-google-backend:\n        address: https://b.example\n        path_translation: APPEND_PATH_TO_ADDRESS\n"
            )
        };
        let refused = |security: &str, path: &str, extra: &str| match Spec::parse(
            config(security, path, extra).as_bytes(),
        ) {
            Err(SpecError::Invalid(m)) => m,
            other => panic!("{security} {path} {extra}: {other:?}"),
        };
        assert!(
            refused("[{api_key: []}, {a: []}]", "/x", "")
                .contains("alternatives (OR) where one has an API key")
        );
        assert!(refused("[{a: [], b: []}]", "/x", "").contains("two OAuth2 schemes ANDed"));
        assert!(
            refused("[{a: []}, {}]", "/x", "")
                .contains("an empty requirement (- {}) beside OAuth2")
        );
        assert!(refused("[]", "/items/item_{id}", "").contains("partial-segment"));
        assert!(refused("[]", "/items/{id}.json", "").contains("partial-segment"));
        assert!(refused("[]", "/x", "x-google-allow: all\n").contains("x-google-allow"));
        // What it deploys loads.
        for (security, key, jwts) in [
            ("[{api_key: [], a: []}]", true, vec!["a"]),
            ("[{a: []}, {b: []}]", false, vec!["a", "b"]),
            ("[{api_key: []}, {}]", false, vec![]),
            ("[{api_key: []}]", true, vec![]),
            ("[]", false, vec![]),
        ] {
            let spec = Spec::parse(
                config(security, "/items/{id}", "x-google-allow: configured\n").as_bytes(),
            )
            .unwrap_or_else(|e| panic!("{security}: {e}"));
            let req = &operation(&spec, "/items/{id}", "GET").requirements;
            assert_eq!(
                (req.api_key, req.jwt_providers.clone()),
                (
                    key,
                    jwts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
                ),
                "{security}"
            );
        }
    }

    #[test]
    fn without_jwt_audience_the_audience_is_the_address_scheme_and_host() {
        let spec = Spec::parse(FIDELITY).expect("the fixture parses");
        let b = backend(&spec, "/no-audience");
        assert_eq!(b.jwt_audience, None);
        assert_eq!(b.address_origin(), "https://other-backend.example.run.app");
        assert_eq!(b.address_path(), "/base/");
        for (address, audience) in [
            ("https://x.run.app", "https://x.run.app"),
            ("https://x.run.app:8443/p?q=1", "https://x.run.app"),
            ("HTTPS://x.run.app/", "https://x.run.app"),
            ("http://10.0.0.1:8080/api", "http://10.0.0.1"),
            ("grpcs://g.example:443", "https://g.example"),
            ("grpc://g.example", "http://g.example"),
            ("x.run.app/p", "https://x.run.app"),
            ("http://[::1]:8080/p", "http://::1"),
        ] {
            assert_eq!(default_audience(address), audience, "{address}");
        }
    }
}
