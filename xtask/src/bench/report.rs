//! The bench report: a table for people, JSON for tools, and the targets checked.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use super::wrk::Summary;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) connections: u32,
    pub(crate) wrk_threads: u32,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) seed_items: i64,
    /// 1-minute load average before the load runs (other work on the machine skews the figures).
    pub(crate) load_average: Option<f64>,
    /// Spawn → first 200 from /health/ready, one per start.
    pub(crate) startup_ms: Vec<f64>,
    pub(crate) peak_rss_bytes: u64,
    /// Exit status 0 after SIGTERM at the end.
    pub(crate) graceful_exit: bool,
    pub(crate) endpoints: Vec<(&'static str, Summary)>,
}

/// One target from the issue, with the measured value.
#[derive(Debug, PartialEq)]
struct Target {
    what: String,
    measured: String,
    ok: bool,
}

impl Report {
    fn startup_median_ms(&self) -> f64 {
        let mut sorted = self.startup_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn endpoint(&self, name: &str) -> Option<&Summary> {
        self.endpoints
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        if let Some(s) = self.endpoint("GET /items/{id}") {
            targets.push(Target {
                what: "GET /items/{id}: at least 15,000 req/s".into(),
                measured: format!("{:.0} req/s", s.requests_per_second()),
                ok: s.requests_per_second() >= 15_000.0,
            });
            targets.push(latency_target("GET /items/{id}", s, 50.0));
        }
        if let Some(s) = self.endpoint("POST /items") {
            targets.push(latency_target("POST /items", s, 100.0));
        }
        let rss_mib = self.peak_rss_bytes as f64 / MIB;
        targets.push(Target {
            what: "peak RSS under 64 MB".into(),
            measured: format!("{rss_mib:.1} MiB"),
            ok: self.peak_rss_bytes < 64 * 1024 * 1024,
        });
        let startup = self.startup_median_ms();
        targets.push(Target {
            what: "start-up to a 200 from /health/ready under 150 ms (median)".into(),
            measured: format!("{startup:.1} ms"),
            ok: startup < 150.0,
        });
        targets
    }

    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nwrk: {} connections, {} thread(s), {} s per endpoint after {} s warm-up; {} seeded items; \
             load average before: {}\n",
            self.connections,
            self.wrk_threads,
            self.duration.as_secs(),
            self.warmup.as_secs(),
            self.seed_items,
            self.load_average
                .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
        );
        let _ = writeln!(
            out,
            "{:<26} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "endpoint", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
        );
        for (name, s) in &self.endpoints {
            let _ = writeln!(
                out,
                "{:<26} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
                name,
                s.requests_per_second(),
                s.p50_us / 1000.0,
                s.p95_us / 1000.0,
                s.p99_us / 1000.0,
                s.max_us / 1000.0,
                s.errors.total()
            );
        }
        let _ = writeln!(
            out,
            "\nserver: peak RSS (VmHWM) {:.1} MiB; start-up to /health/ready 200: median {:.1} ms of [{}]; \
             SIGTERM exit {}",
            self.peak_rss_bytes as f64 / MIB,
            self.startup_median_ms(),
            self.startup_ms
                .iter()
                .map(|ms| format!("{ms:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            if self.graceful_exit { "0" } else { "non-zero" }
        );
        let _ = writeln!(out, "\ntargets:");
        for t in self.targets() {
            let mark = if t.ok { "ok  " } else { "MISS" };
            let _ = writeln!(out, "  [{mark}] {} — {}", t.what, t.measured);
        }
        out
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let endpoints: Vec<_> = self
            .endpoints
            .iter()
            .map(|(name, s)| {
                let mut value = summary_json(s);
                value["endpoint"] = json!(name);
                value
            })
            .collect();
        let targets: Vec<_> = self
            .targets()
            .into_iter()
            .map(|t| json!({"target": t.what, "measured": t.measured, "ok": t.ok}))
            .collect();
        json!({
            "load": {
                "tool": "wrk",
                "connections": self.connections,
                "threads": self.wrk_threads,
                "duration_s": self.duration.as_secs(),
                "warmup_s": self.warmup.as_secs(),
                "seed_items": self.seed_items,
                "cpus": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
                "load_average_1m_before": self.load_average,
            },
            "server": {
                "peak_rss_bytes": self.peak_rss_bytes,
                "peak_rss_mib": round(self.peak_rss_bytes as f64 / MIB, 1),
                "startup_ms": self.startup_ms.iter().map(|ms| round(*ms, 2)).collect::<Vec<_>>(),
                "startup_median_ms": round(self.startup_median_ms(), 2),
                "sigterm_exit_ok": self.graceful_exit,
            },
            "endpoints": endpoints,
            "targets": targets,
        })
    }
}

/// One wrk run as JSON: requests, requests/s, latencies in ms, errors by kind.
pub(crate) fn summary_json(s: &Summary) -> serde_json::Value {
    json!({
        "requests": s.requests,
        "duration_s": s.duration.as_secs_f64(),
        "requests_per_s": round(s.requests_per_second(), 1),
        "bytes": s.bytes,
        "latency_ms": {
            "p50": round(s.p50_us / 1000.0, 3),
            "p95": round(s.p95_us / 1000.0, 3),
            "p99": round(s.p99_us / 1000.0, 3),
            "max": round(s.max_us / 1000.0, 3),
            "mean": round(s.mean_us / 1000.0, 3),
        },
        "errors": {
            "total": s.errors.total(),
            "status_4xx_5xx": s.errors.status,
            "connect": s.errors.connect,
            "read": s.errors.read,
            "write": s.errors.write,
            "timeout": s.errors.timeout,
        },
    })
}

fn latency_target(name: &str, s: &Summary, p99_limit_ms: f64) -> Target {
    let p99 = s.p99_us / 1000.0;
    Target {
        what: format!("{name}: no errors, p99 under {p99_limit_ms} ms"),
        measured: format!("{} errors, p99 {p99:.2} ms", s.errors.total()),
        ok: s.errors.total() == 0 && p99 < p99_limit_ms,
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10_f64.powi(decimals);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::super::wrk::Errors;
    use super::*;

    fn summary(requests: u64, p99_ms: f64, errors: u64) -> Summary {
        Summary {
            requests,
            duration: Duration::from_secs(10),
            bytes: 0,
            errors: Errors {
                status: errors,
                ..Errors::default()
            },
            p50_us: 1000.0,
            p95_us: 2000.0,
            p99_us: p99_ms * 1000.0,
            max_us: 9000.0,
            mean_us: 1200.0,
        }
    }

    fn report() -> Report {
        Report {
            connections: 200,
            wrk_threads: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            seed_items: 10_000,
            load_average: Some(0.5),
            startup_ms: vec![40.0, 200.0, 30.0],
            peak_rss_bytes: 20 * 1024 * 1024,
            graceful_exit: true,
            endpoints: vec![
                ("GET /items/{id}", summary(200_000, 12.0, 0)),
                ("POST /items", summary(50_000, 120.0, 0)),
            ],
        }
    }

    #[test]
    fn checks_the_targets() {
        let targets = report().targets();
        let ok: Vec<bool> = targets.iter().map(|t| t.ok).collect();
        // 20,000 req/s ok; GET p99 ok; POST p99 120 ms missed; RSS ok; median start-up 40 ms ok.
        assert_eq!(ok, [true, true, false, true, true]);
    }

    #[test]
    fn json_has_the_figures() {
        let json = report().json();
        assert_eq!(json["endpoints"][0]["requests_per_s"], 20_000.0);
        assert_eq!(json["endpoints"][1]["latency_ms"]["p99"], 120.0);
        assert_eq!(json["server"]["startup_median_ms"], 40.0);
        assert_eq!(json["server"]["peak_rss_mib"], 20.0);
        assert!(report().table().contains("GET /items/{id}"));
    }
}
