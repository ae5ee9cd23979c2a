//! PostgreSQL adapter: implements the domain's [`ItemStore`](items_domain::ItemStore) port with
//! `tokio-postgres` connections pooled by `deadpool-postgres`.
//!
//! - Connection set-up and reads are retried with backoff on transient errors (`backon`); writes
//!   are never retried once their statement may have reached the server.
//! - Pool exhaustion and an unreachable database surface as
//!   [`StoreError::Unavailable`](items_domain::StoreError) within the pool's wait timeout.
//! - Migrations are embedded (`refinery`) and applied under a PostgreSQL advisory lock.
//! - Every pool checkout and statement is an OpenTelemetry client span (`db.system.name`,
//!   `db.operation.name`, `db.collection.name`; never parameter values), child of the request's
//!   span, and a `db.client.operation.duration` sample; [`PgStore::register_pool_metrics`] adds
//!   pool gauges over `Pool::status()`.
//! - Connections are opened by a [`Connector`], the `database.*` settings resolved once: TLS
//!   with the server's CA checked (`database.tls_mode`), and the password file read once (again
//!   only when the server refuses it) or a Cloud SQL IAM access token per connection.
//! - The service gives each actix worker a pool of its own ([`WorkerStores`]): a connection
//!   belongs to the runtime that opened it. Both use the global providers set by `items-telemetry`.

mod connect;
mod error;
mod instruments;
mod migrate;
mod settings;
mod sql;
mod statements;
mod store;
mod tls;
mod workers;

pub use connect::{Connector, IAM_LOGIN_SCOPE, REREAD_INTERVAL};
pub use error::DbError;
pub use migrate::{SchemaStatus, check_schema, migrate};
pub use settings::{DatabaseSettings, PoolSettings};
pub use statements::{STATEMENTS_FIXTURE, statements};
pub use store::PgStore;
pub use tls::TlsMode;
pub use workers::WorkerStores;

/// The text of the statements behind the read and create endpoints, for `cargo xtask bench`,
/// which runs them on PostgreSQL alone (pgbench) to measure the service against that limit.
pub mod bench_statements {
    /// `GET /items/{id}`: `$1` the id.
    pub const SELECT_ITEM: &str = crate::sql::SELECT_ITEM.text;
    /// `GET /items`: `$1` the last id of the previous page (0: none), `$2` the page size + 1.
    pub const LIST_ITEMS: &str = crate::sql::LIST_ITEMS.text;
    /// `POST /items` without an `Idempotency-Key`: `$1` name, `$2` description.
    pub const INSERT_ITEM: &str = crate::sql::INSERT_ITEM.text;
}
