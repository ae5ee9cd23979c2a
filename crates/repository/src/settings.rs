//! `database.*` settings: connection parts or a URL, the password file, the pool.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::DbError;
use crate::tls::TlsMode;

/// `database.*` settings: a URL, or parts (host may be a unix-socket directory such as
/// `/cloudsql/PROJECT:REGION:INSTANCE`). The password may come from a file (a Secret Manager
/// mount); it is never logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/dbname?…`; when set, the parts below only fill gaps.
    pub url: Option<SecretString>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Read the password from this file (trailing newline stripped), once at start-up and again
    /// when the server refuses it (a rotation, see `connect`).
    pub password_file: Option<PathBuf>,
    pub dbname: Option<String>,
    /// Per-statement limit, enforced by the server (`statement_timeout`).
    pub statement_timeout_ms: u64,
    /// Apply pending migrations at start-up (under an advisory lock).
    pub migrate_on_start: bool,
    /// How long an `Idempotency-Key` is remembered; older keys are pruned, after which a retry
    /// with the same key creates a new item.
    pub idempotency_key_ttl_hours: u64,
    pub pool: PoolSettings,
    /// `disable`, `verify-ca` or `verify-full` (libpq's `sslmode` names; see `tls`).
    pub tls_mode: TlsMode,
    /// The PEM of the CA certificate(s) that sign the server's certificate (Cloud SQL: the
    /// instance's server CA, given by Terraform). Needed unless `tls_mode = "disable"`.
    #[serde(default)]
    pub tls_ca_pem: Option<String>,
    /// Cloud SQL IAM database authentication: log in as `user` (the runtime service account's
    /// email without `.gserviceaccount.com`) with an access token from the metadata server as
    /// the password; the password settings are not used. Needs TLS.
    pub iam_authentication: bool,
    /// For `items-service migrate` (the migrate job, run as the migrator, who owns the schema):
    /// the runtime's database user, created if missing with `LOGIN` and no other attribute, its
    /// password set from `runtime_password_file`, and granted DML on the schema only. Unset: no
    /// role is managed (local, tests).
    #[serde(default)]
    pub runtime_user: Option<String>,
    /// The runtime user's password (a Secret Manager mount in the migrate job).
    #[serde(default)]
    pub runtime_password_file: Option<PathBuf>,
    /// For `items-service migrate`: the runtime service account's IAM database user (created by
    /// Terraform through the Cloud SQL API, with no privileges), granted the same DML rights as
    /// `runtime_user`. Unset: none.
    #[serde(default)]
    pub runtime_iam_user: Option<String>,
}

/// `database.pool.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    pub max_size: usize,
    /// How long a request waits for a free connection before it gets a 503.
    pub wait_timeout_ms: u64,
    pub create_timeout_ms: u64,
    pub recycle_timeout_ms: u64,
}

impl PoolSettings {
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }
}

impl DatabaseSettings {
    pub fn idempotency_key_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_key_ttl_hours * 3600)
    }

    /// Settings for a URL, for tests and tools that run without the service's config files.
    ///
    /// The service itself has no built-in defaults: every `database.*` key comes from its
    /// `config/base.toml` (deserializing fails on a missing one). The values below are the ones
    /// that file sets; `items-service`'s test `the_repositorys_fallback_defaults_are_the_configured_ones`
    /// fails when the two drift apart.
    pub fn from_url(url: &str) -> Self {
        Self {
            url: Some(SecretString::from(url.to_owned())),
            host: None,
            port: None,
            user: None,
            password: None,
            password_file: None,
            dbname: None,
            statement_timeout_ms: 5000,
            migrate_on_start: true,
            idempotency_key_ttl_hours: 24,
            pool: PoolSettings {
                max_size: 16,
                wait_timeout_ms: 1000,
                create_timeout_ms: 1000,
                recycle_timeout_ms: 1000,
            },
            tls_mode: TlsMode::Disable,
            tls_ca_pem: None,
            iam_authentication: false,
            runtime_user: None,
            runtime_password_file: None,
            runtime_iam_user: None,
        }
    }

    /// Checks what can be checked without reading a secret or opening a connection: enough to
    /// connect, TLS when it is asked for or needed, a password file that exists.
    pub fn validate(&self) -> Result<(), DbError> {
        let config = self.driver_config()?;
        let unix_socket = config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        if self.tls_mode != TlsMode::Disable {
            if self
                .tls_ca_pem
                .as_deref()
                .is_none_or(|pem| pem.trim().is_empty())
            {
                return Err(DbError::Config(format!(
                    "database.tls_mode = \"{}\" needs database.tls_ca_pem (the PEM of the \
                     server's CA)",
                    self.tls_mode.as_str()
                )));
            }
            if unix_socket {
                return Err(DbError::Config(
                    "database.tls_mode: TLS is for TCP hosts; a unix socket (the Cloud SQL \
                     connector's /cloudsql/… volume, which encrypts by itself) takes \
                     tls_mode = \"disable\""
                        .to_owned(),
                ));
            }
        }
        if self.iam_authentication {
            if self.tls_mode == TlsMode::Disable {
                return Err(DbError::Config(
                    "database.iam_authentication needs TLS (database.tls_mode = \"verify-ca\"): \
                     the access token is the password"
                        .to_owned(),
                ));
            }
        } else if let Some(path) = &self.password_file {
            // Only whether it is there: the connector reads it, once.
            std::fs::metadata(path).map_err(|e| {
                DbError::Config(format!(
                    "database.password_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(())
    }

    /// The driver configuration these settings describe, the password file read (for tools and
    /// tests; the service reads it once, through [`Connector`](crate::Connector)).
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, DbError> {
        let mut config = self.driver_config()?;
        if let Some(path) = &self.password_file {
            let secret = std::fs::read_to_string(path).map_err(|e| {
                DbError::Config(format!(
                    "database.password_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            config.password(secret.trim_end_matches(['\r', '\n']));
        }
        Ok(config)
    }

    /// The driver configuration without the password file's password.
    pub(crate) fn driver_config(&self) -> Result<tokio_postgres::Config, DbError> {
        let mut config = match &self.url {
            Some(url) => url
                .expose_secret()
                .parse::<tokio_postgres::Config>()
                .map_err(|e| {
                    DbError::Config(format!("database.url is not a valid PostgreSQL URL: {e}"))
                })?,
            None => tokio_postgres::Config::new(),
        };
        // With a URL, the parts only fill what the URL leaves out.
        let from_url = self.url.is_some();
        if let Some(host) = &self.host
            && (!from_url || config.get_hosts().is_empty())
        {
            config.host(host);
        }
        if let Some(port) = self.port
            && (!from_url || config.get_ports().is_empty())
        {
            config.port(port);
        }
        if let Some(user) = &self.user
            && (!from_url || config.get_user().is_none())
        {
            config.user(user);
        }
        if let Some(dbname) = &self.dbname
            && (!from_url || config.get_dbname().is_none())
        {
            config.dbname(dbname);
        }
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        if config.get_hosts().is_empty() {
            return Err(DbError::Config(
                "database: set database.url or database.host".to_owned(),
            ));
        }
        if config.get_user().is_none() {
            return Err(DbError::Config(
                "database: set database.user (or a user in database.url)".to_owned(),
            ));
        }
        config.application_name("items-service");
        config.connect_timeout(Duration::from_millis(self.pool.create_timeout_ms));
        config.options(format!(
            "-c statement_timeout={}",
            self.statement_timeout_ms
        ));
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fill_a_unix_socket_config() {
        let dir = std::env::temp_dir().join(format!("items-pw-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        let settings = DatabaseSettings {
            url: None,
            host: Some("/cloudsql/p:europe-west1:db".into()),
            port: Some(5432),
            user: Some("app".into()),
            password: None,
            password_file: Some(dir.clone()),
            dbname: Some("items".into()),
            ..DatabaseSettings::from_url("")
        };
        let config = settings.pg_config().unwrap();
        std::fs::remove_file(dir).ok();
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_dbname(), Some("items"));
        assert!(matches!(
            &config.get_hosts()[0],
            tokio_postgres::config::Host::Unix(p) if p.to_str() == Some("/cloudsql/p:europe-west1:db")
        ));
    }

    #[test]
    fn url_wins_over_parts() {
        let mut s = DatabaseSettings::from_url("postgres://u@db.internal:6543/fromurl");
        s.host = Some("127.0.0.1".into());
        s.dbname = Some("items".into());
        s.user = Some("postgres".into());
        let c = s.pg_config().unwrap();
        assert_eq!(c.get_dbname(), Some("fromurl"));
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_ports(), &[6543]);
    }

    #[test]
    fn missing_host_is_named() {
        let mut s = DatabaseSettings::from_url("");
        s.url = None;
        let err = s.pg_config().unwrap_err().to_string();
        assert!(err.contains("database.host"), "{err}");
    }

    #[test]
    fn validation_names_what_tls_and_iam_need_without_reading_secrets() {
        let check = |s: &DatabaseSettings| s.validate().map_err(|e| e.to_string());
        let mut s = DatabaseSettings::from_url("postgres://u@10.0.0.3/items");
        s.tls_mode = TlsMode::VerifyCa;
        assert!(check(&s).unwrap_err().contains("database.tls_ca_pem"));
        s.tls_ca_pem = Some("-----BEGIN CERTIFICATE-----".into());
        check(&s).unwrap();
        s.iam_authentication = true;
        // The password file is not looked at with IAM: none is needed.
        s.password_file = Some("/nonexistent/db-password".into());
        check(&s).unwrap();
        s.tls_mode = TlsMode::Disable;
        assert!(check(&s).unwrap_err().contains("needs TLS"));
        s.iam_authentication = false;
        assert!(check(&s).unwrap_err().contains("database.password_file"));
        let mut socket = DatabaseSettings::from_url("");
        socket.url = None;
        socket.host = Some("/cloudsql/p:r:i".into());
        socket.user = Some("u".into());
        socket.tls_mode = TlsMode::VerifyCa;
        socket.tls_ca_pem = s.tls_ca_pem.clone();
        assert!(check(&socket).unwrap_err().contains("unix socket"));
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = DatabaseSettings::from_url("postgres://u:hunter2@h/db");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
