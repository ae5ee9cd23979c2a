//! `DbError`, the PostgreSQL adapter's errors, and how they become the port's `StoreError`.

use items_domain::StoreError;
use thiserror::Error;

/// Errors of the PostgreSQL adapter.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("invalid database settings: {0}")]
    Config(String),
    #[error("building the connection pool")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("getting a pooled connection")]
    Get(#[from] deadpool_postgres::PoolError),
    #[error("database query")]
    Query(#[from] tokio_postgres::Error),
    #[error("applying migrations")]
    Migrate(#[from] refinery::Error),
    #[error("stored row violates a domain rule: {0}")]
    Corrupt(#[from] items_domain::DomainError),
    #[error("database schema: {0}")]
    Schema(String),
}

impl DbError {
    /// Worth retrying: the connection failed or the server asked us to come back.
    /// Pool wait timeouts are not transient in this sense: retrying would only extend the wait.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Get(deadpool_postgres::PoolError::Backend(e)) | DbError::Query(e) => {
                pg_transient(e)
            }
            _ => false,
        }
    }

    /// The database cannot answer now (a 503 at the edge rather than a 500). That includes a
    /// refused login (28P01 a wrong password, 28000 no `pg_hba` entry or IAM login refused): a
    /// password rotation half done, which the password file's re-read or the next revision
    /// ends, not a bug in a request.
    pub fn is_unavailable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            DbError::Get(
                deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Closed,
            ) => true,
            DbError::Get(deadpool_postgres::PoolError::Backend(e)) | DbError::Query(e) => {
                pg_transient(e)
                    || e.code().is_some_and(|code| {
                        [
                            SqlState::QUERY_CANCELED,
                            SqlState::INVALID_PASSWORD,
                            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                        ]
                        .contains(code)
                    })
            }
            _ => false,
        }
    }
}

fn pg_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        // No server error: only a failed transport is "unavailable" (refused, reset, timed out:
        // tokio-postgres puts the `io::Error` as the source; a closed connection has none).
        // Decoding a column, encoding a parameter, an unexpected row count are bugs: a 500 that
        // Error Reporting sees, not a 503 a client retries.
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 53: insufficient resources; 57P0x: shutdown/starting;
            // 40001/40P01: serialization failure / deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            StoreError::Unavailable(Box::new(e))
        } else {
            StoreError::Other(Box::new(e))
        }
    }
}
