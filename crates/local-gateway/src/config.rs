//! How to start a gateway: [`GatewayConfig`] and where its log lines go ([`LogSink`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::jwt::{JwksSource, LocalJwks};

/// The API key the local gateway accepts unless told otherwise.
pub const LOCAL_API_KEY: &str = "local-dev-api-key";

/// Where the per-request log lines go.
#[derive(Debug, Clone, Default)]
pub enum LogSink {
    /// One JSON line per request on stdout (Cloud Logging's structured form).
    #[default]
    Stdout,
    /// Kept in memory, for tests.
    Memory(Arc<Mutex<Vec<Value>>>),
    Off,
}

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The rendered config file, served byte for byte.
    pub config_path: PathBuf,
    /// Base URL of the local service (`http://127.0.0.1:N`): replaces scheme, host and port of
    /// every `x-google-backend.address`; the address path and everything else stay the config's.
    pub backend_url: String,
    /// Where to listen (127.0.0.1, port 0 by default: any free port).
    pub listen: SocketAddr,
    /// The API keys that pass the key check.
    pub api_keys: Vec<String>,
    /// API keys of a project that has not enabled the API: Service Control's Check answers
    /// `SERVICE_NOT_ACTIVATED` for them, and the gateway 403 `PERMISSION_DENIED: API <service>
    /// is not enabled for the project.` (empty by default).
    pub api_keys_not_enabled: Vec<String>,
    /// The consumer project of each API key, where it is not `producer_project` (keys made in
    /// another project than the API's). Quota limits (`1/min/{project}`) are per consumer
    /// project, so keys of one project share their counts; the backend's
    /// `X-Apigateway-Api-Consumer-Number` is the project's number (empty by default: every key
    /// belongs to `producer_project`).
    pub api_key_projects: BTreeMap<String, String>,
    /// The identity in the backend ID token's `email` (the config's gateway service account,
    /// given to API Gateway with the config and therefore not in the file).
    pub gateway_service_account: String,
    /// The producer project: the quota consumer of requests without a key, and the log's
    /// `producer_project_id`.
    pub producer_project: String,
    /// The config id for logs (`service_config_id`).
    pub config_id: String,
    /// Where a provider's `x-google-jwks_uri` is fetched from (the local issuer by default).
    pub jwks: Arc<dyn JwksSource>,
    pub log: LogSink,
    /// The share of new traces (requests without a trace context) that are sampled: ESPv2's
    /// `--tracing_sample_rate`, 0.001 by default (esp-v2 `options/common.go`). An incoming
    /// context keeps its own decision.
    pub trace_sample_rate: f64,
    /// The JWT claims the log's `jwt_payloads` names (ESPv2 `--log_jwt_payloads`, e.g. `sub` or
    /// `foo.bar`); none by default, and then the field is absent.
    pub log_jwt_payloads: Vec<String>,
    /// actix worker threads.
    pub workers: usize,
}

impl GatewayConfig {
    /// Defaults: 127.0.0.1:0, the key [`LOCAL_API_KEY`], the local issuer's JWKS for every
    /// provider, logs on stdout, one worker per CPU.
    pub fn new(config_path: impl Into<PathBuf>, backend_url: impl Into<String>) -> Self {
        Self {
            config_path: config_path.into(),
            backend_url: backend_url.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_keys: vec![LOCAL_API_KEY.to_owned()],
            api_keys_not_enabled: Vec::new(),
            api_key_projects: BTreeMap::new(),
            gateway_service_account: "local-gateway@local-project.iam.gserviceaccount.com".into(),
            producer_project: "local-project".into(),
            config_id: "local".into(),
            jwks: Arc::new(LocalJwks::default()),
            log: LogSink::Stdout,
            trace_sample_rate: 0.001,
            log_jwt_payloads: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}
