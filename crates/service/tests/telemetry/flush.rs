//! SIGTERM after traffic: the binary flushes every buffered span, metric and log line before it
//! exits.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::io::AsyncReadExt as _;

use crate::helpers::client;
use crate::receiver::{Receiver, hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_span() {
    let receiver = Receiver::start().await;
    let db_url = items_testkit::fresh_database().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_items-service"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENVIRONMENT", "local")
        .env("APP__DATABASE__URL", &db_url)
        .env("PORT", port.to_string())
        .env("APP__LOG__FORMAT", "json")
        .env("APP__LOG__LEVEL", "info,refinery_core=warn")
        .env("APP__TELEMETRY__PROJECT_ID", "flush-test")
        .env("APP__TELEMETRY__EXPORTER", "otlp")
        .env("APP__TELEMETRY__OTLP_ENDPOINT", &receiver.endpoint)
        // Nothing leaves before shutdown unless the flush sends it.
        .env("APP__TELEMETRY__BATCH_DELAY_MS", "600000")
        .env("APP__TELEMETRY__METRICS_INTERVAL_SECS", "3600")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(client.get(format!("{base}/health/ready")).send().await, Ok(r) if r.status() == 200)
    {
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let traces: Vec<String> = (0..40)
        .map(|n| format!("{:032x}", 0xf1u128 << 100 | n))
        .collect();
    for (n, trace) in traces.iter().enumerate() {
        let response = client
            .post(format!("{base}/items"))
            .header("traceparent", format!("00-{trace}-00000000000000aa-01"))
            .json(&serde_json::json!({ "name": format!("flushed {n}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let server_spans = |r: &Receiver| {
        r.spans()
            .iter()
            .filter(|(_, s)| s.kind == SpanKind::Server as i32)
            .filter(|(_, s)| traces.contains(&hex(&s.trace_id)))
            .count()
    };
    assert_eq!(server_spans(&receiver), 0, "spans wait for the batch delay");

    let signalled = Instant::now();
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within Cloud Run's 10 s window")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    // Every request's server span, and its database spans, arrived before the exit.
    assert_eq!(server_spans(&receiver), traces.len());
    let db_spans = receiver
        .spans()
        .iter()
        .filter(|(_, s)| s.name == "INSERT items" && traces.contains(&hex(&s.trace_id)))
        .count();
    assert_eq!(db_spans, traces.len());
    assert!(
        receiver
            .metrics()
            .iter()
            .any(|(_, m)| m.name == "http.server.request.duration"),
        "metrics are flushed too"
    );
    // Log lines leave in batches from a writer thread: the exit writes out the last ones.
    let logs = logs.await.unwrap().unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for trace in &traces {
        let trace = format!("projects/flush-test/traces/{trace}");
        let access = lines
            .iter()
            .filter(|l| l["logging.googleapis.com/trace"] == trace.as_str())
            .filter(|l| l["httpRequest"]["status"] == 201)
            .count();
        assert_eq!(access, 1, "one access-log line for {trace}");
    }
    assert_eq!(
        lines.last().map(|l| l["message"].clone()),
        Some("stopped".into()),
        "the last line logged before exit is written: {logs}"
    );
}
