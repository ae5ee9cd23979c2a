//! SIGTERM mid-request: the binary stops accepting, finishes in-flight work and exits 0.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::connect;

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    // reqwest is built without a rustls provider of its own (see items-telemetry).
    items_telemetry::install_crypto_provider();
    let db_url = items_testkit::fresh_database().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_items-service"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENVIRONMENT", "local")
        .env("APP__DATABASE__URL", &db_url)
        .env("PORT", port.to_string())
        .env("APP__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let fresh = reqwest::Client::new()
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

    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within Cloud Run's 10 s window")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));

    // The acknowledged write is in the database.
    let name: String = connect(&db_url)
        .await
        .query_one("SELECT name FROM items WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "finished after SIGTERM");
}
