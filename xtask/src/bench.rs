//! `cargo xtask bench`: the release binary under load on loopback.
//!
//! Throwaway durable PostgreSQL cluster → migrate → seed 10,000 items → start the service (logs at
//! warn) and time spawn → first 200 from `/health/ready` → per endpoint and round: wrk on the
//! service (CPU of the service and of PostgreSQL from `/proc`), then pgbench on PostgreSQL alone
//! with the endpoint's statement → peak RSS (VmHWM) → report as a table and as JSON.

mod cpu;
mod gateway;
mod pgbench;
pub(crate) mod report;
mod telemetry;
pub(crate) mod wrk;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use items_testkit::{ClusterOptions, PgCluster, ServiceLaunch};
use nix::sys::signal::Signal;

use crate::util::{self, SERVICE, Signals};

/// Items seeded before the run; `GET /items/{id}` draws ids from 1..=SEED_ITEMS.
const SEED_ITEMS: i64 = 10_000;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Load time per endpoint (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up per endpoint before the measured run (0s: none).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Concurrent connections held open by wrk.
    #[arg(long, default_value_t = 200)]
    connections: u32,
    /// wrk threads. The load generator shares the 2 cores with the server and PostgreSQL; on this
    /// machine 2 threads gave the server more GET throughput than 1 (same p99 or better).
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Rounds per endpoint: each is a wrk run on the service, then a pgbench run on PostgreSQL
    /// alone (targets on p99 hold in every round; req/s are summed over the rounds).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Skip pgbench (PostgreSQL alone): no "% of pgbench" column.
    #[arg(long)]
    no_pgbench: bool,
    /// How many times to start the service to time start-up (the last one takes the load).
    #[arg(long, default_value_t = 5)]
    startups: u32,
    /// Override the service's pool size (APP__DATABASE__POOL__MAX_SIZE); default: its setting.
    #[arg(long)]
    pool_size: Option<u32>,
    /// actix worker threads of the service (APP__SERVER__WORKERS). The default 1 leaves the other
    /// core of this 2-core machine to PostgreSQL and wrk, which measured best (GET /items/{id}:
    /// 18.5k req/s with 1 worker, 15.9k with 3, 14.4k with 2); 0 keeps the service's default (one
    /// per CPU).
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// Also measure what telemetry costs on GET /items/{id}: off vs on (JSON logs, access log,
    /// tracing, metrics, OTLP to a local sink), in alternating rounds.
    #[arg(long)]
    telemetry_overhead: bool,
    /// Only the telemetry overhead runs (implies --telemetry-overhead): no start-up timing, no
    /// endpoint table.
    #[arg(long)]
    telemetry_overhead_only: bool,
    /// Telemetry-on sampling ratios (APP__TELEMETRY__SAMPLE_RATIO), each measured in every round,
    /// e.g. `--sample-ratio 1.0,0.1`.
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    sample_ratio: Vec<f64>,
    /// Run telemetry on with both span exporters in every round (telemetry.span_exporter = own,
    /// our OTLP encoder, and library, opentelemetry-otlp's), alternating with telemetry off.
    #[arg(long)]
    compare_span_exporters: bool,
    /// Only GET /items/{id} on the service alone vs through the local API Gateway (a release
    /// process with the environment's rendered config, quota raised), side by side, in rounds.
    #[arg(long)]
    through_gateway: bool,
    /// With --through-gateway: the environment whose config the gateway enforces.
    #[arg(long, default_value = "dev", requires = "through_gateway")]
    gateway_env: String,
    /// With --through-gateway: the gateway's actix worker threads.
    #[arg(long, default_value_t = 1, requires = "through_gateway")]
    gateway_workers: u32,
    /// Measure this service binary instead of building the release one (A/B runs of builds
    /// kept aside, e.g. before and after a change).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where to write the JSON report (default: target/bench.json; with --through-gateway
    /// target/bench-gateway.json).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.startups >= 1, "--startups must be at least 1");
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(
        args.connections >= args.threads && args.threads >= 1,
        "--connections must be at least --threads, which must be at least 1"
    );
    let mut signals = Signals::install()?;
    tokio::select! {
        result = bench(&args) => result.map(|()| ExitCode::SUCCESS),
        sig = signals.recv() => {
            // Dropping the bench future kills wrk and the service and removes the cluster.
            eprintln!("xtask: {sig}: stopping the benchmark");
            Ok(ExitCode::from(130))
        }
    }
}

/// What every measurement of one run shares: the release binary on the seeded database, the
/// arguments, wrk and a scratch directory.
struct Setup<'a> {
    binary: &'a Path,
    database_url: &'a str,
    args: &'a Args,
    wrk_bin: &'a Path,
    work: &'a Path,
    /// The cluster's postmaster, whose backends' CPU is PostgreSQL's.
    postmaster: u32,
    /// pgbench of the cluster's installation; `None` with `--no-pgbench`.
    pgbench: Option<PathBuf>,
}

impl Setup<'_> {
    /// wrk's load for `duration`, with the threads and connections of the arguments.
    fn load(&self, duration: Duration) -> wrk::Load {
        wrk::Load {
            threads: self.args.threads,
            connections: self.args.connections,
            duration,
        }
    }
}

async fn bench(args: &Args) -> anyhow::Result<()> {
    let wrk_bin = wrk::find_or_install().await?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => {
            eprintln!("xtask: building the release binary");
            util::build_service(true).await?
        }
    };
    let work = TempDir::create()?;

    eprintln!("xtask: starting a throwaway PostgreSQL cluster (durable settings)");
    let mut cluster = PgCluster::start(&ClusterOptions::default())?;
    let database_url = items_testkit::create_database(&cluster.url("postgres"), "items").await?;
    migrate(&binary, &database_url).await?;
    seed(&database_url).await?;
    let pgbench = if args.no_pgbench {
        None
    } else {
        Some(pgbench::find(&cluster)?)
    };
    let setup = Setup {
        binary: &binary,
        database_url: &database_url,
        args,
        wrk_bin: &wrk_bin,
        work: work.path(),
        postmaster: cpu::postmaster_pid(cluster.data_dir())?,
        pgbench,
    };
    if args.through_gateway {
        gateway::compare(&setup).await?;
        cluster.stop();
        return Ok(());
    }
    if args.telemetry_overhead_only {
        telemetry::overhead(&setup).await?;
        cluster.stop();
        return Ok(());
    }
    let report = endpoints(&setup).await?;
    if args.telemetry_overhead {
        telemetry::overhead(&setup).await?;
    }
    cluster.stop();
    println!("{}", report.table());
    write_json(args.json.as_deref(), "bench.json", &report.json())?;
    Ok(())
}

/// Start-up timing, then every endpoint in rounds (wrk on the last service started, then
/// pgbench on PostgreSQL alone), its peak RSS and whether it exits gracefully.
async fn endpoints(setup: &Setup<'_>) -> anyhow::Result<report::Report> {
    let args = setup.args;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let log = setup.work.join("server.log");
    let (mut server, startup_ms) = time_startups(setup, addr, &log).await?;
    let load_average = load_average();
    let mut results = Vec::new();
    for endpoint in wrk::ENDPOINTS {
        let mut rounds = Vec::new();
        for _ in 0..args.rounds {
            let (service, cpu) = load_endpoint(setup, &endpoint, addr, server.id()).await?;
            if server.try_wait()?.is_some() {
                bail!("{SERVICE} died under load; its log:\n{}", tail(&log));
            }
            let limit = match &setup.pgbench {
                Some(pgbench) => Some(limit(setup, pgbench, &endpoint).await?),
                None => None,
            };
            rounds.push(report::Round {
                service,
                cpu,
                limit,
            });
        }
        results.push(report::Endpoint {
            name: endpoint.name,
            rounds,
        });
    }
    let pid = server.id().context("the service is gone")?;
    let peak_rss = peak_rss_bytes(pid)?;
    let shutdown = stop_service(server).await?;
    Ok(report::Report {
        connections: args.connections,
        wrk_threads: args.threads,
        duration: args.duration,
        warmup: args.warmup,
        seed_items: SEED_ITEMS,
        load_average,
        startup_ms,
        peak_rss_bytes: peak_rss,
        graceful_exit: shutdown.success(),
        endpoints: results,
    })
}

/// PostgreSQL alone on the endpoint's statement: pgbench with as many clients as wrk has
/// connections, for as long, and PostgreSQL's CPU per transaction.
async fn limit(
    setup: &Setup<'_>,
    pgbench_bin: &Path,
    endpoint: &wrk::Endpoint,
) -> anyhow::Result<report::Limit> {
    let args = setup.args;
    let run = pgbench::Run {
        pgbench: pgbench_bin,
        database_url: setup.database_url,
        clients: args.connections,
        threads: args.threads,
        duration: args.duration,
    };
    let script = pgbench::script(endpoint.work, SEED_ITEMS);
    eprintln!(
        "xtask: pgbench, {}'s statement, for {}s with {} clients",
        endpoint.name,
        args.duration.as_secs(),
        args.connections
    );
    let before = cpu::Sample::take(None, setup.postmaster);
    let summary = run
        .script(setup.work, &format!("{:?}.sql", endpoint.work), &script)
        .await?;
    let after = cpu::Sample::take(None, setup.postmaster);
    anyhow::ensure!(
        summary.failed == 0,
        "pgbench: {} of {} transactions failed on {}'s statement",
        summary.failed,
        summary.transactions + summary.failed,
        endpoint.name
    );
    Ok(report::Limit {
        pgbench: summary,
        postgres_cpu_us: before.per_request(&after, summary.transactions).postgres_us,
    })
}

/// Starts the service `--startups` times, each time from spawn to the first 200 from
/// `/health/ready`; the last one keeps running for the load.
async fn time_startups(
    setup: &Setup<'_>,
    addr: SocketAddr,
    log: &Path,
) -> anyhow::Result<(tokio::process::Child, Vec<f64>)> {
    let mut startup_ms = Vec::new();
    let server = loop {
        let (child, elapsed) = start_service(setup, addr, log).await?;
        startup_ms.push(elapsed.as_secs_f64() * 1000.0);
        if startup_ms.len() >= setup.args.startups as usize {
            break child;
        }
        stop_service(child).await?;
    };
    eprintln!(
        "xtask: start-up to the first 200 from /health/ready: {}",
        startup_ms
            .iter()
            .map(|ms| format!("{ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((server, startup_ms))
}

/// The unmeasured warm-up, then the measured wrk run of one endpoint, with the CPU per request of
/// the service (`pid`) and of PostgreSQL.
async fn load_endpoint(
    setup: &Setup<'_>,
    endpoint: &wrk::Endpoint,
    addr: SocketAddr,
    pid: Option<u32>,
) -> anyhow::Result<(wrk::Summary, cpu::PerRequest)> {
    let args = setup.args;
    let base_url = format!("http://{addr}");
    let script = endpoint.write_script(setup.work)?;
    let script_args = [SEED_ITEMS.to_string()];
    let mut load = setup.load(args.warmup);
    if !args.warmup.is_zero() {
        wrk::run(setup.wrk_bin, &script, &base_url, &load, &script_args).await?;
    }
    eprintln!(
        "xtask: {} for {}s at {} connections",
        endpoint.name,
        args.duration.as_secs(),
        args.connections
    );
    load.duration = args.duration;
    let before = cpu::Sample::take(pid, setup.postmaster);
    let summary = wrk::run(setup.wrk_bin, &script, &base_url, &load, &script_args).await?;
    let after = cpu::Sample::take(pid, setup.postmaster);
    let cpu = before.per_request(&after, summary.requests);
    Ok((summary, cpu))
}

/// Writes a JSON report to `path` (default: target/`default_name`) and says where.
pub(crate) fn write_json(
    path: Option<&Path>,
    default_name: &str,
    json: &serde_json::Value,
) -> anyhow::Result<()> {
    let path = path.map_or_else(
        || util::project_root().join("target").join(default_name),
        Path::to_path_buf,
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("JSON report: {}", path.display());
    Ok(())
}

async fn migrate(binary: &Path, database_url: &str) -> anyhow::Result<()> {
    let out = util::service(binary)
        .arg("migrate")
        .environment("local")
        .database_url(database_url)
        .log_level("warn")
        .command()
        .output()
        .await
        .with_context(|| format!("running {SERVICE} migrate"))?;
    if !out.status.success() {
        bail!(
            "{SERVICE} migrate failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn seed(database_url: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to the bench database")?;
    let connection = tokio::spawn(connection);
    let inserted = client
        .execute(
            "INSERT INTO items (name, description) \
             SELECT 'item ' || g, 'seeded by cargo xtask bench, number ' || g \
             FROM generate_series(1, $1::bigint) AS g",
            &[&SEED_ITEMS],
        )
        .await
        .context("seeding items")?;
    client
        .batch_execute("VACUUM ANALYZE items")
        .await
        .context("vacuuming items")?;
    let max_id: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM items", &[])
        .await?
        .get(0);
    drop(client);
    let _ = connection.await;
    anyhow::ensure!(
        inserted == SEED_ITEMS as u64 && max_id == SEED_ITEMS,
        "seeding gave {inserted} rows up to id {max_id}, expected ids 1..={SEED_ITEMS}"
    );
    eprintln!("xtask: seeded {SEED_ITEMS} items");
    Ok(())
}

/// The service as every bench run starts it: local settings on the seeded database, JSON logs,
/// listening on `addr`, with the pool size and workers of the arguments.
fn service_launch(setup: &Setup<'_>, addr: SocketAddr) -> ServiceLaunch {
    let mut launch = util::service(setup.binary)
        .environment("local")
        .database_url(setup.database_url)
        .listen(addr)
        .log_format("json");
    if let Some(size) = setup.args.pool_size {
        launch = launch.pool_max_size(size);
    }
    if setup.args.workers > 0 {
        launch = launch.workers(setup.args.workers);
    }
    launch
}

/// Spawns the release service (logs at warn) and returns it with the time from spawn to the
/// first 200 from `/health/ready`.
async fn start_service(
    setup: &Setup<'_>,
    addr: SocketAddr,
    log: &Path,
) -> anyhow::Result<(tokio::process::Child, Duration)> {
    spawn_logged(&service_launch(setup, addr).log_level("warn"), addr, log).await
}

/// Spawns `launch` with its output appended to `log` and waits until it is ready on `addr`;
/// returns it with the time from spawn to ready.
async fn spawn_logged(
    launch: &ServiceLaunch,
    addr: SocketAddr,
    log: &Path,
) -> anyhow::Result<(tokio::process::Child, Duration)> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = launch.command();
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", launch.program().display()))?;
    if let Err(e) = util::wait_ready(addr, &mut child, Duration::from_secs(30)).await {
        bail!("{e:#}; its log:\n{}", tail(log));
    }
    Ok((child, spawned.elapsed()))
}

/// SIGTERM, then wait (up to Cloud Run's 10 s) for a graceful exit.
async fn stop_service(
    mut child: tokio::process::Child,
) -> anyhow::Result<std::process::ExitStatus> {
    util::send(&child, Signal::SIGTERM);
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            child.kill().await.ok();
            bail!("{SERVICE} did not exit within 10 s of SIGTERM")
        }
    }
}

/// The peak resident set size (VmHWM) of a live process.
fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    vm_hwm_bytes(&status).with_context(|| format!("no VmHWM line in {path}"))
}

fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// The 1-minute load average from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s, 500ms or 1m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!(
            "unknown unit `{unit}` in `{text}` (use ms, s or m)"
        )),
    }
}

/// A scratch directory for the scripts and the server log, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn create() -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("items-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\titems-service\nVmPeak:\t  300000 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   20000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(23_456 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
    }
}
