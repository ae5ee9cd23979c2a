//! [`Connector`]: the `database.*` settings resolved once, at start-up, into what every new
//! connection needs: the driver configuration, the TLS client and the credentials.
//!
//! Credentials are one of:
//! - what the configuration holds (`database.password`, a URL's password, none);
//! - `database.password_file`, read once here. Cloud Run mounts the secret with version `latest`
//!   and "when reading a volume, Cloud Run always fetches the secret value from the Secret
//!   Manager to use the value with the latest version" (Cloud Run, "Configure secrets for
//!   services"). So when the server refuses the password of a new connection (SQLSTATE 28P01,
//!   a rotation changed the role's password) the file is read again and that connect is retried
//!   once with what it now holds; re-reads happen at most once per [`REREAD_INTERVAL`] for
//!   the whole process, however many connects fail together;
//! - `database.iam_authentication`: Cloud SQL IAM database authentication. The runtime service
//!   account is the database user and "an OAuth 2.0 access token with the Cloud SQL Admin API
//!   scope" is its password (cloud.google.com/sql/docs/postgres/iam-logins, "Log in with manual
//!   IAM database authentication"). Each new connection asks `google-cloud-auth`'s metadata
//!   server credentials for a token; they cache it and fetch the next one before it expires
//!   (its `TokenCache` refreshes 4 minutes ahead), and reach the metadata server at
//!   `GCE_METADATA_HOST` when that is set, as Google's libraries do.
//!
//! The pool opens connections through [`Connector::pool_connect`]; requests never touch any of
//! this (a checkout of an open connection does not reconnect).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use google_cloud_auth::credentials::{AccessTokenCredentials, mds};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::tls::{MakeRustls, TlsMode, certificate_error};
use crate::{DatabaseSettings, DbError};

/// The least time between two re-reads of `database.password_file` after a refused password.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(1);

/// The OAuth scope of the IAM login token: the narrowest that Cloud SQL accepts as a password
/// (the one Google's connectors ask for: `https://www.googleapis.com/auth/sqlservice.login`,
/// GoogleCloudPlatform/cloud-sql-go-connector, `dialer.go`, `iamLoginScope`).
pub const IAM_LOGIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// The database settings resolved once; cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Connector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: DatabaseSettings,
    /// The driver configuration without the password of a file or a token.
    config: Config,
    tls: Option<MakeRustls>,
    credentials: Credentials,
}

enum Credentials {
    /// Whatever `config` holds (a password from the settings or the URL, or none).
    Config,
    File(PasswordFile),
    Iam(AccessTokenCredentials),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Config => "Config",
            Self::File(_) => "File",
            Self::Iam(_) => "Iam",
        })
    }
}

impl Connector {
    /// Resolves `settings`: reads the password file (once), parses the CA, and in IAM mode
    /// builds the metadata-server credentials (which start their refresh task on the current
    /// Tokio runtime: call this from the long-lived one). Opens no connection.
    pub fn new(settings: &DatabaseSettings) -> Result<Self, DbError> {
        settings.validate()?;
        let mut config = settings.driver_config()?;
        let tls = match settings.tls_mode {
            TlsMode::Disable => None,
            mode => {
                let pem = settings.tls_ca_pem.as_deref().unwrap_or_default();
                let tls = MakeRustls::new(mode, pem)
                    .map_err(|e| DbError::Config(format!("database.tls_ca_pem: {e}")))?;
                // Never fall back to plaintext when the server declines TLS.
                config.ssl_mode(SslMode::Require);
                Some(tls)
            }
        };
        let credentials = if settings.iam_authentication {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(DbError::Config(
                    "database.iam_authentication: the connector must be built inside the Tokio \
                     runtime (its token refresh runs there)"
                        .to_owned(),
                ));
            }
            let credentials = mds::Builder::default()
                .with_scopes([IAM_LOGIN_SCOPE])
                .build_access_token_credentials()
                .map_err(|e| {
                    DbError::Config(format!(
                        "database.iam_authentication: metadata server credentials: {e}"
                    ))
                })?;
            Credentials::Iam(credentials)
        } else if let Some(path) = &settings.password_file {
            Credentials::File(PasswordFile {
                path: path.clone(),
                current: Mutex::new(Arc::new(read_password(path).map_err(DbError::Config)?)),
                reread: tokio::sync::Mutex::new(None),
            })
        } else {
            Credentials::Config
        };
        Ok(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                config,
                tls,
                credentials,
            }),
        })
    }

    /// The settings this connector was made from.
    pub fn settings(&self) -> &DatabaseSettings {
        &self.inner.settings
    }

    /// What the pool opens connections with.
    pub(crate) fn pool_connect(&self) -> PoolConnect {
        PoolConnect(self.clone())
    }

    /// The driver configuration, which the pool's manager holds and hands to [`PoolConnect`]
    /// (which opens connections with its connector's own copy and current credentials).
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A connection outside the pool (migrations, the schema check), with `adjust` applied to the
    /// configuration. A server certificate the configured CA does not vouch for is a
    /// configuration error naming the setting, so that start-up stops on it.
    pub(crate) async fn connect_once(
        &self,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<(Client, JoinHandle<()>), DbError> {
        let mut config = self.inner.config.clone();
        adjust(&mut config);
        self.connect(&config).await.map_err(|e| self.explain(e))
    }

    /// Turns a certificate failure into a message that names the settings to fix.
    fn explain(&self, e: tokio_postgres::Error) -> DbError {
        let settings = &self.inner.settings;
        let mode = settings.tls_mode.as_str();
        match certificate_error(&e) {
            Some(
                tls @ rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                ),
            ) => DbError::Config(format!(
                "database.tls_mode = \"{mode}\": the database server's certificate does not \
                 name the host ({tls}); Cloud SQL's names the instance (PROJECT:INSTANCE), so use \
                 tls_mode = \"verify-ca\" with its CA"
            )),
            Some(tls) => DbError::Config(format!(
                "database.tls_ca_pem (tls_mode = \"{mode}\"): the database server's certificate \
                 is not accepted ({tls}); give the CA that signed it (Cloud SQL: the instance's \
                 server CA, `server_ca_cert`)"
            )),
            None => DbError::Query(e),
        }
    }

    /// Opens one connection with the current credentials (see the module doc).
    async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        match &self.inner.credentials {
            Credentials::Config => self.open(config).await,
            Credentials::File(file) => {
                let password = file.current();
                let result = self.open(&with_password(config, &password)).await;
                match result {
                    Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => {
                        match file.after_rejection(&password).await {
                            Some(newer) => self.open(&with_password(config, &newer)).await,
                            None => Err(e),
                        }
                    }
                    other => other,
                }
            }
            Credentials::Iam(credentials) => match credentials.access_token().await {
                Ok(token) => {
                    let mut config = config.clone();
                    config.password(token.token);
                    self.open(&config).await
                }
                Err(e) => Err(refused(format!(
                    "database.iam_authentication: no access token from the metadata server: {e}"
                ))
                .await),
            },
        }
    }

    async fn open(
        &self,
        config: &Config,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        match &self.inner.tls {
            Some(tls) => open_with(config, tls.clone()).await,
            None => open_with(config, NoTls).await,
        }
    }
}

/// Connects and drives the connection on a task of the current runtime.
async fn open_with<T>(
    config: &Config,
    tls: T,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(target: "items_repository", error = %e, "database connection ended with an error");
        }
    });
    Ok((client, task))
}

fn with_password(config: &Config, password: &SecretString) -> Config {
    let mut config = config.clone();
    config.password(password.expose_secret());
    config
}

/// The pool's way of opening a connection: [`Connector::connect`].
pub(crate) struct PoolConnect(Connector);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        _pg_config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        Box::pin(self.0.connect(&self.0.inner.config))
    }
}

/// `database.password_file`, as last read.
struct PasswordFile {
    path: PathBuf,
    current: Mutex<Arc<SecretString>>,
    /// When the file was last read again after a refusal; held while reading, so that
    /// concurrent refusals wait for one read.
    reread: tokio::sync::Mutex<Option<Instant>>,
}

impl PasswordFile {
    fn current(&self) -> Arc<SecretString> {
        match self.current.lock() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The server refused `rejected`: reads the file again (at most once per
    /// [`REREAD_INTERVAL`]) and returns the password to retry with, if it differs.
    async fn after_rejection(&self, rejected: &Arc<SecretString>) -> Option<Arc<SecretString>> {
        let mut last = self.reread.lock().await;
        let current = self.current();
        if !Arc::ptr_eq(&current, rejected) {
            // Another connect read a new password while this one waited.
            return Some(current);
        }
        if last.is_some_and(|at| at.elapsed() < REREAD_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        let path = self.path.clone();
        // A Secret Manager fetch behind the file system on Cloud Run: off the async threads.
        let read = tokio::task::spawn_blocking(move || read_password(&path)).await;
        match read {
            Ok(Ok(newer)) if newer.expose_secret() != rejected.expose_secret() => {
                tracing::info!(
                    path = %self.path.display(),
                    "the database refused the password; database.password_file holds a new one \
                     (rotated): new connections use it"
                );
                let newer = Arc::new(newer);
                if let Ok(mut current) = self.current.lock() {
                    *current = Arc::clone(&newer);
                }
                Some(newer)
            }
            Ok(Ok(_)) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "the database refused the password (SQLSTATE 28P01) and \
                     database.password_file still holds it: new connections fail (503) until the \
                     role's password and the secret agree (docs/deploy.md, rotating the database \
                     password)"
                );
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "the database refused the password (SQLSTATE 28P01) and reading it again \
                     failed: {e}"
                );
                None
            }
            Err(e) => {
                tracing::warn!("reading database.password_file again failed: {e}");
                None
            }
        }
    }
}

/// Reads a password file (trailing newline stripped).
fn read_password(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "database.password_file: cannot read {}: {e}",
            path.display()
        )
    })?;
    Ok(SecretString::from(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// A `tokio_postgres::Error` for a connection that could not even be attempted, `reason` as its
/// I/O cause. deadpool-postgres's `Connect` can only fail with a `tokio_postgres::Error`, and its
/// constructors are private: the error comes from a start-up handshake on a stream whose first
/// write fails with `reason`. An I/O cause makes it "unavailable" (503 + Retry-After, retried
/// with backoff), like an unreachable server.
async fn refused(reason: String) -> tokio_postgres::Error {
    let mut config = Config::new();
    config.user("items-service").ssl_mode(SslMode::Disable);
    match config
        .connect_raw(FailingStream(Some(io::Error::other(reason))), NoTls)
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("a stream whose writes fail cannot complete a start-up handshake"),
    }
}

/// A stream whose first write fails with the error it holds.
struct FailingStream(Option<io::Error>);

impl AsyncRead for FailingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }
}

impl AsyncWrite for FailingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self
            .0
            .take()
            .unwrap_or_else(|| io::ErrorKind::NotConnected.into())))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self
            .0
            .take()
            .unwrap_or_else(|| io::ErrorKind::NotConnected.into())))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_is_an_unavailable_io_error_that_keeps_its_reason() {
        let e = refused("no token: metadata server down".to_owned()).await;
        let chain = crate::DbError::Query(e);
        assert!(chain.is_unavailable());
        let mut text = chain.to_string();
        let mut source = std::error::Error::source(&chain);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(text.contains("no token: metadata server down"), "{text}");
    }
}
