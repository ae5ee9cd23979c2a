//! Health checks over HTTP: a revision's tagged URL (`/health/ready` and one read through the API) and
//! the gateway (one read through it).
//!
//! Cloud Run services are not publicly invokable: requests carry a Google-signed ID token for the
//! service URL, from Application Default Credentials (`google-cloud-auth`'s ID token builder).

use std::time::Duration;

use anyhow::{Context as _, bail};

/// The API read used as a smoke test: cheap and touches the database.
pub(crate) const READ_PATH: &str = "/items?page_size=1";

#[derive(Debug, Clone)]
pub(crate) struct Prober {
    client: reqwest::Client,
    /// No ID tokens (tests against a local fake).
    anonymous: bool,
    attempts: u32,
    pause: Duration,
    api_key: Option<String>,
    /// Bearer token for the request through the gateway (the API's JWT).
    token: Option<String>,
    /// The local cloud: ID tokens for this account, signed by the local "Google" key.
    local_identity: Option<String>,
}

impl Prober {
    pub(crate) fn new(
        anonymous: bool,
        api_key: Option<String>,
        fast: bool,
    ) -> anyhow::Result<Self> {
        crate::oci::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            anonymous,
            attempts: if fast { 2 } else { 5 },
            pause: if fast {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(3)
            },
            api_key,
            token: None,
            local_identity: None,
        })
    }

    /// Sends `token` as `Authorization: Bearer` through the gateway (routes that need a JWT as
    /// well as the key).
    pub(crate) fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// `GET {url}/health/ready` answers 200 and `GET {url}/items?page_size=1` answers 2xx.
    /// `audience` is the service URL the ID token is minted for.
    pub(crate) async fn check_revision(&self, url: &str, audience: &str) -> anyhow::Result<()> {
        let token = self.id_token(audience).await?;
        for path in ["/health/ready", READ_PATH] {
            let target = format!("{}{path}", url.trim_end_matches('/'));
            self.retry(
                &target,
                |status| status.is_success(),
                |request| match &token {
                    Some(t) => request.bearer_auth(t),
                    None => request,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// One read through the gateway. With an API key it must succeed; without one, the gateway
    /// refusing the anonymous caller (401/403) still proves it serves the new config.
    pub(crate) async fn check_gateway(&self, hostname: &str) -> anyhow::Result<String> {
        let target = format!("{}{READ_PATH}", gateway_base(hostname));
        let key = self.api_key.clone();
        let token = self.token.clone();
        let with_key = key.is_some();
        let status = self
            .retry(
                &target,
                |status| status.is_success() || (!with_key && matches!(status.as_u16(), 401 | 403)),
                |request| {
                    let request = match &key {
                        Some(k) => request.header("x-api-key", k),
                        None => request,
                    };
                    match &token {
                        Some(t) => request.bearer_auth(t),
                        None => request,
                    }
                },
            )
            .await?;
        Ok(format!("GET {target} → {status}"))
    }

    /// ID tokens for `account` signed by the local "Google" key (the local cloud's Cloud Run
    /// checks them), instead of none.
    pub(crate) fn with_local_identity(mut self, account: Option<String>) -> Self {
        self.local_identity = account;
        self
    }

    async fn id_token(&self, audience: &str) -> anyhow::Result<Option<String>> {
        if let Some(account) = &self.local_identity {
            let key = items_local_gateway::SigningKey::local_google();
            let now = items_local_gateway::keys::now_secs();
            return items_local_gateway::keys::backend_id_token(&key, audience, account, now)
                .map(Some);
        }
        if self.anonymous {
            return Ok(None);
        }
        let credentials = google_cloud_auth::credentials::idtoken::Builder::new(audience)
            .build()
            .context("ID token credentials from Application Default Credentials")?;
        let token = credentials
            .id_token()
            .await
            .with_context(|| format!("getting an ID token for {audience}"))?;
        Ok(Some(token))
    }

    async fn retry(
        &self,
        url: &str,
        ok: impl Fn(reqwest::StatusCode) -> bool,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match decorate(self.client.get(url)).send().await {
                Ok(response) if ok(response.status()) => return Ok(response.status()),
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    last = format!("{status}: {}", body.chars().take(200).collect::<String>());
                }
                Err(e) => last = format!("{e}"),
            }
            if attempt < self.attempts {
                tokio::time::sleep(self.pause * attempt).await;
            }
        }
        bail!("GET {url} failed after {} attempts: {last}", self.attempts)
    }
}

/// `https://<gateway default hostname>` (a hostname with a scheme, as a local fake gives, stays).
pub(crate) fn gateway_base(hostname: &str) -> String {
    if hostname.contains("://") {
        hostname.trim_end_matches('/').to_owned()
    } else {
        format!("https://{hostname}")
    }
}
