//! `cargo xtask image`: the layout is a valid OCI image for an independent tool (skopeo), the same
//! inputs give the same digest, every file of it comes from a locked Debian package or is ours, the
//! SBOM validates against the CycloneDX schema and lists the packages and crates, a push to a real
//! registry (Debian's docker-registry) on loopback pulls back with the same digest and SBOM, and
//! the service built with `cargo auditable` runs from the unpacked image and answers
//! `/health/ready`.
//!
//! Most tests assemble the image around a small prebuilt glibc executable (`--binary`), so that
//! they need no build of the service; the last one builds it (`--profile dev`).

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
    let out = Command::new(env!("CARGO_BIN_EXE_xtask-release"))
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
        "var/lib/dpkg/status.d/libc6",
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
        // root, nonroot's home, and base-files' /var/local (group staff, 50, as Debian ships it).
        assert!(
            line.contains(" 0/0 ") || line.contains(" 65532/65532 ") || line.contains(" 0/50 "),
            "{line}"
        );
        assert!(
            line.contains("2023-11-14"),
            "mtime is not SOURCE_DATE_EPOCH: {line}"
        );
    }
    listing
        .lines()
        .map(|l| l.split(" -> ").next().unwrap_or(l))
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

    // The SBOM sits beside it under the tag `sha256-<hex>.sbom`, its subject the image.
    let sbom = format!(
        "docker://{}/items/items-service:{}.sbom",
        registry.addr,
        digest.replace(':', "-")
    );
    let artifact = skopeo(&["inspect", "--raw", "--tls-verify=false", &sbom]);
    assert_eq!(artifact["subject"]["digest"], digest.as_str());
    assert_eq!(artifact["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(
        artifact["layers"][0]["mediaType"],
        "application/vnd.cyclonedx+json"
    );

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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
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

/// One entry of a layer or package: what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir,
    File(Vec<u8>),
    Link(String),
}

/// The entries of a tar stream by path (without `./` or a trailing `/`); hard links as copies.
fn tar_items(tar: impl std::io::Read) -> std::collections::BTreeMap<String, Item> {
    use std::io::Read as _;
    let mut items: std::collections::BTreeMap<String, Item> = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().expect("a tar stream") {
        let mut entry = entry.expect("a tar entry");
        let path = entry.path().expect("a path").to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if path.is_empty() || path == "." {
            continue;
        }
        let item = match entry.header().entry_type() {
            tar::EntryType::Directory => Item::Dir,
            tar::EntryType::Symlink => Item::Link(
                entry
                    .link_name()
                    .expect("link")
                    .expect("target")
                    .to_string_lossy()
                    .into_owned(),
            ),
            tar::EntryType::Link => {
                let target = entry.link_name().expect("link").expect("target");
                let target = target.to_string_lossy();
                items[target.trim_start_matches("./")].clone()
            }
            _ => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("file data");
                Item::File(data)
            }
        };
        items.insert(path, item);
    }
    items
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .expect("a blob of the layout")
}

fn json_blob(layout: &Path, digest: &Value) -> Value {
    serde_json::from_slice(&blob(layout, digest.as_str().expect("a digest"))).expect("JSON blob")
}

/// The image manifest and the SBOM's artifact manifest of a layout.
fn manifests(layout: &Path) -> (Value, Value) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("readable"))
            .expect("index.json");
    let image = json_blob(layout, &index["manifests"][0]["digest"]);
    let sbom = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
        .expect("an SBOM in index.json");
    (image, json_blob(layout, &sbom["digest"]))
}

fn layer_items(layout: &Path, image: &Value, n: usize) -> std::collections::BTreeMap<String, Item> {
    let gz = blob(
        layout,
        image["layers"][n]["digest"].as_str().expect("digest"),
    );
    tar_items(flate2::read::GzDecoder::new(gz.as_slice()))
}

fn dpkg_deb(args: &[&str], deb: &Path) -> Vec<u8> {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb {args:?} {}", deb.display());
    out.stdout
}

/// The locked packages: name, version and the `.deb` xtask fetched (found by its control fields,
/// not by its file name).
fn locked_debs() -> Vec<(String, String, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lock: toml::Table = toml::from_str(
        &std::fs::read_to_string(root.join("docker/debian-packages.lock")).expect("the lock"),
    )
    .expect("the lock is TOML");
    let debs: Vec<PathBuf> = std::fs::read_dir(root.join("target/debian-apt/debs"))
        .expect("xtask's .deb cache")
        .map(|e| e.expect("entry").path())
        .collect();
    lock["packages"]
        .as_table()
        .expect("[packages]")
        .iter()
        .map(|(name, version)| {
            let version = version.as_str().expect("a version").to_owned();
            let wanted = format!("{name}\n{version}\n");
            let deb = debs
                .iter()
                .find(|deb| {
                    let fields = Command::new("dpkg-deb")
                        .arg("--field")
                        .arg(deb)
                        .args(["Package", "Version"])
                        .output()
                        .expect("dpkg-deb --field");
                    // Several fields print as `Name: value` lines.
                    let text = String::from_utf8_lossy(&fields.stdout).replace("Package: ", "");
                    text.replace("Version: ", "") == wanted
                })
                .unwrap_or_else(|| panic!("no .deb of {name} {version} in {debs:?}"))
                .clone();
            (name.clone(), version, deb)
        })
        .collect()
}

#[test]
fn every_file_of_the_image_comes_from_a_locked_package_or_is_ours() {
    let dir = temp_dir("files");
    xtask_image(&dir, &[]);
    let (image, _) = manifests(&dir);
    let runtime = layer_items(&dir, &image, 0);

    // path → (package, entry) over every locked package.
    let mut packaged = std::collections::BTreeMap::new();
    let mut status_d = std::collections::BTreeMap::new();
    for (name, version, deb) in locked_debs() {
        for (path, item) in tar_items(dpkg_deb(&["--fsys-tarfile"], &deb).as_slice()) {
            packaged.insert(path, (name.clone(), item));
        }
        let control = Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&deb)
            .arg("control")
            .output()
            .expect("dpkg-deb --info")
            .stdout;
        assert!(
            String::from_utf8_lossy(&control).contains(&format!("\nVersion: {version}\n")),
            "{name}"
        );
        status_d.insert(format!("var/lib/dpkg/status.d/{name}"), control);
        let md5sums = Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&deb)
            .arg("md5sums")
            .output()
            .expect("dpkg-deb --info");
        if md5sums.status.success() {
            status_d.insert(
                format!("var/lib/dpkg/status.d/{name}.md5sums"),
                md5sums.stdout,
            );
        }
    }
    let certificates: Vec<u8> = packaged
        .iter()
        .filter(|(path, (name, _))| {
            name == "ca-certificates"
                && path.starts_with("usr/share/ca-certificates/")
                && path.ends_with(".crt")
        })
        .flat_map(|(_, (_, item))| match item {
            Item::File(data) => data.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert!(
        !certificates.is_empty(),
        "ca-certificates ships no certificates"
    );

    let mut unaccounted = Vec::new();
    for (path, item) in &runtime {
        let accounted = if let Some((package, expected)) = packaged.get(path) {
            assert_eq!(item, expected, "{path} differs from package {package}'s");
            true
        } else if let Some(expected) = status_d.get(path) {
            assert_eq!(item, &Item::File(expected.clone()), "{path}");
            true
        } else {
            match path.as_str() {
                "etc/ssl/certs/ca-certificates.crt" => {
                    assert_eq!(item, &Item::File(certificates.clone()), "{path}");
                    true
                }
                "etc/passwd" | "etc/group" | "etc/nsswitch.conf" => true,
                // Parents of the above, /tmp and the home of nonroot.
                _ => {
                    item == &Item::Dir
                        && (["tmp", "home", "home/nonroot"].contains(&path.as_str())
                            || runtime.keys().any(|p| p.starts_with(&format!("{path}/"))))
                }
            }
        };
        if !accounted {
            unaccounted.push(path.clone());
        }
    }
    assert!(
        unaccounted.is_empty(),
        "files of no package and not ours: {unaccounted:?}"
    );
    // Every package's metadata is where scanners read it.
    for path in status_d.keys() {
        assert!(runtime.contains_key(path), "{path} missing");
    }
    assert_eq!(
        runtime.get("etc/os-release"),
        Some(&Item::Link("../usr/lib/os-release".to_owned()))
    );
    assert!(runtime.contains_key("usr/lib/os-release"));

    // The second layer is our binary and its directories, nothing else.
    let app = layer_items(&dir, &image, 1);
    let binary = std::fs::read(small_binary()).expect("the binary");
    assert_eq!(
        app.get("usr/local/bin/items-service"),
        Some(&Item::File(binary))
    );
    assert!(
        app.iter()
            .all(|(p, i)| p == "usr/local/bin/items-service" || *i == Item::Dir),
        "{:?}",
        app.keys()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CycloneDX schema check of cyclonedx-python-lib (the CycloneDX project's library, which ships
/// the schema); `None` when it is not installed.
fn cyclonedx_errors(document: &[u8]) -> Option<String> {
    let check = "import sys\n\
                 from cyclonedx.schema import SchemaVersion\n\
                 from cyclonedx.validation.json import JsonStrictValidator\n\
                 e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(sys.stdin.read())\n\
                 print(e or '')\n";
    let probe = Command::new("python3")
        .args(["-c", "import cyclonedx.validation.json, jsonschema"])
        .output()
        .ok()?;
    if !probe.status.success() {
        println!(
            "SKIPPED the schema check: cyclonedx-python-lib[json-validation] is not installed (.ci/run installs it)"
        );
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", check])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), document).expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "the validator failed to run");
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `name version` of every crate the service links on the image's target, per `cargo tree`.
fn linked_crates() -> std::collections::BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--package",
            "items-service",
            "--edges",
            "normal",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree");
    assert!(out.status.success(), "cargo tree failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.trim_start_matches('v');
            (name != "items-service").then(|| format!("{name} {version}"))
        })
        .collect()
}

#[test]
fn the_sbom_validates_and_lists_the_debian_packages_and_the_linked_crates() {
    let dir = temp_dir("sbom");
    let out = xtask_image(&dir, &[]);
    let digest = printed_digest(&out);
    let (image, artifact) = manifests(&dir);
    assert_eq!(artifact["subject"]["digest"], digest.as_str());
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("readable"))
            .expect("index.json");
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(artifact["subject"]["size"], index["manifests"][0]["size"]);
    assert!(image["layers"].is_array());
    assert_eq!(artifact["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(
        artifact["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let document = blob(
        &dir,
        artifact["layers"][0]["digest"].as_str().expect("digest"),
    );
    let bom: Value = serde_json::from_slice(&document).expect("the SBOM is JSON");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["metadata"]["component"]["version"], digest.as_str());

    if let Some(errors) = cyclonedx_errors(&document) {
        assert!(errors.is_empty(), "the SBOM does not validate: {errors}");
    }
    let components = bom["components"].as_array().expect("components");
    let purls: Vec<&str> = components
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    for (name, version, _) in locked_debs() {
        let encoded = version.replace('+', "%2B").replace('~', "%7E");
        assert!(
            purls
                .iter()
                .any(|p| p.starts_with(&format!("pkg:deb/debian/{name}@{encoded}?"))),
            "{name} {version} is not in the SBOM"
        );
    }
    let listed: std::collections::BTreeSet<String> = components
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:cargo/"))
        })
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().expect("readable"),
                c["version"].as_str().expect("readable")
            )
        })
        .collect();
    let linked = linked_crates();
    assert!(linked.len() > 50, "{linked:?}");
    let missing: Vec<&String> = linked.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "crates the service links, not in the SBOM: {missing:?}"
    );
    let extra: Vec<&String> = listed.difference(&linked).collect();
    assert!(
        extra.is_empty(),
        "crates in the SBOM the service does not link: {extra:?}"
    );

    // Same inputs, same SBOM: the_image_is_reproducible_and_skopeo_reads_it compares index.json,
    // which names the SBOM's manifest by digest.
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ITEMS_IMAGE_LAYOUT`: the layout of an image built from the service (`cargo xtask image`, which
/// builds it with `cargo auditable`; `.ci/run` builds one with `--profile dev` and runs this test
/// on it). The build takes minutes, too long for a test of its own.
fn service_layout() -> Option<PathBuf> {
    let layout = std::env::var_os("ITEMS_IMAGE_LAYOUT").map(PathBuf::from);
    if layout.is_none() {
        println!(
            "SKIPPED: set ITEMS_IMAGE_LAYOUT to the layout of `cargo xtask image` (.ci/run does)"
        );
    }
    layout
}

/// Answers `GET path` on loopback with HTTP/1.1 200?
fn answers_200(port: u16, path: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

#[test]
fn the_service_of_the_image_carries_its_dependencies_and_answers_ready_from_the_layout() {
    let Some(layout) = service_layout() else {
        return;
    };
    let (image, artifact) = manifests(&layout);
    let dir = temp_dir("service");
    let root = dir.join("root");
    for n in 0..2 {
        let gz = blob(
            &layout,
            image["layers"][n]["digest"].as_str().expect("digest"),
        );
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.unpack(&root).expect("unpacking a layer");
    }

    // cargo auditable's section, read with binutils (not the library xtask uses).
    let binary = root.join("usr/local/bin/items-service");
    let sections = Command::new("readelf")
        .arg("--section-headers")
        .arg(&binary)
        .output()
        .expect("readelf (binutils)");
    assert!(
        String::from_utf8_lossy(&sections.stdout).contains(".dep-v0"),
        "no .dep-v0 section: not built with cargo auditable"
    );
    // Every crate it records (but build-time ones) is in the SBOM at its version.
    let embedded: Value = serde_json::from_str(
        &auditable_info::json_from_file(&binary, auditable_info::Limits::default())
            .expect("the embedded dependency list"),
    )
    .expect("JSON");
    let bom: Value = serde_json::from_slice(&blob(
        &layout,
        artifact["layers"][0]["digest"].as_str().expect("digest"),
    ))
    .expect("the SBOM");
    let listed: std::collections::BTreeSet<(String, String)> = bom["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:cargo/"))
        })
        .map(|c| (c["name"].to_string(), c["version"].to_string()))
        .collect();
    let packages = embedded["packages"].as_array().expect("packages");
    let linked: std::collections::BTreeSet<(String, String)> = packages
        .iter()
        .filter(|p| p["kind"] != "build" && p["root"] != true)
        .map(|p| (p["name"].to_string(), p["version"].to_string()))
        .collect();
    assert!(linked.len() > 50, "{embedded}");
    assert_eq!(
        listed, linked,
        "the SBOM's crates differ from those the binary links"
    );

    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED the run: chroot needs root (CI runs as root)");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let database = runtime
        .block_on(items_testkit::fresh_database())
        .expect("a database");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let launch = items_testkit::ServiceLaunch::new("/usr/local/bin/items-service")
        .clean_env()
        .environment("local")
        .database_url(&database)
        .listen(([127, 0, 0, 1], port).into());
    // As the image config says: user 65532, entrypoint, nothing of the host but the kernel.
    let mut child = Command::new(tool("chroot").expect("chroot (coreutils)"))
        .arg("--userspec=65532:65532")
        .arg(&root)
        .arg("/usr/local/bin/items-service")
        .env_clear()
        .envs(launch.vars_given(|_| false))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chroot");
    let started = Instant::now();
    let ready = loop {
        if answers_200(port, "/health/ready") {
            break true;
        }
        if child.try_wait().expect("wait").is_some() || started.elapsed() > Duration::from_secs(60)
        {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let out = child.wait_with_output().expect("the service's output");
    assert!(
        ready,
        "the service in the image did not answer /health/ready:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
