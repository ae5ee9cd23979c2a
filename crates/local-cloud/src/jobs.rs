//! Cloud Run Admin API v2 jobs: `jobs.create` (`POST /v2/{parent}/jobs?jobId=`), `jobs.get`,
//! `jobs.patch` (`PATCH /v2/{job.name}`, `allowMissing`), `jobs.run` (`POST /v2/{name}:run`),
//! `executions.get` and `executions.list`; the paths and bodies of `google-cloud-run-v2`'s
//! `transport.rs` and `model.rs`. The data plane runs each task's container to completion.
//!
//! Semantics encoded here, with their sources (field comments quoted from
//! `google/cloud/run/v2/{job,execution,task_template,condition}.proto` as shipped in the
//! `google-cloud-run-v2` crate):
//! - create, patch and run are long-running operations; create and patch end with the `Job`,
//!   run with the `Execution` ("`run_job` … returns Operation, response type Execution").
//! - `Job.etag`: a stale etag on patch or run is refused with 409 `ABORTED` (AIP-154, as for
//!   services).
//! - An execution is named `<job>-<5 lower-case letters or digits>` and its task
//!   `<execution>-task<index>` (`gcloud run jobs execute migrate` printing "Task
//!   migrate-vnttt-task0 failed …", googlecodelabs/feedback#1369).
//! - `TaskTemplate.max_retries`: "Number of retries allowed per Task, before marking this Task
//!   failed. Defaults to 3." `TaskTemplate.timeout`: "… This applies per attempt of a task …
//!   Defaults to 600 seconds."
//! - A task whose container exits non-zero on its last attempt fails the execution: condition
//!   `Completed` `CONDITION_FAILED` with `executionReason` `NON_ZERO_EXIT_CODE` ("A task reached
//!   its retry limit and the last attempt failed due to the user container exiting with a
//!   non-zero exit code.") and the message Cloud Run gives: "Task <task> failed with message: The
//!   container exited with an error." (googlecodelabs/feedback#1369 and three captured
//!   executions in planqtn/planqtn's `cloud_run_monitor_service` tests); a timeout: "… failed with
//!   message: The configured timeout was reached." (same tests). The operation of `jobs.run` then
//!   ends with an error carrying that message (its code is not published: ours is
//!   FAILED_PRECONDITION, as a failed revision's).
//!
//! Where it stops: tasks of one execution run one after another (`parallelism` is not honoured);
//! `overrides` of `jobs.run` honour `containerOverrides[0].args`/`env`, `taskCount` and
//! `timeout`; no cancellation, no deletion; the service account is recorded, not assumed (no
//! metadata server locally).

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use serde_json::{Value, json};

use crate::google::{self, error, found, not_found};
use crate::plane::{ServiceId, TaskExit, TaskSpec};
use crate::run::{resolve_container, str_of, strings};
use crate::{Outcome, Request, Shared, State, start_operation};

const JOB_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Job";
const EXECUTION_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Execution";
/// `TaskTemplate.max_retries` when unset.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// `TaskTemplate.timeout` when unset.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) fn handle(shared: &Arc<Shared>, s: &mut State, r: Request<'_>) -> HttpResponse {
    let segments = r.segments;
    match (r.method, segments.len()) {
        ("POST", 5) => create(shared, s, &r),
        ("GET", 6) => found(s.jobs.get(r.name), r.name),
        ("PATCH", 6) => patch(shared, s, &r),
        ("POST", 6) if segments[5].ends_with(":run") => run(shared, s, &r),
        ("GET", 7) if segments[6] == "executions" => list_executions(s, r.name),
        ("GET", 8) if segments[6] == "executions" => found(s.executions.get(r.name), r.name),
        _ => error(404, "NOT_FOUND", &r.route()),
    }
}

/// `projects/{p}/locations/{region}/jobs/{job}` → its parts.
fn parse_job(name: &str) -> Option<ServiceId> {
    match name.split('/').collect::<Vec<_>>()[..] {
        ["projects", project, "locations", region, "jobs", job] => Some(ServiceId {
            project: project.to_owned(),
            region: region.to_owned(),
            name: job.to_owned(),
        }),
        _ => None,
    }
}

fn etag(s: &mut State) -> Value {
    json!(format!("\"j{}\"", s.tick()))
}

/// Whether `template` is an `ExecutionTemplate` the client's types accept.
fn valid_template(template: &Value) -> bool {
    serde_json::from_value::<google_cloud_run_v2::model::ExecutionTemplate>(template.clone())
        .is_ok()
        && template["template"]["containers"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
}

fn ready() -> Value {
    json!({"type": "Ready", "state": "CONDITION_SUCCEEDED"})
}

/// Inserts job `name` from `template` (an `ExecutionTemplate` in JSON); the `Job`.
pub(crate) fn insert_job(s: &mut State, name: &str, template: Value, labels: &Value) -> Value {
    let tick = s.tick();
    let tag = etag(s);
    let mut job = json!({
        "name": name,
        "uid": format!("uid-{tick}"),
        "generation": "1",
        "observedGeneration": "1",
        "createTime": google::timestamp(tick),
        "updateTime": google::timestamp(tick),
        "template": template,
        "terminalCondition": ready(),
        "conditions": [],
        "executionCount": 0,
        "reconciling": false,
        "etag": tag,
    });
    if labels.is_object() {
        job["labels"] = labels.clone();
    }
    s.jobs.insert(name.to_owned(), job.clone());
    job
}

/// `jobs.create`: `POST /v2/projects/*/locations/*/jobs?jobId=ID`.
fn create(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let Some(id) = r.query.get("jobId").filter(|i| !i.is_empty()) else {
        return error(400, "INVALID_ARGUMENT", "jobId is required");
    };
    let name = format!("{}/{id}", r.name);
    if parse_job(&name).is_none() {
        return error(404, "NOT_FOUND", &r.route());
    }
    if s.jobs.contains_key(&name) {
        return error(
            409,
            "ALREADY_EXISTS",
            &format!("Resource '{name}' already exists."),
        );
    }
    if !valid_template(&r.body["template"]) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "job.template is not an ExecutionTemplate with a container",
        );
    }
    let job = insert_job(s, &name, r.body["template"].clone(), &r.body["labels"]);
    start_operation(shared, s, &r.location, JOB_TYPE, async move { Ok(job) })
}

/// `jobs.patch` (`UpdateJob`): the whole job, checked against its etag; `allowMissing` creates it.
fn patch(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let name = r.name;
    let body = &r.body;
    if body["name"].as_str() != Some(name) {
        return error(400, "INVALID_ARGUMENT", "job.name must match the URL");
    }
    if !valid_template(&body["template"]) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "job.template is not an ExecutionTemplate with a container",
        );
    }
    let Some(current) = s.jobs.get(name).cloned() else {
        if r.query.get("allowMissing").map(String::as_str) == Some("true") {
            let job = insert_job(s, name, body["template"].clone(), &body["labels"]);
            return start_operation(shared, s, &r.location, JOB_TYPE, async move { Ok(job) });
        }
        return not_found(name);
    };
    if let Some(refused) = stale(name, body["etag"].as_str(), &current) {
        return refused;
    }
    let tick = s.tick();
    let tag = etag(s);
    let Some(job) = s.jobs.get_mut(name) else {
        return not_found(name);
    };
    let generation = job["generation"]
        .as_str()
        .and_then(|g| g.parse::<i64>().ok())
        .unwrap_or(0)
        + 1;
    job["generation"] = json!(generation.to_string());
    job["observedGeneration"] = json!(generation.to_string());
    job["template"] = body["template"].clone();
    if body["labels"].is_object() {
        job["labels"] = body["labels"].clone();
    }
    job["updateTime"] = json!(google::timestamp(tick));
    job["etag"] = tag;
    let job = job.clone();
    start_operation(shared, s, &r.location, JOB_TYPE, async move { Ok(job) })
}

/// A stale etag (AIP-154): 409 ABORTED; Cloud Run's exact message is not published.
fn stale(name: &str, sent: Option<&str>, current: &Value) -> Option<HttpResponse> {
    let sent = sent.filter(|e| !e.is_empty())?;
    let now = current["etag"].as_str().unwrap_or("");
    (sent != now).then(|| {
        error(
            409,
            "ABORTED",
            &format!(
                "The etag {sent} of job {name} does not match its current etag {now}: it was modified since it was read."
            ),
        )
    })
}

fn list_executions(s: &State, job: &str) -> HttpResponse {
    let prefix = format!("{job}/executions/");
    let mut executions: Vec<&Value> = s
        .executions
        .iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(_, e)| e)
        .collect();
    // Newest first, as the console and gcloud list them.
    executions.sort_by_key(|e| std::cmp::Reverse(str_of(&e["createTime"])));
    HttpResponse::Ok().json(json!({"executions": executions}))
}

/// A new execution's name: `<job>-<5 lower-case letters or digits>`.
fn execution_id(job: &str) -> String {
    let suffix: String = (0..5)
        .map(|_| {
            if fastrand::u8(0..36) < 26 {
                fastrand::lowercase()
            } else {
                fastrand::digit(10)
            }
        })
        .collect();
    format!("{job}-{suffix}")
}

/// `google.protobuf.Duration` in JSON (`"1800s"`, `"1.5s"`).
fn duration(v: &Value) -> Option<Duration> {
    let secs: f64 = v.as_str()?.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `jobs.run`: an execution of the job's template (with the request's overrides), run in the
/// background; the operation ends with the `Execution`, or its failure.
fn run(shared: &Arc<Shared>, s: &mut State, r: &Request<'_>) -> HttpResponse {
    let name = r.name.trim_end_matches(":run");
    match start_execution(s, name, r.body["etag"].as_str(), &r.body["overrides"]) {
        Ok(started) => {
            let work = execute(shared.clone(), started);
            start_operation(shared, s, &r.location, EXECUTION_TYPE, work)
        }
        Err(refused) => *refused,
    }
}

/// Runs job `name` once (what `jobs.run` does) and waits for its execution: the `Execution`,
/// or the failure message.
pub(crate) async fn run_and_wait(shared: &Arc<Shared>, name: &str) -> Result<Value, String> {
    let started = {
        let mut s = shared.lock();
        start_execution(&mut s, name, None, &Value::Null)
            .map_err(|_| format!("job {name} cannot be run (does it exist?)"))?
    };
    execute(shared.clone(), started)
        .await
        .map_err(|(_, message)| message)
}

/// An execution about to run: its job, its name, its task template and task count.
struct Started {
    job: ServiceId,
    execution_name: String,
    template: Value,
    task_count: i64,
}

/// Records a new execution of job `name` (its template with `overrides`) and counts it on the
/// job.
fn start_execution(
    s: &mut State,
    name: &str,
    sent_etag: Option<&str>,
    overrides: &Value,
) -> Result<Started, Box<HttpResponse>> {
    let job_id = parse_job(name).ok_or_else(|| Box::new(not_found(name)))?;
    let job = s
        .jobs
        .get(name)
        .cloned()
        .ok_or_else(|| Box::new(not_found(name)))?;
    if let Some(refused) = stale(name, sent_etag, &job) {
        return Err(Box::new(refused));
    }
    let mut template = job["template"].clone();
    if let Some(count) = overrides["taskCount"].as_i64() {
        template["taskCount"] = json!(count);
    }
    if let Some(timeout) = overrides["timeout"].as_str() {
        template["template"]["timeout"] = json!(timeout);
    }
    if let Some(container) = overrides["containerOverrides"]
        .as_array()
        .and_then(|c| c.first())
    {
        let target = &mut template["template"]["containers"][0];
        if container["clearArgs"] == json!(true) {
            target["args"] = json!([]);
        } else if container["args"].is_array() {
            target["args"] = container["args"].clone();
        }
        if let Some(env) = container["env"].as_array() {
            let mut merged = target["env"].as_array().cloned().unwrap_or_default();
            for e in env {
                merged.retain(|m| m["name"] != e["name"]);
                merged.push(e.clone());
            }
            target["env"] = json!(merged);
        }
    }
    let task_template = template["template"].clone();
    let task_count = template["taskCount"].as_i64().unwrap_or(1).max(1);
    let execution_name = format!("{name}/executions/{}", execution_id(&job_id.name));
    let tick = s.tick();
    let tag = etag(s);
    let execution = json!({
        "name": execution_name,
        "uid": format!("uid-{tick}"),
        "generation": "1",
        "observedGeneration": "1",
        "createTime": google::timestamp(tick),
        "startTime": google::timestamp(tick),
        "job": name,
        "parallelism": template["parallelism"].as_i64().unwrap_or(0),
        "taskCount": task_count,
        "template": task_template,
        "reconciling": true,
        "conditions": [{"type": "Completed", "state": "CONDITION_PENDING"}],
        "runningCount": 1,
        "succeededCount": 0,
        "failedCount": 0,
        "cancelledCount": 0,
        "retriedCount": 0,
        "etag": tag,
    });
    s.executions.insert(execution_name.clone(), execution);
    let reference = json!({"name": execution_name, "createTime": google::timestamp(tick),
                           "completionStatus": "EXECUTION_RUNNING"});
    if let Some(job) = s.jobs.get_mut(name) {
        job["executionCount"] = json!(job["executionCount"].as_i64().unwrap_or(0) + 1);
        job["latestCreatedExecution"] = reference;
    }
    Ok(Started {
        job: job_id,
        execution_name,
        template: task_template,
        task_count,
    })
}

/// Runs every task of the execution (each up to `1 + maxRetries` attempts) and records the
/// outcome on the execution and the job.
async fn execute(shared: Arc<Shared>, started: Started) -> Outcome {
    let Started {
        job,
        execution_name,
        template,
        task_count,
    } = started;
    let execution = execution_name.rsplit('/').next().unwrap_or("").to_owned();
    let container = template["containers"][0].clone();
    let max_retries = template["maxRetries"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(DEFAULT_MAX_RETRIES);
    let timeout = duration(&template["timeout"]).unwrap_or(DEFAULT_TIMEOUT);
    let (mut succeeded, mut failed, mut retried) = (0, 0, 0);
    let mut failure = None;
    for index in 0..task_count {
        let index = u32::try_from(index).unwrap_or(0);
        let resolved = {
            let s = shared.lock();
            resolve_container(&s, &job.project, &container, &template)
        };
        let spec = resolved.map(|(env, files)| TaskSpec {
            job: job.clone(),
            execution: execution.clone(),
            index,
            task_count: u32::try_from(task_count).unwrap_or(1),
            image: str_of(&container["image"]),
            command: strings(&container["command"]),
            args: strings(&container["args"]),
            env,
            files,
            timeout,
        });
        let task = format!("{execution}-task{index}");
        let mut outcome = Err(String::new());
        for attempt in 0..=max_retries {
            if attempt > 0 {
                retried = 1;
            }
            outcome = match &spec {
                Ok(spec) => shared.plane.run_task(spec.clone(), attempt).await,
                Err(reason) => Err(reason.clone()),
            };
            if outcome == Ok(TaskExit::Exited(0)) {
                break;
            }
        }
        match outcome {
            Ok(TaskExit::Exited(0)) => succeeded += 1,
            other => {
                failed += 1;
                let (reason, message) = match other {
                    Ok(TaskExit::TimedOut) => {
                        (None, "The configured timeout was reached.".to_owned())
                    }
                    Ok(_) => (
                        Some("NON_ZERO_EXIT_CODE"),
                        "The container exited with an error.".to_owned(),
                    ),
                    Err(reason) => (None, reason),
                };
                failure.get_or_insert((
                    reason,
                    format!("Task {task} failed with message: {message}"),
                ));
            }
        }
    }
    let mut s = shared.lock();
    let tick = s.tick();
    let tag = etag(&mut s);
    let completed = match &failure {
        None => json!({"type": "Completed", "state": "CONDITION_SUCCEEDED",
                       "lastTransitionTime": google::timestamp(tick)}),
        Some((reason, message)) => {
            let mut condition = json!({"type": "Completed", "state": "CONDITION_FAILED",
                       "severity": "ERROR", "message": message,
                       "lastTransitionTime": google::timestamp(tick)});
            if let Some(reason) = reason {
                condition["executionReason"] = json!(reason);
            }
            condition
        }
    };
    let execution = s
        .executions
        .get_mut(&execution_name)
        .ok_or((5, format!("{execution_name} was deleted")))?;
    execution["completionTime"] = json!(google::timestamp(tick));
    execution["reconciling"] = json!(false);
    execution["conditions"] = json!([completed]);
    execution["runningCount"] = json!(0);
    execution["succeededCount"] = json!(succeeded);
    execution["failedCount"] = json!(failed);
    execution["retriedCount"] = json!(retried);
    execution["etag"] = tag;
    let execution = execution.clone();
    let job_name = str_of(&execution["job"]);
    if let Some(job) = s.jobs.get_mut(&job_name)
        && job["latestCreatedExecution"]["name"] == execution["name"]
    {
        job["latestCreatedExecution"]["completionTime"] = json!(google::timestamp(tick));
        job["latestCreatedExecution"]["completionStatus"] = json!(if failure.is_none() {
            "EXECUTION_SUCCEEDED"
        } else {
            "EXECUTION_FAILED"
        });
    }
    match failure {
        None => Ok(execution),
        Some((_, message)) => Err((9, message)),
    }
}
