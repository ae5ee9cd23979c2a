//! Handler tests in process (`actix_web::test`) over the in-memory store: no database needed
//! (`DATABASE_URL=postgres://nobody@127.0.0.1:1/none cargo test -p items-http` passes). The store
//! contract keeps `MemStore` and `PgStore` in step; the end-to-end tests in `items-service` run
//! the same routes over PostgreSQL.
#![allow(clippy::unwrap_used)]

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::{App, test, web};
use items_http::{ApiState, PageTokenCodec};
use items_memstore::MemStore;
use serde_json::Value;

fn state() -> web::Data<ApiState<MemStore>> {
    state_over(MemStore::new())
}

fn state_over(store: MemStore) -> web::Data<ApiState<MemStore>> {
    web::Data::new(ApiState::new(store, PageTokenCodec::new(b"test key")))
}

fn header(response: &ServiceResponse<impl MessageBody>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn post(body: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/items")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_owned())
}

fn patch(uri: &str, body: &str) -> test::TestRequest {
    test::TestRequest::patch()
        .uri(uri)
        .insert_header(("Content-Type", "application/merge-patch+json"))
        .set_payload(body.to_owned())
}

/// Asserts a problem+json answer with this status; returns the problem.
async fn problem(response: ServiceResponse<impl MessageBody>, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        items_http::PROBLEM_JSON
    );
    let problem: Value = test::read_body_json(response).await;
    assert_eq!(problem["status"], status);
    problem
}

#[actix_web::test]
async fn create_then_get_in_process() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    let created = test::TestRequest::post()
        .uri("/items")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(r#"{"name": "in process"}"#)
        .send_request(&app)
        .await;
    assert_eq!(created.status(), 201);
    let location = created
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = test::read_body_json(created).await;

    let fetched = test::TestRequest::get()
        .uri(&location)
        .send_request(&app)
        .await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers().get("etag").unwrap(), "\"1\"");
    let fetched: Value = test::read_body_json(fetched).await;
    assert_eq!(fetched, body);
}

#[actix_web::test]
async fn problems_come_from_one_mapping() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    for (request, status) in [
        (test::TestRequest::get().uri("/items/0"), 400),
        (test::TestRequest::get().uri("/items/77"), 404),
        (test::TestRequest::put().uri("/items"), 405),
        (test::TestRequest::get().uri("/items?page_size=101"), 400),
        (
            test::TestRequest::post()
                .uri("/items")
                .insert_header(("Content-Type", "text/plain"))
                .set_payload("x"),
            415,
        ),
    ] {
        let response = request.send_request(&app).await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            items_http::PROBLEM_JSON
        );
        let problem: Value = test::read_body_json(response).await;
        assert_eq!(problem["status"], status);
    }
}

/// Each header extractor names its own header when the value is not visible ASCII.
#[actix_web::test]
async fn a_header_that_is_not_visible_ascii_is_a_400_naming_it() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    assert_eq!(
        post(r#"{"name": "x"}"#).send_request(&app).await.status(),
        201
    );
    for (request, name) in [
        (test::TestRequest::get().uri("/items/1"), "If-None-Match"),
        (patch("/items/1", r#"{"name": "y"}"#), "If-Match"),
        (post(r#"{"name": "z"}"#), "Idempotency-Key"),
    ] {
        let value = actix_web::http::header::HeaderValue::from_bytes(b"\xe9t\xe9").unwrap();
        let response = request
            .insert_header((name, value))
            .send_request(&app)
            .await;
        let problem = problem(response, 400).await;
        assert_eq!(problem["invalid_params"][0]["name"], name, "{problem}");
        assert_eq!(problem["type"], "/problems/validation-error");
    }
}

#[actix_web::test]
async fn create_answers_201_with_location_etag_and_the_item() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    let created = post(r#"{"name": " spaced ", "description": "d"}"#)
        .send_request(&app)
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "etag").unwrap(), "\"1\"");
    assert_eq!(header(&created, "location").unwrap(), "/items/1");
    assert_eq!(header(&created, "idempotent-replayed"), None);
    let body: Value = test::read_body_json(created).await;
    assert_eq!(body["id"], 1);
    assert_eq!(body["name"], "spaced");
    assert_eq!(body["description"], "d");
    assert_eq!(body["created_at"], body["updated_at"]);

    let invalid = post(r#"{"name": ""}"#).send_request(&app).await;
    problem(invalid, 422).await;
}

#[actix_web::test]
async fn an_idempotent_create_replays_and_refuses_another_body() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    let keyed = |body: &str| post(body).insert_header(("Idempotency-Key", "k-1"));
    let first = keyed(r#"{"name": "once"}"#).send_request(&app).await;
    assert_eq!(first.status(), 201);
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let first: Value = test::read_body_json(first).await;

    let replay = keyed(r#"{"name": "once"}"#).send_request(&app).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(header(&replay, "idempotent-replayed").unwrap(), "true");
    assert_eq!(header(&replay, "location").unwrap(), "/items/1");
    let replay: Value = test::read_body_json(replay).await;
    assert_eq!(replay, first);

    let other = keyed(r#"{"name": "twice"}"#).send_request(&app).await;
    problem(other, 422).await;
    let list = test::TestRequest::get()
        .uri("/items")
        .send_request(&app)
        .await;
    let list: Value = test::read_body_json(list).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let bad_key = post(r#"{"name": "x"}"#)
        .insert_header(("Idempotency-Key", "has space"))
        .send_request(&app)
        .await;
    problem(bad_key, 400).await;
}

/// The handlers reach the page-token codec one way, the app data: whatever codec decodes a
/// request's token also signs the next one, so one registered after `configure` (a test's, a
/// rotated key's) is used in both directions and paging goes on.
#[actix_web::test]
async fn one_codec_decodes_and_signs_page_tokens() {
    let app = test::init_service(
        App::new()
            .configure(items_http::configure(state()))
            .app_data(web::Data::new(PageTokenCodec::new(b"registered later"))),
    )
    .await;
    for n in 1..=3 {
        let created = post(&format!(r#"{{"name": "item {n}"}}"#))
            .send_request(&app)
            .await;
        assert_eq!(created.status(), 201);
    }
    let mut uri = "/items?page_size=1".to_owned();
    for n in 1..=3 {
        let page = test::TestRequest::get().uri(&uri).send_request(&app).await;
        assert_eq!(page.status(), 200, "page {n}");
        let page: Value = test::read_body_json(page).await;
        assert_eq!(page["items"][0]["name"], format!("item {n}"));
        let token = page["next_page_token"].as_str().unwrap_or_default();
        let later = PageTokenCodec::new(b"registered later");
        assert_eq!(n < 3, later.decode(token).is_ok(), "page {n}: {token:?}");
        uri = format!("/items?page_size=1&page_token={token}");
    }
}

#[actix_web::test]
async fn list_pages_with_tokens() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    for n in 1..=3 {
        let created = post(&format!(r#"{{"name": "item {n}"}}"#))
            .send_request(&app)
            .await;
        assert_eq!(created.status(), 201);
    }
    let first = test::TestRequest::get()
        .uri("/items?page_size=2")
        .send_request(&app)
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = test::read_body_json(first).await;
    let names: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["item 1", "item 2"]);
    let token = first["next_page_token"].as_str().unwrap();

    let second = test::TestRequest::get()
        .uri(&format!("/items?page_size=2&page_token={token}"))
        .send_request(&app)
        .await;
    assert_eq!(second.status(), 200);
    let second: Value = test::read_body_json(second).await;
    assert_eq!(second["items"][0]["name"], "item 3");
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second.get("next_page_token").is_none_or(Value::is_null));

    let forged = test::TestRequest::get()
        .uri("/items?page_token=forged")
        .send_request(&app)
        .await;
    problem(forged, 400).await;
}

#[actix_web::test]
async fn patch_with_if_match_and_412_on_a_stale_or_weak_tag() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    post(r#"{"name": "v1", "description": "d"}"#)
        .send_request(&app)
        .await;
    let updated = patch("/items/1", r#"{"name": "v2"}"#)
        .insert_header(("If-Match", "\"1\""))
        .send_request(&app)
        .await;
    assert_eq!(updated.status(), 200);
    assert_eq!(header(&updated, "etag").unwrap(), "\"2\"");
    let updated: Value = test::read_body_json(updated).await;
    assert_eq!(updated["name"], "v2");
    assert_eq!(updated["description"], "d");

    for stale in ["\"1\"", "W/\"2\"", "garbage"] {
        let refused = patch("/items/1", r#"{"name": "lost"}"#)
            .insert_header(("If-Match", stale))
            .send_request(&app)
            .await;
        problem(refused, 412).await;
    }
    let current = test::TestRequest::get()
        .uri("/items/1")
        .send_request(&app)
        .await;
    let current: Value = test::read_body_json(current).await;
    assert_eq!(current, updated, "a refused change changes nothing");

    let cleared = patch("/items/1", r#"{"description": null}"#)
        .insert_header(("If-Match", "*"))
        .send_request(&app)
        .await;
    assert_eq!(cleared.status(), 200);
    assert_eq!(header(&cleared, "etag").unwrap(), "\"3\"");
    let cleared: Value = test::read_body_json(cleared).await;
    assert!(cleared.get("description").is_none_or(Value::is_null));

    let missing = patch("/items/9", r#"{"name": "x"}"#)
        .insert_header(("If-Match", "*"))
        .send_request(&app)
        .await;
    problem(missing, 404).await;
}

#[actix_web::test]
async fn get_with_if_none_match_is_304_while_unchanged() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    post(r#"{"name": "cached"}"#).send_request(&app).await;
    let conditional = |tags: &str| {
        test::TestRequest::get()
            .uri("/items/1")
            .insert_header(("If-None-Match", tags.to_owned()))
    };
    for current in ["\"1\"", "W/\"1\"", "\"7\", \"1\"", "*"] {
        let response = conditional(current).send_request(&app).await;
        assert_eq!(response.status(), 304, "If-None-Match: {current}");
        assert_eq!(header(&response, "etag").unwrap(), "\"1\"");
        let body = test::read_body(response).await;
        assert!(body.is_empty());
    }
    patch("/items/1", r#"{"name": "changed"}"#)
        .send_request(&app)
        .await;
    let changed = conditional("\"1\"").send_request(&app).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(header(&changed, "etag").unwrap(), "\"2\"");
    let body: Value = test::read_body_json(changed).await;
    assert_eq!(body["name"], "changed");
}

#[actix_web::test]
async fn delete_then_404() {
    let app = test::init_service(App::new().configure(items_http::configure(state()))).await;
    post(r#"{"name": "doomed"}"#).send_request(&app).await;
    let deleted = test::TestRequest::delete()
        .uri("/items/1")
        .send_request(&app)
        .await;
    assert_eq!(deleted.status(), 204);
    let gone = test::TestRequest::get()
        .uri("/items/1")
        .send_request(&app)
        .await;
    problem(gone, 404).await;
    let again = test::TestRequest::delete()
        .uri("/items/1")
        .send_request(&app)
        .await;
    problem(again, 404).await;
}

#[actix_web::test]
async fn a_store_that_is_down_answers_503_with_retry_after() {
    let store = MemStore::new();
    let app =
        test::init_service(App::new().configure(items_http::configure(state_over(store.clone()))))
            .await;
    store.set_down(true);
    let response = test::TestRequest::get()
        .uri("/items/1")
        .send_request(&app)
        .await;
    assert_eq!(
        header(&response, "retry-after").unwrap(),
        items_http::RETRY_AFTER_SECONDS.to_string()
    );
    let body = problem(response, 503).await;
    assert!(
        !body.to_string().contains("in-memory"),
        "5xx bodies are generic: {body}"
    );
    store.set_down(false);
    let list = test::TestRequest::get()
        .uri("/items")
        .send_request(&app)
        .await;
    assert_eq!(list.status(), 200);
}
