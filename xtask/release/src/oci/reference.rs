//! Image references as `docker push` takes them: `<registry>/<repository>:<tag>`.

use anyhow::{Context as _, ensure};

/// `<registry>/<repository>:<tag>` (or `@sha256:…`), as in `docker push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) tag: String,
}

impl Reference {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        let (registry, rest) = s
            .split_once('/')
            .filter(|(host, _)| host.contains('.') || host.contains(':') || *host == "localhost")
            .with_context(|| {
                format!("{s:?}: expected <registry>/<repository>:<tag>, e.g. europe-docker.pkg.dev/p/r/items-service:v1")
            })?;
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (rest, "latest"),
        };
        let repository = repository.split('@').next().unwrap_or(repository);
        ensure!(
            !repository.is_empty()
                && repository.split('/').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                        })
                }),
            "{s:?}: repository {repository:?} must be lowercase path components"
        );
        ensure!(
            !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{s:?}: bad tag {tag:?}"
        );
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// Plain HTTP for a registry on loopback (as Docker does), HTTPS for every other.
    pub(super) fn base_url(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let scheme = if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.registry)
    }

    /// Artifact Registry or Container Registry: authenticate with Google credentials.
    pub(crate) fn is_google(&self) -> bool {
        self.registry.ends_with("-docker.pkg.dev") || self.registry.ends_with("gcr.io")
    }

    /// `<registry>/<repository>@<digest>`.
    pub(crate) fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("europe-docker.pkg.dev/p/items/items-service:v1").unwrap();
        assert_eq!(r.registry, "europe-docker.pkg.dev");
        assert_eq!(r.repository, "p/items/items-service");
        assert_eq!(r.tag, "v1");
        assert!(r.is_google());
        assert_eq!(r.base_url(), "https://europe-docker.pkg.dev");
        let local = Reference::parse("127.0.0.1:5000/items/svc").unwrap();
        assert_eq!(local.tag, "latest");
        assert_eq!(local.base_url(), "http://127.0.0.1:5000");
        assert!(Reference::parse("items-service:v1").is_err());
        assert!(Reference::parse("r.io/Items:v1").is_err());
    }
}
