//! Static checks of `deploy/terraform` that need no provider download (so `terraform validate`
//! cannot run here):
//!
//! 1. every module call passes each required variable of a local module and nothing it does
//!    not declare;
//! 2. every variable has a type and a description;
//! 3. every output refers only to things that exist (resource, data, ephemeral, module and the
//!    module's output, var, local);
//! 4. nothing grants a primitive role (roles/owner, roles/editor, roles/viewer) or public access
//!    (allUsers, allAuthenticatedUsers);
//! 5. `deploy/environments/<env>.toml` and `deploy/terraform/envs/<env>` name the same project,
//!    regions, service, API, gateway ids and gateway service account;
//! 6. every environment gets its own generated page-token key in Secret Manager (write-only,
//!    never an output), readable by the runtime account and mounted where
//!    `APP__API__PAGE_TOKEN_SECRET_FILE` says; no secret volume takes read access from the
//!    non-root user the app runs as.
//!
//! Each check has a broken fixture under `tests/fixtures/terraform/` that must fail with a clear
//! message; the real tree must pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, ObjectKey, Operation, TraversalOperator};
use hcl::template::{Directive, Element, Template};
use hcl::{Body, Value};
use serde::Deserialize;

const PRIMITIVE_ROLES: [&str; 3] = ["roles/owner", "roles/editor", "roles/viewer"];
const PUBLIC_MEMBERS: [&str; 2] = ["allUsers", "allAuthenticatedUsers"];
const MODULE_META_ARGUMENTS: [&str; 6] = [
    "source",
    "version",
    "providers",
    "count",
    "for_each",
    "depends_on",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent directory")
        .to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/terraform")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// Loading a module: the blocks of every *.tf file of one directory.

#[derive(Debug)]
struct Variable {
    file: String,
    has_type: bool,
    has_description: bool,
    has_default: bool,
}

#[derive(Debug)]
struct ModuleCall {
    file: String,
    name: String,
    source: Option<String>,
    arguments: BTreeMap<String, Expression>,
}

#[derive(Debug)]
struct Output {
    file: String,
    name: String,
    value: Option<Expression>,
}

#[derive(Debug, Default)]
struct Module {
    variables: BTreeMap<String, Variable>,
    outputs: Vec<Output>,
    /// `type.name` of managed resources.
    resources: BTreeSet<String>,
    /// `type.name` of data sources.
    data: BTreeSet<String>,
    /// `type.name` of ephemeral resources.
    ephemeral: BTreeSet<String>,
    locals: BTreeSet<String>,
    calls: Vec<ModuleCall>,
    /// (file, block address, body) of every top-level block, for the IAM scan.
    blocks: Vec<(String, String, Body)>,
    /// (file, body) of every file, for the environment check.
    files: Vec<(String, Body)>,
}

fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    files
}

/// Directories below `root` (itself included) that hold at least one `.tf` file.
fn module_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !tf_files(&dir).is_empty() {
            found.push(dir.clone());
        }
        for entry in fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_dir() && !hidden {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

fn label(block: &hcl::Block, i: usize) -> String {
    block
        .labels()
        .get(i)
        .map(|l| l.as_str().to_owned())
        .unwrap_or_default()
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn literal_string(expr: &Expression) -> Option<String> {
    match expr {
        Expression::String(s) => Some(s.clone()),
        Expression::TemplateExpr(t) => match Template::from_expr(t).ok()?.elements() {
            [Element::Literal(s)] => Some(s.clone()),
            [] => Some(String::new()),
            _ => None,
        },
        _ => None,
    }
}

fn load_module(dir: &Path, root: &Path) -> Module {
    let mut module = Module::default();
    for path in tf_files(dir) {
        let file = relative(&path, root);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{file}: not valid HCL: {e}"));
        for block in body.blocks() {
            let (kind, first, second) = (block.identifier(), label(block, 0), label(block, 1));
            let body = block.body();
            match kind {
                "variable" => {
                    let description = attribute(body, "description").and_then(literal_string);
                    module.variables.insert(
                        first.clone(),
                        Variable {
                            file: file.clone(),
                            has_type: attribute(body, "type").is_some(),
                            has_description: description.is_some_and(|d| !d.trim().is_empty()),
                            has_default: attribute(body, "default").is_some(),
                        },
                    );
                }
                "output" => module.outputs.push(Output {
                    file: file.clone(),
                    name: first.clone(),
                    value: attribute(body, "value").cloned(),
                }),
                "resource" => {
                    module.resources.insert(format!("{first}.{second}"));
                }
                "data" => {
                    module.data.insert(format!("{first}.{second}"));
                }
                "ephemeral" => {
                    module.ephemeral.insert(format!("{first}.{second}"));
                }
                "locals" => module
                    .locals
                    .extend(body.attributes().map(|a| a.key.to_string())),
                "module" => module.calls.push(ModuleCall {
                    file: file.clone(),
                    name: first.clone(),
                    source: attribute(body, "source").and_then(literal_string),
                    arguments: body
                        .attributes()
                        .filter(|a| !MODULE_META_ARGUMENTS.contains(&a.key.as_str()))
                        .map(|a| (a.key.to_string(), a.expr.clone()))
                        .collect(),
                }),
                _ => {}
            }
            let address = [kind.to_owned(), first, second]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            module.blocks.push((file.clone(), address, body.clone()));
        }
        module.files.push((file, body));
    }
    module
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// `a/b/../c` → `a/c` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Check 1: module calls against the called module's variables.

fn check_module_calls(
    dir: &Path,
    module: &Module,
    root: &Path,
    cache: &mut HashMap<PathBuf, Module>,
) -> Vec<String> {
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
        if tf_files_or_empty(&target).is_empty() {
            problems.push(format!(
                "{}: module \"{}\" has source {source}, which holds no .tf file",
                call.file, call.name
            ));
            continue;
        }
        let callee = cache
            .entry(target.clone())
            .or_insert_with(|| load_module(&target, root));
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
    problems
}

fn tf_files_or_empty(dir: &Path) -> Vec<PathBuf> {
    if dir.is_dir() {
        tf_files(dir)
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Check 2: variables are typed and described.

fn check_variables(module: &Module) -> Vec<String> {
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

// ---------------------------------------------------------------------------------------------
// Check 3: outputs refer to things that exist.

/// A reference: the root name and up to two attribute names after it (`module.db.url`).
#[derive(Debug)]
struct Reference {
    root: String,
    attributes: Vec<String>,
}

impl Reference {
    fn display(&self) -> String {
        std::iter::once(self.root.as_str())
            .chain(self.attributes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".")
    }
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

fn check_outputs(
    dir: &Path,
    module: &Module,
    root: &Path,
    cache: &mut HashMap<PathBuf, Module>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for output in &module.outputs {
        let Some(value) = &output.value else {
            problems.push(format!(
                "{}: output \"{}\" has no value",
                output.file, output.name
            ));
            continue;
        };
        let mut found = Vec::new();
        references(value, &mut Vec::new(), &mut found);
        for reference in found {
            if let Some(why) = dangling(&reference, dir, module, root, cache) {
                problems.push(format!(
                    "{}: output \"{}\" refers to {}, {why}",
                    output.file,
                    output.name,
                    reference.display()
                ));
            }
        }
    }
    problems
}

/// Why `reference` does not resolve in `module`, or `None` when it does.
fn dangling(
    reference: &Reference,
    dir: &Path,
    module: &Module,
    root: &Path,
    cache: &mut HashMap<PathBuf, Module>,
) -> Option<String> {
    let first = reference.attributes.first().map(String::as_str);
    let second = reference.attributes.get(1).map(String::as_str);
    let pair = |set: &BTreeSet<String>| match (first, second) {
        (Some(a), Some(b)) => set.contains(&format!("{a}.{b}")),
        _ => false,
    };
    match reference.root.as_str() {
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
        "module" => {
            let Some(call) = module.calls.iter().find(|c| Some(c.name.as_str()) == first) else {
                return Some("but no such module is called".to_owned());
            };
            let (Some(source), Some(output)) = (call.source.as_deref(), second) else {
                return None;
            };
            let target = normalize(&dir.join(source));
            if !source.starts_with('.') || !target.is_dir() {
                return None; // remote module, or a bad source already reported by check 1
            }
            let callee = cache
                .entry(target.clone())
                .or_insert_with(|| load_module(&target, root));
            (!callee.outputs.iter().any(|o| o.name == output))
                .then(|| format!("but {source} has no output \"{output}\""))
        }
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
    }
}

// ---------------------------------------------------------------------------------------------
// Check 4: no primitive roles, no public principals.

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

fn check_iam(module: &Module) -> Vec<String> {
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

// ---------------------------------------------------------------------------------------------
// All module checks over a tree.

fn check_tree(root: &Path) -> Vec<String> {
    let mut cache = HashMap::new();
    let mut problems = Vec::new();
    for dir in module_dirs(root) {
        let module = load_module(&dir, root);
        problems.extend(check_module_calls(&dir, &module, root, &mut cache));
        problems.extend(check_variables(&module));
        problems.extend(check_outputs(&dir, &module, root, &mut cache));
        problems.extend(check_iam(&module));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Check 5: deploy/environments/<env>.toml agrees with deploy/terraform/envs/<env>.

#[derive(Debug, Deserialize)]
struct EnvironmentToml {
    project_id: String,
    api_id: String,
    service: String,
    gateway_service_account: String,
    regions: Vec<RegionToml>,
}

#[derive(Debug, Deserialize)]
struct RegionToml {
    name: String,
    gateway_id: String,
}

/// The arguments of the envs/<env> call of modules/stack that the TOML also names.
#[derive(Debug, Deserialize)]
struct StackCall {
    environment: String,
    project_id: String,
    service_name: String,
    api_id: String,
    gateway_account_id: String,
    regions: BTreeMap<String, StackRegion>,
}

#[derive(Debug, Deserialize)]
struct StackRegion {
    gateway_id: String,
}

fn names_with_extension(dir: &Path, extension: &str) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| match extension {
            "" => p.is_dir(),
            ext => p.extension().is_some_and(|e| e == ext),
        })
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect()
}

fn evaluate(expr: &Expression, what: &str) -> Result<Value, String> {
    expr.evaluate(&Context::new())
        .map_err(|e| format!("{what} is not a literal value: {e}"))
}

fn stack_call(env_dir: &Path, root: &Path) -> Result<(StackCall, Module), String> {
    let module = load_module(env_dir, root);
    let call = module
        .calls
        .iter()
        .find(|c| {
            c.source
                .as_deref()
                .is_some_and(|s| s.ends_with("modules/stack"))
        })
        .ok_or_else(|| "calls no ../../modules/stack module".to_owned())?;
    let mut object = hcl::Map::new();
    for key in [
        "environment",
        "project_id",
        "service_name",
        "api_id",
        "gateway_account_id",
        "regions",
    ] {
        let expr = call
            .arguments
            .get(key)
            .ok_or_else(|| format!("module \"{}\" does not set {key}", call.name))?;
        object.insert(key.to_owned(), evaluate(expr, key)?);
    }
    let parsed = hcl::from_value(Value::Object(object))
        .map_err(|e| format!("module \"{}\": {e}", call.name))?;
    Ok((parsed, module))
}

/// Project ids named by the provider blocks and the GCS backend bucket of an env root.
fn provider_projects_and_bucket(module: &Module) -> (Vec<(String, String)>, Option<String>) {
    let mut projects = Vec::new();
    let mut bucket = None;
    for (_, body) in &module.files {
        for block in body.blocks() {
            match block.identifier() {
                "provider" => {
                    if let Some(p) = attribute(block.body(), "project").and_then(literal_string) {
                        projects.push((label(block, 0), p));
                    }
                }
                "terraform" => {
                    for backend in block
                        .body()
                        .blocks()
                        .filter(|b| b.identifier() == "backend")
                    {
                        bucket = attribute(backend.body(), "bucket").and_then(literal_string);
                    }
                }
                _ => {}
            }
        }
    }
    (projects, bucket)
}

fn check_environments(environments: &Path, envs: &Path, root: &Path) -> Vec<String> {
    let tomls = names_with_extension(environments, "toml");
    let dirs = names_with_extension(envs, "");
    let mut problems = Vec::new();
    for missing in tomls.difference(&dirs) {
        problems.push(format!(
            "{}/{missing}.toml has no Terraform root {}/{missing}",
            relative(environments, root),
            relative(envs, root)
        ));
    }
    for extra in dirs.difference(&tomls) {
        problems.push(format!(
            "{}/{extra} has no {}/{extra}.toml",
            relative(envs, root),
            relative(environments, root)
        ));
    }
    for env in tomls.intersection(&dirs) {
        let toml_path = environments.join(format!("{env}.toml"));
        let toml_name = relative(&toml_path, root);
        let env_dir = envs.join(env);
        let tf_name = relative(&env_dir, root);
        let text = fs::read_to_string(&toml_path).expect("readable environment file");
        let toml: EnvironmentToml = match toml::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{toml_name}: {e}"));
                continue;
            }
        };
        let (stack, module) = match stack_call(&env_dir, root) {
            Ok(found) => found,
            Err(e) => {
                problems.push(format!("{tf_name}: {e}"));
                continue;
            }
        };
        let mut differ = |what: &str, tf: &str, toml_value: &str| {
            if tf != toml_value {
                problems.push(format!(
                    "{tf_name}: {what} is \"{tf}\" but {toml_name} says \"{toml_value}\""
                ));
            }
        };
        differ("environment", &stack.environment, env);
        differ("project_id", &stack.project_id, &toml.project_id);
        differ("service_name", &stack.service_name, &toml.service);
        differ("api_id", &stack.api_id, &toml.api_id);
        let gateway_account = format!(
            "{}@{}.iam.gserviceaccount.com",
            stack.gateway_account_id, stack.project_id
        );
        differ(
            "the gateway service account",
            &gateway_account,
            &toml.gateway_service_account,
        );
        let (projects, bucket) = provider_projects_and_bucket(&module);
        for (provider, project) in projects {
            differ(
                &format!("provider \"{provider}\" project"),
                &project,
                &toml.project_id,
            );
        }
        if let Some(bucket) = bucket {
            differ(
                "the state bucket",
                &bucket,
                &format!("{}-tfstate", toml.project_id),
            );
        }
        let toml_regions: BTreeMap<&str, &str> = toml
            .regions
            .iter()
            .map(|r| (r.name.as_str(), r.gateway_id.as_str()))
            .collect();
        let tf_regions: BTreeMap<&str, &str> = stack
            .regions
            .iter()
            .map(|(name, r)| (name.as_str(), r.gateway_id.as_str()))
            .collect();
        let names = |m: &BTreeMap<&str, &str>| m.keys().copied().collect::<Vec<_>>().join(", ");
        if tf_regions.keys().ne(toml_regions.keys()) {
            differ(
                "the region list",
                &names(&tf_regions),
                &names(&toml_regions),
            );
        }
        for (region, gateway) in &tf_regions {
            if let Some(expected) = toml_regions.get(region) {
                differ(&format!("gateway_id of {region}"), gateway, expected);
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Check 6: the page-token key is generated, kept out of state and mounted in every environment.

/// `type.name` of the resources (or ephemeral resources, data sources) an expression refers to.
fn referenced(expr: &Expression) -> Vec<String> {
    let mut out = Vec::new();
    references(expr, &mut Vec::new(), &mut out);
    out.into_iter()
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

fn refers_to(expr: Option<&Expression>, address: &str) -> bool {
    expr.is_some_and(|e| {
        referenced(e)
            .iter()
            .any(|r| r == address || r.starts_with(&format!("{address}.")))
    })
}

/// The blocks named `kind` (e.g. `resource.google_secret_manager_secret`) with their name.
fn blocks_of<'a>(module: &'a Module, kind: &str) -> Vec<(&'a str, &'a Body)> {
    module
        .blocks
        .iter()
        .filter_map(|(_, address, body)| {
            let name = address.strip_prefix(kind)?.strip_prefix('.')?;
            Some((name, body))
        })
        .collect()
}

fn nested<'a>(body: &'a Body, identifier: &str) -> Vec<&'a Body> {
    body.blocks()
        .filter(|b| b.identifier() == identifier)
        .map(hcl::Block::body)
        .collect()
}

/// The module's string locals, for evaluating paths such as `"${local.dir}/${local.file}"`.
fn string_locals(module: &Module) -> Context<'static> {
    let mut locals = hcl::Map::new();
    for (_, body) in &module.files {
        for block in body.blocks().filter(|b| b.identifier() == "locals") {
            for attribute in block.body().attributes() {
                if let Some(value) = literal_string(&attribute.expr) {
                    locals.insert(attribute.key.to_string(), Value::String(value));
                }
            }
        }
    }
    let mut context = Context::new();
    context.declare_var("local", Value::Object(locals));
    context
}

/// The value expression of `key` in any object literal of the module's locals.
fn find_in_locals<'a>(module: &'a Module, key: &str) -> Option<&'a Expression> {
    fn walk<'a>(expr: &'a Expression, key: &str) -> Option<&'a Expression> {
        match expr {
            Expression::Object(object) => object.iter().find_map(|(k, v)| {
                let matches = match k {
                    ObjectKey::Identifier(id) => id.as_str() == key,
                    ObjectKey::Expression(e) => literal_string(e).is_some_and(|s| s == key),
                    _ => false,
                };
                if matches { Some(v) } else { walk(v, key) }
            }),
            Expression::FuncCall(call) => call.args.iter().find_map(|a| walk(a, key)),
            Expression::Conditional(c) => {
                walk(&c.true_expr, key).or_else(|| walk(&c.false_expr, key))
            }
            Expression::Parenthesis(inner) => walk(inner, key),
            _ => None,
        }
    }
    module
        .files
        .iter()
        .flat_map(|(_, body)| body.blocks().filter(|b| b.identifier() == "locals"))
        .flat_map(|b| b.body().attributes())
        .find_map(|a| walk(&a.expr, key))
}

fn eval_string(expr: &Expression, context: &Context) -> Option<String> {
    expr.evaluate(context).ok()?.as_str().map(str::to_owned)
}

/// What the Cloud Run module must do with the page-token key; `what` names the module.
fn check_page_token_key(module: &Module, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let secrets: Vec<&str> = blocks_of(module, "resource.google_secret_manager_secret")
        .into_iter()
        .filter(|(_, body)| {
            attribute(body, "secret_id")
                .and_then(|e| match e {
                    Expression::TemplateExpr(t) => Some(t.to_string()),
                    other => literal_string(other),
                })
                .is_some_and(|id| id.contains("page-token"))
        })
        .map(|(name, _)| name)
        .collect();
    let [secret] = secrets[..] else {
        return vec![format!(
            "{what}: expected one google_secret_manager_secret whose secret_id names \"page-token\", found {}",
            secrets.len()
        )];
    };
    let secret_address = format!("google_secret_manager_secret.{secret}");

    // A version whose data is generated during apply and written write-only.
    let versions: Vec<&Body> = blocks_of(module, "resource.google_secret_manager_secret_version")
        .into_iter()
        .filter(|(_, body)| refers_to(attribute(body, "secret"), &secret_address))
        .map(|(_, body)| body)
        .collect();
    if versions.is_empty() {
        problems.push(format!(
            "{what}: {secret_address} has no google_secret_manager_secret_version"
        ));
    }
    for version in &versions {
        if attribute(version, "secret_data").is_some() {
            problems.push(format!(
                "{what}: the page-token key version sets secret_data, which Terraform keeps in its state; use secret_data_wo"
            ));
        }
        let generated = attribute(version, "secret_data_wo").is_some_and(|e| {
            referenced(e).iter().any(|r| {
                r.starts_with("ephemeral.random_password.")
                    || r.starts_with("ephemeral.random_bytes.")
            })
        });
        if !generated {
            problems.push(format!(
                "{what}: the page-token key version must take secret_data_wo from an ephemeral random_password or random_bytes"
            ));
        }
    }

    // The runtime account (the one the service runs as) may read it.
    let services = blocks_of(module, "resource.google_cloud_run_v2_service");
    let [(_, service)] = services[..] else {
        problems.push(format!("{what}: expected one google_cloud_run_v2_service"));
        return problems;
    };
    let Some(template) = nested(service, "template").into_iter().next() else {
        problems.push(format!("{what}: the Cloud Run service has no template"));
        return problems;
    };
    let runtime = attribute(template, "service_account")
        .map(referenced)
        .and_then(|r| {
            r.into_iter()
                .find(|r| r.starts_with("google_service_account."))
        });
    let readable = blocks_of(module, "resource.google_secret_manager_secret_iam_member")
        .into_iter()
        .any(|(_, body)| {
            refers_to(attribute(body, "secret_id"), &secret_address)
                && attribute(body, "role").and_then(literal_string).as_deref()
                    == Some("roles/secretmanager.secretAccessor")
                && runtime
                    .as_deref()
                    .is_some_and(|account| refers_to(attribute(body, "member"), account))
        });
    if !readable {
        problems.push(format!(
            "{what}: the runtime service account has no roles/secretmanager.secretAccessor on {secret_address}"
        ));
    }

    // Mounted into the app container, "latest" at the path the service is told to read.
    let context = string_locals(module);
    let volume = nested(template, "volumes").into_iter().find_map(|volume| {
        let secret_block = nested(volume, "secret").into_iter().next()?;
        if !refers_to(attribute(secret_block, "secret"), &secret_address) {
            return None;
        }
        let name = attribute(volume, "name").and_then(literal_string)?;
        let latest = nested(secret_block, "items").into_iter().find_map(|item| {
            (attribute(item, "version")
                .and_then(literal_string)
                .as_deref()
                == Some("latest"))
            .then(|| attribute(item, "path").and_then(|p| eval_string(p, &context)))
            .flatten()
        })?;
        Some((name, latest))
    });
    let Some((volume, file)) = volume else {
        problems.push(format!(
            "{what}: no volume of the Cloud Run service mounts \"latest\" of {secret_address}"
        ));
        return problems;
    };
    let containers = nested(template, "containers");
    let app = containers
        .iter()
        .find(|c| attribute(c, "name").and_then(literal_string).as_deref() == Some("app"))
        .or(containers.first());
    let mount = app.and_then(|app| {
        nested(app, "volume_mounts").into_iter().find_map(|m| {
            (attribute(m, "name").and_then(literal_string).as_deref() == Some(volume.as_str()))
                .then(|| attribute(m, "mount_path").and_then(|p| eval_string(p, &context)))
                .flatten()
        })
    });
    let Some(mount) = mount else {
        problems.push(format!(
            "{what}: the app container does not mount volume \"{volume}\" (the page-token key)"
        ));
        return problems;
    };
    let expected = format!("{}/{file}", mount.trim_end_matches('/'));
    match find_in_locals(module, "APP__API__PAGE_TOKEN_SECRET_FILE")
        .and_then(|e| eval_string(e, &context))
    {
        Some(path) if path == expected => {}
        Some(path) => problems.push(format!(
            "{what}: APP__API__PAGE_TOKEN_SECRET_FILE is \"{path}\" but the key is mounted at \"{expected}\""
        )),
        None => problems.push(format!(
            "{what}: no APP__API__PAGE_TOKEN_SECRET_FILE (a string) in the app's environment; the key is mounted at \"{expected}\""
        )),
    }
    problems
}

/// No output of `module` exposes a secret version or an ephemeral value.
fn check_no_secret_outputs(module: &Module, what: &str) -> Vec<String> {
    module
        .outputs
        .iter()
        .filter(|o| {
            o.value.as_ref().is_some_and(|v| {
                referenced(v).iter().any(|r| {
                    r.starts_with("google_secret_manager_secret_version.")
                        || r.starts_with("ephemeral.")
                })
            })
        })
        .map(|o| format!("{what}: output \"{}\" exposes a secret value", o.name))
        .collect()
}

/// Secret volumes are owned by root (Cloud Run's second generation and every multi-container
/// service) while the app runs as 65532 (`docker/Dockerfile`, `xtask image`), so a mode without
/// read for others (0400, 0440) makes the file unreadable: Cloud Run's default 0444 must stay.
fn check_secret_modes(module: &Module, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, service) in blocks_of(module, "resource.google_cloud_run_v2_service") {
        for template in nested(service, "template") {
            for volume in nested(template, "volumes") {
                let volume_name = attribute(volume, "name")
                    .and_then(literal_string)
                    .unwrap_or_default();
                for secret in nested(volume, "secret") {
                    let mut modes = vec![("default_mode", attribute(secret, "default_mode"))];
                    modes.extend(
                        nested(secret, "items")
                            .into_iter()
                            .map(|i| ("mode", attribute(i, "mode"))),
                    );
                    for (key, mode) in modes {
                        let Some(mode) = mode else { continue };
                        let readable = evaluate(mode, key)
                            .ok()
                            .and_then(|v| v.as_u64())
                            .is_some_and(|m| m & 0o004 != 0);
                        if !readable {
                            problems.push(format!(
                                "{what}: {name} volume \"{volume_name}\" sets {key} without read for others; the app (uid 65532) cannot read a root-owned secret file"
                            ));
                        }
                    }
                }
            }
        }
    }
    problems
}

/// Follows envs/<env> → modules/stack → modules/cloudrun and checks the page-token key there.
fn check_page_token_environments(envs: &Path, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let call_of = |module: &Module, dir: &Path, suffix: &str| -> Option<PathBuf> {
        module
            .calls
            .iter()
            .find(|c| c.source.as_deref().is_some_and(|s| s.ends_with(suffix)))
            .and_then(|c| c.source.as_deref())
            .map(|source| normalize(&dir.join(source)))
    };
    for env in names_with_extension(envs, "") {
        let env_dir = envs.join(&env);
        let env_module = load_module(&env_dir, root);
        let Some(stack_dir) = call_of(&env_module, &env_dir, "modules/stack") else {
            problems.push(format!("envs/{env}: calls no modules/stack"));
            continue;
        };
        let stack = load_module(&stack_dir, root);
        let Some(cloudrun_dir) = call_of(&stack, &stack_dir, "cloudrun") else {
            problems.push(format!("envs/{env}: its stack calls no cloudrun module"));
            continue;
        };
        let cloudrun = load_module(&cloudrun_dir, root);
        let what = format!("envs/{env} ({})", relative(&cloudrun_dir, root));
        problems.extend(check_page_token_key(&cloudrun, &what));
        problems.extend(check_secret_modes(&cloudrun, &what));
        for (module, name) in [
            (&env_module, "envs"),
            (&stack, "stack"),
            (&cloudrun, "cloudrun"),
        ] {
            problems.extend(check_no_secret_outputs(
                module,
                &format!("envs/{env} ({name})"),
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Tests: the real tree passes, every broken fixture fails with its message.

fn assert_clean(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "deploy/terraform has problems:\n  {}",
        problems.join("\n  ")
    );
}

/// The fixture fails, and only for the expected reason.
fn assert_fails_with(problems: &[String], fixture: &str, expected: &str) {
    assert!(
        !problems.is_empty(),
        "{fixture}the broken fixture passed; expected a problem containing {expected:?}"
    );
    assert!(
        problems.iter().all(|p| p.contains(expected)),
        "{fixture}expected only problems containing {expected:?}, got:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn real_terraform_tree_passes_the_module_checks() {
    let root = repo_root();
    let problems = check_tree(&root.join("deploy/terraform"));
    assert_clean(&problems);
}

#[test]
fn real_environments_agree_with_terraform_envs() {
    let root = repo_root();
    let problems = check_environments(
        &root.join("deploy/environments"),
        &root.join("deploy/terraform/envs"),
        &root,
    );
    assert_clean(&problems);
}

#[test]
fn real_tree_has_every_module_and_environment() {
    let terraform = repo_root().join("deploy/terraform");
    for dir in [
        "modules/network",
        "modules/cloudsql",
        "modules/cloudrun",
        "modules/apigateway",
        "modules/monitoring",
        "modules/deployer",
        "modules/stack",
        "envs/dev",
        "envs/stage",
        "envs/prod",
        "bootstrap",
    ] {
        let dir = terraform.join(dir);
        assert!(
            !tf_files_or_empty(&dir).is_empty(),
            "{} has no .tf file",
            dir.display()
        );
        if dir.starts_with(terraform.join("modules")) {
            assert!(
                dir.join("README.md").is_file(),
                "{} has no README.md with its inputs and outputs",
                dir.display()
            );
        }
    }
}

/// Each environment root keeps its state in GCS and pins exact provider versions.
#[test]
fn environment_roots_pin_providers_and_use_a_gcs_backend() {
    let root = repo_root();
    for env in ["dev", "stage", "prod"] {
        let module = load_module(&root.join("deploy/terraform/envs").join(env), &root);
        let terraform: Vec<&hcl::Block> = module
            .files
            .iter()
            .flat_map(|(_, body)| body.blocks())
            .filter(|b| b.identifier() == "terraform")
            .collect();
        let backend = terraform
            .iter()
            .flat_map(|t| t.body().blocks())
            .find(|b| b.identifier() == "backend");
        assert_eq!(
            backend.map(|b| label(b, 0)).as_deref(),
            Some("gcs"),
            "envs/{env} has no backend \"gcs\""
        );
        let providers = terraform
            .iter()
            .flat_map(|t| t.body().blocks())
            .find(|b| b.identifier() == "required_providers")
            .unwrap_or_else(|| panic!("envs/{env} has no required_providers"));
        for name in ["google", "google-beta"] {
            let version = attribute(providers.body(), name)
                .and_then(|e| evaluate(e, name).ok())
                .and_then(|v| v.as_object()?.get("version")?.as_str().map(str::to_owned));
            assert!(
                version
                    .as_deref()
                    .is_some_and(|v| v.split('.').count() == 3
                        && v.split('.').all(|n| n.parse::<u32>().is_ok())),
                "envs/{env} must pin {name} to an exact version, found {version:?}"
            );
        }
    }
}

#[test]
fn broken_variable_and_module_call_fixtures_fail() {
    for (name, expected) in [
        (
            "missing_variable",
            "misses required variable \"tier\" of ../shared_db",
        ),
        ("unknown_argument", "passes unknown argument \"tire\""),
        ("untyped_variable", "variable \"region\" has no type"),
        (
            "undescribed_variable",
            "variable \"region\" has no description",
        ),
    ] {
        let problems = check_tree(&fixture(name));
        assert_fails_with(&problems, &format!("{name}: "), expected);
    }
}

#[test]
fn dangling_output_references_fail() {
    let problems = check_tree(&fixture("dangling_output"));
    assert_eq!(problems.len(), 6, "{problems:#?}");
    for expected in [
        "refers to var.regon, but no such variable is declared",
        "refers to local.nmae, but no such local value is defined",
        "refers to google_sql_database_instance.missing.connection_name, but no such resource exists",
        "refers to data.google_project.missing, but no such data source exists",
        "refers to module.nothing.url, but no such module is called",
        "refers to module.child.nope, but ./child has no output \"nope\"",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "no problem contains {expected:?}: {problems:#?}"
        );
    }
}

#[test]
fn primitive_role_fails() {
    let problems = check_tree(&fixture("primitive_role"));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_fails_with(&problems, "", "grants the primitive role \"roles/");
}

#[test]
fn public_invoker_fails() {
    let problems = check_tree(&fixture("public_invoker"));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_fails_with(&problems, "", "nothing may be public");
}

#[test]
fn environment_mismatch_fails() {
    let root = fixture("env_mismatch");
    let problems = check_environments(
        &root.join("environments"),
        &root.join("terraform/envs"),
        &root,
    );
    let expected = [
        "terraform/envs/dev: project_id is \"items-dev-0000\" but environments/dev.toml says \"items-dev-4821\"",
        "terraform/envs/dev: gateway_id of us-central1 is \"items-dev-us\" but environments/dev.toml says \"items-dev-usc1\"",
        "terraform/envs/dev: the region list is \"europe-west1, us-central1\" but environments/dev.toml says \"europe-west1, us-central1, us-east1\"",
        "terraform/envs/dev: the gateway service account is \"items-gw@items-dev-0000.iam.gserviceaccount.com\" but environments/dev.toml says \"items-gateway@items-dev-4821.iam.gserviceaccount.com\"",
        "environments/stage.toml has no Terraform root terraform/envs/stage",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p == e),
            "missing problem {e:?} in {problems:#?}"
        );
    }
}

#[test]
fn every_environment_generates_and_mounts_its_page_token_key() {
    let root = repo_root();
    let envs = root.join("deploy/terraform/envs");
    assert_eq!(
        names_with_extension(&envs, ""),
        ["dev", "prod", "stage"].map(String::from).into(),
    );
    assert_clean(&check_page_token_environments(&envs, &root));
}
