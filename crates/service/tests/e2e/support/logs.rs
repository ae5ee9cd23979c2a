//! The log lines of the servers of this test process, captured as the service writes them.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use items_telemetry::{LogFormat, LogSettings, PlatformIdentity};
use serde_json::Value;

use super::PROJECT;

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
