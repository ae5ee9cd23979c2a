//! Cloud Run jobs through Google's own Rust client (the calls deploy's migrate step makes), and
//! their REST answers: create, etags, run to an Execution, retries and Cloud Run's failure text.

use std::time::Duration;

use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_lro::Poller as _;
use google_cloud_run_v2::client::{Executions, Jobs};
use google_cloud_run_v2::model;
use serde_json::{Value, json};

use super::LocalCloud;
use super::tests::client;
use crate::TaskExit;

const JOB: &str = "projects/p/locations/europe-west1/jobs/items-migrate";

/// A client of Google's (`Jobs`, `Executions`) for the cloud, polling every few milliseconds.
macro_rules! google_client {
    ($client:ty, $cloud:expr) => {{
        let _ = rustls::crypto::ring::default_provider().install_default();
        <$client>::builder()
            .with_endpoint($cloud.url())
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .with_polling_backoff_policy(
                ExponentialBackoffBuilder::new()
                    .with_initial_delay(Duration::from_millis(10))
                    .with_maximum_delay(Duration::from_millis(40))
                    .build()
                    .expect("backoff"),
            )
            .build()
            .await
            .expect("client")
    }};
}

async fn jobs(cloud: &LocalCloud) -> Jobs {
    google_client!(Jobs, cloud)
}

async fn executions(cloud: &LocalCloud) -> Executions {
    google_client!(Executions, cloud)
}

/// A migrate job's template: `args: [migrate]`, a plain env value, a `latest` secret volume and
/// an env value from a pinned secret version.
fn template(max_retries: Option<i32>) -> Value {
    let mut task = json!({
        "serviceAccount": "items-migrate@p.iam.gserviceaccount.com",
        "timeout": "1800s",
        "containers": [{
            "image": "r/items@sha256:v1",
            "args": ["migrate"],
            "env": [
                {"name": "APP__DATABASE__USER", "value": "items_migrator"},
                {"name": "PINNED", "valueSource": {"secretKeyRef": {"secret": "key", "version": "1"}}}
            ],
            "volumeMounts": [{"name": "password", "mountPath": "/secrets"}]
        }],
        "volumes": [{"name": "password", "secret": {"secret": "projects/p/secrets/migrator",
            "items": [{"version": "latest", "path": "db-password"}]}}]
    });
    if let Some(n) = max_retries {
        task["maxRetries"] = json!(n);
    }
    json!({"taskCount": 1, "template": task})
}

fn with_secrets(cloud: &LocalCloud) {
    cloud.add_secret_version("projects/p/secrets/migrator", b"first");
    cloud.add_secret_version("projects/p/secrets/migrator", b"second");
    cloud.add_secret_version("projects/p/secrets/key", b"one");
    cloud.add_secret_version("projects/p/secrets/key", b"two");
}

#[tokio::test]
async fn a_job_runs_through_googles_client_and_its_execution_succeeds() {
    let cloud = LocalCloud::start();
    with_secrets(&cloud);
    let run = jobs(&cloud).await;
    let created = run
        .create_job()
        .set_parent("projects/p/locations/europe-west1")
        .set_job_id("items-migrate")
        .set_job(
            serde_json::from_value::<model::Job>(json!({"template": template(Some(1))}))
                .expect("job"),
        )
        .poller()
        .until_done()
        .await
        .expect("created");
    assert_eq!(created.name, JOB);

    // Update the image with the etag read, as deploy does; a second update with that etag is
    // stale.
    let read = run.get_job().set_name(JOB).send().await.expect("get");
    let mut job = read.clone();
    if let Some(t) = job.template.as_mut().and_then(|t| t.template.as_mut()) {
        t.containers[0].image = "r/items@sha256:v2".into();
    }
    let updated = run
        .update_job()
        .set_job(job.clone())
        .poller()
        .until_done()
        .await
        .expect("updated");
    assert_ne!(updated.etag, read.etag);
    let stale = run
        .update_job()
        .set_job(job)
        .poller()
        .until_done()
        .await
        .expect_err("stale etag");
    assert_eq!(stale.http_status_code(), Some(409), "{stale:?}");

    let execution = run
        .run_job()
        .set_name(JOB)
        .poller()
        .until_done()
        .await
        .expect("execution");
    let short = execution.name.rsplit('/').next().expect("short").to_owned();
    // <job>-<5 lower-case letters or digits>
    let suffix = short.strip_prefix("items-migrate-").expect("prefix");
    assert!(
        suffix.len() == 5
            && suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{short}"
    );
    assert_eq!(execution.job, JOB);
    assert_eq!(execution.succeeded_count, 1);
    assert_eq!(execution.failed_count, 0);
    let completed = &execution.conditions[0];
    assert_eq!(completed.r#type, "Completed");
    assert_eq!(completed.state, model::condition::State::ConditionSucceeded);

    // What the data plane ran: the updated image, the job's args, env resolved (the pinned
    // version), the secret volume at `latest`.
    let stub = cloud.stub().expect("stub");
    let tasks = stub.tasks.lock().expect("tasks").clone();
    assert_eq!(tasks.len(), 1);
    let (spec, attempt) = &tasks[0];
    assert_eq!(*attempt, 0);
    assert_eq!(spec.execution, short);
    assert_eq!(spec.task_name(), format!("{short}-task0"));
    assert_eq!(spec.image, "r/items@sha256:v2");
    assert_eq!(spec.args, ["migrate"]);
    assert!(spec.env.contains(&("PINNED".into(), "one".into())));
    assert_eq!(
        spec.files,
        [(
            std::path::PathBuf::from("/secrets/db-password"),
            b"second".to_vec()
        )]
    );
    assert_eq!(spec.timeout, Duration::from_secs(1800));

    // The job reports its execution; executions.get answers it.
    let job = run.get_job().set_name(JOB).send().await.expect("get");
    assert_eq!(job.execution_count, 1);
    let latest = job.latest_created_execution.expect("latest execution");
    assert_eq!(latest.name, execution.name);
    assert_eq!(
        latest.completion_status,
        model::execution_reference::CompletionStatus::ExecutionSucceeded
    );
    let (http, base) = (client(), cloud.url());
    let got: Value = http
        .get(format!("{base}/v2/{}", execution.name))
        .send()
        .await
        .expect("get execution")
        .json()
        .await
        .expect("json");
    assert_eq!(got["succeededCount"], 1);
}

/// Every attempt fails: the task is retried `maxRetries` times (default 3), then the execution
/// and the operation fail with Cloud Run's condition.
#[tokio::test]
async fn a_failing_task_is_retried_max_retries_times_then_fails_the_execution() {
    for (max_retries, attempts) in [(Some(1), 2), (None, 4)] {
        let cloud = LocalCloud::start();
        with_secrets(&cloud);
        cloud
            .create_job(JOB, template(max_retries))
            .expect("created");
        let stub = cloud.stub().expect("stub");
        stub.task_exits
            .lock()
            .expect("exits")
            .extend(std::iter::repeat_n(TaskExit::Exited(1), 10));
        let client = jobs(&cloud).await;
        let failed = client
            .run_job()
            .set_name(JOB)
            .poller()
            .until_done()
            .await
            .expect_err("the execution fails");
        let tasks = stub.tasks.lock().expect("tasks").clone();
        assert_eq!(tasks.len(), attempts, "{max_retries:?}");
        let attempts_run: Vec<u32> = tasks.iter().map(|(_, a)| *a).collect();
        assert_eq!(attempts_run, (0..attempts as u32).collect::<Vec<_>>());
        let task = tasks[0].0.task_name();
        let message =
            format!("Task {task} failed with message: The container exited with an error.");
        let status = failed.status().expect("status");
        assert_eq!(status.message, message);

        let job = client.get_job().set_name(JOB).send().await.expect("get");
        let latest = job.latest_created_execution.expect("latest");
        assert_eq!(
            latest.completion_status,
            model::execution_reference::CompletionStatus::ExecutionFailed
        );
        let execution = executions(&cloud)
            .await
            .get_execution()
            .set_name(&latest.name)
            .send()
            .await
            .expect("execution");
        assert_eq!((execution.failed_count, execution.retried_count), (1, 1));
        let condition = &execution.conditions[0];
        assert_eq!(condition.state, model::condition::State::ConditionFailed);
        assert_eq!(condition.message, message);
        assert_eq!(
            condition.reasons,
            Some(model::condition::Reasons::ExecutionReason(
                model::condition::ExecutionReason::NonZeroExitCode
            ))
        );
    }

    // A later attempt succeeding makes the execution succeed.
    let cloud = LocalCloud::start();
    with_secrets(&cloud);
    cloud.create_job(JOB, template(None)).expect("created");
    let stub = cloud.stub().expect("stub");
    stub.task_exits
        .lock()
        .expect("exits")
        .extend([TaskExit::Exited(2), TaskExit::TimedOut]);
    let execution = jobs(&cloud)
        .await
        .run_job()
        .set_name(JOB)
        .poller()
        .until_done()
        .await
        .expect("succeeds on the third attempt");
    assert_eq!((execution.succeeded_count, execution.retried_count), (1, 1));
    assert_eq!(stub.tasks.lock().expect("tasks").len(), 3);
}

#[tokio::test]
async fn job_calls_are_checked_as_cloud_run_checks_them() {
    let cloud = LocalCloud::start();
    with_secrets(&cloud);
    let (http, base) = (client(), cloud.url());
    let parent = "projects/p/locations/europe-west1";
    let create = |body: Value| {
        http.post(format!("{base}/v2/{parent}/jobs?jobId=items-migrate"))
            .json(&body)
            .send()
    };
    let no_container = create(json!({"template": {"template": {"containers": []}}}))
        .await
        .expect("create");
    assert_eq!(no_container.status(), 400);
    let ok = create(json!({"template": template(None)}))
        .await
        .expect("create");
    assert_eq!(ok.status(), 200);
    let twice = create(json!({"template": template(None)}))
        .await
        .expect("create");
    assert_eq!(twice.status(), 409);
    let missing = http
        .post(format!("{base}/v2/{parent}/jobs/nothing:run"))
        .json(&json!({}))
        .send()
        .await
        .expect("run");
    assert_eq!(missing.status(), 404);
    let stale = http
        .post(format!("{base}/v2/{JOB}:run"))
        .json(&json!({"name": JOB, "etag": "\"old\""}))
        .send()
        .await
        .expect("run");
    assert_eq!(stale.status(), 409);
    let body: Value = stale.json().await.expect("json");
    assert_eq!(body["error"]["status"], "ABORTED");
    // A secret the template names does not exist: the task cannot start, the execution fails.
    let mut broken = template(Some(0));
    broken["template"]["volumes"][0]["secret"]["secret"] = json!("projects/p/secrets/gone");
    cloud
        .create_job("projects/p/locations/europe-west1/jobs/broken", broken)
        .expect("created");
    let failed = jobs(&cloud)
        .await
        .run_job()
        .set_name("projects/p/locations/europe-west1/jobs/broken")
        .poller()
        .until_done()
        .await
        .expect_err("fails");
    let message = failed.status().expect("status").message.clone();
    assert!(
        message.contains("failed with message: Secret projects/p/secrets/gone"),
        "{message}"
    );
    assert!(
        cloud
            .stub()
            .expect("stub")
            .tasks
            .lock()
            .expect("t")
            .is_empty()
    );
}
