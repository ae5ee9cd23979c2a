//! Layered settings: defaults (`config/base.toml`, the only place a default is written) → the
//! `[cors]` table of `deploy/environments/<env>.toml` (dev, stage, prod: the table that also
//! renders the environment's gateway configs) → the environment's file → an optional explicit file → Cloud Run's `PORT` → the OpenTelemetry
//! specification's `OTEL_*` variables → `APP__SECTION__KEY` variables (so an `APP__…` setting
//! wins over its `OTEL_*` twin). Environment files are compiled in, so the binary needs no files
//! at run time. The settings tables of docs/configuration.md are checked against these files (`defaults_tests`).

mod api;
#[cfg(test)]
mod defaults_tests;
mod effective;
mod origins;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use config::{Config, Environment, File, FileFormat, Map, Source, Value};
use items_http::{CorsSettings, PageTokenCodec};
use items_repository::DatabaseSettings;
use items_telemetry::{LogSettings, TelemetrySettings};
use serde::Deserialize;

use api::ApiSettings;
pub use api::DEVELOPMENT_PAGE_TOKEN_SECRET;
pub use origins::Origins;
use origins::{OtelSource, origins};

/// The defaults of every environment.
const BASE_TOML: &str = include_str!("../../config/base.toml");

/// The settings as the files and variables state them: read once by [`Settings::load`], which
/// resolves them into [`Settings`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stated {
    server: ServerSettings,
    database: DatabaseSettings,
    log: LogSettings,
    telemetry: TelemetrySettings,
    cors: CorsSettings,
    /// Only optional keys: absent when no environment sets one.
    #[serde(default)]
    api: ApiSettings,
}

/// All settings of the service, resolved into the values the app uses (secret files read once,
/// here) and handed down from here.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    /// Browser apps: allowed origins, methods, headers (`items_http::CorsSettings`).
    pub cors: CorsSettings,
    /// `api.*`: the page-token keys (files read at start-up, once), as the codec the handlers use.
    pub page_tokens: PageTokenCodec,
    /// Where each setting came from, and ignored `OTEL_*` variables (`check-config`).
    pub origins: Origins,
    /// The effective settings in the config files' form, secrets redacted (`check-config`).
    pub effective: effective::Effective,
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

/// The environments, each name written once: `environments!(Variant = "name" …)` makes the enum,
/// its names and its compiled-in files (`config/<name>.toml`, and for deployed ones the `[cors]`
/// of `deploy/environments/<name>.toml`). deploy/facts.toml lists the deployed environments for
/// Terraform and the gateway configs; a test below holds this list to it.
macro_rules! environments {
    ($local:ident = $local_name:literal; $($variant:ident = $name:literal),+ $(,)?) => {
        /// The deployment environment, from `APP_ENVIRONMENT`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum AppEnvironment {
            /// The developer's machine (and the local cloud).
            $local,
            $($variant),+
        }

        impl AppEnvironment {
            /// Every environment, `local` first.
            pub const ALL: &[AppEnvironment] = &[Self::$local, $(Self::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    Self::$local => $local_name,
                    $(Self::$variant => $name),+
                }
            }

            fn file(self) -> (&'static str, &'static str) {
                match self {
                    Self::$local => (
                        concat!($local_name, ".toml"),
                        include_str!(concat!("../../config/", $local_name, ".toml")),
                    ),
                    $(Self::$variant => (
                        concat!($name, ".toml"),
                        include_str!(concat!("../../config/", $name, ".toml")),
                    )),+
                }
            }

            /// The environment's deployment file (`deploy/environments/<env>.toml`), whose
            /// `[cors]` table the service shares with the rendered gateway configs; `local` has
            /// none.
            fn deploy_file(self) -> Option<(&'static str, &'static str)> {
                Some(match self {
                    Self::$local => return None,
                    $(Self::$variant => (
                        concat!("deploy/environments/", $name, ".toml"),
                        include_str!(concat!("../../../../deploy/environments/", $name, ".toml")),
                    )),+
                })
            }
        }
    };
}

environments!(Local = "local"; Dev = "dev", Stage = "stage", Prod = "prod");

impl AppEnvironment {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|e| e.name()).collect();
                anyhow::anyhow!(
                    "APP_ENVIRONMENT (from the environment): unknown environment {s:?}; use {}",
                    names.join(", ")
                )
            })
    }
}

/// The `[cors]` table of a deployment file, as the settings' `cors` section.
#[derive(Debug, Clone)]
struct DeployCors {
    file: &'static str,
    text: &'static str,
}

impl Source for DeployCors {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        let deploy = Config::builder()
            .add_source(File::from_str(self.text, FileFormat::Toml))
            .build()?;
        let cors = deploy
            .get::<Value>("cors")
            .map_err(|e| config::ConfigError::Message(format!("{}: [cors]: {e}", self.file)))?;
        Ok(Map::from([("cors".to_owned(), cors)]))
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
    /// Read `APP__…` and `OTEL_*` variables from the process environment.
    pub use_env: bool,
    /// `APP__…` and `OTEL_*` variables to use instead of the process environment (tests).
    pub vars: Option<HashMap<String, String>>,
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
            vars: None,
            overrides: Vec::new(),
        }
    }

    /// A variable of the environment these sources read.
    fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None if self.use_env => std::env::var(name).ok(),
            None => None,
        }
    }

    fn reads_variables(&self) -> bool {
        self.use_env || self.vars.is_some()
    }
}

/// `APP__…` list settings (comma-separated in a variable).
const LIST_KEYS: [&str; 6] = [
    "api.page_token_previous_secrets",
    "api.page_token_previous_secret_files",
    "cors.allow_origins",
    "cors.allow_methods",
    "cors.allow_headers",
    "cors.expose_headers",
];

impl Settings {
    pub fn load(sources: &SettingsSources) -> anyhow::Result<Self> {
        let env = AppEnvironment::parse(sources.environment.as_deref().unwrap_or("local"))?;
        let (env_name, env_text) = env.file();
        let mut builder = Config::builder().add_source(File::from_str(BASE_TOML, FileFormat::Toml));
        if let Some((file, text)) = env.deploy_file() {
            builder = builder.add_source(DeployCors { file, text });
        }
        builder = builder.add_source(File::from_str(env_text, FileFormat::Toml));
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
        let otel = items_telemetry::env::otel_env(|name| sources.var(name));
        builder = builder.add_source(OtelSource(otel.values.clone()));
        if sources.reads_variables() {
            let mut app = Environment::with_prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",");
            for key in LIST_KEYS {
                app = app.with_list_parse_key(key);
            }
            if let Some(vars) = &sources.vars {
                app = app.source(Some(vars.clone().into_iter().collect()));
            }
            builder = builder.add_source(app);
        }
        for (key, value) in &sources.overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let config = builder.build().with_context(|| {
            format!("reading settings (defaults, {env_name}, APP__* variables)")
        })?;
        let stated: Stated = config.clone().try_deserialize().map_err(|e| {
            anyhow::anyhow!(
                "invalid setting: {e} (sources: config/base.toml, {}config/{env_name}, {}APP__* environment variables)",
                env.deploy_file()
                    .map(|(file, _)| format!("{file} [cors], "))
                    .unwrap_or_default(),
                sources
                    .file
                    .as_ref()
                    .map(|p| format!("{}, ", p.display()))
                    .unwrap_or_default()
            )
        })?;
        // Every problem at once: a new environment usually misses more than one secret.
        let mut problems = Vec::new();
        let page_tokens = match stated.api.resolve(env) {
            Ok(codec) => Some(codec),
            Err(e) => {
                problems.push(format!("{e:#}"));
                None
            }
        };
        if let Err(e) = stated.telemetry.validate() {
            problems.push(e);
        }
        if let Err(e) = stated.cors.validate() {
            problems.push(e);
        }
        if let Err(e) = stated.database.validate() {
            problems.push(e.to_string());
        }
        if stated.database.migrate_on_start && env != AppEnvironment::Local {
            problems.push(format!(
                "database.migrate_on_start: {} must not migrate at start-up (the runtime's \
                 database user has no DDL rights; the deploy's migrate job runs \
                 `items-service migrate`)",
                env.name()
            ));
        }
        let Some(page_tokens) = page_tokens.filter(|_| problems.is_empty()) else {
            bail!("invalid setting: {}", problems.join("; "));
        };
        let origins = origins(sources, env, &otel, &config);
        let effective = effective::Effective::new(&config, env);
        Ok(Settings {
            server: stated.server,
            database: stated.database,
            log: stated.log,
            telemetry: stated.telemetry,
            cors: stated.cors,
            page_tokens,
            origins,
            effective,
        })
    }
}

#[cfg(test)]
mod tests {
    use items_telemetry::PlatformIdentity;

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

    /// A file in the temp directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("items-settings-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }

        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            std::fs::remove_file(&self.0).ok();
        }
    }

    const GOOD_KEY: &str = "0123456789abcdef0123456789abcdef-generated";

    fn item() -> items_domain::ItemId {
        items_domain::ItemId::new(42).unwrap()
    }

    /// Whether `codec` signs new page tokens with `key`.
    fn signs_with(codec: &PageTokenCodec, key: &str) -> bool {
        PageTokenCodec::new(key.as_bytes())
            .decode(&codec.encode(item()))
            .is_ok()
    }

    /// Whether `codec` accepts page tokens signed with `key`.
    fn verifies(codec: &PageTokenCodec, key: &str) -> bool {
        codec
            .decode(&PageTokenCodec::new(key.as_bytes()).encode(item()))
            .is_ok()
    }

    fn in_env(env: &str, overrides: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::load(&SettingsSources {
            environment: Some(env.into()),
            ..sources(overrides)
        })
    }

    fn with_vars(env: &str, vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let password = TempFile::new(&format!("pw-{env}-{}", vars.len()), "pw\n");
        Settings::load(&SettingsSources {
            environment: Some(env.into()),
            vars: Some(
                vars.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            overrides: vec![("database.password_file".into(), password.path())],
            ..SettingsSources::default()
        })
    }

    #[test]
    fn defaults_load_for_every_environment() {
        let secret = TempFile::new("pw", "pw\n");
        let key = TempFile::new("key", &format!("{GOOD_KEY}\n"));
        for env in ["local", "dev", "stage", "prod"] {
            let s = in_env(
                env,
                &[
                    ("database.password_file", &secret.path()),
                    ("api.page_token_secret_file", &key.path()),
                ],
            );
            assert!(s.is_ok(), "{env}: {s:?}");
            assert!(
                signs_with(&s.unwrap().page_tokens, GOOD_KEY),
                "{env}: the file wins, newline stripped"
            );
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
        let local = Settings::load(&SettingsSources::default()).unwrap();
        assert_eq!(local.server.host, "127.0.0.1");
        assert_eq!(local.database.pool.wait_timeout_ms, 1000);
    }

    #[test]
    fn only_local_migrates_at_start_up() {
        let password = TempFile::new("pw-migrate", "pw");
        let key = TempFile::new("key-migrate", GOOD_KEY);
        let base = [
            ("database.password_file", password.path()),
            ("api.page_token_secret_file", key.path()),
        ];
        let local = Settings::load(&SettingsSources::default()).unwrap();
        assert!(local.database.migrate_on_start, "local has no migrate job");
        for env in ["dev", "stage", "prod"] {
            let owned: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let s = in_env(env, &owned).unwrap();
            assert!(!s.database.migrate_on_start, "{env}");
            let mut on = owned.clone();
            on.push(("database.migrate_on_start", "true"));
            let err = format!("{:#}", in_env(env, &on).unwrap_err());
            assert!(err.contains("database.migrate_on_start"), "{env}: {err}");
        }
    }

    #[test]
    fn outside_local_a_missing_or_development_page_token_key_is_refused() {
        let password = TempFile::new("pw2", "pw");
        let password = password.path();
        let short = TempFile::new("short", "too-short");
        for env in ["dev", "stage", "prod"] {
            // No key at all: the message names the setting (the database password is missing too,
            // and both are reported).
            let err = format!("{:#}", in_env(env, &[]).unwrap_err());
            assert!(err.contains("api.page_token_secret"), "{env}: {err}");
            assert!(err.contains("database.password_file"), "{env}: {err}");
            for (key, value, why) in [
                (
                    "api.page_token_secret",
                    DEVELOPMENT_PAGE_TOKEN_SECRET,
                    "development key",
                ),
                ("api.page_token_secret", "", "empty"),
                (
                    "api.page_token_secret_file",
                    "/nonexistent/page-token",
                    "cannot read",
                ),
                ("api.page_token_secret_file", &short.path(), "9 bytes"),
            ] {
                let err = in_env(env, &[("database.password_file", &password), (key, value)])
                    .map(|_| ())
                    .unwrap_err();
                let err = format!("{err:#}");
                assert!(
                    err.contains("api.page_token_secret") && err.contains(why),
                    "{env} {key}={value:?}: {err}"
                );
            }
            in_env(
                env,
                &[
                    ("database.password_file", &password),
                    ("api.page_token_secret", GOOD_KEY),
                ],
            )
            .unwrap();
        }
        // Locally (and in the test harness) the development key is the default.
        let local = Settings::load(&SettingsSources::default()).unwrap();
        assert!(signs_with(
            &local.page_tokens,
            DEVELOPMENT_PAGE_TOKEN_SECRET
        ));
        assert!(!verifies(&local.page_tokens, GOOD_KEY));
    }

    #[test]
    fn previous_page_token_keys_come_from_variables_and_files() {
        let current = TempFile::new("current", GOOD_KEY);
        let old1 = TempFile::new("old1", "old-key-one\n");
        let old2 = TempFile::new("old2", "old-key-two");
        let s = with_vars(
            "prod",
            &[
                ("APP__API__PAGE_TOKEN_SECRET_FILE", &current.path()),
                (
                    "APP__API__PAGE_TOKEN_PREVIOUS_SECRET_FILES",
                    &format!("{},{}", old1.path(), old2.path()),
                ),
                ("APP__API__PAGE_TOKEN_PREVIOUS_SECRETS", "plain-old-key"),
            ],
        )
        .unwrap();
        assert!(signs_with(&s.page_tokens, GOOD_KEY));
        for old in ["plain-old-key", "old-key-one", "old-key-two"] {
            assert!(verifies(&s.page_tokens, old), "{old}");
            assert!(!signs_with(&s.page_tokens, old), "{old}");
        }
        assert!(!verifies(&s.page_tokens, "a key nobody set"));
        // Secrets never show in Debug output.
        let debug = format!("{s:?}");
        assert!(
            !debug.contains(GOOD_KEY) && !debug.contains("plain-old-key"),
            "{debug}"
        );
    }

    #[test]
    fn otel_variables_configure_telemetry_and_app_variables_win() {
        let s = with_vars(
            "prod",
            &[
                ("APP__API__PAGE_TOKEN_SECRET", GOOD_KEY),
                ("OTEL_SERVICE_NAME", "x"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=a%2Cb",
                ),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp/"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "http://metrics:9090/ingest",
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                // The APP__ twin wins over OTEL_TRACES_SAMPLER_ARG.
                ("APP__TELEMETRY__SAMPLE_RATIO", "0.5"),
                ("OTEL_SDK_DISABLED", "nonsense"),
            ],
        )
        .unwrap();
        let t = &s.telemetry;
        assert_eq!(t.service_name.as_deref(), Some("x"));
        assert_eq!(
            t.exporter,
            items_telemetry::Exporter::Otlp,
            "from config/prod.toml"
        );
        assert_eq!(
            t.traces_url().as_deref(),
            Some("http://collector:4318/otlp/v1/traces")
        );
        assert_eq!(
            t.metrics_url().as_deref(),
            Some("http://metrics:9090/ingest")
        );
        assert_eq!(t.otlp_compression, items_telemetry::Compression::Gzip);
        assert_eq!(t.sampler, items_telemetry::SamplerKind::TraceIdRatio);
        assert!((t.sample_ratio - 0.5).abs() < f64::EPSILON);
        assert_eq!(
            s.origins.of("telemetry.sample_ratio"),
            "APP__TELEMETRY__SAMPLE_RATIO"
        );
        assert_eq!(s.origins.of("telemetry.service_name"), "OTEL_SERVICE_NAME");
        assert_eq!(s.origins.of("telemetry.exporter"), "config/prod.toml");
        assert_eq!(
            s.origins.of("telemetry.otlp_endpoint"),
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert_eq!(s.origins.of("telemetry.sampler"), "OTEL_TRACES_SAMPLER");
        let described = s.describe_telemetry(&PlatformIdentity::default());
        assert!(
            described.contains(
                "service.name = \"x\"  (from telemetry.service_name, from OTEL_SERVICE_NAME)"
            ),
            "{described}"
        );
        let toml = s.to_toml(&PlatformIdentity::default());
        assert!(
            toml.contains("otlp_headers = \"api-key=REDACTED\"  # OTEL_EXPORTER_OTLP_HEADERS"),
            "{toml}"
        );
        assert!(!toml.contains("s3cret") && !format!("{s:?}").contains("s3cret"));
        assert!(
            described.contains("warning: OTEL_SDK_DISABLED"),
            "{described}"
        );

        // OTEL_SDK_DISABLED=true stops exporting, unless APP__TELEMETRY__EXPORTER says otherwise.
        let vars = [
            ("APP__API__PAGE_TOKEN_SECRET", GOOD_KEY),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        let off = with_vars("prod", &vars).unwrap();
        assert_eq!(off.telemetry.exporter, items_telemetry::Exporter::None);
        assert_eq!(off.origins.of("telemetry.exporter"), "OTEL_SDK_DISABLED");
        let mut vars = vars.to_vec();
        vars.push(("APP__TELEMETRY__EXPORTER", "otlp"));
        let on = with_vars("prod", &vars).unwrap();
        assert_eq!(on.telemetry.exporter, items_telemetry::Exporter::Otlp);
        // Without OTEL_* variables: the defaults, and the generic endpoint + v1/traces.
        let plain = with_vars("prod", &[("APP__API__PAGE_TOKEN_SECRET", GOOD_KEY)]).unwrap();
        assert_eq!(
            plain.telemetry.traces_url().as_deref(),
            Some("http://localhost:4318/v1/traces")
        );
        assert_eq!(
            plain.origins.of("telemetry.service_name"),
            "built-in default"
        );
        assert_eq!(
            plain.origins.of("telemetry.sample_ratio"),
            "config/base.toml"
        );
    }

    #[test]
    fn an_invalid_app_telemetry_value_is_an_error_naming_its_key() {
        let err = format!(
            "{:#}",
            Settings::load(&sources(&[("telemetry.otlp_headers", "novalue")])).unwrap_err()
        );
        assert!(err.contains("telemetry.otlp_headers"), "{err}");
        let err = format!(
            "{:#}",
            Settings::load(&sources(&[("telemetry.sampler", "xray")])).unwrap_err()
        );
        assert!(err.contains("sampler"), "{err}");
    }

    #[test]
    fn cors_comes_from_the_deployment_file_and_app_variables_override_it() {
        // dev: the [cors] table of deploy/environments/dev.toml, the one the gateway configs
        // are rendered from.
        let deploy: toml::Table = include_str!("../../../../deploy/environments/dev.toml")
            .parse()
            .unwrap();
        let origins: Vec<String> = deploy["cors"]["allow_origins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        let dev = with_vars("dev", &[("APP__API__PAGE_TOKEN_SECRET", GOOD_KEY)]).unwrap();
        assert!(!origins.is_empty());
        assert_eq!(dev.cors.allow_origins, origins);
        assert_eq!(
            dev.cors.expose_headers,
            ["ETag", "Location", "Idempotent-Replayed"]
        );
        // local: none by default; a comma-separated variable (what `cargo xtask dev` users set).
        let local = Settings::load(&SettingsSources::default()).unwrap();
        assert!(local.cors.allow_origins.is_empty());
        let local_with_origins = |origins: &str| {
            Settings::load(&SettingsSources {
                vars: Some(HashMap::from([(
                    "APP__CORS__ALLOW_ORIGINS".to_owned(),
                    origins.to_owned(),
                )])),
                ..SettingsSources::default()
            })
        };
        let s = local_with_origins("http://127.0.0.1:5173,http://localhost:5173").unwrap();
        assert_eq!(
            s.cors.allow_origins,
            ["http://127.0.0.1:5173", "http://localhost:5173"]
        );
        // A path in an origin would never match a browser's Origin: refused, naming the key.
        let err = local_with_origins("https://app.example.com/").unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("cors.allow_origins[0]") && err.contains("no path"),
            "{err}"
        );
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

    /// deploy/facts.toml defines the deployed environments for Terraform, the deployment files
    /// and the gateway configs; the service's list is the same, after `local`.
    #[test]
    fn the_environments_are_those_of_deploy_facts_toml() {
        let facts: toml::Table = include_str!("../../../../deploy/facts.toml")
            .parse()
            .unwrap();
        let deployed: Vec<&str> = facts["facts"]["environments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let ours: Vec<&str> = AppEnvironment::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(ours[0], "local");
        assert_eq!(ours[1..], deployed, "deploy/facts.toml says {deployed:?}");
        for env in AppEnvironment::ALL {
            assert_eq!(AppEnvironment::parse(env.name()).unwrap(), *env);
        }
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
