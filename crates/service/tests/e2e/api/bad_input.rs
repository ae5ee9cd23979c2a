//! Every bad input gets a 4xx problem+json naming what was wrong, and stores nothing.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, assert_problem, invalid_names, spawn_app};

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The field named in `invalid_params`, when the problem is about one.
    field: Option<&'static str>,
}

fn post(
    what: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    field: Option<&'static str>,
) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/items".into(),
        content_type: Some("application/json"),
        body: body.into(),
        status,
        field,
    }
}

fn get(what: &'static str, path: String, field: Option<&'static str>) -> Case {
    Case {
        what,
        method: Method::GET,
        path,
        content_type: None,
        body: Vec::new(),
        status: 400,
        field,
    }
}

async fn run(app: &TestApp, case: Case) {
    let mut request = app
        .client
        .request(case.method.clone(), app.url(&case.path))
        .body(case.body);
    if let Some(ct) = case.content_type {
        request = request.header("Content-Type", ct);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), case.status, "{}", case.what);
    let problem = assert_problem(response, case.status).await;
    if let Some(field) = case.field {
        assert_eq!(invalid_names(&problem), [field], "{}: {problem}", case.what);
    }
}

#[tokio::test]
async fn bad_create_bodies_are_rejected_and_store_nothing() {
    let app = spawn_app().await;
    let cases = vec![
        post("malformed JSON", r#"{"name": "x""#, 400, None),
        post("not JSON at all", "name=x", 400, None),
        post("empty body", "", 400, None),
        post("trailing garbage", r#"{"name": "x"} {}"#, 400, None),
        post(
            "name of the wrong type",
            r#"{"name": 5}"#,
            422,
            Some("name"),
        ),
        post(
            "description of the wrong type",
            r#"{"name": "x", "description": ["a"]}"#,
            422,
            Some("description"),
        ),
        post(
            "array instead of object",
            r#"[{"name": "x"}]"#,
            422,
            Some("body"),
        ),
        post(
            "unknown field",
            r#"{"name": "x", "colour": "red"}"#,
            422,
            Some("colour"),
        ),
        post("missing name", r#"{"description": "x"}"#, 422, Some("body")),
        post("empty name", r#"{"name": ""}"#, 422, Some("name")),
        post("blank name", r#"{"name": "   \t  "}"#, 422, Some("name")),
        post(
            "201-character name",
            json!({ "name": "a".repeat(201) }).to_string(),
            422,
            Some("name"),
        ),
        post(
            "control character in name",
            r#"{"name": "a\u0007b"}"#,
            422,
            Some("name"),
        ),
        post(
            "2001-character description",
            json!({ "name": "x", "description": "d".repeat(2001) }).to_string(),
            422,
            Some("description"),
        ),
        post(
            "NUL in description",
            r#"{"name": "x", "description": "a\u0000b"}"#,
            422,
            Some("description"),
        ),
        post(
            "invalid UTF-8",
            b"{\"name\": \"\xff\xfe\"}".to_vec(),
            400,
            None,
        ),
        post(
            "body over 64 KiB",
            json!({ "name": "x", "description": "d".repeat(70_000) }).to_string(),
            413,
            None,
        ),
        Case {
            content_type: Some("text/plain"),
            ..post("wrong content type", r#"{"name": "x"}"#, 415, None)
        },
        Case {
            content_type: None,
            ..post("no content type", r#"{"name": "x"}"#, 415, None)
        },
        Case {
            content_type: Some("application/json; charset=latin1"),
            ..post("non-UTF-8 charset", r#"{"name": "x"}"#, 415, None)
        },
    ];
    for case in cases {
        run(&app, case).await;
    }
    assert_eq!(app.count("items").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    let app = spawn_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(Ok(br#"{"name": "x", "description": ""#.to_vec()))
            .chain((0..80).map(|_| Ok(vec![b'd'; 1024])))
            .chain(std::iter::once(Ok(br#""}"#.to_vec())))
            .collect();
    let response = app
        .client
        .post(app.url("/items"))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
    assert_eq!(app.count("items").await, 0);
}

#[tokio::test]
async fn bad_ids_are_rejected() {
    let app = spawn_app().await;
    for id in ["-1", "0", "abc", "9223372036854775808", "1.5", "%20"] {
        run(&app, get("bad id", format!("/items/{id}"), Some("id"))).await;
        for method in [Method::DELETE, Method::PATCH] {
            let response = app
                .client
                .request(method, app.url(&format!("/items/{id}")))
                .header("Content-Type", "application/merge-patch+json")
                .body(r#"{"name": "x"}"#)
                .send()
                .await
                .unwrap();
            let problem = assert_problem(response, 400).await;
            assert_eq!(invalid_names(&problem), ["id"]);
        }
    }
}

#[tokio::test]
async fn bad_paging_parameters_are_rejected() {
    let app = spawn_app().await;
    for size in ["0", "101", "abc", "-5", ""] {
        run(
            &app,
            get(
                "bad page_size",
                format!("/items?page_size={size}"),
                Some("page_size"),
            ),
        )
        .await;
    }
    // A token we issued, then tampered with; a token from another deployment (other key); junk.
    app.create("a").await;
    app.create("b").await;
    let page: serde_json::Value = app.get_json("/items?page_size=1").await;
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    let mut tampered = token.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let foreign = items_http::PageTokenCodec::new(b"another deployment")
        .encode(items_domain::ItemId::new(1).unwrap());
    for bad in [
        tampered,
        foreign,
        "not-a-token".to_owned(),
        "%FF".to_owned(),
    ] {
        run(
            &app,
            get(
                "bad page_token",
                format!("/items?page_token={bad}"),
                Some("page_token"),
            ),
        )
        .await;
    }
    // A parameter given twice is ambiguous: a 400 naming it, whichever copy is valid.
    for (query, field) in [
        ("page_size=50&page_size=1", "page_size"),
        ("page_size=5&page_size=5", "page_size"),
        (
            &*format!("page_token={token}&page_token={token}"),
            "page_token",
        ),
    ] {
        run(
            &app,
            get("repeated parameter", format!("/items?{query}"), Some(field)),
        )
        .await;
    }
}

#[tokio::test]
async fn bad_patches_are_rejected_and_change_nothing() {
    let app = spawn_app().await;
    let item = app.create("original").await;
    let path = format!("/items/{}", item["id"]);
    let patch = |what, body: &str, status, field| Case {
        method: Method::PATCH,
        path: path.clone(),
        content_type: Some("application/merge-patch+json"),
        ..post(what, body.to_owned(), status, field)
    };
    for case in [
        patch("null name", r#"{"name": null}"#, 422, Some("name")),
        patch("blank name", r#"{"name": " "}"#, 422, Some("name")),
        patch("unknown field", r#"{"nme": "x"}"#, 422, Some("nme")),
        patch(
            "wrong type",
            r#"{"description": 3}"#,
            422,
            Some("description"),
        ),
        patch("malformed", r#"{"name": "#, 400, None),
        Case {
            content_type: Some("application/xml"),
            ..patch("wrong content type", "<name/>", 415, None)
        },
    ] {
        run(&app, case).await;
    }
    let row = app
        .db()
        .await
        .query_one("SELECT name, version FROM items", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "original");
    assert_eq!(row.get::<_, i64>(1), 1);
}

#[tokio::test]
async fn a_bad_idempotency_key_is_rejected() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/items"))
        .header("Idempotency-Key", "x".repeat(300))
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(invalid_names(&problem), ["Idempotency-Key"]);
    assert_eq!(app.count("items").await, 0);
}
