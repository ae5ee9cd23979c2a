//! A serving instance outside `local` never migrates: it starts against a schema that holds its
//! own migrations or a later release's (expand/contract), and refuses one that lacks them.

use items_service::{BuildOptions, PlatformIdentity};

use crate::support::{client, connect, create_at, fresh_settings, serve};

#[tokio::test]
async fn an_instance_refuses_a_schema_behind_it_and_serves_a_newer_one() {
    let mut settings = fresh_settings(|launch| launch).await;
    settings.database.migrate_on_start = false;
    let identity = PlatformIdentity::default();
    let url =
        secrecy::ExposeSecret::expose_secret(settings.database.url.as_ref().unwrap()).to_owned();

    let err = items_service::Application::build(&settings, &identity)
        .await
        .map(|_| ())
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("items-service migrate"), "{message}");
    // It ran no DDL of its own.
    let db = connect(&url).await;
    let history = db
        .query_one("SELECT to_regclass('refinery_schema_history') IS NULL", &[])
        .await
        .unwrap();
    assert!(history.get::<_, bool>(0), "no migration ran at start-up");

    // The migrate job ran, then a later release expanded the schema (a nullable column and a
    // migration this binary does not know).
    items_repository::migrate(
        &items_repository::Connector::new(&items_repository::DatabaseSettings::from_url(&url))
            .unwrap(),
    )
    .await
    .unwrap();
    db.batch_execute(
        "ALTER TABLE items ADD COLUMN colour text;
         INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (9999, 'later', '2026-12-01T00:00:00Z', '1');",
    )
    .await
    .unwrap();
    let base = serve(&settings, &identity, BuildOptions::default()).await;
    let created = create_at(&client(), &base, "still served").await;
    let id = created["id"].as_i64().unwrap();
    let response = client()
        .get(format!("{base}/items/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// `items-service migrate` (the migrate job, also run on a schedule) prunes expired
/// idempotency keys: the hourly task of a serving instance never runs when instances scale to
/// zero within the hour.
#[tokio::test]
async fn the_migrate_command_prunes_expired_idempotency_keys() {
    let url = items_testkit::fresh_database().await.unwrap();
    items_repository::migrate(
        &items_repository::Connector::new(&items_repository::DatabaseSettings::from_url(&url))
            .unwrap(),
    )
    .await
    .unwrap();
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO idempotency_keys (key, request_hash, created_at)
         VALUES ('old', '\\x00', now() - interval '25 hours'), ('new', '\\x00', now());",
    )
    .await
    .unwrap();
    let out = crate::support::launch(&url)
        .arg("migrate")
        .std_command()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<String> = db
        .query("SELECT key FROM idempotency_keys ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["new"]);
}
