//! What the roll-out starts from: the state of each region and of the API's configs, read from
//! the control planes (reads only), plus each region's API Gateway config rendered by
//! `items-gateway-spec`.

use anyhow::Context as _;
use google_cloud_run_v2::model::{Revision, Service};
use items_gateway_spec::Environment;

use super::cloud::Cloud;
use super::traffic::{self, Split};
use crate::util;

/// One region as read before the roll-out.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub(crate) name: String,
    pub(crate) service_name: String,
    pub(crate) service: Service,
    /// The traffic as read, "latest" pinned: what a rollback restores.
    pub(crate) previous: Vec<Split>,
    /// The revision serving all traffic, when one does (and still exists): what the plan compares
    /// the image and the service's configuration with.
    pub(crate) serving: Option<Revision>,
    pub(crate) gateway_name: String,
    /// The config the gateway serves now (full name).
    pub(crate) gateway_config: String,
    pub(crate) gateway_hostname: String,
    pub(crate) config_id: String,
    pub(crate) config_name: String,
    pub(crate) config_file: String,
    pub(crate) yaml: String,
    /// Whether a config with the rendered id exists (only read when the gateway serves another).
    pub(crate) config_exists: bool,
}

impl Region {
    /// Whether the region's gateway serves the rendered config.
    pub(crate) fn gateway_current(&self) -> bool {
        self.gateway_config == self.config_name
    }
}

/// Everything the plan is computed from.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// The regions deployed now, in the environment's order.
    pub(crate) regions: Vec<Region>,
    /// The API's configs, newest first.
    pub(crate) configs: Vec<String>,
    /// The configs the gateways of the environment's other regions serve.
    pub(crate) served_elsewhere: Vec<String>,
}

/// Reads the state of `regions` and of the API's configs.
pub(crate) async fn read(
    cloud: &Cloud,
    env: &Environment,
    regions: &[String],
) -> anyhow::Result<State> {
    let mut read = Vec::new();
    for name in regions {
        read.push(
            read_region(cloud, env, name)
                .await
                .with_context(|| format!("reading the current state of {name}"))?,
        );
    }
    let configs = configs_newest_first(cloud, env).await?;
    let served_elsewhere = served_configs(cloud, env, regions).await?;
    Ok(State {
        regions: read,
        configs,
        served_elsewhere,
    })
}

/// The configs the gateways of the environment serve now, except those of the regions in
/// `except`.
pub(crate) async fn served_configs(
    cloud: &Cloud,
    env: &Environment,
    except: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut served = Vec::new();
    for r in env.regions.iter().filter(|r| !except.contains(&r.name)) {
        let gateway = gateway_name(env, &r.name, &r.gateway_id);
        served.push(cloud.get_gateway(&gateway).await?.api_config);
    }
    Ok(served)
}

async fn read_region(cloud: &Cloud, env: &Environment, name: &str) -> anyhow::Result<Region> {
    let settings = env
        .region(name)
        .with_context(|| format!("{} has no region {name}", env.name))?;
    let service_name = format!(
        "projects/{}/locations/{name}/services/{}",
        env.project_id, env.service
    );
    let service = cloud.get_service(&service_name).await?;
    let previous = traffic::pinned(&service);
    let serving = match traffic::serving_all(&previous) {
        Some(revision) => {
            cloud
                .get_revision(&format!("{service_name}/revisions/{revision}"))
                .await?
        }
        None => None,
    };
    let gateway_name = gateway_name(env, name, &settings.gateway_id);
    let gateway = cloud.get_gateway(&gateway_name).await?;
    let rendered = render_config(env, name)?;
    let config_name = format!("{}/configs/{}", api_name(env), rendered.config_id);
    let config_exists =
        gateway.api_config != config_name && cloud.get_config(&config_name).await?.is_some();
    Ok(Region {
        name: name.to_owned(),
        previous,
        service_name,
        service,
        serving,
        gateway_name,
        gateway_config: gateway.api_config,
        gateway_hostname: gateway.default_hostname,
        config_id: rendered.config_id,
        config_name,
        config_file: rendered.file_name,
        yaml: rendered.yaml,
        config_exists,
    })
}

/// The API's configs, newest first.
async fn configs_newest_first(cloud: &Cloud, env: &Environment) -> anyhow::Result<Vec<String>> {
    let configs = cloud.list_configs(&api_name(env)).await?;
    let mut by_age: Vec<(i64, i32, String)> = configs
        .iter()
        .map(|c| {
            let (s, n) = c
                .create_time
                .as_ref()
                .map_or((0, 0), |t| (t.seconds(), t.nanos()));
            (s, n, c.name.clone())
        })
        .collect();
    by_age.sort_by(|a, b| b.cmp(a));
    Ok(by_age.into_iter().map(|(_, _, n)| n).collect())
}

/// The region's API Gateway config, rendered by `items-gateway-spec` from the route table.
fn render_config(env: &Environment, region: &str) -> anyhow::Result<items_gateway_spec::Rendered> {
    let spec: serde_json::Value = serde_json::from_str(items_http::openapi_json())
        .context("the generated OpenAPI spec is not JSON")?;
    let previous = std::fs::read_to_string(
        util::project_root()
            .join("openapi/gateway")
            .join(format!("{}-{region}.yaml", env.name)),
    )
    .ok();
    Ok(items_gateway_spec::render(
        &spec,
        env,
        region,
        previous.as_deref(),
    )?)
}

pub(crate) fn api_name(env: &Environment) -> String {
    format!(
        "projects/{}/locations/global/apis/{}",
        env.project_id, env.api_id
    )
}

fn gateway_name(env: &Environment, region: &str, gateway_id: &str) -> String {
    format!(
        "projects/{}/locations/{region}/gateways/{gateway_id}",
        env.project_id
    )
}

/// `…/configs/x` → `x` (also for gateways).
pub(crate) fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}
