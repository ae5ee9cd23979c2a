//! Helpers shared by the commands, xtask-release's included: paths, cargo, the service binary,
//! child processes and signals, a minimal HTTP probe, rustls' crypto provider.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use items_testkit::ServiceLaunch;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

/// The package and binary name of the service.
pub const SERVICE: &str = "items-service";

/// The workspace root (the parent of `xtask/`), whatever the current directory is.
pub fn project_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map_or_else(|| xtask_dir.to_path_buf(), Path::to_path_buf)
}

/// rustls' process-wide crypto provider: ring, as the rest of the workspace uses (Google's
/// clients are built without their aws-lc default, which costs a long C build).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs a command's future on a current-thread tokio runtime: its exit code, or 1 with the error
/// (and its causes) on stderr. The `main` of both xtask binaries.
pub fn run_command(
    command: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `DATABASE_URL` when it is set and not empty.
pub fn database_url_from_env() -> Option<String> {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// A `cargo` command (the one running us, when known) in the workspace root.
pub fn cargo() -> tokio::process::Command {
    let mut cmd = std_cargo();
    cmd.current_dir(project_root());
    cmd.into()
}

/// The cargo that runs us (`CARGO`, else `cargo` on `PATH`), without [`package_env`], in the
/// caller's directory.
pub fn std_cargo() -> std::process::Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(program);
    for name in package_env() {
        cmd.env_remove(name);
    }
    cmd
}

/// The variables cargo (and nextest) set for the package being run or tested: `CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, …. A cargo started with them in its environment sees them as changed:
/// ring's build script reads them with `rerun-if-env-changed`, so ring and the ~17 crates above
/// it up to items-service were compiled again each time one went from `cargo xtask test` to plain
/// cargo and back. Every cargo xtask starts is started without them.
pub fn package_env() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let name = name.to_string_lossy();
            name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_MANIFEST_LINKS",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
        })
        .collect()
}

/// Builds the service binary and returns the path cargo reports for it.
pub async fn build_service(release: bool) -> anyhow::Result<PathBuf> {
    let release = if release { &["--release"][..] } else { &[] };
    cargo_build(
        SERVICE,
        &[&["--package", SERVICE, "--bin", SERVICE], release].concat(),
    )
    .await
}

/// `cargo build <args>` (cargo's output on our stderr); returns the executable cargo reports for
/// target `name`.
pub async fn cargo_build(name: &str, args: &[&str]) -> anyhow::Result<PathBuf> {
    let out = cargo()
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build {} failed ({})", args.join(" "), out.status);
    }
    executable_from_messages(&String::from_utf8_lossy(&out.stdout), name)
        .with_context(|| format!("cargo build reported no executable for {name}"))
}

/// The service `binary` as xtask starts it: from the workspace root, in the environment the
/// caller's settings describe.
pub fn service(binary: &Path) -> ServiceLaunch {
    ServiceLaunch::new(binary).current_dir(project_root())
}

/// Finds the executable of binary target `name` in cargo's JSON messages.
pub fn executable_from_messages(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// The signals xtask handles itself while a child runs, instead of dying and leaking a cluster.
#[derive(Debug)]
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// From here on SIGINT, SIGTERM and SIGHUP no longer end xtask: [`Signals::recv`] reports them.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("handling SIGHUP")?,
        })
    }

    /// The next signal received (including one that arrived before the call).
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.terminate.recv() => Signal::SIGTERM,
            _ = self.hangup.recv() => Signal::SIGHUP,
        }
    }
}

/// Which signals [`supervise`] passes on to the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Every signal: the child runs in its own process group, so the terminal's Ctrl-C reaches
    /// only xtask, which passes it on once.
    All,
    /// SIGTERM and SIGHUP only: the child shares our process group and gets the terminal's
    /// Ctrl-C directly (cargo and nextest handle it themselves).
    AllButInterrupt,
}

/// Spawns `cmd` and waits for it, passing signals on as `forward` says. A child still running
/// `kill_after` a forwarded signal is killed.
pub async fn supervise(
    cmd: &mut tokio::process::Command,
    signals: &mut Signals,
    forward: Forward,
    kill_after: Duration,
) -> anyhow::Result<ExitStatus> {
    if forward == Forward::All {
        cmd.process_group(0);
    }
    let what = format!("{:?}", cmd.as_std().get_program());
    let mut child = cmd
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            status = child.wait() => return status.with_context(|| format!("waiting for {what}")),
            sig = signals.recv() => {
                if forward == Forward::All || sig != Signal::SIGINT {
                    send(&child, sig);
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + kill_after);
            }
            () = sleep_until(deadline) => {
                eprintln!("xtask: {what} did not stop within {kill_after:?}; killing it");
                child.start_kill().ok();
                deadline = None;
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends `sig` to a running child (no-op once it has exited).
pub fn send(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// The exit code to pass on for a child's status (128 + signal number when it was killed).
pub fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// GET `path` from `addr` over HTTP/1.1 and return the status code.
pub async fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0_u8; 256];
        while !head.contains(&b'\n') {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("timed out")??;
    parse_status_line(&head).context("not an HTTP response")
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Polls `GET /health/ready` until it answers 200, the child exits, or `timeout` passes.
pub async fn wait_ready(
    addr: SocketAddr,
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{SERVICE} exited before it was ready ({status})");
        }
        if let Ok(200) = http_status(addr, items_http::HEALTH_READY).await {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let ready = items_http::HEALTH_READY;
            bail!("{SERVICE} was not ready on http://{addr}{ready} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"items_domain","kind":["lib"]},"executable":null}
not json
{"reason":"compiler-artifact","target":{"name":"items-service","kind":["bin"]},"executable":"/w/target/debug/items-service"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(messages, "items-service"),
            Some(PathBuf::from("/w/target/debug/items-service"))
        );
        assert_eq!(executable_from_messages(messages, "other"), None);
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\nx: y"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn passes_exit_codes_on() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(exit_code(ExitStatus::from_raw(0)), ExitCode::from(0));
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        // Killed by SIGINT (2).
        assert_eq!(exit_code(ExitStatus::from_raw(2)), ExitCode::from(130));
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(project_root().join("Cargo.toml").is_file());
        assert!(project_root().join("xtask").is_dir());
    }
}
