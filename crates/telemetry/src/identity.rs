//! Who and where the service is, read once at start-up and handed to logging and the
//! OpenTelemetry pipeline as a value: [`ServiceInfo`] (the build's name and version) and
//! [`PlatformIdentity`] (project, region, Cloud Run service/revision/instance). Settings win, then
//! the environment (`GOOGLE_CLOUD_PROJECT`, `K_SERVICE`, `K_REVISION`), then — only on Cloud Run
//! (`K_SERVICE` set) — the metadata server, within a short timeout.

use std::time::Duration;

use crate::TelemetrySettings;

/// Who we are, for the resource and Error Reporting.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Default `service.name` when neither the settings nor `K_SERVICE` give one.
    pub name: String,
    pub version: String,
}

/// Facts about the runtime environment, for resource attributes, log correlation
/// (`projects/<project>/traces/<trace>`) and Error Reporting's `serviceContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformIdentity {
    pub project_id: Option<String>,
    pub region: Option<String>,
    /// `K_SERVICE`: set on Cloud Run only.
    pub service: Option<String>,
    /// `K_REVISION`.
    pub revision: Option<String>,
    /// The instance id (metadata server).
    pub instance: Option<String>,
}

impl PlatformIdentity {
    pub fn on_cloud_run(&self) -> bool {
        self.service.is_some()
    }

    /// The one reader: settings, then the process environment, then the metadata server
    /// (Cloud Run only).
    pub async fn detect(settings: &TelemetrySettings) -> Self {
        let identity = Self::read(
            settings.project_id.as_deref(),
            settings.region.as_deref(),
            |k| std::env::var(k).ok(),
        );
        if !identity.on_cloud_run() {
            return identity;
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "169.254.169.254".to_owned());
        let budget = Duration::from_millis(settings.metadata_timeout_ms);
        identity.with_metadata(&Metadata::new(&host, budget)).await
    }

    /// What the settings (`telemetry.project_id`, `telemetry.region`) and the environment (read
    /// through `env`; empty counts as unset) say.
    fn read(
        project_id: Option<&str>,
        region: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        Self {
            project_id: project_id
                .map(str::to_owned)
                .or_else(|| env("GOOGLE_CLOUD_PROJECT")),
            region: region.map(str::to_owned),
            service: env("K_SERVICE"),
            revision: env("K_REVISION"),
            instance: None,
        }
    }

    /// Fills the project and region the settings and environment left open, and the instance.
    async fn with_metadata(mut self, metadata: &Metadata) -> Self {
        let (project, region, instance) = tokio::join!(
            async {
                match &self.project_id {
                    Some(_) => None,
                    None => metadata.get("project/project-id").await,
                }
            },
            async {
                match &self.region {
                    Some(_) => None,
                    None => metadata.get("instance/region").await,
                }
            },
            metadata.get("instance/id"),
        );
        self.project_id = self.project_id.or(project);
        // `projects/123456/regions/europe-west1`
        self.region = self
            .region
            .or_else(|| region.map(|r| r.rsplit('/').next().unwrap_or(&r).to_owned()));
        self.instance = instance;
        self
    }
}

struct Metadata {
    base: String,
    client: Option<reqwest::Client>,
    budget: Duration,
}

impl Metadata {
    fn new(host: &str, budget: Duration) -> Self {
        crate::install_crypto_provider();
        Self {
            base: format!("http://{host}/computeMetadata/v1/"),
            client: reqwest::Client::builder().timeout(budget).build().ok(),
            budget,
        }
    }

    async fn get(&self, path: &str) -> Option<String> {
        let client = self.client.as_ref()?;
        let request = client
            .get(format!("{}{path}", self.base))
            .header("Metadata-Flavor", "Google")
            .send();
        let response = tokio::time::timeout(self.budget, request)
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let text = tokio::time::timeout(self.budget, response.text())
            .await
            .ok()?
            .ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_win_over_the_environment_and_empty_variables_are_unset() {
        let vars = &[
            ("GOOGLE_CLOUD_PROJECT", "from-env"),
            ("K_SERVICE", "items"),
            ("K_REVISION", ""),
        ];
        let identity = PlatformIdentity::read(Some("from-settings"), Some("eu"), env(vars));
        assert_eq!(
            identity,
            PlatformIdentity {
                project_id: Some("from-settings".into()),
                region: Some("eu".into()),
                service: Some("items".into()),
                revision: None,
                instance: None,
            }
        );
        assert!(identity.on_cloud_run());
        let identity = PlatformIdentity::read(None, None, env(vars));
        assert_eq!(identity.project_id.as_deref(), Some("from-env"));
        let off = PlatformIdentity::read(None, None, env(&[("K_SERVICE", "")]));
        assert_eq!(off, PlatformIdentity::default());
        assert!(!off.on_cloud_run());
    }

    /// A metadata server on localhost answering `paths`, and how many requests it got.
    async fn metadata_server(
        paths: &'static [(&'static str, &'static str)],
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = vec![0; 4096];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                let flavoured = request.contains("Metadata-Flavor: Google")
                    || request.contains("metadata-flavor: Google");
                let body = paths
                    .iter()
                    .find(|(path, _)| {
                        request.starts_with(&format!("GET /computeMetadata/v1/{path} "))
                    })
                    .filter(|_| flavoured)
                    .map(|(_, body)| *body);
                let response = match body {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned()
                    }
                };
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        (host, hits)
    }

    #[tokio::test]
    async fn the_metadata_server_fills_only_what_settings_and_environment_left_open() {
        let (host, hits) = metadata_server(&[
            ("project/project-id", "meta-project\n"),
            ("instance/region", "projects/123456/regions/europe-west1"),
            ("instance/id", "instance-7"),
        ])
        .await;
        let metadata = Metadata::new(&host, Duration::from_secs(5));
        let on_cloud_run = PlatformIdentity::read(None, None, env(&[("K_SERVICE", "items")]));
        let filled = on_cloud_run.with_metadata(&metadata).await;
        assert_eq!(filled.project_id.as_deref(), Some("meta-project"));
        assert_eq!(filled.region.as_deref(), Some("europe-west1"));
        assert_eq!(filled.instance.as_deref(), Some("instance-7"));
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
        let configured = PlatformIdentity::read(
            Some("from-settings"),
            Some("us-east1"),
            env(&[("K_SERVICE", "items")]),
        );
        let filled = configured.with_metadata(&metadata).await;
        assert_eq!(filled.project_id.as_deref(), Some("from-settings"));
        assert_eq!(filled.region.as_deref(), Some("us-east1"));
        assert_eq!(filled.instance.as_deref(), Some("instance-7"));
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "only instance/id asked"
        );
    }
}
