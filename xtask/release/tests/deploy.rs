//! `cargo xtask deploy` against the local cloud's control plane (`items-local-cloud`, with its
//! stub data plane): Google's real Rust clients, pointed at it with `with_endpoint` and anonymous
//! credentials, through the real command line. Cloud Run names the revisions; the tests read the
//! names from the service.

#[path = "support/slo_gateway.rs"]
mod slo_gateway;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use items_local_cloud::{FailAs, LocalCloud as Fake};
use serde_json::{Value, json};

const PROJECT: &str = "items-dev-4821";
const API: &str = "projects/items-dev-4821/locations/global/apis/items-api";
const EUW1: &str = "projects/items-dev-4821/locations/europe-west1/services/items";
const USC1: &str = "projects/items-dev-4821/locations/us-central1/services/items";
const GW_EUW1: &str = "projects/items-dev-4821/locations/europe-west1/gateways/items-dev-euw1";
const GW_USC1: &str = "projects/items-dev-4821/locations/us-central1/gateways/items-dev-usc1";
const JOB: &str = "projects/items-dev-4821/locations/europe-west1/jobs/items-migrate";
const OLD_REVISION: &str = "items-00001-abc";
const OLD_CONFIG: &str = "items-api-dev-old00001";

fn digest(fill: char) -> String {
    std::iter::repeat_n(fill, 64).collect()
}

fn image(fill: char) -> String {
    format!(
        "europe-west1-docker.pkg.dev/{PROJECT}/items/items-service@sha256:{}",
        digest(fill)
    )
}

/// The revision serving all of `service`'s traffic.
fn serving(fake: &Fake, service: &str) -> String {
    let traffic = fake.traffic(service);
    assert_eq!(traffic.len(), 1, "{service}: {traffic:?}");
    assert_eq!(traffic[0].1, 100, "{service}: {traffic:?}");
    traffic[0].0.clone()
}

/// The names of `service`'s revisions.
fn revisions(fake: &Fake, service: &str) -> Vec<String> {
    fake.with(|s| {
        s.revisions
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{service}/revisions/")))
            .map(str::to_owned)
            .collect()
    })
}

/// A revision as the fake stores it.
fn revision_resource(fake: &Fake, service: &str, revision: &str) -> Value {
    fake.with(|s| s.revisions[&format!("{service}/revisions/{revision}")].clone())
}

fn tag(fill: char) -> String {
    format!("deploy-{}", &digest(fill)[..12])
}

/// The dev environment as committed, in a directory of its own. Written once: a copy made while
/// a deploy of a parallel test reads the file would show it a truncated environment.
fn environments() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("xtask-deploy-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::copy(
            root.join("deploy/environments/dev.toml"),
            dir.join("dev.toml"),
        )
        .expect("copying dev.toml");
        dir
    })
    .clone()
}

/// The dev environment's two regions, each serving the old revision and the old config, and its
/// migrate job (as modules/cloudrun/migrate.tf creates it).
fn fake() -> Fake {
    let fake = Fake::start();
    fake.create_job(
        JOB,
        json!({"taskCount": 1, "template": {
            "containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello", "args": ["migrate"]}],
            "maxRetries": 0,
        }}),
    )
    .expect("the migrate job");
    for region in ["europe-west1", "us-central1"] {
        fake.add_service(PROJECT, region, "items", OLD_REVISION);
    }
    fake.add_config(API, OLD_CONFIG, 1);
    let old = format!("{API}/configs/{OLD_CONFIG}");
    fake.add_gateway(PROJECT, "europe-west1", "items-dev-euw1", &old);
    fake.add_gateway(PROJECT, "us-central1", "items-dev-usc1", &old);
    fake
}

fn deploy(fake: &Fake, extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask-release"))
        .arg("deploy")
        .args(["--env", "dev", "--anonymous", "--poll-interval-ms", "5"])
        .arg("--environments")
        .arg(environments())
        .args([
            "--run-endpoint",
            &fake.url(),
            "--apigateway-endpoint",
            &fake.url(),
        ])
        .args(extra)
        .env_remove("DEPLOY_API_KEY")
        .env_remove("DEPLOY_TOKEN")
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

fn deploy_ok(fake: &Fake, extra: &[&str]) -> String {
    let out = deploy(fake, extra);
    assert!(out.status.success(), "deploy failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn t(revision: &str, percent: i64, tag: &str) -> (String, i64, String) {
    (revision.to_owned(), percent, tag.to_owned())
}

/// The mutating calls of the roll-out: the lease's and journal's writes (annotations of the first
/// region's service, deploy_safety.rs tests them) aside.
fn mutating_calls(fake: &Fake) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.mutating() && !c.query.contains("updateMask=annotations"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

fn configs_created(fake: &Fake) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/configs"))
        .count()
}

#[test]
fn happy_path_in_two_regions() {
    let fake = fake();
    let image = image('a');
    let output = deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    let tag = tag('a');

    for service in [EUW1, USC1] {
        // Cloud Run named the revision (`<service>-<generation>-<suffix>`).
        let rev = serving(&fake, service);
        assert!(rev.starts_with("items-00002-"), "{rev}");
        assert_eq!(fake.traffic(service), [t(&rev, 100, &tag)], "{service}");
        let staged = fake.with(|s| {
            s.traffic_history
                .iter()
                .filter(|(name, _)| name == service)
                .map(|(_, split)| split.clone())
                .collect::<Vec<_>>()
        });
        // The new revision created with the traffic pinned as it was, then tagged without
        // traffic, then all of it.
        assert_eq!(
            staged,
            [
                vec![t(OLD_REVISION, 100, "")],
                vec![t(OLD_REVISION, 100, ""), t(&rev, 0, &tag)],
                vec![t(&rev, 100, &tag)],
            ]
        );
        let revision = revision_resource(&fake, service, &rev);
        assert_eq!(revision["containers"][0]["image"], image.as_str());
        // Deploy left the name to Cloud Run.
        let template = fake.with(|s| s.services[service]["template"].clone());
        assert_eq!(template.get("revision"), None, "{template}");
        assert!(
            output.contains(&format!("(revision {rev}, API config")),
            "{output}"
        );
    }
    // The migrate job ran the image before any service was touched.
    let job_image =
        fake.with(|s| s.jobs[JOB]["template"]["template"]["containers"][0]["image"].clone());
    assert_eq!(job_image, image.as_str());
    let calls = mutating_calls(&fake);
    assert_eq!(
        calls[..2],
        [format!("PATCH /v2/{JOB}"), format!("POST /v2/{JOB}:run")],
        "{calls:#?}"
    );
    // One config per region (each points at its own backend), both ACTIVE and served.
    let euw1 = fake.gateway_config(GW_EUW1);
    let usc1 = fake.gateway_config(GW_USC1);
    assert_ne!(euw1, usc1);
    for config in [&euw1, &usc1] {
        assert!(
            config.starts_with(&format!("{API}/configs/items-api-dev-")),
            "{config}"
        );
        assert!(fake.config_names().contains(config));
    }
    assert_eq!(configs_created(&fake), 2);
    // The tagged URLs and the gateways were checked.
    let probes = fake.with(|s| s.probes.clone());
    for region in ["europe-west1", "us-central1"] {
        assert!(
            probes.contains(&format!("/run/{region}/{tag}/health/ready")),
            "{probes:?}"
        );
        assert!(
            probes.contains(&format!("/run/{region}/{tag}/items")),
            "{probes:?}"
        );
    }
    assert!(
        probes.contains(&"/gw/items-dev-euw1/items".to_owned()),
        "{probes:?}"
    );
    assert!(
        probes.contains(&"/gw/items-dev-usc1/items".to_owned()),
        "{probes:?}"
    );
    assert!(
        output.contains(&format!("Deployed {image} in ")),
        "{output}"
    );
}

#[test]
fn canary_goes_first_then_all_traffic() {
    let fake = fake();
    deploy_ok(
        &fake,
        &[
            "--image",
            &image('b'),
            "--canary",
            "10",
            "--canary-wait",
            "0",
        ],
    );
    let tag = tag('b');
    for service in [EUW1, USC1] {
        let rev = serving(&fake, service);
        let history: Vec<_> = fake.with(|s| {
            s.traffic_history
                .iter()
                .filter(|(name, _)| name == service)
                .map(|(_, split)| split.clone())
                .collect()
        });
        assert_eq!(
            history,
            [
                vec![t(OLD_REVISION, 100, "")],
                vec![t(OLD_REVISION, 100, ""), t(&rev, 0, &tag)],
                vec![t(&rev, 10, &tag), t(OLD_REVISION, 90, "")],
                vec![t(&rev, 100, &tag)],
            ],
            "{service}"
        );
    }
}

#[test]
fn a_rerun_with_the_same_image_and_spec_changes_nothing() {
    let fake = fake();
    let image = image('c');
    deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    let before = mutating_calls(&fake);
    let output = deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    assert!(output.contains("Nothing to do"), "{output}");
    assert_eq!(
        mutating_calls(&fake),
        before,
        "the re-run changed something"
    );
}

#[test]
fn a_failure_in_region_two_rolls_region_one_back() {
    let fake = fake();
    // us-central1's gateway update fails after everything else went through.
    fake.inject(
        "PATCH",
        GW_USC1,
        0,
        FailAs::Operation(
            9,
            "Gateway items-dev-usc1 is being updated by another operation".into(),
        ),
    );
    let out = deploy(&fake, &["--image", &image('d'), "--canary-wait", "0"]);
    assert!(!out.status.success(), "deploy should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("step 4"), "{stderr}");
    assert!(stderr.contains("us-central1"), "{stderr}");
    assert!(
        stderr.contains("Gateway items-dev-usc1 is being updated by another operation"),
        "Google's error is not named: {stderr}"
    );
    // Everything is back as it was, in both regions.
    let old = format!("{API}/configs/{OLD_CONFIG}");
    assert_eq!(fake.gateway_config(GW_EUW1), old);
    assert_eq!(fake.gateway_config(GW_USC1), old);
    for service in [EUW1, USC1] {
        assert_eq!(
            fake.traffic(service),
            [t(OLD_REVISION, 100, "")],
            "{service}"
        );
    }
    assert!(stderr.contains("rolled back"), "{stderr}");
}

#[test]
fn a_failed_revision_in_region_two_restores_region_one() {
    let fake = fake();
    // The new revision does not become ready in us-central1 (Cloud Run's operation fails).
    fake.inject(
        "PATCH",
        USC1,
        0,
        FailAs::Operation(
            9,
            "Revision 'items-eeeeeeeeeeee' is not ready and cannot serve traffic. The user-provided container failed to start and listen on the port defined provided by the PORT=8080 environment variable.".into(),
        ),
    );
    let out = deploy(&fake, &["--image", &image('e'), "--canary-wait", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("step 2 (create a revision) failed in us-central1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed to start and listen on the port"),
        "{stderr}"
    );
    assert_eq!(fake.traffic(EUW1), [t(OLD_REVISION, 100, "")]);
    assert_eq!(fake.traffic(USC1), [t(OLD_REVISION, 100, "")]);
    // No gateway was touched.
    assert!(
        !mutating_calls(&fake)
            .iter()
            .any(|c| c.contains("/gateways/"))
    );
}

#[test]
fn an_existing_config_id_is_reused() {
    let fake = fake();
    deploy_ok(&fake, &["--image", &image('f'), "--canary-wait", "0"]);
    assert_eq!(configs_created(&fake), 2);
    let served = (fake.gateway_config(GW_EUW1), fake.gateway_config(GW_USC1));
    // Someone pointed the gateways back at the old config; the spec did not change.
    let old = format!("{API}/configs/{OLD_CONFIG}");
    fake.with(|s| {
        for gw in [GW_EUW1, GW_USC1] {
            s.gateways.get_mut(gw).expect("gateway")["apiConfig"] = serde_json::json!(old);
        }
    });
    let output = deploy_ok(&fake, &["--image", &image('7'), "--canary-wait", "0"]);
    assert_eq!(configs_created(&fake), 2, "a config was created again");
    assert!(output.contains("exists; reusing it"), "{output}");
    assert_eq!(
        (fake.gateway_config(GW_EUW1), fake.gateway_config(GW_USC1)),
        served
    );
}

#[test]
fn pruning_keeps_configs_in_use() {
    let fake = fake();
    // Twelve more configs, newer than the one both gateways serve.
    for n in 0..12 {
        fake.add_config(API, &format!("items-api-dev-older{n:03}"), 100 + n);
    }
    // Only europe-west1 moves: us-central1's gateway keeps serving the oldest config.
    deploy_ok(
        &fake,
        &[
            "--image",
            &image('8'),
            "--canary-wait",
            "0",
            "--region",
            "europe-west1",
            "--keep-api-configs",
            "3",
        ],
    );
    let names = fake.config_names();
    let new = fake.gateway_config(GW_EUW1);
    let old = format!("{API}/configs/{OLD_CONFIG}");
    assert_eq!(fake.gateway_config(GW_USC1), old);
    assert!(names.contains(&new), "the new config was pruned");
    assert!(names.contains(&old), "a config a gateway serves was pruned");
    // The three newest (the new one, older011, older010) plus the one in use.
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&format!("{API}/configs/items-api-dev-older011")));
    assert!(names.contains(&format!("{API}/configs/items-api-dev-older010")));
    // us-central1 was left alone.
    assert_eq!(fake.traffic(USC1), [t(OLD_REVISION, 100, "")]);
}

#[test]
fn plan_makes_no_mutating_call() {
    let fake = fake();
    for n in 0..3 {
        fake.add_config(API, &format!("items-api-dev-older{n:03}"), 100 + n);
    }
    let image = image('9');
    let output = deploy_ok(
        &fake,
        &[
            "--plan",
            "--image",
            &image,
            "--canary",
            "5",
            "--keep-api-configs",
            "2",
            "--slo-p95-ms",
            "250",
        ],
    );
    assert_eq!(mutating_calls(&fake), Vec::<String>::new());
    assert!(fake.with(|s| s.probes.is_empty()), "--plan checked URLs");
    // The SLO gate is planned after each gateway's check, and not run.
    assert_eq!(
        output
            .matches("then load it 10 s at 10 connections (GET one item, GET a page): p95 ≤ 250 ms")
            .count(),
        2,
        "{output}"
    );
    for expected in [
        "Plan for dev",
        image.as_str(),
        &format!("migrations: point job {JOB} at the image, run it"),
        &format!(
            "europe-west1: create a revision on {EUW1} (revision {OLD_REVISION} runs another image (sha256:old)"
        ),
        &format!(
            "us-central1: create a revision on {USC1} (revision {OLD_REVISION} runs another image"
        ),
        &format!("<new revision> 5% (tag {})", tag('9')),
        GW_EUW1,
        GW_USC1,
        &format!("{API}/configs/items-api-dev-older000"),
        // After the roll-out the two new configs are the newest and the old one is unused.
        &format!("{API}/configs/items-api-dev-older002"),
        &format!("{API}/configs/{OLD_CONFIG}"),
        "on failure: restore",
    ] {
        assert!(
            output.contains(expected),
            "plan lacks {expected:?}:\n{output}"
        );
    }
    // Still as before.
    assert_eq!(fake.traffic(EUW1), [t(OLD_REVISION, 100, "")]);
}

#[test]
fn without_credentials_one_message_names_the_fix_and_exits_2() {
    // No ADC file (empty HOME, no GOOGLE_APPLICATION_CREDENTIALS) and a metadata server that
    // refuses connections: what a laptop without `gcloud auth application-default login` sees.
    let home = std::env::temp_dir().join(format!("xtask-no-adc-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("temp home");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask-release"))
        .args(["deploy", "--env", "dev", "--plan", "--environments"])
        .arg(environments())
        .env("HOME", &home)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("CLOUDSDK_CONFIG")
        .env("GCE_METADATA_HOST", "127.0.0.1:1")
        .output()
        .expect("running xtask deploy");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(stderr.contains("no Google credentials"), "{stderr}");
    assert!(
        stderr.contains("gcloud auth application-default login"),
        "{stderr}"
    );
    assert!(
        stderr.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(stderr.len() < 700, "{} characters: {stderr}", stderr.len());
    // One sentence on one line, without the auth library's retry wording ("Subsequent calls
    // with this credential might succeed. but future attempts may succeed").
    let message = stderr.trim_end();
    assert_eq!(message.lines().count(), 1, "{stderr}");
    assert!(
        message.ends_with('.') && !message.contains(". "),
        "{stderr}"
    );
    for garbled in ["might succeed", "future attempts", "Subsequent calls"] {
        assert!(!message.contains(garbled), "{garbled:?} in {stderr}");
    }
}

#[test]
fn a_google_error_is_reported_once_with_status_resource_and_message() {
    let fake = fake();
    fake.inject(
        "GET",
        EUW1,
        0,
        FailAs::Http(
            403,
            "PERMISSION_DENIED",
            "Permission 'run.services.get' denied on resource".into(),
        ),
    );
    let out = deploy(&fake, &["--plan", "--image", &image('f')]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = "Permission 'run.services.get' denied on resource";
    assert_eq!(stderr.matches(message).count(), 1, "{stderr}");
    assert!(stderr.contains("HTTP 403, PERMISSION_DENIED"), "{stderr}");
    assert!(stderr.contains(&format!("services.get {EUW1}")), "{stderr}");
}

/// Deploys with the SLO gate, each region's gateway being a local gateway in front of a stub that
/// answers after the given delay.
fn deploy_with_slo(
    fake: &Fake,
    fill: char,
    delays: [(&str, &str, u64); 2],
    p95_ms: &str,
    duration: &str,
) -> Output {
    for (gateway, region, delay_ms) in delays {
        let url = slo_gateway::start(region, Duration::from_millis(delay_ms));
        fake.set_gateway_hostname(gateway, &url);
    }
    let token = slo_gateway::token();
    deploy(
        fake,
        &[
            "--image",
            &image(fill),
            "--canary-wait",
            "0",
            "--api-key",
            slo_gateway::API_KEY,
            "--token",
            &token,
            "--slo-p95-ms",
            p95_ms,
            "--slo-duration",
            duration,
            "--slo-connections",
            "4",
        ],
    )
}

#[test]
fn the_slo_gate_loads_each_gateway_and_lets_a_fast_one_through() {
    let fake = fake();
    let out = deploy_with_slo(
        &fake,
        '1',
        [(GW_EUW1, "europe-west1", 0), (GW_USC1, "us-central1", 0)],
        "1000",
        "1s",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("SLO met through http://127.0.0.1:").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("GET /items/{id}"), "{stderr}");
    let old = format!("{API}/configs/{OLD_CONFIG}");
    for gateway in [GW_EUW1, GW_USC1] {
        assert_ne!(fake.gateway_config(gateway), old, "{gateway}");
    }
    let rev = serving(&fake, EUW1);
    assert_eq!(fake.traffic(EUW1), [t(&rev, 100, &tag('1'))]);
}

#[test]
fn a_missed_slo_in_region_two_rolls_the_regions_back() {
    let fake = fake();
    // europe-west1 answers at once and must meet a p95 of 1500 ms even through a debug build of
    // the local gateway on a loaded machine; us-central1's backend sleeps 2000 ms, so it misses
    // it however fast the machine is (a slow machine only adds latency). The load lasts 4 s so
    // that requests complete within it, even late (wrk counts no latency for unfinished ones).
    let out = deploy_with_slo(
        &fake,
        '2',
        [(GW_EUW1, "europe-west1", 0), (GW_USC1, "us-central1", 2000)],
        "1500",
        "4s",
    );
    assert!(!out.status.success(), "deploy should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("step 4 (SLO gate) failed in us-central1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("SLO missed through http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("above the SLO of 1500 ms"), "{stderr}");
    // europe-west1 met it, then was rolled back with us-central1.
    assert_eq!(stderr.matches("SLO met through").count(), 1, "{stderr}");
    assert!(
        stderr.contains("rolled back: us-central1: gateway items-dev-usc1 back to"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rolled back: europe-west1: gateway items-dev-euw1 back to"),
        "{stderr}"
    );
    let old = format!("{API}/configs/{OLD_CONFIG}");
    assert_eq!(fake.gateway_config(GW_EUW1), old);
    assert_eq!(fake.gateway_config(GW_USC1), old);
    for service in [EUW1, USC1] {
        assert_eq!(
            fake.traffic(service),
            [t(OLD_REVISION, 100, "")],
            "{service}"
        );
    }
    // The failed gateway was patched twice: to the new config, then back.
    let patches = mutating_calls(&fake)
        .into_iter()
        .filter(|c| c == &format!("PATCH /v1/{GW_USC1}"))
        .count();
    assert_eq!(patches, 2);
}

/// The step lines of `--plan`'s output: those under the phase headings.
fn planned_steps(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(str::to_owned)
        .collect()
}

/// The steps a deploy reports as done, in order.
fn executed_steps(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  done: "))
        .map(str::to_owned)
        .collect()
}

/// What a planned step does to the fake, read from its line: the mutating call it makes and the
/// paths it checks.
fn effects(step: &str, tag: &str) -> (Vec<String>, Vec<String>) {
    let (region, what) = step.split_once(": ").unwrap_or(("", step));
    // The migrations line: "migrations: point job … at the image, …".
    let resource = what
        .split_whitespace()
        .find(|w| w.starts_with("projects/"))
        .unwrap_or("");
    let call = |method: &str, path: &str| (vec![format!("{method} {path}")], Vec::new());
    if what.ends_with("unchanged") || what.starts_with("then load it") {
        (Vec::new(), Vec::new())
    } else if let Some(config) = what.strip_prefix("create config ") {
        let api = config.rsplit_once('/').map_or("", |(api, _)| api);
        call("POST", &format!("/v1/{api}"))
    } else if let Some(job) = what.strip_prefix("point job ") {
        let job = job.split_whitespace().next().unwrap_or("");
        (
            vec![format!("PATCH /v2/{job}"), format!("POST /v2/{job}:run")],
            Vec::new(),
        )
    } else if what.starts_with("create a revision on ") {
        // The revision, then its tag.
        let patch = format!("PATCH /v2/{resource}");
        (vec![patch.clone(), patch], Vec::new())
    } else if what.starts_with("traffic on ") {
        call("PATCH", &format!("/v2/{resource}"))
    } else if what.starts_with("point ") {
        call("PATCH", &format!("/v1/{resource}"))
    } else if let Some(config) = step.strip_prefix("delete ") {
        call("DELETE", &format!("/v1/{config}"))
    } else if what.contains("tagged URL /health/ready") {
        let base = format!("/run/{region}/{tag}");
        (
            Vec::new(),
            vec![format!("{base}/health/ready"), format!("{base}/items")],
        )
    } else if let Some(base) = what.strip_prefix("check a request through ") {
        let gateway = base.split_once("/gw/").map_or("", |(_, g)| g);
        (Vec::new(), vec![format!("/gw/{gateway}/items")])
    } else if what.starts_with("hold the canary") || what.contains(" exists; reusing it") {
        (Vec::new(), Vec::new())
    } else {
        panic!("a step this test does not know: {step}")
    }
}

/// Prints the plan for `args`, then deploys with the same arguments from the same state, and
/// asserts that the deploy ran exactly the planned steps, in order, and made exactly the calls and
/// checks those steps name. Returns the steps.
fn assert_runs_as_planned(fake: &Fake, fill: char, args: &[&str]) -> Vec<String> {
    let image = image(fill);
    let args = [&["--image", image.as_str()], args].concat();
    let plan = deploy(fake, &[&["--plan"], args.as_slice()].concat());
    assert!(plan.status.success(), "--plan failed");
    let planned = planned_steps(&String::from_utf8_lossy(&plan.stdout));
    let calls_before = mutating_calls(fake).len();
    let probes_before = fake.with(|s| s.probes.len());

    let out = deploy(fake, &args);
    assert!(out.status.success(), "deploy failed");
    let executed = executed_steps(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(executed, planned, "the deploy did not run the plan");

    let (mut calls, mut probes) = (Vec::new(), Vec::new());
    for step in &planned {
        let (c, p) = effects(step, &tag(fill));
        calls.extend(c);
        probes.extend(p);
    }
    assert_eq!(mutating_calls(fake)[calls_before..], calls);
    assert_eq!(fake.with(|s| s.probes[probes_before..].to_vec()), probes);
    planned
}

#[test]
fn the_deploy_runs_the_printed_plan_with_a_canary_and_pruning() {
    let fake = fake();
    for n in 0..3 {
        fake.add_config(API, &format!("items-api-dev-older{n:03}"), 100 + n);
    }
    let steps = assert_runs_as_planned(
        &fake,
        '3',
        &[
            "--canary",
            "5",
            "--canary-wait",
            "1",
            "--keep-api-configs",
            "2",
        ],
    );
    // The migrations; per region: a revision, its check, canary, check again, all traffic,
    // config, gateway, its check; the hold; four configs pruned.
    assert_eq!(steps.len(), 1 + 2 * 8 + 1 + 4, "{steps:#?}");
    assert!(
        steps.contains(&"hold the canary 1 s".to_owned()),
        "{steps:#?}"
    );
    assert!(
        steps.contains(&format!("delete {API}/configs/{OLD_CONFIG}")),
        "{steps:#?}"
    );
}

#[test]
fn the_deploy_runs_the_printed_plan_when_regions_differ() {
    let fake = fake();
    // europe-west1 gets image 4 first; then both regions image 5; then image 4 again, with the
    // spec (and so the configs) unchanged: a new revision in each region (revisions are never
    // re-tagged), after the migrations.
    let only_euw1 = ["--canary-wait", "0", "--region", "europe-west1"];
    deploy_ok(
        &fake,
        &[&["--image", image('4').as_str()], &only_euw1[..]].concat(),
    );
    deploy_ok(&fake, &["--image", &image('5'), "--canary-wait", "0"]);
    let euw1_image4 = serving(&fake, EUW1);
    let steps = assert_runs_as_planned(&fake, '4', &["--canary-wait", "0"]);
    assert!(steps[0].starts_with("migrations: point job"), "{steps:#?}");
    assert!(
        steps[1].starts_with(&format!(
            "europe-west1: create a revision on {EUW1} (revision "
        )),
        "{steps:#?}"
    );
    assert!(
        steps[3].starts_with(&format!(
            "us-central1: create a revision on {USC1} (revision "
        )),
        "{steps:#?}"
    );
    assert_ne!(serving(&fake, EUW1), euw1_image4);
    assert_eq!(
        steps
            .iter()
            .filter(|s| s.ends_with(": unchanged") && s.contains("/gateways/"))
            .count(),
        2,
        "{steps:#?}"
    );
}

#[test]
fn a_failed_canary_restores_each_service_once_to_its_first_traffic() {
    let fake = fake();
    // us-central1's third patch (the canary, after the revision and its tag) fails.
    fake.inject(
        "PATCH",
        USC1,
        2,
        FailAs::Operation(14, "The service is temporarily unavailable".into()),
    );
    let out = deploy(
        &fake,
        &[
            "--image",
            &image('6'),
            "--canary",
            "10",
            "--canary-wait",
            "0",
        ],
    );
    assert!(!out.status.success(), "deploy should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rev = fake.with(|s| s.services[USC1]["latestCreatedRevision"].clone());
    let rev = rev
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default();
    assert!(
        stderr.contains(&format!(
            "step 3 (canary 10% to {rev}) failed in us-central1"
        )),
        "{stderr}"
    );
    // Staged and moved to the canary, europe-west1 still gets one restore: its traffic before
    // the roll-out; newest change first.
    let restores: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rolled back: "))
        .collect();
    assert_eq!(
        restores,
        [
            format!("rolled back: us-central1: restoring traffic {OLD_REVISION} 100%"),
            format!("rolled back: europe-west1: restoring traffic {OLD_REVISION} 100%"),
        ],
        "{stderr}"
    );
    for service in [EUW1, USC1] {
        assert_eq!(
            fake.traffic(service),
            [t(OLD_REVISION, 100, "")],
            "{service}"
        );
    }
    assert!(
        !mutating_calls(&fake)
            .iter()
            .any(|c| c.contains("/gateways/") || c.contains("/configs"))
    );
}

#[test]
fn a_rerun_after_a_failed_revision_creates_a_new_revision() {
    let fake = fake();
    let image = image('e');
    // The revision does not start: the container exits (the stub data plane fails it).
    let stub = fake.stub().expect("the stub data plane");
    stub.fail_revisions(Some(
        "The user-provided container failed to start and listen on the port defined provided by the PORT=8080 environment variable.".into(),
    ));
    let out = deploy(&fake, &["--image", &image, "--canary-wait", "0"]);
    assert!(!out.status.success(), "deploy should have failed");
    let failed = fake.with(|s| s.services[EUW1]["latestCreatedRevision"].clone());
    let failed = failed
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    assert_ne!(failed, OLD_REVISION);
    assert_eq!(fake.traffic(EUW1), [t(OLD_REVISION, 100, "")]);

    // Fixed (say, a missing secret was added): the same image again.
    stub.fail_revisions(None);
    let output = deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    let rev = serving(&fake, EUW1);
    assert_ne!(rev, failed, "the failed revision was re-tagged:\n{output}");
    assert_ne!(rev, OLD_REVISION);
    assert_eq!(fake.traffic(EUW1), [t(&rev, 100, &tag('e'))]);
    assert!(revisions(&fake, EUW1).contains(&failed));
}

#[test]
fn a_deploy_changes_only_the_fields_the_table_gives_it() {
    let fake = fake();
    let before = fake.with(|s| s.services[EUW1].clone());
    deploy_ok(&fake, &["--image", &image('5'), "--canary-wait", "0"]);
    let after = fake.with(|s| s.services[EUW1].clone());
    let owned = deploy_owned_fields("google_cloud_run_v2_service.this");
    // What differs in what a client sends (Cloud Run's status fields aside).
    let mut changed = Vec::new();
    for key in [
        "template",
        "traffic",
        "client",
        "clientVersion",
        "labels",
        "annotations",
        "ingress",
        "scaling",
    ] {
        diff_paths(&before[key], &after[key], key, &mut changed);
    }
    // The fake's services start with the name the former deploy set in the template; deploy
    // drops it (nobody names revisions now) and never sets one.
    assert_eq!(after["template"].get("revision"), None);
    changed.retain(|p| p != "template.revision");
    for path in &changed {
        assert!(
            owned.iter().any(|field| path_is_field(path, field)),
            "deploy changed {path}, which docs/deploy.md does not give to deploy ({owned:?})"
        );
    }
    assert!(
        changed
            .iter()
            .any(|p| p.starts_with("template.containers.0.image")),
        "{changed:?}"
    );
}

/// The fields the table "Who owns which field" of docs/deploy.md gives to deploy for `resource`.
fn deploy_owned_fields(resource: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md"),
    )
    .expect("docs/deploy.md");
    doc.lines()
        .filter(|l| l.starts_with(&format!("| `{resource}` |")))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.get(3) == Some(&"deploy"))
                .then(|| cells[2].split('`').nth(1).unwrap_or("").to_owned())
        })
        .collect()
}

/// Whether a JSON path of the fake's service (`template.containers.0.image`) is the Terraform
/// field `template[0].containers[0].image` or inside it.
fn path_is_field(path: &str, field: &str) -> bool {
    let camel = |s: &str| {
        let mut out = String::new();
        let mut up = false;
        for c in s.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    // Blocks that are one object in the API (`template[0]`) have no index there; lists do; a
    // map key (`annotations["k"]`) is one more step.
    let field = field.replace("[\"", ".").replace("\"]", "");
    let (map, key) = match field.split_once('.') {
        Some((map, key)) if map == "annotations" || map == "labels" => (map, Some(key)),
        _ => ("", None),
    };
    if let Some(key) = key {
        return path == format!("{map}.{key}");
    }
    let field = field
        .split('.')
        .map(|seg| match seg.split_once('[') {
            Some((name, index)) if name == "containers" => {
                format!("{}.{}", camel(name), index.trim_end_matches(']'))
            }
            Some((name, _)) => camel(name),
            None => camel(seg),
        })
        .collect::<Vec<_>>()
        .join(".");
    path == field || path.starts_with(&format!("{field}."))
}

/// The paths where `a` and `b` differ, down to the leaves.
fn diff_paths(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let empty = Value::Object(serde_json::Map::new());
    let (a, b) = (
        if a.is_null() && b.is_object() {
            &empty
        } else {
            a
        },
        if b.is_null() && a.is_object() {
            &empty
        } else {
            b
        },
    );
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff_paths(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{at}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() && !at.ends_with("traffic") => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_paths(p, q, &format!("{at}.{i}"), out);
            }
        }
        _ => out.push(at.to_owned()),
    }
}

/// The `ignore_changes` list of the Cloud Run service in deploy/terraform/modules/cloudrun.
fn ignore_changes() -> Vec<String> {
    let main = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/terraform/modules/cloudrun/main.tf"),
    )
    .expect("main.tf");
    let list = main
        .split_once("ignore_changes = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("an ignore_changes list");
    list.split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The list before deploy stopped naming revisions (commit 9ea9760).
const OLD_IGNORE_CHANGES: [&str; 5] = [
    "template[0].containers[0].image",
    "template[0].revision",
    "traffic",
    "client",
    "client_version",
];

/// The image of the module's first revision (`bootstrap_image`'s default).
const BOOTSTRAP_IMAGE: &str = "us-docker.pkg.dev/cloudrun/container/hello";

/// The request body of a `terraform apply` that changes the service's template with `change`:
/// what hashicorp/terraform-provider-google's `resourceCloudRunV2ServiceUpdate`
/// (google/services/cloudrunv2/resource_cloud_run_v2_service.go, at e03b7622) sends as
/// `PATCH https://run.googleapis.com/v2/projects/{project}/locations/{location}/services/{name}`,
/// with no update mask, no etag and no `name`: each of description, client, clientVersion,
/// ingress, launchStage, binaryAuthorization, customAudiences, scaling, defaultUriDisabled,
/// template, traffic, invokerIamDisabled, buildConfig, multiRegionSettings, iapEnabled, labels
/// (effective_labels) and annotations (effective_annotations) that is not empty. A field in
/// `ignored` keeps the value of the state, which the refresh before the plan read from Cloud Run
/// (`service`); any other field comes from the configuration, which sets neither a revision name
/// nor template annotations nor a client, and the bootstrap image. `traffic` is Optional and
/// Computed in the provider's schema, and the module sets none: the state's value is sent.
fn terraform_update(service: &Value, ignored: &[String], change: impl FnOnce(&mut Value)) -> Value {
    let mut body = serde_json::Map::new();
    for key in [
        "description",
        "client",
        "clientVersion",
        "ingress",
        "launchStage",
        "binaryAuthorization",
        "customAudiences",
        "scaling",
        "defaultUriDisabled",
        "template",
        "traffic",
        "invokerIamDisabled",
        "buildConfig",
        "multiRegionSettings",
        "iapEnabled",
        "labels",
        "annotations",
    ] {
        let value = &service[key];
        let empty = value.is_null()
            || value.as_str() == Some("")
            || value.as_array().is_some_and(Vec::is_empty)
            || value.as_object().is_some_and(serde_json::Map::is_empty);
        if !empty {
            body.insert(key.to_owned(), value.clone());
        }
    }
    let from_config = |field: &str| !ignored.iter().any(|i| i == field);
    let template = body
        .get_mut("template")
        .and_then(Value::as_object_mut)
        .expect("a template");
    if from_config("template[0].revision") {
        template.remove("revision");
    }
    if from_config("template[0].annotations") {
        template.remove("annotations");
    }
    if from_config("template[0].containers[0].image") {
        template["containers"][0]["image"] = json!(BOOTSTRAP_IMAGE);
    }
    for (field, key) in [("client", "client"), ("client_version", "clientVersion")] {
        if from_config(field) {
            body.remove(key);
        }
    }
    let mut body = Value::Object(body);
    change(&mut body["template"]);
    body
}

/// Sends `body` as Terraform's update of `service` and waits for the operation: the HTTP status
/// and, when it answered 200, the operation's error (`None`: it succeeded).
fn terraform_apply(fake: &Fake, service: &str, body: &Value) -> (u16, Option<Value>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let response = http
            .patch(format!("{}/v2/{service}", fake.url()))
            .json(body)
            .send()
            .await
            .expect("the PATCH");
        let status = response.status().as_u16();
        let mut operation: Value = response.json().await.expect("JSON");
        if status != 200 {
            return (status, Some(operation));
        }
        while operation["done"] != json!(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let name = operation["name"]
                .as_str()
                .expect("an operation name")
                .to_owned();
            operation = http
                .get(format!("{}/v2/{name}", fake.url()))
                .send()
                .await
                .expect("operations.get")
                .json()
                .await
                .expect("JSON");
        }
        (status, operation.get("error").cloned())
    })
}

/// Adds `APP__FOO=value` to the app container of a template (JSON).
fn set_foo(value: &'static str) -> impl FnOnce(&mut Value) {
    move |template: &mut Value| {
        let app = &mut template["containers"][0];
        let mut env = app["env"].as_array().cloned().unwrap_or_default();
        env.retain(|e| e["name"] != "APP__FOO");
        env.push(json!({"name": "APP__FOO", "value": value}));
        app["env"] = Value::Array(env);
    }
}

#[test]
fn a_terraform_apply_after_a_deploy_moves_no_traffic_and_the_next_deploy_rolls_it() {
    let fake = fake();
    let image = image('7');
    deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    let tag = tag('7');
    let deployed = serving(&fake, EUW1);
    let traffic = fake.traffic(EUW1);
    let service = fake.with(|s| s.services[EUW1].clone());

    // The module's ignore_changes: the apply succeeds and creates a revision without traffic.
    let ignored = ignore_changes();
    assert!(
        !ignored.iter().any(|i| i == "template[0].revision"),
        "{ignored:?}"
    );
    let body = terraform_update(&service, &ignored, set_foo("2"));
    assert_eq!(body.get("name"), None);
    assert_eq!(body["template"].get("revision"), None, "{body}");
    let (status, error) = terraform_apply(&fake, EUW1, &body);
    assert_eq!((status, error), (200, None));
    assert_eq!(fake.traffic(EUW1), traffic, "the apply moved traffic");
    assert_eq!(
        revisions(&fake, EUW1).len(),
        3,
        "{:?}",
        revisions(&fake, EUW1)
    );

    // The next deploy of the same image rolls the new configuration, and says why.
    let output = deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    assert!(
        output.contains(&format!(
            "configuration changed since revision {deployed}: env APP__FOO"
        )),
        "{output}"
    );
    let rolled = serving(&fake, EUW1);
    assert_ne!(rolled, deployed);
    assert_eq!(fake.traffic(EUW1), [t(&rolled, 100, &tag)]);
    let revision = revision_resource(&fake, EUW1, &rolled);
    assert_eq!(revision["containers"][0]["image"], image.as_str());
    assert!(
        revision["containers"][0]["env"]
            .as_array()
            .is_some_and(|env| env.contains(&json!({"name": "APP__FOO", "value": "2"}))),
        "{revision}"
    );
    // us-central1 had no change: untouched.
    assert!(output.contains("us-central1: "), "{output}");
    let again = deploy_ok(&fake, &["--image", &image, "--canary-wait", "0"]);
    assert!(again.contains("Nothing to do"), "{again}");

    // The former ignore_changes re-sent the revision name deploy had set: Cloud Run refuses a
    // reused name with another template (hashicorp/terraform-provider-google#14569).
    let usc1_serving = serving(&fake, USC1);
    fake.with(|s| {
        s.services.get_mut(USC1).expect("usc1")["template"]["revision"] = json!(usc1_serving);
    });
    let service = fake.with(|s| s.services[USC1].clone());
    let old: Vec<String> = OLD_IGNORE_CHANGES.iter().map(|s| (*s).to_owned()).collect();
    let body = terraform_update(&service, &old, set_foo("2"));
    let (status, error) = terraform_apply(&fake, USC1, &body);
    assert_eq!(status, 409, "{error:?}");
}

#[test]
fn a_failed_migration_stops_the_deploy_before_any_service_is_touched() {
    let fake = fake();
    // The migrate task's container exits 1 (the job's maxRetries is 0: one attempt).
    fake.stub()
        .expect("the stub data plane")
        .task_exits
        .lock()
        .expect("task exits")
        .push_back(items_local_cloud::TaskExit::Exited(1));
    let out = deploy(&fake, &["--image", &image('2'), "--canary-wait", "0"]);
    assert!(!out.status.success(), "deploy should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("step 2 (migrations) failed in europe-west1"),
        "{stderr}"
    );
    let execution = fake
        .with(|s| s.executions.keys().next().cloned())
        .expect("an execution");
    assert!(
        stderr.contains(&format!("execution {execution} failed")),
        "the execution is not named: {stderr}"
    );
    // The job ran; no service, revision or gateway was touched.
    let calls = mutating_calls(&fake);
    assert_eq!(
        calls,
        [format!("PATCH /v2/{JOB}"), format!("POST /v2/{JOB}:run")],
        "{calls:#?}"
    );
    for service in [EUW1, USC1] {
        assert_eq!(revisions(&fake, service), [OLD_REVISION], "{service}");
        assert_eq!(fake.traffic(service), [t(OLD_REVISION, 100, "")]);
    }
    assert!(stderr.contains("nothing had been changed"), "{stderr}");
}
