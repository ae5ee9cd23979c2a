//! The generated Rust client (`items-client`) against the real server: the happy paths a
//! consumer takes, and errors that come back as the typed problem.

use items_client::{Client, Error, types};

use crate::support::spawn_app;

fn etag<T>(response: &items_client::ResponseValue<T>) -> String {
    response.headers()["etag"]
        .to_str()
        .expect("ETag is ASCII")
        .to_owned()
}

fn typed_item() -> types::builder::CreateItemRequest {
    types::CreateItemRequest::builder()
        .name("from the Rust client")
        .description(Some("typed".parse().unwrap()))
}

#[tokio::test]
async fn the_generated_client_creates_reads_lists_updates_and_deletes() {
    let app = spawn_app().await;
    let client = Client::new(&app.address);

    let created = client
        .create_item()
        .idempotency_key("client-create-1")
        .body(typed_item())
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let created_etag = etag(&created);
    let item = created.into_inner();
    assert_eq!(item.name.as_str(), "from the Rust client");
    assert_eq!(item.description.as_ref().map(|d| d.as_str()), Some("typed"));

    // The same key and body replay the first answer.
    let replay = client
        .create_item()
        .idempotency_key("client-create-1")
        .body(typed_item())
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.into_inner().id, item.id);

    let fetched = client.get_item().id(item.id).send().await.expect("get");
    assert_eq!(etag(&fetched), created_etag);
    assert_eq!(fetched.into_inner().name.as_str(), "from the Rust client");

    client
        .create_item()
        .body(types::CreateItemRequest::builder().name("second"))
        .send()
        .await
        .expect("create second");
    let first_page = client
        .list_items()
        .page_size(1)
        .send()
        .await
        .expect("list")
        .into_inner();
    assert_eq!(first_page.items.len(), 1);
    assert_eq!(first_page.items[0].id, item.id);
    let token = first_page.next_page_token.expect("a second page");
    let second_page = client
        .list_items()
        .page_size(1)
        .page_token(token)
        .send()
        .await
        .expect("list page 2")
        .into_inner();
    assert_eq!(second_page.items[0].name.as_str(), "second");
    assert!(second_page.next_page_token.is_none());

    let updated = client
        .update_item()
        .id(item.id)
        .if_match(created_etag.clone())
        .body(types::PatchItemRequest::builder().name(Some("renamed".parse().unwrap())))
        .send()
        .await
        .expect("patch");
    assert_ne!(etag(&updated), created_etag);
    let updated = updated.into_inner();
    assert_eq!(updated.name.as_str(), "renamed");
    assert_eq!(
        updated.description.as_ref().map(|d| d.as_str()),
        Some("typed")
    );

    let deleted = client
        .delete_item()
        .id(item.id)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
}

#[tokio::test]
async fn documented_errors_come_back_as_the_problem_type() {
    let app = spawn_app().await;
    let client = Client::new(&app.address);
    let item = client
        .create_item()
        .body(types::CreateItemRequest::builder().name("one"))
        .send()
        .await
        .expect("create")
        .into_inner();

    let stale = client
        .update_item()
        .id(item.id)
        .if_match("\"999\"")
        .body(types::PatchItemRequest::builder().name(Some("two".parse().unwrap())))
        .send()
        .await;
    match stale {
        Err(Error::ErrorResponse(problem)) => {
            assert_eq!(problem.status(), 412);
            assert_eq!(problem.status, 412);
            assert!(!problem.title.is_empty());
        }
        other => panic!("expected a 412 problem, got {other:?}"),
    }

    let missing = client
        .get_item()
        .id(item.id.saturating_add(1000))
        .send()
        .await;
    match missing {
        Err(Error::ErrorResponse(problem)) => {
            assert_eq!(problem.status, 404);
            assert!(!problem.detail.is_empty());
        }
        other => panic!("expected a 404 problem, got {other:?}"),
    }

    // The client refuses what the spec forbids before sending it.
    let too_long = types::CreateItemRequestName::try_from("x".repeat(201));
    assert!(too_long.is_err());
}
