//! The embedded migrations, applied under an advisory lock so that many instances run them once.

use tokio_postgres::NoTls;

use crate::{DatabaseSettings, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Key of the session-level advisory lock that serialises migrations across instances.
const MIGRATION_LOCK_ID: i64 = 0x6974_656d_735f_6d67; // "items_mg"

/// Applies pending migrations on a dedicated connection while holding an advisory lock, so that
/// many instances starting together run them once. Returns the names of applied migrations.
pub async fn migrate(settings: &DatabaseSettings) -> Result<Vec<String>, DbError> {
    let config = settings.pg_config()?;
    let (mut client, connection) = config.connect(NoTls).await?;
    let conn = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_ID])
        .await?;
    let result = embedded::migrations::runner()
        .set_grouped(true)
        .run_async(&mut client)
        .await;
    // The lock is also released when the session ends; unlock explicitly to be prompt.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_ID])
        .await;
    drop(client);
    let _ = conn.await;
    let report = result?;
    unlock?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}
