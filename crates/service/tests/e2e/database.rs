//! How the service logs in to its database, end to end: the password file read once at
//! start-up and again after a rotation (and an honest 503 when it does not match), TLS with the
//! server's CA checked (a wrong CA stops start-up, naming the setting), and Cloud SQL IAM
//! database authentication with tokens from a metadata-server stand-in reached through
//! `GCE_METADATA_HOST`, as on Cloud Run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use items_service::{Application, BuildOptions};
use items_telemetry::PlatformIdentity;
use items_testkit::{MetadataServer, ServiceLaunch, TestCa, TlsDatabase};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::support::{self, client, fresh_settings, load_settings, serve, spawn_binary};

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("items-e2e-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// Counts the opens of one file (inotify `IN_OPEN`): every read starts with one, a `stat` does
/// not. Closes are watched too: inotify merges an event into an identical one still unread, so
/// two opens in a row would count once; open, close, open do not.
struct OpenCounter {
    inotify: Inotify,
    opens: usize,
}

impl OpenCounter {
    fn watch(path: &Path) -> Self {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        inotify
            .add_watch(
                path,
                AddWatchFlags::IN_OPEN | AddWatchFlags::IN_CLOSE_NOWRITE,
            )
            .unwrap();
        Self { inotify, opens: 0 }
    }

    fn opens(&mut self) -> usize {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            self.opens += events
                .iter()
                .filter(|e| e.mask.contains(AddWatchFlags::IN_OPEN))
                .count();
        }
        self.opens
    }
}

/// #23: the settings check, the schema step and every worker's pool used to read the password
/// file each (2 + N times: 4 here); now the connector reads it once and hands it down.
#[tokio::test]
async fn start_up_reads_the_password_file_once() {
    let password = TempFile::new("read-once", "unused-by-a-trust-cluster\n");
    let mut counter = OpenCounter::watch(password.path());
    let settings = fresh_settings(|launch| {
        launch.env(
            "APP__DATABASE__PASSWORD_FILE",
            password.path().display().to_string(),
        )
    })
    .await;
    let address = serve(
        &settings,
        &PlatformIdentity::default(),
        BuildOptions::default(),
    )
    .await;
    let client = client();
    for _ in 0..4 {
        let response = client.get(format!("{address}/items")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(counter.opens(), 1, "reads of database.password_file");
}

/// The local settings pointed at `database` over TCP with TLS (`verify-ca`, its CA).
fn tls_launch(database: &TlsDatabase, ca_pem: &str) -> ServiceLaunch {
    support::launch_binary()
        .environment("local")
        .env("APP__DATABASE__HOST", "127.0.0.1")
        .env("APP__DATABASE__PORT", database.cluster.port())
        .env("APP__DATABASE__USER", &database.user)
        .env("APP__DATABASE__DBNAME", "items")
        .env("APP__DATABASE__TLS_MODE", "verify-ca")
        .env("APP__DATABASE__TLS_CA_PEM", ca_pem)
        .env("APP__DATABASE__POOL__CREATE_TIMEOUT_MS", 5000)
}

/// [`tls_launch`] for a server in this process: any free port, two workers.
fn in_process(launch: ServiceLaunch) -> ServiceLaunch {
    launch
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .workers(2)
}

/// #18: the password is rotated under the running service: the role's password and the file
/// change, and new connections use the new one (the file is read again when the server refuses
/// the old one). A role whose password the file does not hold gets honest 503s with
/// Retry-After, and the service recovers once the secret catches up.
#[tokio::test]
async fn a_password_rotation_under_a_running_service_keeps_it_serving() {
    support::logs::capture_logs();
    let database = TlsDatabase::start("app", "first").await.unwrap();
    let password = TempFile::new("rotation", "first\n");
    let launch = in_process(tls_launch(&database, database.ca.pem())).env(
        "APP__DATABASE__PASSWORD_FILE",
        password.path().display().to_string(),
    );
    let address = serve(
        &load_settings(&launch),
        &PlatformIdentity::default(),
        BuildOptions::default(),
    )
    .await;
    let client = client();
    let get = || async { client.get(format!("{address}/items")).send().await.unwrap() };
    assert_eq!(get().await.status(), 200);
    assert!(database.encrypted_sessions().await.unwrap() >= 1);

    // The rotation: role and secret change, open connections end.
    database.set_password("second").await.unwrap();
    std::fs::write(password.path(), "second\n").unwrap();
    database.disconnect_user().await.unwrap();
    for _ in 0..3 {
        assert_eq!(get().await.status(), 200);
    }

    // Half a rotation: the role changed, the secret did not.
    database.set_password("third").await.unwrap();
    database.disconnect_user().await.unwrap();
    tokio::time::sleep(items_repository::REREAD_INTERVAL).await;
    let refused = get().await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    // One WARNING line says why, naming the file's setting.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !support::logs::all_lines().iter().any(|line| {
        line["severity"] == "WARNING"
            && line["message"]
                .as_str()
                .is_some_and(|m| m.contains("database.password_file still holds it"))
    }) {
        assert!(
            Instant::now() < deadline,
            "no WARNING line about the password"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    std::fs::write(password.path(), "third\n").unwrap();
    tokio::time::sleep(items_repository::REREAD_INTERVAL).await;
    assert_eq!(get().await.status(), 200);
}

#[tokio::test]
async fn a_wrong_database_ca_stops_start_up_naming_the_setting() {
    let database = TlsDatabase::start("app", "first").await.unwrap();
    let other = TestCa::new("not the server's CA").unwrap();
    let launch =
        in_process(tls_launch(&database, other.pem())).env("APP__DATABASE__PASSWORD", "first");
    let err = Application::build(&load_settings(&launch), &PlatformIdentity::default())
        .await
        .map(|_| ())
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("database.tls_ca_pem"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

/// Cloud SQL IAM database authentication: the binary, as on Cloud Run, gets its tokens from the
/// metadata server (here a stand-in reached through `GCE_METADATA_HOST`), one for each new
/// connection, with the Cloud SQL login scope; the database checks them (the role's password is
/// the token the stand-in serves, changed between connections).
#[tokio::test]
async fn iam_authentication_logs_in_with_the_metadata_servers_current_token() {
    // The runtime service account's database user: its email without ".gserviceaccount.com".
    let user = "items-run@test-project.iam";
    let database = TlsDatabase::start(user, "token-1").await.unwrap();
    // 241 s: google-cloud-auth asks for the next token 240 s before expiry, so about every second.
    let metadata = MetadataServer::start("token-1", 241).await.unwrap();
    let launch = tls_launch(&database, database.ca.pem())
        .env("APP__DATABASE__IAM_AUTHENTICATION", "true")
        .env("GCE_METADATA_HOST", metadata.host());
    let client = client();
    let (_child, address) = spawn_binary(launch, Stdio::null(), &client).await;
    let get = || async { client.get(format!("{address}/items")).send().await.unwrap() };
    assert_eq!(get().await.status(), 200);
    assert!(database.encrypted_sessions().await.unwrap() >= 1);

    // The next token: new connections log in with it.
    metadata.set_token("token-2");
    database.set_password("token-2").await.unwrap();
    wait_until_served(&metadata, "token-2").await;
    database.disconnect_user().await.unwrap();
    assert_eq!(get().await.status(), 200);

    // A token the database does not accept: a 503 with Retry-After, not a 500.
    metadata.set_token("token-3");
    wait_until_served(&metadata, "token-3").await;
    database.disconnect_user().await.unwrap();
    let refused = get().await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    assert_eq!(
        metadata.refused(),
        0,
        "every request said Metadata-Flavor: Google"
    );
    let targets = metadata.targets();
    assert!(
        targets.iter().all(
            |t| t.contains("scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fsqlservice.login")
        ),
        "{targets:?}"
    );
}

async fn wait_until_served(metadata: &MetadataServer, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !metadata.served().iter().any(|t| t == token) {
        assert!(
            Instant::now() < deadline,
            "the service never fetched {token}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
