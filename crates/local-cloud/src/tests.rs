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

#[tokio::test]
async fn an_unchanged_template_creates_no_revision_and_a_reused_name_with_another_template_is_refused()
 {
    let cloud = LocalCloud::start();
    cloud.add_service("p", "europe-west1", "items", "items-00001-abc");
    let (client, base) = (client(), cloud.url());
    let started = || cloud.stub().expect("stub").started.lock().expect("s").len();

    // Decision of deploy: `template.revision` left empty. The same configuration otherwise:
    // no revision (only the traffic may move).
    let mut body = get(&client, &base, SERVICE).await;
    body["template"]["revision"] = json!("");
    let done = wait(
        &client,
        &base,
        patch(&client, &base, &body).await.json().await.expect("op"),
    )
    .await;
    let service = &done["response"];
    assert!(
        service["latestCreatedRevision"]
            .as_str()
            .is_some_and(|r| r.ends_with("/items-00001-abc")),
        "{service}"
    );
    assert_eq!(started(), 0);

    // A new image with an empty name: a generated one.
    let mut body = get(&client, &base, SERVICE).await;
    body["template"]["revision"] = json!("");
    body["template"]["containers"][0]["image"] = json!("r/items@sha256:two");
    let done = wait(
        &client,
        &base,
        patch(&client, &base, &body).await.json().await.expect("op"),
    )
    .await;
    let second = done["response"]["latestCreatedRevision"]
        .as_str()
        .expect("created")
        .rsplit('/')
        .next()
        .expect("short")
        .to_owned();
    assert!(
        second.starts_with("items-") && second != "items-00001-abc",
        "{second}"
    );
    assert_eq!(started(), 1);

    // Naming the first revision again with the second image: 409, Cloud Run's status and text.
    let mut body = get(&client, &base, SERVICE).await;
    body["template"]["revision"] = json!("items-00001-abc");
    let refused = patch(&client, &base, &body).await;
    assert_eq!(refused.status(), 409);
    let error: Value = refused.json().await.expect("json");
    assert_eq!(error["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(
        error["error"]["message"],
        "Revision named 'items-00001-abc' with different configuration already exists."
    );
    // Naming it with its own configuration (the first image) is no conflict and starts nothing.
    body["template"]["containers"][0]["image"] =
        json!("europe-west1-docker.pkg.dev/p/items/items-service@sha256:old");
    let op = patch(&client, &base, &body).await;
    assert_eq!(op.status(), 200);
    let done = wait(&client, &base, op.json().await.expect("op")).await;
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(started(), 1);
}

/// A service whose template mounts `secret` at `latest` and at the pinned version 1, and takes
/// it as an env value: (cloud, service name).
async fn service_with_secret(secret: &str) -> LocalCloud {
    let cloud = LocalCloud::start();
    cloud.add_secret_version(secret, b"v1");
    cloud.add_service("p", "europe-west1", "items", "items-00001-abc");
    let (client, base) = (client(), cloud.url());
    let mut body = get(&client, &base, SERVICE).await;
    body["template"]["revision"] = json!("items-secrets");
    body["template"]["containers"][0]["env"] = json!([{"name": "KEY", "valueSource":
        {"secretKeyRef": {"secret": secret, "version": "latest"}}}]);
    body["template"]["containers"][0]["volumeMounts"] = json!([
        {"name": "latest", "mountPath": "/latest"}, {"name": "pinned", "mountPath": "/pinned"}]);
    body["template"]["volumes"] = json!([
        {"name": "latest", "secret": {"secret": secret, "items": [{"version": "latest", "path": "key"}]}},
        {"name": "pinned", "secret": {"secret": secret, "items": [{"version": "1", "path": "key"}]}}]);
    let done = wait(
        &client,
        &base,
        patch(&client, &base, &body).await.json().await.expect("op"),
    )
    .await;
    assert!(done["error"].is_null(), "{done}");
    cloud
}

#[tokio::test]
async fn a_new_secret_version_reaches_latest_volumes_of_running_revisions_only() {
    let secret = "projects/p/secrets/items-db-password";
    let cloud = service_with_secret(secret).await;
    let (client, base) = (client(), cloud.url());
    let stub = cloud.stub().expect("stub");
    let started = stub.started.lock().expect("started")[0].clone();
    assert!(started.env.contains(&("KEY".into(), "v1".into())));

    let added: Value = client
        .post(format!("{base}/v1/{secret}:addVersion"))
        .json(&json!({"payload": {"data": "djI=", "dataCrc32c": super::secrets::crc32c(b"v2").to_string()}}))
        .send()
        .await
        .expect("add")
        .json()
        .await
        .expect("json");
    assert_eq!(added["name"], format!("{secret}/versions/2"));
    assert_eq!(added["state"], "ENABLED");
    // The revision's `latest` file gets the new payload; the pinned one is not touched.
    let updated = stub.updated_files.lock().expect("updated").clone();
    assert_eq!(
        updated,
        [(
            "items-secrets".to_owned(),
            vec![(std::path::PathBuf::from("/latest/key"), b"v2".to_vec())]
        )]
    );
}

#[tokio::test]
async fn secret_manager_versions_are_added_listed_and_accessed_as_the_v1_api_answers() {
    let cloud = LocalCloud::start();
    let (client, base) = (client(), cloud.url());
    let created = client
        .post(format!(
            "{base}/v1/projects/p/secrets?secretId=page-token-key"
        ))
        .json(&json!({"replication": {"automatic": {}}}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 200);
    let secret = "projects/p/secrets/page-token-key";
    let empty = client
        .get(format!("{base}/v1/{secret}/versions/latest:access"))
        .send()
        .await
        .expect("access");
    assert_eq!(empty.status(), 404);
    let body: Value = empty.json().await.expect("json");
    assert_eq!(
        body["error"]["message"],
        format!("Secret [{secret}] not found or has no versions.")
    );
    for data in ["b25l", "dHdv"] {
        let r = client
            .post(format!("{base}/v1/{secret}:addVersion"))
            .json(&json!({"payload": {"data": data}}))
            .send()
            .await
            .expect("add");
        assert_eq!(r.status(), 200);
    }
    let bad = client
        .post(format!("{base}/v1/{secret}:addVersion"))
        .json(&json!({"payload": {"data": "dHdv", "dataCrc32c": "1"}}))
        .send()
        .await
        .expect("add");
    assert_eq!(bad.status(), 400);
    let access = |v: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r: Value = client
                .get(format!("{base}/v1/{secret}/versions/{v}:access"))
                .send()
                .await
                .expect("access")
                .json()
                .await
                .expect("json");
            r
        }
    };
    let latest = access("latest").await;
    assert_eq!(latest["name"], format!("{secret}/versions/2"));
    assert_eq!(latest["payload"]["data"], "dHdv");
    assert_eq!(
        latest["payload"]["dataCrc32c"],
        super::secrets::crc32c(b"two").to_string()
    );
    assert_eq!(access("1").await["payload"]["data"], "b25l");
    assert_eq!(
        access("3").await["error"]["message"],
        format!("Secret Version [{secret}/versions/3] not found.")
    );
    let listed: Value = client
        .get(format!("{base}/v1/{secret}/versions"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listed["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            format!("{secret}/versions/2"),
            format!("{secret}/versions/1")
        ]
    );
    // CRC32C check value (RFC 3720 B.4: 32 bytes of zeros).
    assert_eq!(super::secrets::crc32c(&[0u8; 32]), 0x8A91_36AA);
}

#[tokio::test]
async fn an_image_fault_reaches_the_revisions_of_that_image_created_later() {
    let cloud = LocalCloud::start();
    cloud.add_service("p", "europe-west1", "items", "items-00001-abc");
    let (client, base) = (client(), cloud.url());
    let fault = json!({"image": "r/items@sha256:slow", "added_latency_ms": 2500});
    let r = client
        .post(format!("{base}/local/image-faults"))
        .json(&fault)
        .send()
        .await
        .expect("fault");
    assert_eq!(r.status(), 204);
    let mut body = get(&client, &base, SERVICE).await;
    body["template"]["revision"] = json!("");
    body["template"]["containers"][0]["image"] = json!("r/items@sha256:slow");
    let done = wait(
        &client,
        &base,
        patch(&client, &base, &body).await.json().await.expect("op"),
    )
    .await;
    let created = done["response"]["latestCreatedRevision"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .expect("created")
        .to_owned();
    let faults = cloud
        .stub()
        .expect("stub")
        .faults
        .lock()
        .expect("faults")
        .clone();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].0, created);
    assert_eq!(
        faults[0].1.as_ref().map(|f| f.added_latency),
        Some(Duration::from_millis(2500))
    );
    // Removed: the running revision of that image loses it.
    let r = client
        .delete(format!("{base}/local/image-faults"))
        .json(&json!({"image": "r/items@sha256:slow"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let faults = cloud
        .stub()
        .expect("stub")
        .faults
        .lock()
        .expect("faults")
        .clone();
    assert_eq!(faults.last(), Some(&(created, None)));
}
