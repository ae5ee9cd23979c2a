//! Check 3: every output refers only to things that exist (resource, data, ephemeral, module and
//! the module's output, var, local).

use std::collections::BTreeSet;
use std::path::Path;

use super::module::{Module, ModuleCache, normalize};
use super::references::{Reference, references_in};

pub(super) fn check_outputs(
    dir: &Path,
    module: &Module,
    cache: &mut ModuleCache,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for output in &module.outputs {
        let Some(value) = &output.value else {
            problems.push(format!(
                "{}: output \"{}\" has no value",
                output.file, output.name
            ));
            continue;
        };
        for reference in references_in(value) {
            if let Some(why) = dangling(&reference, dir, module, cache)? {
                problems.push(format!(
                    "{}: output \"{}\" refers to {}, {why}",
                    output.file,
                    output.name,
                    reference.display()
                ));
            }
        }
    }
    Ok(problems)
}

/// Why `reference` does not resolve in `module`, or `None` when it does.
fn dangling(
    reference: &Reference,
    dir: &Path,
    module: &Module,
    cache: &mut ModuleCache,
) -> anyhow::Result<Option<String>> {
    let first = reference.attributes.first().map(String::as_str);
    let second = reference.attributes.get(1).map(String::as_str);
    let pair = |set: &BTreeSet<String>| match (first, second) {
        (Some(a), Some(b)) => set.contains(&format!("{a}.{b}")),
        _ => false,
    };
    let why = match reference.root.as_str() {
        "path" | "terraform" | "each" | "count" | "self" => None,
        "var" => match first {
            Some(name) if module.variables.contains_key(name) => None,
            _ => Some("but no such variable is declared".to_owned()),
        },
        "local" => match first {
            Some(name) if module.locals.contains(name) => None,
            _ => Some("but no such local value is defined".to_owned()),
        },
        "data" => (!pair(&module.data)).then(|| "but no such data source exists".to_owned()),
        "ephemeral" => {
            (!pair(&module.ephemeral)).then(|| "but no such ephemeral resource exists".to_owned())
        }
        "module" => return dangling_module_output(first, second, dir, module, cache),
        resource_type => match first {
            Some(name)
                if module
                    .resources
                    .contains(&format!("{resource_type}.{name}")) =>
            {
                None
            }
            _ => Some("but no such resource exists".to_owned()),
        },
    };
    Ok(why)
}

/// Why `module.<call>.<output>` does not resolve, or `None` when it does.
fn dangling_module_output(
    call: Option<&str>,
    output: Option<&str>,
    dir: &Path,
    module: &Module,
    cache: &mut ModuleCache,
) -> anyhow::Result<Option<String>> {
    let Some(call) = module.calls.iter().find(|c| Some(c.name.as_str()) == call) else {
        return Ok(Some("but no such module is called".to_owned()));
    };
    let (Some(source), Some(output)) = (call.source.as_deref(), output) else {
        return Ok(None);
    };
    let target = normalize(&dir.join(source));
    if !source.starts_with('.') || !target.is_dir() {
        return Ok(None); // remote module, or a bad source already reported by check 1
    }
    let callee = cache.get(&target)?;
    Ok((!callee.outputs.iter().any(|o| o.name == output))
        .then(|| format!("but {source} has no output \"{output}\"")))
}
