//! The changes a roll-out made, recorded (and, with a lease, persisted: `lease.rs`) before each
//! mutating call is sent, and their undoing, newest first, when a step fails, the deploy is
//! interrupted, or `--rollback` finds the journal of a deploy that died.
//!
//! An undo never overwrites what the deploy did not do: it reads the resource again and restores
//! it only while it is in a state this deploy set; the traffic patch carries the etag of that read
//! (a change in between fails it with `ABORTED`, and the undo reads again). API Gateway's
//! `Gateway` has no etag (google-cloud-apigateway-v1 `model::Gateway`: name, labels, api_config,
//! state, default_hostname …, no etag field): its undo reads the gateway and restores only when
//! it still serves the config this deploy set; a change landing between that read and the patch
//! is not detected.

use std::time::Duration;

use google_cloud_run_v2::model::Service;
use serde::{Deserialize, Serialize};

use super::cloud::{self, Cloud, Ui};
use super::lease::Lease;
use super::state::short_name;
use super::traffic::{self, Split};

/// A resource the roll-out changed, the state it had before and the states this deploy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Change {
    Traffic {
        region: String,
        service: String,
        restore: Vec<Split>,
        /// Every split this deploy sent, in order (recorded before each was sent).
        set: Vec<Vec<Split>>,
    },
    Gateway {
        region: String,
        gateway: String,
        restore: String,
        /// The config this deploy pointed the gateway at.
        set: String,
    },
}

impl Change {
    fn resource(&self) -> &str {
        match self {
            Self::Traffic { service, .. } => service,
            Self::Gateway { gateway, .. } => gateway,
        }
    }

    /// `region: service x` / `region: gateway g`, for messages.
    fn describe(&self) -> String {
        match self {
            Self::Traffic {
                region, service, ..
            } => format!("{region}: service {}", short_name(service)),
            Self::Gateway {
                region, gateway, ..
            } => format!("{region}: gateway {}", short_name(gateway)),
        }
    }
}

/// What to restore, one entry per resource changed, and the lease it is persisted under.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    changes: Vec<Change>,
    lease: Option<Lease>,
}

/// What a rollback did, one line per change.
#[derive(Debug)]
pub(crate) struct Rollback {
    pub(crate) lines: Vec<String>,
    /// Whether an undo failed (its change stays in the journal).
    pub(crate) failed: bool,
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lines.is_empty() {
            f.write_str("nothing had been changed")
        } else {
            f.write_str(&self.lines.join("\n"))
        }
    }
}

/// How one undo ended.
enum Undone {
    Restored(String),
    AlreadyBefore(String),
    LeftAlone(String),
}

impl Journal {
    pub(crate) fn new(lease: Option<Lease>) -> Self {
        Self {
            changes: Vec::new(),
            lease,
        }
    }

    /// The journal a deploy that died left, to be undone under `lease`.
    pub(crate) fn resume(changes: Vec<Change>, lease: Lease) -> Self {
        Self {
            changes,
            lease: Some(lease),
        }
    }

    /// Records `change` before it is sent, and persists the journal when it grew. A resource
    /// changed again keeps its first state to restore and adds what is set now. Returns the
    /// anchor service as the journal's write left it (its etag changed), if it was written.
    pub(crate) async fn record(&mut self, change: Change) -> anyhow::Result<Option<Service>> {
        if !self.merge(change) {
            return Ok(None);
        }
        self.save(Duration::ZERO).await
    }

    /// Adds a state this deploy set, as observed after its call, without writing the journal (the
    /// next write carries it).
    pub(crate) fn observe(&mut self, change: Change) {
        self.merge(change);
    }

    /// Renews the lease for `extra` beyond its usual length (the canary hold).
    pub(crate) async fn renew(&mut self, extra: Duration) -> anyhow::Result<Option<Service>> {
        self.save(extra).await
    }

    async fn save(&mut self, extra: Duration) -> anyhow::Result<Option<Service>> {
        match &mut self.lease {
            Some(lease) => Ok(Some(lease.save(&self.changes, extra).await?)),
            None => Ok(None),
        }
    }

    fn merge(&mut self, change: Change) -> bool {
        let Some(existing) = self
            .changes
            .iter_mut()
            .find(|c| c.resource() == change.resource())
        else {
            self.changes.push(change);
            return true;
        };
        match (existing, change) {
            (Change::Traffic { set, .. }, Change::Traffic { set: new, .. }) => {
                let before = set.len();
                for s in new {
                    if !set.contains(&s) {
                        set.push(s);
                    }
                }
                set.len() > before
            }
            _ => false,
        }
    }

    /// Undoes every change, newest first; a failed undo is reported and the others still run.
    /// What remains (the failed undos) is persisted after each.
    pub(crate) async fn roll_back(&mut self, cloud: &Cloud, ui: Ui) -> Rollback {
        let mut lines = Vec::new();
        let mut failed = Vec::new();
        while let Some(change) = self.changes.pop() {
            match undo(cloud, ui, &change).await {
                Ok(Undone::Restored(what)) => lines.push(format!("rolled back: {what}")),
                Ok(Undone::AlreadyBefore(what)) => lines.push(format!("as before: {what}")),
                Ok(Undone::LeftAlone(what)) => lines.push(format!("left alone: {what}")),
                Err(e) => {
                    lines.push(format!("ROLLBACK FAILED ({}): {e:#}", change.describe()));
                    failed.push(change);
                }
            }
            let remaining: Vec<Change> = failed.iter().chain(&self.changes).cloned().collect();
            if let Some(lease) = &mut self.lease
                && let Err(e) = lease.save(&remaining, Duration::ZERO).await
            {
                ui.say(&format!("warning: the journal was not saved: {e:#}"));
            }
        }
        failed.reverse();
        let rollback = Rollback {
            lines,
            failed: !failed.is_empty(),
        };
        self.changes = failed;
        rollback
    }

    /// Forgets the changes: the roll-out they made stands.
    pub(crate) fn clear(&mut self) {
        self.changes.clear();
    }

    /// Gives the lease up, keeping as the journal what could not be undone.
    pub(crate) async fn close(self, ui: Ui) {
        if let Some(lease) = self.lease
            && let Err(e) = lease.release(&self.changes).await
        {
            ui.say(&format!(
                "warning: {e:#}; the lease expires by itself (or --break-lease once expired)"
            ));
        }
    }
}

/// Attempts at an undo whose patch meets a stale etag.
const UNDO_ATTEMPTS: usize = 3;

async fn undo(cloud: &Cloud, ui: Ui, change: &Change) -> anyhow::Result<Undone> {
    match change {
        Change::Traffic {
            region,
            service,
            restore,
            set,
        } => {
            for _ in 0..UNDO_ATTEMPTS {
                let mut current = cloud.get_service(service).await?;
                let now = traffic::pinned(&current);
                if traffic::same(&now, restore) {
                    return Ok(Undone::AlreadyBefore(format!(
                        "{region}: traffic {}",
                        traffic::describe(restore)
                    )));
                }
                if !set.iter().any(|s| traffic::same(&now, s)) {
                    return Ok(Undone::LeftAlone(format!(
                        "{region}: {} serves {}, which this deploy did not set (etag {}); \
                         not restoring {}",
                        short_name(service),
                        traffic::describe(&now),
                        current.etag,
                        traffic::describe(restore)
                    )));
                }
                let what = format!("{region}: restoring traffic {}", traffic::describe(restore));
                ui.say(&format!("rollback: {what}"));
                current.traffic = restore.iter().map(Split::to_target).collect();
                match cloud.update_service(current, &what).await {
                    Ok(_) => return Ok(Undone::Restored(what)),
                    Err(e) if cloud::is_stale(&e) => {
                        ui.say(&format!(
                            "rollback: {region}: the service changed; reading it again"
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            anyhow::bail!("{service} changed on every attempt")
        }
        Change::Gateway {
            region,
            gateway,
            restore,
            set,
        } => {
            let serving = cloud.get_gateway(gateway).await?.api_config;
            if serving == *restore {
                return Ok(Undone::AlreadyBefore(format!(
                    "{region}: gateway {} serves {}",
                    short_name(gateway),
                    short_name(restore)
                )));
            }
            if serving != *set {
                return Ok(Undone::LeftAlone(format!(
                    "{region}: gateway {} serves {}, which this deploy did not set; not \
                     restoring {}",
                    short_name(gateway),
                    short_name(&serving),
                    short_name(restore)
                )));
            }
            let what = format!(
                "{region}: gateway {} back to {}",
                short_name(gateway),
                short_name(restore)
            );
            ui.say(&format!("rollback: {what}"));
            cloud.set_gateway_config(gateway, restore, &what).await?;
            Ok(Undone::Restored(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(revision: &str, percent: i32) -> Split {
        Split {
            revision: revision.into(),
            percent,
            tag: String::new(),
        }
    }

    fn traffic(set: Vec<Split>) -> Change {
        Change::Traffic {
            region: "r".into(),
            service: "s".into(),
            restore: vec![split("a", 100)],
            set: vec![set],
        }
    }

    #[test]
    fn a_resource_changed_twice_keeps_its_first_state_and_every_state_set() {
        let gateway = Change::Gateway {
            region: "r".into(),
            gateway: "g".into(),
            restore: "c".into(),
            set: "d".into(),
        };
        let mut journal = Journal::default();
        assert!(journal.merge(traffic(vec![split("a", 100), split("n", 0)])));
        assert!(journal.merge(gateway.clone()));
        assert!(journal.merge(traffic(vec![split("n", 10), split("a", 90)])));
        assert!(!journal.merge(traffic(vec![split("n", 10), split("a", 90)])));
        assert!(!journal.merge(gateway.clone()));
        assert_eq!(
            journal.changes,
            [
                Change::Traffic {
                    region: "r".into(),
                    service: "s".into(),
                    restore: vec![split("a", 100)],
                    set: vec![
                        vec![split("a", 100), split("n", 0)],
                        vec![split("n", 10), split("a", 90)]
                    ],
                },
                gateway
            ]
        );
    }

    #[test]
    fn changes_round_trip_as_json() {
        let change = traffic(vec![split("n", 100)]);
        let text = serde_json::to_string(&change).unwrap();
        assert!(text.starts_with("{\"kind\":\"traffic\""), "{text}");
        assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), change);
    }
}
