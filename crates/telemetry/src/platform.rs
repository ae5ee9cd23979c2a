//! Where the service runs: project, region, Cloud Run service/revision/instance. Settings win,
//! then the environment (`GOOGLE_CLOUD_PROJECT`, `K_SERVICE`, `K_REVISION`), then — only on
//! Cloud Run (`K_SERVICE` set) — the metadata server, within a short timeout.

use std::time::Duration;

use crate::TelemetrySettings;

/// Facts about the runtime environment, for resource attributes and log correlation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    pub project_id: Option<String>,
    pub region: Option<String>,
    /// `K_SERVICE`: set on Cloud Run only.
    pub service: Option<String>,
    /// `K_REVISION`.
    pub revision: Option<String>,
    /// The instance id (metadata server).
    pub instance: Option<String>,
}

impl Platform {
    pub fn on_cloud_run(&self) -> bool {
        self.service.is_some()
    }

    /// Settings, then environment variables, then the metadata server (Cloud Run only).
    pub async fn detect(settings: &TelemetrySettings) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut platform = Self {
            project_id: settings
                .project_id
                .clone()
                .or_else(|| env("GOOGLE_CLOUD_PROJECT")),
            region: settings.region.clone(),
            service: env("K_SERVICE"),
            revision: env("K_REVISION"),
            instance: None,
        };
        if platform.on_cloud_run() {
            let host = env("GCE_METADATA_HOST").unwrap_or_else(|| "169.254.169.254".to_owned());
            let budget = Duration::from_millis(settings.metadata_timeout_ms);
            let metadata = Metadata::new(&host, budget);
            let (project, region, instance) = tokio::join!(
                async {
                    match &platform.project_id {
                        Some(_) => None,
                        None => metadata.get("project/project-id").await,
                    }
                },
                async {
                    match &platform.region {
                        Some(_) => None,
                        None => metadata.get("instance/region").await,
                    }
                },
                metadata.get("instance/id"),
            );
            platform.project_id = platform.project_id.or(project);
            // `projects/123456/regions/europe-west1`
            platform.region = platform
                .region
                .or_else(|| region.map(|r| r.rsplit('/').next().unwrap_or(&r).to_owned()));
            platform.instance = instance;
        }
        platform
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
