//! Schema migrations (`refinery`, embedded) and the start-up check of a serving instance.
//!
//! Releases are expand/contract: a release's schema stays readable and writable by the release
//! before it. So the database may be ahead of a binary (a newer release migrated, an older
//! revision still serves or is rolled back to), but never behind it.

use refinery::Migration;
use tokio_postgres::Client;

use crate::{Connector, DatabaseSettings, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// This binary's migrations: the embedded ones.
#[cfg(not(feature = "lifecycle-fixture"))]
fn runner() -> refinery::Runner {
    embedded::migrations::runner()
}

/// This binary's migrations: the embedded ones and, only in a build with the `lifecycle-fixture`
/// feature (the release lifecycle test's "v2" image, built apart, never a release), one more
/// that adds a nullable column (`tests/fixtures/lifecycle/`).
#[cfg(feature = "lifecycle-fixture")]
fn runner() -> refinery::Runner {
    let mut migrations = embedded::migrations::runner().get_migrations().clone();
    migrations.extend(
        Migration::unapplied(
            "V9000__lifecycle_fixture_column",
            include_str!("../tests/fixtures/lifecycle/V9000__lifecycle_fixture_column.sql"),
        )
        .ok(),
    );
    refinery::Runner::new(&migrations)
}

/// Key of the session-level advisory lock that serialises migrations across instances.
const MIGRATION_LOCK_ID: i64 = 0x6974_656d_735f_6d67; // "items_mg"

/// refinery's history table (its default name).
const HISTORY_TABLE: &str = "refinery_schema_history";

/// Applies pending migrations on a dedicated connection while holding an advisory lock, so that
/// many runs together apply them once. Returns the names of applied migrations.
///
/// The session runs without the service's `statement_timeout`: waiting for the lock while
/// another run migrates, and a long migration, are not errors here (each migration sets its own
/// `lock_timeout`, which squawk's `require-lock-timeout` checks; the migrate job has a task
/// timeout). A database that already holds every migration of this binary, and newer ones a
/// later release applied, is left alone: refinery itself would abort on the versions it does
/// not know (`set_abort_missing`, default true).
pub async fn migrate(connector: &Connector) -> Result<Vec<String>, DbError> {
    let settings = connector.settings();
    let (mut client, conn) = connector
        .connect_once(|config| {
            config.options("-c statement_timeout=0");
        })
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_ID])
        .await?;
    let mut result = apply_pending(&mut client).await;
    if let (Ok(_), Some(user)) = (&result, &settings.runtime_user) {
        let granted = grant_runtime(&client, user, settings).await;
        if let Err(e) = granted {
            result = Err(e);
        }
    }
    if let (Ok(_), Some(user)) = (&result, &settings.runtime_iam_user) {
        let granted = grant_iam_user(&client, user).await;
        if let Err(e) = granted {
            result = Err(e);
        }
    }
    // The lock is also released when the session ends; unlock explicitly to be prompt.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_ID])
        .await;
    drop(client);
    let _ = conn.await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client) -> Result<Vec<String>, DbError> {
    let runner = runner().set_grouped(true);
    if let Some(applied) = applied_migrations(client).await?
        && compare(runner.get_migrations(), &applied)?
            .missing
            .is_empty()
    {
        return Ok(Vec::new());
    }
    let report = runner.run_async(client).await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// What the runtime's user may do: read and write rows, nothing else. It owns nothing, so it
/// cannot alter or drop a table; it gets no `CREATE` on the schema (PostgreSQL 15 and later give
/// `PUBLIC` none either) and only reads refinery's history (for [`check_schema`]).
///
/// The user is created here rather than by Terraform because Cloud SQL makes every user created
/// through its API a member of `cloudsqlsuperuser` with `CREATEROLE` and `CREATEDB` ("About
/// PostgreSQL users", cloud.google.com/sql/docs/postgres/users: "All users you create using
/// Cloud SQL are created as part of the cloudsqlsuperuser role"); a role created with SQL gets
/// only the attributes it is given. The password is sent as a SCRAM-SHA-256 verifier, so its
/// plain text never reaches the server or its statement log. Setting it on every run makes a
/// rotation a new secret version and one job run (`cargo xtask rotate db-password`; docs/deploy.md,
/// "Rotating secrets").
const RUNTIME_GRANTS: [&str; 5] = [
    "GRANT CONNECT ON DATABASE %I TO %I",
    "GRANT USAGE ON SCHEMA public TO %2$I",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %2$I",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %2$I",
    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON refinery_schema_history FROM %2$I",
];

async fn grant_runtime(
    client: &Client,
    user: &str,
    settings: &DatabaseSettings,
) -> Result<(), DbError> {
    let path = settings.runtime_password_file.as_ref().ok_or_else(|| {
        DbError::Config("database.runtime_user needs database.runtime_password_file".to_owned())
    })?;
    let password = std::fs::read_to_string(path).map_err(|e| {
        DbError::Config(format!(
            "database.runtime_password_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let verifier = postgres_protocol::password::scram_sha_256(
        password.trim_end_matches(['\r', '\n']).as_bytes(),
    );
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await?
        .is_some();
    // ALTER names no SUPERUSER, REPLICATION or BYPASSRLS attribute: only a superuser may name
    // them there, even to say NO ("must be superuser to alter superuser roles or change superuser
    // attribute", PostgreSQL's AlterRole; the migrator is no superuser, on Cloud SQL neither), so
    // the second run of the job failed. A role this job created never had them.
    let role = if exists {
        "ALTER ROLE %I WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD %L"
    } else {
        "CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L"
    };
    let statement: String = client
        .query_one(
            "SELECT format($1, $2::text, $3::text)",
            &[&role, &user, &verifier],
        )
        .await?
        .get(0);
    client.batch_execute(&statement).await?;
    grant_dml(client, user).await
}

/// The runtime service account's IAM database user gets the runtime user's rights. Cloud SQL
/// creates it (Terraform's `google_sql_user` of type `CLOUD_IAM_SERVICE_ACCOUNT`) with none:
/// "When an IAM user is added to a database, the new database user has no privileges to any
/// database by default. You need to use the GRANT command" (cloud.google.com/sql/docs/postgres/
/// iam-logins, "Before you begin"). Its password is an access token, so none is set here.
async fn grant_iam_user(client: &Client, user: &str) -> Result<(), DbError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await?
        .is_some();
    if !exists {
        return Err(DbError::Config(format!(
            "database.runtime_iam_user: no role {user:?}; Terraform creates it \
             (database_iam_authentication = true, a CLOUD_IAM_SERVICE_ACCOUNT user named after \
             the runtime service account's email without .gserviceaccount.com)"
        )));
    }
    grant_dml(client, user).await
}

/// [`RUNTIME_GRANTS`] to `user`.
async fn grant_dml(client: &Client, user: &str) -> Result<(), DbError> {
    for grant in RUNTIME_GRANTS {
        let statement: String = client
            .query_one(
                "SELECT format($1, current_database(), $2::text)",
                &[&grant, &user],
            )
            .await?
            .get(0);
        client.batch_execute(&statement).await?;
    }
    Ok(())
}

/// The migrations recorded in the database, or `None` before the first migration.
async fn applied_migrations(client: &mut Client) -> Result<Option<Vec<Migration>>, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let applied = runner().get_applied_migrations_async(client).await?;
    Ok(Some(applied))
}

/// How the database's schema relates to this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations of this binary the database lacks (the binary must not serve then).
    pub missing: Vec<String>,
    /// Migrations applied by a later release, unknown to this binary (fine: expand/contract).
    pub newer: Vec<String>,
}

/// Compares this binary's migrations with the database's history. A migration recorded under
/// one of our versions with another name or checksum is an error: the schema is not the one our
/// statements were written for.
fn compare(own: &[Migration], applied: &[Migration]) -> Result<SchemaStatus, DbError> {
    let mut missing = Vec::new();
    for m in own {
        match applied.iter().find(|a| a.version() == m.version()) {
            None => missing.push(m.to_string()),
            Some(a) if a != m => {
                return Err(DbError::Schema(format!(
                    "the database recorded migration {a} where this binary has {m} \
                     (same version, other name or content)"
                )));
            }
            Some(_) => {}
        }
    }
    let newer = applied
        .iter()
        .filter(|a| !own.iter().any(|m| m.version() == a.version()))
        .map(ToString::to_string)
        .collect();
    Ok(SchemaStatus { missing, newer })
}

/// What a serving instance checks at start-up instead of migrating: the schema holds every
/// migration of this binary (a newer schema is fine). Runs only `SELECT`s, with the service's
/// own settings, so the runtime database user needs no DDL rights.
///
/// # Errors
/// [`DbError::Schema`] naming the missing migrations when the schema is behind this binary (run
/// `items-service migrate`, the deploy's migrate job, first); connection errors as they come.
pub async fn check_schema(connector: &Connector) -> Result<SchemaStatus, DbError> {
    let (mut client, conn) = connector.connect_once(|_| {}).await?;
    let result = applied_migrations(&mut client).await;
    drop(client);
    let _ = conn.await;
    let own = runner();
    let status = compare(own.get_migrations(), &result?.unwrap_or_default())?;
    if !status.missing.is_empty() {
        return Err(DbError::Schema(format!(
            "the database lacks migration(s) {} of this binary; run `items-service migrate` \
             (the deploy's migrate job) before serving this release",
            status.missing.join(", ")
        )));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, sql: &str) -> Migration {
        Migration::unapplied(name, sql).unwrap()
    }

    #[test]
    fn a_newer_schema_is_fine_an_older_or_different_one_is_not() {
        let own = [
            m("V1__items", "CREATE TABLE a ()"),
            m("V2__b", "ALTER TABLE a ADD b int"),
        ];
        let newer = [own[0].clone(), own[1].clone(), m("V3__c", "SELECT 1")];
        let status = compare(&own, &newer).unwrap();
        assert!(status.missing.is_empty());
        assert_eq!(status.newer, ["V3__c"]);

        let behind = compare(&own, &own[..1]).unwrap();
        assert_eq!(behind.missing, ["V2__b"]);

        let edited = [own[0].clone(), m("V2__b", "ALTER TABLE a ADD b text")];
        let err = compare(&own, &edited).unwrap_err().to_string();
        assert!(err.contains("V2__b"), "{err}");
    }
}
