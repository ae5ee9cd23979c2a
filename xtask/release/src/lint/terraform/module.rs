//! Loading a Terraform module: the blocks of every `*.tf` file of one directory, with the HCL
//! helpers the checks share.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, ObjectKey};
use hcl::template::{Element, Template};
use hcl::{Body, Value};

/// Arguments of a `module` block that are Terraform's, not the called module's variables.
const MODULE_META_ARGUMENTS: [&str; 6] = [
    "source",
    "version",
    "providers",
    "count",
    "for_each",
    "depends_on",
];

#[derive(Debug)]
pub(super) struct Variable {
    pub(super) file: String,
    pub(super) has_type: bool,
    pub(super) has_description: bool,
    pub(super) has_default: bool,
}

#[derive(Debug)]
pub(super) struct ModuleCall {
    pub(super) file: String,
    pub(super) name: String,
    pub(super) source: Option<String>,
    pub(super) arguments: BTreeMap<String, Expression>,
}

#[derive(Debug)]
pub(super) struct Output {
    pub(super) file: String,
    pub(super) name: String,
    pub(super) value: Option<Expression>,
}

#[derive(Debug, Default)]
pub(super) struct Module {
    pub(super) variables: BTreeMap<String, Variable>,
    pub(super) outputs: Vec<Output>,
    /// `type.name` of managed resources.
    pub(super) resources: BTreeSet<String>,
    /// `type.name` of data sources.
    pub(super) data: BTreeSet<String>,
    /// `type.name` of ephemeral resources.
    pub(super) ephemeral: BTreeSet<String>,
    pub(super) locals: BTreeSet<String>,
    pub(super) calls: Vec<ModuleCall>,
    /// (file, block address, body) of every top-level block, for the IAM scan.
    pub(super) blocks: Vec<(String, String, Body)>,
    /// (file, body) of every file, for the environment check.
    pub(super) files: Vec<(String, Body)>,
}

impl Module {
    /// The blocks of `dir`'s `.tf` files; `root` is what file names in messages are relative to.
    pub(super) fn load(dir: &Path, root: &Path) -> anyhow::Result<Self> {
        let mut module = Module::default();
        for path in tf_files(dir)? {
            let file = relative(&path, root);
            let text = fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
            let body = hcl::parse(&text).with_context(|| format!("{file}: not valid HCL"))?;
            for block in body.blocks() {
                module.add_block(&file, block);
            }
            module.files.push((file, body));
        }
        Ok(module)
    }

    fn add_block(&mut self, file: &str, block: &hcl::Block) {
        let (kind, first, second) = (block.identifier(), label(block, 0), label(block, 1));
        let body = block.body();
        match kind {
            "variable" => {
                let description = attribute(body, "description").and_then(literal_string);
                let variable = Variable {
                    file: file.to_owned(),
                    has_type: attribute(body, "type").is_some(),
                    has_description: description.is_some_and(|d| !d.trim().is_empty()),
                    has_default: attribute(body, "default").is_some(),
                };
                self.variables.insert(first.clone(), variable);
            }
            "output" => self.outputs.push(Output {
                file: file.to_owned(),
                name: first.clone(),
                value: attribute(body, "value").cloned(),
            }),
            "resource" => {
                self.resources.insert(format!("{first}.{second}"));
            }
            "data" => {
                self.data.insert(format!("{first}.{second}"));
            }
            "ephemeral" => {
                self.ephemeral.insert(format!("{first}.{second}"));
            }
            "locals" => self
                .locals
                .extend(body.attributes().map(|a| a.key.to_string())),
            "module" => self.calls.push(ModuleCall {
                file: file.to_owned(),
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
        self.blocks.push((file.to_owned(), address, body.clone()));
    }

    /// The blocks named `kind` (e.g. `resource.google_secret_manager_secret`) with their name.
    pub(super) fn blocks_of(&self, kind: &str) -> Vec<(&str, &Body)> {
        self.blocks
            .iter()
            .filter_map(|(_, address, body)| {
                let name = address.strip_prefix(kind)?.strip_prefix('.')?;
                Some((name, body))
            })
            .collect()
    }

    /// The directory of the first call whose source ends with `suffix`, resolved against `dir`.
    pub(super) fn called_dir(&self, dir: &Path, suffix: &str) -> Option<PathBuf> {
        self.calls
            .iter()
            .find(|c| c.source.as_deref().is_some_and(|s| s.ends_with(suffix)))
            .and_then(|c| c.source.as_deref())
            .map(|source| normalize(&dir.join(source)))
    }
}

/// One environment root followed to the Cloud Run module it deploys: envs/<env> → modules/stack
/// → the stack's cloudrun module.
#[derive(Debug)]
pub(super) struct EnvironmentStack {
    pub(super) env: String,
    pub(super) env_module: Module,
    pub(super) stack: Module,
    pub(super) cloudrun: Module,
    /// How messages name the Cloud Run module, e.g. `envs/dev (deploy/terraform/modules/cloudrun)`.
    pub(super) cloudrun_name: String,
}

/// Every environment root below `envs` followed to its Cloud Run module, and one problem for
/// each root whose chain breaks (no call of modules/stack, or a stack without cloudrun).
pub(super) fn environment_stacks(
    envs: &Path,
    root: &Path,
) -> anyhow::Result<(Vec<EnvironmentStack>, Vec<String>)> {
    let mut stacks = Vec::new();
    let mut problems = Vec::new();
    for env in names_with_extension(envs, "")? {
        let env_dir = envs.join(&env);
        let env_module = Module::load(&env_dir, root)?;
        let Some(stack_dir) = env_module.called_dir(&env_dir, "modules/stack") else {
            problems.push(format!("envs/{env}: calls no modules/stack"));
            continue;
        };
        let stack = Module::load(&stack_dir, root)?;
        let Some(cloudrun_dir) = stack.called_dir(&stack_dir, "cloudrun") else {
            problems.push(format!("envs/{env}: its stack calls no cloudrun module"));
            continue;
        };
        let cloudrun = Module::load(&cloudrun_dir, root)?;
        let cloudrun_name = format!("envs/{env} ({})", relative(&cloudrun_dir, root));
        stacks.push(EnvironmentStack {
            env,
            env_module,
            stack,
            cloudrun,
            cloudrun_name,
        });
    }
    Ok((stacks, problems))
}

/// The called modules of one tree, each loaded once however many calls name it.
#[derive(Debug)]
pub(super) struct ModuleCache {
    /// What file names in messages are relative to.
    root: PathBuf,
    modules: HashMap<PathBuf, Module>,
}

impl ModuleCache {
    pub(super) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            modules: HashMap::new(),
        }
    }

    pub(super) fn get(&mut self, dir: &Path) -> anyhow::Result<&Module> {
        let module = match self.modules.entry(dir.to_path_buf()) {
            std::collections::hash_map::Entry::Occupied(found) => found.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Module::load(dir, &self.root)?)
            }
        };
        Ok(module)
    }
}

pub(super) fn tf_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry.context("directory entry")?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "tf") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The `.tf` files of `dir`, none when it is not a directory.
pub(super) fn tf_files_or_empty(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.is_dir() {
        tf_files(dir)
    } else {
        Ok(Vec::new())
    }
}

/// Directories below `root` (itself included) that hold at least one `.tf` file.
pub(super) fn module_dirs(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !tf_files(&dir)?.is_empty() {
            found.push(dir.clone());
        }
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry.context("directory entry")?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_dir() && !hidden {
                stack.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Subdirectory names (`extension` empty) or file stems with `extension` in `dir`.
pub(super) fn names_with_extension(
    dir: &Path,
    extension: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry.context("directory entry")?.path();
        let wanted = match extension {
            "" => path.is_dir(),
            ext => path.extension().is_some_and(|e| e == ext),
        };
        if wanted && let Some(stem) = path.file_stem() {
            names.insert(stem.to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

pub(super) fn label(block: &hcl::Block, i: usize) -> String {
    block
        .labels()
        .get(i)
        .map(|l| l.as_str().to_owned())
        .unwrap_or_default()
}

pub(super) fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

/// The nested blocks named `identifier` of `body`.
pub(super) fn nested<'a>(body: &'a Body, identifier: &str) -> Vec<&'a Body> {
    body.blocks()
        .filter(|b| b.identifier() == identifier)
        .map(hcl::Block::body)
        .collect()
}

pub(super) fn literal_string(expr: &Expression) -> Option<String> {
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

/// The value of an expression that needs no variables.
pub(super) fn evaluate(expr: &Expression, what: &str) -> Result<Value, String> {
    expr.evaluate(&Context::new())
        .map_err(|e| format!("{what} is not a literal value: {e}"))
}

pub(super) fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// `a/b/../c` → `a/c` without touching the file system.
pub(super) fn normalize(path: &Path) -> PathBuf {
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

/// The module's string locals, for evaluating paths such as `"${local.dir}/${local.file}"`.
pub(super) fn string_locals(module: &Module) -> Context<'static> {
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
pub(super) fn find_in_locals<'a>(module: &'a Module, key: &str) -> Option<&'a Expression> {
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

/// The string `expr` evaluates to in `context`, if it is one.
pub(super) fn eval_string(expr: &Expression, context: &Context) -> Option<String> {
    expr.evaluate(context).ok()?.as_str().map(str::to_owned)
}
