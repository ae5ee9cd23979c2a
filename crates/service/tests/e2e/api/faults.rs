//! Database down and pool exhaustion: a fast, honest 503 with Retry-After, then recovery.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::proxy::{Proxy, server_addr};
use crate::support::{assert_problem, connect, spawn_app_with, until_an_update_waits_for_a_lock};

const WAIT_TIMEOUT_MS: u64 = 500;

async fn assert_503_within(response: reqwest::Response, started: Instant, limit: Duration) {
    let elapsed = started.elapsed();
    assert!(elapsed < limit, "503 took {elapsed:?}, limit {limit:?}");
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(response, 503).await;
}

#[tokio::test]
async fn database_down_gives_503_then_recovers() {
    let server = items_testkit::server_url().unwrap();
    let proxy = Proxy::start(server_addr(&server)).await;
    let port = proxy.port;
    let app = spawn_app_with(|s| {
        let url = secrecy::ExposeSecret::expose_secret(s.database.url.as_ref().unwrap()).to_owned();
        s.database.url = Some(items_testkit::with_host_port(&url, "127.0.0.1", port).into());
        s.database.pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
        s.database.pool.create_timeout_ms = WAIT_TIMEOUT_MS;
    })
    .await;
    let created = app.create("survivor").await;
    let item_url = app.url(&format!("/items/{}", created["id"]));

    proxy.down();
    // Budget: the pool wait timeout plus the read retries' backoff, far inside the 2 s default.
    let limit = Duration::from_millis(WAIT_TIMEOUT_MS + 1000);
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.client.get(&item_url).send().await.unwrap();
        assert_503_within(response, started, limit).await;
    }
    let started = Instant::now();
    let response = app.post_json(&serde_json::json!({ "name": "lost?" })).await;
    assert_503_within(response, started, limit).await;
    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_503_within(response, started, limit).await;
    // Liveness does not depend on the database.
    assert_eq!(
        app.client
            .get(app.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.client.get(&item_url).send().await.unwrap();
        if response.status() == 200 {
            assert_eq!(response.json::<Value>().await.unwrap(), created);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The refused write stored nothing.
    assert_eq!(app.count("items").await, 1);
}

#[tokio::test]
async fn pool_exhaustion_gives_503_then_recovers() {
    let app = spawn_app_with(|s| {
        // One worker, so its pool is the whole pool (each worker has a pool of its own).
        s.server.workers = Some(1);
        s.database.pool.max_size = 1;
        s.database.pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
    })
    .await;
    let created = app.create("contended").await;
    let id = created["id"].as_i64().unwrap();
    let item_url = app.url(&format!("/items/{id}"));

    // Hold the row lock from outside, so a PATCH takes the only pooled connection and waits.
    let mut blocker = connect(&app.db_url).await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM items WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .unwrap();
    let patch = {
        let client = app.client.clone();
        let url = item_url.clone();
        tokio::spawn(async move {
            client
                .patch(url)
                .header("Content-Type", "application/merge-patch+json")
                .body(r#"{"name": "patched"}"#)
                .send()
                .await
                .unwrap()
        })
    };
    until_an_update_waits_for_a_lock(&app.db_url).await;

    let started = Instant::now();
    let response = app.client.get(&item_url).send().await.unwrap();
    assert_503_within(
        response,
        started,
        Duration::from_millis(WAIT_TIMEOUT_MS + 1000),
    )
    .await;

    tx.commit().await.unwrap();
    let patched = patch.await.unwrap();
    assert_eq!(patched.status(), 200, "the waiting write completes");
    let after = app.client.get(&item_url).send().await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(after.json::<Value>().await.unwrap()["name"], "patched");
}
