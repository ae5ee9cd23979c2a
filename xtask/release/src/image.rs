//! `cargo xtask image`: the service's container image as an OCI image layout, without a container
//! engine, with its SBOM, optionally pushed to a registry.
//!
//! Two layers. The runtime layer holds the Debian packages of `docker/debian-packages.lock`
//! (glibc, libgcc, CA certificates, base-files), fetched by apt and unpacked by `dpkg-deb`, with
//! their package metadata where scanners read it ([`debian`]), plus the CA bundle, `/etc/passwd`
//! and `/etc/group` with the non-root user `nonroot` (65532) and a world-writable `/tmp`. The
//! second layer is the service binary, built with `cargo auditable` so that it carries its own
//! dependency list. Nothing is taken from the build host's file system but that binary. No shell,
//! no package manager. The same user, entrypoint and port as `docker/Dockerfile`.
//!
//! The SBOM ([`sbom`], CycloneDX JSON) is an OCI artifact whose `subject` is the image: in the
//! layout's `index.json` beside the image, and pushed under the tag `sha256-<image hex>.sbom`
//! (the tag scheme cosign uses), so that it is found on registries without the OCI 1.1 referrers
//! API too (Debian's docker-registry, distribution 2.8, has none); registries with that API also
//! list it among the image's referrers through `subject`.

mod debian;
mod sbom;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail, ensure};
use oci_spec::image::{Arch, MediaType, Os};

use crate::oci::{self, Blob, Entry, Image, Layer, Reference, RegistryAuth};
use crate::util::{self, SERVICE};

/// Where the binary lives in the image.
pub(crate) const ENTRYPOINT: &str = "/usr/local/bin/items-service";
/// The non-root user (distroless' `nonroot`).
pub(crate) const USER: &str = "65532:65532";
/// The port the service listens on (Cloud Run sets `PORT`; 8080 is the default).
pub(crate) const PORT: u16 = 8080;
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Push the image to this reference: <registry>/<repository>:<tag>
    /// (Artifact Registry: REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG, with Application Default
    /// Credentials; other registries: REGISTRY_USERNAME / REGISTRY_PASSWORD or anonymous).
    /// The SBOM goes to the same repository, tag `sha256-<image digest hex>.sbom`.
    #[arg(long, value_name = "REF")]
    pub(crate) push: Option<String>,
    /// The OCI image layout directory to write (replaced).
    #[arg(long, value_name = "DIR")]
    pub(crate) output: Option<PathBuf>,
    /// Use this already-built executable instead of building the service with `cargo auditable`.
    #[arg(long, value_name = "PATH")]
    pub(crate) binary: Option<PathBuf>,
    /// The cargo profile the service is built with (`dev` for a quick test image).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "release",
        conflicts_with = "binary"
    )]
    pub(crate) profile: String,
    /// The `org.opencontainers.image.source` label (default: git remote `origin`).
    #[arg(long, env = "IMAGE_SOURCE", value_name = "URL")]
    pub(crate) source: Option<String>,
    /// The `org.opencontainers.image.revision` label (default: `git rev-parse HEAD`).
    #[arg(long, value_name = "REV")]
    pub(crate) revision: Option<String>,
    /// Set each package of docker/debian-packages.lock to the version the Debian archive serves
    /// now, and build nothing.
    #[arg(long, conflicts_with_all = ["push", "output", "binary"])]
    pub(crate) refresh_lock: bool,
}

impl Args {
    /// Defaults for `cargo xtask deploy`, which builds and pushes to `push`.
    pub(crate) fn for_push(push: String) -> Self {
        Self {
            push: Some(push),
            output: None,
            binary: None,
            profile: "release".to_owned(),
            source: None,
            revision: None,
            refresh_lock: false,
        }
    }
}

/// What an image build produced.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub(crate) layout: PathBuf,
    pub(crate) digest: String,
    /// `<registry>/<repository>@<digest>` when pushed.
    pub(crate) pushed: Option<String>,
    /// The digest of the SBOM's artifact manifest.
    pub(crate) sbom: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.refresh_lock {
        debian::refresh_lock().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let built = build(&args).await?;
    println!("image layout: {}", built.layout.display());
    println!("digest: {}", built.digest);
    println!("sbom: {}", built.sbom);
    if let Some(pushed) = &built.pushed {
        println!("pushed: {pushed}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the image and its SBOM (and pushes both when asked).
pub(crate) async fn build(args: &Args) -> anyhow::Result<Built> {
    let reference = args.push.as_deref().map(Reference::parse).transpose()?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => build_auditable(&args.profile).await?,
    };
    let embedded = embedded_dependencies(&binary)?;
    if args.binary.is_none() {
        ensure!(
            embedded.is_some(),
            "{}: cargo auditable embedded no dependency list",
            binary.display()
        );
    }
    let epoch = source_date_epoch().await?;
    let labels = Labels {
        created: rfc3339(epoch)?,
        revision: match &args.revision {
            Some(r) => r.clone(),
            None => git(&["rev-parse", "HEAD"]).await?.unwrap_or_default(),
        },
        source: match &args.source {
            Some(s) => Some(s.clone()),
            None => git(&["config", "--get", "remote.origin.url"]).await?,
        },
    };
    let packages = debian::packages().await?;
    let runtime = debian::runtime_layer(&packages)?;
    debian::check_libraries(&runtime, &shared_libraries(&binary).await?)?;
    let os = debian::os_release(&runtime)?;
    let image = assemble(runtime, &binary, epoch, &labels)?;

    let mut rust = sbom::rust_bom(epoch).await?;
    let linked = match &embedded {
        Some(embedded) => embedded_crates(embedded),
        None => {
            eprintln!(
                "xtask: {} carries no cargo auditable data: the SBOM lists the crates `cargo tree` \
                 resolves for {SERVICE}",
                binary.display()
            );
            sbom::cargo_tree_crates().await?
        }
    };
    sbom::keep_only(&mut rust, &linked)?;
    let document = sbom::document(rust, &packages, (&os.0, &os.1), image.digest())?;
    let sbom = Image::artifact(
        sbom::MEDIA_TYPE,
        vec![Blob::new(
            MediaType::Other(sbom::MEDIA_TYPE.to_owned()),
            document,
        )],
        &image,
    )?;
    let sbom_tag = format!("{}.sbom", image.digest().replace(':', "-"));

    let layout = args.output.clone().unwrap_or_else(oci::default_layout_dir);
    let tag = reference.as_ref().map_or("latest", |r| r.tag.as_str());
    image.write_layout(&layout, tag, &[(&sbom, sbom_tag.clone())])?;
    eprintln!(
        "xtask: image {} ({} layers, {} Debian packages) and its SBOM {} in {}",
        image.digest(),
        image.layers.len(),
        packages.len(),
        sbom.digest(),
        layout.display()
    );
    let pushed = match &reference {
        Some(reference) => {
            let auth = registry_auth(reference).await?;
            let progress = |line: &str| eprintln!("xtask: push: {line}");
            let digest = oci::push(&image, reference, &auth, &progress)
                .await
                .with_context(|| format!("pushing to {}", reference.registry))?;
            let sbom_reference = Reference {
                tag: sbom_tag,
                ..reference.clone()
            };
            oci::push(&sbom, &sbom_reference, &auth, &progress)
                .await
                .with_context(|| format!("pushing the SBOM to {}", reference.registry))?;
            Some(reference.with_digest(&digest))
        }
        None => None,
    };
    Ok(Built {
        layout,
        digest: image.digest().to_owned(),
        pushed,
        sbom: sbom.digest().to_owned(),
    })
}

/// `cargo auditable build` of the service: its dependency list goes into the binary's `.dep-v0`
/// section, where `cargo audit bin`, Trivy and Syft read it.
async fn build_auditable(profile: &str) -> anyhow::Result<PathBuf> {
    let out = util::cargo()
        .args([
            "auditable",
            "build",
            "--locked",
            "--profile",
            profile,
            "--package",
            SERVICE,
            "--bin",
            SERVICE,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running cargo auditable")?;
    if !out.status.success() {
        bail!(
            "cargo auditable build failed ({}); is it installed? cargo install --version \
             {CARGO_AUDITABLE_VERSION} --locked cargo-auditable",
            out.status
        );
    }
    util::executable_from_messages(&String::from_utf8_lossy(&out.stdout), SERVICE)
        .with_context(|| format!("cargo auditable build reported no executable for {SERVICE}"))
}

/// The pinned cargo-auditable (`.ci/run` installs this version).
pub(crate) const CARGO_AUDITABLE_VERSION: &str = "0.7.7";

/// The dependency list `cargo auditable` embedded in `binary` (`None` when it has none).
fn embedded_dependencies(binary: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    match auditable_info::json_from_file(binary, auditable_info::Limits::default()) {
        Ok(json) => Ok(Some(
            serde_json::from_str(&json).context("the embedded dependency list is not JSON")?,
        )),
        Err(auditable_info::Error::NoAuditData) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", binary.display())),
    }
}

/// `(name, version)` of every crate the binary says it links: its run-time dependencies per
/// `cargo auditable` (build-time ones and the root crate left out).
fn embedded_crates(embedded: &serde_json::Value) -> BTreeSet<(String, String)> {
    embedded["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"] != "build" && p["root"] != true)
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["version"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[derive(Debug)]
struct Labels {
    created: String,
    revision: String,
    source: Option<String>,
}

impl Labels {
    /// The `org.opencontainers.image.*` labels.
    fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            (
                "org.opencontainers.image.created".to_owned(),
                self.created.clone(),
            ),
            (
                "org.opencontainers.image.revision".to_owned(),
                self.revision.clone(),
            ),
            (
                "org.opencontainers.image.title".to_owned(),
                SERVICE.to_owned(),
            ),
        ]);
        if let Some(source) = &self.source {
            map.insert("org.opencontainers.image.source".to_owned(), source.clone());
        }
        map
    }
}

/// The image: the runtime layer (Debian packages, CA bundle, user database) and the binary's.
fn assemble(runtime: Layer, binary: &Path, epoch: u64, labels: &Labels) -> anyhow::Result<Image> {
    let mut app = Layer::default();
    let data = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    app.add(ENTRYPOINT, Entry::File { mode: 0o755, data });

    let (runtime_blob, runtime_diff) = oci::gzip_layer(&runtime.tar(epoch)?)?;
    let (app_blob, app_diff) = oci::gzip_layer(&app.tar(epoch)?)?;
    let config = image_config(labels, vec![runtime_diff, app_diff])?;
    let config = Blob::new(MediaType::ImageConfig, oci::canonical_json(&config)?);
    Image::new(config, vec![runtime_blob, app_blob])
}

/// The image config: user, entrypoint, port, environment and labels as `docker/Dockerfile` has
/// them, the layers' diff ids and one history entry per layer.
fn image_config(
    labels: &Labels,
    diff_ids: Vec<String>,
) -> anyhow::Result<oci_spec::image::ImageConfiguration> {
    let history = |created_by: &str| {
        oci_spec::image::HistoryBuilder::default()
            .created(labels.created.clone())
            .created_by(created_by.to_owned())
            .build()
    };
    oci_spec::image::ImageConfigurationBuilder::default()
        .created(labels.created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(
            oci_spec::image::ConfigBuilder::default()
                .user(USER.to_owned())
                .entrypoint(vec![ENTRYPOINT.to_owned()])
                .exposed_ports(vec![format!("{PORT}/tcp")])
                .env(vec![
                    "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
                    format!("PORT={PORT}"),
                    format!("SSL_CERT_FILE={CA_BUNDLE}"),
                ])
                .working_dir("/".to_owned())
                .stop_signal("SIGTERM".to_owned())
                .labels(labels.to_map())
                .build()
                .context("building the image config")?,
        )
        .rootfs(
            oci_spec::image::RootFsBuilder::default()
                .typ("layers".to_owned())
                .diff_ids(diff_ids)
                .build()
                .context("building rootfs")?,
        )
        .history(vec![
            history("xtask image: Debian packages of docker/debian-packages.lock, CA bundle, user nonroot (65532)")?,
            history(&format!("xtask image: {ENTRYPOINT}"))?,
        ])
        .build()
        .context("building the image config")
}

/// The shared objects the dynamic loader maps for `binary` (and the loader itself), per `ldd`:
/// each must come from a locked package.
async fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = tokio::process::Command::new("ldd")
        .arg(binary)
        .output()
        .await
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_ldd(&text)
}

fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not found") {
            bail!("ldd: a library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    libraries.sort();
    libraries.dedup();
    Ok(libraries)
}

/// `SOURCE_DATE_EPOCH`, else the time of the last commit, else 0.
async fn source_date_epoch() -> anyhow::Result<u64> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"));
    }
    Ok(git(&["log", "-1", "--format=%ct"])
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

fn rfc3339(epoch: u64) -> anyhow::Result<String> {
    let seconds = i64::try_from(epoch).context("SOURCE_DATE_EPOCH is too large")?;
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).context("SOURCE_DATE_EPOCH")?;
    at.format(&time::format_description::well_known::Rfc3339)
        .context("formatting the creation time")
}

/// The trimmed output of `git <args>` in the workspace, or `None` when git fails.
async fn git(args: &[&str]) -> anyhow::Result<Option<String>> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(util::project_root())
        .output()
        .await;
    Ok(match out {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
        }
        _ => None,
    })
}

/// Google credentials for Artifact Registry (`oauth2accesstoken` + an access token, as
/// `gcloud auth configure-docker` does); `REGISTRY_USERNAME`/`REGISTRY_PASSWORD` elsewhere.
async fn registry_auth(reference: &Reference) -> anyhow::Result<RegistryAuth> {
    if let (Ok(username), Ok(password)) = (
        std::env::var("REGISTRY_USERNAME"),
        std::env::var("REGISTRY_PASSWORD"),
    ) {
        return Ok(RegistryAuth::Basic { username, password });
    }
    if reference.is_google() {
        oci::install_crypto_provider();
        let credentials = google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .context("loading Application Default Credentials")?;
        let token = credentials
            .access_token()
            .await
            .context("getting an access token from Application Default Credentials")?;
        return Ok(RegistryAuth::Basic {
            username: "oauth2accesstoken".to_owned(),
            password: token.token,
        });
    }
    Ok(RegistryAuth::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn formats_the_creation_time() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
    }
}
