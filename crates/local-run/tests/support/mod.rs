//! Test support: an OCI image of the `local-run-testee` program (the executable, the shared
//! libraries `ldd` lists, `/etc/passwd` with `nonroot`), served by a minimal OCI distribution
//! registry on loopback, and a runtime around it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use items_local_run::{
    HttpProbe, Iam, InstanceLog, RevisionSpec, Runtime, RuntimeOptions, ServiceId,
};
use sha2::{Digest as _, Sha256};

pub const GATEWAY: &str = "items-gateway@p.iam.gserviceaccount.com";

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A tar layer of (path in the image, mode, content); gzip-compressed when `gzip`.
fn layer(files: &[(String, u32, Vec<u8>)], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut at = PathBuf::new();
        for c in Path::new(path)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            at.push(c);
            dirs.insert(at.clone());
        }
    }
    for dir in dirs {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if dir == Path::new("tmp") {
            0o1777
        } else {
            0o755
        });
        header.set_size(0);
        header.set_cksum();
        builder
            .append_data(&mut header, &dir, std::io::empty())
            .expect("dir entry");
    }
    for (path, mode, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(*mode);
        header.set_size(content.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, path, content.as_slice())
            .expect("file entry");
    }
    let tar = builder.into_inner().expect("tar");
    if !gzip {
        return tar;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// The shared objects `ldd` lists for `binary`, with the loader.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .expect("running ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

/// An image in the registry: its pinned reference.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
}

/// Blobs and manifests by digest, and the paths asked for.
#[derive(Debug, Default)]
struct Store {
    content: HashMap<String, (String, Vec<u8>)>,
    requests: Vec<String>,
}

/// A minimal OCI distribution registry (pull side only) on loopback.
#[derive(Debug, Clone)]
pub struct Registry {
    pub host: String,
    store: Arc<Mutex<Store>>,
}

async fn serve_registry(req: HttpRequest, store: web::Data<Mutex<Store>>) -> HttpResponse {
    let path = req.path().to_owned();
    let mut store = store.lock().expect("store");
    store.requests.push(path.clone());
    let digest = path.rsplit('/').next().unwrap_or_default();
    match store.content.get(digest) {
        Some((media_type, bytes)) if path.starts_with("/v2/") => HttpResponse::Ok()
            .content_type(media_type.as_str())
            .insert_header(("docker-content-digest", digest))
            .body(bytes.clone()),
        _ => HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#),
    }
}

impl Registry {
    pub fn start() -> Registry {
        let store = web::Data::new(Mutex::new(Store::default()));
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind registry");
        let host = listener.local_addr().expect("addr").to_string();
        let data = store.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(serve_registry))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Registry {
            host,
            store: store.into_inner(),
        }
    }

    fn put(&self, media_type: &str, bytes: Vec<u8>) -> String {
        let d = digest(&bytes);
        self.store
            .lock()
            .expect("store")
            .content
            .insert(d.clone(), (media_type.to_owned(), bytes));
        d
    }

    /// The paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.store.lock().expect("store").requests.clone()
    }

    /// Pushes the testee image; `label` makes it differ.
    pub fn push_testee(&self, label: &str) -> Image {
        let blobs = testee_image(label);
        let mut top = String::new();
        for blob in blobs {
            top = self.put(&blob.media_type, blob.bytes);
        }
        Image {
            reference: format!("{}/items/testee@{top}", self.host),
        }
    }
}

/// One blob or manifest of an image, with its kind.
#[derive(Debug, Clone)]
pub struct Blob {
    pub manifest: bool,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The testee image (two layers: libraries and `/etc`, then the program) as an OCI index that
/// points at one linux/amd64 manifest, in push order (the index last).
pub fn testee_image(label: &str) -> Vec<Blob> {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_local-run-testee"));
    let mut base: Vec<(String, u32, Vec<u8>)> = libraries(&binary)
        .into_iter()
        .map(|lib| {
            let bytes = std::fs::read(&lib).expect("library");
            (
                lib.to_string_lossy().trim_start_matches('/').to_owned(),
                0o755,
                bytes,
            )
        })
        .collect();
    base.push((
        "etc/passwd".into(),
        0o644,
        b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".to_vec(),
    ));
    base.push((
        "etc/group".into(),
        0o644,
        b"root:x:0:\nnonroot:x:65532:\n".to_vec(),
    ));
    base.push(("tmp/.keep".into(), 0o644, Vec::new()));
    let app = vec![
        (
            "usr/local/bin/testee".to_owned(),
            0o755,
            std::fs::read(&binary).expect("testee binary"),
        ),
        ("etc/label".to_owned(), 0o644, label.as_bytes().to_vec()),
    ];
    let mut out = Vec::new();
    let mut push = |manifest: bool, media_type: &str, bytes: Vec<u8>| {
        let descriptor = serde_json::json!({
            "mediaType": media_type, "digest": digest(&bytes), "size": bytes.len()
        });
        out.push(Blob {
            manifest,
            media_type: media_type.to_owned(),
            bytes,
        });
        descriptor
    };
    let layers = vec![
        push(
            false,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            layer(&base, true),
        ),
        push(
            false,
            "application/vnd.oci.image.layer.v1.tar",
            layer(&app, false),
        ),
    ];
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "nonroot",
            "Entrypoint": ["/usr/local/bin/testee"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PORT=8080", "IMAGE_VAR=from-image", "OVERRIDDEN=image"],
            "WorkingDir": "/tmp"
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let config = push(
        false,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().into_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    let mut manifest = push(
        true,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().into_bytes(),
    );
    manifest["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest],
    });
    push(
        true,
        "application/vnd.oci.image.index.v1+json",
        index.to_string().into_bytes(),
    );
    out
}

/// Debian's `docker-registry` (the OCI distribution reference implementation) on a free
/// loopback port, storing into `dir`; killed on drop. `None` (with a printed reason) when it is
/// not installed (.ci/run installs it).
#[derive(Debug)]
pub struct DockerRegistry {
    child: std::process::Child,
    dir: PathBuf,
    pub host: String,
}

impl DockerRegistry {
    pub fn start() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("local-run-registry-{}", fastrand::u64(..)));
        let Ok(status) = std::process::Command::new("docker-registry")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
        else {
            println!("SKIPPED: docker-registry is not installed (Debian package docker-registry)");
            return None;
        };
        assert!(status.success(), "docker-registry --version");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
                dir.join("storage").display()
            ),
        )
        .expect("registry config");
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Self { child, dir, host };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&registry.host).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    /// Pushes `blobs` to `repository` with the distribution API (monolithic uploads, then the
    /// manifests by digest); returns the pinned reference of the last one.
    pub async fn push(&self, repository: &str, blobs: &[Blob]) -> String {
        let client = http();
        let base = format!("http://{}/v2/{repository}", self.host);
        let mut top = String::new();
        for blob in blobs {
            let d = digest(&blob.bytes);
            let response = if blob.manifest {
                client
                    .put(format!("{base}/manifests/{d}"))
                    .header("content-type", &blob.media_type)
                    .body(blob.bytes.clone())
                    .send()
                    .await
                    .expect("put manifest")
            } else {
                let started = client
                    .post(format!("{base}/blobs/uploads/"))
                    .send()
                    .await
                    .expect("start upload");
                assert_eq!(started.status().as_u16(), 202);
                let location = started.headers()["location"]
                    .to_str()
                    .expect("location")
                    .to_owned();
                let location = if location.starts_with('/') {
                    format!("http://{}{location}", self.host)
                } else {
                    location
                };
                let separator = if location.contains('?') { '&' } else { '?' };
                client
                    .put(format!("{location}{separator}digest={d}"))
                    .header("content-type", "application/octet-stream")
                    .body(blob.bytes.clone())
                    .send()
                    .await
                    .expect("put blob")
            };
            assert_eq!(response.status().as_u16(), 201, "{d}");
            top = d;
        }
        format!("{}/{repository}@{top}", self.host)
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A runtime with its registry, testee image and in-memory instance log.
#[derive(Debug)]
pub struct Cloud {
    pub runtime: Runtime,
    pub registry: Registry,
    pub image: Image,
    pub log: Arc<Mutex<Vec<String>>>,
    pub state_dir: PathBuf,
}

pub fn service(name: &str) -> ServiceId {
    ServiceId {
        project: "p".into(),
        region: "europe-west1".into(),
        name: name.into(),
    }
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

impl Cloud {
    pub async fn start(grace: Duration) -> Cloud {
        let state_dir = std::env::temp_dir().join(format!("local-run-test-{}", fastrand::u64(..)));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut opts = RuntimeOptions::new(&state_dir);
        opts.instance_log = InstanceLog::Memory(log.clone());
        opts.shutdown_grace = grace;
        let runtime = Runtime::start(opts).await.expect("runtime");
        let registry = Registry::start();
        let image = registry.push_testee("v1");
        Cloud {
            runtime,
            registry,
            image,
            log,
            state_dir,
        }
    }

    /// A runtime with the front end of service `items`: (cloud, service, URL).
    pub async fn serving(grace: Duration, iam: Iam) -> (Cloud, ServiceId, String) {
        let cloud = Cloud::start(grace).await;
        let svc = service("items");
        let url = cloud
            .runtime
            .add_service(svc.clone(), any_port(), iam)
            .await
            .expect("front end");
        (cloud, svc, url)
    }

    /// A revision of the testee for `service` with extra env.
    pub fn revision(&self, service: &ServiceId, name: &str, env: &[(&str, &str)]) -> RevisionSpec {
        RevisionSpec {
            service: service.clone(),
            name: name.into(),
            image: self.image.reference.clone(),
            command: vec![],
            args: vec![],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            files: vec![],
            container_port: 8080,
            startup_probe: None,
            configuration: service.name.clone(),
        }
    }

    /// Deploys plain testee revisions with these names.
    pub async fn deploy(&self, service: &ServiceId, names: &[&str]) {
        for name in names {
            self.runtime
                .deploy_revision(self.revision(service, name, &[]))
                .await
                .expect("ready");
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    pub async fn stop(self) {
        self.runtime.clone().shutdown().await;
    }
}

/// Also when a test fails: its instances die with the test's tokio runtime (kill on drop), and
/// this removes its files.
impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub fn probe(path: &str, period_ms: u64, threshold: u32) -> Option<HttpProbe> {
    Some(HttpProbe {
        period: Duration::from_millis(period_ms),
        timeout: Duration::from_millis(500),
        failure_threshold: threshold,
        ..HttpProbe::with_defaults(path)
    })
}

pub fn public() -> Iam {
    Iam {
        allow_unauthenticated: true,
        ..Iam::default()
    }
}

pub fn http() -> reqwest::Client {
    // As in `image::Puller::new`: a workspace-wide build leaves reqwest's rustls without a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// GET `url` and the body.
pub async fn get(url: &str) -> (u16, String) {
    let response = http().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Whether a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
