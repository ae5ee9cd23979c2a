//! The changes a roll-out made, recorded before each mutating call is sent, and their undoing
//! (newest first) when a step fails.

use super::cloud::{Cloud, Ui};
use super::state::short_name;
use super::traffic::{self, Split};

/// A resource the roll-out changed and the state it had before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Traffic {
        region: String,
        service: String,
        restore: Vec<Split>,
    },
    Gateway {
        region: String,
        gateway: String,
        restore: String,
    },
}

impl Change {
    fn resource(&self) -> &str {
        match self {
            Self::Traffic { service, .. } => service,
            Self::Gateway { gateway, .. } => gateway,
        }
    }
}

/// What to restore, one entry per resource changed.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    changes: Vec<Change>,
}

impl Journal {
    /// Records `change` before it is sent. A resource changed again keeps its first entry: the
    /// state before the roll-out is what a rollback restores.
    pub(crate) fn record(&mut self, change: Change) {
        if !self
            .changes
            .iter()
            .any(|c| c.resource() == change.resource())
        {
            self.changes.push(change);
        }
    }

    /// Undoes every change, newest first; a failed undo is reported and the others still run.
    /// Returns a summary for the error message.
    pub(crate) async fn roll_back(&mut self, cloud: &Cloud, ui: Ui) -> String {
        let mut lines = Vec::new();
        while let Some(change) = self.changes.pop() {
            match undo(cloud, ui, &change).await {
                Ok(what) => lines.push(format!("rolled back: {what}")),
                Err(e) => lines.push(format!("ROLLBACK FAILED ({change:?}): {e:#}")),
            }
        }
        if lines.is_empty() {
            "nothing had been changed".to_owned()
        } else {
            lines.join("\n")
        }
    }
}

async fn undo(cloud: &Cloud, ui: Ui, change: &Change) -> anyhow::Result<String> {
    match change {
        Change::Traffic {
            region,
            service,
            restore,
        } => {
            let what = format!("{region}: restoring traffic {}", traffic::describe(restore));
            ui.say(&format!("rollback: {what}"));
            let mut current = cloud.get_service(service).await?;
            current.traffic = restore.iter().map(Split::to_target).collect();
            cloud.update_service(current, &what).await?;
            Ok(what)
        }
        Change::Gateway {
            region,
            gateway,
            restore,
        } => {
            let what = format!(
                "{region}: gateway {} back to {}",
                short_name(gateway),
                short_name(restore)
            );
            ui.say(&format!("rollback: {what}"));
            cloud.set_gateway_config(gateway, restore, &what).await?;
            Ok(what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_changed_twice_is_restored_to_its_first_state() {
        let traffic = |percent| Change::Traffic {
            region: "r".into(),
            service: "s".into(),
            restore: vec![Split {
                revision: "a".into(),
                percent,
                tag: String::new(),
            }],
        };
        let gateway = Change::Gateway {
            region: "r".into(),
            gateway: "g".into(),
            restore: "c".into(),
        };
        let mut journal = Journal::default();
        journal.record(traffic(100));
        journal.record(gateway.clone());
        journal.record(traffic(10));
        assert_eq!(journal.changes, [traffic(100), gateway]);
    }
}
