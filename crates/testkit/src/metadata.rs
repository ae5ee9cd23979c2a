//! A stand-in for the metadata server's access-token endpoint, reached as Google's libraries
//! reach a non-default one: `GCE_METADATA_HOST=host:port` (google-cloud-auth,
//! `src/mds/client.rs`: `http://{GCE_METADATA_HOST}`, else `http://metadata.google.internal`).
//!
//! What it serves, and where it stops:
//! - `GET /computeMetadata/v1/instance/service-accounts/default/token[?scopes=…]` with the header
//!   `Metadata-Flavor: Google` answers `{"access_token", "expires_in", "token_type": "Bearer"}`
//!   with `Metadata-Flavor: Google`. Sources: Cloud Run, "Container runtime contract" (the
//!   metadata server and its token path); Compute Engine, "View and query VM metadata"
//!   (cloud.google.com/compute/docs/metadata/querying-metadata: requests carry the
//!   `Metadata-Flavor: Google` header); google-cloud-auth's `src/mds/client.rs` (sends that
//!   header, and reads `access_token`, `expires_in`, `token_type` as `MDSTokenResponse`).
//! - A request without the header gets a 403 here; that the hosted server answers exactly 403 is
//!   not confirmed from Google's pages (third-party write-ups say so).
//! - The token is whatever the test set last ([`MetadataServer::set_token`]); scopes are
//!   recorded, not enforced. Every other path is a 404. HTTP/1.1, one request per connection.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

#[derive(Debug, Default)]
struct State {
    token: String,
    expires_in: u64,
    /// Tokens served, in order.
    served: Vec<String>,
    /// Request targets (path and query) of token requests with the header.
    targets: Vec<String>,
    /// Requests refused for a missing `Metadata-Flavor: Google`.
    refused: usize,
}

/// The stand-in, serving on loopback until dropped.
#[derive(Debug)]
pub struct MetadataServer {
    port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl MetadataServer {
    /// Serves `token`, valid for `expires_in` seconds (google-cloud-auth fetches the next one 240
    /// s before that: a value just above 240 makes it fetch about every `expires_in - 240` s).
    pub async fn start(token: &str, expires_in: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            expires_in,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = answer(&String::from_utf8_lossy(&head), &state);
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { port, state, task })
    }

    /// What `GCE_METADATA_HOST` should hold.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Serves `token` from now on.
    pub fn set_token(&self, token: &str) {
        self.with(|s| s.token = token.to_owned());
    }

    /// The tokens served so far, in order.
    pub fn served(&self) -> Vec<String> {
        self.with(|s| s.served.clone())
    }

    /// The targets (path and query) of the token requests so far.
    pub fn targets(&self) -> Vec<String> {
        self.with(|s| s.targets.clone())
    }

    /// How many requests lacked `Metadata-Flavor: Google`.
    pub fn refused(&self) -> usize {
        self.with(|s| s.refused)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut state)
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(head: &str, state: &Mutex<State>) -> String {
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let flavored = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("metadata-flavor") && value.trim() == "Google"
        })
    });
    let mut state = match state.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let path = target.split('?').next().unwrap_or_default();
    if path != TOKEN_PATH {
        return reply("404 Not Found", "text/plain", "not found");
    }
    if !flavored {
        state.refused += 1;
        return reply(
            "403 Forbidden",
            "text/plain",
            "Missing Metadata-Flavor:Google header.",
        );
    }
    state.targets.push(target.clone());
    let token = state.token.clone();
    state.served.push(token.clone());
    reply(
        "200 OK",
        "application/json",
        &format!(
            r#"{{"access_token":"{token}","expires_in":{},"token_type":"Bearer"}}"#,
            state.expires_in
        ),
    )
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nMetadata-Flavor: Google\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
