//! The items service: reads settings, builds the parts and wires them. No business logic here.

mod settings;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context as _;
use items_http::{ApiState, PageTokenCodec};
use items_repository::PgStore;
use secrecy::ExposeSecret as _;

pub use settings::{ApiSettings, AppEnvironment, ServerSettings, Settings, SettingsSources};

/// A built, bound, not yet running server (zero-to-production's `Application`).
pub struct Application {
    server: Server,
    port: u16,
    store: PgStore,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Applies migrations (when enabled), builds the pool and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        if settings.database.migrate_on_start {
            let applied = items_repository::migrate(&settings.database)
                .await
                .context("applying database migrations at start-up")?;
            if !applied.is_empty() {
                tracing::info!(migrations = ?applied, "applied database migrations");
            }
        }
        let store = PgStore::new(&settings.database).context("building the connection pool")?;
        let state = web::Data::new(ApiState::new(
            store.clone(),
            PageTokenCodec::new(settings.api.page_token_secret.expose_secret().as_bytes()),
        ));
        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", address.0, address.1))?;
        let port = listener.local_addr()?.port();
        let mut server =
            HttpServer::new(move || App::new().configure(items_http::configure(state.clone())))
                .disable_signals()
                .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            server,
            port,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests finish (up to
    /// `server.shutdown_timeout_secs`) and closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown_signal().await;
        tracing::info!("shutdown signal received: draining in-flight requests");
        handle.stop(true).await;
        server.await.context("server task")?.context("server")?;
        self.store.close();
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until the future completes (tests drive shutdown themselves).
    pub async fn run(self) -> anyhow::Result<()> {
        self.server.await.context("server")
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    // Give the log line a chance to be written before the drain starts.
    tokio::time::sleep(Duration::from_millis(0)).await;
}
