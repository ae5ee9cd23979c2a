use serde_json::{Value, json};

use crate::support::{assert_problem, invalid_names, spawn_app};

async fn post_with_key(
    app: &crate::support::TestApp,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url("/items"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_replays_the_first_response() {
    let app = spawn_app().await;
    let body = json!({ "name": "once", "description": "only once" });
    let first = post_with_key(&app, "key-1", &body).await;
    assert_eq!(first.status(), 201);
    let first_etag = first.headers()["etag"].clone();
    let first_body: Value = first.json().await.unwrap();

    let retry = post_with_key(&app, "key-1", &body).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["etag"], first_etag);
    assert_eq!(
        retry.headers()["location"],
        format!("/items/{}", first_body["id"]).as_str()
    );
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.count("items").await, 1);

    // A different key is a different request.
    let other = post_with_key(&app, "key-2", &body).await;
    assert_eq!(other.status(), 201);
    assert_eq!(app.count("items").await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_rejected() {
    let app = spawn_app().await;
    post_with_key(&app, "key-x", &json!({ "name": "first" })).await;
    let conflict = post_with_key(&app, "key-x", &json!({ "name": "second" })).await;
    let problem = assert_problem(conflict, 422).await;
    assert_eq!(invalid_names(&problem), ["Idempotency-Key"]);
    assert_eq!(app.count("items").await, 1);
    let name: String = app
        .db()
        .await
        .query_one("SELECT name FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "first");
}

#[tokio::test]
async fn concurrent_duplicates_create_exactly_one_row() {
    let app = spawn_app().await;
    let body = json!({ "name": "raced" });
    let requests = (0..16).map(|_| post_with_key(&app, "race-key", &body));
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.unwrap()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every response names the same item: {ids:?}");
    assert_eq!(app.count("items").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_retry_after_the_item_was_deleted_is_a_409_and_creates_nothing() {
    let app = spawn_app().await;
    let body = json!({ "name": "short-lived" });
    let first = post_with_key(&app, "key-gone", &body).await;
    assert_eq!(first.status(), 201);
    let created: Value = first.json().await.unwrap();
    let deleted = app
        .client
        .delete(app.url(&format!("/items/{}", created["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // A replayed 201 would name a resource that no longer exists.
    let retry = post_with_key(&app, "key-gone", &body).await;
    let problem = assert_problem(retry, 409).await;
    assert_eq!(problem["type"], "/problems/idempotent-item-gone");
    assert_eq!(invalid_names(&problem), ["Idempotency-Key"]);
    assert_eq!(app.count("items").await, 0);
}
