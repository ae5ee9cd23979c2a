//! `cargo xtask image`: the service's container image as an OCI image layout, without a container
//! engine, optionally pushed to a registry.
//!
//! The image is assembled from scratch: the release binary, the shared libraries `ldd` lists for it
//! (glibc, libgcc_s, the dynamic loader, taken from this Debian host, so they are the ones the
//! binary was linked against), the CA bundle, `/etc/passwd` and `/etc/group` with the non-root user
//! `nonroot` (65532), and a world-writable `/tmp`. No shell, no package manager. The same user,
//! entrypoint and port as `docker/Dockerfile`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
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
    #[arg(long, value_name = "REF")]
    pub(crate) push: Option<String>,
    /// The OCI image layout directory to write (replaced).
    #[arg(long, value_name = "DIR")]
    pub(crate) output: Option<PathBuf>,
    /// Use this already-built executable instead of `cargo build --release -p items-service`.
    #[arg(long, value_name = "PATH")]
    pub(crate) binary: Option<PathBuf>,
    /// The `org.opencontainers.image.source` label (default: git remote `origin`).
    #[arg(long, env = "IMAGE_SOURCE", value_name = "URL")]
    pub(crate) source: Option<String>,
    /// The `org.opencontainers.image.revision` label (default: `git rev-parse HEAD`).
    #[arg(long, value_name = "REV")]
    pub(crate) revision: Option<String>,
}

impl Args {
    /// Defaults for `cargo xtask deploy`, which builds and pushes to `push`.
    pub(crate) fn for_push(push: String) -> Self {
        Self {
            push: Some(push),
            output: None,
            binary: None,
            source: None,
            revision: None,
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
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let built = build(&args).await?;
    println!("image layout: {}", built.layout.display());
    println!("digest: {}", built.digest);
    if let Some(pushed) = &built.pushed {
        println!("pushed: {pushed}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the image (and pushes it when asked).
pub(crate) async fn build(args: &Args) -> anyhow::Result<Built> {
    let reference = args.push.as_deref().map(Reference::parse).transpose()?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => util::build_service(true).await?,
    };
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
    let image = assemble(&binary, epoch, &labels).await?;
    let layout = args.output.clone().unwrap_or_else(oci::default_layout_dir);
    let tag = reference.as_ref().map_or("latest", |r| r.tag.as_str());
    image.write_layout(&layout, tag)?;
    eprintln!(
        "xtask: image {} ({} layers) in {}",
        image.digest(),
        image.layers.len(),
        layout.display()
    );
    let pushed = match &reference {
        Some(reference) => {
            let auth = registry_auth(reference).await?;
            let progress = |line: &str| eprintln!("xtask: push: {line}");
            let digest = oci::push(&image, reference, &auth, &progress)
                .await
                .with_context(|| format!("pushing to {}", reference.registry))?;
            Some(reference.with_digest(&digest))
        }
        None => None,
    };
    Ok(Built {
        layout,
        digest: image.digest().to_owned(),
        pushed,
    })
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

/// The image: a runtime layer (libraries, CA bundle, user database) and the binary's layer.
async fn assemble(binary: &Path, epoch: u64, labels: &Labels) -> anyhow::Result<Image> {
    let runtime = runtime_layer(binary).await?;
    let mut app = Layer::default();
    let data = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    app.add(ENTRYPOINT, Entry::File { mode: 0o755, data });

    let (runtime_blob, runtime_diff) = oci::gzip_layer(&runtime.tar(epoch)?)?;
    let (app_blob, app_diff) = oci::gzip_layer(&app.tar(epoch)?)?;
    let config = image_config(labels, vec![runtime_diff, app_diff])?;
    let config = Blob::new(MediaType::ImageConfig, oci::canonical_json(&config)?);
    Image::new(config, vec![runtime_blob, app_blob])
}

/// What the binary needs at run time: its shared libraries, the CA bundle, the user database of
/// `nonroot` and a world-writable `/tmp`.
async fn runtime_layer(binary: &Path) -> anyhow::Result<Layer> {
    let mut runtime = Layer::default();
    for library in shared_libraries(binary).await? {
        let data =
            std::fs::read(&library).with_context(|| format!("reading {}", library.display()))?;
        runtime.add(
            &library.to_string_lossy(),
            Entry::File { mode: 0o755, data },
        );
    }
    let ca = std::fs::read(CA_BUNDLE).with_context(|| {
        format!("reading {CA_BUNDLE} (install Debian's ca-certificates package)")
    })?;
    let passwd = b"root:x:0:0:root:/root:/sbin/nologin\n\
                   nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
    let files: [(&str, Vec<u8>); 4] = [
        (CA_BUNDLE, ca),
        ("/etc/passwd", passwd.to_vec()),
        ("/etc/group", b"root:x:0:\nnonroot:x:65532:\n".to_vec()),
        (
            "/etc/nsswitch.conf",
            b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
        ),
    ];
    for (path, data) in files {
        runtime.add(path, Entry::File { mode: 0o644, data });
    }
    runtime.add(
        "/tmp",
        Entry::Dir {
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
    );
    runtime.add(
        "/home/nonroot",
        Entry::Dir {
            mode: 0o700,
            uid: 65532,
            gid: 65532,
        },
    );
    Ok(runtime)
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
            history("xtask image: shared libraries, CA certificates, user nonroot (65532)")?,
            history(&format!("xtask image: {ENTRYPOINT}"))?,
        ])
        .build()
        .context("building the image config")
}

/// The shared objects the dynamic loader maps for `binary` (and the loader itself), per `ldd`.
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
