//! Secret rotations on the local cloud under a client load through its gateways (tasks paging
//! through `GET /items` across instances and revisions, one reading an item): first a one-step
//! page-token rotation, what bumping Terraform's `page_token_key_version` did, whose 400s show
//! that the test sees the failure; then `cargo xtask rotate page-token` phase by phase (add,
//! sign, retire), during which no request may fail; then `cargo xtask rotate db-password`, after
//! which new connections (those of new instances and those the running instances open) must
//! succeed. Per phase it prints the requests sent, the next-page requests, the 2xx and the other
//! answers by status.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::time::Duration;

#[path = "support/load.rs"]
mod load;
#[path = "support/local_cloud.rs"]
mod support;

use load::{Client, Load};
use support::{Cloud, Marks, push_image, service_binary, token, xtask};

const PHASES: [&str; 6] = [
    "v1 serving",
    "one-step page-token rotation (sign with a new key at once)",
    "rotate page-token --phase add",
    "rotate page-token --phase sign",
    "rotate page-token --phase retire",
    "rotate db-password, then new connections",
];
/// Items seeded, and the page size: five pages per walk, so every walk carries tokens.
const ITEMS: usize = 24;
const PAGE_SIZE: usize = 5;

/// Concurrent requests of the burst: well above the connections the steady load keeps open and
/// than the local pools' size, so every instance opens new ones.
const BURST: usize = 48;

/// `n` concurrent `GET /items?page_size=50`; the answers counted by status (or error).
async fn burst(client: &Client, n: usize) -> BTreeMap<String, usize> {
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        reads.spawn(async move {
            match client
                .request(i, reqwest::Method::GET, "/items?page_size=50")
                .send()
                .await
            {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => e.to_string(),
            }
        });
    }
    let mut out = BTreeMap::new();
    while let Some(answer) = reads.join_next().await {
        *out.entry(answer.unwrap()).or_insert(0) += 1;
    }
    out
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `cargo xtask rotate page-token --env local --phase PHASE`, rolled out with a canary that
/// keeps the old and the new revision serving side by side for a few seconds.
fn rotate_page_token(phase: &str) -> bool {
    xtask(&[
        "rotate",
        "page-token",
        "--env",
        "local",
        "--phase",
        phase,
        "--canary",
        "50",
        "--canary-wait",
        "4",
    ])
    .status
    .success()
}

#[test]
fn rotations_under_load_fail_no_request() {
    let mut marks = Marks::new();
    let Some(binary) = service_binary() else {
        return;
    };
    let cloud = Cloud::start(&binary);
    let gateways = cloud.gateways();
    marks.mark("cargo xtask cloud ready");
    assert!(!gateways.is_empty());
    let key = cloud.value("api key:");
    let registry = cloud.registry();
    let layout = std::env::temp_dir().join(format!("xtask-rotation-{}", std::process::id()));
    let image = push_image(&registry, &binary, "rotation-v1", "v1", &layout);
    marks.mark("image built and pushed");
    let token = token();
    let deployed = xtask(&[
        "deploy",
        "--env",
        "local",
        "--image",
        &image,
        "--api-key",
        &key,
        "--token",
        &token,
    ]);
    assert!(deployed.status.success(), "deploying v1 failed");
    marks.mark("v1 deployed");

    let urls: Vec<String> = gateways.into_iter().map(|(_, u)| u).collect();
    let client = Client::new(urls.clone(), &key, &token);
    // Its own connection pool: pooled connections belong to the runtime that opened them.
    let burst_client = Client::new(urls, &key, &token);
    let first = block_on(async {
        let mut first = String::new();
        for i in 0..ITEMS {
            let id = client.create(i, &format!("rotation-{i}")).await;
            if i == 0 {
                first = id;
            }
        }
        first
    });
    let load = Load::start(client, 4, PAGE_SIZE, 1, first);
    marks.mark("seeded, load started");
    std::thread::sleep(Duration::from_secs(3));

    load.enter(1);
    assert!(
        rotate_page_token("one-step"),
        "the one-step rotation failed"
    );
    marks.mark("phase 1: one-step rotation");
    for (n, phase) in ["add", "sign", "retire"].into_iter().enumerate() {
        load.enter(2 + n);
        assert!(rotate_page_token(phase), "phase {phase} failed");
        marks.mark(&format!(
            "phase {}: rotate page-token --phase {phase}",
            2 + n
        ));
    }

    load.enter(5);
    let rotated = xtask(&["rotate", "db-password", "--env", "local"]);
    assert!(rotated.status.success(), "rotate db-password failed");
    marks.mark("phase 5: rotate db-password");
    // New connections after the rotation: the running instances' own (a burst of concurrent
    // requests grows their pools past the few connections the steady load keeps open), then a
    // new revision's instances (the roll-out of a page-token phase starts them).
    let burst = block_on(burst(&burst_client, BURST));
    eprintln!("burst of {BURST} concurrent reads after the password rotation: {burst:?}");
    assert!(
        rotate_page_token("add"),
        "a roll-out after the password rotation failed"
    );
    marks.mark("phase 5: burst, roll-out after the rotation");
    std::thread::sleep(Duration::from_secs(3));
    let figures = load.finish(PHASES.len());

    for (name, f) in PHASES.iter().zip(&figures) {
        eprintln!(
            "{name}: sent {}, next pages {}, 2xx {}, other {:?}",
            f.sent, f.next_pages, f.ok, f.other
        );
    }
    assert!(
        figures.iter().all(|f| f.sent > 0 && f.next_pages > 0),
        "a phase sent no next-page request"
    );
    assert!(
        figures[0].other.is_empty(),
        "requests failed before any rotation"
    );
    // The control: signing with a new key at once is seen failing.
    assert!(
        figures[1].other.get("400").copied().unwrap_or(0) > 0,
        "the one-step rotation gave no 400: the load does not page across revisions"
    );
    for (name, f) in PHASES.iter().zip(&figures).skip(2) {
        assert!(f.other.is_empty(), "{name}: requests failed: {:?}", f.other);
    }
    assert_eq!(
        burst.get("200").copied(),
        Some(BURST),
        "new connections after the password rotation failed"
    );
    let _ = std::fs::remove_dir_all(&layout);
}
