//! The log lines of a real server, as Cloud Logging reads them.

use serde_json::Value;

use crate::support::logs::{all_lines, capture_logs, lines_of_trace};
use crate::support::{
    PANIC_LINE, PROJECT, USER_AGENT, client, create_at, get_in_trace, platform, spawn_traced,
    traced_settings,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The fields every line has.
fn assert_common(line: &Value) {
    assert!(
        ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&line["severity"].as_str().unwrap()),
        "{line}"
    );
    assert!(line["message"].is_string(), "{line}");
    let time = line["time"].as_str().unwrap();
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("time {time:?}: {e}"));
    let location = &line["logging.googleapis.com/sourceLocation"];
    assert!(
        location["file"].as_str().unwrap().ends_with(".rs"),
        "{line}"
    );
    assert!(
        location["line"].as_str().unwrap().parse::<u32>().unwrap() > 0,
        "{line}"
    );
    assert!(location["function"].is_string(), "{line}");
}

/// The access-log entry among a trace's lines.
fn access_entry(lines: &[Value]) -> &Value {
    let entries: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("httpRequest").is_some())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one access-log entry per request: {lines:#?}"
    );
    entries[0]
}

fn assert_access(entry: &Value, method: &str, path: &str, status: u16) {
    assert_common(entry);
    assert_eq!(entry["severity"], "INFO");
    let r = &entry["httpRequest"];
    assert_eq!(r["requestMethod"], method, "{entry}");
    let url = r["requestUrl"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with(path),
        "{url}"
    );
    assert_eq!(r["status"], status);
    assert!(
        r["responseSize"].as_str().unwrap().parse::<u64>().is_ok(),
        "{entry}"
    );
    assert_eq!(r["userAgent"], USER_AGENT);
    assert_eq!(r["remoteIp"], "127.0.0.1");
    assert_eq!(r["protocol"], "HTTP/1.1");
    let latency = r["latency"].as_str().unwrap();
    let digits = latency
        .strip_suffix('s')
        .and_then(|l| l.split_once('.'))
        .map(|(s, f)| {
            (
                s.parse::<u64>().is_ok(),
                f.len(),
                f.bytes().all(|b| b.is_ascii_digit()),
            )
        });
    assert!(
        matches!(digits, Some((true, 3 | 6 | 9, true))),
        "latency {latency:?}"
    );
    assert!(
        entry.get("@type").is_none(),
        "an access log is no error report"
    );
}

fn assert_trace(line: &Value, trace: &str, sampled: bool) -> String {
    assert_eq!(
        line["logging.googleapis.com/trace"],
        format!("projects/{PROJECT}/traces/{trace}")
    );
    assert_eq!(
        line["logging.googleapis.com/trace_sampled"], sampled,
        "{line}"
    );
    let span = line["logging.googleapis.com/spanId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(is_hex(&span, 16), "spanId {span:?}");
    span
}

async fn item_url(base: &str) -> String {
    let created = create_at(&client(), base, "traced").await;
    format!("/items/{}", created["id"])
}

#[tokio::test]
async fn traceparent_is_followed_and_wins_over_cloud_trace_context() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    let path = item_url(&base).await;
    let response = client()
        .get(format!("{base}{path}"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines = lines_of_trace(TRACE, 1).await;
    let entry = access_entry(&lines);
    assert_access(entry, "GET", &path, 200);
    let span = assert_trace(entry, TRACE, true);
    assert_ne!(span, PARENT, "the server span is a child of the caller's");
    assert!(
        lines_of_trace("105445aa7843bc8bf206b12000100000", 0)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn cloud_trace_context_is_the_fallback() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    let trace = "105445aa7843bc8bf206b12000100001";
    let response = client()
        .get(format!("{base}/items/424242"))
        .header("x-cloud-trace-context", format!("{trace}/123456789;o=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["trace_id"], trace, "{problem}");
    let lines = lines_of_trace(trace, 1).await;
    let entry = access_entry(&lines);
    assert_access(entry, "GET", "/items/424242", 404);
    let span = assert_trace(entry, trace, true);
    assert_ne!(span, format!("{:016x}", 123_456_789));

    // Not sampled upstream: still grouped under the trace, flagged as not sampled.
    let trace = "105445aa7843bc8bf206b12000100002";
    client()
        .get(format!("{base}/items/424242"))
        .header("x-cloud-trace-context", format!("{trace}/7;o=0"))
        .send()
        .await
        .unwrap();
    let lines = lines_of_trace(trace, 1).await;
    assert_trace(access_entry(&lines), trace, false);
}

#[tokio::test]
async fn without_trace_headers_a_fresh_trace_starts() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    let response = client()
        .get(format!("{base}/items/424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let problem: Value = response.json().await.unwrap();
    let trace = problem["trace_id"].as_str().unwrap().to_owned();
    assert!(is_hex(&trace, 32), "{problem}");
    let lines = lines_of_trace(&trace, 1).await;
    let entry = access_entry(&lines);
    assert_access(entry, "GET", "/items/424242", 404);
    assert_trace(entry, &trace, true);
}

#[tokio::test]
async fn malformed_trace_headers_are_ignored() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    for (traceparent, cloud) in [
        ("garbage", "junk"),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "nothex/1;o=1",
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "105445aa7843bc8bf206b12000100000/x",
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "/;o=1",
        ),
    ] {
        let response = client()
            .get(format!("{base}/items/424242"))
            .header("traceparent", traceparent)
            .header("x-cloud-trace-context", cloud)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{traceparent} / {cloud}");
        let problem: Value = response.json().await.unwrap();
        let trace = problem["trace_id"].as_str().unwrap().to_owned();
        assert!(is_hex(&trace, 32), "{problem}");
        assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(trace, "105445aa7843bc8bf206b12000100000");
        let lines = lines_of_trace(&trace, 1).await;
        let entry = access_entry(&lines);
        assert_access(entry, "GET", "/items/424242", 404);
        assert_trace(entry, &trace, true);
    }
    // A malformed traceparent falls back to a valid X-Cloud-Trace-Context.
    let trace = "105445aa7843bc8bf206b12000100003";
    client()
        .get(format!("{base}/health/live"))
        .header("traceparent", "00-nope")
        .header("x-cloud-trace-context", format!("{trace}/1;o=1"))
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{base}/items/1"))
        .header("traceparent", "00-nope")
        .header("x-cloud-trace-context", format!("{trace}/1;o=1"))
        .send()
        .await
        .unwrap();
    let lines = lines_of_trace(trace, 1).await;
    // Health probes are silenced (health_probe_sample_ratio = 0): only /items/1 is logged.
    assert_access(access_entry(&lines), "GET", "/items/1", 404);
}

/// The Error Reporting shape shared by 5xx and panics.
fn assert_error_report(line: &Value, trace: &str, path: &str) {
    assert_common(line);
    assert_eq!(line["severity"], "ERROR");
    assert_eq!(
        line["@type"],
        "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
    );
    assert_eq!(line["serviceContext"]["service"], "items-service");
    assert_eq!(line["serviceContext"]["version"], env!("CARGO_PKG_VERSION"));
    let location = &line["context"]["reportLocation"];
    assert!(
        location["filePath"].as_str().unwrap().ends_with(".rs"),
        "{line}"
    );
    assert!(location["lineNumber"].as_u64().unwrap() > 0, "{line}");
    assert!(location["functionName"].is_string(), "{line}");
    let request = &line["context"]["httpRequest"];
    assert_eq!(request["method"], "GET");
    assert!(request["url"].as_str().unwrap().ends_with(path), "{line}");
    assert_eq!(request["userAgent"], USER_AGENT);
    assert_eq!(request["remoteIp"], "127.0.0.1");
    assert_eq!(request["responseStatusCode"], 500);
    assert_trace(line, trace, true);
    assert!(line.get("httpRequest").is_none(), "{line}");
}

async fn assert_generic_500(response: reqwest::Response, trace: &str) {
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/internal-error");
    assert_eq!(problem["detail"], "an unexpected error occurred");
    assert_eq!(problem["trace_id"], trace);
    assert!(!problem.to_string().contains("fire") && !problem.to_string().contains("boom"));
}

#[tokio::test]
async fn a_5xx_is_an_error_report_with_its_cause() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    let trace = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a01";
    let response = get_in_trace(&format!("{base}/test/fail"), trace, PARENT).await;
    assert_generic_500(response, trace).await;
    let lines = lines_of_trace(trace, 2).await;
    let reports: Vec<&Value> = lines.iter().filter(|l| l["severity"] == "ERROR").collect();
    assert_eq!(reports.len(), 1, "one error report per 5xx: {lines:#?}");
    let report = reports[0];
    assert_error_report(report, trace, "/test/fail");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains("GET /test/fail")
            && message.contains("500")
            && message.contains("loading the widget: disk on fire"),
        "{message}"
    );
    assert_eq!(
        report["context"]["reportLocation"]["functionName"],
        "GET /test/fail"
    );
    assert_access(access_entry(&lines), "GET", "/test/fail", 500);
}

#[tokio::test]
async fn a_panic_is_an_error_report_and_the_server_keeps_serving() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    // More panics than workers: every worker survives its panic.
    for n in 0..4 {
        let trace = format!("6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b{n:02}");
        let response = get_in_trace(&format!("{base}/test/panic"), &trace, PARENT).await;
        assert_generic_500(response, &trace).await;
        let lines = lines_of_trace(&trace, 2).await;
        let reports: Vec<&Value> = lines.iter().filter(|l| l["severity"] == "ERROR").collect();
        assert_eq!(reports.len(), 1, "one error report per panic: {lines:#?}");
        let report = reports[0];
        assert_error_report(report, &trace, "/test/panic");
        let location = &report["context"]["reportLocation"];
        assert!(
            location["filePath"]
                .as_str()
                .unwrap()
                .ends_with("tests/e2e/support/routes.rs"),
            "{report}"
        );
        assert_eq!(location["lineNumber"], PANIC_LINE, "{report}");
        assert!(
            location["functionName"].as_str().unwrap().contains("boom"),
            "{report}"
        );
        assert!(
            report["message"]
                .as_str()
                .unwrap()
                .contains("boom: the handler gave up"),
            "{report}"
        );
        assert_access(access_entry(&lines), "GET", "/test/panic", 500);
    }
    let response = client()
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let path = item_url(&base).await;
    let response = client().get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Nothing went to the default panic hook's stderr format: every line is JSON.
    assert!(all_lines().iter().all(|l| l["severity"].is_string()));
}

#[tokio::test]
async fn a_503_for_an_unreachable_database_is_a_warning_not_an_error_report() {
    capture_logs();
    // A port nobody listens on: every checkout fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = traced_settings(|s| {
        let url = secrecy::ExposeSecret::expose_secret(s.database.url.as_ref().unwrap()).to_owned();
        s.database.url = Some(items_testkit::with_host_port(&url, "127.0.0.1", closed).into());
        s.database.migrate_on_start = false;
        s.database.pool.wait_timeout_ms = 300;
        s.database.pool.create_timeout_ms = 300;
    })
    .await;
    let base = spawn_traced(&settings, platform()).await;
    let trace = "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c01";
    let response = get_in_trace(&format!("{base}/items/1"), trace, PARENT).await;
    assert_eq!(response.status(), 503);
    let lines = lines_of_trace(trace, 2).await;
    assert_access(access_entry(&lines), "GET", "/items/1", 503);
    assert!(
        lines.iter().all(|l| l["severity"] != "ERROR"),
        "a 503 is no ERROR: {lines:#?}"
    );
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["severity"] == "WARNING")
        .collect();
    assert_eq!(warnings.len(), 1, "one WARNING per 503: {lines:#?}");
    let warning = warnings[0];
    assert_common(warning);
    assert!(warning.get("@type").is_none(), "{warning}");
    assert!(warning.get("context").is_none(), "{warning}");
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("GET /items/{id}") && message.contains("503"),
        "{message}"
    );
    // The cause is included: the database could not be reached.
    assert!(message.contains("connect"), "{message}");
}

/// Credentials as API Gateway forwards them: API keys in `?key=`, `?api_key=` and `x-api-key`, a
/// JWT in `?access_token=` and `Authorization` (gateway-facts.md §2: the key stays in the
/// forwarded request). None of them may reach a log line, Error Reporting events included.
#[tokio::test]
async fn keys_and_tokens_reach_no_log_line() {
    capture_logs();
    let base = spawn_traced(&traced_settings(|_| {}).await, platform()).await;
    let query_key = "AIzaQueryKey7f3a9c1d";
    let query_api_key = "AIzaApiKeyParam2b8e";
    let query_token = "eyJhbGciOiJSUzI1NiJ9.cXVlcnktdG9rZW4.c2lnbmF0dXJl";
    let header_key = "AIzaHeaderKey5e6f";
    let header_token = "eyJhbGciOiJSUzI1NiJ9.aGVhZGVyLXRva2Vu.c2lnbmF0dXJl";
    let query =
        format!("?key={query_key}&page_size=5&api_key={query_api_key}&access_token={query_token}");
    // An access-log entry for a 200 and a 404, and Error Reporting events for a 5xx and a panic.
    for (n, (path, status, lines)) in [
        ("/items", 200, 1),
        ("/items/999999", 404, 1),
        ("/test/fail", 500, 2),
        ("/test/panic", 500, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let trace = format!("7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c{n:02}");
        let response = client()
            .get(format!("{base}{path}{query}"))
            .header("traceparent", format!("00-{trace}-{PARENT}-01"))
            .header("x-api-key", header_key)
            .header("authorization", format!("Bearer {header_token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        let lines = lines_of_trace(&trace, lines).await;
        let url = access_entry(&lines)["httpRequest"]["requestUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            url.ends_with(&format!(
                "{path}?key=REDACTED&page_size=5&api_key=REDACTED&access_token=REDACTED"
            )),
            "{url}"
        );
        if status == 500 {
            let report = lines.iter().find(|l| l["severity"] == "ERROR").unwrap();
            let url = report["context"]["httpRequest"]["url"].as_str().unwrap();
            assert!(url.contains("?key=REDACTED&"), "{report}");
        }
    }
    let text: String = all_lines().iter().map(|l| format!("{l}\n")).collect();
    for secret in [
        query_key,
        query_api_key,
        query_token,
        header_key,
        header_token,
    ] {
        assert!(!text.contains(secret), "{secret} was logged:\n{text}");
    }
}
