//! Cloud Run's invoker check, made by Google's front end before the container sees a request.
//!
//! - The caller presents a Google-signed ID token as `Authorization: Bearer <token>`, or in
//!   `X-Serverless-Authorization`, which is checked instead of `Authorization` when both are there
//!   (<https://cloud.google.com/run/docs/authenticating/service-to-service>;
//!   GoogleCloudPlatform/cloud-run-proxy#25: "If X-Serverless-Authorization and Authorization are
//!   both present, cloud run will use X-Serverless-Authorization").
//! - The token must be signed by Google (here: the local "Google" JWKS), issued by
//!   `https://accounts.google.com` (or `accounts.google.com`, the two issuer forms Google's ID
//!   tokens carry), not expired, and its `aud` must be one of the service's URLs or a configured
//!   custom audience (<https://cloud.google.com/run/docs/configuring/custom-audiences>: "must
//!   provide a valid ID token that includes an audience claim matching the receiving service's
//!   *.run.app URL"; "the Google-generated default URL is always an acceptable audience"). On a
//!   tag's URL, that URL is accepted as well as the service's: [not confirmed] in Google's docs,
//!   which do not say which audience a tag URL wants. Compared exactly but for one trailing `/`
//!   (Google's own sample uses `https://my-cloud-run-service.run.app/` as the audience).
//! - The token's account (`email`) must hold `roles/run.invoker` on the service.
//! - When `allUsers` holds the invoker role the check is off and no token is looked at.
//!
//! The refusals are the Google front end's HTML pages:
//! - no token: **403** `Error: Forbidden` / `Your client does not have permission to get URL
//!   <code>/</code> from this server.` (captured with `curl` on an unauthenticated request in
//!   Google's pet-theory lab; Cloud Run logs it as "The request was not authenticated. Either
//!   allow unauthenticated invocations or set the proper Authorization header.", status 403);
//! - a token that does not verify (signature, issuer, expiry, audience): **401** `Error:
//!   Unauthorized` / `Your client does not have permission to the requested URL <code>/</code>.`
//!   (Google's Cloud Run functions troubleshooting: "HTTP Error Response code: 401 Unauthorized …
//!   Your client does not have permission to the requested URL"; "any discrepancies [of aud],
//!   including an additional relative path, causes an authentication failure and a 401
//!   response"; Cloud Run logs "The request was not authorized to invoke this service.");
//! - a valid token of an account without the invoker role: **403**, the Forbidden page above
//!   (Cloud Run functions troubleshooting, "Serving permission error due to the function requiring
//!   authentication": "HTTP Error Response code: 403 Forbidden … Your client does not have
//!   permission to get URL / FUNCTION_NAME from this server").
//!
//! The 403 page's markup is the captured one; the 401 page is the same template with the
//! documented 401 wording (its exact markup is not confirmed). No `WWW-Authenticate` header is
//! sent: none is documented or captured for these pages.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::Iam;

/// Issuers of Google's ID tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Why Cloud Run refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token: 403.
    Unauthenticated,
    /// A token that does not verify: 401.
    InvalidToken,
    /// A valid token of an account that may not invoke the service: 403.
    NotInvoker,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::InvalidToken => 401,
            Refusal::Unauthenticated | Refusal::NotInvoker => 403,
        }
    }

    /// What Cloud Run writes to its request log for this refusal.
    pub fn log_message(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => {
                "The request was not authenticated. Either allow unauthenticated invocations or set the proper Authorization header. Read more at https://cloud.google.com/run/docs/securing/authenticating"
            }
            Refusal::InvalidToken | Refusal::NotInvoker => {
                "The request was not authorized to invoke this service. Read more at https://cloud.google.com/run/docs/securing/authenticating"
            }
        }
    }

    /// The Google front end's HTML page for `path`.
    pub fn page(self, path: &str) -> String {
        let path = escape(path);
        let (title, heading, text) = match self {
            Refusal::InvalidToken => (
                "401 Unauthorized",
                "Error: Unauthorized",
                format!(
                    "Your client does not have permission to the requested URL <code>{path}</code>."
                ),
            ),
            Refusal::Unauthenticated | Refusal::NotInvoker => (
                "403 Forbidden",
                "Error: Forbidden",
                format!(
                    "Your client does not have permission to get URL <code>{path}</code> from this server."
                ),
            ),
        };
        format!(
            "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>{title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>{heading}</h1>\n<h2>{text}</h2>\n<h2></h2>\n</body></html>\n"
        )
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The token a request presents: `X-Serverless-Authorization` first, else `Authorization`.
pub fn presented_token<'a>(
    serverless_authorization: Option<&'a str>,
    authorization: Option<&'a str>,
) -> Option<&'a str> {
    let value = serverless_authorization.or(authorization)?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

fn same_audience(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

/// The account (`email`) of a token that verifies, for one of `audiences`.
fn verify(token: &str, jwks: &JwkSet, audiences: &[&str]) -> Option<String> {
    items_local_gateway::keys::install_crypto_provider();
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::RS256 {
        return None;
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&GOOGLE_ISSUERS);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_aud = false;
    let keys = jwks
        .keys
        .iter()
        .filter(|k| match (&header.kid, &k.common.key_id) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        });
    for jwk in keys {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let Ok(data) = jsonwebtoken::decode::<Value>(token, &key, &validation) else {
            continue;
        };
        let claims = data.claims;
        let aud_ok = match &claims["aud"] {
            Value::String(aud) => audiences.iter().any(|a| same_audience(a, aud)),
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| audiences.iter().any(|a| same_audience(a, aud))),
            _ => false,
        };
        if !aud_ok {
            return None;
        }
        return Some(claims["email"].as_str().unwrap_or_default().to_owned());
    }
    None
}

fn member_email(member: &str) -> &str {
    member
        .strip_prefix("serviceAccount:")
        .or_else(|| member.strip_prefix("user:"))
        .unwrap_or(member)
}

/// Cloud Run's check of one request; `Ok` carries the caller's account (empty when the check is
/// off). `audiences`: the URL the request came in on, the service's URL and custom audiences.
pub fn check(
    iam: &Iam,
    jwks: &JwkSet,
    audiences: &[&str],
    token: Option<&str>,
) -> Result<String, Refusal> {
    if iam.allow_unauthenticated || iam.invokers.iter().any(|m| m == "allUsers") {
        return Ok(String::new());
    }
    let token = token.ok_or(Refusal::Unauthenticated)?;
    let email = verify(token, jwks, audiences).ok_or(Refusal::InvalidToken)?;
    let allowed = iam.invokers.iter().any(|member| {
        member == "allAuthenticatedUsers"
            || (!email.is_empty() && member_email(member).eq_ignore_ascii_case(&email))
    });
    if allowed {
        Ok(email)
    } else {
        Err(Refusal::NotInvoker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use items_local_gateway::SigningKey;
    use items_local_gateway::keys::{backend_id_token, now_secs};

    const URL: &str = "http://127.0.0.1:9000";
    const GATEWAY: &str = "items-gateway@p.iam.gserviceaccount.com";

    fn iam() -> Iam {
        Iam {
            invokers: vec![format!("serviceAccount:{GATEWAY}")],
            custom_audiences: vec![],
            allow_unauthenticated: false,
        }
    }

    fn token(aud: &str, account: &str) -> String {
        backend_id_token(&SigningKey::local_google(), aud, account, now_secs()).expect("sign")
    }

    #[test]
    fn the_three_refusals_and_a_pass() {
        let jwks = SigningKey::local_google().jwks();
        let aud = [URL];
        assert_eq!(
            check(&iam(), &jwks, &aud, None),
            Err(Refusal::Unauthenticated)
        );
        let other_aud = token("http://127.0.0.1:9999", GATEWAY);
        assert_eq!(
            check(&iam(), &jwks, &aud, Some(&other_aud)),
            Err(Refusal::InvalidToken)
        );
        let stranger = token(URL, "someone@p.iam.gserviceaccount.com");
        assert_eq!(
            check(&iam(), &jwks, &aud, Some(&stranger)),
            Err(Refusal::NotInvoker)
        );
        let good = token(&format!("{URL}/"), GATEWAY);
        assert_eq!(
            check(&iam(), &jwks, &aud, Some(&good)),
            Ok(GATEWAY.to_owned())
        );
        // Signed by another key (the local issuer, not "Google"): does not verify.
        let forged = SigningKey::local_issuer()
            .sign(&serde_json::json!({
                "iss": "https://accounts.google.com", "aud": URL, "email": GATEWAY,
                "exp": now_secs() + 600,
            }))
            .expect("sign");
        assert_eq!(
            check(&iam(), &jwks, &aud, Some(&forged)),
            Err(Refusal::InvalidToken)
        );
        let public = Iam {
            allow_unauthenticated: true,
            ..iam()
        };
        assert_eq!(check(&public, &jwks, &aud, None), Ok(String::new()));
    }

    #[test]
    fn serverless_authorization_wins_over_authorization() {
        assert_eq!(
            presented_token(Some("Bearer a.b.c"), Some("Bearer x.y.z")),
            Some("a.b.c")
        );
        assert_eq!(presented_token(None, Some("bearer x.y.z")), Some("x.y.z"));
        assert_eq!(presented_token(None, Some("Basic abc")), None);
        assert_eq!(presented_token(None, None), None);
    }

    #[test]
    fn the_refusal_pages_name_the_path() {
        let page = Refusal::NotInvoker.page("/items/<x>");
        assert!(page.contains("<title>403 Forbidden</title>"));
        assert!(page.contains("get URL <code>/items/&lt;x&gt;</code> from this server."));
        let page = Refusal::InvalidToken.page("/");
        assert!(page.contains("<title>401 Unauthorized</title>"));
        assert!(page.contains("the requested URL <code>/</code>."));
    }
}
