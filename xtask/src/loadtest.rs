//! `cargo xtask loadtest URL`: GET one item, GET a page and POST at the same time against any base
//! URL (the local gateway, the service, a real gateway), with the API key (`x-api-key`) and the
//! bearer token on every request; requests/s, p50/p95/p99 and the error ratio per endpoint, as a
//! table and as JSON; non-zero exit when an SLO is missed.
//!
//! The load is `wrk` (as in `cargo xtask bench`, whose runner and report callback it reuses): one
//! wrk process per endpoint, all three at once, the connections shared between them. Before the
//! load, one `POST /items` creates the item that `GET /items/{id}` reads. `cargo xtask deploy
//! --slo-p95-ms` runs the same load through each region's gateway
//! (xtask/release/src/deploy/slo.rs).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::bench::report::summary_json;
use crate::bench::wrk::{self, Summary};
use crate::bench::{TempDir, parse_duration, write_json};

/// The Lua script: one fixed request (METHOD PATH [BODY] from the script arguments).
const SCRIPT: &str = include_str!("../bench/fixed_request.lua");
const POST_BODY: &str =
    r#"{"name": "loadtest item", "description": "created by cargo xtask loadtest"}"#;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Base URL: the local gateway (http://127.0.0.1:8080), the service, or a gateway's https URL.
    url: String,
    /// API key, sent as the `x-api-key` header.
    #[arg(long, env = "LOADTEST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Bearer token, sent as `Authorization: Bearer <token>` (e.g. `$(cargo xtask token)`).
    #[arg(long, env = "LOADTEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connections held open, shared by the three endpoints (half to GET one, a quarter each to
    /// GET a page and POST).
    #[arg(long, default_value_t = 200)]
    connections: u32,
    /// How long the three endpoints are driven (at the same time), e.g. 30s, 1m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Fail (exit 1) when an endpoint's p95 latency is above this many milliseconds.
    #[arg(long, value_name = "MS")]
    slo_p95_ms: Option<f64>,
    /// Fail (exit 1) when an endpoint's error ratio (statuses ≥ 400, socket errors and timeouts
    /// over all attempts) is above this, e.g. 0.01.
    #[arg(long, value_name = "RATIO")]
    slo_error_ratio: Option<f64>,
    /// Where to write the JSON report (default: target/loadtest.json).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Where the load goes and with which credentials.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub api_key: Option<String>,
    pub token: Option<String>,
}

/// How much load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
    /// POST /items as well. Without writes the connections go to the two reads, and the item to
    /// GET is the first one listed (created only when the list is empty).
    pub writes: bool,
}

/// Service level objectives, each checked per endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slo {
    pub p95_ms: Option<f64>,
    pub error_ratio: Option<f64>,
}

/// What one endpoint got.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: String,
    pub connections: u32,
    pub(crate) summary: Summary,
}

impl Measured {
    /// Failed attempts (statuses ≥ 400, connect/read/write errors, timeouts) over all attempts.
    pub fn error_ratio(&self) -> f64 {
        let e = &self.summary.errors;
        let attempts = self.summary.requests + e.connect + e.read + e.write + e.timeout;
        if attempts == 0 {
            1.0
        } else {
            e.total() as f64 / attempts as f64
        }
    }

    /// Requests per second over the run.
    pub fn requests_per_second(&self) -> f64 {
        self.summary.requests_per_second()
    }

    /// The 95th percentile latency, in milliseconds.
    pub fn p95_ms(&self) -> f64 {
        self.summary.p95_us / 1000.0
    }
}

/// The result of one load test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub url: String,
    pub duration: Duration,
    pub endpoints: Vec<Measured>,
}

impl Slo {
    pub(crate) fn is_set(&self) -> bool {
        self.p95_ms.is_some() || self.error_ratio.is_some()
    }

    /// One line per endpoint and objective missed; empty when every objective holds.
    pub fn misses(&self, outcome: &Outcome) -> Vec<String> {
        let mut misses = Vec::new();
        for m in &outcome.endpoints {
            if let Some(limit) = self.p95_ms
                && exceeds(m.p95_ms(), limit)
            {
                misses.push(format!(
                    "{}: p95 {:.2} ms above the SLO of {limit} ms",
                    m.name,
                    m.p95_ms()
                ));
            }
            if let Some(limit) = self.error_ratio
                && exceeds(m.error_ratio(), limit)
            {
                misses.push(format!(
                    "{}: error ratio {:.4} above the SLO of {limit} ({} of {} requests)",
                    m.name,
                    m.error_ratio(),
                    m.summary.errors.total(),
                    m.summary.requests
                ));
            }
        }
        misses
    }
}

/// `value` above `limit`, or NaN (nothing measured).
fn exceeds(value: f64, limit: f64) -> bool {
    !matches!(
        value.partial_cmp(&limit),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = Target {
        url: args.url.clone(),
        api_key: args.api_key.clone(),
        token: args.token.clone(),
    };
    let load = Load {
        connections: args.connections,
        duration: args.duration,
        writes: true,
    };
    let slo = Slo {
        p95_ms: args.slo_p95_ms,
        error_ratio: args.slo_error_ratio,
    };
    let outcome = drive(&target, load).await?;
    println!("{}", outcome.table());
    write_json(args.json.as_deref(), "loadtest.json", &outcome.json(&slo))?;
    let misses = slo.misses(&outcome);
    if misses.is_empty() {
        if slo.is_set() {
            println!("SLO met.");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for miss in &misses {
            eprintln!("SLO missed: {miss}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Creates one item (or, without writes, finds one), then drives the endpoints at once for
/// `load.duration`.
pub async fn drive(target: &Target, load: Load) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        load.connections >= 3,
        "--connections must be at least 3 (one per endpoint)"
    );
    let (origin, prefix) = origin_and_prefix(&target.url)?;
    let wrk_bin = wrk::find_or_install().await?;
    let id = item_to_get(target, load.writes).await?;
    let plan = endpoints(load, &prefix, id);

    let work = TempDir::create()?;
    let script = wrk::write_script(work.path(), "fixed_request.lua", SCRIPT)?;
    let headers = headers(target);
    // One wrk per endpoint, all at once (wrk does the work in its own processes).
    let runs: Vec<_> = plan
        .iter()
        .map(|endpoint| {
            let wrk_load = wrk::Load {
                threads: 1,
                connections: endpoint.connections,
                duration: load.duration,
            };
            let (wrk_bin, script, origin, headers, script_args) = (
                wrk_bin.clone(),
                script.clone(),
                origin.clone(),
                headers.clone(),
                endpoint.script_args.clone(),
            );
            tokio::spawn(async move {
                wrk::run_with_headers(
                    &wrk_bin,
                    &script,
                    &origin,
                    &wrk_load,
                    &script_args,
                    &headers,
                )
                .await
            })
        })
        .collect();
    let summaries = wait_with_progress(runs, target, load).await?;
    drop(work);
    let mut endpoints = Vec::new();
    for (endpoint, summary) in plan.into_iter().zip(summaries) {
        let name = endpoint.name;
        endpoints.push(Measured {
            name: name.to_owned(),
            connections: endpoint.connections,
            summary: summary.with_context(|| format!("loading {name}"))?,
        });
    }
    Ok(Outcome {
        url: target.url.clone(),
        duration: load.duration,
        endpoints,
    })
}

/// wrk takes scheme://host:port; the scripts send the base URL's path prefix themselves.
fn origin_and_prefix(base: &str) -> anyhow::Result<(String, String)> {
    let url = reqwest::Url::parse(base).with_context(|| format!("{base:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some(),
        "{base:?}: give an http:// or https:// base URL"
    );
    let origin = url.origin().ascii_serialization();
    let prefix = url.path().trim_end_matches('/').to_owned();
    Ok((origin, prefix))
}

/// One endpoint under load: its name in the report, its share of the connections and the
/// arguments of the fixed-request script (METHOD PATH [BODY]).
#[derive(Debug)]
struct Endpoint {
    name: &'static str,
    connections: u32,
    script_args: Vec<String>,
}

/// Half the connections GET one item; the rest GET a page, shared with POST under writes.
fn endpoints(load: Load, prefix: &str, id: i64) -> Vec<Endpoint> {
    let get_one = load.connections.div_ceil(2);
    let (page, post) = if load.writes {
        let page = (load.connections - get_one) / 2;
        (page, load.connections - get_one - page)
    } else {
        (load.connections - get_one, 0)
    };
    let mut plan = vec![
        Endpoint {
            name: "GET /items/{id}",
            connections: get_one,
            script_args: vec!["GET".to_owned(), format!("{prefix}/items/{id}")],
        },
        Endpoint {
            name: "GET /items?page_size=50",
            connections: page,
            script_args: vec!["GET".to_owned(), format!("{prefix}/items?page_size=50")],
        },
    ];
    if load.writes {
        plan.push(Endpoint {
            name: "POST /items",
            connections: post,
            script_args: vec![
                "POST".to_owned(),
                format!("{prefix}/items"),
                POST_BODY.to_owned(),
            ],
        });
    }
    plan
}

/// Waits for every wrk run while the progress line counts the seconds.
async fn wait_with_progress<T>(
    runs: Vec<tokio::task::JoinHandle<T>>,
    target: &Target,
    load: Load,
) -> anyhow::Result<Vec<T>> {
    let progress = progress(target, load);
    let started = Instant::now();
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            progress.set_position(started.elapsed().as_secs().min(load.duration.as_secs()));
        }
    };
    let wait = async {
        let mut summaries = Vec::new();
        for run in runs {
            summaries.push(run.await.context("a wrk task failed")?);
        }
        anyhow::Ok(summaries)
    };
    let summaries = tokio::select! {
        summaries = wait => summaries?,
        () = ticker => unreachable!("the ticker never ends"),
    };
    progress.finish_and_clear();
    Ok(summaries)
}

/// `name: value` lines for wrk's --header: the API key and the bearer token.
fn headers(target: &Target) -> Vec<String> {
    let mut headers = Vec::new();
    if let Some(key) = &target.api_key {
        headers.push(format!("x-api-key: {key}"));
    }
    if let Some(token) = &target.token {
        headers.push(format!("Authorization: Bearer {token}"));
    }
    headers
}

/// A progress line on a terminal (hidden otherwise): elapsed seconds of the run.
fn progress(target: &Target, load: Load) -> ProgressBar {
    use std::io::IsTerminal as _;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(load.duration.as_secs())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("  {msg} [{bar:30}] {pos}/{len} s")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!(
        "loadtest {} ({} connections)",
        target.url, load.connections
    ));
    bar
}

/// The id of the item to GET: `POST /items` creates it (with `create`), or the first item of
/// `GET /items?page_size=1`, created only when there is none.
async fn item_to_get(target: &Target, create: bool) -> anyhow::Result<i64> {
    crate::util::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .context("building the HTTP client")?;
    let base = target.url.trim_end_matches('/');
    if !create {
        let url = format!("{base}/items?page_size=1");
        let page = call(target, client.get(&url), &url).await?;
        if let Some(id) = page["items"][0]["id"].as_i64() {
            return Ok(id);
        }
    }
    let url = format!("{base}/items");
    let request = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(POST_BODY);
    let item = call(target, request, &url).await?;
    item["id"]
        .as_i64()
        .with_context(|| format!("POST {url} answered without an id: {item}"))
}

/// Sends `request` with the key and token; its JSON body when the status is 2xx.
async fn call(
    target: &Target,
    mut request: reqwest::RequestBuilder,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    if let Some(key) = &target.api_key {
        request = request.header("x-api-key", key);
    }
    if let Some(token) = &target.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{url} (finding the item to GET)"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{url} (finding the item to GET) answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    serde_json::from_str(&body)
        .with_context(|| format!("{url} answered {status} with a body that is not JSON"))
}

impl Outcome {
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let connections: u32 = self.endpoints.iter().map(|m| m.connections).sum();
        let _ = writeln!(
            out,
            "\nloadtest {}: {} connections, {} s, the endpoints at the same time\n",
            self.url,
            connections,
            self.duration.as_secs()
        );
        let _ = writeln!(
            out,
            "{:<26} {:>6} {:>10} {:>9} {:>9} {:>9} {:>11}",
            "endpoint", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "error ratio"
        );
        for m in &self.endpoints {
            let s = &m.summary;
            let _ = writeln!(
                out,
                "{:<26} {:>6} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>11.4}",
                m.name,
                m.connections,
                s.requests_per_second(),
                s.p50_us / 1000.0,
                s.p95_us / 1000.0,
                s.p99_us / 1000.0,
                m.error_ratio()
            );
        }
        out
    }

    pub(crate) fn json(&self, slo: &Slo) -> serde_json::Value {
        let endpoints: Vec<_> = self
            .endpoints
            .iter()
            .map(|m| {
                let mut value = summary_json(&m.summary);
                value["endpoint"] = json!(m.name);
                value["connections"] = json!(m.connections);
                value["error_ratio"] = json!(m.error_ratio());
                value
            })
            .collect();
        json!({
            "url": self.url,
            "tool": "wrk",
            "duration_s": self.duration.as_secs(),
            "endpoints": endpoints,
            "slo": {
                "p95_ms": slo.p95_ms,
                "error_ratio": slo.error_ratio,
                "missed": slo.misses(self),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::wrk::Errors;

    fn measured(name: &str, requests: u64, p95_ms: f64, status_errors: u64) -> Measured {
        Measured {
            name: name.to_owned(),
            connections: 10,
            summary: Summary {
                requests,
                duration: Duration::from_secs(10),
                bytes: 0,
                errors: Errors {
                    status: status_errors,
                    ..Errors::default()
                },
                p50_us: 1000.0,
                p95_us: p95_ms * 1000.0,
                p99_us: p95_ms * 2000.0,
                max_us: p95_ms * 3000.0,
                mean_us: 1000.0,
            },
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            url: "http://127.0.0.1:8080".into(),
            duration: Duration::from_secs(10),
            endpoints: vec![
                measured("GET /items/{id}", 1000, 12.0, 0),
                measured("POST /items", 1000, 80.0, 50),
            ],
        }
    }

    #[test]
    fn each_endpoint_is_held_to_each_objective() {
        let o = outcome();
        assert!(Slo::default().misses(&o).is_empty());
        let p95 = Slo {
            p95_ms: Some(50.0),
            error_ratio: None,
        };
        let misses = p95.misses(&o);
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert!(
            misses[0].starts_with("POST /items: p95 80.00 ms"),
            "{misses:?}"
        );
        let errors = Slo {
            p95_ms: Some(100.0),
            error_ratio: Some(0.01),
        };
        let misses = errors.misses(&o);
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert!(misses[0].contains("error ratio 0.0500"), "{misses:?}");
    }

    #[test]
    fn socket_errors_count_as_attempts_and_nothing_measured_is_all_errors() {
        let mut m = measured("GET /items/{id}", 90, 1.0, 0);
        m.summary.errors.connect = 10;
        assert!((m.error_ratio() - 0.1).abs() < 1e-9);
        let none = measured("GET /items/{id}", 0, 0.0, 0);
        assert!((none.error_ratio() - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn key_and_token_go_in_headers_and_the_report_names_the_misses() {
        let target = Target {
            url: "http://x".into(),
            api_key: Some("k".into()),
            token: Some("t".into()),
        };
        assert_eq!(
            headers(&target),
            ["x-api-key: k", "Authorization: Bearer t"]
        );
        let slo = Slo {
            p95_ms: Some(50.0),
            error_ratio: None,
        };
        let json = outcome().json(&slo);
        assert_eq!(json["endpoints"][1]["latency_ms"]["p95"], 80.0);
        assert_eq!(json["slo"]["missed"].as_array().map(Vec::len), Some(1));
        assert!(outcome().table().contains("POST /items"));
    }
}
