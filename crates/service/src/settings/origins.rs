//! Where each setting came from (`APP__…`, `OTEL_*`, `PORT`, a file, or unset), and
//! `check-config`'s description of the telemetry values derived from several settings.

use std::collections::BTreeMap;
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

/// Where each setting came from, for `check-config`.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Setting key → origin: an `APP__…` or `OTEL_*` variable, `PORT`, a file. A key that is not
    /// here has no value (its built-in default applies).
    pub settings: BTreeMap<String, String>,
    /// `OTEL_*` variables that were set but ignored, and why.
    pub warnings: Vec<String>,
}

impl Origins {
    pub(super) fn of(&self, key: &str) -> &str {
        self.settings
            .get(key)
            .map_or("built-in default", String::as_str)
    }
}

/// `telemetry.otlp_endpoint` → `APP__TELEMETRY__OTLP_ENDPOINT`.
fn app_variable(key: &str) -> String {
    format!("APP__{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// A TOML text as settings, to ask which keys it sets.
fn parsed(text: &str) -> Option<Config> {
    Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .ok()
}

fn has_key(config: Option<&Config>, key: &str) -> bool {
    config.is_some_and(|c| c.get::<Value>(key).is_ok())
}

/// One line of `check-config`'s telemetry description: what, its value, from where.
type Row = (&'static str, String, String);

impl Settings {
    /// The telemetry values derived from several settings (`service.name`, the traces and
    /// metrics URLs), each with where it came from, and the ignored `OTEL_*` variables: the end
    /// of `check-config`'s output. `identity` gives `K_SERVICE`, one of the sources of
    /// `service.name`.
    pub fn describe_telemetry(&self, identity: &PlatformIdentity) -> String {
        let t = &self.telemetry;
        let rows: Vec<Row> = vec![
            self.service_name_row(identity),
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
        ];
        let mut out = String::from("Telemetry, derived (effective value, from where):\n");
        for (key, value, origin) in rows {
            let _ = writeln!(out, "  {key} = {value}  (from {origin})");
        }
        for warning in &self.origins.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        out
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

/// The origin of every setting that has a value (`config`, the merged settings): the highest
/// source that sets it, in the order of [`Settings::load`]'s layers.
pub(super) fn origins(
    sources: &SettingsSources,
    env: AppEnvironment,
    otel: &items_telemetry::env::OtelEnv,
    config: &Config,
) -> Origins {
    let (env_name, env_text) = env.file();
    let file = sources.file.as_ref().and_then(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        Some((path.display().to_string(), parsed(&text)))
    });
    let env_file = parsed(env_text);
    let deploy = env.deploy_file().map(|(name, text)| (name, parsed(text)));
    let base = parsed(super::BASE_TOML);
    let settings = super::effective::leaves(config)
        .into_iter()
        .map(|(key, _)| {
            let app = app_variable(&key);
            let origin = if sources.overrides.iter().any(|(k, _)| *k == key) {
                "an override".to_owned()
            } else if key == "server.port" && sources.port.is_some() {
                "PORT".to_owned()
            } else if sources.reads_variables() && sources.var(&app).is_some() {
                app
            } else if let Some((_, _, var)) = otel.values.iter().find(|(k, ..)| *k == key) {
                (*var).to_owned()
            } else if let Some((path, text)) = &file
                && has_key(text.as_ref(), &key)
            {
                path.clone()
            } else if has_key(env_file.as_ref(), &key) {
                format!("config/{env_name}")
            } else if let Some((name, text)) = &deploy
                && key.starts_with("cors.")
                && has_key(text.as_ref(), &key)
            {
                format!("{name} [cors]")
            } else if has_key(base.as_ref(), &key) {
                "config/base.toml".to_owned()
            } else {
                "built-in default".to_owned()
            };
            (key, origin)
        })
        .collect();
    Origins {
        settings,
        warnings: otel.warnings.clone(),
    }
}
