//! `cargo xtask bench --telemetry-overhead`: what telemetry costs. `GET /items/{id}` with telemetry
//! off (log level warn, no access log, exporter none) and on (JSON logs at info, an access-log
//! entry per request, every request traced, metrics, exporter otlp to a local sink that accepts
//! OTLP/HTTP and discards it), in alternating rounds; prints both requests/s and their ratio.
//! `--sample-ratio 1.0,0.1` measures telemetry on at each sampling ratio, and
//! `--compare-span-exporters` with each span exporter (ours and opentelemetry-otlp's), all in the
//! same rounds.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use items_testkit::ServiceLaunch;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use super::{Args, SEED_ITEMS, Setup, free_port, service_launch, spawn_logged, stop_service, wrk};

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

/// One measured run: requests/s and server CPU time per request (µs).
struct Measured {
    rps: f64,
    cpu_per_request: f64,
}

pub(super) async fn overhead(setup: &Setup<'_>) -> anyhow::Result<()> {
    let variants = variants(setup.args)?;
    let sink = start_sink().await?;
    let endpoint = &wrk::ENDPOINTS[0];
    let script = endpoint.write_script(setup.work)?;
    let mut off = Vec::new();
    let mut on: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    // Server CPU time per request (user + system, µs): steadier than requests/s on a machine
    // shared with other work, since it does not depend on how much CPU the server was given.
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len() + 1];
    for round in 0..ROUNDS {
        // Off first, then each variant: every round measures all of them back to back.
        let runs = std::iter::once(None).chain(variants.iter().copied().map(Some));
        for (run, variant) in runs.enumerate() {
            let log = setup.work.join(format!("telemetry-{run}-{round}.log"));
            let measured = measure(setup, endpoint, &script, variant, sink, &log).await?;
            cpu[run].push(measured.cpu_per_request);
            match variant {
                Some(_) => on[run - 1].push(measured.rps),
                None => off.push(measured.rps),
            }
        }
    }
    print_overhead(setup.args, endpoint, &variants, &off, &on, &cpu);
    Ok(())
}

/// The telemetry-on configurations of the arguments: each sampling ratio, with each span
/// exporter when they are compared.
fn variants(args: &Args) -> anyhow::Result<Vec<Variant>> {
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
    Ok(args
        .sample_ratio
        .iter()
        .flat_map(|&sample_ratio| {
            exporters.iter().map(move |&span_exporter| Variant {
                sample_ratio,
                span_exporter,
            })
        })
        .collect())
}

/// A fresh service with telemetry off (`None`) or on: warm-up, the measured run, its CPU time,
/// then a graceful stop; with telemetry on, its log must hold a line per request.
async fn measure(
    setup: &Setup<'_>,
    endpoint: &wrk::Endpoint,
    script: &Path,
    variant: Option<Variant>,
    sink: SocketAddr,
    log: &Path,
) -> anyhow::Result<Measured> {
    let args = setup.args;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let (server, _) = spawn_logged(&launch(setup, addr, variant, sink), addr, log).await?;
    let base_url = format!("http://{addr}");
    let script_args = [SEED_ITEMS.to_string()];
    let mut load = setup.load(args.warmup.max(MIN_WARMUP));
    wrk::run(setup.wrk_bin, script, &base_url, &load, &script_args).await?;
    load.duration = args.duration;
    let cpu_before = server.id().and_then(super::cpu::process);
    let summary = wrk::run(setup.wrk_bin, script, &base_url, &load, &script_args).await?;
    let cpu_after = server.id().and_then(super::cpu::process);
    let label = variant.map_or_else(|| "off".to_owned(), |v| v.label());
    let cpu_per_request = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if summary.requests > 0 => {
            a.saturating_sub(b).as_secs_f64() * 1e6 / summary.requests as f64
        }
        _ => f64::NAN,
    };
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
        let lines = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count();
        anyhow::ensure!(
            lines as u64 >= summary.requests,
            "telemetry {label} wrote {lines} log lines for {} requests",
            summary.requests
        );
    }
    Ok(Measured {
        rps,
        cpu_per_request,
    })
}

/// The summary: telemetry off, then each variant with its ratio to off (overall and per
/// round) and its server CPU per request.
fn print_overhead(
    args: &Args,
    endpoint: &wrk::Endpoint,
    variants: &[Variant],
    off: &[f64],
    on: &[Vec<f64>],
    cpu: &[Vec<f64>],
) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let off_mean = mean(off);
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
    for ((variant, on), cpu) in variants.iter().zip(on).zip(&cpu[1..]) {
        let mut paired: Vec<f64> = on.iter().zip(off).map(|(on, off)| on / off).collect();
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
}

/// The service of one run: telemetry on as `variant` says (logs at info with an access log,
/// OTLP to `sink`), or off (logs at warn, no access log, no exporter). `RUST_LOG` of ours would
/// override the log level, so it is not passed on.
fn launch(
    setup: &Setup<'_>,
    addr: SocketAddr,
    variant: Option<Variant>,
    sink: SocketAddr,
) -> ServiceLaunch {
    let launch = service_launch(setup, addr).env_remove("RUST_LOG");
    let Some(variant) = variant else {
        return launch.log_level("warn").access_log(false).no_export();
    };
    let launch = launch
        .log_level("info")
        .access_log(true)
        .otlp(&format!("http://{sink}"))
        .sample_ratio(variant.sample_ratio)
        .metrics_interval_secs(5);
    match variant.span_exporter {
        Some(exporter) => launch.span_exporter(exporter),
        None => launch,
    }
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
