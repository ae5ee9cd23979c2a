//! Check 9: every `resource` and `data` block of the Google providers, and each block nested in
//! it, against the provider's schema: no unknown argument or block, no missing required one,
//! arguments written as arguments and blocks as blocks, a block the schema allows once given once.
//!
//! The schema comes from the cdktf npm packages `@cdktf/provider-google` and
//! `@cdktf/provider-google-beta` (their jsii assemblies list every resource and data source of
//! one provider version with its arguments and nested blocks; see [`refresh`]), written by
//! `cargo xtask lint terraform --refresh-schema` into `deploy/terraform/provider-schema/`, so the
//! lint needs no network. The newest such package carries provider 6.50.0 while our modules pin
//! 7.x: what 7.x added and our modules use is listed by hand in
//! `deploy/terraform/provider-schema/additions.toml`, each with the changelog line that added it.
//!
//! Meta-arguments (`count`, `for_each`, `depends_on`, `provider`, and the `lifecycle`,
//! `provisioner` and `connection` blocks) are Terraform's, not the provider's; a `dynamic "x"`
//! block is checked as block `x` with its `content` as the body. Resources of other providers
//! (`random_*`) and `ephemeral` blocks are not covered: no cdktf package describes them here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hcl::Body;
use hcl::expr::Expression;
use serde::{Deserialize, Serialize};

use super::module::{Module, label, module_dirs};

pub(crate) mod refresh;

/// The command that rewrites the schema files.
pub(crate) const REFRESH_COMMAND: &str = "cargo xtask lint terraform --refresh-schema";

pub(super) struct Provider {
    /// The provider's local name, as in `provider = google-beta`.
    pub(super) name: &'static str,
    /// The npm package (with its exact version) whose jsii assembly holds the schema.
    pub(super) package: &'static str,
}

/// The providers whose resources are checked, and where their schema comes from.
pub(super) const PROVIDERS: [Provider; 2] = [
    Provider {
        name: "google",
        package: "@cdktf/provider-google@16.12.1",
    },
    Provider {
        name: "google-beta",
        package: "@cdktf/provider-google-beta@16.12.1",
    },
];

const RESOURCE_META_ARGUMENTS: [&str; 4] = ["count", "for_each", "depends_on", "provider"];
const RESOURCE_META_BLOCKS: [&str; 3] = ["lifecycle", "provisioner", "connection"];

/// One provider's schema, as committed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct ProviderSchema {
    pub(super) package: String,
    pub(super) package_version: String,
    pub(super) integrity: String,
    pub(super) provider: String,
    pub(super) provider_version: String,
    pub(super) resource: BTreeMap<String, BlockSchema>,
    pub(super) data: BTreeMap<String, BlockSchema>,
}

/// The arguments (name → required) and nested blocks of one block.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct BlockSchema {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) arguments: BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) blocks: BTreeMap<String, NestedBlock>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct NestedBlock {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) required: bool,
    /// More than one block allowed (a list or set of blocks); otherwise at most one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) repeated: bool,
    #[serde(flatten)]
    pub(super) block: BlockSchema,
}

/// An argument or block of the pinned 7.x provider that the 6.x schema does not have.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Addition {
    provider: String,
    /// `resource` or `data`.
    kind: String,
    #[serde(rename = "type")]
    type_name: String,
    /// Dotted path from the resource: nested block names, then the argument or block.
    path: String,
    /// A block (its contents are then not checked) rather than an argument.
    #[serde(default)]
    block: bool,
    /// A whole resource type (then `path` is empty).
    #[serde(default)]
    whole_type: bool,
    /// The provider release that added it and the changelog line saying so.
    version: String,
    changelog: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Additions {
    #[serde(default)]
    addition: Vec<Addition>,
}

pub(super) fn schema_dir(repo_root: &Path) -> PathBuf {
    repo_root.join("deploy/terraform/provider-schema")
}

pub(super) fn schema_path(repo_root: &Path, provider: &str) -> PathBuf {
    schema_dir(repo_root).join(format!("{provider}.json.gz"))
}

/// The committed schemas and the hand-listed 7.x additions.
pub(super) struct Schemas {
    providers: BTreeMap<String, ProviderSchema>,
    additions: Vec<Addition>,
}

impl Schemas {
    pub(super) fn load(repo_root: &Path) -> anyhow::Result<Self> {
        Self::load_with(
            repo_root,
            Some(&schema_dir(repo_root).join("additions.toml")),
        )
    }

    /// The committed schemas with the additions of `additions` (a fixture's or none, in tests).
    fn load_with(repo_root: &Path, additions: Option<&Path>) -> anyhow::Result<Self> {
        let mut providers = BTreeMap::new();
        for provider in PROVIDERS {
            let path = schema_path(repo_root, provider.name);
            let file = std::fs::File::open(&path).with_context(|| {
                format!(
                    "{}: no provider schema; run `{REFRESH_COMMAND}`",
                    path.display()
                )
            })?;
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut json)
                .with_context(|| format!("{}: not gzip", path.display()))?;
            let schema: ProviderSchema = serde_json::from_slice(&json)
                .with_context(|| format!("{}: not a provider schema", path.display()))?;
            providers.insert(provider.name.to_owned(), schema);
        }
        let additions = match additions {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<Additions>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
                    .addition
            }
            None => Vec::new(),
        };
        Ok(Self {
            providers,
            additions,
        })
    }

    fn addition(
        &self,
        provider: &str,
        kind: &str,
        type_name: &str,
        path: &str,
    ) -> Option<(usize, &Addition)> {
        self.additions.iter().enumerate().find(|(_, a)| {
            a.provider == provider && a.kind == kind && a.type_name == type_name && a.path == path
        })
    }
}

/// Check 9 over every module below `root` (file names in messages relative to `names_root`).
pub(super) fn check_schema(
    root: &Path,
    names_root: &Path,
    schemas: &Schemas,
) -> anyhow::Result<Vec<String>> {
    let mut checker = Checker {
        schemas,
        used: BTreeSet::new(),
        problems: Vec::new(),
    };
    for dir in module_dirs(root)? {
        let module = Module::load(&dir, names_root)?;
        for (file, body) in &module.files {
            for block in body.blocks() {
                let kind = block.identifier();
                if kind == "resource" || kind == "data" {
                    checker.check_top_level(file, kind, block);
                }
            }
        }
    }
    checker.check_additions();
    Ok(checker.problems)
}

struct Checker<'a> {
    schemas: &'a Schemas,
    /// Indices of the additions some block used.
    used: BTreeSet<usize>,
    problems: Vec<String>,
}

/// Where a block is: for messages and for looking up additions.
struct Place<'a> {
    file: &'a str,
    provider: &'a str,
    kind: &'a str,
    type_name: &'a str,
    /// `google_x.name` or `data.google_x.name`.
    address: String,
    version: &'a str,
}

impl Checker<'_> {
    fn check_top_level(&mut self, file: &str, kind: &str, block: &hcl::Block) {
        let (type_name, name) = (label(block, 0), label(block, 1));
        let body = block.body();
        let provider = provider_of(body)
            .unwrap_or_else(|| type_name.split('_').next().unwrap_or_default().to_owned());
        let Some(schema) = self.schemas.providers.get(&provider) else {
            return; // not a provider with a published schema (e.g. random)
        };
        let address = match kind {
            "data" => format!("data.{type_name}.{name}"),
            _ => format!("{type_name}.{name}"),
        };
        let place = Place {
            file,
            provider: &provider,
            kind,
            type_name: &type_name,
            address,
            version: &schema.provider_version,
        };
        let types = if kind == "data" {
            &schema.data
        } else {
            &schema.resource
        };
        match types.get(&type_name) {
            Some(root) => self.check_body(&place, body, root, root, &[]),
            None => match self.schemas.addition(&provider, kind, &type_name, "") {
                Some((i, a)) if a.whole_type => {
                    self.used.insert(i);
                }
                _ => self.problems.push(format!(
                    "{file}: {}: the {provider} provider {} schema has no {kind} type \"{type_name}\"; \
                     if it is new in 7.x, list it in provider-schema/additions.toml with its changelog \
                     line, else run `{REFRESH_COMMAND}`",
                    place.address, schema.provider_version
                )),
            },
        }
    }

    fn check_body(
        &mut self,
        place: &Place,
        body: &Body,
        schema: &BlockSchema,
        root: &BlockSchema,
        path: &[&str],
    ) {
        let top = path.is_empty();
        let mut present: BTreeSet<&str> = BTreeSet::new();
        for attribute in body.attributes() {
            let key = attribute.key.as_str();
            present.insert(key);
            if top && RESOURCE_META_ARGUMENTS.contains(&key) || schema.arguments.contains_key(key) {
                continue;
            }
            if schema.blocks.contains_key(key) {
                self.problem(
                    place,
                    path,
                    key,
                    "is a block, not an argument: write it as `NAME { … }`",
                );
            } else if !self.known_addition(place, path, key, false) {
                self.unknown(place, path, key, "an argument", root);
            }
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for block in body.blocks() {
            let identifier = block.identifier();
            if top && RESOURCE_META_BLOCKS.contains(&identifier) {
                continue;
            }
            let (name, content, dynamic) = if identifier == "dynamic" {
                let Some(name) = block.labels().first().map(hcl::BlockLabel::as_str) else {
                    continue;
                };
                let content = block
                    .body()
                    .blocks()
                    .find(|b| b.identifier() == "content")
                    .map(hcl::Block::body);
                (name, content, true)
            } else {
                (identifier, Some(block.body()), false)
            };
            present.insert(name);
            if let Some(nested) = schema.blocks.get(name) {
                let count = counts.entry(name).or_default();
                *count += 1;
                if !dynamic && !nested.repeated && *count == 2 {
                    self.problem(
                        place,
                        path,
                        name,
                        "is given more than once; the schema allows one",
                    );
                }
                if let Some(content) = content {
                    let inner: Vec<&str> = path.iter().copied().chain([name]).collect();
                    self.check_body(place, content, &nested.block, root, &inner);
                }
            } else if schema.arguments.contains_key(name) {
                self.problem(
                    place,
                    path,
                    name,
                    "is an argument, not a block: write it as `NAME = …`",
                );
            } else if !self.known_addition(place, path, name, true) {
                self.unknown(place, path, name, "a block", root);
            }
        }
        for (name, required) in &schema.arguments {
            if *required && !present.contains(name.as_str()) {
                self.problem(place, path, name, "is a required argument and is missing");
            }
        }
        for (name, nested) in &schema.blocks {
            if nested.required && !present.contains(name.as_str()) {
                self.problem(place, path, name, "is a required block and is missing");
            }
        }
    }

    fn known_addition(&mut self, place: &Place, path: &[&str], name: &str, block: bool) -> bool {
        let dotted = dotted(path, name);
        match self
            .schemas
            .addition(place.provider, place.kind, place.type_name, &dotted)
        {
            Some((i, addition)) if addition.block == block => {
                self.used.insert(i);
                true
            }
            _ => false,
        }
    }

    fn unknown(
        &mut self,
        place: &Place,
        path: &[&str],
        name: &str,
        what: &str,
        root: &BlockSchema,
    ) {
        let mut elsewhere = Vec::new();
        find_paths(root, name, &mut Vec::new(), &mut elsewhere);
        let hint = match elsewhere.as_slice() {
            [] => String::new(),
            found => format!("; the schema has it in {}", found.join(", ")),
        };
        self.problem(
            place,
            path,
            name,
            &format!(
                "is not {what} of the {} provider {} schema{hint} (if 7.x added it, list it in provider-schema/additions.toml)",
                place.provider, place.version
            ),
        );
    }

    fn problem(&mut self, place: &Place, path: &[&str], name: &str, message: &str) {
        let message = message.replace("NAME", name);
        self.problems.push(format!(
            "{}: {}: \"{}\" {message}",
            place.file,
            place.address,
            dotted(path, name)
        ));
    }

    /// Every hand-listed addition is used, and none is in the schema already.
    fn check_additions(&mut self) {
        for (i, a) in self.schemas.additions.iter().enumerate() {
            let what = format!(
                "provider-schema/additions.toml: {} {} \"{}\" (provider {})",
                a.kind, a.type_name, a.path, a.version
            );
            if a.changelog.trim().is_empty() {
                self.problems.push(format!("{what} has no changelog line"));
            }
            if !self.used.contains(&i) {
                self.problems.push(format!(
                    "{what} is used by no module, or the schema already has it; remove it"
                ));
            }
        }
    }
}

/// The provider a block's `provider = google-beta` (or `google-beta.alias`) names.
fn provider_of(body: &Body) -> Option<String> {
    let expr = body
        .attributes()
        .find(|a| a.key.as_str() == "provider")
        .map(|a| &a.expr)?;
    let variable = match expr {
        Expression::Variable(v) => v,
        Expression::Traversal(t) => match &t.expr {
            Expression::Variable(v) => v,
            _ => return None,
        },
        _ => return None,
    };
    Some(variable.as_str().to_owned())
}

fn dotted(path: &[&str], name: &str) -> String {
    path.iter()
        .copied()
        .chain([name])
        .collect::<Vec<_>>()
        .join(".")
}

/// The dotted paths of the blocks below `schema` that have an argument or block `name`.
fn find_paths(schema: &BlockSchema, name: &str, path: &mut Vec<String>, out: &mut Vec<String>) {
    if schema.arguments.contains_key(name) || schema.blocks.contains_key(name) {
        out.push(match path.as_slice() {
            [] => "the top level".to_owned(),
            inner => inner.join("."),
        });
    }
    for (block, nested) in &schema.blocks {
        path.push(block.clone());
        find_paths(&nested.block, name, path, out);
        path.pop();
    }
}

/// Check 9 over `deploy/terraform` with the committed schemas.
pub(super) fn check_repo(repo_root: &Path) -> anyhow::Result<Vec<String>> {
    let schemas = Schemas::load(repo_root)?;
    let terraform = repo_root.join("deploy/terraform");
    check_schema(&terraform, &terraform, &schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        crate::util::project_root()
    }

    fn fixture_problems(name: &str, additions: Option<&str>) -> Vec<String> {
        let root = repo_root();
        let dir = root
            .join("xtask/release/tests/fixtures/terraform")
            .join(name);
        let additions = additions.map(|file| dir.join(file));
        let schemas =
            Schemas::load_with(&root, additions.as_deref()).expect("committed schemas load");
        check_schema(&dir, &dir, &schemas).expect("readable fixture")
    }

    #[test]
    fn real_tree_matches_the_provider_schema() {
        let problems = check_repo(&repo_root()).expect("readable tree and schemas");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn committed_schemas_are_the_named_packages() {
        let schemas = Schemas::load(&repo_root()).expect("committed schemas load");
        for provider in PROVIDERS {
            let schema = &schemas.providers[provider.name];
            assert_eq!(
                format!("{}@{}", schema.package, schema.package_version),
                provider.package
            );
            assert_eq!(schema.provider_version, "6.50.0");
            assert!(schema.resource.contains_key("google_sql_database_instance"));
        }
    }

    #[test]
    fn each_broken_fixture_fails_with_one_line_naming_file_resource_and_argument() {
        for (name, expected) in [
            (
                "schema_bogus_argument",
                "main.tf: google_sql_database_instance.db: \"settings.backup_configuration.point_in_time_recovery\" is not an argument of the google provider 6.50.0 schema",
            ),
            (
                "schema_missing_required",
                "main.tf: google_sql_database.app: \"instance\" is a required argument and is missing",
            ),
            (
                "schema_misplaced_block",
                "main.tf: google_sql_database_instance.db: \"ip_configuration\" is not a block of the google provider 6.50.0 schema; the schema has it in settings",
            ),
            (
                "schema_block_as_argument",
                "main.tf: google_sql_database_instance.db: \"settings\" is a block, not an argument: write it as `settings { … }`",
            ),
            (
                "schema_unknown_type",
                "main.tf: google_sql_instance.db: the google provider 6.50.0 schema has no resource type \"google_sql_instance\"",
            ),
        ] {
            let problems = fixture_problems(name, None);
            assert_eq!(problems.len(), 1, "{name}: {problems:#?}");
            assert!(
                problems[0].starts_with(expected),
                "{name}: expected a line starting with\n  {expected}\ngot\n  {}",
                problems[0]
            );
        }
    }

    #[test]
    fn unknown_types_name_the_refresh_command() {
        let problems = fixture_problems("schema_unknown_type", None);
        assert!(problems[0].contains(REFRESH_COMMAND), "{problems:#?}");
    }

    #[test]
    fn seven_x_additions_are_accepted_only_when_listed_and_used() {
        let without = fixture_problems("schema_seven_x_addition", None);
        assert_eq!(
            without,
            [
                "main.tf: google_alloydb_cluster.db: \"deletion_protection\" is not an argument of the google provider 6.50.0 schema (if 7.x added it, list it in provider-schema/additions.toml)"
            ]
        );
        let with = fixture_problems("schema_seven_x_addition", Some("additions.toml"));
        assert_eq!(
            with,
            [
                "provider-schema/additions.toml: resource google_alloydb_cluster \"no_such_thing\" (provider 7.0.0) is used by no module, or the schema already has it; remove it"
            ]
        );
    }
}
