//! JWT authentication as Envoy's jwt_authn filter does it in ESPv2: extraction from the
//! provider's locations, then parse → issuer → `nbf`/`exp` (60 s clock skew) → audience →
//! signature against the provider's JWKS (envoy `authenticator.cc`), with jwt_verify_lib's
//! messages (`src/status.cc`) and Envoy's statuses (only an audience mismatch is 403).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::keys::{SigningKey, install_crypto_provider};
use crate::spec::{JwtLocation, Provider};

/// Envoy's default clock skew.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Why a request's JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    /// Any other failure, with jwt_verify_lib's message.
    Invalid(&'static str),
    AudienceNotAllowed,
}

impl JwtError {
    pub fn status(&self) -> u16 {
        match self {
            JwtError::AudienceNotAllowed => 403,
            _ => 401,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtError::Invalid(m) => m,
        }
    }
}

/// A verified JWT.
#[derive(Debug, Clone)]
pub struct Verified {
    pub provider: String,
    /// The payload segment as sent (base64url, unpadded): `X-Apigateway-Api-Userinfo`.
    pub payload_segment: String,
    pub payload: Value,
    nbf: i64,
    exp: i64,
}

/// jwt_verify_lib's `verifyTimeConstraint`: `nbf` and `exp` with the clock skew.
fn check_time(nbf: i64, exp: i64, now: i64) -> Result<(), JwtError> {
    if now + CLOCK_SKEW_SECS < nbf {
        return Err(JwtError::Invalid("Jwt not yet valid"));
    }
    if exp != 0 && now > exp + CLOCK_SKEW_SECS {
        return Err(JwtError::Invalid("Jwt is expired"));
    }
    Ok(())
}

/// Verified tokens, as Envoy's JWT cache keeps them (ESPv2 `--jwt_cache_size`, default 1000):
/// a hit skips parsing and the signature but checks `nbf`/`exp` again.
#[derive(Debug, Default)]
pub struct Cache {
    entries: std::sync::Mutex<HashMap<String, std::sync::Arc<Verified>>>,
}

/// ESPv2's default `--jwt_cache_size`.
const CACHE_SIZE: usize = 1000;

impl Cache {
    /// [`verify`], through the cache.
    pub fn verify(
        &self,
        token: &str,
        providers: &[&Provider],
        service_name: Option<&str>,
        jwks: &dyn JwksSource,
        now: i64,
    ) -> Result<std::sync::Arc<Verified>, JwtError> {
        let hit = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .filter(|v| providers.iter().any(|p| p.name == v.provider))
            .cloned();
        if let Some(v) = hit {
            check_time(v.nbf, v.exp, now)?;
            return Ok(v);
        }
        let verified = std::sync::Arc::new(verify(token, providers, service_name, jwks, now)?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_SIZE {
            entries.clear();
        }
        entries.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }
}

/// Where JWKS documents come from. Locally a config's `x-google-jwks_uri` is answered by the
/// local issuer; a test can make a URI fail ("Jwks remote fetch is failed").
pub trait JwksSource: Send + Sync + std::fmt::Debug {
    fn fetch(&self, uri: &str) -> Result<JwkSet, String>;
}

/// Every URI answers with the local issuer's JWKS, except those marked unreachable.
#[derive(Debug, Clone)]
pub struct LocalJwks {
    jwks: JwkSet,
    unreachable: Vec<String>,
    overrides: HashMap<String, JwkSet>,
}

impl Default for LocalJwks {
    fn default() -> Self {
        Self {
            jwks: SigningKey::local_issuer().jwks(),
            unreachable: Vec::new(),
            overrides: HashMap::new(),
        }
    }
}

impl LocalJwks {
    /// Makes `uri` fail as an unreachable JWKS server would.
    pub fn unreachable(mut self, uri: &str) -> Self {
        self.unreachable.push(uri.to_owned());
        self
    }

    /// Serves `jwks` at `uri` instead of the local issuer's.
    pub fn with(mut self, uri: &str, jwks: JwkSet) -> Self {
        self.overrides.insert(uri.to_owned(), jwks);
        self
    }
}

impl JwksSource for LocalJwks {
    fn fetch(&self, uri: &str) -> Result<JwkSet, String> {
        if self.unreachable.iter().any(|u| u == uri) {
            return Err(format!("{uri} is unreachable"));
        }
        Ok(self.overrides.get(uri).unwrap_or(&self.jwks).clone())
    }
}

/// The request parts a token is extracted from.
pub struct TokenSources<'a> {
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub query: &'a [(String, String)],
}

impl std::fmt::Debug for TokenSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSources")
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// The first token found in the providers' locations, in order.
pub fn extract(providers: &[&Provider], sources: &TokenSources<'_>) -> Option<String> {
    for provider in providers {
        for location in &provider.locations {
            match location {
                JwtLocation::Header { name, prefix } => {
                    let Some(value) = (sources.header)(name) else {
                        continue;
                    };
                    let value = value.trim();
                    if prefix.is_empty() {
                        return Some(value.to_owned());
                    }
                    // Envoy compares the `Bearer ` prefix of Authorization case-insensitively.
                    if value.len() >= prefix.len()
                        && value.is_char_boundary(prefix.len())
                        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
                    {
                        return Some(value[prefix.len()..].trim().to_owned());
                    }
                }
                JwtLocation::Query(name) => {
                    if let Some((_, v)) = sources.query.iter().find(|(k, _)| k == name) {
                        return Some(v.clone());
                    }
                }
            }
        }
    }
    None
}

struct Parsed {
    alg: Algorithm,
    kid: Option<String>,
    payload_segment: String,
    payload: Value,
    signed: String,
    signature: String,
    claims: Claims,
}

fn b64_json(segment: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.is_object().then_some(value)
}

/// jwt_verify_lib's `Jwt::parseFromString`, with its messages.
fn parse(token: &str) -> Result<Parsed, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Invalid(
            "Jwt is not in the form of Header.Payload.Signature",
        ));
    }
    let (alg, kid) = parse_header(parts[0])?;
    let payload = b64_json(parts[1]).ok_or(JwtError::Invalid(
        "Jwt payload is an invalid Base64url input or an invalid JSON",
    ))?;
    let claims = parse_claims(&payload)?;
    if URL_SAFE_NO_PAD
        .decode(parts[2].trim_end_matches('='))
        .is_err()
    {
        return Err(JwtError::Invalid(
            "Jwt signature is an invalid Base64url input",
        ));
    }
    Ok(Parsed {
        alg,
        kid,
        payload_segment: parts[1].to_owned(),
        signed: format!("{}.{}", parts[0], parts[1]),
        signature: parts[2].trim_end_matches('=').to_owned(),
        payload,
        claims,
    })
}

/// The header segment's `alg` and `kid`.
fn parse_header(segment: &str) -> Result<(Algorithm, Option<String>), JwtError> {
    use JwtError::Invalid;
    let header = b64_json(segment).ok_or(Invalid(
        "Jwt header is an invalid Base64url input or an invalid JSON",
    ))?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => {
            return Err(Invalid(
                "Jwt header [alg] field is required and must be a string",
            ));
        }
    };
    let alg = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        // Envoy also takes ES512, HS* and EdDSA; the local gateway verifies with ring's
        // algorithms only (a difference without effect on Google-issued RS256 tokens).
        _ => return Err(Invalid("Jwt header [alg] is not supported")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Invalid("Jwt header [kid] field is not a string")),
    };
    Ok((alg, kid))
}

/// The registered claims jwt_verify_lib reads, each checked for its type.
struct Claims {
    iss: String,
    audiences: Vec<String>,
    nbf: i64,
    exp: i64,
}

fn parse_claims(payload: &Value) -> Result<Claims, JwtError> {
    use JwtError::Invalid;
    let string_claim = |name: &str, msg: &'static str| match payload.get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Invalid(msg)),
    };
    let iss = string_claim("iss", "Jwt payload [iss] field is not a string")?;
    string_claim("sub", "Jwt payload [sub] field is not a string")?;
    string_claim("jti", "Jwt payload [jti] field is not a string")?;
    let int_claim = |name: &str, msg: &'static str| match payload.get(name) {
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_u64().map(|u| u as i64))
            .ok_or(Invalid(msg)),
    };
    int_claim("iat", "Jwt payload [iat] field is not an integer")?;
    let nbf = int_claim("nbf", "Jwt payload [nbf] field is not an integer")?;
    let exp = int_claim("exp", "Jwt payload [exp] field is not an integer")?;
    let audiences = match payload.get("aud") {
        None => vec![],
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            return Err(Invalid(
                "Jwt payload [aud] field is not a string or string list",
            ));
        }
    };
    Ok(Claims {
        iss,
        audiences,
        nbf,
        exp,
    })
}

/// Verifies `token` for one of `providers` at time `now` (seconds), in Envoy's order.
/// `service_name` is the config's `host`: ESPv2 requires `aud == https://<service name>` when a
/// provider has no `x-google-audiences`.
pub fn verify(
    token: &str,
    providers: &[&Provider],
    service_name: Option<&str>,
    jwks: &dyn JwksSource,
    now: i64,
) -> Result<Verified, JwtError> {
    let jwt = parse(token)?;
    let provider = providers
        .iter()
        .find(|p| p.issuer == jwt.claims.iss)
        .ok_or(JwtError::Invalid("Jwt issuer is not configured"))?;
    check_time(jwt.claims.nbf, jwt.claims.exp, now)?;
    let allowed: Vec<String> = match (&provider.audiences, service_name) {
        (Some(list), _) => list.clone(),
        (None, Some(service)) => vec![format!("https://{service}")],
        // Without x-google-audiences and without a host there is nothing ESPv2 would compare
        // with; the local gateway then does not check the audience.
        (None, None) => vec![],
    };
    if !allowed.is_empty() && !jwt.claims.audiences.iter().any(|a| allowed.contains(a)) {
        return Err(JwtError::AudienceNotAllowed);
    }
    let set = jwks
        .fetch(&provider.jwks_uri)
        .map_err(|_| JwtError::Invalid("Jwks remote fetch is failed"))?;
    install_crypto_provider();
    let mut candidate = false;
    for key in &set.keys {
        if let (Some(want), Some(have)) = (&jwt.kid, &key.common.key_id)
            && want != have
        {
            continue;
        }
        let Ok(decoding) = DecodingKey::from_jwk(key) else {
            continue;
        };
        candidate = true;
        if jsonwebtoken::crypto::verify(&jwt.signature, jwt.signed.as_bytes(), &decoding, jwt.alg)
            .unwrap_or(false)
        {
            return Ok(Verified {
                provider: provider.name.clone(),
                payload_segment: jwt.payload_segment,
                payload: jwt.payload,
                nbf: jwt.claims.nbf,
                exp: jwt.claims.exp,
            });
        }
    }
    if candidate {
        Err(JwtError::Invalid("Jwt verification fails"))
    } else {
        Err(JwtError::Invalid(
            "Jwks doesn't have key to match kid or alg from Jwt",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::now_secs;
    use serde_json::json;

    fn provider(audiences: Option<Vec<&str>>) -> Provider {
        Provider {
            name: "firebase".into(),
            issuer: "https://issuer.example".into(),
            jwks_uri: "https://issuer.example/jwks".into(),
            audiences: audiences.map(|a| a.into_iter().map(str::to_owned).collect()),
            locations: vec![],
        }
    }

    fn token(claims: Value) -> String {
        SigningKey::local_issuer().sign(&claims).expect("sign")
    }

    fn check(token: &str, p: &Provider) -> Result<Verified, JwtError> {
        verify(
            token,
            &[p],
            Some("svc.example"),
            &LocalJwks::default(),
            now_secs() as i64,
        )
    }

    #[test]
    fn checks_run_in_envoys_order() {
        let p = provider(Some(vec!["aud-1"]));
        let now = now_secs() as i64;
        let good =
            json!({"iss": "https://issuer.example", "aud": "aud-1", "sub": "u", "exp": now + 600});
        assert!(check(&token(good.clone()), &p).is_ok());
        // Unknown issuer wins over an expired token and a wrong audience.
        let t = token(json!({"iss": "other", "aud": "x", "exp": now - 3600}));
        assert_eq!(
            check(&t, &p).unwrap_err().message(),
            "Jwt issuer is not configured"
        );
        // Expiry wins over the audience.
        let t = token(json!({"iss": "https://issuer.example", "aud": "x", "exp": now - 3600}));
        assert_eq!(check(&t, &p).unwrap_err().message(), "Jwt is expired");
        // Within the 60 s skew it is still valid.
        let t = token(json!({"iss": "https://issuer.example", "aud": "aud-1", "exp": now - 30}));
        assert!(check(&t, &p).is_ok());
        let t = token(json!({"iss": "https://issuer.example", "aud": "aud-1", "nbf": now + 600}));
        assert_eq!(check(&t, &p).unwrap_err().message(), "Jwt not yet valid");
        // Audience before signature.
        let other = SigningKey::local_google()
            .sign(&json!({"iss": "https://issuer.example", "aud": "x"}))
            .expect("sign");
        assert_eq!(check(&other, &p).unwrap_err(), JwtError::AudienceNotAllowed);
        let other = SigningKey::local_google().sign(&good).expect("sign");
        assert_eq!(
            check(&other, &p).unwrap_err().message(),
            "Jwks doesn't have key to match kid or alg from Jwt"
        );
        let mut forged = token(good);
        forged.truncate(forged.len() - 4);
        forged.push_str("AAAA");
        assert_eq!(
            check(&forged, &p).unwrap_err().message(),
            "Jwt verification fails"
        );
    }

    #[test]
    fn malformed_tokens_get_jwt_verify_lib_messages() {
        let p = provider(None);
        let m = |t: &str| check(t, &p).unwrap_err().message();
        assert_eq!(
            m("abc"),
            "Jwt is not in the form of Header.Payload.Signature"
        );
        assert_eq!(
            m("!!.e30.AA"),
            "Jwt header is an invalid Base64url input or an invalid JSON"
        );
        assert_eq!(
            m("e30.e30.AA"),
            "Jwt header [alg] field is required and must be a string"
        );
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(
            m(&format!("{none}.e30.AA")),
            "Jwt header [alg] is not supported"
        );
        let rs = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#);
        assert_eq!(
            m(&format!("{rs}.!!.AA")),
            "Jwt payload is an invalid Base64url input or an invalid JSON"
        );
        assert_eq!(
            m(&format!("{rs}.e30.!!")),
            "Jwt signature is an invalid Base64url input"
        );
    }

    #[test]
    fn without_audiences_the_service_name_is_the_audience() {
        let p = provider(None);
        let now = now_secs() as i64;
        let t = token(
            json!({"iss": "https://issuer.example", "aud": "https://svc.example", "exp": now + 60}),
        );
        assert!(check(&t, &p).is_ok());
        let t =
            token(json!({"iss": "https://issuer.example", "aud": "svc.example", "exp": now + 60}));
        assert_eq!(check(&t, &p).unwrap_err(), JwtError::AudienceNotAllowed);
    }

    #[test]
    fn the_cache_skips_the_signature_but_not_the_clock() {
        let p = provider(Some(vec!["a"]));
        let now = now_secs() as i64;
        let t = token(json!({"iss": "https://issuer.example", "aud": "a", "exp": now + 100}));
        let cache = Cache::default();
        let jwks = LocalJwks::default();
        assert!(cache.verify(&t, &[&p], None, &jwks, now).is_ok());
        // Cached: an unreachable JWKS no longer matters, the expiry still does.
        let down = LocalJwks::default().unreachable("https://issuer.example/jwks");
        assert!(cache.verify(&t, &[&p], None, &down, now).is_ok());
        let later = cache
            .verify(&t, &[&p], None, &down, now + 100 + 61)
            .unwrap_err();
        assert_eq!(later.message(), "Jwt is expired");
    }

    #[test]
    fn an_unreachable_jwks_fails_as_a_remote_fetch() {
        let p = provider(Some(vec!["a"]));
        let t = token(json!({"iss": "https://issuer.example", "aud": "a"}));
        let jwks = LocalJwks::default().unreachable("https://issuer.example/jwks");
        let e = verify(&t, &[&p], None, &jwks, now_secs() as i64).unwrap_err();
        assert_eq!(e.message(), "Jwks remote fetch is failed");
    }
}
