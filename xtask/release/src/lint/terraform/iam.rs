//! Check 4: nothing grants a primitive role (roles/owner, roles/editor, roles/viewer) or public
//! access (allUsers, allAuthenticatedUsers).

use hcl::Body;
use hcl::expr::{Expression, ObjectKey};

use super::module::{Module, literal_string};

const PRIMITIVE_ROLES: [&str; 3] = ["roles/owner", "roles/editor", "roles/viewer"];
const PUBLIC_MEMBERS: [&str; 2] = ["allUsers", "allAuthenticatedUsers"];

pub(super) fn check_iam(module: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, address, body) in &module.blocks {
        let mut strings = Vec::new();
        strings_in_body(body, &mut strings);
        for s in strings {
            if PRIMITIVE_ROLES.contains(&s.as_str()) {
                problems.push(format!(
                    "{file}: {address} grants the primitive role \"{s}\"; use a predefined or custom role"
                ));
            }
            if PUBLIC_MEMBERS.contains(&s.as_str()) {
                problems.push(format!(
                    "{file}: {address} grants access to \"{s}\"; nothing may be public"
                ));
            }
        }
    }
    problems
}

fn strings_in_body(body: &Body, out: &mut Vec<String>) {
    for attribute in body.attributes() {
        strings_in_expression(&attribute.expr, out);
    }
    for block in body.blocks() {
        strings_in_body(block.body(), out);
    }
}

fn strings_in_expression(expr: &Expression, out: &mut Vec<String>) {
    match expr {
        Expression::String(_) | Expression::TemplateExpr(_) => out.extend(literal_string(expr)),
        Expression::Array(items) => items.iter().for_each(|e| strings_in_expression(e, out)),
        Expression::Object(object) => {
            for (key, value) in object {
                if let ObjectKey::Expression(key) = key {
                    strings_in_expression(key, out);
                }
                strings_in_expression(value, out);
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|e| strings_in_expression(e, out)),
        Expression::Parenthesis(inner) => strings_in_expression(inner, out),
        Expression::Conditional(c) => {
            strings_in_expression(&c.true_expr, out);
            strings_in_expression(&c.false_expr, out);
        }
        Expression::ForExpr(f) => {
            strings_in_expression(&f.collection_expr, out);
            strings_in_expression(&f.value_expr, out);
        }
        _ => {}
    }
}
