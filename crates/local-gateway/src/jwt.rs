//! JWT authentication as Envoy's jwt_authn filter does it in ESPv2.
//!
//! Per provider (ESPv2 gives Envoy one `provider_name` requirement per provider, several as one
//! `requires_any`: esp-v2 `filtergen/jwt_authn.go makeJwtRequirement`): every token found in the
//! provider's locations is verified and all must pass (envoy `jwt_authn/authenticator.cc`
//! `doneWithStatus`), each through parse → issuer (a location only accepts the issuers of the
//! providers that declared it, `JwtIssuerChecker`) → `nbf`/`exp` (60 s clock skew) → audience →
//! signature (`startVerify`), with jwt_verify_lib's messages (`src/status.cc`) and Envoy's
//! statuses (only an audience mismatch is 403). Of several providers the first that passes wins;
//! when none does, `AnyVerifierImpl::onComplete` (envoy `jwt_authn/verifier.cc`) reports the last
//! error that is neither "missing" nor "unknown issuer", else "unknown issuer", else "missing".

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::keys::{SigningKey, install_crypto_provider};
use crate::path::percent_decode;
use crate::spec::{JwtLocation, Provider};

/// Envoy's default clock skew (`kClockSkewInSecond`).
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Why a request's JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    UnknownIssuer,
    AudienceNotAllowed,
    /// Any other failure, with jwt_verify_lib's message.
    Invalid(&'static str),
}

impl JwtError {
    pub fn status(&self) -> u16 {
        match self {
            JwtError::AudienceNotAllowed => 403,
            _ => 401,
        }
    }

    /// jwt_verify_lib `getStatusString`.
    pub fn message(&self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::UnknownIssuer => "Jwt issuer is not configured",
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
    nbf: u64,
    exp: u64,
}

/// jwt_verify_lib `Jwt::verifyTimeConstraint` (unsigned seconds).
fn check_time(nbf: u64, exp: u64, now: u64) -> Result<(), JwtError> {
    if now + CLOCK_SKEW_SECS < nbf {
        return Err(JwtError::Invalid("Jwt not yet valid"));
    }
    if exp != 0 && now > exp.saturating_add(CLOCK_SKEW_SECS) {
        return Err(JwtError::Invalid("Jwt is expired"));
    }
    Ok(())
}

/// Verified tokens, as Envoy's per-provider JWT cache keeps them (ESPv2 `--jwt_cache_size`,
/// default 1000; envoy `jwt_authn` `JwtCacheConfig`, esp-v2 `filtergen/jwt_authn.go`): a hit
/// skips parsing and the signature but checks `nbf`/`exp` again.
///
/// Entries are found by a hash of the token's last [`HASHED_TAIL`] bytes (its signature's) and
/// then compared whole: hashing the whole token (700 bytes here) with SipHash was 4.3k of the
/// 138k instructions per proxied `GET /items/{id}` (callgrind). Only verified tokens get in,
/// so the tails of cached tokens are signatures of trusted issuers.
#[derive(Debug, Default)]
pub struct Cache {
    entries: std::sync::Mutex<HashMap<u64, CachedToken>>,
    hasher: std::hash::RandomState,
}

/// A cached token, whole, and what its verification gave.
type CachedToken = (Box<str>, Arc<Verified>);

/// How much of a token's end [`Cache`] hashes.
const HASHED_TAIL: usize = 64;

/// ESPv2's default `--jwt_cache_size`.
const CACHE_SIZE: usize = 1000;

/// What a verification needs besides the tokens.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The config's `host`: ESPv2 requires `aud == https://<service name>` when a provider has
    /// no `x-google-audiences`.
    pub service_name: Option<&'a str>,
    pub jwks: &'a dyn JwksSource,
    /// Seconds since the epoch.
    pub now: u64,
}

impl Cache {
    /// The request's JWT for one of `providers` (an operation's, in order): see the module doc.
    pub fn authenticate(
        &self,
        providers: &[&Provider],
        sources: &TokenSources<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Arc<Verified>, JwtError> {
        let mut last = JwtError::Missing;
        for provider in providers {
            match self.verify_provider(provider, &extract(provider, sources), ctx) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let weak = matches!(e, JwtError::Missing | JwtError::UnknownIssuer);
                    if !weak || last == JwtError::Missing {
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }

    /// Every token of `provider` must verify; Envoy takes them from the back of the list.
    fn verify_provider(
        &self,
        provider: &Provider,
        tokens: &[String],
        ctx: &VerifyContext<'_>,
    ) -> Result<Arc<Verified>, JwtError> {
        let mut verified = Err(JwtError::Missing);
        for token in tokens.iter().rev() {
            // With several good tokens Envoy adds one userinfo header value per token; the
            // backend here gets the one verified last (the first found).
            verified = Ok(self.verify(token, provider, ctx)?);
        }
        verified
    }

    /// [`verify`], through the cache.
    pub fn verify(
        &self,
        token: &str,
        provider: &Provider,
        ctx: &VerifyContext<'_>,
    ) -> Result<Arc<Verified>, JwtError> {
        let tail = &token.as_bytes()[token.len().saturating_sub(HASHED_TAIL)..];
        let key = std::hash::BuildHasher::hash_one(&self.hasher, tail);
        let hit = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(t, v)| **t == *token && v.provider == provider.name)
            .map(|(_, v)| v.clone());
        if let Some(v) = hit {
            check_time(v.nbf, v.exp, ctx.now)?;
            return Ok(v);
        }
        let verified = Arc::new(verify(token, provider, ctx)?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_SIZE {
            entries.clear();
        }
        entries.insert(key, (token.into(), verified.clone()));
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
    /// The query's pairs as sent (not decoded).
    pub query: &'a [(String, String)],
}

impl std::fmt::Debug for TokenSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSources").finish_non_exhaustive()
    }
}

/// The tokens in `provider`'s locations, in Envoy's order (envoy `jwt_authn/extractor.cc`
/// `ExtractorImpl::extract`): header locations by header name + prefix, then query parameters by
/// name (both kept in a sorted map), each present location giving one token.
///
/// A header with a `value_prefix` yields a token only when the prefix occurs in its value,
/// compared case-sensitively (`Authorization: bearer <t>` is no token); the token is then the
/// first run of base64url characters and dots after the prefix (`extractJWT`; the whole value
/// when there is none). A query value is percent-decoded (`parseAndDecodeQueryString`; the first
/// of repeated parameters).
pub fn extract(provider: &Provider, sources: &TokenSources<'_>) -> Vec<String> {
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(provider.locations.len());
    let mut params: Vec<&str> = Vec::new();
    for location in &provider.locations {
        match location {
            JwtLocation::Header { name, prefix } => headers.push((name, prefix)),
            JwtLocation::Query(name) => params.push(name),
        }
    }
    headers.sort_by(|a, b| header_key_order(*a, *b));
    headers.dedup_by(|a, b| header_key_order(*a, *b).is_eq());
    params.sort_unstable();
    params.dedup();
    let mut tokens = Vec::new();
    for (name, prefix) in headers {
        let Some(value) = (sources.header)(name) else {
            continue;
        };
        if prefix.is_empty() {
            tokens.push(value);
            continue;
        }
        let Some(at) = value.find(prefix) else {
            continue;
        };
        tokens.push(jwt_after(&value, at + prefix.len()).to_owned());
    }
    for name in params {
        if let Some((_, v)) = sources.query.iter().find(|(k, _)| k == name) {
            tokens.push(percent_decode(v).into_owned());
        }
    }
    tokens
}

/// The order of Envoy's header location map, keyed by name + prefix.
fn header_key_order(a: (&str, &str), b: (&str, &str)) -> std::cmp::Ordering {
    a.0.bytes()
        .chain(a.1.bytes())
        .cmp(b.0.bytes().chain(b.1.bytes()))
}

/// The bytes of a token for [`jwt_after`]: base64url characters and `.`. A table, as the scan
/// runs over the whole token (700 bytes in `cargo xtask bench --through-gateway`) on every
/// request.
const TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// envoy `ExtractorImpl::extractJWT`: the first run of base64url characters and dots at or after
/// `after`, or the whole value when there is none.
fn jwt_after(value: &str, after: usize) -> &str {
    let legal = |b: u8| TOKEN_BYTE[usize::from(b)];
    let bytes = value.as_bytes();
    let Some(start) = (after..bytes.len()).find(|&i| legal(bytes[i])) else {
        return value;
    };
    // Usually the token runs to the end of the value: checked in a loop the compiler vectorises
    // before the byte-by-byte search for its end (which was 6.8k of the 115k instructions per
    // proxied request on the 700-byte token, callgrind).
    let rest = &bytes[start..];
    let all_legal = rest.iter().fold(true, |ok, &b| {
        ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.'))
    });
    if all_legal {
        return &value[start..];
    }
    let end = (start..bytes.len())
        .find(|&i| !legal(bytes[i]))
        .unwrap_or(bytes.len());
    &value[start..end]
}

struct Parsed {
    alg: String,
    kid: Option<String>,
    payload_segment: String,
    payload: Value,
    signed: String,
    signature: String,
    claims: Claims,
}

/// absl `WebSafeBase64Unescape` (padding optional).
fn b64(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()
}

/// protobuf `JsonStringToMessage` into a `Struct`: a JSON object.
fn json_object(bytes: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.is_object().then_some(value)
}

/// jwt_verify_lib `Jwt::parseFromString` (`src/jwt.cc`), in its order and with its messages.
fn parse(token: &str) -> Result<Parsed, JwtError> {
    use JwtError::Invalid;
    // `absl::StrSplit(jwt, '.', absl::SkipEmpty())`: empty sections do not count.
    let parts: Vec<&str> = token.split('.').filter(|s| !s.is_empty()).collect();
    let [header, payload, signature] = parts[..] else {
        return Err(Invalid(
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ));
    };
    let header_bytes = b64(header).ok_or(Invalid("Jwt header is an invalid Base64url encoded"))?;
    let header_json = json_object(&header_bytes).ok_or(Invalid("Jwt header is an invalid JSON"))?;
    let alg = match header_json.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => {
            return Err(Invalid(
                "Jwt header [alg] field is required and must be a string",
            ));
        }
    };
    // `isImplemented`.
    const IMPLEMENTED: [&str; 13] = [
        "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
        "PS384", "PS512", "EdDSA",
    ];
    if !IMPLEMENTED.contains(&alg.as_str()) {
        return Err(Invalid("Jwt header [alg] is not supported"));
    }
    let kid = match header_json.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Invalid("Jwt header [kid] field is not a string")),
    };
    let payload_bytes =
        b64(payload).ok_or(Invalid("Jwt payload is an invalid Base64url encoded"))?;
    let payload_json =
        json_object(&payload_bytes).ok_or(Invalid("Jwt payload is an invalid JSON"))?;
    let claims = parse_claims(&payload_json)?;
    if b64(signature).is_none() {
        return Err(Invalid("Jwt signature is an invalid Base64url encoded"));
    }
    Ok(Parsed {
        alg,
        kid,
        payload_segment: payload.to_owned(),
        signed: format!("{header}.{payload}"),
        signature: signature.trim_end_matches('=').to_owned(),
        payload: payload_json,
        claims,
    })
}

/// The registered claims jwt_verify_lib reads, each checked for its type.
struct Claims {
    iss: String,
    audiences: Vec<String>,
    nbf: u64,
    exp: u64,
}

/// jwt_verify_lib `StructUtils::GetUInt64` (`src/struct_utils.cc`): a JSON number read as a
/// double, refused when negative or not below 2^64, else truncated; absent is 0.
fn uint64_claim(
    payload: &Value,
    name: &str,
    not_integer: &'static str,
    out_of_range: &'static str,
) -> Result<u64, JwtError> {
    match payload.get(name) {
        None => Ok(0),
        Some(Value::Number(n)) => {
            let d = n.as_f64().unwrap_or(f64::NAN);
            if d.is_nan() || d < 0.0 || d >= u64::MAX as f64 {
                Err(JwtError::Invalid(out_of_range))
            } else {
                Ok(d as u64)
            }
        }
        Some(_) => Err(JwtError::Invalid(not_integer)),
    }
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
    uint64_claim(
        payload,
        "iat",
        "Jwt payload [iat] field is not an integer",
        "Jwt payload [iat] field is not a positive 64 bit integer",
    )?;
    let nbf = uint64_claim(
        payload,
        "nbf",
        "Jwt payload [nbf] field is not an integer",
        "Jwt payload [nbf] field is not a positive 64 bit integer",
    )?;
    let exp = uint64_claim(
        payload,
        "exp",
        "Jwt payload [exp] field is not an integer",
        "Jwt payload [exp] field is not a positive 64 bit integer",
    )?;
    string_claim("jti", "Jwt payload [jti] field is not a string")?;
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

/// jwt_verify_lib `sanitizeAudience` (`src/check_audience.cc`): without a leading `http://` or
/// `https://` and one trailing `/`.
fn sanitize_audience(aud: &str) -> &str {
    let aud = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}

/// `CheckAudience::areAudiencesAllowed`: any JWT audience among the allowed ones, both
/// sanitised; nothing configured allows every audience.
fn audience_allowed(allowed: &[String], audiences: &[String]) -> bool {
    allowed.is_empty()
        || audiences.iter().any(|a| {
            let a = sanitize_audience(a);
            allowed.iter().any(|c| sanitize_audience(c) == a)
        })
}

/// Verifies one token for `provider`, in envoy `AuthenticatorImpl::startVerify`'s order.
pub fn verify(
    token: &str,
    provider: &Provider,
    ctx: &VerifyContext<'_>,
) -> Result<Verified, JwtError> {
    let jwt = parse(token)?;
    // The location's issuer checker: the issuers of the providers that declared it, here this
    // provider's (ESPv2 gives every provider its own extractor).
    if jwt.claims.iss != provider.issuer {
        return Err(JwtError::UnknownIssuer);
    }
    check_time(jwt.claims.nbf, jwt.claims.exp, ctx.now)?;
    // esp-v2 `filtergen/jwt_authn.go`: `x-google-audiences`, else `https://<service name>`.
    let allowed: Vec<String> = match (&provider.audiences, ctx.service_name) {
        (Some(list), _) => list.clone(),
        (None, Some(service)) => vec![format!("https://{service}")],
        (None, None) => vec![],
    };
    if !audience_allowed(&allowed, &jwt.claims.audiences) {
        return Err(JwtError::AudienceNotAllowed);
    }
    let set = ctx
        .jwks
        .fetch(&provider.jwks_uri)
        .map_err(|_| JwtError::Invalid("Jwks remote fetch is failed"))?;
    if verify_signature(&jwt, &set) {
        return Ok(Verified {
            provider: provider.name.clone(),
            payload_segment: jwt.payload_segment,
            payload: jwt.payload,
            nbf: jwt.claims.nbf,
            exp: jwt.claims.exp,
        });
    }
    Err(JwtError::Invalid(if matching_key(&jwt, &set) {
        "Jwt verification fails"
    } else {
        "Jwks doesn't have key to match kid or alg from Jwt"
    }))
}

/// jwt_verify_lib `verifyJwtWithoutTimeChecking` (`src/verify.cc`) takes a key when the kids
/// agree (or either is absent) and the key's `alg`, when it has one, is the token's.
fn key_matches(jwt: &Parsed, key: &jsonwebtoken::jwk::Jwk) -> bool {
    if let (Some(want), Some(have)) = (&jwt.kid, &key.common.key_id)
        && !want.is_empty()
        && !have.is_empty()
        && want != have
    {
        return false;
    }
    key.common
        .key_algorithm
        .is_none_or(|a| format!("{a:?}") == jwt.alg)
}

fn matching_key(jwt: &Parsed, set: &JwkSet) -> bool {
    set.keys.iter().any(|k| key_matches(jwt, k))
}

/// Whether a matching key verifies the signature. ring implements RS*, PS* and ES256/384; a
/// token signed otherwise (ES512, HS*, EdDSA) fails here as it would against keys of other types.
fn verify_signature(jwt: &Parsed, set: &JwkSet) -> bool {
    let Ok(alg) = jwt.alg.parse::<Algorithm>() else {
        return false;
    };
    install_crypto_provider();
    set.keys
        .iter()
        .filter(|k| key_matches(jwt, k))
        .filter_map(|k| DecodingKey::from_jwk(k).ok())
        .any(|key| {
            jsonwebtoken::crypto::verify(&jwt.signature, jwt.signed.as_bytes(), &key, alg)
                .unwrap_or(false)
        })
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
            locations: JwtLocation::defaults(),
        }
    }

    fn token(claims: Value) -> String {
        SigningKey::local_issuer().sign(&claims).expect("sign")
    }

    fn ctx(jwks: &dyn JwksSource) -> VerifyContext<'_> {
        VerifyContext {
            service_name: Some("svc.example"),
            jwks,
            now: now_secs(),
        }
    }

    fn check(token: &str, p: &Provider) -> Result<Verified, JwtError> {
        verify(token, p, &ctx(&LocalJwks::default()))
    }

    fn now() -> i64 {
        now_secs() as i64
    }

    #[test]
    fn checks_run_in_envoys_order() {
        let p = provider(Some(vec!["aud-1"]));
        let now = now();
        let good =
            json!({"iss": "https://issuer.example", "aud": "aud-1", "sub": "u", "exp": now + 600});
        assert!(check(&token(good.clone()), &p).is_ok());
        // Unknown issuer wins over an expired token and a wrong audience.
        let t = token(json!({"iss": "other", "aud": "x", "exp": now - 3600}));
        assert_eq!(check(&t, &p).unwrap_err(), JwtError::UnknownIssuer);
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
        // Another kid: no key matches (jwt_verify_lib `verify.cc`).
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

    /// The texts of jwt_verify_lib `src/status.cc` since 13e329d (2020), in the order
    /// `Jwt::parseFromString` (`src/jwt.cc`) checks.
    #[test]
    fn malformed_tokens_get_the_current_jwt_verify_lib_messages() {
        let p = provider(None);
        let m = |t: &str| check(t, &p).unwrap_err().message();
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let rs = b(r#"{"alg":"RS256"}"#);
        let form =
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
        assert_eq!(m("abc"), form);
        assert_eq!(m("a.b.c.d"), form);
        assert_eq!(m(""), form);
        // `SkipEmpty`: an empty section does not count, so this has two.
        assert_eq!(m(&format!("{rs}..AA")), form);
        assert_eq!(m("!!.e30.AA"), "Jwt header is an invalid Base64url encoded");
        assert_eq!(
            m(&format!("{}.e30.AA", b("not json"))),
            "Jwt header is an invalid JSON"
        );
        assert_eq!(
            m("e30.e30.AA"),
            "Jwt header [alg] field is required and must be a string"
        );
        assert_eq!(
            m(&format!("{}.e30.AA", b(r#"{"alg":"none"}"#))),
            "Jwt header [alg] is not supported"
        );
        assert_eq!(
            m(&format!("{}.e30.AA", b(r#"{"alg":"RS256","kid":7}"#))),
            "Jwt header [kid] field is not a string"
        );
        assert_eq!(
            m(&format!("{rs}.!!.AA")),
            "Jwt payload is an invalid Base64url encoded"
        );
        assert_eq!(
            m(&format!("{rs}.{}.AA", b("[1]"))),
            "Jwt payload is an invalid JSON"
        );
        assert_eq!(
            m(&format!("{rs}.e30.!!")),
            "Jwt signature is an invalid Base64url encoded"
        );
        for (claims, message) in [
            (r#"{"iss":1}"#, "Jwt payload [iss] field is not a string"),
            (r#"{"sub":true}"#, "Jwt payload [sub] field is not a string"),
            (
                r#"{"iat":"1"}"#,
                "Jwt payload [iat] field is not an integer",
            ),
            (
                r#"{"nbf":null}"#,
                "Jwt payload [nbf] field is not an integer",
            ),
            (
                r#"{"exp":[1]}"#,
                "Jwt payload [exp] field is not an integer",
            ),
            (r#"{"jti":2}"#, "Jwt payload [jti] field is not a string"),
            (
                r#"{"aud":[1]}"#,
                "Jwt payload [aud] field is not a string or string list",
            ),
        ] {
            assert_eq!(m(&format!("{rs}.{}.AA", b(claims))), message, "{claims}");
        }
    }

    /// jwt_verify_lib `StructUtils::GetUInt64` (`src/struct_utils.cc`): numbers are doubles,
    /// truncated; negative ones (and 2^64 or more) are out of range.
    #[test]
    fn float_times_are_truncated_and_negative_ones_refused() {
        let p = provider(Some(vec!["a"]));
        let now = now() as f64;
        let t = token(json!({"iss": "https://issuer.example", "aud": "a",
            "iat": now - 0.5, "nbf": now - 10.75, "exp": now + 600.9}));
        let v = check(&t, &p).expect("float claims are accepted");
        assert_eq!(v.exp, (now + 600.9) as u64);
        let t = token(json!({"iss": "https://issuer.example", "aud": "a", "exp": 1.7e9}));
        assert_eq!(check(&t, &p).unwrap_err().message(), "Jwt is expired");
        for claim in ["iat", "nbf", "exp"] {
            for bad in [json!(-1), json!(-0.5), json!(1.9e19)] {
                let mut c = json!({"iss": "https://issuer.example", "aud": "a"});
                c[claim] = bad.clone();
                assert_eq!(
                    check(&token(c), &p).unwrap_err().message(),
                    format!("Jwt payload [{claim}] field is not a positive 64 bit integer"),
                    "{claim}: {bad}"
                );
            }
        }
    }

    /// jwt_verify_lib `src/check_audience.cc` `sanitizeAudience`.
    #[test]
    fn audiences_compare_without_scheme_and_one_trailing_slash() {
        let now = now();
        let p = provider(Some(vec!["https://api.example/", "plain"]));
        for aud in [
            "https://api.example",
            "http://api.example",
            "api.example",
            "api.example/",
            "https://plain/",
            "http://plain",
        ] {
            let t = token(json!({"iss": "https://issuer.example", "aud": aud, "exp": now + 60}));
            assert!(check(&t, &p).is_ok(), "{aud}");
        }
        for aud in [
            "api.example//",
            "ftp://api.example",
            "https://api.example/x",
            "API.example",
        ] {
            let t = token(json!({"iss": "https://issuer.example", "aud": aud, "exp": now + 60}));
            assert_eq!(
                check(&t, &p).unwrap_err(),
                JwtError::AudienceNotAllowed,
                "{aud}"
            );
        }
        // Without x-google-audiences: https://<service name>, sanitised the same way.
        let p = provider(None);
        for aud in ["https://svc.example", "svc.example", "http://svc.example/"] {
            let t = token(json!({"iss": "https://issuer.example", "aud": aud, "exp": now + 60}));
            assert!(check(&t, &p).is_ok(), "{aud}");
        }
        let t = token(json!({"iss": "https://issuer.example", "aud": "other", "exp": now + 60}));
        assert_eq!(check(&t, &p).unwrap_err(), JwtError::AudienceNotAllowed);
    }

    fn sources<'a>(
        headers: &'a dyn Fn(&str) -> Option<String>,
        query: &'a [(String, String)],
    ) -> TokenSources<'a> {
        TokenSources {
            header: headers,
            query,
        }
    }

    /// envoy `jwt_authn/extractor.cc`: the prefix is found case-sensitively anywhere in the
    /// value, the token is the base64url run after it; headers by name, then query parameters.
    #[test]
    fn extraction_follows_envoys_extractor() {
        let p = provider(None);
        let header = |value: &'static str| {
            move |name: &str| (name == "authorization").then(|| value.to_owned())
        };
        let none: [(String, String); 0] = [];
        for (value, want) in [
            ("Bearer a.b.c", vec!["a.b.c"]),
            ("bearer a.b.c", vec![]),
            ("BEARER a.b.c", vec![]),
            ("Basic x, Bearer a.b.c, more", vec!["a.b.c"]),
            ("Bearer   a.b.c  ", vec!["a.b.c"]),
            ("Bearer ", vec!["Bearer "]),
        ] {
            let h = header(value);
            assert_eq!(extract(&p, &sources(&h, &none)), want, "{value:?}");
        }
        let h = |name: &str| match name {
            "authorization" => Some("Bearer h.h.h".to_owned()),
            "x-goog-iap-jwt-assertion" => Some("i.i.i".to_owned()),
            _ => None,
        };
        let q = [
            ("access_token".to_owned(), "q%2Eq.q".to_owned()),
            ("access_token".to_owned(), "second".to_owned()),
        ];
        assert_eq!(extract(&p, &sources(&h, &q)), ["h.h.h", "i.i.i", "q.q.q"]);
    }

    #[test]
    fn every_token_of_a_request_must_verify_and_carry_the_providers_issuer() {
        let p = provider(Some(vec!["a"]));
        let now = now();
        let good = token(json!({"iss": "https://issuer.example", "aud": "a", "exp": now + 60}));
        let expired = token(json!({"iss": "https://issuer.example", "aud": "a", "exp": now - 600}));
        let foreign =
            token(json!({"iss": "https://elsewhere.example", "aud": "a", "exp": now + 60}));
        let jwks = LocalJwks::default();
        let auth = |header: &str, query: &str| {
            let header = format!("Bearer {header}");
            let h = move |name: &str| (name == "authorization").then(|| header.clone());
            let q = [("access_token".to_owned(), query.to_owned())];
            Cache::default().authenticate(&[&p], &sources(&h, &q), &ctx(&jwks))
        };
        assert!(auth(&good, &good).is_ok());
        assert_eq!(
            auth(&good, &expired).unwrap_err().message(),
            "Jwt is expired"
        );
        assert_eq!(
            auth(&expired, &good).unwrap_err().message(),
            "Jwt is expired"
        );
        assert_eq!(auth(&good, &foreign).unwrap_err(), JwtError::UnknownIssuer);
        // Envoy verifies from the back of the list: the query token's error is reported.
        assert_eq!(
            auth(&foreign, &expired).unwrap_err().message(),
            "Jwt is expired"
        );
    }

    /// envoy `verifier.cc` `AnyVerifierImpl::onComplete`: the first provider that passes wins;
    /// otherwise an error other than missing/unknown issuer, then unknown issuer, then missing.
    #[test]
    fn of_several_providers_one_must_pass_and_the_telling_error_is_reported() {
        let now = now();
        let first = provider(Some(vec!["a"]));
        let second = Provider {
            name: "custom".into(),
            issuer: "https://custom.example".into(),
            locations: vec![JwtLocation::Query("jwt".into())],
            ..provider(Some(vec!["a"]))
        };
        let jwks = LocalJwks::default();
        let auth = |header: Option<&str>, jwt: Option<&str>| {
            let header = header.map(|t| format!("Bearer {t}"));
            let h = move |name: &str| header.clone().filter(|_| name == "authorization");
            let q: Vec<_> = jwt
                .map(|t| ("jwt".to_owned(), t.to_owned()))
                .into_iter()
                .collect();
            Cache::default().authenticate(&[&first, &second], &sources(&h, &q), &ctx(&jwks))
        };
        let custom = token(json!({"iss": "https://custom.example", "aud": "a", "exp": now + 60}));
        let issuer_1 = token(json!({"iss": "https://issuer.example", "aud": "a", "exp": now + 60}));
        let expired = token(json!({"iss": "https://custom.example", "aud": "a", "exp": now - 600}));
        assert_eq!(
            auth(None, Some(&custom)).expect("custom").provider,
            "custom"
        );
        assert_eq!(
            auth(Some(&issuer_1), None).expect("first").provider,
            "firebase"
        );
        assert_eq!(auth(None, None).unwrap_err(), JwtError::Missing);
        // The custom issuer's token in the first provider's header: unknown issuer there,
        // missing for the second.
        assert_eq!(
            auth(Some(&custom), None).unwrap_err(),
            JwtError::UnknownIssuer
        );
        // A telling error wins over unknown issuer.
        assert_eq!(
            auth(Some(&custom), Some(&expired)).unwrap_err().message(),
            "Jwt is expired"
        );
        // A first-provider token in the second provider's location is refused there.
        assert_eq!(
            auth(None, Some(&issuer_1)).unwrap_err(),
            JwtError::UnknownIssuer
        );
    }

    #[test]
    fn the_cache_skips_the_signature_but_not_the_clock() {
        let p = provider(Some(vec!["a"]));
        let now = now_secs();
        let t = token(json!({"iss": "https://issuer.example", "aud": "a", "exp": now + 100}));
        let cache = Cache::default();
        let jwks = LocalJwks::default();
        let at = |jwks: &'static dyn JwksSource, now| VerifyContext {
            service_name: None,
            jwks,
            now,
        };
        let jwks: &'static LocalJwks = Box::leak(Box::new(jwks));
        assert!(cache.verify(&t, &p, &at(jwks, now)).is_ok());
        // Cached: an unreachable JWKS no longer matters, the expiry still does.
        let down: &'static LocalJwks = Box::leak(Box::new(
            LocalJwks::default().unreachable("https://issuer.example/jwks"),
        ));
        assert!(cache.verify(&t, &p, &at(down, now)).is_ok());
        let later = cache.verify(&t, &p, &at(down, now + 100 + 61)).unwrap_err();
        assert_eq!(later.message(), "Jwt is expired");
    }

    #[test]
    fn an_unreachable_jwks_fails_as_a_remote_fetch() {
        let p = provider(Some(vec!["a"]));
        let t = token(json!({"iss": "https://issuer.example", "aud": "a"}));
        let jwks = LocalJwks::default().unreachable("https://issuer.example/jwks");
        let e = verify(&t, &p, &ctx(&jwks)).unwrap_err();
        assert_eq!(e.message(), "Jwks remote fetch is failed");
    }
}
