//! Cloud Run traffic splits, as pure functions of the service's state.

use google_cloud_run_v2::model::{Service, TrafficTarget, TrafficTargetAllocationType};

/// One traffic entry, pinned to a revision. Serialized in the deploy's journal (`journal.rs`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct Split {
    pub(crate) revision: String,
    pub(crate) percent: i32,
    pub(crate) tag: String,
}

impl Split {
    pub(crate) fn to_target(&self) -> TrafficTarget {
        let mut target = TrafficTarget::default();
        target.r#type = TrafficTargetAllocationType::Revision;
        target.revision.clone_from(&self.revision);
        target.percent = self.percent;
        target.tag.clone_from(&self.tag);
        target
    }
}

/// The service's traffic with "latest" resolved to the revision it means now, so that restoring
/// it later does not send traffic to a revision created since. Entries with neither traffic nor
/// a tag are dropped.
pub(crate) fn pinned(service: &Service) -> Vec<Split> {
    service
        .traffic
        .iter()
        .filter(|t| t.percent > 0 || !t.tag.is_empty())
        .map(|t| Split {
            revision: if t.r#type == TrafficTargetAllocationType::Latest || t.revision.is_empty() {
                short_revision(&service.latest_ready_revision)
            } else {
                short_revision(&t.revision)
            },
            percent: t.percent,
            tag: t.tag.clone(),
        })
        .filter(|s| !s.revision.is_empty())
        .collect()
}

/// `projects/p/locations/r/services/s/revisions/x` → `x` (a bare name stays as is).
pub(crate) fn short_revision(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_owned()
}

/// Whether two splits route the same way (the order of the entries aside).
pub(crate) fn same(a: &[Split], b: &[Split]) -> bool {
    let sorted = |s: &[Split]| {
        let mut v = s.to_vec();
        v.sort();
        v
    };
    sorted(a) == sorted(b)
}

/// The revision serving all traffic, if one does.
pub(crate) fn serving_all(splits: &[Split]) -> Option<&str> {
    splits
        .iter()
        .find(|s| s.percent == 100)
        .map(|s| s.revision.as_str())
}

/// `previous` plus `revision` at 0% with `tag`: the new revision is reachable on its tag URL only.
pub(crate) fn staged(previous: &[Split], revision: &str, tag: &str) -> Vec<Split> {
    let mut splits: Vec<Split> = previous
        .iter()
        .filter(|s| s.revision != revision && s.tag != tag)
        .cloned()
        .collect();
    splits.push(Split {
        revision: revision.to_owned(),
        percent: 0,
        tag: tag.to_owned(),
    });
    splits
}

/// `revision` at `percent`, the previous revisions sharing the rest in their old proportions
/// (largest remainders first, so that the total is exactly 100).
pub(crate) fn canary(previous: &[Split], revision: &str, tag: &str, percent: i32) -> Vec<Split> {
    let others: Vec<&Split> = previous
        .iter()
        .filter(|s| s.revision != revision && s.percent > 0)
        .collect();
    let total: i32 = others.iter().map(|s| s.percent).sum();
    let rest = 100 - percent;
    let mut shares: Vec<(Split, i32)> = others
        .iter()
        .map(|s| {
            let exact = s.percent * rest;
            (
                Split {
                    revision: s.revision.clone(),
                    percent: if total > 0 { exact / total } else { 0 },
                    tag: s.tag.clone(),
                },
                if total > 0 { exact % total } else { 0 },
            )
        })
        .collect();
    let mut missing = rest - shares.iter().map(|(s, _)| s.percent).sum::<i32>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(shares[i].1));
    for i in order {
        if missing == 0 {
            break;
        }
        shares[i].0.percent += 1;
        missing -= 1;
    }
    let mut splits = vec![Split {
        revision: revision.to_owned(),
        percent: percent + missing,
        tag: tag.to_owned(),
    }];
    splits.extend(shares.into_iter().map(|(s, _)| s).filter(|s| s.percent > 0));
    splits
}

/// All traffic to `revision`, which keeps its tag.
pub(crate) fn full(revision: &str, tag: &str) -> Vec<Split> {
    vec![Split {
        revision: revision.to_owned(),
        percent: 100,
        tag: tag.to_owned(),
    }]
}

/// `a 90%, b 10% (tag t)` for messages.
pub(crate) fn describe(splits: &[Split]) -> String {
    if splits.is_empty() {
        return "no traffic".to_owned();
    }
    splits
        .iter()
        .map(|s| {
            if s.tag.is_empty() {
                format!("{} {}%", s.revision, s.percent)
            } else {
                format!("{} {}% (tag {})", s.revision, s.percent, s.tag)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(revision: &str, percent: i32, tag: &str) -> Split {
        Split {
            revision: revision.to_owned(),
            percent,
            tag: tag.to_owned(),
        }
    }

    #[test]
    fn latest_is_pinned_to_the_ready_revision() {
        let mut service = Service::default();
        service.latest_ready_revision =
            "projects/p/locations/r/services/items/revisions/items-a".into();
        let mut latest = TrafficTarget::default();
        latest.r#type = TrafficTargetAllocationType::Latest;
        latest.percent = 100;
        service.traffic = vec![latest, split("items-old", 0, "").to_target()];
        assert_eq!(pinned(&service), [split("items-a", 100, "")]);
    }

    #[test]
    fn canary_shares_the_rest_in_proportion() {
        let previous = [split("a", 100, "")];
        assert_eq!(
            canary(&previous, "n", "t", 10),
            [split("n", 10, "t"), split("a", 90, "")]
        );
        let previous = [split("a", 50, ""), split("b", 50, "x")];
        let c = canary(&previous, "n", "t", 25);
        assert_eq!(c.iter().map(|s| s.percent).sum::<i32>(), 100);
        assert_eq!(c[0], split("n", 25, "t"));
        // Nothing else serving: the new revision takes it all.
        assert_eq!(canary(&[], "n", "t", 10), [split("n", 100, "t")]);
    }

    #[test]
    fn staging_adds_the_tagged_revision_at_zero() {
        let previous = [split("a", 100, "")];
        assert_eq!(
            staged(&previous, "n", "t"),
            [split("a", 100, ""), split("n", 0, "t")]
        );
        assert_eq!(serving_all(&previous), Some("a"));
        assert!(same(
            &[split("a", 90, ""), split("n", 10, "t")],
            &[split("n", 10, "t"), split("a", 90, "")]
        ));
        assert!(!same(&previous, &[split("a", 100, "t")]));
        assert_eq!(describe(&full("n", "t")), "n 100% (tag t)");
    }
}
