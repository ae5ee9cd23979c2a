//! `cargo xtask image`: the layout is a valid OCI image for an independent tool (skopeo), the same
//! inputs give the same digest, and a push to a real registry (Debian's docker-registry) on loopback
//! pulls back with the same digest.
//!
//! The image is assembled around a small prebuilt glibc executable (`--binary`), so that the tests
//! do not need a release build of the service; `cargo xtask image` without `--binary` builds it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EPOCH: &str = "1700000000";
const CREATED: &str = "2023-11-14T22:13:20Z";

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A small dynamically linked glibc executable to put in the image.
fn small_binary() -> PathBuf {
    tool("true").expect("coreutils' true")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-image-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn xtask_image(output: &Path, extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("image")
        .arg("--binary")
        .arg(small_binary())
        .arg("--output")
        .arg(output)
        .args([
            "--source",
            "https://example.com/items.git",
            "--revision",
            "0123abcd",
        ])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("REGISTRY_USERNAME")
        .env_remove("REGISTRY_PASSWORD")
        .output()
        .expect("running xtask image");
    assert!(
        out.status.success(),
        "xtask image failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn printed_digest(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .expect("a digest line")
        .to_owned()
}

fn skopeo(args: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

fn have_skopeo() -> bool {
    if tool("skopeo").is_some() {
        return true;
    }
    println!("SKIPPED: skopeo is not installed (Debian package skopeo; .ci/run installs it)");
    false
}

#[test]
fn the_image_is_reproducible_and_skopeo_reads_it() {
    let dir = temp_dir("layout");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let first = printed_digest(&xtask_image(&a, &[]));
    let second = printed_digest(&xtask_image(&b, &[]));
    assert_eq!(first, second, "two builds of the same inputs differ");
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
    // Same bytes on disk, blob for blob.
    let index = std::fs::read(a.join("index.json")).expect("index.json");
    assert_eq!(
        index,
        std::fs::read(b.join("index.json")).expect("index.json")
    );

    if !have_skopeo() {
        return;
    }
    let layout = format!("oci:{}:latest", a.display());
    let inspect = skopeo(&["inspect", &layout]);
    assert_eq!(inspect["Digest"], first.as_str());
    assert_eq!(inspect["Created"], CREATED);
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    let labels = &inspect["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], "0123abcd");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://example.com/items.git"
    );
    assert_eq!(labels["org.opencontainers.image.created"], CREATED);
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));

    let config = skopeo(&["inspect", "--config", &layout]);
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"][0], "/usr/local/bin/items-service");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );

    // The runtime layer holds the loader, libc, CA bundle and user database; the app layer the
    // binary, all owned by root with the fixed mtime.
    let files = layer_listing(&a, &inspect["Layers"][0]);
    for expected in [
        "etc/passwd",
        "etc/group",
        "etc/ssl/certs/ca-certificates.crt",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "tmp/",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            "{expected} missing: {files:?}"
        );
    }
    let app = layer_listing(&a, &inspect["Layers"][1]);
    assert!(
        app.iter()
            .any(|f| f.ends_with("usr/local/bin/items-service")),
        "{app:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tar -tvzf` of a layer blob.
fn layer_listing(layout: &Path, digest: &Value) -> Vec<String> {
    let digest = digest.as_str().expect("layer digest");
    let blob = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let out = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvzf")
        .arg(&blob)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in listing.lines() {
        assert!(
            line.contains(" 0/0 ") || line.contains(" 65532/65532 "),
            "{line}"
        );
        assert!(
            line.contains("2023-11-14"),
            "mtime is not SOURCE_DATE_EPOCH: {line}"
        );
    }
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// Debian's docker-registry on a free loopback port, storing into a temp dir; killed on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Option<Self> {
        let Some(binary) = tool("docker-registry") else {
            println!(
                "SKIPPED: docker-registry is not installed (Debian package docker-registry; .ci/run installs it)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.join("storage").display()
            ),
        )
        .expect("registry config");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Self { child, addr };
        let started = Instant::now();
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on {}",
                registry.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_pushed_image_pulls_back_with_the_same_digest() {
    if !have_skopeo() {
        return;
    }
    let dir = temp_dir("registry");
    let Some(registry) = Registry::start(&dir) else {
        return;
    };
    let reference = format!("{}/items/items-service:test", registry.addr);
    let out = xtask_image(&dir.join("layout"), &["--push", &reference]);
    let digest = printed_digest(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "pushed: {}/items/items-service@{digest}",
            registry.addr
        )),
        "{stdout}"
    );

    let remote = format!("docker://{reference}");
    let inspect = skopeo(&["inspect", "--tls-verify=false", &remote]);
    assert_eq!(inspect["Digest"], digest.as_str());

    let pulled = dir.join("pulled");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", &remote])
        .arg(format!("oci:{}:test", pulled.display()))
        .status()
        .expect("skopeo copy");
    assert!(status.success(), "skopeo copy from the registry failed");
    let local = skopeo(&["inspect", &format!("oci:{}:test", pulled.display())]);
    assert_eq!(local["Digest"], digest.as_str(), "pulled image differs");

    // A second push finds every blob already there and stores the same manifest.
    let again = xtask_image(&dir.join("layout2"), &["--push", &reference]);
    assert_eq!(printed_digest(&again), digest);
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

/// docker/Dockerfile's runtime stage and the daemonless image agree on user, entrypoint and port.
#[test]
fn the_dockerfile_matches_the_daemonless_image() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile =
        std::fs::read_to_string(root.join("docker/Dockerfile")).expect("docker/Dockerfile");
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a final FROM stage");
    let instruction = |name: &str| -> Vec<String> {
        runtime
            .lines()
            .filter_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .collect()
    };
    // Multi-stage, the dependencies cooked in a layer of their own, a distroless glibc runtime.
    assert!(
        dockerfile.matches("\nFROM ").count() >= 3,
        "not multi-stage"
    );
    assert!(
        dockerfile.contains("cargo chef cook"),
        "no cargo-chef dependency layer"
    );
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12"),
        "{runtime}"
    );

    let dir = temp_dir("dockerfile");
    xtask_image(&dir, &[]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("index.json");
    let blob = |digest: &Value| -> Value {
        let hex = digest
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).expect("blob"))
            .expect("JSON blob")
    };
    let manifest = blob(&index["manifests"][0]["digest"]);
    let config = blob(&manifest["config"]["digest"]);
    let c = &config["config"];

    assert_eq!(
        instruction("USER "),
        [c["User"].as_str().expect("User").to_owned()]
    );
    let entrypoint: Value =
        serde_json::from_str(&instruction("ENTRYPOINT ")[0]).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, c["Entrypoint"]);
    let ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .map(|p| p.trim_end_matches("/tcp").to_owned())
        .collect();
    assert_eq!(instruction("EXPOSE "), ports);
    assert!(
        runtime.contains("PORT=8080"),
        "the Dockerfile sets no PORT default"
    );
    assert!(
        c["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .any(|e| e == "PORT=8080"),
        "{c}"
    );
    // The binary lands where the entrypoint points.
    let target = entrypoint[0].as_str().expect("entrypoint path");
    assert!(
        runtime.contains(&format!("items-service {target}")),
        "COPY does not place the binary at {target}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
