//! Check 1: every call of a local module passes each of its required variables and nothing it
//! does not declare.

use std::path::Path;

use super::module::{Module, ModuleCache, normalize, tf_files_or_empty};

pub(super) fn check_module_calls(
    dir: &Path,
    module: &Module,
    cache: &mut ModuleCache,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for call in &module.calls {
        let Some(source) = call.source.as_deref() else {
            problems.push(format!(
                "{}: module \"{}\" has no literal source",
                call.file, call.name
            ));
            continue;
        };
        if !(source.starts_with("./") || source.starts_with("../")) {
            continue; // registry or remote module: its interface is not in this tree
        }
        let target = normalize(&dir.join(source));
        if tf_files_or_empty(&target)?.is_empty() {
            problems.push(format!(
                "{}: module \"{}\" has source {source}, which holds no .tf file",
                call.file, call.name
            ));
            continue;
        }
        let callee = cache.get(&target)?;
        for (name, variable) in &callee.variables {
            if !variable.has_default && !call.arguments.contains_key(name) {
                problems.push(format!(
                    "{}: module \"{}\" misses required variable \"{name}\" of {source}",
                    call.file, call.name
                ));
            }
        }
        for name in call.arguments.keys() {
            if !callee.variables.contains_key(name) {
                problems.push(format!(
                    "{}: module \"{}\" passes unknown argument \"{name}\": {source} declares no such variable",
                    call.file, call.name
                ));
            }
        }
    }
    Ok(problems)
}
