//! Check 2: every variable has a type and a description.

use super::module::Module;

pub(super) fn check_variables(module: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, variable) in &module.variables {
        if !variable.has_type {
            problems.push(format!(
                "{}: variable \"{name}\" has no type",
                variable.file
            ));
        }
        if !variable.has_description {
            problems.push(format!(
                "{}: variable \"{name}\" has no description",
                variable.file
            ));
        }
    }
    problems
}
