//! Handler tests in process (`actix_web::test`), over the real PostgreSQL store.
#![allow(clippy::unwrap_used)]

use actix_web::{App, test, web};
use items_http::{ApiState, PageTokenCodec};
use items_repository::{DatabaseSettings, PgStore};
use serde_json::Value;

async fn state() -> web::Data<ApiState<PgStore>> {
    let url = items_testkit::fresh_database().await.unwrap();
    let settings = DatabaseSettings::from_url(&url);
    items_repository::migrate(&settings).await.unwrap();
    web::Data::new(ApiState::new(
        PgStore::new(&settings).unwrap(),
        PageTokenCodec::new(b"test key"),
    ))
}

#[actix_web::test]
async fn create_then_get_in_process() {
    let app = test::init_service(App::new().configure(items_http::configure(state().await))).await;
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
    let app = test::init_service(App::new().configure(items_http::configure(state().await))).await;
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
