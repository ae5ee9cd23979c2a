//! `cargo xtask bench --through-gateway`: GET /items/{id} on the service alone and through the local
//! API Gateway in the same run, side by side.
//!
//! The gateway runs as its own release process (the `local_gateway` example of
//! `items-local-gateway`, logging to a file), as ESPv2 runs beside Cloud Run: the xtask process is a
//! debug build and would measure the wrong thing. Its config is the environment's, rendered by
//! `items-gateway-spec` as `cargo xtask render` does, with one change: the per-minute quota is
//! raised so that the benchmark measures the request path and not 429s (the committed dev config
//! allows 600 requests per minute and key).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use items_gateway_spec::Environment;
use items_local_gateway::{LOCAL_API_KEY, Spec, TokenRequest, user_token};
use serde_json::json;

use super::wrk::{self, Summary};
use super::{Args, SEED_ITEMS, Setup, free_port, load_average, start_service, stop_service, tail};
use crate::util;

/// Rounds of (service, gateway), back to back, to even out a shared machine's drift.
const ROUNDS: usize = 2;
/// The share of the service's requests/s the gateway must keep.
const MIN_RATIO: f64 = 0.75;
/// The quota of the benchmark's config: far above what 2 cores can serve in a minute.
const BENCH_QUOTA_PER_MINUTE: u32 = 1_000_000_000;
const EXAMPLE: &str = "local_gateway";

pub(super) async fn compare(setup: &Setup<'_>) -> anyhow::Result<()> {
    let args = setup.args;
    eprintln!("xtask: building the local gateway (release example {EXAMPLE})");
    let gateway_bin = build_gateway().await?;
    let config = render_bench_config(&args.gateway_env, setup.work)?;
    let token = token(&config)?;
    let headers = [
        format!("x-api-key: {LOCAL_API_KEY}"),
        format!("Authorization: Bearer {token}"),
    ];

    let service_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let service_log = setup.work.join("server.log");
    let (service, _) = start_service(setup, service_addr, &service_log).await?;
    let gateway_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let gateway_log = setup.work.join("gateway.log");
    let mut gateway = start_gateway(
        &gateway_bin,
        &config,
        service_addr,
        gateway_addr,
        args,
        &gateway_log,
    )
    .await?;

    let load_before = load_average();
    let targets = [
        ("service", format!("http://{service_addr}")),
        ("gateway", format!("http://{gateway_addr}")),
    ];
    let rounds = run_rounds(setup, &targets, &headers, &mut gateway, &gateway_log).await?;
    gateway.kill().await.ok();
    stop_service(service).await?;

    let comparison = Comparison {
        connections: args.connections,
        duration: args.duration,
        load_average: load_before,
        rounds,
    };
    println!("{}", comparison.table());
    super::write_json(
        args.json.as_deref(),
        "bench-gateway.json",
        &comparison.json(),
    )?;
    Ok(())
}

/// A warm-up of both targets, then `ROUNDS` rounds of (service, gateway) back to back; fails
/// when the gateway has exited.
async fn run_rounds(
    setup: &Setup<'_>,
    targets: &[(&str, String); 2],
    headers: &[String],
    gateway: &mut tokio::process::Child,
    gateway_log: &Path,
) -> anyhow::Result<Vec<[Summary; 2]>> {
    let args = setup.args;
    let endpoint = &wrk::ENDPOINTS[0];
    let script = endpoint.write_script(setup.work)?;
    let script_args = [SEED_ITEMS.to_string()];
    let mut load = setup.load(args.warmup);
    if !args.warmup.is_zero() {
        for (_, url) in targets {
            wrk::run_with_headers(setup.wrk_bin, &script, url, &load, &script_args, headers)
                .await?;
        }
    }
    load.duration = args.duration;
    let mut rounds: Vec<[Summary; 2]> = Vec::new();
    for round in 1..=ROUNDS {
        let mut pair = Vec::new();
        for (name, url) in targets {
            eprintln!(
                "xtask: round {round}/{ROUNDS}: {} on the {name}, {}s at {} connections",
                endpoint.name,
                args.duration.as_secs(),
                args.connections
            );
            let summary =
                wrk::run_with_headers(setup.wrk_bin, &script, url, &load, &script_args, headers)
                    .await?;
            pair.push(summary);
        }
        if let Some(status) = gateway.try_wait()? {
            bail!(
                "the gateway exited ({status}); its log:\n{}",
                tail(gateway_log)
            );
        }
        let pair: [Summary; 2] = pair.try_into().map_err(|_| anyhow::anyhow!("two runs"))?;
        rounds.push(pair);
    }
    Ok(rounds)
}

/// Builds the release example and returns the executable cargo reports.
async fn build_gateway() -> anyhow::Result<PathBuf> {
    let args = [
        "--release",
        "--package",
        "items-local-gateway",
        "--example",
        EXAMPLE,
    ];
    util::cargo_build(EXAMPLE, &args).await
}

/// The environment's first region's config, rendered with the benchmark's quota.
fn render_bench_config(env: &str, work: &Path) -> anyhow::Result<PathBuf> {
    let root = util::project_root();
    let mut environment = Environment::load(&root.join(format!("deploy/environments/{env}.toml")))
        .with_context(|| format!("environment {env}"))?;
    environment.quota.requests_per_minute = BENCH_QUOTA_PER_MINUTE;
    let region = environment
        .regions
        .first()
        .map(|r| r.name.clone())
        .with_context(|| format!("environment {env} has no region"))?;
    let spec: serde_json::Value = serde_json::from_str(items_http::openapi_json())?;
    let rendered = items_gateway_spec::render(&spec, &environment, &region, None)?;
    let path = work.join(&rendered.file_name);
    std::fs::write(&path, rendered.yaml).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A JWT for the config's first provider (its issuer and first audience), signed by the local
/// issuer key as `cargo xtask token` signs.
fn token(config: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
    let spec = Spec::parse(&bytes)?;
    let provider = spec
        .provider(None)
        .context("the config has no JWT provider")?;
    let audience = provider
        .audiences
        .as_ref()
        .and_then(|a| a.first().cloned())
        .context("the config's JWT provider has no x-google-audiences")?;
    user_token(&TokenRequest {
        issuer: provider.issuer.clone(),
        audience,
        subject: "bench".into(),
        lifetime_secs: 3600,
    })
}

async fn start_gateway(
    bin: &Path,
    config: &Path,
    service: SocketAddr,
    listen: SocketAddr,
    args: &Args,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = tokio::process::Command::new(bin)
        .arg(config)
        .arg(format!("http://{service}"))
        .arg(listen.port().to_string())
        .arg(args.gateway_workers.to_string())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    for _ in 0..200 {
        if let Some(status) = child.try_wait()? {
            bail!("the gateway exited ({status}); its log:\n{}", tail(log));
        }
        if util::http_status(listen, "/").await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!(
        "the gateway did not answer on {listen}; its log:\n{}",
        tail(log)
    )
}

/// Service alone vs through the gateway, per round.
#[derive(Debug)]
struct Comparison {
    connections: u32,
    duration: Duration,
    load_average: Option<f64>,
    /// [service, gateway] per round.
    rounds: Vec<[Summary; 2]>,
}

impl Comparison {
    /// Requests/s over all rounds: [service, gateway].
    fn throughput(&self) -> [f64; 2] {
        [0, 1].map(|i| {
            let requests: u64 = self.rounds.iter().map(|r| r[i].requests).sum();
            let secs: f64 = self
                .rounds
                .iter()
                .map(|r| r[i].duration.as_secs_f64())
                .sum();
            if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            }
        })
    }

    /// The targets for the gateway: (what, measured, ok).
    fn targets(&self) -> Vec<(String, String, bool)> {
        let [service, gateway] = self.throughput();
        let errors: u64 = self.rounds.iter().map(|r| r[1].errors.total()).sum();
        let p99 = self
            .rounds
            .iter()
            .map(|r| r[1].p99_us / 1000.0)
            .fold(0.0_f64, f64::max);
        let ratio = if service > 0.0 {
            gateway / service
        } else {
            0.0
        };
        vec![
            (
                "through the gateway: no errors".into(),
                format!("{errors} errors"),
                errors == 0,
            ),
            (
                "through the gateway: p99 under 50 ms (worst round)".into(),
                format!("{p99:.2} ms"),
                p99 < 50.0,
            ),
            (
                format!("through the gateway: at least {MIN_RATIO} of the service's requests/s"),
                format!("{gateway:.0} / {service:.0} = {ratio:.2}"),
                ratio >= MIN_RATIO,
            ),
        ]
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nGET /items/{{id}}: service alone vs through the local gateway, {} connections, {} s per run, \
             {ROUNDS} rounds; load average before: {}\n",
            self.connections,
            self.duration.as_secs(),
            self.load_average
                .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
        );
        let _ = writeln!(
            out,
            "{:<7} {:<8} {:>10} {:>9} {:>9} {:>9} {:>8}",
            "round", "path", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
        );
        for (i, round) in self.rounds.iter().enumerate() {
            for (name, s) in ["service", "gateway"].iter().zip(round) {
                let _ = writeln!(
                    out,
                    "{:<7} {:<8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8}",
                    i + 1,
                    name,
                    s.requests_per_second(),
                    s.p50_us / 1000.0,
                    s.p95_us / 1000.0,
                    s.p99_us / 1000.0,
                    s.errors.total()
                );
            }
        }
        let _ = writeln!(out, "\ntargets:");
        for (what, measured, ok) in self.targets() {
            let mark = if ok { "ok  " } else { "MISS" };
            let _ = writeln!(out, "  [{mark}] {what} — {measured}");
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let run = super::report::summary_json;
        let [service, gateway] = self.throughput();
        json!({
            "endpoint": "GET /items/{id}",
            "tool": "wrk",
            "connections": self.connections,
            "duration_s": self.duration.as_secs(),
            "load_average_1m_before": self.load_average,
            "rounds": self.rounds.iter().map(|r| json!({"service": run(&r[0]), "gateway": run(&r[1])})).collect::<Vec<_>>(),
            "requests_per_s": {"service": service, "gateway": gateway},
            "targets": self.targets().into_iter().map(|(t, m, ok)| json!({"target": t, "measured": m, "ok": ok})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::wrk::Errors;

    fn summary(requests: u64, p99_ms: f64) -> Summary {
        Summary {
            requests,
            duration: Duration::from_secs(10),
            bytes: 0,
            errors: Errors::default(),
            p50_us: 1000.0,
            p95_us: 2000.0,
            p99_us: p99_ms * 1000.0,
            max_us: p99_ms * 2000.0,
            mean_us: 1000.0,
        }
    }

    #[test]
    fn the_gateway_is_held_to_three_quarters_of_the_service_and_p99_under_50_ms() {
        let comparison = |gateway: [u64; 2]| Comparison {
            connections: 200,
            duration: Duration::from_secs(10),
            load_average: None,
            rounds: vec![
                [summary(100_000, 10.0), summary(gateway[0], 20.0)],
                [summary(100_000, 10.0), summary(gateway[1], 60.0)],
            ],
        };
        let ok = |c: &Comparison| c.targets().iter().map(|t| t.2).collect::<Vec<_>>();
        // 150k/200k = 0.75 ok; worst p99 60 ms missed.
        let c = comparison([80_000, 70_000]);
        assert_eq!(ok(&c), [true, false, true]);
        assert!(c.table().contains("gateway"));
        assert_eq!(c.json()["requests_per_s"]["gateway"], 7500.0);
        // 149k/200k misses.
        assert_eq!(ok(&comparison([80_000, 69_000])), [true, false, false]);
    }

    #[test]
    fn the_bench_config_has_the_raised_quota() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-gw-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = render_bench_config("dev", &dir)?;
        let yaml = std::fs::read_to_string(&path)?;
        assert!(
            yaml.contains(&format!("STANDARD: {BENCH_QUOTA_PER_MINUTE}")),
            "{yaml}"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
