//! The SLO gate of `cargo xtask deploy --slo-p95-ms N`: after a region's gateway serves the new
//! config (and answered the check), a short load test through that gateway (`crate::loadtest`,
//! reads only: GET one item and GET a page); a missed objective fails step 4 in that region, and
//! the deploy rolls back as for any failure (that region and every region already changed).

use std::time::Duration;

use crate::bench::parse_duration;
use crate::loadtest::{self, Load, Slo, Target};

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "SLO gate")]
pub(crate) struct SloArgs {
    /// After each region's gateway rollout, load the gateway for --slo-duration and roll back
    /// when an endpoint's p95 latency is above this many milliseconds.
    #[arg(long, value_name = "MS")]
    slo_p95_ms: Option<f64>,
    /// With --slo-p95-ms: the error ratio allowed (statuses ≥ 400 count, 429 included: the load
    /// must fit the API key's quota).
    #[arg(
        long,
        default_value_t = 0.01,
        value_name = "RATIO",
        requires = "slo_p95_ms"
    )]
    slo_error_ratio: f64,
    /// With --slo-p95-ms: how long each gateway is loaded.
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "slo_p95_ms")]
    slo_duration: Duration,
    /// With --slo-p95-ms: connections held open during the load.
    #[arg(long, default_value_t = 10, requires = "slo_p95_ms")]
    slo_connections: u32,
    /// Bearer token (the API's JWT) for the requests through the gateway: the check and the load.
    #[arg(long, env = "DEPLOY_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// The gate, when `--slo-p95-ms` is given.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    slo: Slo,
    load: Load,
    api_key: Option<String>,
    token: Option<String>,
}

impl SloArgs {
    pub(crate) fn gate(&self, api_key: Option<String>) -> Option<Gate> {
        let p95 = self.slo_p95_ms?;
        Some(Gate {
            slo: Slo {
                p95_ms: Some(p95),
                error_ratio: Some(self.slo_error_ratio),
            },
            load: Load {
                connections: self.slo_connections,
                duration: self.slo_duration,
                writes: false,
            },
            api_key,
            token: self.token.clone(),
        })
    }
}

impl Gate {
    /// What the plan says after each gateway's check.
    pub(crate) fn describe(&self) -> String {
        format!(
            "load it {} s at {} connections (GET one item, GET a page): p95 ≤ {} ms, error ratio ≤ {}, else roll back",
            self.load.duration.as_secs(),
            self.load.connections,
            self.slo.p95_ms.unwrap_or_default(),
            self.slo.error_ratio.unwrap_or_default()
        )
    }

    /// Loads the gateway at `base`; the figures when every objective holds, else an error naming
    /// each miss.
    pub(crate) async fn check(&self, base: &str) -> anyhow::Result<String> {
        let target = Target {
            url: base.to_owned(),
            api_key: self.api_key.clone(),
            token: self.token.clone(),
        };
        let outcome = loadtest::drive(&target, self.load).await?;
        let figures = outcome
            .endpoints
            .iter()
            .map(|m| {
                format!(
                    "{} {:.0} req/s p95 {:.1} ms errors {:.4}",
                    m.name,
                    m.requests_per_second(),
                    m.p95_ms(),
                    m.error_ratio()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let misses = self.slo.misses(&outcome);
        if misses.is_empty() {
            Ok(format!("SLO met through {base}: {figures}"))
        } else {
            anyhow::bail!("SLO missed through {base}: {}", misses.join("; "))
        }
    }
}
