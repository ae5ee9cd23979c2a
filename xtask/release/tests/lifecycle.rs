//! A release's life on the local cloud under a steady client load through its gateways (one
//! client reads an item, one pages through the list following `next_page_token`, one creates
//! items with an Idempotency-Key): v1 deployed; v2, whose binary has one more migration (a
//! nullable column: items-repository's `lifecycle-fixture` feature, built apart), migrated by the
//! `items-migrate` job and then through a canary and the SLO gate to 100%; v3, slowed by a fault
//! injected into its image's revisions, misses the gate and is rolled back to v2; then the
//! documented rollback to v1 (`deploy --image` with v1's digest), whose instances start on v2's
//! schema and serve. Per phase it prints the requests sent, the 2xx, the other answers by status
//! and the p95; at the end every acknowledged POST must be readable.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/local_cloud.rs"]
mod support;

use support::{Cloud, Marks, push_image, service_binary, xtask};

const PHASES: [&str; 5] = [
    "v1: deploy (canary 50%, 3 s)",
    "v2 adds a column: migrate job, canary 50%, SLO gate, 100%",
    "v3: latency injected, SLO gate missed, rolled back to v2",
    "rollback to v1: a deploy of v1 interrupted by SIGINT in its canary hold (rolled back to v2), then deploy --image v1, new v1 instances on v2's schema",
    "after: v1 serving",
];
/// The p95 objective of the gate, and the latency injected into v3's revisions (above it).
/// Machine speed decides neither outcome. v3: the local Cloud Run holds every request to its
/// revisions INJECTED_MS before forwarding it, so every answer the gate measures took at least
/// that (2508-2513 ms measured); when none comes within the gate's 3 s, its error ratio is 1
/// (nothing measured): a miss as well. v2: its p95 through gateway, front end, debug service and
/// PostgreSQL was 10-28 ms at load average 1-6; the objective (1000 ms before) leaves it 2 s.
/// Injecting more would lengthen the run and show nothing more: deploy's checks of v3's
/// revision (two paths, two regions, before and after the canary) each wait the injected
/// latency (8 × 2.5 s of phase 2's 46 s), and above the gate's 3 s wrk would measure no answer.
const SLO_P95_MS: u64 = 2000;
const INJECTED_MS: u64 = 2500;

/// One request of the load: its phase, what it was and its outcome (status, or the error).
struct Record {
    phase: usize,
    /// Which client: 0 GET one item, 1 GET a page, 2 POST.
    kind: usize,
    outcome: Result<u16, String>,
    latency: Duration,
}

/// A phase's figures: requests sent, 2xx, the other answers (status or error) counted, p95 ms.
type PhaseFigures = (usize, usize, BTreeMap<String, usize>, f64);

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    gateways: Arc<Vec<String>>,
    key: String,
    token: String,
}

impl Client {
    fn request(&self, n: usize, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let base = &self.gateways[n % self.gateways.len()];
        let sep = if path.contains('?') { '&' } else { '?' };
        self.http
            .request(method, format!("{base}{path}{sep}key={}", self.key))
            .bearer_auth(&self.token)
    }

    async fn create(&self, n: usize, name: &str) -> reqwest::Result<reqwest::Response> {
        self.request(n, reqwest::Method::POST, "/items")
            .header("idempotency-key", format!("lifecycle-{name}"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
    }
}

/// The load: three tasks at about 20 requests a second each (GET one item, GET a page, POST
/// with an Idempotency-Key) until `stop`; the ids of the acknowledged POSTs.
struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Record>>>,
    created: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(client: Client, seeded: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let created = Arc::new(Mutex::new(Vec::new()));
        let (s, p, r, c) = (
            stop.clone(),
            phase.clone(),
            records.clone(),
            created.clone(),
        );
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for kind in 0..3 {
                    let (client, seeded) = (client.clone(), seeded.clone());
                    let (stop, phase, records, created) =
                        (s.clone(), p.clone(), r.clone(), c.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_millis(50));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        let mut n = 0;
                        // The pager's next page (none: start again at the first).
                        let mut page_token: Option<String> = None;
                        while !stop.load(Ordering::SeqCst) {
                            tick.tick().await;
                            n += 1;
                            let now = phase.load(Ordering::SeqCst);
                            let started = Instant::now();
                            let answer = match kind {
                                0 => {
                                    client
                                        .request(
                                            n,
                                            reqwest::Method::GET,
                                            &format!("/items/{seeded}"),
                                        )
                                        .send()
                                        .await
                                }
                                1 => {
                                    let path = match &page_token {
                                        Some(t) => format!("/items?page_size=5&page_token={t}"),
                                        None => "/items?page_size=5".to_owned(),
                                    };
                                    client.request(n, reqwest::Method::GET, &path).send().await
                                }
                                _ => client.create(n, &format!("load-{now}-{n}")).await,
                            };
                            let outcome = match answer {
                                Ok(response) if kind == 1 => {
                                    let status = response.status().as_u16();
                                    let body: serde_json::Value =
                                        response.json().await.unwrap_or_default();
                                    page_token =
                                        body["next_page_token"].as_str().map(str::to_owned);
                                    Ok(status)
                                }
                                Ok(response) => {
                                    let status = response.status().as_u16();
                                    if status == 201 {
                                        let body: serde_json::Value =
                                            response.json().await.unwrap_or_default();
                                        let id = id_of(&body).unwrap_or_default();
                                        created.lock().unwrap().push(id);
                                    }
                                    Ok(status)
                                }
                                Err(e) => Err(format!("{e}")),
                            };
                            records.lock().unwrap().push(Record {
                                phase: now,
                                kind,
                                outcome,
                                latency: started.elapsed(),
                            });
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
        Self {
            stop,
            phase,
            records,
            created,
            thread,
        }
    }

    /// Waits until each client has had a 2xx answer; fails after `within`.
    fn wait_until_answered(&self, within: Duration) {
        let started = Instant::now();
        loop {
            let answered = {
                let records = self.records.lock().unwrap();
                (0..3).all(|kind| {
                    records.iter().any(|r| {
                        r.kind == kind && matches!(r.outcome, Ok(s) if (200..300).contains(&s))
                    })
                })
            };
            if answered {
                return;
            }
            assert!(
                started.elapsed() < within,
                "the load had no 2xx answer of each kind within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Stops the load; per phase: sent, 2xx, the other answers by status or error, p95.
    fn finish(self) -> (Vec<PhaseFigures>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let records = std::mem::take(&mut *self.records.lock().unwrap());
        let mut out = Vec::new();
        for phase in 0..PHASES.len() {
            let mine: Vec<&Record> = records.iter().filter(|r| r.phase == phase).collect();
            let ok = mine
                .iter()
                .filter(|r| matches!(r.outcome, Ok(s) if (200..300).contains(&s)))
                .count();
            let mut other = BTreeMap::new();
            for r in &mine {
                match &r.outcome {
                    Ok(s) if (200..300).contains(s) => {}
                    Ok(s) => *other.entry(s.to_string()).or_insert(0) += 1,
                    // Transport errors (a refused connection) under one key, apart from statuses.
                    Err(e) => {
                        let what = if e.starts_with("error sending request") {
                            "not sent (connection refused or reset)".to_owned()
                        } else {
                            e.clone()
                        };
                        *other.entry(what).or_insert(0) += 1;
                    }
                }
            }
            let mut ms: Vec<f64> = mine
                .iter()
                .map(|r| r.latency.as_secs_f64() * 1000.0)
                .collect();
            ms.sort_by(f64::total_cmp);
            let p95 = if ms.is_empty() {
                0.0
            } else {
                ms[((ms.len() * 95).div_ceil(100)).saturating_sub(1)]
            };
            out.push((mine.len(), ok, other, p95));
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap());
        (out, created)
    }
}

/// The `id` of an item's JSON (a number or a string).
fn id_of(body: &serde_json::Value) -> Option<String> {
    match &body["id"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn get_json(url: &str) -> serde_json::Value {
    block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

/// The image of the revision serving 100% of `region`'s traffic, read from the control plane
/// (deploy leaves revision names to Cloud Run: the image tells the release).
fn serving(control: &str, region: &str) -> Option<String> {
    let service = format!("projects/items-local-0001/locations/{region}/services/items");
    let body = get_json(&format!("{control}/v2/{service}"));
    let revision = body["trafficStatuses"]
        .as_array()?
        .iter()
        .find(|t| t["percent"].as_u64() == Some(100))
        .and_then(|t| t["revision"].as_str())?
        .to_owned();
    let revision = get_json(&format!("{control}/v2/{service}/revisions/{revision}"));
    revision["containers"]
        .as_array()?
        .iter()
        .find(|c| c["ports"].is_array())
        .and_then(|c| c["image"].as_str())
        .map(str::to_owned)
}

/// Sends `body` as JSON with `method`; (status, JSON answer).
fn send_json(
    method: reqwest::Method,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    block_on(async {
        let r = reqwest::Client::new()
            .request(method, url)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    })
}

/// Polls operation `op` of the control plane until it is done; the finished operation.
fn wait_operation(control: &str, op: &serde_json::Value) -> serde_json::Value {
    let name = op["name"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let op = get_json(&format!("{control}/v2/{name}"));
        if op["done"] == serde_json::json!(true) {
            return op;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{name} never ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What deploy's migrate step does (until it does it): the job's image set to `image`
/// (`jobs.patch` with the etag read), then `jobs.run` to its end; the finished operation.
fn run_migrate_job(control: &str, job: &str, image: &str) -> serde_json::Value {
    let mut body = get_json(&format!("{control}/v2/{job}"));
    body["template"]["template"]["containers"][0]["image"] = serde_json::json!(image);
    let (status, op) = send_json(
        reqwest::Method::PATCH,
        &format!("{control}/v2/{job}"),
        &body,
    );
    assert_eq!(status, 200, "{op}");
    let patched = wait_operation(control, &op);
    assert!(patched["error"].is_null(), "{patched}");
    let (status, op) = send_json(
        reqwest::Method::POST,
        &format!("{control}/v2/{job}:run"),
        &serde_json::json!({"name": job}),
    );
    assert_eq!(status, 200, "{op}");
    wait_operation(control, &op)
}

/// items-service with items-repository's `lifecycle-fixture` migration (v2's binary), without its
/// debug info ([`support::without_debug_info`]). Built in a target directory of its own
/// (`target/lifecycle-v2`), so that the workspace's `target/debug/items-service`, which other
/// tests run meanwhile, is never replaced; the directory is seeded with hard links to
/// `target/debug` (no data copied), so only the crates whose features differ are compiled. That
/// holds only when cargo resolves the same features for every other crate as for the suite's own
/// build (`cargo nextest run --workspace`: the whole workspace with its dev-dependencies, which
/// add features to serde_json, tokio's dependencies and more): so `cargo test --no-run
/// --workspace --test e2e` (the tests named e2e, items-service's among them, which is what makes
/// cargo build its binary). `cargo build -p items-service` resolved other features and compiled
/// 74 crates (3 min 44 s beside other builds); this compiles items-repository, items-service
/// and the two e2e tests (1 min 12 s in the same minutes). `--exclude items-local-gateway`
/// leaves out the other e2e test (3.9 s of 13 alone), and nothing else: with and without it,
/// every other unit has the same hash (one build after the other, the second compiled nothing);
/// the features are the same (`cargo tree --workspace -e normal,build,dev -f '{p} {f}'`). It
/// assumes the suite was built with none of cargo's per-package variables set (see below), as
/// `cargo nextest run` from a shell.
fn v2_binary() -> std::path::PathBuf {
    let root = support::root();
    let target = root.join("target/lifecycle-v2");
    if !target.join("debug").exists() {
        std::fs::create_dir_all(&target).unwrap();
        let linked = std::process::Command::new("cp")
            .arg("-al")
            .arg(root.join("target/debug"))
            .arg(target.join("debug"))
            .status()
            .unwrap();
        assert!(linked.success(), "seeding target/lifecycle-v2");
        // Copies, not links, of what cargo rewrites in place (fingerprints, build script
        // outputs): a unit rebuilt here must not change target/debug's record of its own, which
        // then built it again there (19 MB and 226 MB; the compiled crates in deps are 8 GB).
        for dir in [".fingerprint", "build"] {
            let copy = target.join("debug").join(dir);
            std::fs::remove_dir_all(&copy).unwrap();
            let copied = std::process::Command::new("cp")
                .arg("-a")
                .arg(root.join("target/debug").join(dir))
                .arg(&copy)
                .status()
                .unwrap();
            assert!(copied.success(), "copying target/debug/{dir}");
        }
    }
    let started = Instant::now();
    // Without what cargo and nextest set for this test's own package (xtask::util::package_env
    // says why).
    let built = xtask::util::std_cargo()
        .current_dir(&root)
        .args([
            "test",
            "--no-run",
            "--workspace",
            "--test",
            "e2e",
            "--exclude",
            "items-local-gateway",
            "--features",
            "items-repository/lifecycle-fixture",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .unwrap();
    assert!(built.success(), "building v2 (lifecycle-fixture)");
    eprintln!(
        "v2 binary (lifecycle-fixture) built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    support::without_debug_info(&target.join("debug/items-service"))
}

/// v2's binary ([`v2_binary`]) and the images of v2 and v3, in a thread beside the test from its
/// start: v2's image once the binary is built and the registry is sent (after v1's image), then
/// v3's (while v1 and v2 are deployed). Each image in a layout directory of its own.
struct Builds {
    v2: std::sync::mpsc::Receiver<String>,
    thread: std::thread::JoinHandle<String>,
}

impl Builds {
    fn start(
        binary: PathBuf,
        layout: PathBuf,
        registry: std::sync::mpsc::Receiver<String>,
    ) -> Self {
        let (v2_built, v2) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut marks = Marks::new();
            let v2_binary = v2_binary();
            marks.mark("beside: v2's binary built");
            let registry = registry.recv().expect("the cloud never named its registry");
            let mut push = |binary: &Path, v: &str| {
                let image = push_image(
                    &registry,
                    binary,
                    &format!("lifecycle-{v}"),
                    v,
                    &layout.join(v),
                );
                marks.mark(&format!("beside: {v}'s image built and pushed"));
                image
            };
            // The receiver is gone only when the test has failed already.
            let _ = v2_built.send(push(&v2_binary, "v2"));
            push(&binary, "v3")
        });
        Self { v2, thread }
    }

    /// v2's image (`ref@digest`), waiting for it.
    fn v2(&self) -> String {
        self.v2
            .recv()
            .expect("building v2's binary or image failed (its panic is above)")
    }

    /// v3's image (`ref@digest`), waiting for it.
    fn v3(self) -> String {
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Whether `items` has the column v2's migration adds, asked of the database as its superuser.
fn has_fixture_column(database: &str) -> bool {
    block_on(async {
        let (client, connection) = tokio_postgres::connect(database, tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_name = 'items' AND column_name = 'lifecycle_note'",
                &[],
            )
            .await
            .unwrap();
        drop(client);
        let _ = conn.await;
        row.get::<_, i64>(0) == 1
    })
}

/// Log lines of instances that started on a schema a later release migrated.
fn later_schema_lines(cloud: &Cloud) -> usize {
    cloud
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("the schema holds migrations of a later release"))
        .count()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn canary_gate_rollback_and_rollback_to_v1_under_load() {
    let mut marks = Marks::new();
    let Some(binary) = service_binary() else {
        return;
    };
    let layout = std::env::temp_dir().join(format!("xtask-lifecycle-{}", std::process::id()));
    // v2's binary (the longest step: over a minute beside the rest of the suite) is built while
    // the cloud starts and v1 is deployed. The cloud's registry is sent to the thread once v1's
    // image, which the test needs first, is pushed: v2's image is built while v1 is deployed.
    let (registry_sender, registry_known) = std::sync::mpsc::channel::<String>();
    let builds = Builds::start(binary.clone(), layout.clone(), registry_known);
    let cloud = Cloud::start(&binary);
    let control = cloud.value("control plane:");
    let key = cloud.value("api key:");
    marks.mark("cargo xtask cloud ready");
    let regions: Vec<(String, String)> = cloud
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.strip_prefix("gateway "))
        .filter_map(|l| l.split_once(": "))
        .map(|(r, u)| (r.to_owned(), u.trim().to_owned()))
        .collect();
    assert!(!regions.is_empty());
    let registry = cloud.registry();
    let job = cloud.value("migrate job:");
    let database = cloud
        .value("database:")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // v1 and v3: the workspace's binary, told apart by the image config's revision label
    // (`cargo xtask image --revision`), hence two digests; v2: the binary with one more
    // migration. v1's image now; v2's and v3's in `builds`, each in a layout of its own.
    let v1 = push_image(&registry, &binary, "lifecycle-v1", "v1", &layout.join("v1"));
    marks.mark("v1's image built and pushed");
    registry_sender.send(registry.clone()).unwrap();
    let token = support::token();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        gateways: Arc::new(regions.iter().map(|(_, u)| u.clone()).collect()),
        key: key.clone(),
        token: token.clone(),
    };
    let seeded: String = block_on(async {
        let response = client.create(0, "lifecycle-seed").await.unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        id_of(&body).unwrap()
    });
    let load = Load::start(client.clone(), seeded);
    let slo = SLO_P95_MS.to_string();
    let deploy = |image: &str, gate: bool| {
        let mut args = vec![
            "deploy",
            "--env",
            "local",
            "--image",
            image,
            "--canary",
            "50",
            "--canary-wait",
            "3",
            "--api-key",
            key.as_str(),
            "--token",
            token.as_str(),
        ];
        if gate {
            args.extend([
                "--slo-p95-ms",
                slo.as_str(),
                "--slo-duration",
                "3s",
                "--slo-connections",
                "3",
            ]);
        }
        xtask(&args)
    };
    let on_all = |image: &str| {
        regions
            .iter()
            .all(|(r, _)| serving(&control, r).as_deref() == Some(image))
    };

    // The load runs (each client has had an answer) before the first deploy.
    load.wait_until_answered(Duration::from_secs(60));
    marks.mark("seeded, load started");
    assert!(deploy(&v1, false).status.success());
    assert!(on_all(&v1), "v1 does not serve everything");
    marks.mark("phase 0: v1 deployed");

    load.enter(1);
    let v2 = builds.v2();
    marks.mark("phase 1: v2's image ready (built beside)");
    // v2's migration, by the migrate job with v2's image, before v2 has a revision (deploy's
    // migrate step does this once it lands: then this call finds nothing left to apply).
    assert!(!has_fixture_column(&database));
    let migrated = run_migrate_job(&control, &job, &v2);
    assert!(
        migrated["error"].is_null(),
        "the migrate job failed: {migrated}"
    );
    assert!(has_fixture_column(&database), "v2's column is missing");
    marks.mark("phase 1: migrate job");
    assert!(deploy(&v2, true).status.success());
    assert!(on_all(&v2), "v2 does not serve everything");
    marks.mark("phase 1: v2 deployed through the gate");

    load.enter(2);
    let v3 = builds.v3();
    marks.mark("phase 2: v3's image ready (built beside)");
    // The fault is in place before v3's revision serves a request: the canary and the gate
    // see only slow answers.
    let (status, _) = send_json(
        reqwest::Method::POST,
        &format!("{control}/local/image-faults"),
        &serde_json::json!({
            "image": v3, "added_latency_ms": INJECTED_MS, "error_ratio": 0.0,
            "error_status": 503
        }),
    );
    assert_eq!(status, 204);
    let missed = deploy(&v3, true);
    assert!(!missed.status.success(), "v3 passed the SLO gate");
    let why = String::from_utf8_lossy(&missed.stderr);
    assert!(
        // The p95 line (a NaN p95 too, should no request end within the gate's load).
        why.contains(&format!("ms above the SLO of {SLO_P95_MS} ms")),
        "v3 failed for another reason than the gate"
    );
    assert!(on_all(&v2), "traffic is not back on v2");
    marks.mark("phase 2: v3 missed the gate, rolled back");

    load.enter(3);
    // Ctrl-C during the canary hold, under load: deploy rolls back what it changed (v2 serves
    // everything again), releases its lease and exits 130 (docs/deploy.md, "Rollback behaviour").
    let interrupted_log = layout.with_extension("interrupted.log");
    let mut interrupted = support::xtask_command()
        .args(["deploy", "--env", "local", "--image", &v1, "--canary", "50"])
        .args(["--canary-wait", "120", "--api-key", &key, "--token", &token])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&interrupted_log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(&interrupted_log)
        .unwrap_or_default()
        .contains("holding the canary")
    {
        assert!(
            started.elapsed() < Duration::from_secs(180)
                && interrupted.try_wait().unwrap().is_none(),
            "the deploy did not reach its canary hold: {}",
            std::fs::read_to_string(&interrupted_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(interrupted.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = interrupted.wait().unwrap();
    let said = std::fs::read_to_string(&interrupted_log).unwrap_or_default();
    eprintln!("--- interrupted deploy: {status}\n{said}");
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(on_all(&v2), "after SIGINT, v2 does not serve everything");
    let _ = std::fs::remove_file(&interrupted_log);
    marks.mark("phase 3: deploy of v1 interrupted in its canary hold");

    let v1_started_before = later_schema_lines(&cloud);
    assert!(deploy(&v1, false).status.success());
    assert!(on_all(&v1), "v1 does not serve everything");
    // v1's instances started after v2's migration found the newer schema and serve.
    assert!(
        later_schema_lines(&cloud) > v1_started_before,
        "no v1 instance started on v2's schema"
    );
    marks.mark("phase 3: v1 deployed");

    load.enter(4);
    std::thread::sleep(Duration::from_secs(3));
    let (phases, created) = load.finish();
    marks.mark("phase 4: after");

    // Every acknowledged POST is readable.
    let lost: Vec<String> = block_on(async {
        let mut lost = Vec::new();
        for chunk in created.chunks(16) {
            let mut reads = tokio::task::JoinSet::new();
            for (n, id) in chunk.iter().enumerate() {
                let (client, id) = (client.clone(), id.clone());
                reads.spawn(async move {
                    let r = client
                        .request(n, reqwest::Method::GET, &format!("/items/{id}"))
                        .send()
                        .await;
                    (id, r.map(|r| r.status().as_u16()))
                });
            }
            while let Some(answer) = reads.join_next().await {
                let (id, status) = answer.unwrap();
                if !matches!(status, Ok(200)) {
                    lost.push(id);
                }
            }
        }
        lost
    });
    marks.mark("acknowledged POSTs read back");

    let mut failed = 0;
    for (phase, (name, (sent, ok, other, p95))) in PHASES.iter().zip(&phases).enumerate() {
        eprintln!("{name}: sent {sent}, 2xx {ok}, other {other:?}, p95 {p95:.1} ms");
        for (what, n) in other {
            // The one failure a phase provokes: v1's deploy is the first from the bootstrap
            // revision and creates a new API config; the local gateway restarts on it and
            // refuses connections meanwhile (README, "The local cloud": where it stops).
            if !(phase == 0 && what.starts_with("not sent")) {
                failed += n;
            }
        }
    }
    eprintln!(
        "acknowledged POSTs: {}, lost: {}",
        created.len(),
        lost.len()
    );
    assert!(phases.iter().all(|p| p.0 > 0), "a phase sent nothing");
    assert_eq!(failed, 0, "requests failed");
    assert!(lost.is_empty(), "acknowledged POSTs lost: {lost:?}");
    let _ = std::fs::remove_dir_all(&layout);
}
