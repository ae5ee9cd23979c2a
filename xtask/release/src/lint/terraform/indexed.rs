//! Check 12: a resource, data source or module call with `count` or `for_each` is a list or a
//! map of instances, so `module.db.url` on one fails `terraform validate` ("Because module.db has
//! "count" set, its attributes must be accessed on specific instances"), which cannot run here.
//! Every reference to such a block's attribute names one instance (`module.db[0].url`,
//! `google_x.y["k"].id`) or goes through a `for`/`splat` (`google_x.y[*].id`).
//!
//! Text-based: each `.tf` file with its comments removed, searched for `<address>.<attribute>`.

use std::path::Path;

use anyhow::Context as _;
use hcl::Body;
use regex::Regex;

use super::module::Module;

/// One line per reference to an attribute of a counted block without an instance.
pub(super) fn check_indexed(
    dir: &Path,
    module: &Module,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let counted: Vec<String> = module
        .blocks
        .iter()
        .filter(|(_, _, body)| has_count(body))
        .filter_map(|(_, address, _)| reference_prefix(address))
        .collect();
    if counted.is_empty() {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let code = without_comments(&text);
        let file = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for prefix in &counted {
            let pattern = Regex::new(&format!(
                r"(^|[^\w.]){}\.([A-Za-z_][\w-]*)",
                regex::escape(prefix)
            ))?;
            for m in pattern.captures_iter(&code) {
                problems.push(format!(
                    "{file}: {prefix} has count or for_each, so `{prefix}.{}` must name one instance \
                     ({prefix}[0].{} or {prefix}[\"key\"].{}; terraform validate refuses it)",
                    &m[2], &m[2], &m[2]
                ));
            }
        }
    }
    Ok(problems)
}

fn has_count(body: &Body) -> bool {
    body.attributes()
        .any(|a| a.key.as_str() == "count" || a.key.as_str() == "for_each")
}

/// How an expression names the block at `address` (`resource.t.n` → `t.n`, `data.t.n`,
/// `module.n`); none for blocks that cannot be referenced.
fn reference_prefix(address: &str) -> Option<String> {
    let (kind, rest) = address.split_once('.')?;
    match kind {
        "resource" => Some(rest.to_owned()),
        "data" | "module" | "ephemeral" => Some(address.to_owned()),
        _ => None,
    }
}

/// `text` with `#` and `//` comments blanked (not inside strings), lines kept.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            match c {
                '"' if prev != '\\' => in_string = !in_string,
                '#' if !in_string => {
                    cut = i;
                    break;
                }
                '/' if !in_string && prev == '/' => {
                    cut = i - 1;
                    break;
                }
                _ => {}
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}
