//! Step 2's first step: the schema migrations of the image being deployed, before any new
//! revision exists. The Cloud Run job `<service>-migrate` (Terraform,
//! `modules/cloudrun/migrate.tf`, in the environment's first region, where Cloud SQL's primary
//! is) is pointed at the image and run; the deploy goes on only when its execution succeeded.
//!
//! Cloud Run Admin API v2, through Google's client (`google-cloud-run-v2`, as for services):
//! - `jobs.get`, then `jobs.patch` of the job as read (its `etag` included: "May be used to
//!   detect modification conflict during updates") with the first container's image set;
//!   Terraform ignores that one field (deploy owns it, docs/deploy.md "Who owns which field");
//! - `jobs.run` with the updated job's etag ("A system-generated fingerprint for this version of
//!   the resource. May be used to detect modification conflict during updates"), a long-running
//!   operation whose metadata and response are the `Execution` ("Triggers creation of a new
//!   Execution of this Job"); it is polled to its end and every task of the execution must have
//!   succeeded ("Executing a job creates a job execution in which all tasks must run to
//!   completion successfully in order for the job execution to be successful", Cloud Run
//!   "Execute jobs");
//! - on failure, `executions.get` of the execution the operation named, for its counts, its
//!   condition and its logs.

use std::time::Duration;

use anyhow::{Context as _, bail};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_lro::{Poller as _, PollingResult};
use google_cloud_run_v2::client::{Executions, Jobs};
use google_cloud_run_v2::model::{Execution, Job, condition};
use items_gateway_spec::Environment;

use super::cloud::{Connection, Ui, configure, describe};
use super::plan::configuration::app_index;
use super::revision::CLIENT;

/// The migrate job of `env`: `projects/<project>/locations/<first region>/jobs/<service>-migrate`
/// (modules/stack passes its primary region, the first of the environment file, checked by
/// `cargo xtask lint terraform`).
pub(crate) fn job_name(env: &Environment) -> String {
    format!(
        "projects/{}/locations/{}/jobs/{}-migrate",
        env.project_id,
        env.regions
            .first()
            .map_or("europe-west1", |r| r.name.as_str()),
        env.service
    )
}

/// The clients the step needs.
#[derive(Debug, Clone)]
pub(crate) struct MigrateJob {
    jobs: Jobs,
    executions: Executions,
    ui: Ui,
    poll_interval: Duration,
}

impl MigrateJob {
    pub(crate) async fn connect(conn: &Connection, ui: Ui) -> anyhow::Result<Self> {
        let jobs = configure!(Jobs::builder(), &conn.run_endpoint, conn)
            .build()
            .await
            .context("creating the Cloud Run jobs client (Application Default Credentials)")?;
        let executions = configure!(Executions::builder(), &conn.run_endpoint, conn)
            .build()
            .await
            .context(
                "creating the Cloud Run executions client (Application Default Credentials)",
            )?;
        Ok(Self {
            jobs,
            executions,
            ui,
            poll_interval: conn.poll_interval.unwrap_or(Duration::from_secs(1)),
        })
    }

    /// Points `job` at `image`, runs it and waits for the execution; the execution when it
    /// succeeded, else an error naming it.
    pub(crate) async fn run(&self, job: &str, image: &str) -> anyhow::Result<Execution> {
        let current = self
            .jobs
            .get_job()
            .set_name(job)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("jobs.get {job}: {}", describe(&e)))?;
        let body = with_image(current, image)?;
        let op = self
            .ui
            .operation(&format!("job {}: image → {image}", short(job)));
        let updated = self
            .jobs
            .update_job()
            .set_job(body)
            .poller()
            .until_done()
            .await
            .map_err(|e| anyhow::anyhow!("jobs.patch {job}: {}", describe(&e)));
        op.finish(updated.is_ok());
        let updated = updated?;
        let op = self.ui.operation(&format!("running job {}", short(job)));
        let result = self.execute(job, &updated.etag).await;
        op.finish(result.is_ok());
        result
    }

    /// `jobs.run`, polled to its end, remembering the execution the operation reports.
    async fn execute(&self, job: &str, etag: &str) -> anyhow::Result<Execution> {
        let mut poller = self.jobs.run_job().set_name(job).set_etag(etag).poller();
        let mut seen: Option<Execution> = None;
        let mut wait = self.poll_interval;
        loop {
            match poller.poll().await {
                Some(PollingResult::Completed(Ok(execution))) => {
                    return match failure(&execution) {
                        None => Ok(execution),
                        Some(why) => bail!("execution {} failed: {why}", execution.name),
                    };
                }
                Some(PollingResult::Completed(Err(e))) => {
                    let error = describe(&e);
                    let name = match seen.map(|e| e.name).filter(|n| !n.is_empty()) {
                        Some(name) => Some(name),
                        // No metadata seen: the job's latest execution is the one it started.
                        None => self.latest_execution(job).await,
                    };
                    let Some(name) = name else {
                        bail!("jobs.run {job}: {error}");
                    };
                    let details = match self.executions.get_execution().set_name(&name).send().await
                    {
                        // The counts and the logs; the condition's message is the error's.
                        Ok(execution) => format!(" ({})", counts(&execution, "")),
                        Err(e) => format!(" (executions.get: {})", describe(&e)),
                    };
                    bail!("execution {name} failed: {error}{details}");
                }
                Some(PollingResult::InProgress(metadata)) => {
                    if metadata.is_some() {
                        seen = metadata;
                    }
                }
                // Transient: the client's polling error policy ends the operation with
                // `Completed(Err)` once it gives up.
                Some(PollingResult::PollingError(_)) => {}
                None => bail!("jobs.run {job}: the operation ended without a result"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.poll_interval * 8);
        }
    }

    /// The name of `job`'s latest created execution, if it can be read.
    async fn latest_execution(&self, job: &str) -> Option<String> {
        let job = self.jobs.get_job().set_name(job).send().await.ok()?;
        job.latest_created_execution
            .map(|e| e.name)
            .filter(|n| !n.is_empty())
    }
}

/// `job` with the image of its container set to `image` and deploy as the client.
fn with_image(mut job: Job, image: &str) -> anyhow::Result<Job> {
    let containers = job
        .template
        .as_mut()
        .and_then(|t| t.template.as_mut())
        .map(|t| &mut t.containers)
        .filter(|c| !c.is_empty())
        .with_context(|| format!("job {} has no container", job.name))?;
    let i = app_index(containers);
    containers[i].image = image.to_owned();
    CLIENT.clone_into(&mut job.client);
    env!("CARGO_PKG_VERSION").clone_into(&mut job.client_version);
    Ok(job)
}

/// Why `execution` failed, or `None`: a failed or cancelled task, fewer tasks succeeded than it
/// has (a cancelled execution ends its operation without an error: apache/airflow#67050, whose
/// operator checks `succeeded_count` against `task_count` for that reason), or its `Completed`
/// condition failed.
fn failure(execution: &Execution) -> Option<String> {
    let completed = execution
        .conditions
        .iter()
        .find(|c| c.r#type == "Completed" && c.state == condition::State::ConditionFailed);
    let short = execution.succeeded_count < execution.task_count;
    if execution.failed_count == 0
        && execution.cancelled_count == 0
        && !short
        && completed.is_none()
    {
        return None;
    }
    let message = completed.map_or("", |c| c.message.as_str());
    Some(counts(execution, message))
}

/// `0 of 1 task(s) succeeded, 1 failed, 0 cancelled[: message][; logs: …]`.
fn counts(execution: &Execution, message: &str) -> String {
    let mut why = format!(
        "{} of {} task(s) succeeded, {} failed, {} cancelled",
        execution.succeeded_count,
        execution.task_count,
        execution.failed_count,
        execution.cancelled_count
    );
    if !message.is_empty() {
        why.push_str(&format!(": {message}"));
    }
    if !execution.log_uri.is_empty() {
        why.push_str(&format!("; logs: {}", execution.log_uri));
    }
    why
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use google_cloud_run_v2::model::{Condition, Container, ExecutionTemplate, TaskTemplate};

    use super::*;

    #[test]
    fn the_job_is_in_the_first_region() {
        let root = crate::util::project_root();
        let env = Environment::load(&root.join("deploy/environments/dev.toml")).expect("dev");
        assert_eq!(
            job_name(&env),
            "projects/items-dev-4821/locations/europe-west1/jobs/items-migrate"
        );
    }

    #[test]
    fn only_the_image_and_the_client_change() {
        let mut container = Container::default();
        container.image = "bootstrap".into();
        container.args = vec!["migrate".into()];
        let mut task = TaskTemplate::default();
        task.containers = vec![container];
        let mut template = ExecutionTemplate::default();
        template.template = Some(task);
        let mut job = Job::default();
        job.name = "j".into();
        job.etag = "\"e1\"".into();
        job.template = Some(template);
        let sent = with_image(job.clone(), "r/i@sha256:aaaa").expect("a container");
        let c = &sent
            .template
            .as_ref()
            .and_then(|t| t.template.as_ref())
            .expect("task")
            .containers[0];
        assert_eq!(
            (c.image.as_str(), c.args.as_slice()),
            ("r/i@sha256:aaaa", &["migrate".to_owned()][..])
        );
        assert_eq!(sent.etag, "\"e1\"");
        assert_eq!(sent.client, CLIENT);
        job.template = None;
        assert!(with_image(job, "x").is_err());
    }

    #[test]
    fn a_failed_task_or_condition_fails_the_execution() {
        let mut ok = Execution::default();
        ok.task_count = 1;
        ok.succeeded_count = 1;
        assert_eq!(failure(&ok), None);
        let mut failed = ok.clone();
        failed.succeeded_count = 0;
        failed.failed_count = 1;
        let mut c = Condition::default();
        c.r#type = "Completed".into();
        c.state = condition::State::ConditionFailed;
        c.message = "Task items-migrate-abc-task0 failed with exit code 1".into();
        failed.conditions = vec![c];
        let why = failure(&failed).expect("failed");
        assert!(why.contains("0 of 1 task(s) succeeded, 1 failed"), "{why}");
        assert!(why.contains("exit code 1"), "{why}");
        // Cancelled: the operation ends without an error, the counts tell.
        let mut cancelled = ok.clone();
        cancelled.succeeded_count = 0;
        assert!(failure(&cancelled).is_some());
    }
}
