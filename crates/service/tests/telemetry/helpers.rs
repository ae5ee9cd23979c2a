use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use items_http::ApiError;
use items_service::{Application, BuildOptions, Settings, SettingsSources};
use items_telemetry::{LogFormat, LogSettings, PlatformIdentity};
use serde_json::Value;

pub const PROJECT: &str = "test-project";

/// Settings for a test server on a fresh database.
pub async fn settings(customise: impl FnOnce(&mut Settings)) -> Settings {
    let db_url = items_testkit::fresh_database()
        .await
        .expect("fresh database");
    let mut settings = Settings::load(&SettingsSources::default()).expect("default settings");
    settings.server.port = 0;
    settings.server.workers = Some(2);
    settings.database = items_repository::DatabaseSettings {
        pool: settings.database.pool.clone(),
        ..items_repository::DatabaseSettings::from_url(&db_url)
    };
    settings.telemetry.project_id = Some(PROJECT.to_owned());
    customise(&mut settings);
    settings
}

pub fn platform() -> PlatformIdentity {
    PlatformIdentity {
        project_id: Some(PROJECT.to_owned()),
        region: Some("europe-west1".to_owned()),
        service: Some("items".to_owned()),
        revision: Some("items-00042-abc".to_owned()),
        instance: Some("instance-7".to_owned()),
    }
}

/// Starts the real server with the test-only routes; returns its base URL.
pub async fn spawn(settings: &Settings, platform: PlatformIdentity) -> String {
    let app = Application::build_with(
        settings,
        &platform,
        BuildOptions {
            extra_routes: Some(test_routes),
        },
    )
    .await
    .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run());
    address
}

/// Handlers that fail on purpose; registered by tests only, never by the service.
fn test_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/test/fail", web::get().to(fail))
        .route("/test/panic", web::get().to(boom));
}

async fn fail() -> Result<HttpResponse, ApiError> {
    let cause = std::io::Error::other("disk on fire");
    Err(ApiError::Internal(Box::new(std::io::Error::other(
        format!("loading the widget: {cause}"),
    ))))
}

pub const PANIC_LINE: u32 = line!() + 3;
#[allow(clippy::unused_async)]
async fn boom() -> HttpResponse {
    panic!("boom: the handler gave up")
}

pub fn client() -> reqwest::Client {
    items_telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent("items-telemetry-test")
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Everything the process logged (JSON), captured once per test process.
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

#[derive(Clone, Copy)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap().extend_from_slice(buf);
        // Shown by the test runner when a test fails.
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the JSON log subscriber writing into memory (once per process).
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let log = LogSettings {
            format: LogFormat::Json,
            level: "info,refinery_core=warn".to_owned(),
            access_log: true,
            health_probe_sample_ratio: 0.0,
        };
        let identity = PlatformIdentity {
            project_id: Some(PROJECT.to_owned()),
            ..PlatformIdentity::default()
        };
        // The service's own path: lines reach `Capture` through the batching writer thread.
        let guard =
            items_telemetry::init_batched(&log, &identity, &items_service::service_info(), Capture)
                .unwrap();
        std::mem::forget(guard); // logs for the whole test process
    });
}

/// The captured lines of one trace, waiting up to 5 s for at least `at_least` of them.
pub async fn lines_of_trace(trace_id: &str, at_least: usize) -> Vec<Value> {
    let trace = format!("projects/{PROJECT}/traces/{trace_id}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8(CAPTURED.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| v["logging.googleapis.com/trace"] == trace.as_str())
            .collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every captured line.
pub fn all_lines() -> Vec<Value> {
    let text = String::from_utf8(CAPTURED.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
