//! The gateways of the local cloud: one `items-local-gateway` per API Gateway gateway, calling
//! the Cloud Run front end of its region with the ID token its config's `jwt_audience` asks for.
//!
//! API Gateway serves exactly one API config per gateway; a new config replaces the local gateway
//! (stopped after its in-flight requests, then started on the same port with the new document):
//! connections arriving in between are refused. The local gateway has no hot swap of its config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use items_local_gateway::{GatewayConfig, LocalGateway, LogSink};

use crate::lock;
use crate::plane::GatewayPlane;

/// Local gateways, one per gateway resource.
#[derive(Debug)]
pub struct LocalGateways {
    /// Where each served config document is written.
    dir: PathBuf,
    /// Region → the URL of its Cloud Run front end (the backend of its gateway).
    backends: Mutex<BTreeMap<String, String>>,
    /// The identity in the backend ID tokens (the config's gateway service account).
    service_account: String,
    api_keys: Vec<String>,
    running: tokio::sync::Mutex<BTreeMap<String, LocalGateway>>,
    /// Gateway → the address it listens on (kept across configs).
    addrs: Mutex<BTreeMap<String, SocketAddr>>,
}

impl LocalGateways {
    pub fn new(dir: PathBuf, service_account: &str, api_keys: Vec<String>) -> Self {
        Self {
            dir,
            backends: Mutex::default(),
            service_account: service_account.to_owned(),
            api_keys,
            running: tokio::sync::Mutex::default(),
            addrs: Mutex::default(),
        }
    }

    /// The gateways of `region` call `url`.
    pub fn set_backend(&self, region: &str, url: &str) {
        lock(&self.backends).insert(region.to_owned(), url.to_owned());
    }

    /// Stops every gateway.
    pub async fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().await);
        for gateway in running.into_values() {
            gateway.stop().await;
        }
    }
}

#[async_trait::async_trait]
impl GatewayPlane for LocalGateways {
    async fn serve(&self, gateway: &str, document: &[u8]) -> anyhow::Result<Option<String>> {
        let region = gateway
            .split('/')
            .nth(3)
            .ok_or_else(|| anyhow::anyhow!("{gateway}: not projects/*/locations/*/gateways/*"))?;
        let backend = lock(&self.backends)
            .get(region)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no Cloud Run front end in {region}"))?;
        let short = gateway.rsplit('/').next().unwrap_or(gateway);
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{short}.yaml"));
        std::fs::write(&path, document)?;
        let mut running = self.running.lock().await;
        if let Some(old) = running.remove(gateway) {
            old.stop().await;
        }
        let mut config = GatewayConfig::new(path, backend);
        if let Some(addr) = lock(&self.addrs).get(gateway) {
            config.listen = *addr;
        }
        config
            .gateway_service_account
            .clone_from(&self.service_account);
        config.api_keys.clone_from(&self.api_keys);
        config.log = LogSink::Off;
        config.workers = 1;
        let started = LocalGateway::start(config).await?;
        let url = started.url();
        lock(&self.addrs).insert(gateway.to_owned(), started.addr());
        running.insert(gateway.to_owned(), started);
        Ok(Some(url))
    }
}
