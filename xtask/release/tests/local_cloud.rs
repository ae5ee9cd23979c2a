//! `cargo xtask cloud`, then `cargo xtask deploy --env local`, through the real command line: the
//! revisions run from their images behind Cloud Run's IAM check and the local gateways.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use items_local_gateway::{GatewayConfig, LOCAL_API_KEY, LocalGateway, LogSink, SigningKey};

#[path = "support/local_cloud.rs"]
mod support;

use support::{Cloud, Marks, push_image, root, service_binary, xtask};

/// `method url` with these headers and, when given, a JSON body; (status, body text).
fn call(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, String)],
    json: Option<&serde_json::Value>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut request = reqwest::Client::new().request(method, url);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        if let Some(body) = json {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

fn get(url: &str, headers: &[(&str, String)]) -> (u16, String) {
    call(reqwest::Method::GET, url, headers, None)
}

fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = call(reqwest::Method::POST, url, &[], Some(body));
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[test]
fn deploy_to_the_local_cloud_and_call_it_through_its_gateways() {
    let mut marks = Marks::new();
    let Some(binary) = service_binary() else {
        return;
    };
    let cloud = Cloud::start(&binary);
    let gateway = cloud.value("gateway europe-west1:");
    let run = cloud.value("run europe-west1:");
    let key = cloud.value("api key:");
    marks.mark("cargo xtask cloud ready");
    assert_eq!(key, LOCAL_API_KEY);
    let registry = cloud.registry();
    let bootstrap = cloud
        .wait_for(|l| l.starts_with("items-00001-"), Duration::from_secs(5))
        .and_then(|l| l.split('|').next().map(str::to_owned))
        .unwrap();

    // v1: an image of the same binary with another revision label.
    // The migrate job of migrate.tf ran once, successfully, before the services started.
    let control = cloud.value("control plane:");
    let job = cloud.value("migrate job:");
    assert!(job.ends_with("/jobs/items-migrate"), "{job}");
    let (status, body) = get(&format!("{control}/v2/{job}"), &[]);
    assert_eq!(status, 200, "{body}");
    let job_json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        job_json["latestCreatedExecution"]["completionStatus"], "EXECUTION_SUCCEEDED",
        "{body}"
    );
    assert_eq!(
        job_json["template"]["template"]["containers"][0]["args"],
        serde_json::json!(["migrate"])
    );

    let layout = std::env::temp_dir().join(format!("xtask-local-cloud-{}", std::process::id()));
    let image = push_image(&registry, &binary, "local-cloud-test", "v1", &layout);
    marks.mark("image built and pushed");
    let deploy = [
        "deploy",
        "--env",
        "local",
        "--image",
        &image,
        "--canary-wait",
        "0",
    ];
    let out = xtask(&deploy);
    assert!(out.status.success(), "deploy --env local failed");
    // The revision serving it, as the control plane names it (deploy may leave the name to
    // Cloud Run).
    let service_url =
        format!("{control}/v2/projects/items-local-0001/locations/europe-west1/services/items");
    let serving_revision = || {
        let (_, service) = get(&service_url, &[]);
        let service: serde_json::Value = serde_json::from_str(&service).unwrap();
        service["latestReadyRevision"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .unwrap()
            .to_owned()
    };
    let revision = serving_revision();
    marks.mark("deployed");
    let again = xtask(&deploy);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to do"));
    marks.mark("deployed again: nothing to do");

    // Through the gateway with a key and a token: served by the new revision.
    let token = support::token();
    let (status, _) = get(
        &format!("{gateway}/items?page_size=1&key={key}"),
        &[("authorization", format!("Bearer {}", token.trim()))],
    );
    assert_eq!(status, 200);
    assert!(
        cloud
            .wait_for(
                |l| l.starts_with(&format!("{revision}|")) && l.contains("GET /items"),
                Duration::from_secs(5)
            )
            .is_some(),
        "{revision} did not log the request"
    );
    // The bootstrap revision lost its traffic and tag: SIGTERM.
    assert!(
        cloud
            .wait_for(
                |l| l.starts_with(&format!("{bootstrap}|")) && l.contains("shutdown signal"),
                Duration::from_secs(10)
            )
            .is_some(),
        "{bootstrap} got no SIGTERM"
    );

    // Cloud Run's IAM check: no token, a token for another audience.
    let (status, _) = get(&format!("{run}/items"), &[]);
    assert!(matches!(status, 401 | 403), "{status}");
    let key_google = SigningKey::local_google();
    let now = items_local_gateway::keys::now_secs();
    let account = "items-gateway@items-local-0001.iam.gserviceaccount.com";
    let elsewhere = items_local_gateway::keys::backend_id_token(
        &key_google,
        "https://elsewhere.run.app",
        account,
        now,
    )
    .unwrap();
    let (status, _) = get(
        &format!("{run}/items"),
        &[("authorization", format!("Bearer {elsewhere}"))],
    );
    assert!(matches!(status, 401 | 403), "{status}");

    // A gateway whose config's jwt_audience is not one of the service's: the client gets Cloud
    // Run's refusal through it.
    let committed =
        std::fs::read_to_string(root().join("openapi/gateway/local-europe-west1.yaml")).unwrap();
    let wrong = committed.replace(
        "https://items-100000000001.europe-west1.run.app",
        "https://items-999999999999.europe-west1.run.app",
    );
    assert_ne!(wrong, committed);
    let file = layout.join("wrong-audience.yaml");
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::write(&file, wrong).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let mut config = GatewayConfig::new(&file, run.clone());
        config.gateway_service_account = account.into();
        config.log = LogSink::Off;
        config.workers = 1;
        let local = LocalGateway::start(config).await.unwrap();
        let url = format!("{}/items?page_size=1&key={key}", local.url());
        let answer = tokio::task::spawn_blocking(move || {
            let token = token.trim().to_owned();
            get(&url, &[("authorization", format!("Bearer {token}"))])
        })
        .await
        .unwrap();
        local.stop().await;
        answer
    });
    assert!(matches!(status, 401 | 403), "{status}: {body}");

    // A new version of the runtime user's password reaches the `latest` file of the running
    // revision (Secret Manager's addVersion on the control plane).
    let serving = serving_revision();
    let secret = "projects/items-local-0001/secrets/items-db-runtime-password";
    use base64::Engine as _;
    let (status, version) = post_json(
        &format!("{control}/v1/{secret}:addVersion"),
        &serde_json::json!({"payload": {"data": base64::engine::general_purpose::STANDARD.encode("rotated")}}),
    );
    assert_eq!(status, 200, "{version}");
    assert_eq!(version["name"], format!("{secret}/versions/2"));
    let file = cloud.dir.join(format!(
        "local/run/revisions/items-local-0001/europe-west1/items/{serving}/rootfs/secrets/db-password"
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "rotated");
    marks.mark("gateways, IAM, secret version checked");
    let _ = std::fs::remove_dir_all(&layout);
}
