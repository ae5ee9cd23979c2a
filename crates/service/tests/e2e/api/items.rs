use serde_json::{Value, json};

use crate::support::{assert_problem, spawn_app};

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn create_returns_201_location_etag_and_the_item() {
    let app = spawn_app().await;
    let response = app
        .post_json(&json!({ "name": "Widget", "description": "A useful widget" }))
        .await;
    assert_eq!(response.status(), 201);
    let id_location = response.headers()["location"].to_str().unwrap().to_owned();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(id_location, format!("/items/{}", body["id"]));
    assert_eq!(etag, "\"1\"");
    assert_eq!(body["name"], "Widget");
    assert_eq!(body["description"], "A useful widget");
    for t in ["created_at", "updated_at"] {
        let text = body[t].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{t} = {text} is not RFC 3339: {e}"));
    }
    assert_eq!(app.count("items").await, 1);

    // The stored item reads back identically.
    let fetched = app.client.get(app.url(&id_location)).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["etag"], etag.as_str());
    assert_eq!(fetched.json::<Value>().await.unwrap(), body);
}

#[tokio::test]
async fn description_is_optional_and_null_when_absent() {
    let app = spawn_app().await;
    let body = app.create("No description").await;
    assert_eq!(body["description"], Value::Null);
}

#[tokio::test]
async fn missing_item_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/items/999")).send().await.unwrap();
    assert_problem(response, 404).await;
}

#[tokio::test]
async fn if_none_match_gives_304() {
    let app = spawn_app().await;
    let item = app.create("cached").await;
    let response = app
        .client
        .get(app.url(&format!("/items/{}", item["id"])))
        .header("If-None-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
}

#[tokio::test]
async fn strings_round_trip_byte_for_byte() {
    let app = spawn_app().await;
    let samples = [
        "He said \"hi\" and 'bye'",
        "100% of %s and %d",
        "'; DROP TABLE items; --",
        "Crab 🦀 and family 👨‍👩‍👧",
        "שלום עולם مرحبا",
        "back\\slash and <tags> & ampersands",
    ];
    for s in samples {
        let created = app
            .post_json(&json!({ "name": s, "description": s }))
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(created["name"], s);
        let fetched: Value = app.get_json(&format!("/items/{}", created["id"])).await;
        assert_eq!(fetched["name"], s);
        assert_eq!(fetched["description"], s);
    }
    // And in the database itself, unchanged.
    let rows = app
        .db()
        .await
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, samples);
    assert_eq!(app.count("items").await, samples.len() as i64);
}

#[tokio::test]
async fn list_pages_through_everything_in_id_order() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.create(&format!("item {i}")).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = app.url("/items?page_size=3");
        if let Some(t) = &token {
            url.push_str(&format!("&page_token={t}"));
        }
        let page: Value = app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_i64().unwrap());
        }
        match page.get("next_page_token") {
            Some(t) => token = Some(t.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 7);
}

#[tokio::test]
async fn list_defaults_to_50_and_omits_the_token_on_the_last_page() {
    let app = spawn_app().await;
    app.db()
        .await
        .execute(
            "INSERT INTO items (name) SELECT 'seed ' || g FROM generate_series(1, 60) g",
            &[],
        )
        .await
        .unwrap();
    let first: Value = app.get_json("/items").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    let token = first["next_page_token"].as_str().unwrap();
    let second: Value = app.get_json(&format!("/items?page_token={token}")).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 10);
    assert!(second.get("next_page_token").is_none(), "{second}");

    let empty: Value = app.get_json("/items?page_size=100").await;
    assert_eq!(empty["items"].as_array().unwrap().len(), 60);
    assert!(empty.get("next_page_token").is_none());
}

#[tokio::test]
async fn patch_merges_and_bumps_the_etag() {
    let app = spawn_app().await;
    let created = app
        .post_json(&json!({ "name": "before", "description": "keep me" }))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let url = app.url(&format!("/items/{}", created["id"]));

    let renamed = app
        .client
        .patch(&url)
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"name": "after"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    assert_eq!(renamed.headers()["etag"], "\"2\"");
    let body: Value = renamed.json().await.unwrap();
    assert_eq!(body["name"], "after");
    assert_eq!(body["description"], "keep me");
    assert_eq!(body["created_at"], created["created_at"]);
    assert_ne!(body["updated_at"], created["updated_at"]);

    let cleared: Value = app
        .client
        .patch(&url)
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"description": null}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["name"], "after");

    // An empty merge patch changes nothing.
    let same = app
        .client
        .patch(&url)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    assert_eq!(same.headers()["etag"], "\"3\"");
}

#[tokio::test]
async fn patch_honours_if_match() {
    let app = spawn_app().await;
    let created = app.create("versioned").await;
    let url = app.url(&format!("/items/{}", created["id"]));
    let patch = |etag: &'static str| {
        app.client
            .patch(&url)
            .header("Content-Type", "application/merge-patch+json")
            .header("If-Match", etag)
            .body(r#"{"name": "changed"}"#)
            .send()
    };
    let ok = patch("\"1\"").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "\"2\"");

    let stale = patch("\"1\"").await.unwrap();
    let problem = assert_problem(stale, 412).await;
    assert_eq!(crate::support::invalid_names(&problem), ["If-Match"]);
    let junk = patch("not-a-tag").await.unwrap();
    assert_problem(junk, 412).await;
    // If-Match uses the strong comparison (RFC 9110 §13.1.1): a weak tag never matches, even
    // when its opaque part is the current version.
    let weak = patch("W/\"2\"").await.unwrap();
    assert_problem(weak, 412).await;
    let list = patch("\"7\", \"2\"").await.unwrap();
    assert_eq!(list.status(), 200);
    let star = patch("*").await.unwrap();
    assert_eq!(star.status(), 200);

    // The stale attempts changed nothing: version went 1 → 2 → 3 → 4.
    let version: i64 = app
        .db()
        .await
        .query_one("SELECT version FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 4);

    let missing = app
        .client
        .patch(app.url("/items/424242"))
        .header("Content-Type", "application/merge-patch+json")
        .header("If-Match", "*")
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404).await;
}

#[tokio::test]
async fn delete_removes_then_404s() {
    let app = spawn_app().await;
    let created = app.create("doomed").await;
    let url = app.url(&format!("/items/{}", created["id"]));
    let deleted = app.client.delete(&url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.count("items").await, 0);
    assert_problem(app.client.delete(&url).send().await.unwrap(), 404).await;
    assert_problem(app.client.get(&url).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn unsupported_methods_get_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/items", "GET, POST"),
        (reqwest::Method::DELETE, "/items", "GET, POST"),
        (reqwest::Method::PUT, "/items/1", "GET, PATCH, DELETE"),
        (reqwest::Method::POST, "/items/1", "GET, PATCH, DELETE"),
        (reqwest::Method::POST, "/health/live", "GET"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        // The order of an Allow list carries no meaning (RFC 9110 §10.2.1).
        let mut got: Vec<&str> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        let mut want: Vec<&str> = allow.split(", ").collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
        assert_problem(response, 405).await;
    }
    assert_problem(app.client.get(app.url("/nope")).send().await.unwrap(), 404).await;
}
