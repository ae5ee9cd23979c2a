//! `cargo xtask deploy` interrupted, killed, run twice at once or beside another writer, against
//! the local cloud's control plane (`items-local-cloud` with its stub data plane): a signal rolls
//! back, `--rollback` undoes a killed deploy from its journal, the lease refuses a second deploy,
//! a concurrent change is neither overwritten nor rolled back, production asks first.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use items_local_cloud::LocalCloud as Fake;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const PROJECT: &str = "items-dev-4821";
const API: &str = "projects/items-dev-4821/locations/global/apis/items-api";
const EUW1: &str = "projects/items-dev-4821/locations/europe-west1/services/items";
const USC1: &str = "projects/items-dev-4821/locations/us-central1/services/items";
const GW_EUW1: &str = "projects/items-dev-4821/locations/europe-west1/gateways/items-dev-euw1";
const GW_USC1: &str = "projects/items-dev-4821/locations/us-central1/gateways/items-dev-usc1";
const OLD_REVISION: &str = "items-00001-abc";
const OLD_CONFIG: &str = "items-api-dev-old00001";
const LEASE: &str = "deploy.xtask.items/lease";
const JOURNAL: &str = "deploy.xtask.items/journal";

fn image(fill: char) -> String {
    let digest: String = std::iter::repeat_n(fill, 64).collect();
    format!("europe-west1-docker.pkg.dev/{PROJECT}/items/items-service@sha256:{digest}")
}

/// The revision Cloud Run created last in `service` (deploy leaves the names to Cloud Run).
fn revision(fake: &Fake, service: &str) -> String {
    fake.with(|s| s.services[service]["latestCreatedRevision"].clone())
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

fn tag(fill: char) -> String {
    format!(
        "deploy-{}",
        std::iter::repeat_n(fill, 12).collect::<String>()
    )
}

type Entry = (String, i64, String);

fn t(revision: &str, percent: i64, tag: &str) -> Entry {
    (revision.to_owned(), percent, tag.to_owned())
}

/// A new directory (environment files, the journal's local copy), never shared: tests may run
/// as threads of one process.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "xtask-deploy-safety-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `deploy/environments/<env>.toml` as committed, alone in a directory.
fn environments(env: &str) -> PathBuf {
    let dir = temp_dir(&format!("env-{env}"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(
        root.join(format!("deploy/environments/{env}.toml")),
        dir.join(format!("{env}.toml")),
    )
    .expect("copying the environment");
    dir
}

/// An environment's regions, each serving the old revision and the old config, and its migrate
/// job (in the first region, which deploy runs before any revision).
fn fake_of(project: &str, regions: &[(&str, &str)]) -> Fake {
    let fake = Fake::start();
    fake.create_job(
        &format!(
            "projects/{project}/locations/{}/jobs/items-migrate",
            regions[0].0
        ),
        json!({"taskCount": 1, "template": {
            "containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello", "args": ["migrate"]}],
            "maxRetries": 0,
        }}),
    )
    .expect("the migrate job");
    let api = format!("projects/{project}/locations/global/apis/items-api");
    fake.add_config(&api, OLD_CONFIG, 1);
    for (region, gateway) in regions {
        fake.add_service(project, region, "items", OLD_REVISION);
        fake.add_gateway(
            project,
            region,
            gateway,
            &format!("{api}/configs/{OLD_CONFIG}"),
        );
    }
    fake
}

fn fake() -> Fake {
    fake_of(
        PROJECT,
        &[
            ("europe-west1", "items-dev-euw1"),
            ("us-central1", "items-dev-usc1"),
        ],
    )
}

/// `xtask deploy --env ENV` against `fake`, with the journal's local copy in `journal`.
fn command(fake: &Fake, env: &str, journal: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-release"));
    command
        .args(arguments(fake, env, extra))
        .env_remove("DEPLOY_API_KEY")
        .env_remove("DEPLOY_TOKEN")
        .env("XTASK_DEPLOY_JOURNAL_DIR", journal)
        .env_remove("GITHUB_RUN_ID")
        .stdin(Stdio::null());
    command
}

/// The arguments of `xtask deploy --env ENV` against `fake`.
fn arguments(fake: &Fake, env: &str, extra: &[&str]) -> Vec<String> {
    let dir = environments(env).to_string_lossy().into_owned();
    let url = fake.url();
    let fixed = [
        "deploy",
        "--env",
        env,
        "--anonymous",
        "--poll-interval-ms",
        "5",
        "--environments",
        &dir,
        "--run-endpoint",
        &url,
        "--apigateway-endpoint",
        &url,
    ];
    fixed.iter().chain(extra).map(|a| (*a).to_owned()).collect()
}

fn deploy(fake: &Fake, journal: &Path, extra: &[&str]) -> Output {
    let out = command(fake, "dev", journal, extra)
        .output()
        .expect("running xtask deploy");
    eprintln!(
        "--- xtask deploy {extra:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A deploy running in the background, its stderr collected line by line.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Ends at the stderr pipe's EOF, once the process exited.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(fake: &Fake, journal: &Path, extra: &[&str]) -> Self {
        let mut child = command(fake, "dev", journal, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting xtask deploy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// After the exit: waits until the reader has every stderr line (EOF), not for a fixed time.
    /// Bounded at 10 s, should a leftover child of the deploy hold the pipe open.
    fn read_to_end(&mut self) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            reader.join().expect("the stderr reader");
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line contains `text` (or the process ends); whether one did.
    fn wait_for(&mut self, text: &str, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.lines.lock().unwrap().iter().any(|l| l.contains(text)) {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                self.read_to_end();
                return self.lines.lock().unwrap().iter().any(|l| l.contains(text));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(i32::try_from(self.pid()).unwrap()), signal).unwrap();
    }

    /// Waits for the exit (reaping the process); its code (`None`: killed) and its stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.read_to_end();
        let stderr = self.lines.lock().unwrap().join("\n");
        eprintln!("--- background deploy: {status}\n{stderr}");
        (status.code(), stderr)
    }
}

/// Holds a canary of `fill` for `hold` seconds in both regions.
fn canary_args(image: &str, hold: &str) -> Vec<String> {
    ["--image", image, "--canary", "10", "--canary-wait", hold]
        .map(str::to_owned)
        .to_vec()
}

fn start_canary(fake: &Fake, journal: &Path, fill: char, hold: &str) -> Running {
    let args = canary_args(&image(fill), hold);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = Running::start(fake, journal, &args);
    assert!(
        running.wait_for("holding the canary", Duration::from_secs(60)),
        "the deploy did not reach the canary hold"
    );
    running
}

fn old_everywhere(fake: &Fake) {
    for service in [EUW1, USC1] {
        assert_eq!(
            fake.traffic(service),
            [t(OLD_REVISION, 100, "")],
            "{service}"
        );
    }
    let old = format!("{API}/configs/{OLD_CONFIG}");
    for gateway in [GW_EUW1, GW_USC1] {
        assert_eq!(fake.gateway_config(gateway), old, "{gateway}");
    }
}

fn annotations(fake: &Fake) -> Value {
    fake.with(|s| s.services[EUW1]["annotations"].clone())
}

fn no_lease_nor_journal(fake: &Fake) {
    let a = annotations(fake);
    assert!(a.get(LEASE).is_none(), "lease left: {a}");
    assert!(a.get(JOURNAL).is_none(), "journal left: {a}");
}

#[test]
fn sigint_during_the_canary_hold_rolls_back_and_exits_non_zero() {
    let fake = fake();
    let journal = temp_dir("sigint");
    let running = start_canary(&fake, &journal, 'a', "120");
    for service in [EUW1, USC1] {
        let canary = [
            t(&revision(&fake, service), 10, &tag('a')),
            t(OLD_REVISION, 90, ""),
        ];
        assert_eq!(fake.traffic(service), canary);
    }
    running.signal(Signal::SIGINT);
    let (code, stderr) = running.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "rolled back: europe-west1: restoring traffic {OLD_REVISION} 100%"
        )),
        "{stderr}"
    );
    old_everywhere(&fake);
    no_lease_nor_journal(&fake);
    assert!(
        !journal.join("dev.json").exists(),
        "the local journal stayed"
    );
}

#[test]
fn sigterm_during_the_canary_hold_rolls_back_too() {
    let fake = fake();
    let journal = temp_dir("sigterm");
    let running = start_canary(&fake, &journal, 'b', "120");
    running.signal(Signal::SIGTERM);
    let (code, stderr) = running.finish();
    assert_eq!(code, Some(143), "{stderr}");
    old_everywhere(&fake);
    no_lease_nor_journal(&fake);
}

#[test]
fn sigkill_then_rollback_restores_from_the_journal_in_the_cloud() {
    let fake = fake();
    let journal = temp_dir("sigkill");
    let running = start_canary(&fake, &journal, 'c', "120");
    running.signal(Signal::SIGKILL);
    let (code, _) = running.finish();
    assert_eq!(code, None, "killed by a signal");
    // Left half-changed, with its journal on the service.
    let canary = [
        t(&revision(&fake, USC1), 10, &tag('c')),
        t(OLD_REVISION, 90, ""),
    ];
    assert_eq!(fake.traffic(USC1), canary);
    let a = annotations(&fake);
    let saved: Value = serde_json::from_str(a[JOURNAL].as_str().expect("journal")).unwrap();
    assert_eq!(saved["changes"].as_array().unwrap().len(), 2, "{saved}");
    // The machine is lost with its disk: only the cloud's copy remains.
    std::fs::remove_dir_all(&journal).unwrap();

    // A new deploy refuses to start over it.
    let refused = deploy(
        &fake,
        &journal,
        &["--image", &image('d'), "--canary-wait", "0"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--rollback"), "{stderr}");
    assert_eq!(fake.traffic(USC1), canary);

    let out = deploy(&fake, &journal, &["--rollback"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("taking over the lease of"), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "rolled back: us-central1: restoring traffic {OLD_REVISION} 100%"
        )),
        "{stdout}"
    );
    old_everywhere(&fake);
    no_lease_nor_journal(&fake);
    // Nothing left to undo.
    let again = deploy(&fake, &journal, &["--rollback"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to roll back"));
}

#[test]
fn a_second_deploy_is_refused_naming_the_first() {
    let fake = fake();
    let journal = temp_dir("second");
    let first = start_canary(&fake, &journal, 'e', "120");
    let second = deploy(
        &fake,
        &temp_dir("second-b"),
        &["--image", &image('f'), "--canary-wait", "0"],
    );
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("dev is being deployed"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert!(stderr.contains(" since 20"), "{stderr}");
    assert!(
        stderr.contains(&format!("deploy {}", image('e'))),
        "{stderr}"
    );
    // The first deploy's canary is untouched.
    assert_eq!(
        fake.traffic(USC1),
        [
            t(&revision(&fake, USC1), 10, &tag('e')),
            t(OLD_REVISION, 90, "")
        ]
    );
    first.signal(Signal::SIGINT);
    let (code, _) = first.finish();
    assert_eq!(code, Some(130));
    old_everywhere(&fake);
}

#[test]
fn racing_deploys_cannot_both_take_the_lease() {
    let fake = fake();
    let racers: Vec<Running> = ['1', '2', '3']
        .into_iter()
        .map(|fill| {
            let args = canary_args(&image(fill), "120");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Running::start(&fake, &temp_dir(&format!("race-{fill}")), &args)
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = 0;
    for mut racer in racers {
        if racer.wait_for("holding the canary", Duration::from_secs(60)) {
            winners.push(racer);
        } else {
            let (code, stderr) = racer.finish();
            assert_eq!(code, Some(1), "{stderr}");
            assert!(stderr.contains("dev is being deployed"), "{stderr}");
            refused += 1;
        }
    }
    assert_eq!((winners.len(), refused), (1, 2));
    for winner in winners {
        winner.signal(Signal::SIGINT);
        winner.finish();
    }
    old_everywhere(&fake);
}

/// A lease another host holds, started 30 minutes ago, expiring `expires_in` seconds from now.
fn foreign_lease(fake: &Fake, expires_in: i64) {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let lease = json!({
        "id": "other-1", "holder": "ci@runner-7 pid 4242", "host": "runner-7", "pid": 4242,
        "started": fmt(now - time::Duration::minutes(30)),
        "expires": fmt(now + time::Duration::seconds(expires_in)),
        "action": "deploy elsewhere",
    });
    fake.with(|s| {
        s.services.get_mut(EUW1).unwrap()["annotations"] =
            json!({ LEASE: lease.to_string(), "team.example/owner": "items" });
    });
}

#[test]
fn a_live_lease_of_another_host_cannot_be_broken() {
    let fake = fake();
    foreign_lease(&fake, 600);
    let out = deploy(
        &fake,
        &temp_dir("live"),
        &[
            "--image",
            &image('4'),
            "--canary-wait",
            "0",
            "--break-lease",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("held by ci@runner-7 pid 4242 since"),
        "{stderr}"
    );
    old_everywhere(&fake);
}

#[test]
fn an_expired_lease_is_broken_only_with_break_lease() {
    let fake = fake();
    foreign_lease(&fake, -60);
    let journal = temp_dir("expired");
    let out = deploy(
        &fake,
        &journal,
        &["--image", &image('5'), "--canary-wait", "0"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ci@runner-7 pid 4242"), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(stderr.contains("--break-lease"), "{stderr}");
    old_everywhere(&fake);

    let out = deploy(
        &fake,
        &journal,
        &[
            "--image",
            &image('5'),
            "--canary-wait",
            "0",
            "--break-lease",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("breaking the expired lease of ci@runner-7"),
        "{stderr}"
    );
    assert_eq!(
        fake.traffic(USC1),
        [t(&revision(&fake, USC1), 100, &tag('5'))]
    );
    no_lease_nor_journal(&fake);
    // Annotations that are not the deploy's stay.
    assert_eq!(annotations(&fake)["team.example/owner"], "items");
}

/// What another writer (an operator, a Terraform apply) does: read the service and patch it with
/// the etag read, through Google's client.
fn concurrent_patch(
    fake: &Fake,
    service: &str,
    change: impl FnOnce(&mut google_cloud_run_v2::model::Service),
) {
    use google_cloud_lro::Poller as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = google_cloud_run_v2::client::Services::builder()
            .with_endpoint(fake.url())
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .unwrap();
        let mut current = client.get_service().set_name(service).send().await.unwrap();
        change(&mut current);
        client
            .update_service()
            .set_service(current)
            .poller()
            .until_done()
            .await
            .unwrap();
    });
}

fn target(revision: &str, percent: i32, tag: &str) -> google_cloud_run_v2::model::TrafficTarget {
    let mut t = google_cloud_run_v2::model::TrafficTarget::default();
    t.r#type = google_cloud_run_v2::model::TrafficTargetAllocationType::Revision;
    t.revision = revision.to_owned();
    t.percent = percent;
    t.tag = tag.to_owned();
    t
}

#[test]
fn a_concurrent_traffic_change_fails_the_deploy_and_survives_its_rollback() {
    let fake = fake();
    let running = start_canary(&fake, &temp_dir("concurrent"), '6', "3");
    // During the hold someone sends half of us-central1 to the new revision.
    let (rev, tag) = (revision(&fake, USC1), tag('6'));
    concurrent_patch(&fake, USC1, |s| {
        s.traffic = vec![target(OLD_REVISION, 50, ""), target(&rev, 50, &tag)];
    });
    let theirs = [t(OLD_REVISION, 50, ""), t(&rev, 50, &tag)];
    assert_eq!(fake.traffic(USC1), theirs);
    let (code, stderr) = running.finish();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("step 3 (100% to {rev}) failed in us-central1")),
        "{stderr}"
    );
    assert!(stderr.contains("etag"), "{stderr}");
    assert!(stderr.contains("not overwriting it"), "{stderr}");
    // Their change stays; europe-west1, which only this deploy changed, is restored.
    assert_eq!(fake.traffic(USC1), theirs);
    assert!(stderr.contains("left alone: us-central1"), "{stderr}");
    assert_eq!(fake.traffic(EUW1), [t(OLD_REVISION, 100, "")]);
    no_lease_nor_journal(&fake);
}

#[test]
fn a_terraform_change_during_the_hold_is_kept_by_the_full_traffic_step() {
    let fake = fake();
    let running = start_canary(&fake, &temp_dir("terraform"), '7', "3");
    // Something the deploy does not own changes during the hold (an apply's annotation); the
    // traffic does not.
    concurrent_patch(&fake, USC1, |s| {
        s.annotations
            .insert("team.example/owner".into(), "items".into());
    });
    let (code, stderr) = running.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("keeping that change"), "{stderr}");
    assert_eq!(
        fake.traffic(USC1),
        [t(&revision(&fake, USC1), 100, &tag('7'))]
    );
    assert_eq!(
        fake.with(|s| s.services[USC1]["annotations"]["team.example/owner"].clone()),
        "items"
    );
}

#[test]
fn a_gateway_pointed_elsewhere_since_is_left_alone_by_the_rollback() {
    let fake = fake();
    fake.add_config(API, "items-api-dev-new", 2);
    fake.add_config(API, "items-api-dev-hotfix", 3);
    let config = |id: &str| format!("{API}/configs/{id}");
    let (old, new, hotfix) = (
        config(OLD_CONFIG),
        config("items-api-dev-new"),
        config("items-api-dev-hotfix"),
    );
    // A deploy died after pointing both gateways at its config (its journal is on the service);
    // an operator has since pointed us-central1's at a hotfix.
    let change = |region: &str, gateway: &str| {
        json!({"kind": "gateway", "region": region, "gateway": gateway,
               "restore": old, "set": new})
    };
    let saved = json!({
        "lease": "dead-1", "holder": "someone@elsewhere pid 1",
        "started": "2026-12-05T06:00:00Z", "seq": 4,
        "changes": [change("europe-west1", GW_EUW1), change("us-central1", GW_USC1)],
    });
    fake.with(|s| {
        s.gateways.get_mut(GW_EUW1).unwrap()["apiConfig"] = json!(new);
        s.gateways.get_mut(GW_USC1).unwrap()["apiConfig"] = json!(hotfix);
        s.services.get_mut(EUW1).unwrap()["annotations"] = json!({ JOURNAL: saved.to_string() });
    });
    let out = deploy(&fake, &temp_dir("gateway"), &["--rollback"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "rolled back: europe-west1: gateway items-dev-euw1 back to items-api-dev-old00001"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "left alone: us-central1: gateway items-dev-usc1 serves items-api-dev-hotfix"
        ),
        "{stdout}"
    );
    assert_eq!(fake.gateway_config(GW_EUW1), old);
    assert_eq!(fake.gateway_config(GW_USC1), hotfix);
    no_lease_nor_journal(&fake);
}

const PROD: &str = "items-prod-4821";

/// The prod environment's three regions serving the old revision, and image `fill` of its
/// project.
fn prod(fill: char) -> (Fake, String) {
    let fake = fake_of(
        PROD,
        &[
            ("europe-west1", "items-prod-euw1"),
            ("us-central1", "items-prod-usc1"),
            ("asia-northeast1", "items-prod-asn1"),
        ],
    );
    (fake, image(fill).replace(PROJECT, PROD))
}

#[test]
fn prod_without_yes_and_without_a_terminal_is_refused() {
    let (fake, prod_image) = prod('9');
    let journal = temp_dir("prod");
    let args = ["--image", prod_image.as_str(), "--canary-wait", "0"];
    let out = command(&fake, "prod", &journal, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("prod is production"), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(
        fake.calls().is_empty(),
        "the refused deploy called the cloud"
    );

    let with_yes = [&args[..], &["--yes"]].concat();
    let out = command(&fake, "prod", &journal, &with_yes)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = format!("projects/{PROD}/locations/asia-northeast1/services/items");
    assert_eq!(
        fake.traffic(&service),
        [t(&revision(&fake, &service), 100, &tag('9'))]
    );
}

/// `xtask deploy --env prod …` on a terminal (util-linux `script` gives it one), typing `answer`.
fn on_a_terminal(fake: &Fake, journal: &Path, extra: &[&str], answer: &str) -> Option<Output> {
    use std::io::Write as _;
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to give the deploy a terminal");
        return None;
    }
    let line = std::iter::once(env!("CARGO_BIN_EXE_xtask-release").to_owned())
        .chain(arguments(fake, "prod", extra))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("XTASK_DEPLOY_JOURNAL_DIR", journal)
        .env_remove("GITHUB_RUN_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "--- on a terminal, typing {answer:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    Some(out)
}

#[test]
fn prod_on_a_terminal_goes_on_only_once_its_name_is_typed() {
    let (fake, prod_image) = prod('8');
    let journal = temp_dir("prod-tty");
    let args = ["--image", prod_image.as_str(), "--canary-wait", "0"];
    let Some(out) = on_a_terminal(&fake, &journal, &args, "yes") else {
        return;
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("Type \"prod\" to go on"), "{shown}");
    assert!(
        shown.contains("not confirmed; nothing was changed"),
        "{shown}"
    );
    assert!(
        fake.calls().is_empty(),
        "the unconfirmed deploy called the cloud"
    );

    let out = on_a_terminal(&fake, &journal, &args, "prod").unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let service = format!("projects/{PROD}/locations/asia-northeast1/services/items");
    assert_eq!(
        fake.traffic(&service),
        [t(&revision(&fake, &service), 100, &tag('8'))]
    );
}
