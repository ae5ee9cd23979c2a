//! Pulling an image by digest over the OCI distribution spec (plain HTTP, loopback registry) and
//! unpacking its layers into a root file system.
//!
//! - Manifests: `GET /v2/<name>/manifests/<digest>` with an `Accept` of the OCI manifest and index
//!   and Docker's schema 2 manifest and list; an index (or list) is resolved to its `linux/amd64`
//!   entry (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests>).
//! - Blobs: `GET /v2/<name>/blobs/<digest>`; every manifest and blob is checked against its
//!   digest (SHA-256) and kept under `blobs/sha256/<hex>`, so a digest is fetched once.
//! - Layers are applied in order; gzip is recognised by its magic bytes (OCI `tar+gzip` and
//!   Docker's `rootfs.diff.tar.gzip`), other layers are read as plain tar. Whiteouts as the OCI
//!   image spec defines them: `.wh.<name>` deletes `<name>` from the lower layers, and
//!   `.wh..wh..opq` empties its directory of what lower layers put there
//!   (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>).
//!
//! Not supported (Cloud Run accepts them, container contract "Supported languages and images"):
//! Docker schema 1 manifests and zstd-compressed layers; such an image fails to deploy here.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use oci_spec::image::ImageConfiguration;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// `HOST:PORT/REPOSITORY@sha256:HEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
}

impl ImageRef {
    pub fn parse(image: &str) -> anyhow::Result<Self> {
        let (name, digest) = image.split_once('@').with_context(|| {
            format!("image {image:?} is not pinned by digest (NAME@sha256:HEX)")
        })?;
        check_digest(digest)?;
        let (registry, repository) = name
            .split_once('/')
            .with_context(|| format!("image {image:?} names no registry host"))?;
        if repository.is_empty() || registry.is_empty() {
            bail!("image {image:?} names no repository");
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

fn check_digest(digest: &str) -> anyhow::Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("digest {digest:?} is not sha256"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("digest {digest:?} is not 64 lower-case hex digits");
    }
    Ok(hex)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a pull yields: the image config and the layer blobs, lowest first.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub config: ImageConfiguration,
    pub layers: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// A manifest or an index: the fields a pull needs from either.
#[derive(Deserialize)]
struct AnyManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Fetches images into a digest-addressed blob cache.
#[derive(Debug, Clone)]
pub struct Puller {
    http: reqwest::Client,
    blobs: PathBuf,
}

impl Puller {
    pub fn new(blobs: PathBuf) -> anyhow::Result<Self> {
        // A workspace-wide build turns on reqwest's `rustls-no-provider` (through other crates'
        // features), and reqwest then needs rustls' process-wide provider even for plain HTTP:
        // ring, as everywhere else in the workspace (xtask/release/src/oci.rs, items-telemetry).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the registry client")?;
        Ok(Self { http, blobs })
    }

    /// Fetches the manifest, the config and every layer of `image`.
    pub async fn pull(&self, image: &ImageRef) -> anyhow::Result<Pulled> {
        let base = format!("http://{}/v2/{}", image.registry, image.repository);
        let mut digest = image.digest.clone();
        // An index points at one manifest per platform: at most one hop.
        for _ in 0..2 {
            let url = format!("{base}/manifests/{digest}");
            let bytes = self.get(&url, Some(MANIFEST_ACCEPT)).await?;
            verify(&bytes, &digest).with_context(|| format!("manifest {url}"))?;
            let manifest: AnyManifest =
                serde_json::from_slice(&bytes).with_context(|| format!("parsing {url}"))?;
            if let Some(entries) = manifest.manifests {
                let chosen = entries
                    .iter()
                    .find(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                    })
                    .or_else(|| entries.first())
                    .with_context(|| format!("index {url} lists no manifest"))?;
                digest = chosen.digest.clone();
                continue;
            }
            let config = manifest
                .config
                .with_context(|| format!("manifest {url} has no config"))?;
            let config_path = self.blob(&base, &config.digest).await?;
            let config: ImageConfiguration = serde_json::from_slice(
                &std::fs::read(&config_path).context("reading the image config")?,
            )
            .context("parsing the image config")?;
            let mut layers = Vec::new();
            for layer in &manifest.layers {
                layers.push(self.blob(&base, &layer.digest).await?);
            }
            return Ok(Pulled { config, layers });
        }
        bail!("{} resolves to an index of indexes", image.digest)
    }

    async fn get(&self, url: &str, accept: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let mut request = self.http.get(url);
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("GET {url}: {status} {}", body.trim());
        }
        Ok(response
            .bytes()
            .await
            .with_context(|| format!("GET {url}"))?
            .to_vec())
    }

    /// The blob's path in the cache, fetched and verified if it is not there yet.
    async fn blob(&self, base: &str, digest: &str) -> anyhow::Result<PathBuf> {
        let hex = check_digest(digest)?;
        let path = self.blobs.join("sha256").join(hex);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let url = format!("{base}/blobs/{digest}");
        let bytes = self.get(&url, None).await?;
        verify(&bytes, digest).with_context(|| format!("blob {url}"))?;
        let dir = self.blobs.join("sha256");
        tokio::fs::create_dir_all(&dir).await?;
        let partial = dir.join(format!("{hex}.partial-{}", fastrand::u64(..)));
        tokio::fs::write(&partial, &bytes).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(path)
    }
}

fn verify(bytes: &[u8], digest: &str) -> anyhow::Result<()> {
    let want = check_digest(digest)?;
    let got = sha256_hex(bytes);
    if got != want {
        bail!("content has digest sha256:{got}, expected {digest}");
    }
    Ok(())
}

/// Unpacks `layers` (lowest first) into `root` (made empty first), applying whiteouts.
pub fn unpack(layers: &[PathBuf], root: &Path) -> anyhow::Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("emptying {}", root.display()))?;
    }
    std::fs::create_dir_all(root)?;
    for layer in layers {
        apply_layer(layer, root).with_context(|| format!("applying layer {}", layer.display()))?;
    }
    Ok(())
}

fn apply_layer(layer: &Path, root: &Path) -> anyhow::Result<()> {
    let mut file = BufReader::new(std::fs::File::open(layer)?);
    let head = file.fill_buf()?;
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("zstd-compressed layers are not supported by the local runtime");
    }
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    // What this layer itself put in place: an opaque whiteout hides only the lower layers.
    let mut from_this_layer: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(relative) = normal_relative(&path) else {
            bail!("layer entry {} leaves the root", path.display());
        };
        let name = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = relative.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == ".wh..wh..opq" {
            if let Some(dir) = inside(root, &parent)
                && dir.is_dir()
            {
                for child in std::fs::read_dir(&dir)? {
                    let child = child?;
                    if !from_this_layer.contains(&parent.join(child.file_name())) {
                        remove(&child.path())?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if let Some(target) = inside(root, &parent.join(hidden)) {
                remove(&target)?;
            }
            continue;
        }
        if !entry.unpack_in(root)? {
            bail!("layer entry {} leaves the root", path.display());
        }
        from_this_layer.insert(relative);
    }
    Ok(())
}

/// `path` without `.` and leading `/`, if it has only normal components.
pub(crate) fn normal_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `root/relative` if none of its parents inside `root` is a symbolic link (so removing it
/// cannot reach outside `root`).
pub(crate) fn inside(root: &Path, relative: &Path) -> Option<PathBuf> {
    let mut at = root.to_path_buf();
    let mut components = relative.components().peekable();
    while let Some(c) = components.next() {
        at.push(c);
        if components.peek().is_some() {
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => return None,
                Ok(_) => {}
                // Missing: nothing below it exists either, so nothing to escape through.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return None,
            }
        }
    }
    Some(at)
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_must_be_pinned_by_a_sha256_digest() {
        let hex = "a".repeat(64);
        let parsed =
            ImageRef::parse(&format!("127.0.0.1:5000/items/service@sha256:{hex}")).expect("parses");
        assert_eq!(parsed.registry, "127.0.0.1:5000");
        assert_eq!(parsed.repository, "items/service");
        assert_eq!(parsed.digest, format!("sha256:{hex}"));
        assert!(ImageRef::parse("127.0.0.1:5000/items/service:latest").is_err());
        assert!(ImageRef::parse(&format!("127.0.0.1:5000/x@sha512:{hex}")).is_err());
        assert!(ImageRef::parse("127.0.0.1:5000/x@sha256:ABC").is_err());
    }

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            match content {
                Some(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    builder
                        .append_data(&mut header, path, *bytes)
                        .expect("append file");
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_cksum();
                    builder
                        .append_data(&mut header, path, std::io::empty())
                        .expect("append dir");
                }
            }
        }
        builder.into_inner().expect("tar")
    }

    #[test]
    fn later_layers_overwrite_and_whiteouts_delete_lower_files() {
        let dir = std::env::temp_dir().join(format!("local-run-unpack-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("dir");
        let lower = dir.join("lower.tar");
        let upper = dir.join("upper.tar.gz");
        std::fs::write(
            &lower,
            layer(&[
                ("etc/", None),
                ("etc/keep", Some(b"old")),
                ("etc/gone", Some(b"x")),
                ("opaque/", None),
                ("opaque/lower", Some(b"x")),
            ]),
        )
        .expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            &layer(&[
                ("etc/keep", Some(b"new")),
                ("etc/.wh.gone", Some(b"")),
                ("opaque/", None),
                ("opaque/upper", Some(b"y")),
                ("opaque/.wh..wh..opq", Some(b"")),
            ]),
        )
        .expect("gzip");
        std::fs::write(&upper, gz.finish().expect("gzip")).expect("write");
        let root = dir.join("root");
        unpack(&[lower, upper], &root).expect("unpack");
        assert_eq!(std::fs::read(root.join("etc/keep")).expect("keep"), b"new");
        assert!(!root.join("etc/gone").exists());
        assert!(!root.join("etc/.wh.gone").exists());
        assert!(!root.join("opaque/lower").exists());
        assert_eq!(
            std::fs::read(root.join("opaque/upper")).expect("upper"),
            b"y"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_whiteout_through_a_symlink_does_not_leave_the_root() {
        let dir = std::env::temp_dir().join(format!("local-run-escape-{}", fastrand::u64(..)));
        let outside = dir.join("outside");
        std::fs::create_dir_all(&outside).expect("dir");
        std::fs::write(outside.join("victim"), b"x").expect("victim");
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("root");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        assert_eq!(inside(&root, Path::new("link/victim")), None);
        assert!(outside.join("victim").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
