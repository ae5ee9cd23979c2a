//! The PostgreSQL adapter against a real database (fresh per test): the store contract that
//! `MemStore` passes too, and what only PostgreSQL has (migrations, pruning, an unreachable server).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use items_domain::{
    Description, IdempotencyKey, ItemName, ItemStore, NewItem, PageRequest, PageSize, StoreError,
};
use items_repository::{Connector, DatabaseSettings, PgStore, migrate};

async fn fresh() -> (DatabaseSettings, PgStore) {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    migrate(&Connector::new(&settings).unwrap()).await.unwrap();
    let store = PgStore::new(&Connector::new(&settings).unwrap()).unwrap();
    (settings, store)
}

/// The store contract (`items_memstore::contract`), each case over a fresh database.
mod contract {
    async fn fresh() -> items_repository::PgStore {
        super::fresh().await.1
    }

    items_memstore::store_contract_tests!(fresh);
}

fn new_item(name: &str) -> NewItem {
    NewItem {
        name: ItemName::parse(name).unwrap(),
        description: Some(Description::parse("d").unwrap()),
    }
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    let connectors: Vec<_> = (0..8).map(|_| Connector::new(&settings).unwrap()).collect();
    let runs = connectors.iter().map(migrate);
    let results = futures_util::future::join_all(runs).await;
    let applied: usize = results.into_iter().map(|r| r.unwrap().len()).sum();
    assert_eq!(applied, 1, "exactly one instance applies V1");
    // Running again is a no-op.
    assert!(
        migrate(&Connector::new(&settings).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn keyed_creates_race_to_exactly_one_row() {
    let (settings, store) = fresh().await;
    let key = IdempotencyKey::parse("race").unwrap();
    let creates = (0..12).map(|_| store.create(new_item("same"), Some(key.clone())));
    let outcomes = futures_util::future::join_all(creates).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.item == outcomes[0].item));

    let different = store.create(new_item("other"), Some(key)).await;
    assert!(matches!(different, Err(StoreError::IdempotencyConflict)));
    let page = store
        .list(PageRequest {
            after: None,
            size: PageSize::default(),
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    drop(settings);
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_fast() {
    // Nothing listens on this port: connection set-up fails, is retried briefly, then gives up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings =
        DatabaseSettings::from_url(&format!("postgres://postgres@127.0.0.1:{port}/x"));
    settings.pool.wait_timeout_ms = 300;
    let store = PgStore::new(&Connector::new(&settings).unwrap()).unwrap();
    let started = Instant::now();
    let result = store.get(items_domain::ItemId::new(1).unwrap()).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        store.ready().await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn expired_idempotency_keys_are_pruned() {
    let (settings, store) = fresh().await;
    for key in ["old", "fresh"] {
        store
            .create(new_item(key), Some(IdempotencyKey::parse(key).unwrap()))
            .await
            .unwrap();
    }
    let url = secrecy::ExposeSecret::expose_secret(settings.url.as_ref().unwrap()).to_owned();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'",
            &[],
        )
        .await
        .unwrap();
    let removed = store
        .prune_idempotency_keys(settings.idempotency_key_ttl())
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let left: Vec<String> = client
        .query("SELECT key FROM idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["fresh"]);
    // The fresh key still replays; the pruned one would now create a new item.
    let replay = store
        .create(
            new_item("fresh"),
            Some(IdempotencyKey::parse("fresh").unwrap()),
        )
        .await
        .unwrap();
    assert!(replay.replayed);
    let again = store
        .create(new_item("old"), Some(IdempotencyKey::parse("old").unwrap()))
        .await
        .unwrap();
    assert!(!again.replayed);
}
