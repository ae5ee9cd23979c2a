//! A release's life on the local cloud under a steady client load through its gateways: v1
//! deployed; v2 through a canary and the SLO gate to 100%; v3, slowed by a fault injected into
//! its revision, misses the gate and is rolled back to v2; then the documented rollback to v1
//! (`deploy --image` with v1's digest). Per phase it prints the requests sent, the 2xx, the other
//! answers by status and the p95; at the end every acknowledged POST must be readable.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/local_cloud.rs"]
mod support;

use support::{Cloud, push_image, revision_of, service_binary, xtask};

const PHASES: [&str; 5] = [
    "v1: deploy (canary 50%, 3 s)",
    "v2: canary 50%, SLO gate, 100%",
    "v3: latency injected, SLO gate missed, rolled back to v2",
    "rollback to v1: deploy --image v1",
    "after: v1 serving",
];
/// The p95 objective of the gate, and the latency injected into v3's revision (well above it).
const SLO_P95_MS: u64 = 1000;
const INJECTED_MS: u64 = 2500;

/// One request of the load: its phase, what it was and its outcome (status, or the error).
struct Record {
    phase: usize,
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
                                    client
                                        .request(n, reqwest::Method::GET, "/items?page_size=5")
                                        .send()
                                        .await
                                }
                                _ => client.create(n, &format!("load-{now}-{n}")).await,
                            };
                            let outcome = match answer {
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

/// The revision serving 100% of `region`'s traffic, read from the control plane.
fn serving(control: &str, region: &str) -> Option<String> {
    let url = format!("{control}/v2/projects/items-local-0001/locations/{region}/services/items");
    let body: serde_json::Value =
        block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() });
    body["traffic"]
        .as_array()?
        .iter()
        .find(|t| t["percent"].as_u64() == Some(100))
        .and_then(|t| t["revision"].as_str())
        .map(str::to_owned)
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
    let Some(binary) = service_binary() else {
        return;
    };
    let cloud = Cloud::start(&binary);
    let control = cloud.value("control plane:");
    let key = cloud.value("api key:");
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
    let layout = std::env::temp_dir().join(format!("xtask-lifecycle-{}", std::process::id()));
    // Three images of the same binary that differ in one file: the image config's revision
    // label (`cargo xtask image --revision`), hence three digests and three revisions.
    let images: Vec<String> = ["v1", "v2", "v3"]
        .iter()
        .map(|v| push_image(&registry, &binary, &format!("lifecycle-{v}"), v, &layout))
        .collect();
    let revisions: Vec<String> = images.iter().map(|i| revision_of(i)).collect();
    let token = String::from_utf8(xtask(&["token", "--env", "local"]).stdout)
        .unwrap()
        .trim()
        .to_owned();
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
    let on_all = |revision: &str| {
        regions
            .iter()
            .all(|(r, _)| serving(&control, r).as_deref() == Some(revision))
    };

    std::thread::sleep(Duration::from_secs(2));
    assert!(deploy(&images[0], false).status.success());
    assert!(on_all(&revisions[0]), "v1 does not serve everything");

    load.enter(1);
    assert!(deploy(&images[1], true).status.success());
    assert!(on_all(&revisions[1]), "v2 does not serve everything");

    load.enter(2);
    // The fault is in place before v3's revision serves a request: the canary and the gate
    // see only slow answers.
    let fault = format!("{control}/local/faults/{}", revisions[2]);
    block_on(async {
        let r = reqwest::Client::new()
            .post(&fault)
            .json(&serde_json::json!({
                "added_latency_ms": INJECTED_MS, "error_ratio": 0.0, "error_status": 503
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    });
    let v3 = deploy(&images[2], true);
    assert!(!v3.status.success(), "v3 passed the SLO gate");
    assert!(
        String::from_utf8_lossy(&v3.stderr).contains("SLO missed"),
        "v3 failed for another reason than the gate"
    );
    assert!(on_all(&revisions[1]), "traffic is not back on v2");

    load.enter(3);
    assert!(deploy(&images[0], false).status.success());
    assert!(on_all(&revisions[0]), "v1 does not serve everything");

    load.enter(4);
    std::thread::sleep(Duration::from_secs(3));
    let (phases, created) = load.finish();

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
