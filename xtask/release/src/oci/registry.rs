//! A push through the OCI distribution API: blob existence checks, monolithic uploads, the
//! manifest last.

mod auth;

use anyhow::{Context as _, bail, ensure};

pub(crate) use self::auth::RegistryAuth;
use self::auth::authorize;
use super::blob::Blob;
use super::install_crypto_provider;
use super::manifest::Image;
use super::reference::Reference;

/// Pushes `image` to `reference` through the OCI distribution API (blob existence check, monolithic
/// POST + PUT upload, manifest PUT) and returns the digest the registry reports.
pub(crate) async fn push(
    image: &Image,
    reference: &Reference,
    auth: &RegistryAuth,
    progress: &dyn Fn(&str),
) -> anyhow::Result<String> {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("items-xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let session = Session::open(client, reference, auth).await?;
    for blob in image.layers.iter().chain([&image.config]) {
        if session.has_blob(&blob.digest).await? {
            progress(&format!("blob {} exists", short(&blob.digest)));
            continue;
        }
        progress(&format!(
            "uploading blob {} ({} bytes)",
            short(&blob.digest),
            blob.bytes.len()
        ));
        session.upload_blob(blob).await?;
    }
    progress(&format!("putting manifest {}", reference.tag));
    session.put_manifest(&image.manifest).await
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// One authenticated conversation with a registry about one repository.
struct Session<'a> {
    client: reqwest::Client,
    reference: &'a Reference,
    base: String,
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    /// Probes `GET /v2/` and follows the challenge: Bearer (token from the realm, with Basic
    /// credentials when we have them), Basic, or none.
    async fn open(
        client: reqwest::Client,
        reference: &'a Reference,
        auth: &RegistryAuth,
    ) -> anyhow::Result<Self> {
        let base = reference.base_url();
        let probe = client
            .get(format!("{base}/v2/"))
            .send()
            .await
            .with_context(|| format!("contacting registry {base}"))?;
        let basic = match auth {
            RegistryAuth::Basic { username, password } => Some((username, password)),
            RegistryAuth::Anonymous => None,
        };
        let authorization = if probe.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = probe
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Some(authorize(&client, &challenge, reference, basic).await?)
        } else {
            ensure!(
                probe.status().is_success(),
                "registry {base} answered GET /v2/ with {}",
                probe.status()
            );
            None
        };
        Ok(Self {
            client,
            reference,
            base,
            authorization,
        })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, url);
        match &self.authorization {
            Some(value) => builder.header(reqwest::header::AUTHORIZATION, value),
            None => builder,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    async fn has_blob(&self, digest: &str) -> anyhow::Result<bool> {
        let response = self
            .request(reqwest::Method::HEAD, &self.url(&format!("blobs/{digest}")))
            .send()
            .await
            .context("HEAD blob")?;
        Ok(response.status().is_success())
    }

    async fn upload_blob(&self, blob: &Blob) -> anyhow::Result<()> {
        let started = self
            .request(reqwest::Method::POST, &self.url("blobs/uploads/"))
            .send()
            .await
            .context("starting a blob upload")?;
        let started = check(started, "POST blobs/uploads/").await?;
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the registry gave no upload Location")?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={}", blob.digest));
        let put = self
            .request(reqwest::Method::PUT, &url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(blob.bytes.clone())
            .send()
            .await
            .context("uploading a blob")?;
        check(put, "PUT blob").await?;
        Ok(())
    }

    async fn put_manifest(&self, manifest: &Blob) -> anyhow::Result<String> {
        let response = self
            .request(
                reqwest::Method::PUT,
                &self.url(&format!("manifests/{}", self.reference.tag)),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                manifest.media_type.to_string(),
            )
            .body(manifest.bytes.clone())
            .send()
            .await
            .context("putting the manifest")?;
        let response = check(response, "PUT manifest").await?;
        let reported = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(reported) = &reported {
            ensure!(
                *reported == manifest.digest,
                "the registry stored manifest {reported}, we sent {}",
                manifest.digest
            );
        }
        Ok(manifest.digest.clone())
    }
}

/// Passes a successful response on; turns any other into an error with the registry's body.
async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: registry answered {status}: {}", body.trim())
}
