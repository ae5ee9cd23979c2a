//! SIGTERM mid-request: the binary stops accepting, finishes in-flight work and exits 0.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{
    assert_graceful_exit, client, client_builder, connect, create_at, launch, spawn_binary,
    until_an_update_waits_for_a_lock,
};

/// The statement timeout of the services whose PATCH waits on a held row lock: the waits for
/// the lock and for the listener to close take as long as a loaded machine needs, and the
/// default 5 s would end the PATCH on its own.
const HELD: u64 = 30_000;

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let db_url = items_testkit::fresh_database().await.unwrap();
    let launch = launch(&db_url)
        .log_format("json")
        .env("APP__DATABASE__STATEMENT_TIMEOUT_MS", HELD);
    let client = client();
    let (child, base) = spawn_binary(launch, Stdio::null(), &client).await;
    let id = create_item(&client, &base).await;
    patch_across_sigterm(child, &base, &db_url, &client, id, |_| async {}).await;
}

/// The database connection an in-flight request uses may have been opened by another actix
/// worker, and a graceful stop ends idle workers first: the request must still finish.
#[tokio::test]
async fn sigterm_spares_a_connection_that_an_idle_worker_opened() {
    let db_url = items_testkit::fresh_database().await.unwrap();
    // Two workers, one database connection each at most (one in all, had they shared a pool),
    // and a new TCP connection per request: actix-server hands accepted connections to its
    // workers in turn, so two consecutive requests run on different workers.
    let launch = launch(&db_url)
        .log_format("json")
        .workers(2)
        .pool_max_size(1)
        .env("APP__DATABASE__STATEMENT_TIMEOUT_MS", HELD);
    let client = client_builder().pool_max_idle_per_host(0).build().unwrap();
    let (child, base) = spawn_binary(launch, Stdio::null(), &client).await;
    let id = create_item(&client, &base).await;
    let reopen = |base: String| {
        let (client, db_url) = (client.clone(), db_url.clone());
        async move {
            // Close the service's connections from the server side; the next request (the GET,
            // on one worker) opens a new one, which the PATCH (on the other worker) would then
            // use if the workers shared a pool.
            let admin = connect(&db_url).await;
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let got = client.get(format!("{base}/items/{id}")).send().await;
            assert_eq!(
                got.unwrap().status(),
                200,
                "the GET that reopens the connection"
            );
        }
    };
    patch_across_sigterm(child, &base, &db_url, &client, id, reopen).await;
}

async fn create_item(client: &reqwest::Client, base: &str) -> i64 {
    create_at(client, base, "in flight").await["id"]
        .as_i64()
        .unwrap()
}

/// After `before_patch`, a PATCH of item `id` waits on a row lock while SIGTERM
/// arrives; then the lock is released. The server must stop accepting, answer the PATCH 200,
/// exit 0 within Cloud Run's window, and the acknowledged write must be in the database.
async fn patch_across_sigterm<F: Future<Output = ()>>(
    mut child: tokio::process::Child,
    base: &str,
    db_url: &str,
    client: &reqwest::Client,
    id: i64,
    before_patch: impl FnOnce(String) -> F,
) {
    before_patch(base.to_owned()).await;
    let mut blocker = connect(db_url).await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM items WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/items/{id}");
        async move {
            client
                .patch(url)
                .header("Content-Type", "application/merge-patch+json")
                .body(r#"{"name": "finished after SIGTERM"}"#)
                .send()
                .await
        }
    });
    until_an_update_waits_for_a_lock(db_url).await;
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    let signalled = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();

    // No longer accepting new connections, while the PATCH is still held by the lock: the
    // signal takes effect some time after kill() returns, so try until a new request fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = crate::support::client()
            .get(format!("{base}/health/live"))
            .send()
            .await;
        if fresh.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted 5 s after SIGTERM: {fresh:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the PATCH ended before the lock was released"
    );

    tx.commit().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request gets its response");
    assert_eq!(response.status(), 200);

    assert_graceful_exit(&mut child, signalled).await;

    // The acknowledged write is in the database.
    let name: String = connect(db_url)
        .await
        .query_one("SELECT name FROM items WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "finished after SIGTERM");
}

/// The worst case of both budgets: an in-flight request that holds the drain for all of
/// `server.shutdown_timeout_secs` (8 s), then an OTLP receiver that accepts and never answers
/// (a flush of up to twice `telemetry.flush_timeout_ms`). The process still exits before Cloud
/// Run's SIGKILL, 10 s after SIGTERM (`items_service::SHUTDOWN_BUDGET`, 9.5 s).
#[tokio::test]
async fn a_full_drain_and_a_stuck_flush_still_end_before_sigkill() {
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = blackhole.accept().await {
            sockets.push(socket);
        }
    });
    let db_url = items_testkit::fresh_database().await.unwrap();
    let launch = launch(&db_url)
        .log_format("json")
        .otlp(&endpoint)
        .env("APP__SERVER__SHUTDOWN_TIMEOUT_SECS", 8)
        .env("APP__TELEMETRY__FLUSH_TIMEOUT_MS", 3000)
        .env("APP__TELEMETRY__EXPORT_TIMEOUT_MS", 30000)
        .env("APP__DATABASE__STATEMENT_TIMEOUT_MS", HELD);
    let client = client();
    let (mut child, base) = spawn_binary(launch, Stdio::null(), &client).await;
    let id = create_item(&client, &base).await;

    let mut blocker = connect(&db_url).await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM items WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let url = format!("{base}/items/{id}");
        async move {
            client
                .patch(url)
                .header("Content-Type", "application/merge-patch+json")
                .body(r#"{"name": "never"}"#)
                .send()
                .await
        }
    });
    until_an_update_waits_for_a_lock(&db_url).await;
    let signalled = Instant::now();
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let took = signalled.elapsed();
    tx.rollback().await.unwrap();
    drop(in_flight);
    held.abort();
    assert!(exited.is_ok(), "still running 20 s after SIGTERM");
    assert!(
        took >= Duration::from_secs(7),
        "the drain was not held ({took:?}): the test lost its worst case"
    );
    // Measured from kill() to the reap, so it includes signal delivery and this test's own
    // scheduling. Cloud Run sends SIGKILL 10 s after SIGTERM; the service's SHUTDOWN_BUDGET of
    // 9.5 s leaves it half a second to exit, of which this keeps 0.4 s for the exit itself, so
    // that a budget grown into the margin is caught.
    assert!(
        took < Duration::from_millis(9900),
        "exit {took:?} after SIGTERM: Cloud Run kills at 10 s"
    );
}
