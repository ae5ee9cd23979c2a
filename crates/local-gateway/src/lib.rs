//! A local API Gateway: loads one rendered API Gateway config (`openapi/gateway/<env>-<region>.yaml`,
//! the bytes `cargo xtask deploy` uploads) and enforces it in front of the local service as
//! Google's API Gateway (ESPv2, Envoy-based) does: routing, API keys, JWTs, quotas, CORS, the
//! backend call with its path translation, deadline and Google-signed ID token, and one Cloud
//! Logging line per request. The behaviour follows ESPv2's source (GoogleCloudPlatform/esp-v2) and Envoy's `jwt_authn`;
//! where a fact is not confirmed, the ESPv2 source is followed and the code says so.
//!
//! A library first: tests and `cargo xtask dev --gateway` start it in-process with
//! [`LocalGateway::start`]. Never linked into the service binary.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use items_local_gateway::{GatewayConfig, LocalGateway};
//! let config = GatewayConfig::new("openapi/gateway/dev-europe-west1.yaml", "http://127.0.0.1:8081");
//! let gateway = LocalGateway::start(config).await?;
//! println!("gateway: {}", gateway.url());
//! gateway.stop().await;
//! # Ok(()) }
//! ```

mod config;
pub mod jwt;
pub mod keys;
mod log;
pub mod path;
mod proxy;
pub mod quota;
pub mod spec;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

pub use config::{GatewayConfig, LOCAL_API_KEY, LogSink};
pub use jwt::{JwksSource, LocalJwks};
pub use keys::{SigningKey, TokenRequest, user_token};
pub use spec::Spec;

/// A running local gateway.
#[derive(Debug)]
pub struct LocalGateway {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    state: Arc<proxy::State>,
}

impl LocalGateway {
    /// Reads `config.config_path`, binds the listener and starts serving (on the current tokio
    /// runtime, with actix worker threads).
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Self> {
        let bytes = std::fs::read(&config.config_path)
            .with_context(|| format!("reading {}", config.config_path.display()))?;
        let spec = Spec::parse(&bytes)
            .with_context(|| format!("loading {}", config.config_path.display()))?;
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let workers = config.workers.max(1);
        let state = Arc::new(proxy::State::new(spec, bytes, config, addr));
        let server = proxy::server(state.clone(), listener, workers)?;
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(Self {
            addr,
            handle,
            task,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bytes of the config file the gateway enforces, exactly as read.
    pub fn config_bytes(&self) -> &[u8] {
        &self.state.config_bytes
    }

    pub fn spec(&self) -> &Spec {
        &self.state.spec
    }

    /// Stops accepting, lets in-flight requests finish and waits for the server to end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
        if matches!(self.state.config.log, LogSink::Stdout) {
            log::flush();
        }
    }
}

/// The rendered config of `env` in `region` under `root` (`openapi/gateway/<env>-<region>.yaml`).
pub fn config_file(root: &Path, env: &str, region: &str) -> PathBuf {
    root.join("openapi")
        .join("gateway")
        .join(format!("{env}-{region}.yaml"))
}
