//! Telemetry for the items service: structured logs on stdout (JSON for Cloud Logging, or a
//! readable format locally). Traces and metrics arrive with the telemetry issue.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (Cloud Logging).
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// `log.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `items_http=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

/// Installs the global subscriber. Call once, at start-up.
pub fn init(settings: &LogSettings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&settings.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    }
}
