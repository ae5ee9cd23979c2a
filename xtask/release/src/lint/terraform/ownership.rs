//! Check 11: one owner per field of the Cloud Run service and the migrate job, so that Terraform
//! and `cargo xtask deploy` never fight. The table under "Who owns which field" in
//! `docs/deploy.md` gives each field (a Terraform attribute path of a resource of
//! `modules/cloudrun`) its owner: `deploy`, `Terraform` or `nobody`. In the module:
//! - every field deploy owns is in the resource's `lifecycle.ignore_changes`, and nothing else
//!   is (Terraform re-sends an ignored field from its state, e.g. a revision name deploy set:
//!   hashicorp/terraform-provider-google#14569);
//! - a field nobody owns (the revision name: Cloud Run generates it) is not set;
//! - an ignored `containers[N].image` names the container deploy sets (named `app`, else the one
//!   with ports, else the first);
//! - every Cloud Run service and job of the module has rows in the table, and every row names a
//!   resource of the module.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use hcl::Body;
use hcl::expr::Expression;

use super::module::{Module, attribute, literal_string, nested, relative};

/// The heading of the table in docs/deploy.md.
pub(super) const HEADING: &str = "Who owns which field";

/// The resource types whose fields the table assigns.
const TYPES: [&str; 2] = ["google_cloud_run_v2_service", "google_cloud_run_v2_job"];

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// `google_cloud_run_v2_service.this`
    resource: String,
    /// `template[0].containers[0].image`
    field: String,
    owner: Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Deploy,
    Terraform,
    Nobody,
}

/// Every problem of the module in `module_dir` against the table in `doc`.
pub(super) fn check_ownership(
    doc: &Path,
    module_dir: &Path,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let shown = relative(doc, root);
    let text = std::fs::read_to_string(doc).with_context(|| format!("reading {shown}"))?;
    let rows = match table(&text) {
        Ok(rows) => rows,
        Err(problem) => return Ok(vec![format!("{shown}: {problem}")]),
    };
    let module = Module::load(module_dir, root)?;
    let module_name = relative(module_dir, root);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for kind in TYPES {
        for (name, body) in module.blocks_of(&format!("resource.{kind}")) {
            let address = format!("{kind}.{name}");
            let what = format!("{module_name}: {address}");
            let mine: Vec<&Row> = rows.iter().filter(|r| r.resource == address).collect();
            if mine.is_empty() {
                problems.push(format!(
                    "{what} has no row in the table \"{HEADING}\" of {shown}"
                ));
            }
            problems.extend(check_resource(&what, body, &mine));
            seen.insert(address);
        }
    }
    for row in rows.iter().filter(|r| !seen.contains(&r.resource)) {
        problems.push(format!(
            "{shown}: the table \"{HEADING}\" names {}, which {module_name} does not declare",
            row.resource
        ));
    }
    Ok(problems)
}

fn check_resource(what: &str, body: &Body, rows: &[&Row]) -> Vec<String> {
    let ignored = ignore_changes(body);
    let owner_of = |field: &str| rows.iter().find(|r| r.field == field).map(|r| r.owner);
    let mut problems = Vec::new();
    for row in rows {
        match row.owner {
            Owner::Deploy if !ignored.contains(&row.field) => problems.push(format!(
                "{what}: deploy owns {} but lifecycle.ignore_changes lacks it: the next apply \
                 would undo a deploy",
                row.field
            )),
            Owner::Deploy => {
                if let Some(problem) = check_container_index(body, &row.field) {
                    problems.push(format!("{what}: {problem}"));
                }
            }
            Owner::Nobody if set(body, &row.field) => {
                problems.push(format!("{what}: sets {}, which nobody may set", row.field))
            }
            _ => {}
        }
    }
    for field in &ignored {
        match owner_of(field) {
            Some(Owner::Deploy) => {}
            Some(owner) => problems.push(format!(
                "{what}: lifecycle.ignore_changes has {field}, which the table gives to {}: \
                 Terraform would re-send its value from the state",
                match owner {
                    Owner::Terraform => "Terraform",
                    _ => "nobody",
                }
            )),
            None => problems.push(format!(
                "{what}: lifecycle.ignore_changes has {field}, which the table \"{HEADING}\" \
                 does not list"
            )),
        }
    }
    problems
}

/// The paths of `lifecycle.ignore_changes`, whitespace removed (`template[0].revision`).
fn ignore_changes(body: &Body) -> BTreeSet<String> {
    let Some(Expression::Array(items)) = nested(body, "lifecycle")
        .into_iter()
        .find_map(|l| attribute(l, "ignore_changes"))
    else {
        return BTreeSet::new();
    };
    items
        .iter()
        .filter_map(|e| hcl::format::to_string(e).ok())
        .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect())
        .collect()
}

/// `template[0].containers[1].image` → `[("template", 0), ("containers", 1), ("image", 0)]`.
fn segments(field: &str) -> Vec<(&str, usize)> {
    field
        .split('.')
        .map(|seg| match seg.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().unwrap_or(0)),
            None => (seg, 0),
        })
        .collect()
}

/// Whether the configuration sets `field` (as an attribute or a block).
fn set(body: &Body, field: &str) -> bool {
    let segs = segments(field);
    let Some(((last, _), parents)) = segs.split_last() else {
        return false;
    };
    let mut current = body;
    for (name, index) in parents {
        match nested(current, name).get(*index) {
            Some(b) => current = b,
            None => return false,
        }
    }
    attribute(current, last).is_some() || !nested(current, last).is_empty()
}

/// For `…containers[N].image`: container block N must be the one deploy sets.
fn check_container_index(body: &Body, field: &str) -> Option<String> {
    let segs = segments(field);
    let at = segs.iter().position(|(name, _)| *name == "containers")?;
    let mut parent = body;
    for (name, index) in &segs[..at] {
        parent = nested(parent, name).get(*index).copied()?;
    }
    let containers = nested(parent, "containers");
    let named = |c: &&Body| attribute(c, "name").and_then(literal_string);
    let picked = containers
        .iter()
        .position(|c| named(c).as_deref() == Some("app"))
        .or_else(|| {
            containers
                .iter()
                .position(|c| !nested(c, "ports").is_empty())
        })
        .unwrap_or(0);
    let index = segs[at].1;
    (index != picked).then(|| {
        format!(
            "{field} is not the container deploy sets (container {picked}: named \"app\", else \
             the one with ports, else the first)"
        )
    })
}

/// The rows of the first table under the heading [`HEADING`]: `| resource | field | owner | … |`
/// with the resource and the field in backticks.
fn table(text: &str) -> Result<Vec<Row>, String> {
    let after = text
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.contains(HEADING)))
        .skip(1);
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in after {
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(resource), Some(field), Some(owner)) = (
            cells.first().and_then(|c| backticked(c)),
            cells.get(1).and_then(|c| backticked(c)),
            cells.get(2),
        ) else {
            continue; // the header and the separator
        };
        let owner = match owner.to_ascii_lowercase().as_str() {
            "deploy" => Owner::Deploy,
            "terraform" => Owner::Terraform,
            "nobody" => Owner::Nobody,
            other => {
                return Err(format!(
                    "the table \"{HEADING}\" gives {resource} {field} the owner {other:?}; \
                     write deploy, Terraform or nobody"
                ));
            }
        };
        rows.push(Row {
            resource: resource.to_owned(),
            field: field.chars().filter(|c| !c.is_whitespace()).collect(),
            owner,
        });
    }
    if rows.is_empty() {
        return Err(format!("has no table under a heading \"{HEADING}\""));
    }
    Ok(rows)
}

/// The text between the first pair of backticks of `cell`.
fn backticked(cell: &str) -> Option<&str> {
    let (_, rest) = cell.split_once('`')?;
    rest.split_once('`').map(|(inside, _)| inside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_read_with_its_owners() {
        let text = "# T\n### Who owns which field\n\nText.\n\n| Resource | Field | Owner | Why |\n|---|---|---|---|\n\
                    | `google_cloud_run_v2_service.this` | `template[0].containers[0].image` (app) | deploy | a |\n\
                    | `google_cloud_run_v2_service.this` | `template[0].revision` | nobody | b |\n\
                    | `google_cloud_run_v2_job.migrate` | `template` | Terraform | c |\n\nAfter.\n| x | y |\n";
        let rows = table(text).expect("a table");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].field, "template[0].containers[0].image");
        assert_eq!(rows[1].owner, Owner::Nobody);
        assert_eq!(rows[2].owner, Owner::Terraform);
        assert!(table("# nothing here\n").is_err());
        assert_eq!(
            segments("template[0].containers[1].image"),
            [("template", 0), ("containers", 1), ("image", 0)]
        );
    }
}
