//! A tiny container program for the local Cloud Run's tests: listens on `$PORT`, answers
//!
//! - `GET /env` with its environment as JSON,
//! - `GET /file?<absolute path>` with that file's bytes,
//! - `GET /headers` with the request's headers as JSON,
//! - `GET /cookie` with a `Set-Cookie` header,
//! - `GET /ready`: 503 until `TESTEE_READY_AFTER_MS` has passed since start, then 200,
//! - anything else: `<K_REVISION>`, after logging `request before ready` if it came before.
//!
//! It logs `testee K_REVISION=<rev> PORT=<port>` when it listens and `SIGTERM` when it gets one;
//! then it exits 0, unless `TESTEE_IGNORE_SIGTERM` is set. `TESTEE_EXIT_AFTER_MS` makes it exit
//! with status 3 after that long; `TESTEE_LISTEN_AFTER_MS` delays its listening.
//!
//! `local-run-testee task` is a job task instead: it prints `task env <JSON>` (its environment)
//! and `task file <path>=<content>` for each path of `TESTEE_PRINT_FILES` (comma-separated),
//! sleeps `TESTEE_SLEEP_MS`, then exits with the `CLOUD_RUN_TASK_ATTEMPT`-th code of
//! `TESTEE_EXIT_CODES` (comma-separated; the last one repeats; default 0).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn millis(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("task") {
        task().await;
    }
    let start = Instant::now();
    // Before listening: a SIGTERM can come as soon as the startup probe passes.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let revision = std::env::var("K_REVISION").unwrap_or_default();
    if let Some(delay) = millis("TESTEE_LISTEN_AFTER_MS") {
        tokio::time::sleep(delay).await;
    }
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!("testee K_REVISION={revision} PORT={port}");
    let ready_after = millis("TESTEE_READY_AFTER_MS").unwrap_or_default();
    let ignore_term = std::env::var_os("TESTEE_IGNORE_SIGTERM").is_some();
    let exit_at = millis("TESTEE_EXIT_AFTER_MS").map(|after| start + after);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ready = start.elapsed() >= ready_after;
                spawn_serve(&mut connections, stream, ready, &revision);
            }
            () = sleep_until(exit_at) => {
                // Stop accepting, finish what was accepted, then exit with a failure status.
                // "Accepted" includes the connections the kernel has completed but this loop has
                // not taken yet: closing the listener would reset them after the client sent its
                // request (`select!` may pick this branch with one waiting), which is a crash, not
                // the clean exit this testee stands for. So the backlog is drained first.
                // Only WouldBlock means the backlog is empty; an error never turns this into a
                // status-1 exit, which would abort what was accepted. A handshake completed
                // between the last WouldBlock and the close is still reset: plain TCP cannot
                // close that window, only narrow it to a few system calls.
                match listener.into_std() {
                    Ok(listener) => loop {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let Ok(stream) = stream
                                    .set_nonblocking(true)
                                    .and_then(|()| TcpStream::from_std(stream))
                                else {
                                    continue;
                                };
                                let ready = start.elapsed() >= ready_after;
                                spawn_serve(&mut connections, stream, ready, &revision);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::ConnectionAborted
                                        | std::io::ErrorKind::Interrupted
                                ) => {}
                            Err(e) => {
                                eprintln!("testee: draining the backlog stopped: {e}");
                                break;
                            }
                        }
                    },
                    Err(e) => eprintln!("testee: the backlog could not be drained: {e}"),
                }
                while connections.join_next().await.is_some() {}
                println!("testee exiting on purpose");
                std::process::exit(3);
            }
            _ = term.recv() => {
                println!("SIGTERM");
                if !ignore_term {
                    return Ok(());
                }
            }
        }
    }
}

/// Serves `stream` on a task of `connections`.
fn spawn_serve(
    connections: &mut tokio::task::JoinSet<()>,
    stream: TcpStream,
    ready: bool,
    revision: &str,
) {
    let revision = revision.to_owned();
    connections.spawn(async move {
        let _ = serve(stream, ready, &revision).await;
    });
}

async fn task() -> ! {
    let env: serde_json::Map<String, serde_json::Value> =
        std::env::vars().map(|(k, v)| (k, v.into())).collect();
    println!("task env {}", serde_json::Value::Object(env));
    for path in std::env::var("TESTEE_PRINT_FILES")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let content = std::fs::read_to_string(path).unwrap_or_else(|e| e.to_string());
        println!("task file {path}={content}");
    }
    if let Some(delay) = millis("TESTEE_SLEEP_MS") {
        tokio::time::sleep(delay).await;
    }
    let attempt: usize = std::env::var("CLOUD_RUN_TASK_ATTEMPT")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let codes: Vec<i32> = std::env::var("TESTEE_EXIT_CODES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let code = codes.get(attempt).or(codes.last()).copied().unwrap_or(0);
    std::process::exit(code)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn serve(mut stream: TcpStream, ready: bool, revision: &str) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let headers: serde_json::Map<String, serde_json::Value> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().into()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, body) = match path {
        "/env" => {
            let env: serde_json::Map<String, serde_json::Value> =
                std::env::vars().map(|(k, v)| (k, v.into())).collect();
            (200, serde_json::Value::Object(env).to_string().into_bytes())
        }
        "/file" => match std::fs::read(query) {
            Ok(bytes) => (200, bytes),
            Err(e) => (404, e.to_string().into_bytes()),
        },
        "/headers" => (
            200,
            serde_json::Value::Object(headers).to_string().into_bytes(),
        ),
        "/cookie" => (200, b"cookie".to_vec()),
        "/ready" if ready => (200, b"ready".to_vec()),
        "/ready" => (503, b"starting".to_vec()),
        _ => {
            if !ready {
                println!("request before ready: {path}");
            }
            (200, revision.as_bytes().to_vec())
        }
    };
    let cookie = if path == "/cookie" {
        "set-cookie: session=1\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{cookie}connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}
