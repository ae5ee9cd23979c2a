//! OCI images without a container engine: reproducible layers, the image layout on disk, and a
//! push through the OCI distribution API.
//!
//! Same inputs, same digest: tar entries are sorted, owned by a fixed uid/gid, stamped with one
//! fixed mtime; gzip headers carry no time or name; JSON documents are written with sorted keys.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use anyhow::{Context as _, bail, ensure};
use flate2::{Compression, GzBuilder};
use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The annotation naming a manifest inside an image layout's `index.json`.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in Sha256::digest(bytes) {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// One regular file or directory of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir { mode: u32, uid: u64, gid: u64 },
    File { mode: u32, data: Vec<u8> },
}

/// A filesystem layer: absolute paths (without the leading `/`) to entries. Parent directories
/// are added with mode 0755 when missing.
#[derive(Debug, Default, Clone)]
pub(crate) struct Layer {
    entries: BTreeMap<String, Entry>,
}

impl Layer {
    pub(crate) fn add(&mut self, path: &str, entry: Entry) {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_owned();
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                });
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
    }

    /// The uncompressed tar stream: entries in path order, fixed owner and mtime.
    pub(crate) fn tar(&self, mtime: u64) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(mtime);
            header.set_uid(0);
            header.set_gid(0);
            let (name, data): (String, &[u8]) = match entry {
                Entry::Dir { mode, uid, gid } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(*uid);
                    header.set_gid(*gid);
                    (format!("{path}/"), &[])
                }
                Entry::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    (path.clone(), data)
                }
            };
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &name, data)
                .with_context(|| format!("adding {name} to a layer"))?;
        }
        builder.into_inner().context("finishing a layer")
    }
}

/// A blob ready to be written or pushed.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) media_type: MediaType,
    pub(crate) digest: String,
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(media_type: MediaType, bytes: Vec<u8>) -> Self {
        Self {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub(crate) fn descriptor(&self) -> anyhow::Result<Descriptor> {
        Ok(Descriptor::new(
            self.media_type.clone(),
            self.bytes.len() as u64,
            Digest::from_str(&self.digest).context("a sha256 digest")?,
        ))
    }
}

/// A layer compressed for an image: the blob (tar+gzip) and its diff id (digest of the tar).
pub(crate) fn gzip_layer(tar: &[u8]) -> anyhow::Result<(Blob, String)> {
    let diff_id = sha256_digest(tar);
    // No file name, mtime 0, OS "unknown": the bytes depend on the tar only.
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(6));
    gz.write_all(tar).context("compressing a layer")?;
    let bytes = gz.finish().context("compressing a layer")?;
    Ok((Blob::new(MediaType::ImageLayerGzip, bytes), diff_id))
}

/// JSON with object keys sorted at every level (whatever map type serde_json was built with), so
/// that documents holding hash maps serialise the same way every time.
pub(crate) fn canonical_json<T: serde::Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    fn sort(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    let value = sort(serde_json::to_value(value).context("serialising JSON")?);
    serde_json::to_vec(&value).context("serialising JSON")
}

/// A complete image: config, layers and the manifest that binds them.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) config: Blob,
    pub(crate) layers: Vec<Blob>,
    pub(crate) manifest: Blob,
}

impl Image {
    pub(crate) fn new(config: Blob, layers: Vec<Blob>) -> anyhow::Result<Self> {
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2_u32)
            .media_type(MediaType::ImageManifest)
            .config(config.descriptor()?)
            .layers(
                layers
                    .iter()
                    .map(Blob::descriptor)
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
            .build()
            .context("building the image manifest")?;
        let manifest = Blob::new(MediaType::ImageManifest, canonical_json(&manifest)?);
        Ok(Self {
            config,
            layers,
            manifest,
        })
    }

    /// The manifest digest: the image's identity.
    pub(crate) fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) to `dir`,
    /// replacing what was there, with the manifest named `tag`.
    pub(crate) fn write_layout(&self, dir: &Path, tag: &str) -> anyhow::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        for blob in self.blobs() {
            let hex = blob.digest.trim_start_matches("sha256:");
            write(&blobs.join(hex), &blob.bytes)?;
        }
        write(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let mut descriptor = self.manifest.descriptor()?;
        descriptor.set_annotations(Some([(REF_NAME.to_owned(), tag.to_owned())].into()));
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2_u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![descriptor])
            .build()
            .context("building index.json")?;
        write(&dir.join("index.json"), &canonical_json(&index)?)
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain([&self.config, &self.manifest])
    }
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `<registry>/<repository>:<tag>` (or `@sha256:…`), as in `docker push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) tag: String,
}

impl Reference {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        let (registry, rest) = s
            .split_once('/')
            .filter(|(host, _)| host.contains('.') || host.contains(':') || *host == "localhost")
            .with_context(|| {
                format!("{s:?}: expected <registry>/<repository>:<tag>, e.g. europe-docker.pkg.dev/p/r/items-service:v1")
            })?;
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (rest, "latest"),
        };
        let repository = repository.split('@').next().unwrap_or(repository);
        ensure!(
            !repository.is_empty()
                && repository.split('/').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                        })
                }),
            "{s:?}: repository {repository:?} must be lowercase path components"
        );
        ensure!(
            !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{s:?}: bad tag {tag:?}"
        );
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// Plain HTTP for a registry on loopback (as Docker does), HTTPS for every other.
    fn base_url(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let scheme = if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.registry)
    }

    /// Artifact Registry or Container Registry: authenticate with Google credentials.
    pub(crate) fn is_google(&self) -> bool {
        self.registry.ends_with("-docker.pkg.dev") || self.registry.ends_with("gcr.io")
    }

    /// `<registry>/<repository>@<digest>`.
    pub(crate) fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

/// Credentials for a registry.
#[derive(Debug, Clone)]
pub(crate) enum RegistryAuth {
    Anonymous,
    Basic { username: String, password: String },
}

/// Pushes `image` to `reference` through the OCI distribution API (blob existence check, monolithic
/// POST + PUT upload, manifest PUT) and returns the digest the registry reports.
pub(crate) async fn push(
    image: &Image,
    reference: &Reference,
    auth: &RegistryAuth,
    progress: &dyn Fn(&str),
) -> anyhow::Result<String> {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("items-xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let session = Session::open(client, reference, auth).await?;
    for blob in image.layers.iter().chain([&image.config]) {
        if session.has_blob(&blob.digest).await? {
            progress(&format!("blob {} exists", short(&blob.digest)));
            continue;
        }
        progress(&format!(
            "uploading blob {} ({} bytes)",
            short(&blob.digest),
            blob.bytes.len()
        ));
        session.upload_blob(blob).await?;
    }
    progress(&format!("putting manifest {}", reference.tag));
    session.put_manifest(&image.manifest).await
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// One authenticated conversation with a registry about one repository.
struct Session<'a> {
    client: reqwest::Client,
    reference: &'a Reference,
    base: String,
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    /// Probes `GET /v2/` and follows the challenge: Bearer (token from the realm, with Basic
    /// credentials when we have them), Basic, or none.
    async fn open(
        client: reqwest::Client,
        reference: &'a Reference,
        auth: &RegistryAuth,
    ) -> anyhow::Result<Self> {
        let base = reference.base_url();
        let probe = client
            .get(format!("{base}/v2/"))
            .send()
            .await
            .with_context(|| format!("contacting registry {base}"))?;
        let basic = match auth {
            RegistryAuth::Basic { username, password } => Some((username, password)),
            RegistryAuth::Anonymous => None,
        };
        let authorization = if probe.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = probe
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Some(authorize(&client, &challenge, reference, basic).await?)
        } else {
            ensure!(
                probe.status().is_success(),
                "registry {base} answered GET /v2/ with {}",
                probe.status()
            );
            None
        };
        Ok(Self {
            client,
            reference,
            base,
            authorization,
        })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, url);
        match &self.authorization {
            Some(value) => builder.header(reqwest::header::AUTHORIZATION, value),
            None => builder,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    async fn has_blob(&self, digest: &str) -> anyhow::Result<bool> {
        let response = self
            .request(reqwest::Method::HEAD, &self.url(&format!("blobs/{digest}")))
            .send()
            .await
            .context("HEAD blob")?;
        Ok(response.status().is_success())
    }

    async fn upload_blob(&self, blob: &Blob) -> anyhow::Result<()> {
        let started = self
            .request(reqwest::Method::POST, &self.url("blobs/uploads/"))
            .send()
            .await
            .context("starting a blob upload")?;
        let started = check(started, "POST blobs/uploads/").await?;
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the registry gave no upload Location")?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={}", blob.digest));
        let put = self
            .request(reqwest::Method::PUT, &url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(blob.bytes.clone())
            .send()
            .await
            .context("uploading a blob")?;
        check(put, "PUT blob").await?;
        Ok(())
    }

    async fn put_manifest(&self, manifest: &Blob) -> anyhow::Result<String> {
        let response = self
            .request(
                reqwest::Method::PUT,
                &self.url(&format!("manifests/{}", self.reference.tag)),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                manifest.media_type.to_string(),
            )
            .body(manifest.bytes.clone())
            .send()
            .await
            .context("putting the manifest")?;
        let response = check(response, "PUT manifest").await?;
        let reported = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(reported) = &reported {
            ensure!(
                *reported == manifest.digest,
                "the registry stored manifest {reported}, we sent {}",
                manifest.digest
            );
        }
        Ok(manifest.digest.clone())
    }
}

/// Passes a successful response on; turns any other into an error with the registry's body.
async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: registry answered {status}: {}", body.trim())
}

/// The `Authorization` header value for a `WWW-Authenticate` challenge.
async fn authorize(
    client: &reqwest::Client,
    challenge: &str,
    reference: &Reference,
    basic: Option<(&String, &String)>,
) -> anyhow::Result<String> {
    let (scheme, params) = parse_challenge(challenge);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let (user, password) = basic.with_context(|| {
                format!("registry {} wants credentials (Basic)", reference.registry)
            })?;
            Ok(basic_header(user, password))
        }
        "bearer" => {
            let realm = params
                .get("realm")
                .context("Bearer challenge without a realm")?;
            let scope = params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull,push", reference.repository));
            let mut query = vec![("scope", scope)];
            if let Some(service) = params.get("service") {
                query.push(("service", service.clone()));
            }
            let mut request = client.get(realm).query(&query);
            if let Some((user, password)) = basic {
                request =
                    request.header(reqwest::header::AUTHORIZATION, basic_header(user, password));
            }
            let response = check(
                request.send().await.context("fetching a registry token")?,
                "token request",
            )
            .await?;
            let body: Value = response
                .json()
                .await
                .context("parsing the token response")?;
            let token = body["token"]
                .as_str()
                .or_else(|| body["access_token"].as_str())
                .context("the token response holds no token")?;
            Ok(format!("Bearer {token}"))
        }
        other => bail!("unsupported registry authentication scheme {other:?}"),
    }
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `Bearer realm="…",service="…",scope="…"` → ("Bearer", {realm, service, scope}).
fn parse_challenge(challenge: &str) -> (String, BTreeMap<String, String>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.insert(key, value.to_owned());
        rest = tail.trim_start_matches(',').trim();
    }
    (scheme.to_owned(), params)
}

/// rustls' process-wide crypto provider: ring, as the rest of the workspace uses (Google's
/// clients are built without their aws-lc default, which costs a long C build).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where `cargo xtask image` writes its layout by default.
pub(crate) fn default_layout_dir() -> PathBuf {
    crate::util::project_root()
        .join("target")
        .join("oci")
        .join(crate::util::SERVICE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("europe-docker.pkg.dev/p/items/items-service:v1").unwrap();
        assert_eq!(r.registry, "europe-docker.pkg.dev");
        assert_eq!(r.repository, "p/items/items-service");
        assert_eq!(r.tag, "v1");
        assert!(r.is_google());
        assert_eq!(r.base_url(), "https://europe-docker.pkg.dev");
        let local = Reference::parse("127.0.0.1:5000/items/svc").unwrap();
        assert_eq!(local.tag, "latest");
        assert_eq!(local.base_url(), "http://127.0.0.1:5000");
        assert!(Reference::parse("items-service:v1").is_err());
        assert!(Reference::parse("r.io/Items:v1").is_err());
    }

    #[test]
    fn parses_challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.example.com/token");
        assert_eq!(params["service"], "registry.example.com");
        assert_eq!(params["scope"], "repository:a/b:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "Registry Realm");
    }

    #[test]
    fn layers_are_reproducible_and_sorted() {
        let mut a = Layer::default();
        a.add(
            "/usr/local/bin/x",
            Entry::File {
                mode: 0o755,
                data: b"x".to_vec(),
            },
        );
        a.add(
            "/etc/passwd",
            Entry::File {
                mode: 0o644,
                data: b"p".to_vec(),
            },
        );
        let mut b = Layer::default();
        b.add(
            "/etc/passwd",
            Entry::File {
                mode: 0o644,
                data: b"p".to_vec(),
            },
        );
        b.add(
            "/usr/local/bin/x",
            Entry::File {
                mode: 0o755,
                data: b"x".to_vec(),
            },
        );
        let (ta, tb) = (a.tar(7).unwrap(), b.tar(7).unwrap());
        assert_eq!(ta, tb);
        let names: Vec<String> = tar::Archive::new(ta.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/passwd",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/x"
            ]
        );
        assert_eq!(
            gzip_layer(&ta).unwrap().0.digest,
            gzip_layer(&tb).unwrap().0.digest
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let map: std::collections::HashMap<&str, u8> = [("b", 1), ("a", 2), ("c", 3)].into();
        assert_eq!(canonical_json(&map).unwrap(), br#"{"a":2,"b":1,"c":3}"#);
    }
}
