//! `api.*`: the page-token keys, resolved once into the codec the handlers use, and the rule that
//! only `local` may use the public development key.

use std::path::{Path, PathBuf};

use anyhow::bail;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use items_http::PageTokenCodec;

use super::AppEnvironment;

/// The page-token key of `config/local.toml`: public, so refused outside `local`.
pub const DEVELOPMENT_PAGE_TOKEN_SECRET: &str = "items-local-page-token-secret";

/// Shortest page-token key accepted outside `local` (HMAC-SHA256: 32 bytes or more).
pub const MIN_PAGE_TOKEN_SECRET_BYTES: usize = 32;

/// `api.*` settings: the HMAC keys of page tokens. One key signs; earlier keys still verify, so
/// that rotating the key does not break clients that are paging.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiSettings {
    /// The signing key (plain, for local use; `APP__API__PAGE_TOKEN_SECRET`).
    #[serde(default)]
    pub page_token_secret: Option<SecretString>,
    /// A file holding the signing key (a Secret Manager mount; trailing newline stripped); wins
    /// over `page_token_secret`.
    #[serde(default)]
    pub page_token_secret_file: Option<PathBuf>,
    /// Earlier keys that still verify tokens (`APP__API__PAGE_TOKEN_PREVIOUS_SECRETS`,
    /// comma-separated).
    #[serde(default)]
    pub page_token_previous_secrets: Vec<SecretString>,
    /// Files holding earlier keys (`APP__API__PAGE_TOKEN_PREVIOUS_SECRET_FILES`, comma-separated).
    #[serde(default)]
    pub page_token_previous_secret_files: Vec<PathBuf>,
}

impl ApiSettings {
    /// Reads the keys (files included, each once) and checks them: they must exist, and outside
    /// `local` the signing key must not be the public development key nor shorter than
    /// [`MIN_PAGE_TOKEN_SECRET_BYTES`]. The codec is what the app uses; nothing reads the key
    /// files again. Every error names `api.page_token_secret`.
    pub(super) fn resolve(&self, environment: AppEnvironment) -> anyhow::Result<PageTokenCodec> {
        let current = match (&self.page_token_secret_file, &self.page_token_secret) {
            (Some(path), _) => read_key(path, "api.page_token_secret_file")?,
            (None, Some(secret)) => secret.clone(),
            (None, None) => bail!(
                "api.page_token_secret: no page-token key is set: set api.page_token_secret_file \
                 to a file holding it (on Cloud Run the Secret Manager mount Terraform creates) \
                 or api.page_token_secret (APP__API__PAGE_TOKEN_SECRET)"
            ),
        };
        let key = current.expose_secret();
        if key.is_empty() {
            bail!("api.page_token_secret: the page-token key is empty");
        }
        let name = environment.name();
        if environment != AppEnvironment::Local && key == DEVELOPMENT_PAGE_TOKEN_SECRET {
            bail!(
                "api.page_token_secret: {name} must not sign page tokens with the built-in \
                 development key, which anyone can read in the repository; set \
                 api.page_token_secret_file (Terraform mounts a generated key) or \
                 api.page_token_secret"
            );
        }
        if environment != AppEnvironment::Local && key.len() < MIN_PAGE_TOKEN_SECRET_BYTES {
            bail!(
                "api.page_token_secret: the page-token key of {name} has {} bytes; use at least \
                 {MIN_PAGE_TOKEN_SECRET_BYTES} random bytes",
                key.len()
            );
        }
        let mut previous: Vec<SecretString> = self
            .page_token_previous_secrets
            .iter()
            .filter(|k| !k.expose_secret().is_empty())
            .cloned()
            .collect();
        for path in self
            .page_token_previous_secret_files
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
        {
            previous.push(read_key(path, "api.page_token_previous_secret_files")?);
        }
        Ok(PageTokenCodec::new(key.as_bytes())
            .with_previous(previous.iter().map(|k| k.expose_secret().as_bytes())))
    }
}

fn read_key(path: &Path, key: &str) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "api.page_token_secret: cannot read {key} {}: {e}",
            path.display()
        )
    })?;
    Ok(SecretString::from(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}
