//! The items service: reads settings, builds the parts and wires them. No business logic here.

mod settings;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context as _;
use items_http::{ApiState, RequestTelemetry};
use items_repository::{PgStore, WorkerStores};
use items_telemetry::{HttpInstruments, ServiceInfo, Telemetry};

pub use items_telemetry::PlatformIdentity;
pub use settings::{
    AppEnvironment, DEVELOPMENT_PAGE_TOKEN_SECRET, Origins, ServerSettings, Settings,
    SettingsSources,
};

/// From SIGTERM to exit: Cloud Run sends SIGKILL 10 s after SIGTERM ("Container runtime
/// contract"); the last half second is the process's own exit (the log writer's flush).
pub const SHUTDOWN_BUDGET: std::time::Duration = std::time::Duration::from_millis(9500);

/// A built, bound, not yet running server (zero-to-production's `Application`).
pub struct Application {
    server: Server,
    port: u16,
    stores: Arc<WorkerStores>,
    key_ttl: std::time::Duration,
    telemetry: Telemetry,
}

/// Who the service is, for telemetry (`service.name`, `service.version`, `serviceContext`).
pub fn service_info() -> ServiceInfo {
    ServiceInfo {
        name: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Extra knobs of [`Application::build_with`]; production uses the defaults.
#[derive(Default)]
pub struct BuildOptions {
    /// Routes registered after the API's (tests add failing handlers here).
    pub extra_routes: Option<fn(&mut web::ServiceConfig)>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("extra_routes", &self.extra_routes.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Starts telemetry for the platform `identity` names (read once at start-up, see
    /// [`PlatformIdentity::detect`]), applies migrations (when enabled), builds one pool per worker and binds
    /// the listener.
    pub async fn build(settings: &Settings, identity: &PlatformIdentity) -> anyhow::Result<Self> {
        Self::build_with(settings, identity, BuildOptions::default()).await
    }

    /// [`Application::build`] with test hooks.
    pub async fn build_with(
        settings: &Settings,
        identity: &PlatformIdentity,
        options: BuildOptions,
    ) -> anyhow::Result<Self> {
        let telemetry = Telemetry::start(&settings.telemetry, &service_info(), identity)
            .map_err(|e| anyhow::anyhow!("starting telemetry: {e}"))?;
        // The database settings resolved once: the password file read, the CA parsed, the IAM
        // token source started; everything below opens connections through it.
        let database =
            items_repository::Connector::new(&settings.database).context("database settings")?;
        prepare_schema(&database).await?;
        // One pool per actix worker (`WorkerStores` says why), so the worker count is ours to set.
        let workers = settings.server.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let stores = Arc::new(
            WorkerStores::new(&database, workers).context("building the connection pools")?,
        );
        stores.register_pool_metrics();
        let instruments = HttpInstruments::new(&telemetry, &settings.log);
        let extra_routes = options.extra_routes;
        // Resolved by the settings (key files read once, at load); handed down as it is.
        let page_tokens = settings.page_tokens.clone();
        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", address.0, address.1))?;
        let port = listener.local_addr()?.port();
        let worker_stores = Arc::clone(&stores);
        let cors = settings.cors.clone();
        let server = HttpServer::new(move || {
            // Runs once on each worker's thread, so each worker serves from a pool of its own.
            let state = web::Data::new(ApiState::new(
                worker_stores.for_worker(),
                page_tokens.clone(),
            ));
            // Innermost first: actix-cors answers preflights and adds its headers, its refusals
            // become problems, and telemetry, outermost, sees every request (preflights too).
            let mut app = App::new()
                .wrap(cors.middleware())
                .wrap(items_http::preflight_problems())
                .wrap(RequestTelemetry::new(instruments.clone()))
                .configure(items_http::configure(state.clone()));
            if let Some(extra) = extra_routes {
                app = app.configure(extra);
            }
            app
        })
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .workers(workers);
        let server = server.listen(listener)?.run();
        Ok(Self {
            server,
            port,
            stores,
            key_ttl: settings.database.idempotency_key_ttl(),
            telemetry,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests finish (up to
    /// `server.shutdown_timeout_secs`), closes the pools and flushes telemetry (within
    /// `telemetry.flush_timeout_ms`), all of it within [`SHUTDOWN_BUDGET`] of the signal: the
    /// flush gets what the drain left.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let pruner = tokio::spawn(prune_idempotency_keys(
            self.stores.any().clone(),
            self.key_ttl,
        ));
        shutdown_signal().await;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
        pruner.abort();
        tracing::info!("shutdown signal received: draining in-flight requests");
        let drained = tokio::time::timeout_at(deadline, async {
            handle.stop(true).await;
            server.await
        })
        .await;
        self.stores.close();
        if tokio::time::timeout_at(deadline, self.telemetry.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "telemetry flush cut short: SIGKILL follows SIGTERM after 10 s on Cloud Run"
            );
        }
        match drained {
            Ok(server) => server.context("server task")?.context("server")?,
            Err(_) => tracing::warn!("in-flight requests cut short at the shutdown budget"),
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until the future completes (tests drive shutdown themselves).
    pub async fn run(self) -> anyhow::Result<()> {
        self.server.await.context("server")
    }
}

/// `local` migrates at start-up (`database.migrate_on_start`, refused elsewhere by the settings);
/// every other environment only checks that the schema holds this binary's migrations: the
/// deploy's migrate job applies them (`items-service migrate`, under the migrator role), and a
/// schema a later release migrated is fine (expand/contract), so older revisions keep starting.
/// An unreachable database does not stop start-up (requests get 503s and `/health/ready` says
/// why, as before); a schema behind the binary does, and so does a server certificate the
/// configured CA does not vouch for (a configuration error, named).
async fn prepare_schema(database: &items_repository::Connector) -> anyhow::Result<()> {
    if database.settings().migrate_on_start {
        let applied = items_repository::migrate(database)
            .await
            .context("applying database migrations at start-up")?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        return Ok(());
    }
    match items_repository::check_schema(database).await {
        Ok(status) if status.newer.is_empty() => Ok(()),
        Ok(status) => {
            tracing::info!(newer = ?status.newer, "the schema holds migrations of a later release");
            Ok(())
        }
        Err(e @ (items_repository::DbError::Schema(_) | items_repository::DbError::Config(_))) => {
            Err(anyhow::Error::new(e).context("checking the database schema at start-up"))
        }
        Err(e) => {
            tracing::warn!(error = %items_telemetry::logging::error_chain(&e), "cannot check the database schema at start-up");
            Ok(())
        }
    }
}

/// Hourly: forget idempotency keys older than `ttl` (failures are logged and retried next hour).
async fn prune_idempotency_keys(store: PgStore, ttl: std::time::Duration) {
    let period = std::time::Duration::from_secs(3600);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        match store.prune_idempotency_keys(ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned expired idempotency keys"),
            Err(e) => {
                tracing::warn!(error = %items_telemetry::logging::error_chain(&e), "pruning idempotency keys failed")
            }
        }
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
}
