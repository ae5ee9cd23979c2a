//! Registry credentials and the `WWW-Authenticate` challenges (Bearer with a token from the realm,
//! or Basic) they answer.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::check;
use crate::oci::Reference;

/// Credentials for a registry.
#[derive(Debug, Clone)]
pub(crate) enum RegistryAuth {
    Anonymous,
    Basic { username: String, password: String },
}

/// The `Authorization` header value for a `WWW-Authenticate` challenge.
pub(super) async fn authorize(
    client: &reqwest::Client,
    challenge: &str,
    reference: &Reference,
    basic: Option<(&String, &String)>,
) -> anyhow::Result<String> {
    let (scheme, params) = parse_challenge(challenge);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let (user, password) = basic.with_context(|| {
                format!("registry {} wants credentials (Basic)", reference.registry)
            })?;
            Ok(basic_header(user, password))
        }
        "bearer" => {
            let realm = params
                .get("realm")
                .context("Bearer challenge without a realm")?;
            let scope = params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull,push", reference.repository));
            let mut query = vec![("scope", scope)];
            if let Some(service) = params.get("service") {
                query.push(("service", service.clone()));
            }
            let mut request = client.get(realm).query(&query);
            if let Some((user, password)) = basic {
                request =
                    request.header(reqwest::header::AUTHORIZATION, basic_header(user, password));
            }
            let response = check(
                request.send().await.context("fetching a registry token")?,
                "token request",
            )
            .await?;
            let body: Value = response
                .json()
                .await
                .context("parsing the token response")?;
            let token = body["token"]
                .as_str()
                .or_else(|| body["access_token"].as_str())
                .context("the token response holds no token")?;
            Ok(format!("Bearer {token}"))
        }
        other => bail!("unsupported registry authentication scheme {other:?}"),
    }
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `Bearer realm="…",service="…",scope="…"` → ("Bearer", {realm, service, scope}).
fn parse_challenge(challenge: &str) -> (String, BTreeMap<String, String>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.insert(key, value.to_owned());
        rest = tail.trim_start_matches(',').trim();
    }
    (scheme.to_owned(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.example.com/token");
        assert_eq!(params["service"], "registry.example.com");
        assert_eq!(params["scope"], "repository:a/b:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "Registry Realm");
    }
}
