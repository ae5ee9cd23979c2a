//! The page-token key's pins in a revision (which Secret Manager version signs, which only
//! verify) and the phases of a rotation that moves them without a client getting a 400.
//!
//! A token signed by one instance must verify on every other serving instance. Instances read
//! the key files once, at start-up, so a pin changes only with a new revision, and during a
//! roll-out the old and the new revision serve side by side. Hence three phases, each rolled
//! out completely before the next starts:
//!
//! 1. `add`: a new version verifies everywhere, nothing signs with it yet;
//! 2. `sign`: the new version signs, the old one still verifies (old and new revision each
//!    verify what the other signs);
//! 3. `retire`: versions older than the signing one stop verifying (tokens they signed get a 400:
//!    wait until clients' paging has moved on).

use std::collections::BTreeSet;

use anyhow::bail;
use google_cloud_run_v2::model::{Container, EnvVar, VersionToPath, Volume};

/// The volume (as Terraform's `cloudrun` module and `cargo xtask cloud` name it), its signing
/// file and the prefix of its verify-only files.
pub(crate) const VOLUME: &str = "page-token";
pub(crate) const SIGNING_FILE: &str = "current";
pub(crate) const VERIFY_PREFIX: &str = "verify-";
/// The service's setting that lists the verify-only key files (comma-separated).
pub(crate) const VERIFY_ENV: &str = "APP__API__PAGE_TOKEN_PREVIOUS_SECRET_FILES";

/// Secret Manager version numbers of the page-token key a revision mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Mounted as `current`: signs (and verifies).
    pub(crate) signing: u64,
    /// Mounted as `verify-<n>`: verify only.
    pub(crate) verify: BTreeSet<u64>,
}

/// A step of the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Phase {
    /// Add a new key version that every revision verifies; nothing signs with it yet.
    Add,
    /// Sign with the version `add` added; the previous signing key keeps verifying.
    Sign,
    /// Stop verifying versions older than the signing one.
    Retire,
    /// Add a version and sign with it at once: what bumping Terraform's page_token_key_version
    /// did before the phases. Clients paging across it get 400s; kept only so that the rotation
    /// test can show them.
    #[value(hide = true)]
    OneStep,
}

impl Phase {
    /// `add` and `one-step` need a new version in Secret Manager.
    pub(crate) fn adds_version(self) -> bool {
        matches!(self, Self::Add | Self::OneStep)
    }
}

impl Keys {
    /// The newest verify-only version newer than the signing one: added, not signing yet.
    pub(crate) fn pending(&self) -> Option<u64> {
        self.verify
            .iter()
            .copied()
            .filter(|v| *v > self.signing)
            .max()
    }

    /// The phase that follows this state when none is named: `sign` while a version is pending,
    /// else `add` (`retire` is never implied: it cuts off tokens of the retired keys).
    pub(crate) fn next_phase(&self) -> Phase {
        if self.pending().is_some() {
            Phase::Sign
        } else {
            Phase::Add
        }
    }

    /// The keys after `phase`; `added` is the version `add`/`one-step` created.
    pub(crate) fn after(&self, phase: Phase, added: Option<u64>) -> anyhow::Result<Self> {
        let pending = self.pending();
        let mut next = self.clone();
        match phase {
            Phase::Add | Phase::OneStep => {
                if let Some(p) = pending {
                    bail!(
                        "version {p} of the page-token key already verifies but does not sign yet: \
                         run the `sign` phase"
                    );
                }
                let Some(added) = added else {
                    bail!("no new version of the page-token key was added");
                };
                if phase == Phase::Add {
                    next.verify.insert(added);
                } else {
                    next.verify.insert(self.signing);
                    next.signing = added;
                }
            }
            Phase::Sign => {
                let Some(p) = pending else {
                    bail!(
                        "no version of the page-token key is waiting to sign (version {} signs): \
                         run the `add` phase first",
                        self.signing
                    );
                };
                next.verify.remove(&p);
                next.verify.insert(self.signing);
                next.signing = p;
            }
            Phase::Retire => {
                if let Some(p) = pending {
                    bail!(
                        "version {p} of the page-token key is added but does not sign yet: run the \
                         `sign` phase before retiring"
                    );
                }
                let old: Vec<u64> = self
                    .verify
                    .iter()
                    .copied()
                    .filter(|v| *v < self.signing)
                    .collect();
                if old.is_empty() {
                    bail!(
                        "nothing to retire: only version {} of the page-token key is mounted",
                        self.signing
                    );
                }
                for v in old {
                    next.verify.remove(&v);
                }
            }
        }
        Ok(next)
    }

    /// The pins of the `page-token` volume among `volumes`, or `None` when there is none.
    pub(crate) fn of(volumes: &[Volume]) -> anyhow::Result<Option<Self>> {
        let Some(secret) = volumes
            .iter()
            .find(|v| v.name == VOLUME)
            .and_then(Volume::secret)
        else {
            return Ok(None);
        };
        let mut signing = None;
        let mut verify = BTreeSet::new();
        for item in &secret.items {
            let version = pinned(&item.version, &item.path)?;
            if item.path == SIGNING_FILE {
                signing = Some(version);
            } else {
                verify.insert(version);
            }
        }
        let Some(signing) = signing else {
            bail!("the {VOLUME} volume mounts no `{SIGNING_FILE}` file (the signing key)");
        };
        Ok(Some(Self { signing, verify }))
    }

    /// Writes these pins into the `page-token` volume of `volumes` and the verify-only file list
    /// into the container `app`'s environment (the volume is mounted at `mount`).
    pub(crate) fn apply(&self, volumes: &mut [Volume], app: &mut Container, mount: &str) {
        if let Some(volume) = volumes.iter_mut().find(|v| v.name == VOLUME)
            && let Some(google_cloud_run_v2::model::volume::VolumeType::Secret(secret)) =
                volume.volume_type.as_mut()
        {
            secret.items = self.items();
        }
        app.env.retain(|e| e.name != VERIFY_ENV);
        if !self.verify.is_empty() {
            let files: Vec<String> = self
                .verify
                .iter()
                .map(|v| format!("{}/{VERIFY_PREFIX}{v}", mount.trim_end_matches('/')))
                .collect();
            app.env.push(
                EnvVar::new()
                    .set_name(VERIFY_ENV)
                    .set_value(files.join(",")),
            );
        }
    }

    /// The volume's files: `current` and one `verify-<n>` per verify-only version.
    fn items(&self) -> Vec<VersionToPath> {
        std::iter::once(
            VersionToPath::new()
                .set_path(SIGNING_FILE)
                .set_version(self.signing.to_string()),
        )
        .chain(self.verify.iter().map(|v| {
            VersionToPath::new()
                .set_path(format!("{VERIFY_PREFIX}{v}"))
                .set_version(v.to_string())
        }))
        .collect()
    }

    /// The values of the `cloudrun` module's variables (through `modules/stack`) for these pins.
    pub(crate) fn terraform(&self) -> String {
        let verify: Vec<String> = self.verify.iter().map(|v| format!("\"{v}\"")).collect();
        format!(
            "page_token_signing_key_version = \"{}\"\npage_token_verify_key_versions = [{}]",
            self.signing,
            verify.join(", ")
        )
    }
}

impl std::fmt::Display for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signs with version {}", self.signing)?;
        if !self.verify.is_empty() {
            let verify: Vec<String> = self.verify.iter().map(u64::to_string).collect();
            write!(f, ", also verifies {}", verify.join(", "))?;
        }
        Ok(())
    }
}

/// A pinned version number; `latest` (or an alias) cannot take part in the phases: which key it
/// means changes under running instances.
fn pinned(version: &str, path: &str) -> anyhow::Result<u64> {
    match version.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!(
            "the {VOLUME} volume mounts version {version:?} as {path}: the rotation needs pinned \
             version numbers (Terraform: page_token_signing_key_version)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_run_v2::model::SecretVolumeSource;

    fn keys(signing: u64, verify: &[u64]) -> Keys {
        Keys {
            signing,
            verify: verify.iter().copied().collect(),
        }
    }

    #[test]
    fn every_phase_keeps_what_the_other_revision_signs_verifiable() {
        // Each roll-out has the old and the new revision serving side by side: whatever one
        // signs, the other must verify.
        let start = keys(1, &[]);
        let added = start.after(Phase::Add, Some(2)).unwrap();
        assert_eq!(added, keys(1, &[2]));
        let signing = added.after(Phase::Sign, None).unwrap();
        assert_eq!(signing, keys(2, &[1]));
        let retired = signing.after(Phase::Retire, None).unwrap();
        assert_eq!(retired, keys(2, &[]));
        for (old, new) in [(&start, &added), (&added, &signing), (&signing, &retired)] {
            let verifies = |k: &Keys, v: u64| k.signing == v || k.verify.contains(&v);
            assert!(verifies(new, old.signing), "{new} rejects what {old} signs");
            assert!(verifies(old, new.signing), "{old} rejects what {new} signs");
        }
    }

    #[test]
    fn a_one_step_rotation_signs_what_the_old_revision_rejects() {
        let start = keys(1, &[]);
        let next = start.after(Phase::OneStep, Some(2)).unwrap();
        assert_eq!(next, keys(2, &[1]));
        assert!(!start.verify.contains(&2) && start.signing != 2);
    }

    #[test]
    fn phases_out_of_order_are_refused() {
        assert!(keys(1, &[]).after(Phase::Sign, None).is_err());
        assert!(keys(1, &[]).after(Phase::Retire, None).is_err());
        assert!(keys(1, &[2]).after(Phase::Add, Some(3)).is_err());
        assert!(keys(1, &[2]).after(Phase::Retire, None).is_err());
        assert_eq!(keys(1, &[2]).next_phase(), Phase::Sign);
        assert_eq!(keys(2, &[1]).next_phase(), Phase::Add);
        // A second rotation before the first retired: the older keys keep verifying.
        assert_eq!(
            keys(2, &[1]).after(Phase::Add, Some(3)).unwrap(),
            keys(2, &[1, 3])
        );
        assert_eq!(
            keys(2, &[1, 3]).after(Phase::Sign, None).unwrap(),
            keys(3, &[1, 2])
        );
        assert_eq!(
            keys(3, &[1, 2]).after(Phase::Retire, None).unwrap(),
            keys(3, &[])
        );
    }

    #[test]
    fn pins_round_trip_through_the_volume_and_the_environment() {
        let mut volumes = vec![
            Volume::new().set_name("db-password"),
            Volume::new().set_name(VOLUME).set_secret(
                SecretVolumeSource::new()
                    .set_secret("items-page-token-key")
                    .set_items([VersionToPath::new().set_path("current").set_version("4")]),
            ),
        ];
        assert_eq!(Keys::of(&volumes).unwrap(), Some(keys(4, &[])));
        let mut app = Container::new().set_name("app");
        keys(4, &[3, 5]).apply(&mut volumes, &mut app, "/page-token/");
        assert_eq!(Keys::of(&volumes).unwrap(), Some(keys(4, &[3, 5])));
        assert_eq!(
            app.env
                .iter()
                .find(|e| e.name == VERIFY_ENV)
                .and_then(EnvVar::value)
                .map(String::as_str),
            Some("/page-token/verify-3,/page-token/verify-5")
        );
        keys(5, &[]).apply(&mut volumes, &mut app, "/page-token");
        assert!(app.env.iter().all(|e| e.name != VERIFY_ENV));
        assert_eq!(
            keys(5, &[4]).terraform(),
            "page_token_signing_key_version = \"5\"\npage_token_verify_key_versions = [\"4\"]"
        );
    }

    #[test]
    fn latest_cannot_take_part() {
        let volumes = vec![
            Volume::new().set_name(VOLUME).set_secret(
                SecretVolumeSource::new().set_items([VersionToPath::new()
                    .set_path("current")
                    .set_version("latest")]),
            ),
        ];
        let e = Keys::of(&volumes).unwrap_err().to_string();
        assert!(e.contains("pinned version numbers"), "{e}");
        assert_eq!(Keys::of(&[]).unwrap(), None);
    }
}
