//! CPU time from `/proc` (Linux): of one process (all its threads), and of a PostgreSQL cluster
//! (the postmaster and every backend it forked, those that exited included).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// USER_HZ: the unit of the `/proc/<pid>/stat` times, 100 on Linux.
const TICKS_PER_SECOND: u64 = 100;

/// The times of one `/proc/<pid>/stat` line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// utime + stime: the process's own CPU.
    own: u64,
    /// stime alone: CPU in the kernel on the process's behalf (system calls, wake-ups).
    system: u64,
    /// cutime + cstime: CPU of its children that exited and were waited for.
    children: u64,
}

fn parse_stat(line: &str) -> Option<Stat> {
    // Fields after the parenthesised command name (which may hold spaces): state is the 3rd
    // field, ppid the 4th, utime/stime the 14th/15th, cutime/cstime the 16th/17th.
    let rest = line.get(line.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        own: field(14)? + field(15)?,
        system: field(15)?,
        children: field(16)? + field(17)?,
    })
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// User + system CPU of a live process so far (all its threads).
pub(crate) fn process(pid: u32) -> Option<Duration> {
    stat(pid).map(|s| ticks(s.own))
}

/// How long the threads of a live process have waited, runnable, for a CPU so far: the second
/// field of `/proc/<pid>/task/<tid>/schedstat` (nanoseconds), summed over its threads. Requests
/// wait as long as the worker thread does: on a busy machine this, not the service's own work,
/// is where the latency tail comes from.
fn runqueue_wait(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let nanos = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .fold(None, |sum: Option<u64>, n| Some(sum.unwrap_or(0) + n));
    // No thread's schedstat read (no CONFIG_SCHED_INFO, or the process gone): unknown, not 0.
    nanos.map(Duration::from_nanos)
}

/// User + system CPU of a PostgreSQL cluster so far: the postmaster's own, its exited children's
/// (reaped into its cutime/cstime) and its live children's (backends, background workers).
pub(crate) fn cluster(postmaster: u32) -> Option<Duration> {
    let root = stat(postmaster)?;
    let live: u64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|s| s.ppid == postmaster)
        .map(|s| s.own + s.children)
        .sum();
    Some(ticks(root.own + root.children + live))
}

/// The postmaster's pid: the first line of `postmaster.pid` in the data directory.
pub(crate) fn postmaster_pid(data_dir: &Path) -> anyhow::Result<u32> {
    let path = data_dir.join("postmaster.pid");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("no pid on the first line of {}", path.display()))
}

/// CPU of the service and of PostgreSQL, read before and after a measured run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    service: Option<Duration>,
    service_system: Option<Duration>,
    service_wait: Option<Duration>,
    postgres: Option<Duration>,
}

/// CPU microseconds per request of the service and of PostgreSQL over one run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PerRequest {
    pub(crate) service_us: Option<f64>,
    /// The part of `service_us` spent in the kernel.
    pub(crate) service_system_us: Option<f64>,
    /// Time the service's threads waited for a CPU while runnable.
    pub(crate) service_wait_us: Option<f64>,
    pub(crate) postgres_us: Option<f64>,
}

impl Sample {
    /// Now, for the service `service` (if any) and the cluster under `postmaster`.
    pub(crate) fn take(service: Option<u32>, postmaster: u32) -> Self {
        // One read of the service's stat: its total and its system part from the same moment.
        let service_stat = service.and_then(stat);
        Self {
            service: service_stat.map(|s| ticks(s.own)),
            service_system: service_stat.map(|s| ticks(s.system)),
            service_wait: service.and_then(runqueue_wait),
            postgres: cluster(postmaster),
        }
    }

    /// CPU per request between `self` and a later sample `after`, over `requests`.
    pub(crate) fn per_request(&self, after: &Self, requests: u64) -> PerRequest {
        let per = |before: Option<Duration>, after: Option<Duration>| {
            let spent = after?.checked_sub(before?)?;
            (requests > 0).then(|| spent.as_secs_f64() * 1e6 / requests as f64)
        };
        PerRequest {
            service_us: per(self.service, after.service),
            service_system_us: per(self.service_system, after.service_system),
            service_wait_us: per(self.service_wait, after.service_wait),
            postgres_us: per(self.postgres, after.postgres),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "4242 (postgres: x (y) ) S 17 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 10 5 20 0 1 0 1234 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                own: 325,
                system: 75,
                children: 15
            })
        );
        assert_eq!(parse_stat("4242 (x) S 17"), None);
        assert_eq!(ticks(325), Duration::from_millis(3250));
    }

    #[test]
    fn this_process_has_spent_cpu_and_per_request_divides_the_difference() {
        let me = std::process::id();
        assert!(process(me).is_some());
        assert!(runqueue_wait(me).is_some());
        let before = Sample {
            service: Some(Duration::from_millis(100)),
            service_system: Some(Duration::from_millis(40)),
            service_wait: Some(Duration::from_millis(10)),
            postgres: Some(Duration::from_millis(1000)),
        };
        let after = Sample {
            service: Some(Duration::from_millis(300)),
            service_system: Some(Duration::from_millis(90)),
            service_wait: Some(Duration::from_millis(510)),
            postgres: None,
        };
        let per = before.per_request(&after, 1000);
        assert_eq!(per.service_us, Some(200.0));
        assert_eq!(per.service_system_us, Some(50.0));
        assert_eq!(per.service_wait_us, Some(500.0));
        assert_eq!(per.postgres_us, None);
        assert_eq!(before.per_request(&after, 0).service_us, None);
    }
}
