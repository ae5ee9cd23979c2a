//! What an HCL expression refers to: `var.x`, `local.y`, `module.db.url`, `google_x.name.attr`,
//! with the names a `for` binds left out.

use hcl::expr::{Expression, ObjectKey, Operation, TraversalOperator};
use hcl::template::{Directive, Element, Template};

/// A reference: the root name and up to two attribute names after it (`module.db.url`).
#[derive(Debug)]
pub(super) struct Reference {
    pub(super) root: String,
    pub(super) attributes: Vec<String>,
}

impl Reference {
    pub(super) fn display(&self) -> String {
        std::iter::once(self.root.as_str())
            .chain(self.attributes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Every reference in `expr`.
pub(super) fn references_in(expr: &Expression) -> Vec<Reference> {
    let mut out = Vec::new();
    references(expr, &mut Vec::new(), &mut out);
    out
}

/// `type.name` of the resources (or ephemeral resources, data sources) an expression refers to.
pub(super) fn referenced(expr: &Expression) -> Vec<String> {
    references_in(expr)
        .into_iter()
        .map(|r| match r.root.as_str() {
            "ephemeral" | "data" | "local" | "var" | "module" => std::iter::once(r.root.clone())
                .chain(r.attributes.iter().take(2).cloned())
                .collect::<Vec<_>>()
                .join("."),
            _ => format!(
                "{}.{}",
                r.root,
                r.attributes.first().cloned().unwrap_or_default()
            ),
        })
        .collect()
}

/// `expr` refers to `address` or to an attribute of it.
pub(super) fn refers_to(expr: Option<&Expression>, address: &str) -> bool {
    expr.is_some_and(|e| {
        referenced(e)
            .iter()
            .any(|r| r == address || r.starts_with(&format!("{address}.")))
    })
}

fn references(expr: &Expression, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
    match expr {
        Expression::Variable(v) => push_reference(v.as_str(), &[], bound, out),
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                let attributes: Vec<String> = t
                    .operators
                    .iter()
                    .map_while(|op| match op {
                        TraversalOperator::GetAttr(name) => Some(name.to_string()),
                        _ => None,
                    })
                    .take(2)
                    .collect();
                push_reference(v.as_str(), &attributes, bound, out);
            } else {
                references(&t.expr, bound, out);
            }
            for op in &t.operators {
                if let TraversalOperator::Index(index) = op {
                    references(index, bound, out);
                }
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| references(e, bound, out)),
        Expression::Object(object) => {
            for (key, value) in object {
                if let ObjectKey::Expression(key) = key {
                    references(key, bound, out);
                }
                references(value, bound, out);
            }
        }
        Expression::TemplateExpr(t) => {
            if let Ok(template) = Template::from_expr(t) {
                template_references(&template, bound, out);
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|e| references(e, bound, out)),
        Expression::Parenthesis(inner) => references(inner, bound, out),
        Expression::Conditional(c) => {
            references(&c.cond_expr, bound, out);
            references(&c.true_expr, bound, out);
            references(&c.false_expr, bound, out);
        }
        Expression::Operation(op) => match op.as_ref() {
            Operation::Unary(u) => references(&u.expr, bound, out),
            Operation::Binary(b) => {
                references(&b.lhs_expr, bound, out);
                references(&b.rhs_expr, bound, out);
            }
        },
        Expression::ForExpr(f) => {
            references(&f.collection_expr, bound, out);
            let depth = bound.len();
            bound.extend(f.key_var.iter().map(|k| k.to_string()));
            bound.push(f.value_var.to_string());
            for e in [&f.key_expr, &f.cond_expr].into_iter().flatten() {
                references(e, bound, out);
            }
            references(&f.value_expr, bound, out);
            bound.truncate(depth);
        }
        _ => {}
    }
}

fn template_references(template: &Template, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
    for element in template.elements() {
        match element {
            Element::Literal(_) => {}
            Element::Interpolation(i) => references(&i.expr, bound, out),
            Element::Directive(d) => match d.as_ref() {
                Directive::If(d) => {
                    references(&d.cond_expr, bound, out);
                    template_references(&d.true_template, bound, out);
                    if let Some(t) = &d.false_template {
                        template_references(t, bound, out);
                    }
                }
                Directive::For(d) => {
                    references(&d.collection_expr, bound, out);
                    let depth = bound.len();
                    bound.extend(d.key_var.iter().map(|k| k.to_string()));
                    bound.push(d.value_var.to_string());
                    template_references(&d.template, bound, out);
                    bound.truncate(depth);
                }
            },
        }
    }
}

fn push_reference(root: &str, attributes: &[String], bound: &[String], out: &mut Vec<Reference>) {
    if !bound.iter().any(|b| b == root) {
        out.push(Reference {
            root: root.to_owned(),
            attributes: attributes.to_vec(),
        });
    }
}
