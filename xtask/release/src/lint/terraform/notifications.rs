//! Check 10: outside `local` an alert must reach someone. Every environment root passes its
//! stack a non-empty `notification_channels`: a non-empty list, or a variable of the root with no
//! default whose validation requires at least one channel (so `terraform apply` cannot run
//! without them). An empty list means every alert policy fires into the void.

use std::path::Path;

use hcl::Body;
use hcl::expr::{Expression, TraversalOperator};

use super::module::names_with_extension;

/// One problem per environment root whose module calls get no channel.
pub(super) fn check_notification_channels(envs: &Path, root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for env in names_with_extension(envs, "")? {
        let dir = envs.join(&env);
        let shown = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
        let mut bodies = Vec::new();
        for file in ["main.tf", "variables.tf"] {
            let path = dir.join(file);
            if path.is_file() {
                bodies.push(hcl::parse(&std::fs::read_to_string(&path)?)?);
            }
        }
        let mut passed = false;
        for call in bodies.iter().flat_map(|b| blocks(b, "module")) {
            let Some(value) = call
                .body()
                .attributes()
                .find(|a| a.key() == "notification_channels")
                .map(|a| a.expr())
            else {
                continue;
            };
            passed = true;
            if let Some(why) = empty_channels(value, &bodies) {
                problems.push(format!(
                    "{shown}: notification_channels {why}: no alert reaches anyone. Pass \
                     var.notification_channels, a variable with no default and a validation \
                     requiring length(var.notification_channels) >= 1"
                ));
            }
        }
        if !passed {
            problems.push(format!(
                "{shown}: no module call passes notification_channels"
            ));
        }
    }
    Ok(problems)
}

fn blocks<'a>(body: &'a Body, kind: &'a str) -> impl Iterator<Item = &'a hcl::Block> {
    body.blocks().filter(move |b| b.identifier() == kind)
}

/// Why `value` may be an empty list of channels, or `None` when it cannot be.
fn empty_channels(value: &Expression, bodies: &[Body]) -> Option<String> {
    match value {
        Expression::Array(items) if items.is_empty() => Some("is an empty list".to_owned()),
        Expression::Array(_) => None,
        Expression::Traversal(t) => {
            let name = match (&t.expr, t.operators.as_slice()) {
                (Expression::Variable(v), [TraversalOperator::GetAttr(name)])
                    if v.as_str() == "var" =>
                {
                    name.as_str()
                }
                _ => return Some("is not a list or a root variable".to_owned()),
            };
            let Some(variable) = bodies
                .iter()
                .flat_map(|b| blocks(b, "variable"))
                .find(|v| v.labels().first().map(|l| l.as_str()) == Some(name))
            else {
                return Some(format!("names var.{name}, which the root does not declare"));
            };
            if variable.body().attributes().any(|a| a.key() == "default") {
                return Some(format!("comes from var.{name}, which has a default"));
            }
            let required = blocks(variable.body(), "validation").any(|v| {
                v.body().attributes().any(|a| {
                    a.key() == "condition"
                        && hcl::format::to_string(a.expr()).is_ok_and(|c| {
                            c.replace(' ', "").contains(&format!("length(var.{name})>"))
                        })
                })
            });
            (!required).then(|| format!("comes from var.{name}, whose validation allows none"))
        }
        _ => Some("is not a list or a root variable".to_owned()),
    }
}
