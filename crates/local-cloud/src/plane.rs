//! What the control plane drives: the data plane that runs revisions (Cloud Run's serving side)
//! and the gateways that serve API configs.
//!
//! The data plane is `items-local-run`'s [`Runtime`] (pulls, unpacks and runs each revision
//! behind Cloud Run's IAM front end); [`Stub`] answers like the former test fake: every revision
//! is ready at once and its tagged URL is served by the control plane itself.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use items_local_run::Runtime;

pub use items_local_run::{
    Fault, HttpProbe, Iam, RevisionSpec, ServiceId, TaskExit, TaskSpec, TrafficTarget,
};

/// Secret files: absolute path inside the container → content.
pub type Files = Vec<(PathBuf, Vec<u8>)>;

/// `projects/{p}/locations/{region}/services/{name}` → its parts.
pub fn parse_service(resource: &str) -> Option<ServiceId> {
    match resource.split('/').collect::<Vec<_>>()[..] {
        ["projects", project, "locations", region, "services", name] => Some(ServiceId {
            project: project.to_owned(),
            region: region.to_owned(),
            name: name.to_owned(),
        }),
        _ => None,
    }
}

/// Cloud Run's serving side, driven by the Admin API.
#[async_trait::async_trait]
pub trait DataPlane: Send + Sync + std::fmt::Debug {
    /// Starts the front end of a new service on `listen`; its URL (`Service.uri`).
    async fn add_service(
        &self,
        id: &ServiceId,
        listen: SocketAddr,
        iam: Iam,
    ) -> anyhow::Result<String>;
    /// Starts `spec`'s revision; `Err` is the message of its failed `Ready` condition.
    async fn deploy_revision(&self, spec: RevisionSpec) -> Result<(), String>;
    /// Routes the service's requests; the URL of each tag.
    async fn set_traffic(
        &self,
        id: &ServiceId,
        traffic: &[TrafficTarget],
    ) -> anyhow::Result<Vec<(String, String)>>;
    fn set_fault(&self, revision: &str, fault: Option<Fault>);
    /// Runs attempt `attempt` (0 first) of a job's task to completion; `Err` when its container
    /// could not start.
    async fn run_task(&self, spec: TaskSpec, attempt: u32) -> Result<TaskExit, String>;
    /// Replaces secret files of a revision's instances (a `latest` secret got a new version).
    fn update_files(&self, service: &ServiceId, revision: &str, files: Files);
}

/// API Gateway's serving side: a gateway serves exactly one API config.
#[async_trait::async_trait]
pub trait GatewayPlane: Send + Sync + std::fmt::Debug {
    /// Serves `document` (the config's OpenAPI document) on `gateway` (full resource name)
    /// from now on; its `defaultHostname` when it changed.
    async fn serve(&self, gateway: &str, document: &[u8]) -> anyhow::Result<Option<String>>;
}

/// The former fake's serving side: revisions are ready at once (or all fail with a chosen
/// message), their tagged URLs are `http://<control plane>/run/<region>/<tag>` and gateways keep
/// their `http://<control plane>/gw/<gateway>` hostname; the control plane answers both.
#[derive(Debug, Default)]
pub struct Stub {
    addr: OnceLock<SocketAddr>,
    failure: Mutex<Option<String>>,
    /// Revisions started, in order.
    pub started: Mutex<Vec<RevisionSpec>>,
    /// Task attempts run, in order: (spec, attempt).
    pub tasks: Mutex<Vec<(TaskSpec, u32)>>,
    /// How the next task attempts end, in order (then: exit 0).
    pub task_exits: Mutex<VecDeque<TaskExit>>,
    /// Secret files replaced: (revision, files).
    pub updated_files: Mutex<Vec<(String, Files)>>,
    /// Faults set: (revision, fault).
    pub faults: Mutex<Vec<(String, Option<Fault>)>>,
}

impl Stub {
    pub(crate) fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// Every revision started from now on fails with `message` (`None`: they start again).
    pub fn fail_revisions(&self, message: Option<String>) {
        *lock(&self.failure) = message;
    }

    fn base(&self) -> String {
        self.addr
            .get()
            .map_or_else(String::new, |a| format!("http://{a}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl DataPlane for Stub {
    async fn add_service(
        &self,
        id: &ServiceId,
        _listen: SocketAddr,
        _iam: Iam,
    ) -> anyhow::Result<String> {
        // The shape of a Cloud Run URL (`https://SERVICE-HASH-REGION.a.run.app`, Cloud Run
        // "Service URLs"); nothing listens there.
        Ok(format!("https://{}-xyz-{}.a.run.app", id.name, id.region))
    }

    async fn deploy_revision(&self, spec: RevisionSpec) -> Result<(), String> {
        lock(&self.started).push(spec);
        match lock(&self.failure).clone() {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }

    async fn set_traffic(
        &self,
        id: &ServiceId,
        traffic: &[TrafficTarget],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let base = self.base();
        Ok(traffic
            .iter()
            .filter_map(|t| t.tag.clone())
            .map(|tag| {
                let url = format!("{base}/run/{}/{tag}", id.region);
                (tag, url)
            })
            .collect())
    }

    fn set_fault(&self, revision: &str, fault: Option<Fault>) {
        lock(&self.faults).push((revision.to_owned(), fault));
    }

    async fn run_task(&self, spec: TaskSpec, attempt: u32) -> Result<TaskExit, String> {
        lock(&self.tasks).push((spec, attempt));
        Ok(lock(&self.task_exits)
            .pop_front()
            .unwrap_or(TaskExit::Exited(0)))
    }

    fn update_files(&self, _service: &ServiceId, revision: &str, files: Files) {
        lock(&self.updated_files).push((revision.to_owned(), files));
    }
}

#[async_trait::async_trait]
impl GatewayPlane for Stub {
    async fn serve(&self, _gateway: &str, _document: &[u8]) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
}

#[async_trait::async_trait]
impl DataPlane for Runtime {
    async fn add_service(
        &self,
        id: &ServiceId,
        listen: SocketAddr,
        iam: Iam,
    ) -> anyhow::Result<String> {
        Runtime::add_service(self, id.clone(), listen, iam).await
    }

    async fn deploy_revision(&self, spec: RevisionSpec) -> Result<(), String> {
        Runtime::deploy_revision(self, spec).await
    }

    async fn set_traffic(
        &self,
        id: &ServiceId,
        traffic: &[TrafficTarget],
    ) -> anyhow::Result<Vec<(String, String)>> {
        Runtime::set_traffic(self, id, traffic).await
    }

    fn set_fault(&self, revision: &str, fault: Option<Fault>) {
        Runtime::set_fault(self, revision, fault);
    }

    async fn run_task(&self, spec: TaskSpec, attempt: u32) -> Result<TaskExit, String> {
        Runtime::run_task(self, &spec, attempt).await
    }

    fn update_files(&self, service: &ServiceId, revision: &str, files: Files) {
        if let Err(e) = Runtime::update_files(self, service, revision, &files) {
            // A revision not (or no longer) on this data plane has no files to replace.
            eprintln!("local cloud: secret files of {revision}: {e:#}");
        }
    }
}
