//! The image's runtime files as Debian packages: versions locked in `docker/debian-packages.lock`,
//! fetched by apt from the archive (apt checks the `InRelease` signatures against Debian's
//! archive keyring and each `.deb` against the signed index; we check the cached `.deb` against
//! the index's SHA256 once more), unpacked with `dpkg-deb` without installing anything, and
//! recorded the way distroless images record them so that scanners find them:
//!
//! - `/var/lib/dpkg/status.d/<package>`: the package's control file, and
//!   `/var/lib/dpkg/status.d/<package>.md5sums`: its file list with checksums. This is the layout
//!   of GoogleContainerTools/rules_distroless (`apt/private/dpkg_statusd.sh` extracts `./control`
//!   and `./md5sums` of each package), read by Trivy (`pkg/fanal/analyzer/pkg/dpkg/dpkg.go`:
//!   `statusDir = "var/lib/dpkg/status.d/"`, every file there but `*.md5sums` is a status
//!   paragraph) and by Syft/Grype (`syft/pkg/cataloger/debian/cataloger.go`: the glob
//!   `**/lib/dpkg/status.d/*`).
//! - `/etc/os-release` and `/etc/debian_version` from the `base-files` package, from which those
//!   scanners tell the distribution and release (and so which advisories apply).
//!
//! apt works in a private directory (`target/debian-apt`): its own sources list, lists, cache and
//! an empty dpkg status, so the build host's packages and apt sources play no part. Nothing of the
//! host's file system goes into the image.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::oci::{Entry, Layer};
use crate::util;

/// The lock file, relative to the workspace root.
pub(crate) const LOCK: &str = "docker/debian-packages.lock";
/// The command that refreshes it.
pub(crate) const REFRESH: &str = "cargo xtask image --refresh-lock";

/// `docker/debian-packages.lock`: where packages come from and which version of each.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lock {
    /// The archive keyring apt checks the `InRelease` signatures with.
    signed_by: String,
    architecture: String,
    source: Vec<Source>,
    /// Package name → locked version.
    packages: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    uri: String,
    suite: String,
    components: Vec<String>,
}

impl Lock {
    pub(crate) fn load() -> anyhow::Result<Self> {
        let path = util::project_root().join(LOCK);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {LOCK}"))
    }
}

/// One unpacked package.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) architecture: String,
    /// SHA256 of the `.deb`, as the signed index gives it.
    pub(crate) sha256: String,
    /// The `Source:` field's package name (the binary's own name when absent).
    pub(crate) source: String,
    control: String,
    md5sums: Option<Vec<u8>>,
    entries: Vec<(String, Entry)>,
}

impl Package {
    /// `Field: value` of the control file.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        field(&self.control, name)
    }
}

fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|line| {
        line.split_once(':')
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    })
}

/// apt with a private state directory and the lock's sources, used by one xtask at a time (image
/// builds run in parallel in the tests; apt's own lock would make all but one fail).
struct Apt {
    dir: PathBuf,
    config: PathBuf,
    /// Held (an exclusive file lock) as long as this value lives.
    _guard: std::fs::File,
}

impl Apt {
    fn new(lock: &Lock) -> anyhow::Result<Self> {
        let dir = util::project_root().join("target").join("debian-apt");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let guard = std::fs::File::create(dir.join("xtask.lock"))
            .with_context(|| format!("creating {}", dir.join("xtask.lock").display()))?;
        guard
            .lock()
            .context("waiting for another xtask's use of target/debian-apt")?;
        for sub in [
            "lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "debs",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let mut sources = String::new();
        for source in &lock.source {
            sources.push_str(&format!(
                "deb [signed-by={} arch={}] {} {} {}\n",
                lock.signed_by,
                lock.architecture,
                source.uri,
                source.suite,
                source.components.join(" ")
            ));
        }
        std::fs::write(dir.join("etc/sources.list"), sources)?;
        std::fs::write(dir.join("status"), "")?;
        let d = dir.display();
        // Read before the host's apt.conf.d (APT_CONFIG is read first, and it moves Dir::Etc::Parts
        // away from /etc/apt/apt.conf.d): only what is written here applies.
        let mut config = format!(
            "Dir::Etc::Main \"/dev/null\";\n\
             Dir::Etc::Parts \"{d}/etc/apt.conf.d\";\n\
             Dir::Etc::SourceList \"{d}/etc/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/etc/sources.list.d\";\n\
             Dir::Etc::Preferences \"/dev/null\";\n\
             Dir::Etc::PreferencesParts \"{d}/etc/preferences.d\";\n\
             Dir::State \"{d}\";\n\
             Dir::State::Lists \"{d}/lists\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             APT::Architecture \"{arch}\";\n\
             APT::Architectures {{ \"{arch}\"; }};\n\
             Acquire::Languages \"none\";\n",
            arch = lock.architecture
        );
        if nix::unistd::geteuid().is_root() {
            // The private directory belongs to root: apt's `_apt` sandbox user could not write it.
            config.push_str("APT::Sandbox::User \"root\";\n");
        }
        let path = dir.join("apt.conf");
        std::fs::write(&path, config)?;
        ensure!(
            Path::new(&lock.signed_by).is_file(),
            "{LOCK}: the archive keyring {} is missing (Debian package debian-archive-keyring)",
            lock.signed_by
        );
        Ok(Self {
            dir,
            config: path,
            _guard: guard,
        })
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env("APT_CONFIG", &self.config).env("LC_ALL", "C");
        cmd
    }

    async fn update(&self) -> anyhow::Result<()> {
        eprintln!("xtask: apt-get update (sources of {LOCK})");
        let out = self
            .command("apt-get")
            .args(["-q", "update"])
            .output()
            .await
            .context("running apt-get (Debian package apt)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get update exits 0 when a source fails to download or verify: its `E:`/`W:` lines
        // say so.
        if !out.status.success() || stderr.lines().any(|l| l.starts_with("E:")) {
            bail!("apt-get update failed:\n{}", stderr.trim());
        }
        Ok(())
    }

    /// The index stanza of `name` at `version` (`None`: the archive serves no such version), or
    /// of the candidate version when `version` is `None`.
    async fn show(&self, name: &str, version: Option<&str>) -> anyhow::Result<Option<String>> {
        let spec = match version {
            Some(v) => format!("{name}={v}"),
            None => name.to_owned(),
        };
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", &spec])
            .output()
            .await
            .context("running apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((out.status.success() && field(&text, "Package").is_some()).then_some(text))
    }

    /// Every locked package's stanza; `apt-get update` first when the lists lack one.
    async fn stanzas(&self, lock: &Lock) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut updated = false;
        loop {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for (name, version) in &lock.packages {
                match self.show(name, Some(version)).await? {
                    Some(stanza) => found.push((name.clone(), version.clone(), stanza)),
                    None => missing.push(format!("{name} {version}")),
                }
            }
            if missing.is_empty() {
                return Ok(found);
            }
            if updated {
                bail!(
                    "{LOCK}: the archive no longer serves {}; run `{REFRESH}`",
                    missing.join(", ")
                );
            }
            self.update().await?;
            updated = true;
        }
    }

    /// The `.deb` of a stanza: from the cache when its SHA256 matches the signed index, else
    /// downloaded by `apt-get download` (which checks it against the index too).
    async fn deb(&self, name: &str, version: &str, stanza: &str) -> anyhow::Result<PathBuf> {
        let sha256 = field(stanza, "SHA256").context("the index gives no SHA256")?;
        let file = field(stanza, "Filename")
            .and_then(|f| f.rsplit('/').next())
            .context("the index gives no Filename")?;
        let debs = self.dir.join("debs");
        let path = debs.join(file);
        if path.is_file() && hex_sha256(&std::fs::read(&path)?) == sha256 {
            return Ok(path);
        }
        let out = self
            .command("apt-get")
            .args(["-q", "download", &format!("{name}={version}")])
            .current_dir(&debs)
            .output()
            .await
            .context("running apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download {name}={version} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let bytes = std::fs::read(&path)
            .with_context(|| format!("apt-get download wrote no {}", path.display()))?;
        ensure!(
            hex_sha256(&bytes) == sha256,
            "{file}: SHA256 differs from the signed index"
        );
        Ok(path)
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fetches and unpacks every locked package.
pub(crate) async fn packages() -> anyhow::Result<Vec<Package>> {
    let lock = Lock::load()?;
    let apt = Apt::new(&lock)?;
    let mut packages = Vec::new();
    for (name, version, stanza) in apt.stanzas(&lock).await? {
        let deb = apt.deb(&name, &version, &stanza).await?;
        let mut package = unpack(&deb).await?;
        ensure!(
            package.name == name && package.version == version,
            "{}: holds {} {}, the lock says {name} {version}",
            deb.display(),
            package.name,
            package.version
        );
        package.sha256 = field(&stanza, "SHA256").unwrap_or_default().to_owned();
        packages.push(package);
    }
    Ok(packages)
}

/// `cargo xtask image --refresh-lock`: each package of the lock at the version the archive serves
/// now; the rest of the file (comments, sources) as it is.
pub(crate) async fn refresh_lock() -> anyhow::Result<()> {
    let lock = Lock::load()?;
    let apt = Apt::new(&lock)?;
    apt.update().await?;
    let mut versions = BTreeMap::new();
    for name in lock.packages.keys() {
        let stanza = apt
            .show(name, None)
            .await?
            .with_context(|| format!("the archive serves no package {name}"))?;
        let version = field(&stanza, "Version").context("a stanza without Version")?;
        versions.insert(name.clone(), version.to_owned());
    }
    let path = util::project_root().join(LOCK);
    let text = std::fs::read_to_string(&path)?;
    let updated = rewrite_versions(&text, &versions);
    for (name, version) in &versions {
        let old = &lock.packages[name];
        if old == version {
            println!("{name} {version}");
        } else {
            println!("{name} {old} -> {version}");
        }
    }
    if updated != text {
        std::fs::write(&path, updated)?;
        println!("updated {LOCK}");
    } else {
        println!("{LOCK} is up to date");
    }
    Ok(())
}

/// `text` with each `name = "version"` line of its `[packages]` table set to `versions[name]`.
fn rewrite_versions(text: &str, versions: &BTreeMap<String, String>) -> String {
    let mut in_packages = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_packages = trimmed == "[packages]";
        }
        let replaced = in_packages
            .then(|| trimmed.split_once('='))
            .flatten()
            .and_then(|(name, _)| {
                let name = name.trim();
                versions
                    .get(name)
                    .map(|version| format!("{name} = \"{version}\""))
            });
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

async fn dpkg_deb(option: &str, deb: &Path) -> anyhow::Result<Vec<u8>> {
    let out = tokio::process::Command::new("dpkg-deb")
        .arg(option)
        .arg(deb)
        .output()
        .await
        .context("running dpkg-deb (Debian package dpkg)")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb {option} {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// A `.deb`'s control file, md5sums and file system entries (`dpkg-deb` turns its data member into
/// a plain tar stream whatever the compression).
async fn unpack(deb: &Path) -> anyhow::Result<Package> {
    let mut control = None;
    let mut md5sums = None;
    for (path, entry) in tar_entries(&dpkg_deb("--ctrl-tarfile", deb).await?)? {
        if let Entry::File { data, .. } = entry {
            match path.as_str() {
                "control" => control = Some(String::from_utf8(data).context("control is UTF-8")?),
                "md5sums" => md5sums = Some(data),
                _ => {}
            }
        }
    }
    let control = control.with_context(|| format!("{}: no control file", deb.display()))?;
    let entries = tar_entries(&dpkg_deb("--fsys-tarfile", deb).await?)?;
    let get = |name: &str| {
        field(&control, name)
            .map(str::to_owned)
            .with_context(|| format!("{}: control has no {name}", deb.display()))
    };
    let name = get("Package")?;
    let source = field(&control, "Source")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or(&name)
        .to_owned();
    Ok(Package {
        version: get("Version")?,
        architecture: get("Architecture")?,
        sha256: String::new(),
        source,
        name,
        control,
        md5sums,
        entries,
    })
}

/// The entries of a tar stream, paths without `./`; hard links become copies of their target.
fn tar_entries(tar: &[u8]) -> anyhow::Result<Vec<(String, Entry)>> {
    let mut out = Vec::new();
    let mut files: HashMap<String, (u32, Vec<u8>)> = HashMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().context("reading a tar stream")? {
        let mut entry = entry.context("reading a tar entry")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if path.is_empty() || path == "." {
            continue;
        }
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let kind = header.entry_type();
        let item = match kind {
            tar::EntryType::Directory => Entry::Dir {
                mode,
                uid: header.uid()?,
                gid: header.gid()?,
            },
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                files.insert(path.clone(), (mode, data.clone()));
                Entry::File { mode, data }
            }
            tar::EntryType::Symlink => Entry::Symlink {
                target: entry
                    .link_name()?
                    .context("a symlink without target")?
                    .to_string_lossy()
                    .into_owned(),
            },
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .context("a hard link without target")?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_owned();
                let (mode, data) = files
                    .get(&target)
                    .with_context(|| format!("{path}: hard link to unknown {target}"))?
                    .clone();
                Entry::File { mode, data }
            }
            other => bail!("{path}: unsupported tar entry type {other:?}"),
        };
        out.push((path, item));
    }
    Ok(out)
}

/// The runtime layer: every file of every package, the package metadata where scanners read it,
/// and what the packages' maintainer scripts would have made at install time (the CA bundle) or
/// what the image itself defines (its users, `/tmp`).
pub(crate) fn runtime_layer(packages: &[Package]) -> anyhow::Result<Layer> {
    let mut layer = Layer::default();
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for package in packages {
        for (path, entry) in &package.entries {
            if let Some(previous) = owner.get(path.as_str())
                && !matches!(entry, Entry::Dir { .. })
                && layer.get(path) != Some(entry)
            {
                bail!("{path} is in both {previous} and {}", package.name);
            }
            owner.insert(path, &package.name);
            layer.add(path, entry.clone());
        }
        let status = format!("/var/lib/dpkg/status.d/{}", package.name);
        layer.add(
            &status,
            Entry::File {
                mode: 0o644,
                data: package.control.clone().into_bytes(),
            },
        );
        if let Some(md5sums) = &package.md5sums {
            layer.add(
                &format!("{status}.md5sums"),
                Entry::File {
                    mode: 0o644,
                    data: md5sums.clone(),
                },
            );
        }
    }
    for (path, data) in generated_files(&layer)? {
        layer.add(path, Entry::File { mode: 0o644, data });
    }
    layer.add(
        "/tmp",
        Entry::Dir {
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
    );
    layer.add(
        "/home/nonroot",
        Entry::Dir {
            mode: 0o700,
            uid: 65532,
            gid: 65532,
        },
    );
    Ok(layer)
}

/// The CA bundle `update-ca-certificates` would write at install time (every certificate of the
/// ca-certificates package in path order, as rules_distroless' `distroless/private/cacerts.sh`
/// makes it), and the user database of `root` and `nonroot` (65532, distroless' non-root user).
pub(crate) const GENERATED: [&str; 4] = [
    super::CA_BUNDLE,
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
];

fn generated_files(layer: &Layer) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut bundle = Vec::new();
    for (path, entry) in layer.entries() {
        if path.starts_with("usr/share/ca-certificates/")
            && path.ends_with(".crt")
            && let Entry::File { data, .. } = entry
        {
            bundle.extend_from_slice(data);
        }
    }
    ensure!(
        !bundle.is_empty(),
        "no certificates under /usr/share/ca-certificates: add ca-certificates to {LOCK}"
    );
    let files = [
        bundle,
        b"root:x:0:0:root:/root:/sbin/nologin\n\
          nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
            .to_vec(),
        b"root:x:0:\nnonroot:x:65532:\n".to_vec(),
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
    ];
    Ok(GENERATED.into_iter().zip(files).collect())
}

/// `ID` and `VERSION_ID` of the packages' `/usr/lib/os-release` (base-files), e.g. `debian`, `12`.
pub(crate) fn os_release(layer: &Layer) -> anyhow::Result<(String, String)> {
    let Some(Entry::File { data, .. }) = layer.get("/usr/lib/os-release") else {
        bail!("no /usr/lib/os-release: add base-files to {LOCK}");
    };
    let text = String::from_utf8_lossy(data);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .with_context(|| format!("os-release has no {key}"))
    };
    Ok((value("ID")?, value("VERSION_ID")?))
}

/// Fails unless every library `ldd` resolves for the binary is a file (or link) of the layer.
pub(crate) fn check_libraries(layer: &Layer, libraries: &[PathBuf]) -> anyhow::Result<()> {
    let missing: Vec<String> = libraries
        .iter()
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| layer.get(l).is_none())
        .collect();
    ensure!(
        missing.is_empty(),
        "the binary needs {}, which no package of {LOCK} provides: add the package under \
         [packages] and run `{REFRESH}`",
        missing.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_rewrites_only_package_versions() {
        let text = "# comment\nsigned_by = \"/k\"\n\n[packages]\n# libc\nlibc6 = \"1\"\nbase-files = \"2\"\n";
        let versions = BTreeMap::from([
            ("libc6".to_owned(), "3".to_owned()),
            ("base-files".to_owned(), "2".to_owned()),
        ]);
        assert_eq!(
            rewrite_versions(text, &versions),
            "# comment\nsigned_by = \"/k\"\n\n[packages]\n# libc\nlibc6 = \"3\"\nbase-files = \"2\"\n"
        );
    }

    #[test]
    fn reads_control_fields() {
        let stanza = "Package: libc6\nSource: glibc (2.36-9)\nVersion: 2.36-9\n";
        assert_eq!(field(stanza, "version"), Some("2.36-9"));
        assert_eq!(field(stanza, "Source"), Some("glibc (2.36-9)"));
        assert_eq!(field(stanza, "SHA256"), None);
    }

    #[test]
    fn the_committed_lock_parses_and_names_the_runtime_packages() {
        let lock = Lock::load().unwrap();
        for needed in ["base-files", "ca-certificates", "libc6", "libgcc-s1"] {
            assert!(lock.packages.contains_key(needed), "{needed} missing");
        }
    }
}
