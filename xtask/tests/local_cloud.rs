//! `cargo xtask cloud`, then `cargo xtask deploy --env local`, through the real command line: the
//! revisions run from their images behind Cloud Run's IAM check and the local gateways.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use items_local_gateway::{GatewayConfig, LOCAL_API_KEY, LocalGateway, LogSink, SigningKey};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("DEPLOY_API_KEY")
        .env_remove("DEPLOY_TOKEN")
        .output()
        .unwrap();
    eprintln!(
        "--- xtask {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The running `cargo xtask cloud` and every line it printed.
struct Cloud {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Cloud {
    fn start(binary: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["cloud", "--binary"])
            .arg(binary)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn wait_for(&self, what: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| what(l)) {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn value(&self, prefix: &str) -> String {
        let line = self
            .wait_for(|l| l.starts_with(prefix), Duration::from_secs(300))
            .unwrap_or_else(|| panic!("no line {prefix:?}"));
        line[prefix.len()..].trim().to_owned()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
    }
}

fn get(url: &str, headers: &[(&str, String)]) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut request = reqwest::Client::new().get(url);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

#[test]
fn deploy_to_the_local_cloud_and_call_it_through_its_gateways() {
    let binary = root().join("target/debug/items-service");
    if !binary.is_file() {
        eprintln!(
            "skipped: {} does not exist (cargo build -p items-service builds it)",
            binary.display()
        );
        return;
    }
    let cloud = Cloud::start(&binary);
    let gateway = cloud.value("gateway europe-west1:");
    let run = cloud.value("run europe-west1:");
    let key = cloud.value("api key:");
    assert_eq!(key, LOCAL_API_KEY);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("target/local-cloud/local.json")).unwrap(),
    )
    .unwrap();
    let registry = state["registry"].as_str().unwrap();
    let bootstrap = cloud
        .wait_for(|l| l.starts_with("items-00001-"), Duration::from_secs(5))
        .and_then(|l| l.split('|').next().map(str::to_owned))
        .unwrap();

    // v1: an image of the same binary with another revision label.
    let layout = std::env::temp_dir().join(format!("xtask-local-cloud-{}", std::process::id()));
    let pushed = xtask(&[
        "image",
        "--binary",
        binary.to_str().unwrap(),
        "--revision",
        "local-cloud-test",
        "--output",
        layout.to_str().unwrap(),
        "--push",
        &format!("{registry}/items-local-0001/items/items-service:v1"),
    ]);
    assert!(pushed.status.success());
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    let image = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pushed: "))
        .unwrap()
        .to_owned();
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
    let revision = format!("items-{}", &image.rsplit(':').next().unwrap()[..12]);
    let again = xtask(&deploy);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to do"));

    // Through the gateway with a key and a token: served by the new revision.
    let token = String::from_utf8(xtask(&["token", "--env", "local"]).stdout).unwrap();
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
    let _ = std::fs::remove_dir_all(&layout);
}
