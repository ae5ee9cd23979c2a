//! Throwaway PostgreSQL clusters (`PgCluster`) in a temporary directory.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::tls::ServerTls;

/// How to start a throwaway cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// Trade durability for speed (fsync off): for tests only.
    pub fast_unsafe: bool,
    pub max_connections: u32,
    /// Serve TLS with this certificate and accept TCP clients only over TLS and with a
    /// SCRAM-SHA-256 password (`pg_hba.conf`: `hostssl … scram-sha-256`, no `host` line, so a
    /// plaintext client is refused); the superuser logs in over the unix socket
    /// ([`PgCluster::socket_url`]). `None`: trust on loopback, no TLS.
    pub tls: Option<ServerTls>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            port: None,
            fast_unsafe: false,
            max_connections: 300,
            tls: None,
        }
    }
}

/// A PostgreSQL cluster in a temporary directory, owned by an unprivileged account when we run as
/// root (initdb and postgres refuse to run as root). Stopped and removed on drop unless leaked.
#[derive(Debug)]
pub struct PgCluster {
    data_dir: PathBuf,
    port: u16,
    bin_dir: PathBuf,
    run_as: Option<String>,
    remove_on_drop: bool,
}

impl PgCluster {
    /// initdb + pg_ctl start in a fresh temporary directory.
    pub fn start(options: &ClusterOptions) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = nix::unistd::geteuid()
            .is_root()
            .then(|| "postgres".to_owned());
        let port = match options.port {
            Some(p) => p,
            None => free_port()?,
        };
        let data_dir =
            std::env::temp_dir().join(format!("items-pg-{}-{}", std::process::id(), port));
        if data_dir.exists() {
            fs::remove_dir_all(&data_dir).ok();
        }
        let cluster = Self {
            data_dir,
            port,
            bin_dir,
            run_as,
            remove_on_drop: true,
        };
        cluster.initdb()?;
        if let Some(tls) = &options.tls {
            cluster.require_tls(tls)?;
        }
        cluster.pg_ctl_start(options)?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A program of the PostgreSQL installation that runs this cluster (`pgbench`, `psql` …).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// URL of a database on this cluster (user `postgres`, trust authentication on loopback).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// URL of a database on this cluster as the superuser over the unix socket (trust), which a
    /// TLS cluster's `pg_hba.conf` leaves as the only way in without TLS and a password.
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "postgres:///{database}?user=postgres&host={}&port={}",
            self.data_dir.display(),
            self.port
        )
    }

    /// Keep the cluster running after this value is dropped.
    pub fn leak(mut self) -> (PathBuf, u16) {
        self.remove_on_drop = false;
        (self.data_dir.clone(), self.port)
    }

    /// Stops the server (fast shutdown) and removes the data directory.
    pub fn stop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        self.remove_on_drop = false;
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = fs::remove_dir_all(&self.data_dir);
    }

    fn pg_command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let out = self
            .pg_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Certificate, key and `pg_hba.conf` of a TLS-only cluster ([`ClusterOptions::tls`]).
    fn require_tls(&self, tls: &ServerTls) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let owner = match &self.run_as {
            Some(user) => Some(
                nix::unistd::User::from_name(user)?.with_context(|| format!("no user {user}"))?,
            ),
            None => None,
        };
        let files = [
            ("server.crt", &tls.cert_pem),
            ("server.key", &tls.key_pem),
            (
                "pg_hba.conf",
                &"local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n".to_owned(),
            ),
        ];
        for (name, text) in files {
            let path = self.data_dir.join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            // PostgreSQL refuses a key file that others may read.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            if let Some(owner) = &owner {
                std::os::unix::fs::chown(
                    &path,
                    Some(owner.uid.as_raw()),
                    Some(owner.gid.as_raw()),
                )?;
            }
        }
        Ok(())
    }

    fn pg_ctl_start(&self, options: &ClusterOptions) -> anyhow::Result<()> {
        let mut server_opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={} -c shared_buffers=128MB",
            self.port,
            self.data_dir.display(),
            options.max_connections
        );
        if options.fast_unsafe {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if options.tls.is_some() {
            server_opts
                .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.data_dir.join("server.log");
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-o", &server_opts, "-w", "-t", "30", "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let server_log = fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}{}\n{server_log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("status")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory holding initdb/pg_ctl: `PG_BIN_DIR`, else `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // Resolve symlinks (Debian links some tools into /usr/local/bin).
                let real = fs::canonicalize(dir.join("initdb"))?;
                if let Some(parent) = real.parent()
                    && parent.join("pg_ctl").is_file()
                {
                    return Ok(parent.to_path_buf());
                }
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).context(
        "no PostgreSQL server binaries found: install the `postgresql` package, put initdb/pg_ctl \
         on PATH, or set PG_BIN_DIR (or set DATABASE_URL to use an existing server)",
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// URL of the machine-wide shared test cluster, started on first use and reused afterwards.
pub fn shared_cluster_url() -> anyhow::Result<String> {
    let dir = std::env::temp_dir();
    let lock = File::create(dir.join("items-testkit.lock")).context("creating the lock file")?;
    lock.lock().context("locking the shared cluster")?;
    let state = dir.join("items-testkit.state");
    if let Ok(text) = fs::read_to_string(&state)
        && let Some((data_dir, port)) = text.trim().split_once('\n')
        && let Ok(port) = port.parse::<u16>()
    {
        let existing = PgCluster {
            data_dir: PathBuf::from(data_dir),
            port,
            bin_dir: find_bin_dir()?,
            run_as: nix::unistd::geteuid()
                .is_root()
                .then(|| "postgres".to_owned()),
            remove_on_drop: false,
        };
        if existing.is_running() {
            return Ok(existing.url("postgres"));
        }
    }
    let cluster = PgCluster::start(&ClusterOptions {
        fast_unsafe: true,
        ..ClusterOptions::default()
    })?;
    let url = cluster.url("postgres");
    let (data_dir, port) = cluster.leak();
    fs::write(&state, format!("{}\n{port}", data_dir.display()))?;
    // Give the postmaster a moment to accept connections from every test process.
    std::thread::sleep(Duration::from_millis(50));
    Ok(url)
}
