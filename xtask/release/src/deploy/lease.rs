//! One deploy of an environment at a time, and its journal kept where a dead deploy leaves it:
//! both are annotations on the environment's *anchor* service (the Cloud Run service of its first
//! region), written with the etag read just before, so that two deploys taking the lease at once
//! cannot both succeed; the journal is also written to a local file first.
//!
//! Google's rules this relies on:
//! - `Service.annotations` (Cloud Run Admin API v2, `google/cloud/run/v2/service.proto`):
//!   "Unstructured key value map that may be set by external tools to store and arbitrary
//!   metadata. They are not queryable and should be preserved when modifying objects. Cloud Run
//!   API v2 does not support annotations with `run.googleapis.com`, `cloud.googleapis.com`,
//!   `serving.knative.dev`, or `autoscaling.knative.dev` namespaces … This field follows
//!   Kubernetes annotations' namespacing, limits, and rules." Our keys are `deploy.xtask.items/…`
//!   (a DNS-subdomain prefix, a name of ≤ 63 characters; Kubernetes caps all annotations of an
//!   object at 256 KiB, and a journal is a few KiB).
//! - Writes send `updateMask=annotations` ("The list of fields to be updated",
//!   `UpdateServiceRequest.update_mask`) and the etag; a stale etag is refused with `ABORTED`
//!   (AIP-154), so a lost race re-reads and decides again.
//! - Terraform's `google_cloud_run_v2_service.annotations` "is non-authoritative, and will only
//!   manage the annotations present in your configuration" (hashicorp/terraform-provider-google,
//!   website/docs/r/cloud_run_v2_service.html.markdown): an apply keeps these. It sends back
//!   `effective_annotations` as read at its refresh (resource_cloud_run_v2_service.go, update),
//!   without an etag, so an apply racing a deploy may write back an older journal: the journal
//!   carries a sequence number, and `--rollback` takes the newer of the cloud's and the local copy.
//!
//! Where it stops: API Gateway has no lease of its own; a Terraform apply is not stopped by the
//! lease (it ignores annotations it does not manage); the liveness of a holder is only known for
//! one on this host (its process id).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use google_cloud_run_v2::model::Service;
use items_gateway_spec::Environment;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cloud::{self, Cloud, Ui};
use super::journal::Change;

/// The annotation holding the lease (a JSON [`Record`]).
pub(crate) const LEASE_KEY: &str = "deploy.xtask.items/lease";
/// The annotation holding the journal of the deploy holding the lease (a JSON [`Saved`]).
pub(crate) const JOURNAL_KEY: &str = "deploy.xtask.items/journal";
/// How long a lease lasts after its last renewal (each journal write renews it; the canary hold
/// adds its length).
pub(crate) const TTL: Duration = Duration::from_secs(20 * 60);
/// Attempts at a read-modify-write of the annotations before giving up.
const ATTEMPTS: usize = 5;

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Unique per deploy run.
    pub(crate) id: String,
    /// `user@host pid N`, or the CI run's URL.
    pub(crate) holder: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires: OffsetDateTime,
    /// What it does (`deploy <image>`, `rollback`).
    pub(crate) action: String,
}

/// The journal as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// The [`Record::id`] of the deploy that wrote it.
    pub(crate) lease: String,
    pub(crate) holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) started: OffsetDateTime,
    /// Incremented by each write: of two copies, the higher is the newer.
    pub(crate) seq: u64,
    pub(crate) changes: Vec<Change>,
}

/// What the lease is taken for.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Break an expired lease held by another deploy.
    pub(crate) break_lease: bool,
    /// `--rollback`: a journal left behind is what this run undoes (a deploy refuses to start).
    pub(crate) rollback: bool,
    pub(crate) action: String,
    /// Where the local copy of the journal is written.
    pub(crate) journal_dir: PathBuf,
}

/// A lease this run holds.
#[derive(Debug)]
pub(crate) struct Lease {
    cloud: Cloud,
    anchor: String,
    record: Record,
    seq: u64,
    file: PathBuf,
}

/// The service whose annotations hold the environment's lease and journal: the one of its first
/// region (whatever `--region` selects: the lease is the environment's).
pub(crate) fn anchor(env: &Environment) -> anyhow::Result<String> {
    let region = env
        .regions
        .first()
        .with_context(|| format!("{} has no region", env.name))?;
    Ok(format!(
        "projects/{}/locations/{}/services/{}",
        env.project_id, region.name, env.service
    ))
}

/// The state of a lease found on the anchor, as seen from this run.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    Live,
    /// Held by a process of this host that no longer runs.
    Dead,
    Expired,
}

fn standing(record: &Record, now: OffsetDateTime, host: &str) -> Standing {
    if record.host == host && record.pid != std::process::id() && !process_runs(record.pid) {
        Standing::Dead
    } else if record.expires <= now {
        Standing::Expired
    } else {
        Standing::Live
    }
}

fn process_runs(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks that the process exists; EPERM means it does (another user's).
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

fn when(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn parse<T: for<'de> Deserialize<'de>>(service: &Service, key: &str) -> anyhow::Result<Option<T>> {
    service
        .annotations
        .get(key)
        .map(|v| {
            serde_json::from_str(v).with_context(|| {
                format!(
                    "annotation {key} of {} is not what deploy writes",
                    service.name
                )
            })
        })
        .transpose()
}

impl Lease {
    /// Takes the environment's lease, or says who holds it. A lease held by a process of this
    /// host that is gone is taken over; an expired one only with `break_lease`. Returns the
    /// journal a previous holder left (from the cloud or, when newer, the local file): with
    /// changes in it a deploy refuses to start and `--rollback` undoes them.
    pub(crate) async fn take(
        cloud: &Cloud,
        env: &Environment,
        options: &Options,
        ui: Ui,
    ) -> anyhow::Result<(Self, Option<Saved>)> {
        let anchor = anchor(env)?;
        let host = hostname();
        let file = options.journal_dir.join(format!("{}.json", env.name));
        for _ in 0..ATTEMPTS {
            let service = cloud.get_service(&anchor).await?;
            let now = OffsetDateTime::now_utc();
            let held: Option<Record> = match parse(&service, LEASE_KEY) {
                Ok(held) => held,
                Err(e) if options.break_lease => {
                    ui.say(&format!("breaking an unreadable lease: {e:#}"));
                    None
                }
                Err(e) => return Err(e.context("use --break-lease to replace it")),
            };
            if let Some(h) = &held {
                match standing(h, now, &host) {
                    Standing::Live => bail!(
                        "{} is being deployed: the lease is held by {} since {} ({}; expires {}). \
                         Wait for it to finish; a deploy that died leaves the lease until it expires \
                         (then --break-lease)",
                        env.name,
                        h.holder,
                        when(h.started),
                        h.action,
                        when(h.expires)
                    ),
                    Standing::Dead => ui.say(&format!(
                        "taking over the lease of {} (since {}): process {} on {} is gone",
                        h.holder,
                        when(h.started),
                        h.pid,
                        h.host
                    )),
                    Standing::Expired if options.break_lease => ui.say(&format!(
                        "breaking the expired lease of {} (since {}, expired {})",
                        h.holder,
                        when(h.started),
                        when(h.expires)
                    )),
                    Standing::Expired => bail!(
                        "the lease of {} is held by {} since {}; it expired {}: that deploy \
                         probably died. Pass --break-lease to break it",
                        env.name,
                        h.holder,
                        when(h.started),
                        when(h.expires)
                    ),
                }
            }
            let cloud_copy: Option<Saved> = parse(&service, JOURNAL_KEY).unwrap_or_else(|e| {
                ui.say(&format!("warning: ignoring the journal annotation: {e:#}"));
                None
            });
            let left = newest(cloud_copy, read_file(&file), held.as_ref());
            if let Some(saved) = &left
                && !saved.changes.is_empty()
                && !options.rollback
            {
                bail!(
                    "{} has the journal of a deploy that did not finish ({}, started {}, {} \
                     change(s) to undo): run `cargo xtask deploy --env {} --rollback` first",
                    env.name,
                    saved.holder,
                    when(saved.started),
                    saved.changes.len(),
                    env.name
                );
            }
            let record = Record {
                id: format!("{:x}-{:x}", std::process::id(), now.unix_timestamp_nanos()),
                holder: holder(&host),
                host: host.clone(),
                pid: std::process::id(),
                started: now,
                expires: now + TTL,
                action: options.action.clone(),
            };
            let mut body = service;
            body.annotations
                .insert(LEASE_KEY.to_owned(), serde_json::to_string(&record)?);
            if !options.rollback {
                body.annotations.remove(JOURNAL_KEY);
            }
            match cloud.update_annotations(body).await {
                Ok(_) => {
                    ui.say(&format!(
                        "lease of {} taken ({}, on {anchor})",
                        env.name, record.holder
                    ));
                    let lease = Self {
                        cloud: cloud.clone(),
                        anchor,
                        record,
                        seq: left.as_ref().map_or(0, |s| s.seq),
                        file,
                    };
                    return Ok((lease, left));
                }
                Err(e) if cloud::is_stale(&e) => {
                    ui.say("the lease changed while taking it; reading it again");
                }
                Err(e) => return Err(e.context("taking the deploy lease")),
            }
        }
        bail!(
            "could not take the lease of {}: {anchor} changed on every attempt",
            env.name
        )
    }

    /// Writes `changes` as the journal (the local file, then the anchor's annotation) and renews
    /// the lease for [`TTL`] plus `extra`. Fails when the lease is no longer this run's.
    /// Returns the anchor service as written (its new etag is what the next patch of it sends).
    pub(crate) async fn save(
        &mut self,
        changes: &[Change],
        extra: Duration,
    ) -> anyhow::Result<Service> {
        self.seq += 1;
        self.record.expires = OffsetDateTime::now_utc() + TTL + extra;
        let saved = Saved {
            lease: self.record.id.clone(),
            holder: self.record.holder.clone(),
            started: self.record.started,
            seq: self.seq,
            changes: changes.to_vec(),
        };
        let text = serde_json::to_string(&saved)?;
        write_file(&self.file, &text);
        let lease = serde_json::to_string(&self.record)?;
        self.write(|annotations| {
            annotations.insert(LEASE_KEY.to_owned(), lease.clone());
            annotations.insert(JOURNAL_KEY.to_owned(), text.clone());
        })
        .await
        .context("saving the deploy journal")
    }

    /// Gives the lease up. `left` are changes a rollback could not undo: they stay as the journal
    /// for `--rollback`; with none the journal goes too.
    pub(crate) async fn release(mut self, left: &[Change]) -> anyhow::Result<Service> {
        let journal = if left.is_empty() {
            remove_file(&self.file);
            None
        } else {
            self.seq += 1;
            let saved = Saved {
                lease: self.record.id.clone(),
                holder: self.record.holder.clone(),
                started: self.record.started,
                seq: self.seq,
                changes: left.to_vec(),
            };
            let text = serde_json::to_string(&saved)?;
            write_file(&self.file, &text);
            Some(text)
        };
        self.write(|annotations| {
            annotations.remove(LEASE_KEY);
            match &journal {
                Some(text) => annotations.insert(JOURNAL_KEY.to_owned(), text.clone()),
                None => annotations.remove(JOURNAL_KEY),
            };
        })
        .await
        .context("releasing the deploy lease")
    }

    /// Read, check the lease is still ours, change the annotations, write with the etag read;
    /// again when someone else wrote in between.
    async fn write(
        &self,
        change: impl Fn(&mut std::collections::HashMap<String, String>),
    ) -> anyhow::Result<Service> {
        for _ in 0..ATTEMPTS {
            let mut service = self.cloud.get_service(&self.anchor).await?;
            let held: Option<Record> = parse(&service, LEASE_KEY)?;
            match held {
                Some(h) if h.id == self.record.id => {}
                Some(h) => bail!(
                    "the lease is no longer this deploy's: {} took it at {}",
                    h.holder,
                    when(h.started)
                ),
                None => bail!("the lease is no longer this deploy's: it was removed"),
            }
            change(&mut service.annotations);
            match self.cloud.update_annotations(service).await {
                Ok(written) => return Ok(written),
                Err(e) if cloud::is_stale(&e) => {}
                Err(e) => return Err(e),
            }
        }
        bail!("{} changed on every attempt", self.anchor)
    }
}

/// The journal to trust: the cloud's copy, or the local file's when it belongs to the same
/// deploy (the cloud's lease or journal) and is newer.
fn newest(cloud: Option<Saved>, local: Option<Saved>, held: Option<&Record>) -> Option<Saved> {
    let Some(local) = local else {
        return cloud;
    };
    let same_deploy = cloud.as_ref().map(|c| &c.lease) == Some(&local.lease)
        || held.is_some_and(|h| h.id == local.lease);
    match cloud {
        Some(c) if !same_deploy || c.seq >= local.seq => Some(c),
        _ if same_deploy => Some(local),
        other => other,
    }
}

fn read_file(path: &Path) -> Option<Saved> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The local copy: written whole under a temporary name, then renamed. Best effort (the cloud's
/// copy is the one that survives a lost machine).
fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        eprintln!(
            "warning: the local copy of the journal ({}) was not written: {e}",
            path.display()
        );
    }
}

fn remove_file(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// This machine's name.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| {
            std::process::Command::new("hostname")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Who this run is, for the people a refused deploy shows it to: the CI run (GitHub Actions'
/// default variables) or `user@host pid N`.
fn holder(host: &str) -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(server), Some(repo), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        let attempt = var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".to_owned());
        return format!("CI run {server}/{repo}/actions/runs/{run} (attempt {attempt})");
    }
    let user = var("USER")
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{host} pid {}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, host: &str, pid: u32, expires_in: i64) -> Record {
        let now = OffsetDateTime::now_utc();
        Record {
            id: id.into(),
            holder: format!("someone@{host} pid {pid}"),
            host: host.into(),
            pid,
            started: now - time::Duration::minutes(5),
            expires: now + time::Duration::seconds(expires_in),
            action: "deploy".into(),
        }
    }

    fn saved(lease: &str, seq: u64) -> Saved {
        Saved {
            lease: lease.into(),
            holder: "h".into(),
            started: OffsetDateTime::UNIX_EPOCH,
            seq,
            changes: Vec::new(),
        }
    }

    #[test]
    fn a_lease_is_live_until_it_expires_unless_its_process_here_is_gone() {
        let now = OffsetDateTime::now_utc();
        let me = std::process::id();
        assert_eq!(
            standing(&record("a", "elsewhere", 1, 60), now, "here"),
            Standing::Live
        );
        assert_eq!(
            standing(&record("a", "elsewhere", 1, -1), now, "here"),
            Standing::Expired
        );
        // This process runs; a pid beyond pid_max does not.
        assert_eq!(
            standing(&record("a", "here", me, 60), now, "here"),
            Standing::Live
        );
        assert_eq!(
            standing(&record("a", "here", 99_999_999, 60), now, "here"),
            Standing::Dead
        );
    }

    #[test]
    fn the_local_copy_wins_only_for_the_same_deploy_and_when_newer() {
        let held = record("a", "h", 1, 60);
        assert_eq!(
            newest(Some(saved("a", 3)), Some(saved("a", 5)), None),
            Some(saved("a", 5))
        );
        assert_eq!(
            newest(Some(saved("a", 5)), Some(saved("a", 3)), None),
            Some(saved("a", 5))
        );
        assert_eq!(
            newest(Some(saved("a", 1)), Some(saved("b", 9)), None),
            Some(saved("a", 1))
        );
        assert_eq!(newest(None, Some(saved("b", 2)), None), None);
        assert_eq!(
            newest(None, Some(saved("a", 2)), Some(&held)),
            Some(saved("a", 2))
        );
        assert_eq!(newest(None, None, Some(&held)), None);
    }

    #[test]
    fn records_round_trip_as_annotation_values() {
        let r = record("a", "h", 7, 60);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"started\":\""), "{text}");
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    }
}
