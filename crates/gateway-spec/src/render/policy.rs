//! Authentication, quota and CORS: the parts of a config that come from the environment rather
//! than from the API.

use std::collections::BTreeMap;

use serde_json::Value;

use super::document::{
    Endpoint, Limit, Management, Metric, OperationQuota, QuotaLimits, Security, SecurityDefinition,
};
use crate::downgrade::Warnings;
use crate::environment::Environment;

/// The quota metric every operation is charged to. Renaming it breaks gateways still serving an
/// older config: the render check refuses (see [`crate::checks::quota_metrics_kept`]).
pub const REQUESTS_METRIC: &str = "requests";
/// The quota limit on [`REQUESTS_METRIC`].
pub const REQUESTS_LIMIT: &str = "requests-per-minute";

/// The consumer spec's operation extension that relaxes the gateway's authentication for one
/// operation: `"api-key"` asks only for the API key (no JWT), so that a browser can open the
/// API reference page (`/docs`, its files and `/openapi.json`) with `?key=`.
pub const GATEWAY_AUTH: &str = "x-gateway-auth";

/// Operation extension of the route table: `true` marks a health probe, which needs only the
/// API key (Cloud Monitoring's uptime check sends an `x-api-key` header and no JWT) and is
/// charged to no quota metric (ESPv2 calls Service Control's AllocateQuota only for methods with
/// `metricCosts`: esp-v2 `src/api_proxy/service_control/request_builder.cc`).
pub const GATEWAY_PROBE: &str = "x-gateway-probe";

fn is_probe(op: &Value) -> bool {
    op.get(GATEWAY_PROBE).and_then(Value::as_bool) == Some(true)
}

/// The `x-google-quota` of an operation: one request, none for a probe.
pub(crate) fn operation_quota(op: &Value) -> OperationQuota {
    OperationQuota {
        metric_costs: if is_probe(op) {
            BTreeMap::new()
        } else {
            BTreeMap::from([(REQUESTS_METRIC, 1)])
        },
    }
}

pub(crate) fn operation_security(
    op: &Value,
    env: &Environment,
    at: &str,
    warnings: &mut Warnings,
) -> Option<Security> {
    let auth = if is_probe(op) {
        Some("api-key")
    } else {
        op.get(GATEWAY_AUTH)?.as_str()
    };
    match auth {
        Some("api-key") => Some(if env.auth.api_key {
            vec![BTreeMap::from([("api_key".to_owned(), Vec::new())])]
        } else {
            vec![]
        }),
        _ => {
            warnings.add(
                at,
                format!("{GATEWAY_AUTH} is not \"api-key\"; the environment's security applies"),
            );
            None
        }
    }
}

pub(crate) fn cors_endpoints(env: &Environment, warnings: &mut Warnings) -> Vec<Endpoint> {
    if env.cors.allow_origins.is_empty() {
        return vec![];
    }
    match &env.managed_service {
        Some(service) => vec![Endpoint {
            name: service.clone(),
            allow_cors: true,
        }],
        None => {
            warnings.add(
                "x-google-endpoints",
                "CORS is configured but managed_service is not set yet (Terraform output \
                 managed_service of the API), so preflight requests are not passed through",
            );
            vec![]
        }
    }
}

pub(crate) fn management(env: &Environment) -> Management {
    Management {
        metrics: vec![Metric {
            name: REQUESTS_METRIC,
            display_name: "Requests",
            value_type: "INT64",
            metric_kind: "DELTA",
        }],
        quota: QuotaLimits {
            limits: vec![Limit {
                name: REQUESTS_LIMIT,
                metric: REQUESTS_METRIC,
                unit: "1/min/{project}",
                values: BTreeMap::from([("STANDARD", env.quota.requests_per_minute)]),
            }],
        },
    }
}

pub(crate) fn security_definitions(env: &Environment) -> BTreeMap<String, SecurityDefinition> {
    let mut out = BTreeMap::new();
    if env.auth.api_key {
        out.insert(
            "api_key".to_owned(),
            SecurityDefinition::ApiKey {
                kind: "apiKey",
                name: "key",
                location: "query",
            },
        );
    }
    for jwt in &env.auth.jwt {
        out.insert(
            jwt.name.clone(),
            SecurityDefinition::Jwt {
                kind: "oauth2",
                // Not used by API Gateway, but Swagger 2.0 requires a URI here.
                authorization_url: if jwt.issuer.starts_with("https://") {
                    jwt.issuer.clone()
                } else {
                    jwt.jwks_uri.clone()
                },
                flow: "implicit",
                issuer: jwt.issuer.clone(),
                jwks_uri: jwt.jwks_uri.clone(),
                audiences: jwt.audiences.join(","),
            },
        );
    }
    out
}

/// An API key (for the per-consumer quota) and, when issuers are configured, a JWT from any one
/// of them: one requirement per issuer, each with the API key.
pub(crate) fn security(env: &Environment) -> Security {
    let api_key = || env.auth.api_key.then(|| ("api_key".to_owned(), Vec::new()));
    if env.auth.jwt.is_empty() {
        return vec![api_key().into_iter().collect()];
    }
    env.auth
        .jwt
        .iter()
        .map(|jwt| {
            api_key()
                .into_iter()
                .chain([(jwt.name.clone(), Vec::new())])
                .collect()
        })
        .collect()
}
