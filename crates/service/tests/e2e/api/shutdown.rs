//! SIGTERM mid-request: the binary stops accepting, finishes in-flight work and exits 0.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{assert_graceful_exit, client, connect, launch, spawn_binary};

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let db_url = items_testkit::fresh_database().await.unwrap();
    let launch = launch(&db_url).log_format("json");
    let client = client();
    let (mut child, base) = spawn_binary(launch, Stdio::null(), &client).await;
    let created: serde_json::Value = client
        .post(format!("{base}/items"))
        .json(&serde_json::json!({ "name": "in flight" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();

    // Make a PATCH wait on a row lock so that it is in flight when SIGTERM arrives.
    let mut blocker = connect(&db_url).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    let signalled = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No longer accepting new connections.
    let fresh = crate::support::client()
        .get(format!("{base}/health/live"))
        .send()
        .await;
    assert!(
        fresh.is_err(),
        "a new connection was accepted after SIGTERM: {fresh:?}"
    );

    tx.commit().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request gets its response");
    assert_eq!(response.status(), 200);

    assert_graceful_exit(&mut child, signalled).await;

    // The acknowledged write is in the database.
    let name: String = connect(&db_url)
        .await
        .query_one("SELECT name FROM items WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "finished after SIGTERM");
}
