//! jwt_authn: the operation's JWT providers, any one of which may verify the token (Envoy's
//! `jwt_authn` filter, through [`crate::jwt`]).

use std::sync::Arc;

use actix_web::HttpRequest;
use serde_json::json;

use super::reply::Refusal;
use super::request::header;
use super::state::State;
use crate::jwt::{self, JwtError, TokenSources, Verified};
use crate::keys;
use crate::log::Entry;
use crate::spec::Operation;

/// The verified JWT of a request to `operation` (which has JWT providers), recorded in the log
/// entry; or the refusal with its `WWW-Authenticate` challenge.
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
    let result = match jwt::extract(&providers, &sources) {
        None => Err(JwtError::Missing),
        Some(token) => state.jwt_cache.verify(
            &token,
            &providers,
            state.spec.host.as_deref(),
            state.config.jwks.as_ref(),
            keys::now_secs() as i64,
        ),
    };
    match result {
        Ok(v) => {
            entry.jwt_payloads = Some(json!([{
                "issuer": v.payload.get("iss"),
                "subject": v.payload.get("sub"),
                "audiences": v.payload.get("aud"),
            }]));
            Ok(v)
        }
        Err(e) => Err(refusal(req, &e, &entry.url)),
    }
}

/// `url` is the request's path and query, as logged.
fn refusal(req: &HttpRequest, e: &JwtError, url: &str) -> Refusal {
    // Envoy `jwt_authn/filter.cc`: realm = the original URI (forwarded proto, host, path with
    // query); error="invalid_token" unless the JWT is missing.
    let uri = format!(
        "{}://{}{url}",
        req.connection_info().scheme(),
        header(req, "host").unwrap_or_default(),
    );
    let challenge = if *e == JwtError::Missing {
        format!("Bearer realm=\"{uri}\"")
    } else {
        format!("Bearer realm=\"{uri}\", error=\"invalid_token\"")
    };
    Refusal::new(
        format!(
            "jwt_authn_access_denied{{{}}}",
            e.message().replace(' ', "_")
        ),
        e.status(),
        e.message(),
    )
    .cause("JWT")
    .challenge(challenge)
}
