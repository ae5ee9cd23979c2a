//! `cargo xtask bench --telemetry-overhead`: what telemetry costs. `GET /items/{id}` with telemetry
//! off (log level warn, no access log, exporter none) and on (JSON logs at info, an access-log
//! entry per request, every request traced, metrics, exporter otlp to a local sink that accepts
//! OTLP/HTTP and discards it), in alternating rounds; prints both requests/s and their ratio.
//! `--sample-ratio 1.0,0.1` measures telemetry on at each sampling ratio, and
//! `--compare-span-exporters` with each span exporter (ours and opentelemetry-otlp's), all in the
//! same rounds.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use super::{Args, SEED_ITEMS, free_port, stop_service, tail, wrk};
use crate::util;

/// The budget: telemetry on keeps at least this share of the requests/s.
const TARGET_RATIO: f64 = 0.85;
const ROUNDS: usize = 5;
/// Shortest warm-up of each server: a fresh service needs about 5 s on this machine to reach a
/// steady rate (pool connections opened, statements prepared on each, PostgreSQL caches warm),
/// with telemetry on or off, and each round starts a fresh one.
const MIN_WARMUP: Duration = Duration::from_secs(5);

/// One telemetry-on configuration measured in every round.
#[derive(Debug, Clone, Copy)]
struct Variant {
    sample_ratio: f64,
    /// `telemetry.span_exporter`: `own` or `library`; `None` keeps the service's default.
    span_exporter: Option<&'static str>,
}

impl Variant {
    fn label(&self) -> String {
        match self.span_exporter {
            Some(exporter) => format!("on, sampling {}, {exporter} exporter", self.sample_ratio),
            None => format!("on, sampling {}", self.sample_ratio),
        }
    }
}

pub(super) async fn overhead(
    binary: &Path,
    database_url: &str,
    args: &Args,
    wrk_bin: &Path,
    work: &Path,
) -> anyhow::Result<()> {
    for &ratio in &args.sample_ratio {
        anyhow::ensure!(
            (0.0..=1.0).contains(&ratio),
            "--sample-ratio must be between 0 and 1, got {ratio}"
        );
    }
    let exporters: &[Option<&'static str>] = if args.compare_span_exporters {
        &[Some("own"), Some("library")]
    } else {
        &[None]
    };
    let variants: Vec<Variant> = args
        .sample_ratio
        .iter()
        .flat_map(|&sample_ratio| {
            exporters.iter().map(move |&span_exporter| Variant {
                sample_ratio,
                span_exporter,
            })
        })
        .collect();
    let sink = start_sink().await?;
    let endpoint = &wrk::ENDPOINTS[0];
    let script = endpoint.write_script(work)?;
    let script_args = [SEED_ITEMS.to_string()];
    let mut off = Vec::new();
    let mut on: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    // Server CPU time per request (user + system, µs): steadier than requests/s on a machine
    // shared with other work, since it does not depend on how much CPU the server was given.
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len() + 1];
    for round in 0..ROUNDS {
        // Off first, then each variant: every round measures all of them back to back.
        let runs = std::iter::once(None).chain(variants.iter().copied().map(Some));
        for (run, variant) in runs.enumerate() {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
            let log = work.join(format!("telemetry-{run}-{round}.log"));
            let server = start(binary, database_url, addr, args, variant, sink, &log).await?;
            let base_url = format!("http://{addr}");
            let mut load = wrk::Load {
                threads: args.threads,
                connections: args.connections,
                duration: args.warmup.max(MIN_WARMUP),
            };
            wrk::run(wrk_bin, &script, &base_url, &load, &script_args).await?;
            load.duration = args.duration;
            let cpu_before = cpu_seconds(server.id());
            let summary = wrk::run(wrk_bin, &script, &base_url, &load, &script_args).await?;
            let cpu_after = cpu_seconds(server.id());
            let label = variant.map_or_else(|| "off".to_owned(), |v| v.label());
            let cpu_per_request = match (cpu_before, cpu_after) {
                (Some(b), Some(a)) if summary.requests > 0 => {
                    (a - b) * 1e6 / summary.requests as f64
                }
                _ => f64::NAN,
            };
            cpu[run].push(cpu_per_request);
            if summary.errors.total() > 0 {
                bail!(
                    "errors under load (telemetry {label}): {:?}",
                    summary.errors
                );
            }
            let rps = summary.requests_per_second();
            eprintln!(
                "xtask: {} telemetry {label}: {rps:.0} requests/s, p99 {:.1} ms, \
                 {cpu_per_request:.1} µs server CPU per request",
                endpoint.name,
                summary.p99_us / 1000.0
            );
            // Stopped first: the service writes out its buffered log lines as it exits.
            stop_service(server).await?;
            if variant.is_some() {
                let lines = std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .count();
                anyhow::ensure!(
                    lines as u64 >= summary.requests,
                    "telemetry {label} wrote {lines} log lines for {} requests",
                    summary.requests
                );
                on[run - 1].push(rps);
            } else {
                off.push(rps);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let off_mean = mean(&off);
    let cpu_off = mean(&cpu[0]);
    println!(
        "Telemetry overhead, {} ({} rounds of {}s at {} connections, each after a {}s warm-up):\n  \
         telemetry off: {off_mean:>9.0} requests/s, {cpu_off:.1} µs server CPU per request",
        endpoint.name,
        ROUNDS,
        args.duration.as_secs(),
        args.connections,
        args.warmup.max(MIN_WARMUP).as_secs(),
    );
    for ((variant, on), cpu) in variants.iter().zip(&on).zip(&cpu[1..]) {
        let mut paired: Vec<f64> = on.iter().zip(&off).map(|(on, off)| on / off).collect();
        paired.sort_by(f64::total_cmp);
        let median = paired[paired.len() / 2];
        let on_mean = mean(on);
        let ratio = on_mean / off_mean;
        let cpu_on = mean(cpu);
        println!(
            "  telemetry {}: {on_mean:>9.0} requests/s (JSON logs + access log + traces + \
             metrics, OTLP to a local sink)\n    \
             ratio on/off: {ratio:>6.3} (target >= {TARGET_RATIO}); per round, sorted: {} (median {median:.3})\n    \
             server CPU per request: {cpu_on:.1} µs (off {cpu_off:.1} µs; CPU ratio off/on {:.3})",
            variant.label(),
            paired
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            cpu_off / cpu_on,
        );
        if ratio < TARGET_RATIO {
            eprintln!(
                "xtask: telemetry {} costs more than the budget ({ratio:.3} < {TARGET_RATIO})",
                variant.label()
            );
        }
    }
    Ok(())
}

async fn start(
    binary: &Path,
    database_url: &str,
    addr: SocketAddr,
    args: &Args,
    telemetry: Option<Variant>,
    sink: SocketAddr,
    log: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.current_dir(util::project_root())
        .env("APP_ENVIRONMENT", "local")
        .env("APP__DATABASE__URL", database_url)
        .env("APP__SERVER__HOST", addr.ip().to_string())
        .env("APP__SERVER__PORT", addr.port().to_string())
        .env("APP__LOG__FORMAT", "json")
        .env_remove("PORT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    if let Some(variant) = telemetry {
        cmd.env("APP__LOG__LEVEL", "info")
            .env("APP__LOG__ACCESS_LOG", "true")
            .env("APP__TELEMETRY__EXPORTER", "otlp")
            .env("APP__TELEMETRY__OTLP_ENDPOINT", format!("http://{sink}"))
            .env(
                "APP__TELEMETRY__SAMPLE_RATIO",
                variant.sample_ratio.to_string(),
            )
            .env("APP__TELEMETRY__METRICS_INTERVAL_SECS", "5");
        if let Some(exporter) = variant.span_exporter {
            cmd.env("APP__TELEMETRY__SPAN_EXPORTER", exporter);
        }
    } else {
        cmd.env("APP__LOG__LEVEL", "warn")
            .env("APP__LOG__ACCESS_LOG", "false")
            .env("APP__TELEMETRY__EXPORTER", "none");
    }
    if let Some(size) = args.pool_size {
        cmd.env("APP__DATABASE__POOL__MAX_SIZE", size.to_string());
    }
    if args.workers > 0 {
        cmd.env("APP__SERVER__WORKERS", args.workers.to_string());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    if let Err(e) = util::wait_ready(addr, &mut child, Duration::from_secs(30)).await {
        bail!("{e:#}; its log:\n{}", tail(log));
    }
    Ok(child)
}

/// An OTLP/HTTP sink: answers every request with an empty 200 (a valid empty export response)
/// and throws the body away. HTTP/1.1 with keep-alive, `Content-Length` bodies only (what the
/// service's exporter sends).
async fn start_sink() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    let mut length = 0u64;
                    loop {
                        line.clear();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = (&mut stream).take(length);
                    if tokio::io::copy(&mut body, &mut tokio::io::sink())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                                    content-length: 0\r\n\r\n";
                    if stream
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// User + system CPU seconds of a process so far (`/proc/<pid>/stat`, Linux).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks / 100.0)
}
