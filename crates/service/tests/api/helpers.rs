use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use items_service::{Application, PlatformIdentity, Settings, SettingsSources};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running server on a fresh database.
pub struct TestApp {
    pub address: String,
    pub db_url: String,
    pub client: reqwest::Client,
}

/// Settings for a test: local defaults, port 0, the given database.
pub fn test_settings(db_url: &str) -> Settings {
    let mut settings = Settings::load(&SettingsSources::default()).expect("default settings load");
    settings.server.port = 0;
    settings.server.workers = Some(2);
    settings.database = items_repository::DatabaseSettings {
        pool: settings.database.pool.clone(),
        ..items_repository::DatabaseSettings::from_url(db_url)
    };
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let db_url = items_testkit::fresh_database()
        .await
        .expect("fresh database");
    let mut settings = test_settings(&db_url);
    customise(&mut settings);
    // Migrations always run against the real database, even when the app goes through a proxy.
    items_repository::migrate(&items_repository::DatabaseSettings::from_url(&db_url))
        .await
        .expect("migrations");
    let app = Application::build(&settings, &PlatformIdentity::default())
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run());
    TestApp {
        address,
        db_url,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client"),
    }
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
        let response = self.post_json(&serde_json::json!({ "name": name })).await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("json")
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

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
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

/// A TCP proxy in front of PostgreSQL that a test can cut (refuse and drop every connection) and
/// restore, to play "database down".
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let cut_tx = cut.clone();
        let up_flag = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up_flag.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Host and port of the test PostgreSQL server behind `url`.
pub fn server_addr(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url.parse().expect("url");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("the proxy tests need a TCP database URL"),
    };
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!(
        "{host}:{}",
        config.get_ports().first().copied().unwrap_or(5432)
    )
    .parse()
    .expect("socket address")
}
