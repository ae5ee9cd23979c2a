//! Running `wrk` with the Lua scripts of `xtask/bench/` and reading its JSON summary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Shared `done()` callback appended to every script: prints one `XTASK_WRK {json}` line.
const REPORT_LUA: &str = include_str!("../../bench/report.lua");
const MARKER: &str = "XTASK_WRK ";

/// One endpoint under load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    /// Shown in the table and the JSON report.
    pub(crate) name: &'static str,
    /// The script's file name under `xtask/bench/`.
    file: &'static str,
    script: &'static str,
    /// What the service does per request: what pgbench does per transaction.
    pub(crate) work: Work,
}

/// The database work behind one request of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    GetItem,
    ListItems,
    CreateItem,
}

pub(crate) const ENDPOINTS: [Endpoint; 3] = [
    Endpoint {
        name: "GET /items/{id}",
        file: "get_item.lua",
        script: include_str!("../../bench/get_item.lua"),
        work: Work::GetItem,
    },
    Endpoint {
        name: "GET /items?page_size=50",
        file: "list_items.lua",
        script: include_str!("../../bench/list_items.lua"),
        work: Work::ListItems,
    },
    Endpoint {
        name: "POST /items",
        file: "create_item.lua",
        script: include_str!("../../bench/create_item.lua"),
        work: Work::CreateItem,
    },
];

impl Endpoint {
    /// Writes the script (with the shared report callback) into `dir`.
    pub(crate) fn write_script(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        write_script(dir, self.file, self.script)
    }
}

/// Writes `script` with the shared report callback into `dir/file`.
pub(crate) fn write_script(dir: &Path, file: &str, script: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    std::fs::write(&path, format!("{script}\n{REPORT_LUA}"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// How to drive one run.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) threads: u32,
    pub(crate) connections: u32,
    pub(crate) duration: Duration,
}

/// wrk's summary of one run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) requests: u64,
    pub(crate) duration: Duration,
    pub(crate) bytes: u64,
    pub(crate) errors: Errors,
    /// Latencies in microseconds.
    pub(crate) p50_us: f64,
    pub(crate) p95_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
}

/// wrk's error counters: socket errors, and `status` for responses with a status of 400 or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Errors {
    pub(crate) connect: u64,
    pub(crate) read: u64,
    pub(crate) write: u64,
    pub(crate) status: u64,
    pub(crate) timeout: u64,
}

impl Errors {
    pub(crate) fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
}

impl Summary {
    pub(crate) fn requests_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs wrk against `base_url` with `script` and returns its summary.
pub(crate) async fn run(
    wrk: &Path,
    script: &Path,
    base_url: &str,
    load: &Load,
    script_args: &[String],
) -> anyhow::Result<Summary> {
    run_with_headers(wrk, script, base_url, load, script_args, &[]).await
}

/// [`run`] with extra request headers (`name: value`, wrk's `--header`), sent with every request
/// a script builds with `wrk.format` and no headers of its own.
pub(crate) async fn run_with_headers(
    wrk: &Path,
    script: &Path,
    base_url: &str,
    load: &Load,
    script_args: &[String],
    headers: &[String],
) -> anyhow::Result<Summary> {
    let secs = load.duration.as_secs().max(1);
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.arg(format!("--threads={}", load.threads))
        .arg(format!("--connections={}", load.connections))
        .arg(format!("--duration={secs}s"))
        .arg("--timeout=5s");
    for header in headers {
        cmd.arg("--header").arg(header);
    }
    cmd.arg("--script").arg(script).arg(base_url);
    if !script_args.is_empty() {
        cmd.arg("--").args(script_args);
    }
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("reading wrk's output:\n{stdout}"))
}

/// Finds and reads the `XTASK_WRK` line of wrk's output.
pub(crate) fn parse(output: &str) -> anyhow::Result<Summary> {
    let json = output
        .lines()
        .find_map(|l| l.trim().strip_prefix(MARKER))
        .context("no XTASK_WRK line (did the script's done() run?)")?;
    let v: serde_json::Value = serde_json::from_str(json).context("parsing the XTASK_WRK line")?;
    let count = |value: &serde_json::Value, key: &str| {
        value[key]
            .as_u64()
            .with_context(|| format!("missing count {key}"))
    };
    let micros = |key: &str| {
        v["latency_us"][key]
            .as_f64()
            .with_context(|| format!("missing latency {key}"))
    };
    let e = &v["errors"];
    Ok(Summary {
        requests: count(&v, "requests")?,
        duration: Duration::from_micros(count(&v, "duration_us")?),
        bytes: count(&v, "bytes")?,
        errors: Errors {
            connect: count(e, "connect")?,
            read: count(e, "read")?,
            write: count(e, "write")?,
            status: count(e, "status")?,
            timeout: count(e, "timeout")?,
        },
        p50_us: micros("p50")?,
        p95_us: micros("p95")?,
        p99_us: micros("p99")?,
        max_us: micros("max")?,
        mean_us: micros("mean")?,
    })
}

/// The wrk binary: on PATH, else installed with apt-get when we are root, else an error.
pub(crate) async fn find_or_install() -> anyhow::Result<PathBuf> {
    if let Some(path) = find_on_path("wrk") {
        return Ok(path);
    }
    let root = nix::unistd::geteuid().is_root();
    if root && find_on_path("apt-get").is_some() {
        eprintln!("xtask: wrk is missing; installing the Debian package `wrk`");
        for args in [
            &["install", "-y", "-q", "wrk"][..],
            &["update", "-q"][..],
            &["install", "-y", "-q", "wrk"][..],
        ] {
            let ok = tokio::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .await
                .is_ok_and(|s| s.success());
            if let Some(path) = find_on_path("wrk").filter(|_| ok) {
                return Ok(path);
            }
        }
    }
    bail!(
        "the load generator `wrk` is not installed: install it (Debian/Ubuntu: `apt-get install wrk`, \
         macOS: `brew install wrk`) and run cargo xtask bench again"
    )
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 10s test @ http://127.0.0.1:41234\n  \
        2 threads and 200 connections\n  \
        Thread Stats   Avg      Stdev     Max   +/- Stdev\n    \
        Latency     8.12ms    3.01ms  61.20ms   80.00%\n\
        236254 requests in 10.00s, 78.43MB read\n\
        Requests/sec:  23622.10\n\
        XTASK_WRK {\"requests\":236254,\"duration_us\":10001353,\"bytes\":82237788,\
        \"errors\":{\"connect\":0,\"read\":2,\"write\":0,\"status\":3,\"timeout\":1},\
        \"latency_us\":{\"p50\":7890.0,\"p95\":13012.0,\"p99\":19876.0,\"max\":61201.0,\"mean\":8120.5}}\n";

    #[test]
    fn reads_the_summary_line() -> anyhow::Result<()> {
        let s = parse(OUTPUT)?;
        assert_eq!(s.requests, 236_254);
        assert_eq!(s.duration, Duration::from_micros(10_001_353));
        assert_eq!(s.errors.total(), 6);
        assert_eq!(s.errors.status, 3);
        assert!((s.p99_us - 19_876.0).abs() < f64::EPSILON);
        assert!((s.requests_per_second() - 23_622.1).abs() < 1.0);
        Ok(())
    }

    #[test]
    fn rejects_output_without_a_summary() {
        assert!(parse("Running 10s test @ http://x\n").is_err());
        assert!(parse("XTASK_WRK {\"requests\":1}\n").is_err());
    }

    #[test]
    fn every_script_gets_the_report_callback() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-wrk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        for endpoint in ENDPOINTS {
            let text = std::fs::read_to_string(endpoint.write_script(&dir)?)?;
            assert!(text.contains("done = function"), "{}", endpoint.file);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
