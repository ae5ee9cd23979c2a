//! How the service reaches its database: TLS with the server's CA checked (a cluster of its own
//! with `ssl = on`, a Cloud SQL-style certificate and `hostssl`-only `pg_hba.conf`), and a
//! password file read once at start-up and again only when the server refuses it (a rotation).
#![allow(clippy::unwrap_used)]

use items_domain::{ItemStore as _, StoreError};
use items_repository::{
    Connector, DatabaseSettings, DbError, PgStore, REREAD_INTERVAL, TlsMode, check_schema, migrate,
};
use items_testkit::{TestCa, TlsDatabase};
use tokio_postgres::NoTls;

/// The TLS-only test cluster (Cloud SQL-style certificate, `hostssl` only) with role `app`
/// (password `first`) owning database `items`.
async fn server() -> TlsDatabase {
    TlsDatabase::start("app", "first").await.unwrap()
}

/// `app` on `items` over TCP, with `mode` and the server's CA.
fn settings(server: &TlsDatabase, mode: TlsMode) -> DatabaseSettings {
    let mut settings = DatabaseSettings::from_url(&format!(
        "postgres://app@127.0.0.1:{}/items",
        server.cluster.port()
    ));
    settings.tls_mode = mode;
    settings.tls_ca_pem = Some(server.ca.pem().to_owned());
    settings.pool.create_timeout_ms = 5000;
    settings
}

fn with_password(mut settings: DatabaseSettings, password: &str) -> DatabaseSettings {
    settings.password = Some(password.to_owned().into());
    settings
}

#[tokio::test]
async fn verify_ca_connects_over_tls_to_a_certificate_that_names_the_instance_not_the_host() {
    let server = server().await;
    let connector = Connector::new(&with_password(
        settings(&server, TlsMode::VerifyCa),
        "first",
    ))
    .unwrap();
    migrate(&connector).await.unwrap();
    check_schema(&connector).await.unwrap();
    let store = PgStore::new(&connector).unwrap();
    store.ready().await.unwrap();
    // The pooled connection is open now: the server says it is encrypted.
    let encrypted = server.encrypted_sessions().await.unwrap();
    assert!(encrypted >= 1, "{encrypted} encrypted sessions of app");
}

/// Why `verify-ca`: Cloud SQL's certificate names `project:instance`, so checking the name
/// against the IP the service dials (libpq's `verify-full`) refuses the right server.
#[tokio::test]
async fn verify_full_refuses_a_cloud_sql_style_certificate_and_names_the_setting() {
    let server = server().await;
    let connector = Connector::new(&with_password(
        settings(&server, TlsMode::VerifyFull),
        "first",
    ))
    .unwrap();
    let err = check_schema(&connector).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DbError::Config(_)), "{err:?}");
    assert!(text.contains("database.tls_mode"), "{text}");
    assert!(text.contains("not valid for name"), "{text}");
    assert!(text.contains("verify-ca"), "{text}");
}

#[tokio::test]
async fn a_wrong_ca_fails_at_start_up_with_a_message_naming_the_setting() {
    let server = server().await;
    let mut settings = with_password(settings(&server, TlsMode::VerifyCa), "first");
    settings.tls_ca_pem = Some(TestCa::new("someone else").unwrap().pem().to_owned());
    let connector = Connector::new(&settings).unwrap();
    // What the service's start-up runs before it serves (`prepare_schema`).
    let err = check_schema(&connector).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DbError::Config(_)), "{err:?}");
    assert!(text.contains("database.tls_ca_pem"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");

    // Not a certificate at all: refused before any connection.
    settings.tls_ca_pem = Some("not a certificate".to_owned());
    let err = Connector::new(&settings).unwrap_err().to_string();
    assert!(err.contains("database.tls_ca_pem"), "{err}");
    // TLS without a CA.
    settings.tls_ca_pem = None;
    let err = Connector::new(&settings).unwrap_err().to_string();
    assert!(err.contains("database.tls_ca_pem"), "{err}");
}

#[tokio::test]
async fn the_server_refuses_a_plaintext_client() {
    let server = server().await;
    let url = format!(
        "postgres://app:first@127.0.0.1:{}/items?sslmode=disable",
        server.cluster.port()
    );
    let err = tokio_postgres::connect(&url, NoTls)
        .await
        .map(|_| ())
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(
        db.code(),
        &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    );
    assert!(db.message().contains("no encryption"), "{}", db.message());
    // So is the service with TLS off: its requests get 503s.
    let connector =
        Connector::new(&with_password(settings(&server, TlsMode::Disable), "first")).unwrap();
    let err = PgStore::new(&connector).unwrap().ready().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// The password file (a `latest` Secret Manager volume on Cloud Run, fetched on every read) is
/// read once; when the server refuses it, read again and the connect retried once. Before: the
/// password was read when the pool was built, so a rotation broke every new connection.
#[tokio::test]
async fn a_rotated_password_is_read_again_and_an_unchanged_one_is_reported_unavailable() {
    let server = server().await;
    let file = std::env::temp_dir().join(format!("items-rotation-{}", std::process::id()));
    std::fs::write(&file, "first\n").unwrap();
    let mut settings = settings(&server, TlsMode::VerifyCa);
    settings.password_file = Some(file.clone());
    let connector = Connector::new(&settings).unwrap();
    let store = PgStore::new(&connector).unwrap();
    store.ready().await.unwrap();

    // Rotation: the role's password and the secret change; open connections stay.
    server.set_password("second").await.unwrap();
    std::fs::write(&file, "second\n").unwrap();
    server.disconnect_user().await.unwrap();
    store.ready().await.unwrap();
    // Another pool of the process (another worker) uses the new one straight away.
    PgStore::new(&connector).unwrap().ready().await.unwrap();

    // The role changes but the file does not: refused, reported as unavailable (503 +
    // Retry-After at the edge, one WARNING line naming the file), not retried forever.
    server.set_password("third").await.unwrap();
    server.disconnect_user().await.unwrap();
    tokio::time::sleep(REREAD_INTERVAL).await;
    let err = PgStore::new(&connector).unwrap().ready().await.unwrap_err();
    let StoreError::Unavailable(cause) = &err else {
        panic!("{err:?}")
    };
    let db = match cause.downcast_ref::<DbError>() {
        Some(DbError::Get(deadpool_postgres::PoolError::Backend(e))) => e.code().cloned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(db, Some(tokio_postgres::error::SqlState::INVALID_PASSWORD));

    // The secret catches up: the next connection works again.
    std::fs::write(&file, "third\n").unwrap();
    tokio::time::sleep(REREAD_INTERVAL).await;
    store.ready().await.unwrap();
    std::fs::remove_file(&file).ok();
}
