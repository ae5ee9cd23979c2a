//! The Cloud Run model through its REST surface: etags, generated revision names, a revision that
//! does not become ready.

use std::time::Duration;

use serde_json::{Value, json};

use super::LocalCloud;

/// reqwest is built without a default crypto provider (the workspace's rustls runs on ring).
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

const SERVICE: &str = "projects/p/locations/europe-west1/services/items";

async fn wait(client: &reqwest::Client, base: &str, op: Value) -> Value {
    let name = op["name"].as_str().expect("operation name").to_owned();
    for _ in 0..100 {
        let op: Value = client
            .get(format!("{base}/v2/{name}"))
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("json");
        if op["done"] == json!(true) {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("operation {name} never ended")
}

async fn get(client: &reqwest::Client, base: &str, name: &str) -> Value {
    client
        .get(format!("{base}/v2/{name}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn patch(client: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    client
        .patch(format!("{base}/v2/{SERVICE}"))
        .json(body)
        .send()
        .await
        .expect("patch")
}

#[tokio::test]
async fn a_stale_etag_is_refused_and_a_new_template_gets_a_generated_revision() {
    let cloud = LocalCloud::start();
    cloud.add_service("p", "europe-west1", "items", "items-00001-abc");
    let (client, base) = (client(), cloud.url());
    let read = get(&client, &base, SERVICE).await;

    let mut changed = read.clone();
    changed["template"]["revision"] = json!("");
    changed["template"]["containers"][0]["image"] = json!("r/items@sha256:new");
    let op: Value = patch(&client, &base, &changed)
        .await
        .json()
        .await
        .expect("op");
    let done = wait(&client, &base, op).await;
    let service = &done["response"];
    let created = service["latestCreatedRevision"].as_str().expect("created");
    let short = created.rsplit('/').next().expect("short");
    // <service>-<generation, 5 digits>-<3 letters>
    assert!(
        short.starts_with("items-00002-") && short.len() == 15,
        "{short}"
    );
    assert_eq!(service["latestReadyRevision"], created);
    assert_eq!(service["trafficStatuses"][0]["revision"], short);
    assert_ne!(service["etag"], read["etag"]);

    // The first read's etag is stale now.
    let stale = patch(&client, &base, &read).await;
    assert_eq!(stale.status(), 409);
    let body: Value = stale.json().await.expect("json");
    assert_eq!(body["error"]["status"], "ABORTED");
}

#[tokio::test]
async fn a_revision_that_does_not_start_fails_the_operation_and_keeps_the_traffic() {
    let cloud = LocalCloud::start();
    cloud.add_service("p", "europe-west1", "items", "items-00001-abc");
    let reason = "The user-provided container failed to start and listen on the port defined provided by the PORT=8080 environment variable.";
    cloud
        .stub()
        .expect("stub")
        .fail_revisions(Some(reason.into()));
    let (client, base) = (client(), cloud.url());
    let mut body = get(&client, &base, SERVICE).await;
    body["template"]["revision"] = json!("items-broken");
    body["template"]["containers"][0]["image"] = json!("r/items@sha256:broken");
    body["traffic"] = json!([{"type": 2, "revision": "items-broken", "percent": 100}]);
    let op: Value = patch(&client, &base, &body).await.json().await.expect("op");
    let done = wait(&client, &base, op).await;
    assert_eq!(done["error"]["code"], 9);
    assert_eq!(
        done["error"]["message"],
        format!("Revision 'items-broken' is not ready and cannot serve traffic. {reason}")
    );
    let service = get(&client, &base, SERVICE).await;
    assert_eq!(
        cloud.traffic(SERVICE),
        [("items-00001-abc".to_owned(), 100, String::new())]
    );
    assert!(
        service["latestCreatedRevision"]
            .as_str()
            .is_some_and(|r| r.ends_with("/items-broken"))
    );
    assert!(
        service["latestReadyRevision"]
            .as_str()
            .is_some_and(|r| r.ends_with("/items-00001-abc"))
    );
    assert_eq!(service["terminalCondition"]["state"], "CONDITION_FAILED");
    let revision = get(&client, &base, &format!("{SERVICE}/revisions/items-broken")).await;
    assert_eq!(revision["conditions"][0]["state"], "CONDITION_FAILED");
    // Naming it again with another image: a revision with that name exists.
    body["etag"] = service["etag"].clone();
    body["template"]["containers"][0]["image"] = json!("r/items@sha256:other");
    let refused = patch(&client, &base, &body).await;
    assert_eq!(refused.status(), 409);
}
