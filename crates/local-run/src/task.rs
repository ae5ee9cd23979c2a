//! Job tasks: one attempt of one task of a Cloud Run job execution, run to completion from the
//! job's image (Cloud Run container runtime contract, "Jobs",
//! <https://cloud.google.com/run/docs/container-contract#jobs>).
//!
//! - The container starts as a revision's does (`unshare` into a hard-linked copy of the unpacked
//!   image, the image's user, the job's env and secret files), without `PORT` and the `K_*`
//!   variables, with those Cloud Run sets for jobs: `CLOUD_RUN_JOB`, `CLOUD_RUN_EXECUTION`,
//!   `CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_ATTEMPT` (0 for the first attempt) and
//!   `CLOUD_RUN_TASK_COUNT` (same page, "Environment variables for jobs").
//! - The attempt ends when the container exits (its exit code), or when the task's timeout is
//!   reached: then it is killed ("Max allowed time duration the Task may be active before the
//!   system will actively try to mark it failed and kill associated containers. This applies per
//!   attempt of a task", `TaskTemplate.timeout`, google/cloud/run/v2/task_template.proto).
//! - Each attempt gets a fresh root file system (a new container), removed when it ends.
//!
//! Retries, the execution and its conditions are the control plane's (`items-local-cloud`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::instance::{Launch, prepare_rootfs};
use crate::{Runtime, ServiceId, plain_dir};

/// One task of a job execution, as its task template describes it.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// The job: project, region and job name.
    pub job: ServiceId,
    /// The execution's name (`<job>-<suffix>`).
    pub execution: String,
    pub index: u32,
    pub task_count: u32,
    /// `HOST:PORT/REPOSITORY@sha256:HEX` on a plain-HTTP OCI distribution registry.
    pub image: String,
    /// As [`crate::RevisionSpec::command`] and `args`.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Secret volumes: absolute path inside the container → content.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Per attempt (Cloud Run's default: 600 s).
    pub timeout: Duration,
}

impl TaskSpec {
    /// `<execution>-task<index>`, the name Cloud Run gives the task.
    pub fn task_name(&self) -> String {
        format!("{}-task{}", self.execution, self.index)
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskExit {
    /// The container exited with this code.
    Exited(i32),
    /// The container was ended by a signal it did not set off itself.
    Signalled(String),
    /// The task's timeout was reached and the container was killed.
    TimedOut,
}

impl Runtime {
    /// Runs attempt `attempt` (0 first) of `spec`'s task to completion. `Err` when the container
    /// could not be started at all (image not pullable, no entrypoint …), worded for the task's
    /// condition.
    pub async fn run_task(&self, spec: &TaskSpec, attempt: u32) -> Result<TaskExit, String> {
        self.attempt(spec, attempt)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    async fn attempt(&self, spec: &TaskSpec, attempt: u32) -> anyhow::Result<TaskExit> {
        let inner = &self.inner;
        let reference = crate::image::ImageRef::parse(&spec.image)?;
        let pulled = inner.puller.pull(&reference).await.with_context(|| {
            format!(
                "Image '{}' not found or not readable (pulling it from the local registry)",
                spec.image
            )
        })?;
        let image_root = self.unpacked(&reference, &pulled).await?;
        let task = spec.task_name();
        let dir = plain_dir(
            &inner.opts.state_dir.join("executions"),
            &[
                &spec.job.project,
                &spec.job.region,
                &spec.job.name,
                &format!("{task}-{attempt}"),
            ],
        )?;
        let rootfs = dir.join("rootfs");
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(&dir).await?;
        let result = async {
            crate::link_tree(&image_root, &rootfs).await?;
            prepare_rootfs(&rootfs, &spec.files, &inner.launcher)?;
            let platform = [
                ("CLOUD_RUN_JOB", spec.job.name.clone()),
                ("CLOUD_RUN_EXECUTION", spec.execution.clone()),
                ("CLOUD_RUN_TASK_INDEX", spec.index.to_string()),
                ("CLOUD_RUN_TASK_ATTEMPT", attempt.to_string()),
                ("CLOUD_RUN_TASK_COUNT", spec.task_count.to_string()),
            ];
            let launch = Launch::build(
                [&spec.command, &spec.args],
                &spec.env,
                &platform,
                &pulled.config,
                &rootfs,
            )?;
            let mut child = launch
                .command(&inner.launcher, &rootfs)
                .spawn()
                .context("The container could not be started")?;
            let log = &inner.opts.instance_log;
            let mut forwarders = Vec::new();
            if let Some(out) = child.stdout.take() {
                forwarders.push(crate::instance::forward_lines(
                    out,
                    log.clone(),
                    task.clone(),
                ));
            }
            if let Some(err) = child.stderr.take() {
                forwarders.push(crate::instance::forward_lines(
                    err,
                    log.clone(),
                    task.clone(),
                ));
            }
            tracing::info!(task = %task, attempt, "task started");
            let exit = match tokio::time::timeout(spec.timeout, child.wait()).await {
                Ok(status) => {
                    let status = status.context("waiting for the container")?;
                    match status.code() {
                        Some(code) => TaskExit::Exited(code),
                        None => TaskExit::Signalled(status.to_string()),
                    }
                }
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    TaskExit::TimedOut
                }
            };
            // An attempt's output is complete when it ends: the pipes reach EOF once the
            // container exited (bounded, should it have left a process holding them open).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                for forwarder in forwarders {
                    let _ = forwarder.await;
                }
            })
            .await;
            tracing::info!(task = %task, attempt, ?exit, "task ended");
            anyhow::Ok(exit)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }
}
