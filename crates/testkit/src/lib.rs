//! Test and tooling support: a throwaway PostgreSQL cluster built from the installed server
//! binaries, a fresh database per test, and the one launcher of the service ([`ServiceLaunch`]:
//! chosen settings → the binary's environment).
//!
//! `DATABASE_URL` set: every test gets a new database on that server. Unset: the tests share one
//! throwaway cluster per machine user (started on first use, found again through a state file under
//! the temp directory, guarded by a file lock). `cargo xtask test` starts and removes a cluster of
//! its own around the whole run and passes it on as `DATABASE_URL`. A test that needs TLS or
//! password authentication starts a cluster of its own ([`ClusterOptions::tls`], certificates
//! from [`TestCa`]); [`MetadataServer`] stands in for the metadata server's token endpoint.

mod cluster;
mod launch;
mod metadata;
mod tls;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

pub use cluster::{ClusterOptions, PgCluster, shared_cluster_url};
pub use launch::ServiceLaunch;
pub use metadata::{MetadataServer, TOKEN_PATH};
pub use tls::{ServerTls, TestCa, TlsDatabase};

/// The server URL tests should use: `DATABASE_URL`, else the shared throwaway cluster.
pub fn server_url() -> anyhow::Result<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => shared_cluster_url(),
    }
}

/// Replaces the database name in a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{}", &base[..path_start], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Replaces host and port in a `postgres://` URL (keeps user, password, database and query).
pub fn with_host_port(url: &str, host: &str, port: u16) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!(
        "{}{userinfo}{host}:{port}{}",
        &url[..authority_start],
        &rest[authority_end..]
    )
}

/// Creates an empty database with a unique name and returns its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let server = server_url()?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!(
        "items_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    create_database(&server, &name).await
}

/// Creates database `name` (a plain identifier) on the server of `server_url` and returns its URL.
pub async fn create_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to the server {}", redact(server_url)))?;
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    drop(client);
    let _ = conn.await;
    Ok(with_database(server_url, name))
}

/// Hides a password in a URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/old?sslmode=disable", "new"),
            "postgres://u:p@h:5432/new?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "n"), "postgres://h:1/n");
        assert_eq!(
            with_host_port("postgres://u:p@h:5432/db?x=1", "127.0.0.1", 7),
            "postgres://u:p@127.0.0.1:7/db?x=1"
        );
        assert_eq!(
            with_host_port("postgres://h/db", "a", 1),
            "postgres://a:1/db"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
