//! PostgreSQL alone, driven by `pgbench` with the service's own statement for each endpoint
//! (prepared, `-M prepared`), the same number of clients as wrk's connections: the limit the
//! service is measured against.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use items_repository::bench_statements as statements;

use super::wrk::Work;

/// A pgbench custom script and the `-D name=value` variables it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Script {
    pub(crate) text: String,
    pub(crate) defines: Vec<(String, String)>,
}

/// The script that runs what the service runs for one request of `work`: its statement with its
/// `$n` parameters as pgbench variables `:pn`, which `-M prepared` binds as parameters.
pub(crate) fn script(work: Work, seed_items: i64) -> Script {
    let define = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    match work {
        // An id drawn uniformly from the seeded ones, as get_item.lua draws them.
        Work::GetItem => Script {
            text: format!(
                "\\set p1 random(1, {seed_items})\n{};\n",
                variables(statements::SELECT_ITEM)
            ),
            defines: Vec::new(),
        },
        // The first page of 50: after id 0, one row more than the page to know if there is a next.
        Work::ListItems => Script {
            text: format!("{};\n", variables(statements::LIST_ITEMS)),
            defines: define(&[("p1", "0".to_owned()), ("p2", "51".to_owned())]),
        },
        // create_item.lua's body, without an Idempotency-Key: one INSERT … RETURNING.
        Work::CreateItem => Script {
            text: format!("{};\n", variables(statements::INSERT_ITEM)),
            defines: define(&[
                ("p1", "bench item".to_owned()),
                ("p2", "created by cargo xtask bench".to_owned()),
            ]),
        },
    }
}

/// `$1`, `$2` … → `:p1`, `:p2` …
fn variables(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str(":p");
        } else {
            out.push(c);
        }
    }
    out
}

/// pgbench's summary of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub(crate) transactions: u64,
    pub(crate) failed: u64,
    /// Transactions per second, without the initial connection time.
    pub(crate) tps: f64,
    pub(crate) latency_average_ms: f64,
}

/// How to drive one pgbench run.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) pgbench: &'a Path,
    pub(crate) database_url: &'a str,
    pub(crate) clients: u32,
    pub(crate) threads: u32,
    pub(crate) duration: Duration,
}

impl Run<'_> {
    /// Writes `script` into `dir` and runs it.
    pub(crate) async fn script(
        &self,
        dir: &Path,
        name: &str,
        script: &Script,
    ) -> anyhow::Result<Summary> {
        let path = dir.join(name);
        std::fs::write(&path, &script.text)
            .with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = tokio::process::Command::new(self.pgbench);
        cmd.args(["--no-vacuum", "--protocol=prepared"])
            .arg(format!("--client={}", self.clients))
            .arg(format!("--jobs={}", self.threads.min(self.clients)))
            .arg(format!("--time={}", self.duration.as_secs().max(1)))
            .arg(format!("--file={}", path.display()));
        for (name, value) in &script.defines {
            cmd.arg(format!("--define={name}={value}"));
        }
        let out = cmd
            .arg(self.database_url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {}", self.pgbench.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "pgbench failed ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("reading pgbench's output:\n{stdout}"))
    }
}

/// Reads the summary lines of pgbench's output (PostgreSQL 14 and later).
pub(crate) fn parse(output: &str) -> anyhow::Result<Summary> {
    let after = |prefix: &str| -> anyhow::Result<&str> {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` line"))
    };
    let first_number = |text: &str| -> anyhow::Result<f64> {
        let number = text.split_whitespace().next().unwrap_or_default();
        number
            .parse()
            .with_context(|| format!("`{number}` is not a number"))
    };
    let failed = match after("number of failed transactions:") {
        Ok(text) => first_number(text)? as u64,
        Err(_) => 0,
    };
    Ok(Summary {
        transactions: first_number(after("number of transactions actually processed:")?)? as u64,
        failed,
        tps: first_number(after("tps =")?)?,
        latency_average_ms: first_number(after("latency average =")?)?,
    })
}

/// pgbench from the PostgreSQL installation whose initdb started the cluster.
pub(crate) fn find(cluster: &items_testkit::PgCluster) -> anyhow::Result<PathBuf> {
    let path = cluster.tool("pgbench");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: pgbench comes with PostgreSQL's server package (Debian: postgresql-<version>, \
         or postgresql-contrib on older releases)",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "pgbench (15.20 (Debian 15.20-0+deb12u1))\n\
        transaction type: /tmp/get_item.sql\n\
        scaling factor: 1\n\
        query mode: prepared\n\
        number of clients: 200\n\
        number of threads: 2\n\
        maximum number of tries: 1\n\
        duration: 10 s\n\
        number of transactions actually processed: 871234\n\
        number of failed transactions: 0 (0.000%)\n\
        latency average = 2.285 ms\n\
        initial connection time = 160.772 ms\n\
        tps = 87523.101112 (without initial connection time)\n";

    #[test]
    fn reads_the_summary() -> anyhow::Result<()> {
        let s = parse(OUTPUT)?;
        assert_eq!(s.transactions, 871_234);
        assert_eq!(s.failed, 0);
        assert!((s.tps - 87_523.101_112).abs() < 1e-6);
        assert!((s.latency_average_ms - 2.285).abs() < 1e-9);
        assert!(parse("pgbench (15)\n").is_err());
        Ok(())
    }

    #[test]
    fn scripts_run_the_services_statements_with_pgbench_variables() {
        let get = script(Work::GetItem, 10_000);
        assert!(get.text.starts_with("\\set p1 random(1, 10000)\n"));
        assert!(
            get.text.contains("FROM items WHERE id = :p1;"),
            "{}",
            get.text
        );
        let list = script(Work::ListItems, 10_000);
        assert!(
            list.text.contains("WHERE id > :p1 ORDER BY id LIMIT :p2;"),
            "{}",
            list.text
        );
        assert_eq!(list.defines[1], ("p2".to_owned(), "51".to_owned()));
        let create = script(Work::CreateItem, 10_000);
        assert!(
            create
                .text
                .starts_with("INSERT INTO items (name, description) VALUES (:p1, :p2) RETURNING")
        );
        for s in [get, list, create] {
            assert!(!s.text.contains('$'), "{}", s.text);
        }
    }
}
