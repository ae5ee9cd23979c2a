//! Instances: how a revision's container is started from its root file system, probed, kept
//! and stopped (Cloud Run container runtime contract,
//! <https://cloud.google.com/run/docs/container-contract>).
//!
//! - Started through util-linux `unshare --mount-proc=/proc --root=ROOTFS --wd=DIR
//!   [--setgid G --setuid U] -- ARGV`: a chroot into the unpacked image with a `/proc` of its own,
//!   as the image's `User`, on the host network (the container reaches PostgreSQL on 127.0.0.1).
//!   `unshare` execs the entrypoint in place, so the pid we hold is the container's. Each instance
//!   has its own process group (a Ctrl-C at the terminal reaches the runtime, which then stops
//!   the instances itself).
//! - Startup probe: Cloud Run's default is a TCP probe on `PORT` with `timeoutSeconds: 240,
//!   periodSeconds: 240, failureThreshold: 1`, i.e. the port must accept a connection within
//!   240 s (<https://cloud.google.com/run/docs/configuring/healthchecks>, "The default TCP startup
//!   probe"); locally the connection is tried every 50 ms within that time. An HTTP probe passes on
//!   any status from 200 up to 399 ("Any response between 200 and 400 is a success", same page),
//!   after `initial_delay`, every `period`, each attempt bounded by `timeout`, and fails after
//!   `failure_threshold` consecutive failures. No request is routed to an instance before its probe
//!   passes.
//! - One instance per revision. While the revision has traffic or a tag, an instance that exits
//!   is replaced by a new one (after 1 s, doubling up to 10 s while starts keep failing), as
//!   Cloud Run keeps a serving revision's instances (with a back-off on crash loops, same page:
//!   "Cloud Run limits instance restarts to prevent uncontrolled crash loops").
//! - Stopping: the instance leaves the routing, the requests already forwarded to it are answered
//!   (bounded by Cloud Run's 300 s default request timeout), then SIGTERM, then SIGKILL after the
//!   grace period (Cloud Run: 10 s; container contract, "Instance shutdown"; Cloud Run sends
//!   SIGTERM "before the container instance terminates, due to an event like scale down or
//!   deleted revision", <https://cloud.google.com/run/docs/samples/cloudrun-sigterm-handler>).
//!   Waiting for the forwarded requests first is our reading: Cloud Run scales down idle
//!   instances, and its exact order when traffic leaves a revision is not documented.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use oci_spec::image::ImageConfiguration;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use crate::{Inner, InstanceInfo, InstanceLog, RevisionSpec, lock};

/// Cloud Run's default TCP startup probe: the port must accept within 240 s.
const DEFAULT_TCP_PROBE: Duration = Duration::from_secs(240);
const TCP_RETRY: Duration = Duration::from_millis(50);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Cloud Run's default request timeout: the longest a stopping instance's requests may run.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// One request's claim on a ready instance; dropping it ends the request.
#[derive(Debug)]
pub struct Lease {
    revision: Arc<Revision>,
    pid: u32,
    pub port: u16,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((_, n)) = lock(&self.revision.instances)
            .iter_mut()
            .find(|(i, _)| i.pid == self.pid)
        {
            *n = n.saturating_sub(1);
        }
        self.revision.changed.notify_waiters();
    }
}

/// The host tools instances are started with.
#[derive(Debug, Clone)]
pub struct Launcher {
    unshare: PathBuf,
    mknod: Option<PathBuf>,
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

impl Launcher {
    /// Finds `unshare` and checks that it may chroot and mount `/proc` here (root, or the
    /// capabilities CAP_SYS_CHROOT and CAP_SYS_ADMIN), so that a missing privilege shows at start
    /// rather than as every revision failing to deploy.
    pub async fn find() -> anyhow::Result<Self> {
        let unshare = which("unshare").context(
            "util-linux `unshare` is not on PATH (Debian package util-linux): it starts containers",
        )?;
        let tool = which("true").context("`true` is not on PATH")?;
        let probe = Command::new(&unshare)
            .args(["--mount-proc=/proc", "--root=/", "--wd=/", "--"])
            .arg(&tool)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .context("running unshare")?;
        if !probe.status.success() {
            bail!(
                "`unshare --mount-proc --root` does not work here (it needs root): {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            );
        }
        Ok(Self {
            unshare,
            mknod: which("mknod"),
        })
    }
}

/// How a revision's container is started: argv, environment, user and working directory.
#[derive(Debug, Clone)]
pub struct Launch {
    pub argv: Vec<String>,
    /// Everything but `PORT`, which each instance gets on its own.
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub working_dir: String,
}

impl Launch {
    /// Cloud Run's (Kubernetes') rules: `command` replaces the image's Entrypoint and `args` its
    /// Cmd; a command without args drops the image's Cmd
    /// (<https://cloud.google.com/run/docs/reference/rest/v2/Container>: "command: Entrypoint
    /// array... The docker image's ENTRYPOINT is used if this is not provided"; "args: ... The
    /// docker image's CMD is used if this is not provided"). Environment: the image's `Env`, then
    /// the revision's, then `PORT`, `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`, which Cloud Run
    /// sets and a revision cannot override (container contract, "Environment variables").
    pub fn new(
        spec: &RevisionSpec,
        config: &ImageConfiguration,
        rootfs: &Path,
    ) -> anyhow::Result<Self> {
        let platform = [
            ("K_SERVICE", spec.service.name.clone()),
            ("K_REVISION", spec.name.clone()),
            ("K_CONFIGURATION", spec.configuration.clone()),
        ];
        Self::build(
            [&spec.command, &spec.args],
            &spec.env,
            &platform,
            config,
            rootfs,
        )
    }

    /// The launch of a container: `[command, args]` and `env` as the resource gives them, then
    /// the variables the platform sets (`platform`, which the resource cannot override).
    pub fn build(
        [command, args]: [&Vec<String>; 2],
        own_env: &[(String, String)],
        platform: &[(&str, String)],
        config: &ImageConfiguration,
        rootfs: &Path,
    ) -> anyhow::Result<Self> {
        let image = config.config().clone().unwrap_or_default();
        let entrypoint = image.entrypoint().clone().unwrap_or_default();
        let cmd = image.cmd().clone().unwrap_or_default();
        let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
            (false, false) => command.iter().chain(args).cloned().collect(),
            (false, true) => command.clone(),
            (true, false) => entrypoint.into_iter().chain(args.clone()).collect(),
            (true, true) => entrypoint.into_iter().chain(cmd).collect(),
        };
        if argv.is_empty() {
            bail!("the image has no Entrypoint or Cmd and the resource gives no command");
        }
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((key.to_owned(), value.to_owned())),
        };
        for pair in image.env().clone().unwrap_or_default() {
            let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
            set(key, value);
        }
        for (key, value) in own_env {
            set(key, value);
        }
        for (key, value) in platform {
            set(key, value);
        }
        let (uid, gid) = resolve_user(image.user().as_deref().unwrap_or(""), rootfs)?;
        let working_dir = image
            .working_dir()
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        Ok(Self {
            argv,
            env,
            uid,
            gid,
            working_dir,
        })
    }

    /// `unshare` starting this launch from `rootfs` (chroot, own `/proc`, the image's user, its
    /// own process group, killed when dropped); output piped, environment exactly `env`.
    pub(crate) fn command(&self, launcher: &Launcher, rootfs: &Path) -> Command {
        let mut command = Command::new(&launcher.unshare);
        command
            .arg("--mount-proc=/proc")
            .arg(format!("--root={}", rootfs.display()))
            .arg(format!("--wd={}", self.working_dir));
        if self.uid != 0 || self.gid != 0 {
            command
                .args(["--setgid", &self.gid.to_string()])
                .args(["--setuid", &self.uid.to_string()]);
        }
        command
            .arg("--")
            .args(&self.argv)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

/// The image's `User` (`uid`, `uid:gid`, `name`, `name:group`; empty = root) as numbers, names
/// looked up in the image's `/etc/passwd` and `/etc/group`; without a group, the user's primary
/// group (or 0), as container engines do.
fn resolve_user(user: &str, rootfs: &Path) -> anyhow::Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let lookup = |table: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        table.lines().find_map(|line| {
            let parts: Vec<&str> = line.split(':').collect();
            let matches = parts.first() == Some(&name) || parts.get(2) == Some(&name);
            if !matches {
                return None;
            }
            let id = parts.get(2)?.parse().ok()?;
            let primary = parts.get(field).and_then(|g| g.parse().ok());
            Some((id, primary))
        })
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, primary) = match user_part.parse::<u32>() {
        Ok(uid) => (uid, lookup(&passwd, user_part, 3).and_then(|(_, g)| g)),
        Err(_) => lookup(&passwd, user_part, 3)
            .with_context(|| format!("user {user_part:?} is not in the image's /etc/passwd"))?,
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                lookup(&group, g, 99)
                    .with_context(|| format!("group {g:?} is not in the image's /etc/group"))?
                    .0
            }
        },
        None => primary.unwrap_or(0),
    };
    Ok((uid, gid))
}

/// Gets an unpacked root file system ready to run: `/proc` (mounted per instance), the usual
/// device nodes, the host's `/etc/hosts` and `/etc/resolv.conf` where the image has none, and the
/// revision's secret files (0444, in directories made 0555, as Cloud Run mounts secret volumes:
/// <https://cloud.google.com/run/docs/configuring/services/secrets>).
pub fn prepare_rootfs(
    rootfs: &Path,
    files: &[(PathBuf, Vec<u8>)],
    launcher: &Launcher,
) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o555)
        .create(rootfs.join("proc"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(rootfs.join("dev"))?;
    if let Some(mknod) = &launcher.mknod {
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
        ] {
            let node = rootfs.join("dev").join(name);
            if std::fs::symlink_metadata(&node).is_ok() {
                continue;
            }
            let made = std::process::Command::new(mknod)
                .args(["-m", "666"])
                .arg(&node)
                .args(["c", &major.to_string(), &minor.to_string()])
                .status();
            if !made.is_ok_and(|s| s.success()) {
                tracing::warn!("could not make {}", node.display());
            }
        }
    }
    if rootfs.join("etc").is_dir() {
        for name in ["hosts", "resolv.conf"] {
            let target = rootfs.join("etc").join(name);
            if std::fs::symlink_metadata(&target).is_err()
                && let Ok(bytes) = std::fs::read(Path::new("/etc").join(name))
            {
                std::fs::write(&target, bytes)?;
            }
        }
    }
    for (path, content) in files {
        write_secret_file(rootfs, path, content)?;
    }
    Ok(())
}

/// Writes one secret file at `path` inside `rootfs` (0444; missing directories on the way made
/// 0555, as a mounted secret volume is). The content is written beside the file and renamed
/// over it, so a reader sees the old content or the new, never a part.
pub fn write_secret_file(rootfs: &Path, path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if !path.is_absolute() {
        bail!("secret file path {} is not absolute", path.display());
    }
    let relative = crate::image::normal_relative(path)
        .with_context(|| format!("secret file path {} leaves the root", path.display()))?;
    let target = crate::image::inside(rootfs, &relative).with_context(|| {
        format!(
            "secret file path {} goes through a symbolic link",
            path.display()
        )
    })?;
    let mut dir = rootfs.to_path_buf();
    if let Some(parent) = relative.parent() {
        for component in parent.components() {
            dir.push(component);
            if !dir.exists() {
                std::fs::create_dir(&dir)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555))?;
            }
        }
    }
    let name = target
        .file_name()
        .with_context(|| format!("secret file path {} names no file", path.display()))?;
    let partial = target.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&partial, content)
        .with_context(|| format!("writing secret file {}", path.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o444))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("replacing secret file {}", path.display()))?;
    Ok(())
}

/// A started instance whose probe passed.
#[derive(Debug)]
struct Running {
    child: Child,
    pid: u32,
}

/// One deployed revision: its spec, root file system, instances and supervisor.
#[derive(Debug)]
pub struct Revision {
    pub spec: RevisionSpec,
    pub rootfs: PathBuf,
    launch: Launch,
    /// Each instance with the number of requests forwarded to it and not answered yet.
    instances: Mutex<Vec<(InstanceInfo, usize)>>,
    /// Signalled whenever an instance becomes ready or goes.
    changed: Notify,
    /// Set while the revision keeps an instance: the stop switch and the supervisor.
    supervisor: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
    /// Supervisors told to stop, not yet awaited.
    stopping: Mutex<Vec<JoinHandle<()>>>,
    /// Serialises activations.
    activation: tokio::sync::Mutex<()>,
}

impl Revision {
    pub fn new(spec: RevisionSpec, rootfs: PathBuf, launch: Launch) -> Self {
        Self {
            spec,
            rootfs,
            launch,
            instances: Mutex::new(Vec::new()),
            changed: Notify::new(),
            supervisor: Mutex::new(None),
            stopping: Mutex::new(Vec::new()),
            activation: tokio::sync::Mutex::new(()),
        }
    }

    pub fn is_active(&self) -> bool {
        lock(&self.supervisor).is_some()
    }

    pub fn instances(&self) -> Vec<InstanceInfo> {
        lock(&self.instances)
            .iter()
            .map(|(info, _)| info.clone())
            .collect()
    }

    /// A ready instance, leased for one request (its in-flight count is raised until the lease
    /// is dropped, and an instance is stopped only once that count is back to zero).
    fn lease(self: &Arc<Self>) -> Option<Lease> {
        let mut instances = lock(&self.instances);
        let (info, in_flight) = instances.iter_mut().find(|(i, _)| i.ready)?;
        *in_flight += 1;
        Some(Lease {
            revision: self.clone(),
            pid: info.pid,
            port: info.port,
        })
    }

    /// A lease on a ready instance, waiting up to `limit` for one (an instance being replaced).
    pub async fn wait_ready(self: &Arc<Self>, limit: Duration) -> Option<Lease> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(lease) = self.lease() {
                return Some(lease);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lease();
            }
        }
    }

    fn in_flight(&self, pid: u32) -> usize {
        lock(&self.instances)
            .iter()
            .find(|(i, _)| i.pid == pid)
            .map_or(0, |(_, n)| *n)
    }

    /// Takes the instance out of routing and waits (up to `limit`) for its requests to finish.
    async fn drain(&self, pid: u32, limit: Duration) {
        if let Some((info, _)) = lock(&self.instances).iter_mut().find(|(i, _)| i.pid == pid) {
            info.ready = false;
        }
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight(pid) == 0
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return;
            }
        }
    }

    fn set_instance(&self, info: InstanceInfo) {
        let mut instances = lock(&self.instances);
        match instances.iter_mut().find(|(i, _)| i.pid == info.pid) {
            Some((slot, _)) => *slot = info,
            None => instances.push((info, 0)),
        }
        drop(instances);
        self.changed.notify_waiters();
    }

    fn remove_instance(&self, pid: u32) {
        lock(&self.instances).retain(|(i, _)| i.pid != pid);
        self.changed.notify_waiters();
    }

    /// Starts an instance and waits for its probe; then keeps one running until [`Self::retire`].
    /// `Err` is the revision's not-ready reason.
    pub(crate) async fn activate(self: &Arc<Self>, inner: &Arc<Inner>) -> Result<(), String> {
        let _serial = self.activation.lock().await;
        if self.is_active() {
            return Ok(());
        }
        let (stop, mut stopped) = watch::channel(false);
        let first = self.start_instance(inner, &mut stopped).await?;
        let task = tokio::spawn(supervise(self.clone(), inner.clone(), first, stopped));
        *lock(&self.supervisor) = Some((stop, task));
        Ok(())
    }

    /// Stops keeping an instance: SIGTERM now, SIGKILL after the grace period (in the background;
    /// [`Self::stopped`] waits for it).
    pub fn retire(&self) {
        if let Some((stop, task)) = lock(&self.supervisor).take() {
            let _ = stop.send(true);
            lock(&self.stopping).push(task);
        }
    }

    /// Waits until every retired instance is gone.
    pub async fn stopped(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *lock(&self.stopping));
        for task in tasks {
            let _ = task.await;
        }
    }

    fn not_ready(&self, reason: &str) -> String {
        format!(
            "Revision '{}' is not ready and cannot serve traffic. {reason}",
            self.spec.name
        )
    }

    /// Spawns the container, forwards its output, and waits for the startup probe, the
    /// container's exit or `stop`, whichever comes first.
    async fn start_instance(
        &self,
        inner: &Inner,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Running, String> {
        let port = free_port().map_err(|e| self.not_ready(&format!("no free port: {e}")))?;
        let mut child = self
            .command(&inner.launcher, port)
            .spawn()
            .map_err(|e| self.not_ready(&format!("The container could not be started: {e}")))?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(revision = %self.spec.name, pid, port, "instance started");
        self.set_instance(InstanceInfo {
            pid,
            port,
            ready: false,
        });
        let log = &inner.opts.instance_log;
        if let Some(out) = child.stdout.take() {
            drop(forward_lines(out, log.clone(), self.spec.name.clone()));
        }
        if let Some(err) = child.stderr.take() {
            drop(forward_lines(err, log.clone(), self.spec.name.clone()));
        }
        let probe = self.probe(port);
        let outcome = tokio::select! {
            passed = probe => passed,
            status = child.wait() => {
                self.remove_instance(pid);
                let code = status.map_or_else(|e| e.to_string(), |s| match s.code() {
                    Some(c) => format!("Container called exit({c})."),
                    None => format!("Container terminated: {s}."),
                });
                // Cloud Run's condition for a container that never listened
                // (terraform-provider-google acceptance tests match this wording).
                return Err(self.not_ready(&format!(
                    "The user-provided container failed to start and listen on the port defined provided by the PORT={port} environment variable within the allocated timeout. This can happen when the container port is misconfigured or if the timeout is too short. The health check timeout can be extended. Logs for this revision might contain more information. {code}"
                )));
            }
            _ = stop.wait_for(|s| *s) => Err("stopped".to_owned()),
        };
        match outcome {
            Ok(()) => {
                self.set_instance(InstanceInfo {
                    pid,
                    port,
                    ready: true,
                });
                tracing::info!(revision = %self.spec.name, pid, port, "instance ready");
                Ok(Running { child, pid })
            }
            Err(reason) => {
                // Cloud Run shuts down a container whose startup probe failed.
                let _ = child.start_kill();
                let _ = child.wait().await;
                self.remove_instance(pid);
                Err(reason)
            }
        }
    }

    fn command(&self, launcher: &Launcher, port: u16) -> Command {
        let mut command = self.launch.command(launcher, &self.rootfs);
        command.env("PORT", port.to_string());
        command
    }

    /// The startup probe; `Err` is the not-ready reason.
    async fn probe(&self, port: u16) -> Result<(), String> {
        let Some(http) = &self.spec.startup_probe else {
            let deadline = Instant::now() + DEFAULT_TCP_PROBE;
            while Instant::now() < deadline {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
                sleep(TCP_RETRY).await;
            }
            return Err(self.not_ready(&format!(
                "The user-provided container failed to start and listen on the port defined provided by the PORT={port} environment variable within the allocated timeout."
            )));
        };
        let probe_port = if http.port == 0 || http.port == self.spec.container_port {
            port
        } else {
            http.port
        };
        let url = format!("http://127.0.0.1:{probe_port}{}", http.path);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        sleep(http.initial_delay).await;
        let mut failures = 0;
        loop {
            let started = Instant::now();
            let passed = match timeout(http.timeout, client.get(&url).send()).await {
                Ok(Ok(response)) => (200..400).contains(&response.status().as_u16()),
                _ => false,
            };
            if passed {
                return Ok(());
            }
            failures += 1;
            if failures >= http.failure_threshold.max(1) {
                return Err(self.not_ready(
                    "The user-provided container failed the configured startup probe checks.",
                ));
            }
            sleep(http.period.saturating_sub(started.elapsed())).await;
        }
    }
}

/// Keeps one instance of `revision` until told to stop, then stops it.
async fn supervise(
    revision: Arc<Revision>,
    inner: Arc<Inner>,
    first: Running,
    mut stop: watch::Receiver<bool>,
) {
    let grace = inner.opts.shutdown_grace;
    let mut current = Some(first);
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut running = match current.take() {
            Some(running) => running,
            None => match revision.start_instance(&inner, &mut stop).await {
                Ok(running) => {
                    backoff = Duration::from_secs(1);
                    running
                }
                Err(reason) => {
                    if *stop.borrow() {
                        return;
                    }
                    tracing::warn!(revision = %revision.spec.name, "{reason}");
                    tokio::select! {
                        _ = sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                    continue;
                }
            },
        };
        let pid = running.pid;
        let exited = tokio::select! {
            status = running.child.wait() => Some(status),
            _ = stop.wait_for(|s| *s) => None,
        };
        match exited {
            Some(status) => {
                revision.remove_instance(pid);
                tracing::warn!(revision = %revision.spec.name, pid, ?status, "instance exited; starting a new one");
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
            None => {
                // Cloud Run stops idle instances: no new requests, the running ones finish
                // (within the request timeout), then SIGTERM.
                revision.drain(pid, DRAIN_LIMIT).await;
                terminate(&mut running.child, pid, grace, &revision.spec.name).await;
                revision.remove_instance(pid);
                return;
            }
        }
    }
}

/// SIGTERM, then SIGKILL if the process is still there after `grace`.
async fn terminate(child: &mut Child, pid: u32, grace: Duration, revision: &str) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return;
    };
    tracing::info!(revision, pid, "SIGTERM");
    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    if timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(revision, pid, "still running after {grace:?}: SIGKILL");
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Copies `stream`'s lines into the instance log under `revision`; the task ends at EOF (a job
/// attempt awaits it, so that its output is complete when it ends).
pub(crate) fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    log: InstanceLog,
    revision: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.write(&revision, &line);
        }
    })
}

/// A loopback port nobody listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}
