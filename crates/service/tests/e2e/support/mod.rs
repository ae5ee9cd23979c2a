//! What the end-to-end tests share: the service launched as the tools launch it
//! ([`items_testkit::ServiceLaunch`]), either as the binary in a child process or built in this
//! process from the very settings the binary would read from those variables; an HTTP client;
//! the database; problem assertions.

pub mod logs;
pub mod proxy;
pub mod receiver;
mod routes;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use items_service::{Application, BuildOptions, Settings, SettingsSources};
use items_telemetry::PlatformIdentity;
use items_testkit::ServiceLaunch;
use serde_json::Value;

pub use routes::PANIC_LINE;

/// The project of the trace ids in log lines.
pub const PROJECT: &str = "test-project";
/// What the test client sends as `User-Agent` (log lines and error reports carry it).
pub const USER_AGENT: &str = "items-e2e-test";

/// The service binary, with no settings chosen yet.
pub fn launch_binary() -> ServiceLaunch {
    ServiceLaunch::new(env!("CARGO_BIN_EXE_items-service"))
}

/// The service on `db_url` with local settings: what every server of these tests starts from.
pub fn launch(db_url: &str) -> ServiceLaunch {
    launch_binary().environment("local").database_url(db_url)
}

/// The settings the binary would load with `launch`'s variables as its whole environment.
pub fn load_settings(launch: &ServiceLaunch) -> Settings {
    let vars = launch.vars();
    Settings::load(&SettingsSources {
        environment: vars.get("APP_ENVIRONMENT").cloned(),
        port: vars.get("PORT").cloned(),
        vars: Some(vars),
        ..SettingsSources::default()
    })
    .expect("settings load")
}

/// Settings for an app in this process on a fresh database: any free port on loopback, two
/// workers, and whatever `choose` adds to the launch.
pub async fn fresh_settings(choose: impl FnOnce(ServiceLaunch) -> ServiceLaunch) -> Settings {
    let db_url = items_testkit::fresh_database()
        .await
        .expect("fresh database");
    let in_process = launch(&db_url)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .workers(2);
    load_settings(&choose(in_process))
}

/// Builds the app in this process and serves it in the background; returns its base URL.
pub async fn serve(
    settings: &Settings,
    identity: &PlatformIdentity,
    options: BuildOptions,
) -> String {
    let app = Application::build_with(settings, identity, options)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run());
    address
}

/// The binary as a child process on a free port (Cloud Run's `PORT`), its stderr ours, killed on
/// drop; returned once `/health/ready` answers `client` with 200, with its base URL.
pub async fn spawn_binary(
    launch: ServiceLaunch,
    stdout: Stdio,
    client: &reqwest::Client,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = launch
        .clean_env()
        .cloud_run_port(port)
        .command()
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// Asserts that `child`, sent SIGTERM at `signalled`, exits 0 within Cloud Run's 10 s window.
pub async fn assert_graceful_exit(child: &mut tokio::process::Child, signalled: Instant) {
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within Cloud Run's 10 s window")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

/// An HTTP client that follows no redirects and gives up after 15 s.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("client")
}

/// GET `url` within trace `trace`, as a call from span `parent` (a sampled W3C `traceparent`).
pub async fn get_in_trace(url: &str, trace: &str, parent: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .send()
        .await
        .unwrap()
}

/// [`client`]'s settings, to add to.
pub fn client_builder() -> reqwest::ClientBuilder {
    // reqwest is built without a rustls provider of its own (see items-telemetry).
    items_telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
}

/// A running server on a fresh database.
pub struct TestApp {
    pub address: String,
    pub db_url: String,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = fresh_settings(|launch| launch).await;
    let db_url =
        secrecy::ExposeSecret::expose_secret(settings.database.url.as_ref().unwrap()).to_owned();
    customise(&mut settings);
    // Migrations always run against the real database, even when the app goes through a proxy.
    items_repository::migrate(
        &items_repository::Connector::new(&items_repository::DatabaseSettings::from_url(&db_url))
            .unwrap(),
    )
    .await
    .expect("migrations");
    TestApp {
        address: serve(
            &settings,
            &PlatformIdentity::default(),
            BuildOptions::default(),
        )
        .await,
        db_url,
        client: client(),
    }
}

/// Settings for a server whose telemetry a test inspects: a fresh database, trace ids in
/// [`PROJECT`].
pub async fn traced_settings(customise: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = fresh_settings(|launch| launch.project_id(PROJECT)).await;
    customise(&mut settings);
    settings
}

/// The platform the traced server reports, as Cloud Run would give it.
pub fn platform() -> PlatformIdentity {
    PlatformIdentity {
        project_id: Some(PROJECT.to_owned()),
        region: Some("europe-west1".to_owned()),
        service: Some("items".to_owned()),
        revision: Some("items-00042-abc".to_owned()),
        instance: Some("instance-7".to_owned()),
    }
}

/// Starts the traced server with the test-only routes (`/test/fail`, `/test/panic`); returns its
/// base URL.
pub async fn spawn_traced(settings: &Settings, platform: PlatformIdentity) -> String {
    let options = BuildOptions {
        extra_routes: Some(routes::test_routes),
    };
    serve(settings, &platform, options).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/items"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GETs `path` and decodes the JSON body (any status).
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Creates an item and returns its JSON.
    pub async fn create(&self, name: &str) -> Value {
        create_at(&self.client, &self.address, name).await
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.db()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }
}

/// Creates an item named `name` on the service at `base` and returns its JSON.
pub async fn create_at(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let response = client
        .post(format!("{base}/items"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Waits (up to 20 s) until a backend of `db_url`'s database waits for a lock while running an
/// `UPDATE items`: a PATCH is then blocked on a row lock inside its handler, holding a pooled
/// connection. No fixed sleep knows when a loaded machine got the request that far.
pub async fn until_an_update_waits_for_a_lock(db_url: &str) {
    let admin = connect(db_url).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'UPDATE items%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no UPDATE waited for the row lock within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts an RFC 9457 body with the given status and returns it.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "problem lacks {member}: {body}");
    }
    body
}

/// The names listed in `invalid_params`.
pub fn invalid_names(problem: &Value) -> Vec<String> {
    problem["invalid_params"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
