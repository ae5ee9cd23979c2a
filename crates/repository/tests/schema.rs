//! Release safety at the database seam: a binary serves against a schema that is its own or
//! newer, never an older one; migrating waits for a concurrent migration however long it takes;
//! only connection-level failures count as "the database is unavailable".
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use items_domain::StoreError;
use items_repository::{Connector, DatabaseSettings, DbError, check_schema, migrate};
use tokio_postgres::NoTls;

/// `MIGRATION_LOCK_ID` of `src/migrate.rs` ("items_mg").
const MIGRATION_LOCK_ID: i64 = 0x6974_656d_735f_6d67;

async fn connect(settings: &DatabaseSettings) -> tokio_postgres::Client {
    let (client, connection) = settings.pg_config().unwrap().connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// What a later release leaves behind: an added nullable column (expand) and its migration
/// recorded in refinery's history under a version this binary does not have.
async fn migrate_as_a_later_release(settings: &DatabaseSettings) {
    let client = connect(settings).await;
    client
        .batch_execute(
            "ALTER TABLE items ADD COLUMN colour text;
             INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (9999, 'later', '2026-12-01T00:00:00Z', '1');",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_older_binary_starts_and_migrates_against_a_newer_schema() {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    migrate_as_a_later_release(&settings).await;

    let status = check_schema(&Connector::new(&settings).unwrap())
        .await
        .unwrap();
    assert!(status.missing.is_empty());
    assert_eq!(status.newer, ["V9999__later"]);
    // refinery alone aborts here (abort_missing): a local instance that migrates at start-up,
    // or a migrate job of the older release, would fail.
    assert_eq!(
        migrate(&Connector::new(&settings).unwrap()).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_schema_behind_the_binary_is_refused_by_name() {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    let err = check_schema(&Connector::new(&settings).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Schema(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("V1__items") && message.contains("items-service migrate"),
        "{message}"
    );
    // Checking ran no DDL: the history table is still absent.
    let client = connect(&settings).await;
    let row = client
        .query_one("SELECT to_regclass('refinery_schema_history') IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
}

#[tokio::test]
async fn migrating_waits_for_the_lock_longer_than_the_statement_timeout() {
    let url = items_testkit::fresh_database().await.unwrap();
    let mut settings = DatabaseSettings::from_url(&url);
    settings.statement_timeout_ms = 200;
    // Another run holds the lock for five statement timeouts.
    let holder = connect(&settings).await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_ID])
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_ID])
            .await
            .unwrap();
        holder
    });
    let applied = migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    assert_eq!(applied, ["V1__items"]);
    drop(release.await.unwrap());
}

#[tokio::test]
async fn only_connection_failures_are_unavailable() {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    // A decoding bug: text read as bigint. No SQLSTATE, but the server answered fine.
    let client = connect(&settings).await;
    let row = client.query_one("SELECT 'x'::text", &[]).await.unwrap();
    let decode = DbError::Query(row.try_get::<_, i64>(0).unwrap_err());
    assert!(
        !decode.is_unavailable() && !decode.is_transient(),
        "{decode:?}"
    );
    assert!(matches!(StoreError::from(decode), StoreError::Other(_)));

    // A connection that is gone is unavailable (503 + Retry-After at the edge).
    let (client, connection) = settings.pg_config().unwrap().connect(NoTls).await.unwrap();
    drop(connection);
    let closed = DbError::Query(client.simple_query("SELECT 1").await.unwrap_err());
    assert!(
        closed.is_unavailable() && closed.is_transient(),
        "{closed:?}"
    );
    assert!(matches!(
        StoreError::from(closed),
        StoreError::Unavailable(_)
    ));

    // A refused connection likewise.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = DatabaseSettings::from_url(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .pg_config()
        .unwrap()
        .connect(NoTls)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(DbError::Query(refused).is_unavailable());
}

/// `(name, text)` of the committed snapshot of the previous release's statements.
fn previous_release_statements() -> Vec<(String, String)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(items_repository::STATEMENTS_FIXTURE);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, sql) = l.split_once('\t').unwrap();
            (name.to_owned(), sql.to_owned())
        })
        .collect()
}

/// Expand/contract: the previous release keeps serving (canary, other regions, rollback) on the
/// schema this release migrates to, so each of its statements must still prepare there. A
/// migration that drops or renames a column the previous release reads fails here.
#[tokio::test]
async fn every_statement_of_the_previous_release_prepares_against_this_schema() {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    let client = connect(&settings).await;
    let statements = previous_release_statements();
    assert!(!statements.is_empty());
    let mut failures = Vec::new();
    for (name, sql) in &statements {
        if let Err(e) = client.prepare(sql).await {
            failures.push(format!("{name}: {}", server_message(&e)));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn server_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
}

/// The migrate job creates the runtime's user with DML rights only: it reads and writes rows and
/// checks the schema, but cannot create, alter or drop anything, nor rewrite migration history.
#[tokio::test]
async fn the_runtime_user_gets_dml_rights_only() {
    let url = items_testkit::fresh_database().await.unwrap();
    let password = std::env::temp_dir().join(format!("items-runtime-pw-{}", std::process::id()));
    std::fs::write(&password, "runtime-secret\n").unwrap();
    // Role names are cluster-wide: one per test database.
    let user = format!(
        "items_runtime_{}",
        url.rsplit('/')
            .next()
            .unwrap()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let mut settings = DatabaseSettings::from_url(&url);
    settings.runtime_user = Some(user.clone());
    settings.runtime_password_file = Some(password.clone());
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    // Again (a rotation): the role exists, its password is set anew.
    std::fs::write(&password, "rotated-secret\n").unwrap();
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    std::fs::remove_file(&password).ok();

    let admin = connect(&settings).await;
    let row = admin
        .query_one(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%', rolcreaterole OR rolcreatedb OR rolsuper \
             FROM pg_authid WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "a SCRAM verifier, not plain text");
    assert!(!row.get::<_, bool>(1), "no role attributes beyond LOGIN");

    // The same database as the runtime user (the test cluster trusts loopback, so the password
    // is not what this checks; the verifier's form is, above).
    let mut runtime = DatabaseSettings::from_url(&url);
    runtime.url = None;
    let admin_config = settings.pg_config().unwrap();
    runtime.host = match &admin_config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
        tokio_postgres::config::Host::Unix(p) => Some(p.display().to_string()),
    };
    runtime.port = admin_config.get_ports().first().copied();
    runtime.dbname = admin_config.get_dbname().map(str::to_owned);
    runtime.user = Some(user.clone());
    let status = check_schema(&Connector::new(&runtime).unwrap())
        .await
        .unwrap();
    assert!(status.missing.is_empty());
    let app = connect(&runtime).await;
    app.execute("INSERT INTO items (name) VALUES ('x')", &[])
        .await
        .unwrap();
    app.execute("UPDATE items SET description = 'd'", &[])
        .await
        .unwrap();
    app.execute("DELETE FROM idempotency_keys", &[])
        .await
        .unwrap();
    for ddl in [
        "CREATE TABLE sneaky (id int)",
        "ALTER TABLE items ADD COLUMN colour text",
        "DROP TABLE idempotency_keys",
        "CREATE INDEX items_name ON items (name)",
        "DELETE FROM refinery_schema_history",
        "TRUNCATE items",
    ] {
        let err = app.batch_execute(ddl).await.unwrap_err();
        let code = err.code().map(|c| c.code().to_owned());
        assert!(
            matches!(code.as_deref(), Some("42501")),
            "{ddl}: {code:?} {err}"
        );
    }
}

/// With IAM database authentication the runtime service account is a database user that Cloud
/// SQL creates with no privileges (Terraform's `CLOUD_IAM_SERVICE_ACCOUNT` user): the migrate job
/// grants it the runtime user's DML rights, sets no password, and names the setting when the
/// role is missing.
#[tokio::test]
async fn the_migrate_job_grants_the_iam_user_dml_rights() {
    let url = items_testkit::fresh_database().await.unwrap();
    let suffix = url
        .rsplit('/')
        .next()
        .unwrap()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    // A service account's database user: its email without ".gserviceaccount.com".
    let user = format!("items-run-{suffix}@test-project.iam");
    let mut settings = DatabaseSettings::from_url(&url);
    settings.runtime_iam_user = Some(user.clone());
    let err = migrate(&Connector::new(&settings).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("database.runtime_iam_user"), "{err}");

    // What Cloud SQL does for the IAM user: a login role with no privileges.
    let admin = connect(&settings).await;
    admin
        .batch_execute(&format!("CREATE ROLE \"{user}\" LOGIN"))
        .await
        .unwrap();
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();

    let mut iam = DatabaseSettings::from_url(&url);
    iam.url = None;
    let config = settings.pg_config().unwrap();
    iam.host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
        tokio_postgres::config::Host::Unix(p) => Some(p.display().to_string()),
    };
    iam.port = config.get_ports().first().copied();
    iam.dbname = config.get_dbname().map(str::to_owned);
    iam.user = Some(user.clone());
    let app = connect(&iam).await;
    app.execute("INSERT INTO items (name) VALUES ('iam')", &[])
        .await
        .unwrap();
    let err = app
        .batch_execute("CREATE TABLE sneaky (id int)")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    let password: Option<String> = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        password, None,
        "no password: its tokens are checked by Cloud SQL"
    );
}

/// The migrate job logs in as the migrator, which owns the schema and may create roles but is
/// no superuser (on Cloud SQL a member of `cloudsqlsuperuser`, locally `CREATEROLE`): its second
/// run (every deploy, every password rotation) alters the existing runtime user, which must not
/// name attributes only a superuser may set.
#[tokio::test]
async fn the_migrate_job_runs_again_as_a_migrator_that_is_no_superuser() {
    let url = items_testkit::fresh_database().await.unwrap();
    let suffix = url
        .rsplit('/')
        .next()
        .unwrap()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let (migrator, user) = (format!("migrator_{suffix}"), format!("runtime_{suffix}"));
    let admin = connect(&DatabaseSettings::from_url(&url)).await;
    let db = admin
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {migrator} WITH LOGIN CREATEROLE; \
             ALTER DATABASE \"{db}\" OWNER TO {migrator}; \
             ALTER SCHEMA public OWNER TO {migrator};"
        ))
        .await
        .unwrap();
    let password = std::env::temp_dir().join(format!("items-migrator-pw-{suffix}"));
    std::fs::write(&password, "first\n").unwrap();
    let mut settings = DatabaseSettings::from_url(&url);
    settings.user = None;
    settings.url = None;
    let config = DatabaseSettings::from_url(&url).pg_config().unwrap();
    settings.host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
        tokio_postgres::config::Host::Unix(p) => Some(p.display().to_string()),
    };
    settings.port = config.get_ports().first().copied();
    settings.dbname = Some(db);
    settings.user = Some(migrator);
    settings.runtime_user = Some(user.clone());
    settings.runtime_password_file = Some(password.clone());
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    std::fs::write(&password, "rotated\n").unwrap();
    let again = migrate(&Connector::new(&settings).unwrap()).await;
    std::fs::remove_file(&password).ok();
    again.unwrap();
    let row = admin
        .query_one(
            "SELECT rolcreaterole OR rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
}
