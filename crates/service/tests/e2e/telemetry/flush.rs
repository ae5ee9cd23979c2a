//! SIGTERM after traffic: the binary flushes every buffered span, metric and log line before it
//! exits.

use std::process::Stdio;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::io::AsyncReadExt as _;

use crate::support::receiver::{Receiver, hex};
use crate::support::{assert_graceful_exit, client, launch, spawn_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_span() {
    let receiver = Receiver::start().await;
    let db_url = items_testkit::fresh_database().await.unwrap();
    let launch = launch(&db_url)
        .log_format("json")
        .log_level("info,refinery_core=warn")
        .project_id("flush-test")
        .otlp(&receiver.endpoint)
        // Nothing leaves before shutdown unless the flush sends it.
        .batch_delay_ms(600_000)
        .metrics_interval_secs(3600);
    let client = client();
    let (mut child, base) = spawn_binary(launch, Stdio::piped(), &client).await;
    let mut stdout = child.stdout.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
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
    assert_graceful_exit(&mut child, signalled).await;
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
