//! What every worker shares: the config, the quota counts, the JWT cache, the backend ID tokens
//! and the log's fixed fields.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::config::GatewayConfig;
use crate::jwt;
use crate::keys::{self, SigningKey};
use crate::log::{self, ApiMethod};
use crate::quota::Quotas;
use crate::spec::Spec;

/// Shared by every worker.
#[derive(Debug)]
pub struct State {
    pub spec: Spec,
    pub config_bytes: Vec<u8>,
    pub config: GatewayConfig,
    pub(super) quotas: Quotas,
    pub(super) jwt_cache: jwt::Cache,
    google: SigningKey,
    /// audience → (`Bearer <ID token>`, expiry in seconds since the epoch).
    id_tokens: Mutex<HashMap<String, (HeaderValue, u64)>>,
    pub(super) log: log::Context,
    pub(super) backend_base: String,
    /// `1.<service name with _ for . and ->`: the log's `api_method` without the operation.
    api_method_prefix: String,
    /// The log's `api_method` of each operation id, made once.
    api_methods: HashMap<String, Arc<ApiMethod>>,
    /// `<Unknown Operation Name>`: requests that match no operation.
    pub(super) unknown_method: Arc<ApiMethod>,
    /// Project id → a stable stand-in for its project number, for the producer project and the
    /// keys' projects.
    project_numbers: HashMap<String, String>,
    /// The query parameters a JWT may come in (each provider's, `access_token` by default): their
    /// values are left out of the log.
    pub(super) token_params: Vec<String>,
}

impl State {
    pub fn new(
        spec: Spec,
        config_bytes: Vec<u8>,
        config: GatewayConfig,
        _addr: SocketAddr,
    ) -> Self {
        let log = log::Context::new(
            spec.service_name(),
            &spec.version,
            &config.config_id,
            &config.producer_project,
        );
        let api_method_prefix = format!("1.{}", spec.service_name().replace(['.', '-'], "_"));
        let api_methods = spec
            .routes
            .iter()
            .flat_map(|r| r.operations.values())
            .map(|o| {
                let name = format!("{api_method_prefix}.{}", o.operation_id);
                (o.operation_id.clone(), Arc::new(ApiMethod::new(name)))
            })
            .collect();
        let backend_base = config.backend_url.trim_end_matches('/').to_owned();
        let project_numbers = std::iter::once(&config.producer_project)
            .chain(config.api_key_projects.values())
            .map(|p| {
                let digest = ring::digest::digest(&ring::digest::SHA256, p.as_bytes());
                let number = digest.as_ref()[..6]
                    .iter()
                    .fold(0u64, |n, b| (n << 8) | u64::from(*b));
                (p.clone(), number.to_string())
            })
            .collect();
        let mut token_params: Vec<String> = spec
            .providers
            .values()
            .flat_map(|p| &p.locations)
            .filter_map(|l| match l {
                crate::spec::JwtLocation::Query(name) => Some(name.clone()),
                crate::spec::JwtLocation::Header { .. } => None,
            })
            .collect();
        token_params.push("access_token".into());
        token_params.sort();
        token_params.dedup();
        keys::install_crypto_provider();
        Self {
            spec,
            config_bytes,
            config,
            quotas: Quotas::default(),
            jwt_cache: jwt::Cache::default(),
            google: SigningKey::local_google(),
            id_tokens: Mutex::new(HashMap::new()),
            log,
            backend_base,
            api_method_prefix,
            api_methods,
            unknown_method: Arc::new(ApiMethod::new("<Unknown Operation Name>".into())),
            project_numbers,
            token_params,
        }
    }

    /// `Bearer <the backend ID token for audience>`, cached (ESPv2 caches the token it gets from
    /// the metadata server until shortly before it expires).
    pub(super) fn id_token_bearer(&self, audience: &str) -> anyhow::Result<HeaderValue> {
        let now = keys::now_secs();
        let mut cache = self.id_tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bearer, exp)) = cache.get(audience)
            && *exp > now + 300
        {
            return Ok(bearer.clone());
        }
        let token = keys::backend_id_token(
            &self.google,
            audience,
            &self.config.gateway_service_account,
            now,
        )?;
        let bearer = HeaderValue::try_from(format!("Bearer {token}"))?;
        cache.insert(audience.to_owned(), (bearer.clone(), now + 3600));
        Ok(bearer)
    }

    /// The consumer project of a known API key.
    pub(super) fn key_project(&self, key: &str) -> &str {
        self.config
            .api_key_projects
            .get(key)
            .unwrap_or(&self.config.producer_project)
    }

    /// The number of a project of the producer or of a key.
    pub(super) fn project_number(&self, project: &str) -> &str {
        self.project_numbers.get(project).map_or("", String::as_str)
    }

    /// Service Control's name of a consumer project in quota errors.
    pub(super) fn consumer_id(&self, project: &str) -> String {
        format!("project_number:{}", self.project_number(project))
    }

    /// The log's `api_method` of an operation (made here for CORS preflights, whose operations
    /// ESPv2 generates).
    pub(super) fn api_method(&self, operation_id: &str) -> Arc<ApiMethod> {
        self.api_methods
            .get(operation_id)
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(ApiMethod::new(format!(
                    "{}.{operation_id}",
                    self.api_method_prefix
                )))
            })
    }
}
