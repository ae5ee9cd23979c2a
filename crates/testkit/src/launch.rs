//! One way to start the service: the settings a tool or test chooses, written as the variables
//! the service reads (`APP_ENVIRONMENT`, `PORT`, `APP__…`). This is the one place outside the
//! service that knows their names; the end-to-end tests hand the same variables to the service's
//! settings loader to build the app in process.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What a clean child environment keeps of ours: enough to run, nothing that configures the
/// service (`APP__…`, `OTEL_*`, `K_SERVICE`, `RUST_LOG`).
const KEPT_IN_A_CLEAN_ENV: [&str; 3] = ["PATH", "HOME", "TMPDIR"];

/// The service binary with the environment it needs; build a [`tokio::process::Command`] (or a
/// std one) from it, or read its variables for an in-process app.
///
/// ```
/// let launch = items_testkit::ServiceLaunch::new("target/debug/items-service")
///     .environment("local")
///     .database_url("postgres://postgres@127.0.0.1:5432/items")
///     .listen("127.0.0.1:8080".parse().unwrap())
///     .log_format("json");
/// assert_eq!(launch.var("APP__SERVER__PORT"), Some("8080"));
/// ```
#[derive(Debug, Clone)]
pub struct ServiceLaunch {
    program: PathBuf,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    /// Name, value and whether a variable of the caller's environment wins over it.
    vars: Vec<(String, String, bool)>,
    removed: Vec<String>,
    clean_env: bool,
    /// Set while [`ServiceLaunch::user_overridable`] runs its closure.
    yielding: bool,
}

impl ServiceLaunch {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            program: binary.into(),
            args: Vec::new(),
            dir: None,
            vars: Vec::new(),
            removed: Vec::new(),
            clean_env: false,
            yielding: false,
        }
    }

    /// A subcommand or argument (`migrate`, `check-config`).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The child's working directory.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The child starts from an empty environment but `PATH`, `HOME` and `TMPDIR`: nothing of
    /// ours configures it. Without this it inherits our environment.
    #[must_use]
    pub fn clean_env(mut self) -> Self {
        self.clean_env = true;
        self
    }

    /// The settings `choose` sets become defaults: a variable of the caller's environment (which
    /// the child inherits) wins over each of them.
    #[must_use]
    pub fn user_overridable(mut self, choose: impl FnOnce(Self) -> Self) -> Self {
        self.yielding = true;
        let mut out = choose(self);
        out.yielding = false;
        out
    }

    /// Any variable; the typed setters below cover what tools and tests choose.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        let name = name.into();
        self.removed.retain(|r| *r != name);
        self.vars.retain(|(n, _, _)| *n != name);
        self.vars.push((name, value.to_string(), self.yielding));
        self
    }

    /// A variable the child must not inherit from us.
    #[must_use]
    pub fn env_remove(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.vars.retain(|(n, _, _)| *n != name);
        self.removed.push(name);
        self
    }

    /// `APP_ENVIRONMENT`: which config file applies (`local`, `dev`, `stage`, `prod`).
    #[must_use]
    pub fn environment(self, name: &str) -> Self {
        self.env("APP_ENVIRONMENT", name)
    }

    /// `database.url`.
    #[must_use]
    pub fn database_url(self, url: &str) -> Self {
        self.env("APP__DATABASE__URL", url)
    }

    /// `server.host` and `server.port` (port 0: any free one); an inherited `PORT` is dropped.
    #[must_use]
    pub fn listen(self, addr: SocketAddr) -> Self {
        self.env("APP__SERVER__HOST", addr.ip())
            .env("APP__SERVER__PORT", addr.port())
            .env_remove("PORT")
    }

    /// The port as Cloud Run passes it (`PORT`), on the environment's host.
    #[must_use]
    pub fn cloud_run_port(self, port: u16) -> Self {
        self.env("PORT", port)
    }

    /// `server.workers`: actix worker threads.
    #[must_use]
    pub fn workers(self, workers: u32) -> Self {
        self.env("APP__SERVER__WORKERS", workers)
    }

    /// `database.pool.max_size`.
    #[must_use]
    pub fn pool_max_size(self, size: u32) -> Self {
        self.env("APP__DATABASE__POOL__MAX_SIZE", size)
    }

    /// `log.format`: `json` or `pretty`.
    #[must_use]
    pub fn log_format(self, format: &str) -> Self {
        self.env("APP__LOG__FORMAT", format)
    }

    /// `log.level`: EnvFilter directives.
    #[must_use]
    pub fn log_level(self, level: &str) -> Self {
        self.env("APP__LOG__LEVEL", level)
    }

    /// `log.access_log`: one entry per request.
    #[must_use]
    pub fn access_log(self, on: bool) -> Self {
        self.env("APP__LOG__ACCESS_LOG", on)
    }

    /// `telemetry.exporter = "otlp"` to `endpoint` (an OTLP/HTTP base URL).
    #[must_use]
    pub fn otlp(self, endpoint: &str) -> Self {
        self.env("APP__TELEMETRY__EXPORTER", "otlp")
            .env("APP__TELEMETRY__OTLP_ENDPOINT", endpoint)
    }

    /// `telemetry.exporter = "none"`: no traces or metrics leave the process.
    #[must_use]
    pub fn no_export(self) -> Self {
        self.env("APP__TELEMETRY__EXPORTER", "none")
    }

    /// `telemetry.project_id`: the project of `logging.googleapis.com/trace`.
    #[must_use]
    pub fn project_id(self, project: &str) -> Self {
        self.env("APP__TELEMETRY__PROJECT_ID", project)
    }

    /// `telemetry.sample_ratio`.
    #[must_use]
    pub fn sample_ratio(self, ratio: f64) -> Self {
        self.env("APP__TELEMETRY__SAMPLE_RATIO", ratio)
    }

    /// `telemetry.span_exporter`: `own` or `library`.
    #[must_use]
    pub fn span_exporter(self, exporter: &str) -> Self {
        self.env("APP__TELEMETRY__SPAN_EXPORTER", exporter)
    }

    /// `telemetry.batch_delay_ms`: longest wait before a batch of spans is sent.
    #[must_use]
    pub fn batch_delay_ms(self, ms: u64) -> Self {
        self.env("APP__TELEMETRY__BATCH_DELAY_MS", ms)
    }

    /// `telemetry.metrics_interval_secs`.
    #[must_use]
    pub fn metrics_interval_secs(self, secs: u64) -> Self {
        self.env("APP__TELEMETRY__METRICS_INTERVAL_SECS", secs)
    }

    /// The value this launch gives `name` (before the caller's environment has its say).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// The variables set on the child, given which ones the caller's environment has: each one
    /// unless it is user-overridable and `user_has` it (a clean environment has none).
    pub fn vars_given(&self, user_has: impl Fn(&str) -> bool) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .filter(|(name, _, yields)| !(*yields && !self.clean_env && user_has(name.as_str())))
            .map(|(name, value, _)| (name.as_str(), value.as_str()))
            .collect()
    }

    /// Every variable this launch sets, for an app built in process from the same settings
    /// (the service reads `APP_ENVIRONMENT`, `PORT` and `APP__…` from such a map).
    pub fn vars(&self) -> HashMap<String, String> {
        self.vars
            .iter()
            .map(|(name, value, _)| (name.clone(), value.clone()))
            .collect()
    }

    /// The program: the service binary.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// A std command that runs the service as this launch says.
    pub fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        if self.clean_env {
            cmd.env_clear();
            for name in KEPT_IN_A_CLEAN_ENV {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
        }
        for name in &self.removed {
            cmd.env_remove(name);
        }
        cmd.envs(self.vars_given(|name| std::env::var_os(name).is_some()));
        cmd
    }

    /// A tokio command that runs the service as this launch says.
    pub fn command(&self) -> tokio::process::Command {
        tokio::process::Command::from(self.std_command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(cmd: &std::process::Command) -> Vec<(String, Option<String>)> {
        cmd.get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn typed_settings_become_the_services_variables() {
        let launch = ServiceLaunch::new("/bin/items-service")
            .environment("local")
            .database_url("postgres://u@h:1/db")
            .listen("127.0.0.1:8081".parse().unwrap())
            .log_format("json")
            .log_level("warn")
            .workers(1)
            .pool_max_size(4)
            .otlp("http://127.0.0.1:4318")
            .sample_ratio(0.5);
        let vars = launch.vars();
        for (name, value) in [
            ("APP_ENVIRONMENT", "local"),
            ("APP__DATABASE__URL", "postgres://u@h:1/db"),
            ("APP__SERVER__HOST", "127.0.0.1"),
            ("APP__SERVER__PORT", "8081"),
            ("APP__LOG__FORMAT", "json"),
            ("APP__LOG__LEVEL", "warn"),
            ("APP__SERVER__WORKERS", "1"),
            ("APP__DATABASE__POOL__MAX_SIZE", "4"),
            ("APP__TELEMETRY__EXPORTER", "otlp"),
            ("APP__TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("APP__TELEMETRY__SAMPLE_RATIO", "0.5"),
        ] {
            assert_eq!(vars.get(name).map(String::as_str), Some(value), "{name}");
        }
        assert_eq!(vars.len(), 11, "{vars:?}");
        // `listen` wins over an inherited PORT.
        let cmd = launch.std_command();
        assert!(envs(&cmd).contains(&("PORT".to_owned(), None)));
        assert_eq!(cmd.get_program(), "/bin/items-service");
    }

    #[test]
    fn a_later_setting_replaces_an_earlier_one() {
        let launch = ServiceLaunch::new("x")
            .log_level("warn")
            .log_level("info")
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "debug");
        assert_eq!(launch.var("APP__LOG__LEVEL"), Some("info"));
        assert_eq!(launch.vars_given(|_| false).len(), 2);
        let cmd = launch.std_command();
        assert!(envs(&cmd).contains(&("RUST_LOG".to_owned(), Some("debug".to_owned()))));
        assert!(!envs(&cmd).contains(&("RUST_LOG".to_owned(), None)));
    }

    #[test]
    fn the_users_variable_wins_over_an_overridable_default() {
        let launch = ServiceLaunch::new("x")
            .database_url("postgres://h/db")
            .user_overridable(|l| l.log_format("pretty"))
            .log_level("warn");
        assert_eq!(
            launch.vars_given(|_| false),
            [
                ("APP__DATABASE__URL", "postgres://h/db"),
                ("APP__LOG__FORMAT", "pretty"),
                ("APP__LOG__LEVEL", "warn"),
            ]
        );
        // Only the overridable one yields; ours stay.
        assert_eq!(
            launch.vars_given(|_| true),
            [
                ("APP__DATABASE__URL", "postgres://h/db"),
                ("APP__LOG__LEVEL", "warn"),
            ]
        );
        // A clean environment inherits nothing, so there is nothing to yield to.
        assert_eq!(launch.clean_env().vars_given(|_| true).len(), 3);
    }

    #[test]
    fn a_clean_env_keeps_only_what_running_needs() {
        let cmd = ServiceLaunch::new("x")
            .clean_env()
            .arg("check-config")
            .env("OTEL_SERVICE_NAME", "x")
            .std_command();
        let names: Vec<String> = envs(&cmd).into_iter().map(|(k, _)| k).collect();
        assert!(names.contains(&"OTEL_SERVICE_NAME".to_owned()), "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n == "OTEL_SERVICE_NAME" || KEPT_IN_A_CLEAN_ENV.contains(&n.as_str())),
            "{names:?}"
        );
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["check-config"]);
    }
}
