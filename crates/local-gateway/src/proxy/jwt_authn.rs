//! jwt_authn: the operation's JWT providers, any one of which may pass (Envoy's `jwt_authn`
//! filter, through [`crate::jwt`]).

use std::sync::Arc;

use actix_web::HttpRequest;
use serde_json::Value;

use super::reply::Refusal;
use super::request::header;
use super::state::State;
use crate::jwt::{JwtError, TokenSources, Verified, VerifyContext};
use crate::keys;
use crate::log::Entry;
use crate::spec::Operation;

/// The verified JWT of a request to `operation` (which has JWT providers); or the refusal with
/// its `WWW-Authenticate` challenge.
pub(super) fn authenticate(
    state: &State,
    req: &HttpRequest,
    operation: &Operation,
    query: &[(String, String)],
    entry: &mut Entry,
) -> Result<Arc<Verified>, Refusal> {
    let providers: Vec<_> = operation
        .requirements
        .jwt_providers
        .iter()
        .filter_map(|p| state.spec.providers.get(p))
        .collect();
    let get = |name: &str| header(req, name);
    let sources = TokenSources {
        header: &get,
        query,
    };
    let ctx = VerifyContext {
        service_name: state.spec.host.as_deref(),
        jwks: state.config.jwks.as_ref(),
        now: keys::now_secs(),
    };
    match state.jwt_cache.authenticate(&providers, &sources, &ctx) {
        Ok(v) => {
            entry.jwt_payloads = jwt_payloads(&state.config.log_jwt_payloads, &v.payload);
            Ok(v)
        }
        Err(e) => Err(refusal(req, &e)),
    }
}

/// ESPv2's `jwt_payloads` log field: the claims named by `--log_jwt_payloads` (none by default),
/// as `path=value;` each (esp-v2 `service_control/handler_utils.cc` `fillJwtPayloads`,
/// `extractJwtPayload`: a `.` in a path descends, numbers are truncated to integers, objects
/// and lists are left out).
fn jwt_payloads(paths: &[String], payload: &Value) -> Option<String> {
    let mut out = String::new();
    for path in paths {
        let value = path
            .split('.')
            .try_fold(payload, |v, step| v.as_object()?.get(step));
        match value {
            Some(Value::Null) => out.push_str(&format!("{path}=;")),
            Some(Value::Number(n)) => {
                let n = n.as_f64().unwrap_or_default() as i64;
                out.push_str(&format!("{path}={n};"));
            }
            Some(Value::Bool(b)) => out.push_str(&format!("{path}={b};")),
            Some(Value::String(s)) => out.push_str(&format!("{path}={s};")),
            _ => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

fn refusal(req: &HttpRequest, e: &JwtError) -> Refusal {
    // Envoy `jwt_authn/filter.cc`: realm = the original URI (forwarded proto, host, path with
    // query); error="invalid_token" unless the JWT is missing.
    let uri = format!(
        "{}://{}{}",
        req.connection_info().scheme(),
        header(req, "host").unwrap_or_default(),
        req.uri()
            .path_and_query()
            .map_or_else(|| req.uri().path(), |pq| pq.as_str()),
    );
    let challenge = if *e == JwtError::Missing {
        format!("Bearer realm=\"{uri}\"")
    } else {
        format!("Bearer realm=\"{uri}\", error=\"invalid_token\"")
    };
    // Envoy's detail: `jwt_authn_access_denied{<status text, spaces as _>}`; no error_cause
    // (ESPv2 sets it from Service Control's status only).
    Refusal::new(
        format!(
            "jwt_authn_access_denied{{{}}}",
            e.message().replace(' ', "_")
        ),
        e.status(),
        e.message(),
    )
    .challenge(challenge)
}
