//! Layered settings: built-in defaults → the environment's file → an optional explicit file →
//! Cloud Run's `PORT` → `APP__SECTION__KEY` variables. Environment files are compiled in, so the
//! binary needs no files at run time.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use config::{Config, Environment, File, FileFormat};
use items_repository::DatabaseSettings;
use items_telemetry::{LogSettings, TelemetrySettings};
use secrecy::SecretString;
use serde::Deserialize;

/// All settings of the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    pub api: ApiSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// actix worker threads; default: one per CPU.
    #[serde(default)]
    pub workers: Option<usize>,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub page_token_secret: SecretString,
}

/// The deployment environment, from `APP_ENVIRONMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnvironment {
    Local,
    Dev,
    Stage,
    Prod,
}

impl AppEnvironment {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "local" => Self::Local,
            "dev" => Self::Dev,
            "stage" => Self::Stage,
            "prod" => Self::Prod,
            other => bail!(
                "APP_ENVIRONMENT (from the environment): unknown environment {other:?}; use local, dev, stage or prod"
            ),
        })
    }

    fn file(self) -> (&'static str, &'static str) {
        match self {
            Self::Local => ("local.toml", include_str!("../config/local.toml")),
            Self::Dev => ("dev.toml", include_str!("../config/dev.toml")),
            Self::Stage => ("stage.toml", include_str!("../config/stage.toml")),
            Self::Prod => ("prod.toml", include_str!("../config/prod.toml")),
        }
    }
}

/// Where settings come from besides the compiled-in files; tests pass their own.
#[derive(Debug, Clone, Default)]
pub struct SettingsSources {
    /// `APP_ENVIRONMENT`; default local.
    pub environment: Option<String>,
    /// An extra TOML file (`APP_CONFIG_FILE`).
    pub file: Option<PathBuf>,
    /// Cloud Run's `PORT`.
    pub port: Option<String>,
    /// Read `APP__…` variables from the process environment.
    pub use_env: bool,
    /// Extra overrides, as `(key, value)` with dotted keys (tests).
    pub overrides: Vec<(String, String)>,
}

impl SettingsSources {
    /// Everything from the process environment.
    pub fn from_env() -> Self {
        Self {
            environment: std::env::var("APP_ENVIRONMENT").ok(),
            file: std::env::var_os("APP_CONFIG_FILE").map(PathBuf::from),
            port: std::env::var("PORT").ok(),
            use_env: true,
            overrides: Vec::new(),
        }
    }
}

impl Settings {
    pub fn load(sources: &SettingsSources) -> anyhow::Result<Self> {
        let env = AppEnvironment::parse(sources.environment.as_deref().unwrap_or("local"))?;
        let (env_name, env_text) = env.file();
        let mut builder = Config::builder()
            .add_source(File::from_str(
                include_str!("../config/base.toml"),
                FileFormat::Toml,
            ))
            .add_source(File::from_str(env_text, FileFormat::Toml));
        if let Some(path) = &sources.file {
            builder = builder.add_source(
                File::from(path.as_path())
                    .format(FileFormat::Toml)
                    .required(true),
            );
        }
        if let Some(port) = &sources.port {
            let port: u16 = port.parse().with_context(|| {
                format!("PORT (from the environment): {port:?} is not a port number")
            })?;
            builder = builder.set_override("server.port", port)?;
        }
        if sources.use_env {
            builder = builder.add_source(
                Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        for (key, value) in &sources.overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let config = builder.build().with_context(|| {
            format!("reading settings (defaults, {env_name}, APP__* variables)")
        })?;
        let settings: Settings = config.try_deserialize().map_err(|e| {
            anyhow::anyhow!(
                "invalid setting: {e} (sources: built-in defaults, config/{env_name}, {}APP__* environment variables)",
                sources
                    .file
                    .as_ref()
                    .map(|p| format!("{}, ", p.display()))
                    .unwrap_or_default()
            )
        })?;
        settings
            .database
            .pg_config()
            .map_err(|e| anyhow::anyhow!("invalid setting: {e}"))?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(overrides: &[(&str, &str)]) -> SettingsSources {
        SettingsSources {
            overrides: overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..SettingsSources::default()
        }
    }

    #[test]
    fn defaults_load_for_every_environment() {
        let secret = std::env::temp_dir().join(format!("items-settings-{}", std::process::id()));
        std::fs::write(&secret, "pw\n").unwrap();
        for env in ["local", "dev", "stage", "prod"] {
            let s = Settings::load(&SettingsSources {
                environment: Some(env.into()),
                overrides: vec![(
                    "database.password_file".into(),
                    secret.display().to_string(),
                )],
                ..SettingsSources::default()
            });
            assert!(s.is_ok(), "{env}: {s:?}");
        }
        // Cloud Run environments read the password from the Secret Manager mount.
        let err = Settings::load(&SettingsSources {
            environment: Some("prod".into()),
            ..SettingsSources::default()
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("database.password_file"),
            "{err:#}"
        );
        std::fs::remove_file(secret).ok();
        let local = Settings::load(&SettingsSources::default()).unwrap();
        assert_eq!(local.server.host, "127.0.0.1");
        assert_eq!(local.database.pool.wait_timeout_ms, 1000);
    }

    #[test]
    fn port_wins_over_files() {
        let s = Settings::load(&SettingsSources {
            port: Some("9000".into()),
            ..SettingsSources::default()
        })
        .unwrap();
        assert_eq!(s.server.port, 9000);
        let err = Settings::load(&SettingsSources {
            port: Some("nine".into()),
            ..SettingsSources::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("PORT"), "{err:#}");
    }

    #[test]
    fn a_wrong_value_names_its_key() {
        let err = Settings::load(&sources(&[("database.pool.max_size", "lots")])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("database.pool.max_size"), "{msg}");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = Settings::load(&sources(&[("database.pool.max_sise", "3")])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("max_sise"), "{msg}");
    }

    #[test]
    fn an_unknown_environment_is_refused() {
        let err = Settings::load(&SettingsSources {
            environment: Some("qa".into()),
            ..SettingsSources::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("APP_ENVIRONMENT"), "{err}");
    }
}
