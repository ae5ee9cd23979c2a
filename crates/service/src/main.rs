//! The `items-service` binary: `serve`, `migrate` and `check-config`.

use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: span data and log lines are allocated on request
/// threads and freed on the exporter threads, and glibc's arenas pay for that in lock traffic
/// (`cargo xtask bench --telemetry-overhead`: telemetry-on throughput 0.83 → 0.91 of off).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use items_service::{Application, Settings, SettingsSources};
use items_telemetry::PlatformIdentity;

/// The items HTTP service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations, forget expired idempotency keys, and exit: the deploy's
    /// migrate job (a Cloud Run job under the migrator database role) runs it before traffic
    /// moves, and Cloud Scheduler runs the job hourly, so pruning happens even when every
    /// instance scales to zero within the hour.
    Migrate,
    /// Load and validate the settings, print the effective ones as TOML in the config files' form
    /// (secrets redacted, each value with where it came from: a file, `APP__…`, `OTEL_*`,
    /// `PORT`), then the derived telemetry values as comments, and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&SettingsSources::from_env()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("items-service: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("items-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Read once; logging and the OpenTelemetry pipeline get it as a value.
    let identity = runtime.block_on(PlatformIdentity::detect(&settings.telemetry));
    // Held to the end of `main`: dropping it writes out the buffered log lines.
    let _log_guard =
        match items_telemetry::init(&settings.log, &identity, &items_service::service_info()) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("items-service: cannot initialise logging: {e}");
                return ExitCode::from(2);
            }
        };
    for warning in &settings.origins.warnings {
        tracing::warn!("{warning}");
    }
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = Application::build(&settings, &identity).await?;
                tracing::info!(port = app.port(), "listening");
                app.run_until_stopped().await
            }
            Command::Migrate => {
                let database = items_repository::Connector::new(&settings.database)?;
                let applied = items_repository::migrate(&database).await?;
                tracing::info!(migrations = ?applied, "migrations applied");
                let store = items_repository::PgStore::new(&database)?;
                let pruned = store
                    .prune_idempotency_keys(settings.database.idempotency_key_ttl())
                    .await?;
                store.close();
                tracing::info!(pruned, "pruned expired idempotency keys");
                Ok(())
            }
            Command::CheckConfig => {
                print!("{}", settings.to_toml(&identity));
                Ok(())
            }
        }
    });
    // A telemetry flush cut short at the shutdown budget may still be running on a blocking
    // thread: do not wait for it (dropping the runtime would).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "items-service failed");
            eprintln!("items-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}
