//! Where each telemetry setting came from (`APP__…`, `OTEL_*`, a file, or unset), and
//! `check-config`'s description of the effective telemetry settings.

use std::fmt::Write as _;

use config::{Config, File, FileFormat, Map, Source, Value};
use items_telemetry::{Exporter, PlatformIdentity};

use super::{AppEnvironment, Settings, SettingsSources};

/// The `OTEL_*` variables as a settings source, between the files and `APP__…`.
#[derive(Debug, Clone)]
pub(super) struct OtelSource(pub(super) Vec<(&'static str, String, &'static str)>);

impl Source for OtelSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self
            .0
            .iter()
            .map(|(key, value, var)| {
                let origin = (*var).to_owned();
                ((*key).to_owned(), Value::new(Some(&origin), value.as_str()))
            })
            .collect())
    }
}

/// Where each telemetry setting with an `OTEL_*` twin came from, for `check-config`.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// `(setting key, origin)`: an `APP__…` or `OTEL_*` variable, a file, or the built-in default.
    pub telemetry: Vec<(&'static str, String)>,
    /// `OTEL_*` variables that were set but ignored, and why.
    pub warnings: Vec<String>,
}

impl Origins {
    pub(super) fn of(&self, key: &str) -> &str {
        self.telemetry
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("built-in default", |(_, o)| o.as_str())
    }
}

/// `telemetry.otlp_endpoint` → `APP__TELEMETRY__OTLP_ENDPOINT`.
fn app_variable(key: &str) -> String {
    format!("APP__{}", key.to_ascii_uppercase().replace('.', "__"))
}

fn has_key(text: &str, key: &str) -> bool {
    Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .is_ok_and(|c| c.get::<Value>(key).is_ok())
}

/// One line of `check-config`'s telemetry description: what, its value, from where.
type Row = (&'static str, String, String);

impl Settings {
    /// The effective telemetry settings that have an `OTEL_*` twin, each with its origin, and
    /// the ignored `OTEL_*` variables (`items-service check-config`). `identity` gives
    /// `K_SERVICE`, one of the sources of `service.name`.
    pub fn describe_telemetry(&self, identity: &PlatformIdentity) -> String {
        let t = &self.telemetry;
        let headers = items_telemetry::env::parse_key_values(&t.otlp_headers.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| format!("{k}=[redacted]"))
            .collect::<Vec<_>>()
            .join(",");
        let rows: Vec<Row> = vec![
            self.service_name_row(identity),
            self.row("telemetry.exporter", format!("{:?}", t.exporter)),
            self.row("telemetry.otlp_endpoint", format!("{:?}", t.otlp_endpoint)),
            self.signal_row(
                ("traces URL", "v1/traces"),
                t.traces_url(),
                ("telemetry.otlp_traces_endpoint", &t.otlp_traces_endpoint),
            ),
            self.signal_row(
                ("metrics URL", "v1/metrics"),
                t.metrics_url(),
                ("telemetry.otlp_metrics_endpoint", &t.otlp_metrics_endpoint),
            ),
            self.row("telemetry.otlp_headers", format!("{headers:?}")),
            self.row(
                "telemetry.otlp_compression",
                format!("{:?}", t.otlp_compression),
            ),
            self.row(
                "telemetry.resource_attributes",
                format!("{:?}", t.resource_attributes),
            ),
            self.row("telemetry.sampler", format!("{:?}", t.sampler)),
            self.row("telemetry.sample_ratio", format!("{}", t.sample_ratio)),
        ];
        let mut out = String::from("Telemetry (effective value, from where):\n");
        for (key, value, origin) in rows {
            let _ = writeln!(out, "  {key} = {value}  (from {origin})");
        }
        for warning in &self.origins.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        out
    }

    fn row(&self, key: &'static str, value: String) -> Row {
        (key, value, self.origins.of(key).to_owned())
    }

    fn service_name_row(&self, identity: &PlatformIdentity) -> Row {
        let (name, from) = self
            .telemetry
            .service_name_and_origin(identity.service.as_deref(), env!("CARGO_PKG_NAME"));
        let origin = match from {
            "telemetry.service_name" | "telemetry.resource_attributes" => {
                format!("{from}, from {}", self.origins.of(from))
            }
            other => other.to_owned(),
        };
        ("service.name", format!("{name:?}"), origin)
    }

    /// The URL of one signal (`signal`: label and path) and where it came from: its own setting
    /// (`own`: key and value), or the exporter's base URL.
    fn signal_row(
        &self,
        (label, path): (&'static str, &str),
        url: Option<String>,
        own: (&str, &Option<String>),
    ) -> Row {
        let t = &self.telemetry;
        let origin = if url.is_none() {
            "nothing is exported".to_owned()
        } else if t.exporter == Exporter::Otlp && own.1.is_some() {
            format!("{}, from {}", own.0, self.origins.of(own.0))
        } else {
            let base = match t.exporter {
                Exporter::Gcp => "telemetry.gcp_endpoint",
                _ => "telemetry.otlp_endpoint",
            };
            format!("{base} + {path}")
        };
        (label, format!("{url:?}"), origin)
    }
}

/// The origin of each telemetry setting that has an `OTEL_*` twin: the highest source that sets
/// it.
pub(super) fn origins(
    sources: &SettingsSources,
    env: AppEnvironment,
    otel: &items_telemetry::env::OtelEnv,
) -> Origins {
    let (env_name, env_text) = env.file();
    let file_text = sources
        .file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok());
    let mut telemetry: Vec<(&'static str, String)> = Vec::new();
    for (_, key) in items_telemetry::env::OTEL_VARIABLES {
        if telemetry.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let app = app_variable(key);
        let origin = if sources.overrides.iter().any(|(k, _)| k == key) {
            "an override".to_owned()
        } else if sources.reads_variables() && sources.var(&app).is_some() {
            app
        } else if let Some((_, _, var)) = otel.values.iter().find(|(k, ..)| *k == key) {
            (*var).to_owned()
        } else if let (Some(path), Some(text)) = (&sources.file, &file_text)
            && has_key(text, key)
        {
            path.display().to_string()
        } else if has_key(env_text, key) {
            format!("config/{env_name}")
        } else if has_key(super::BASE_TOML, key) {
            "config/base.toml".to_owned()
        } else {
            "built-in default".to_owned()
        };
        telemetry.push((key, origin));
    }
    Origins {
        telemetry,
        warnings: otel.warnings.clone(),
    }
}
