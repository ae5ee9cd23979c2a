//! The data plane of a local Cloud Run: it runs revisions as Cloud Run's container runtime contract
//! describes (<https://cloud.google.com/run/docs/container-contract>) and serves each service's
//! front end, with the IAM check Cloud Run makes before a container sees a request.
//!
//! - **Images**: a revision's image is pulled by digest from an OCI distribution registry on
//!   loopback (plain HTTP), every blob checked against its digest and cached by digest under the
//!   state directory; the layers are unpacked in order, OCI whiteouts applied, once per image;
//!   each revision's root file system is a hard-linked copy of it (`cp -al`: no data copied) with
//!   the revision's own files added ([`image`]). A container running as root could change an image
//!   file in place for every revision of that image; images running as a non-root user (ours:
//!   65532) cannot.
//! - **Instances**: the entrypoint runs from that root file system through util-linux `unshare
//!   --root --wd --setuid --setgid --mount-proc` (a chroot with its own `/proc`; the workspace
//!   forbids `unsafe`, so no `pre_exec`), on the host network, with the environment Cloud Run gives:
//!   the image's `Env`, the revision's env, then `PORT`, `K_SERVICE`, `K_REVISION`,
//!   `K_CONFIGURATION`. Locally every instance gets a free loopback port of its own as `PORT` (the
//!   revision's `container_port` cannot be shared by two instances on one host network). Secret
//!   files are written at their paths inside the root file system (files 0444, directories 0555).
//!   One instance per revision; a revision with traffic or a tag keeps it, and a new one is
//!   started if it exits ([`instance`]).
//! - **Startup probes** gate traffic: no request reaches an instance before its probe passes.
//! - **Front end**: one listener per service (and one per tag), routing by the traffic split and
//!   checking the caller's Google-signed ID token ([`iam`], [`front`]).
//! - **Retirement**: a revision left without traffic and tag gets SIGTERM, then SIGKILL after
//!   [`RuntimeOptions::shutdown_grace`] (Cloud Run: 10 s).
//! - **Faults**: added latency and a ratio of error answers for one revision, for drills.
//! - **Secret files that follow `latest`**: [`Runtime::update_files`] rewrites files in a running
//!   revision's root file system in place (the control plane calls it when a secret gets a new
//!   version; Cloud Run "Configure secrets for services": "When reading a volume, Cloud Run always
//!   fetches the secret value from the Secret Manager to use the value with the latest version").
//! - **Job tasks** run to completion ([`task`]).
//!
//! Never linked into the service binary: the control plane (`items-local-cloud`) and tests call it
//! in-process.

pub mod front;
pub mod iam;
pub mod image;
pub mod instance;
pub mod task;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};

use instance::Revision;
pub use task::{TaskExit, TaskSpec};

/// A service in one project and region (Cloud Run services are regional).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    pub project: String,
    pub region: String,
    pub name: String,
}

/// Who may invoke a service: what Cloud Run's IAM check reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iam {
    /// Members holding `roles/run.invoker` on the service: account emails
    /// (`items-gateway@p.iam.gserviceaccount.com`; a `serviceAccount:`/`user:` prefix is
    /// accepted), `allUsers` or `allAuthenticatedUsers`.
    pub invokers: Vec<String>,
    /// Audiences accepted besides the service's URLs
    /// (<https://cloud.google.com/run/docs/configuring/custom-audiences>).
    pub custom_audiences: Vec<String>,
    /// The invoker IAM check is off (`allUsers` holds the invoker role, or `--no-invoker-iam-check`).
    pub allow_unauthenticated: bool,
}

/// An HTTP startup probe (Cloud Run Admin API v2 `Probe` with `httpGet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub path: String,
    /// The port probed; the revision's `container_port` (or 0) means the instance's `PORT`.
    pub port: u16,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

impl HttpProbe {
    /// An HTTP probe of `path` with the Admin API's defaults: initial delay 0 s, period 10 s,
    /// timeout 1 s, failure threshold 3 (`google.cloud.run.v2.Probe` field docs,
    /// <https://cloud.google.com/run/docs/reference/rest/v2/Container#Probe>).
    pub fn with_defaults(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            port: 0,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
        }
    }
}

/// One revision to run.
#[derive(Clone, Debug)]
pub struct RevisionSpec {
    pub service: ServiceId,
    /// The revision's name (`<service>-<suffix>`).
    pub name: String,
    /// `HOST:PORT/REPOSITORY@sha256:HEX` on a plain-HTTP OCI distribution registry.
    pub image: String,
    /// Cloud Run (Kubernetes) semantics: `command` replaces the image's `Entrypoint`, `args` its
    /// `Cmd`; a `command` without `args` runs without the image's `Cmd`. Empty = the image's.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Secret volumes: absolute path inside the container → content.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// The revision's container port (Cloud Run default 8080). Locally each instance listens on a
    /// free loopback port of its own, given as `PORT`; this value only tells which probe ports
    /// mean "the serving port".
    pub container_port: u16,
    /// `None`: Cloud Run's default TCP startup probe on `PORT`.
    pub startup_probe: Option<HttpProbe>,
    /// `K_CONFIGURATION`.
    pub configuration: String,
}

/// One entry of a service's traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficTarget {
    pub revision: String,
    pub percent: u32,
    pub tag: Option<String>,
}

/// Faults injected in front of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Added before the request is forwarded.
    pub added_latency: Duration,
    /// The share of requests (0.0–1.0) answered with `error_status` instead of being forwarded.
    pub error_ratio: f64,
    pub error_status: u16,
}

/// Where the containers' stdout and stderr lines go.
#[derive(Clone, Debug, Default)]
pub enum InstanceLog {
    /// Each line as the container wrote it (tests read them).
    Memory(Arc<Mutex<Vec<String>>>),
    /// This process's stdout, each line prefixed with `<revision>| `.
    Stdout,
    #[default]
    Off,
}

impl InstanceLog {
    pub(crate) fn write(&self, revision: &str, line: &str) {
        match self {
            InstanceLog::Memory(lines) => lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.to_owned()),
            InstanceLog::Stdout => println!("{revision}| {line}"),
            InstanceLog::Off => {}
        }
    }
}

/// How the runtime is set up.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Blobs, root file systems and what else the runtime makes (removed by [`Runtime::shutdown`]).
    pub state_dir: PathBuf,
    /// The keys of the local "Google": `items_local_gateway::SigningKey::local_google().jwks()`.
    pub google_jwks: jsonwebtoken::jwk::JwkSet,
    pub instance_log: InstanceLog,
    /// Between SIGTERM and SIGKILL (Cloud Run: 10 s).
    pub shutdown_grace: Duration,
}

impl RuntimeOptions {
    /// Options with the local "Google" key, no instance log and Cloud Run's 10 s grace.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            google_jwks: items_local_gateway::SigningKey::local_google().jwks(),
            instance_log: InstanceLog::Off,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// One running (or starting, or stopping) instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    pub pid: u32,
    /// Its `PORT` on 127.0.0.1.
    pub port: u16,
    /// Its startup probe passed and it is not being stopped: it takes requests.
    pub ready: bool,
}

/// The local Cloud Run data plane. Cheap to clone; every clone drives the same runtime.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// A revision: its service and name.
type RevisionKey = (ServiceId, String);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) opts: RuntimeOptions,
    pub(crate) launcher: instance::Launcher,
    puller: image::Puller,
    services: Mutex<BTreeMap<ServiceId, Arc<front::Service>>>,
    revisions: Mutex<BTreeMap<RevisionKey, Arc<Revision>>>,
    faults: Mutex<HashMap<String, Fault>>,
    deploying: Mutex<BTreeMap<RevisionKey, Arc<tokio::sync::Mutex<()>>>>,
    unpacking: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn revision(&self, service: &ServiceId, name: &str) -> Option<Arc<Revision>> {
        lock(&self.revisions)
            .get(&(service.clone(), name.to_owned()))
            .cloned()
    }

    pub(crate) fn fault(&self, revision: &str) -> Option<Fault> {
        lock(&self.faults).get(revision).cloned()
    }
}

impl Runtime {
    /// Checks the tools it needs (`unshare`) and makes the state directory.
    pub async fn start(opts: RuntimeOptions) -> anyhow::Result<Runtime> {
        tokio::fs::create_dir_all(&opts.state_dir)
            .await
            .with_context(|| format!("creating {}", opts.state_dir.display()))?;
        let launcher = instance::Launcher::find().await?;
        let puller = image::Puller::new(opts.state_dir.join("blobs"))?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                opts,
                launcher,
                puller,
                services: Mutex::new(BTreeMap::new()),
                revisions: Mutex::new(BTreeMap::new()),
                faults: Mutex::new(HashMap::new()),
                deploying: Mutex::new(BTreeMap::new()),
                unpacking: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// One front end per service and region, listening on `listen` (port 0: any free port).
    /// Returns its URL (`http://127.0.0.1:N`), which is also the audience its ID tokens carry.
    /// Requests get Cloud Run's 503 until [`Runtime::set_traffic`] routes the service.
    pub async fn add_service(
        &self,
        id: ServiceId,
        listen: SocketAddr,
        iam: Iam,
    ) -> anyhow::Result<String> {
        if lock(&self.inner.services).contains_key(&id) {
            bail!("service {id:?} already has a front end");
        }
        let service = front::Service::start(&self.inner, id.clone(), listen, iam)?;
        let url = service.url.clone();
        lock(&self.inner.services).insert(id, service);
        Ok(url)
    }

    /// The URL of the service's front end, if it has one.
    pub fn service_url(&self, id: &ServiceId) -> Option<String> {
        lock(&self.inner.services).get(id).map(|s| s.url.clone())
    }

    /// Replaces who may invoke the service (takes effect for the next request).
    pub fn set_iam(&self, id: &ServiceId, iam: Iam) {
        if let Some(service) = lock(&self.inner.services).get(id) {
            *lock(&service.iam) = iam;
        }
    }

    /// Pulls the image by digest, unpacks it, starts one instance and waits for its startup probe.
    /// `Err` is the reason the revision is not ready, worded as Cloud Run's revision condition.
    /// Revisions are immutable: deploying a name again only starts an instance if it has none.
    pub async fn deploy_revision(&self, spec: RevisionSpec) -> Result<(), String> {
        let key = (spec.service.clone(), spec.name.clone());
        // One deployment of a given revision at a time (two would unpack into one directory).
        let serial = lock(&self.inner.deploying)
            .entry(key.clone())
            .or_default()
            .clone();
        let _serial = serial.lock().await;
        let existing = lock(&self.inner.revisions).get(&key).cloned();
        if let Some(existing) = existing {
            return existing.activate(&self.inner).await;
        }
        let revision = self.prepare(spec).await.map_err(|e| format!("{e:#}"))?;
        lock(&self.inner.revisions).insert(key, revision.clone());
        revision.activate(&self.inner).await
    }

    async fn prepare(&self, spec: RevisionSpec) -> anyhow::Result<Arc<Revision>> {
        let reference = image::ImageRef::parse(&spec.image)?;
        let pulled = self.inner.puller.pull(&reference).await.with_context(|| {
            format!(
                "Image '{}' not found or not readable (pulling it from the local registry)",
                spec.image
            )
        })?;
        let dir = revision_dir(&self.inner.opts.state_dir, &spec.service, &spec.name)?;
        let rootfs = dir.join("rootfs");
        let image_root = self.unpacked(&reference, &pulled).await?;
        // The revision's root: hard links to the image's files (no copy of the data), to which
        // its own files (secrets, /dev, /etc/hosts) are added as new files.
        if rootfs.exists() {
            tokio::fs::remove_dir_all(&rootfs).await?;
        }
        tokio::fs::create_dir_all(&dir).await?;
        link_tree(&image_root, &rootfs).await?;
        instance::prepare_rootfs(&rootfs, &spec.files, &self.inner.launcher)?;
        let launch = instance::Launch::new(&spec, &pulled.config, &rootfs)?;
        Ok(Arc::new(Revision::new(spec, rootfs, launch)))
    }

    /// Replaces secret files of revision `revision` of `service` (absolute paths inside its
    /// containers) in its root file system: its running instances read the new content from now
    /// on, and so do instances started later.
    pub fn update_files(
        &self,
        service: &ServiceId,
        revision: &str,
        files: &[(PathBuf, Vec<u8>)],
    ) -> anyhow::Result<()> {
        let revision = self
            .inner
            .revision(service, revision)
            .with_context(|| format!("revision {revision} does not exist"))?;
        for (path, content) in files {
            instance::write_secret_file(&revision.rootfs, path, content)?;
        }
        Ok(())
    }

    /// The image's unpacked root file system, `state_dir/images/<digest>/rootfs`, unpacked once
    /// per image (into a temporary directory renamed when complete).
    async fn unpacked(
        &self,
        reference: &image::ImageRef,
        pulled: &image::Pulled,
    ) -> anyhow::Result<PathBuf> {
        let _one_at_a_time = self.inner.unpacking.lock().await;
        let hex = reference.digest.trim_start_matches("sha256:");
        let dir = self.inner.opts.state_dir.join("images").join(hex);
        let root = dir.join("rootfs");
        if tokio::fs::try_exists(&root).await.unwrap_or(false) {
            return Ok(root);
        }
        let partial = dir.join("rootfs.partial");
        let layers = pulled.layers.clone();
        let target = partial.clone();
        tokio::task::spawn_blocking(move || image::unpack(&layers, &target))
            .await
            .context("unpacking the image")??;
        tokio::fs::rename(&partial, &root).await?;
        Ok(root)
    }

    /// Routes the service by this split (percentages summing to 100) and these tags; every tag
    /// gets its own URL (own listener), kept while the tag stays. Revisions named here that have
    /// no instance get one first (and the call fails if it does not become ready). Revisions of
    /// the service with neither traffic nor tag are retired: SIGTERM, then SIGKILL after the
    /// grace period (in the background). Returns `(tag, url)` for every tag.
    pub async fn set_traffic(
        &self,
        id: &ServiceId,
        traffic: &[TrafficTarget],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let service = lock(&self.inner.services)
            .get(id)
            .cloned()
            .with_context(|| format!("no front end for service {id:?}"))?;
        let total: u32 = traffic.iter().map(|t| t.percent).sum();
        if total != 100 {
            bail!("traffic percentages sum to {total}, not 100");
        }
        let mut keep = Vec::new();
        for target in traffic {
            if target.percent == 0 && target.tag.is_none() {
                continue;
            }
            let revision = self
                .inner
                .revision(id, &target.revision)
                .with_context(|| format!("revision {} does not exist", target.revision))?;
            if !revision.is_active() {
                revision
                    .activate(&self.inner)
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
            keep.push(target.revision.clone());
        }
        let tags = service.route(&self.inner, traffic).await?;
        let retired: Vec<Arc<Revision>> = lock(&self.inner.revisions)
            .iter()
            .filter(|((service, name), _)| service == id && !keep.contains(name))
            .map(|(_, r)| r.clone())
            .collect();
        for revision in retired {
            revision.retire();
        }
        Ok(tags)
    }

    /// Injects (or with `None` removes) faults in front of every revision named `revision`.
    pub fn set_fault(&self, revision: &str, fault: Option<Fault>) {
        let mut faults = lock(&self.inner.faults);
        match fault {
            Some(f) => faults.insert(revision.to_owned(), f),
            None => faults.remove(revision),
        };
    }

    /// The instances of every revision named `revision` (in any service or region).
    pub fn instances(&self, revision: &str) -> Vec<InstanceInfo> {
        lock(&self.inner.revisions)
            .iter()
            .filter(|((_, name), _)| name == revision)
            .flat_map(|(_, r)| r.instances())
            .collect()
    }

    /// Stops every front end, SIGTERMs every instance (SIGKILL after the grace period), waits
    /// for them and removes what the runtime made under the state directory.
    pub async fn shutdown(self) {
        let services: Vec<_> = std::mem::take(&mut *lock(&self.inner.services))
            .into_values()
            .collect();
        for service in services {
            service.stop().await;
        }
        let revisions: Vec<_> = std::mem::take(&mut *lock(&self.inner.revisions))
            .into_values()
            .collect();
        for revision in &revisions {
            revision.retire();
        }
        for revision in &revisions {
            revision.stopped().await;
        }
        for dir in ["blobs", "images", "revisions", "executions"] {
            let path = self.inner.opts.state_dir.join(dir);
            if let Err(e) = tokio::fs::remove_dir_all(&path).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("removing {}: {e}", path.display());
            }
        }
    }
}

/// `state_dir/revisions/PROJECT/REGION/SERVICE/REVISION`, each part a plain name.
fn revision_dir(
    state_dir: &std::path::Path,
    service: &ServiceId,
    revision: &str,
) -> anyhow::Result<PathBuf> {
    plain_dir(
        &state_dir.join("revisions"),
        &[&service.project, &service.region, &service.name, revision],
    )
}

/// `base/PART/PART/…`, each part a plain name (no separator, no leading dot).
pub(crate) fn plain_dir(base: &std::path::Path, parts: &[&str]) -> anyhow::Result<PathBuf> {
    let mut dir = base.to_path_buf();
    for part in parts {
        let plain = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !part.starts_with('.');
        if !plain {
            bail!("{part:?} is not a valid project, region, service, job or revision name");
        }
        dir.push(part);
    }
    Ok(dir)
}

/// `target`: hard links to every file of `source` (`cp -al`: no data copied).
pub(crate) async fn link_tree(
    source: &std::path::Path,
    target: &std::path::Path,
) -> anyhow::Result<()> {
    let copied = tokio::process::Command::new("cp")
        .arg("-al")
        .arg(source)
        .arg(target)
        .output()
        .await
        .context("running cp -al")?;
    if !copied.status.success() {
        bail!(
            "linking the image's files into {}: {}",
            target.display(),
            String::from_utf8_lossy(&copied.stderr).trim()
        );
    }
    Ok(())
}
