//! `cargo xtask render [--env <env> [--region <region>]] [--check]`: the consumer spec
//! (`openapi/items.openapi.json`, and its OpenAPI 3.0 form `openapi/items.openapi-3.0.json`), the
//! API Gateway configs (`openapi/gateway/<env>-<region>.yaml`) and the typed clients
//! (`crates/client/src/generated.rs`, `openapi/clients/typescript/src/schema.d.ts`, see
//! [`clients`]) from the route table of `items-http` and `deploy/environments/<env>.toml`.
//!
//! With `--check` nothing is written: the command fails when a committed file differs from what
//! the code renders, or when `openapi/gateway/` holds a file no environment renders.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use items_gateway_spec::{Environment, Rendered};

use crate::util;

mod clients;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The environment to render (a file stem of deploy/environments); all when omitted.
    #[arg(long)]
    env: Option<String>,
    /// Only this region of the environment.
    #[arg(long, requires = "env")]
    region: Option<String>,
    /// Write nothing; fail when a committed file differs from what the code renders.
    #[arg(long)]
    check: bool,
}

const CONSUMER_SPEC: &str = "openapi/items.openapi.json";
const CONSUMER_SPEC_30: &str = "openapi/items.openapi-3.0.json";
const GATEWAY_DIR: &str = "openapi/gateway";
const ENVIRONMENTS: &str = "deploy/environments";

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = util::project_root();
    let spec_text = items_http::openapi_json();
    let spec: serde_json::Value =
        serde_json::from_str(spec_text).context("the generated OpenAPI spec is not JSON")?;

    let mut outputs = consumer_outputs(&root, spec_text, &spec, args.check)?;
    let rendered = gateway_configs(&root, &spec, &args)?;
    outputs.extend(
        rendered
            .iter()
            .map(|r| (format!("{GATEWAY_DIR}/{}", r.file_name), r.yaml.clone())),
    );

    let warnings: BTreeSet<&String> = rendered.iter().flat_map(|r| &r.warnings).collect();
    if !warnings.is_empty() {
        eprintln!("xtask: simplified for OpenAPI 2.0 (also listed atop each YAML file):");
        for w in &warnings {
            eprintln!("  {w}");
        }
    }

    if args.check {
        return check(&root, &outputs, &rendered, args.env.is_none());
    }
    write_all(&root, &outputs, &rendered)?;
    Ok(ExitCode::SUCCESS)
}

/// (file, text) of the consumer spec, its OpenAPI 3.0 form and the typed clients. Without npm the
/// TypeScript types are left out with a warning, except under `--check`, which fails.
fn consumer_outputs(
    root: &Path,
    spec_text: &str,
    spec: &serde_json::Value,
    check: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut outputs: Vec<(String, String)> = vec![(CONSUMER_SPEC.to_owned(), spec_text.to_owned())];
    let openapi30 = items_gateway_spec::openapi30::to_openapi30(spec)?;
    for w in &openapi30.warnings {
        eprintln!("xtask: {CONSUMER_SPEC_30}: {w}");
    }
    // Sorted keys: the converter builds `serde_json::Map`s, whose order follows the build's
    // features (`preserve_order`); the committed bytes must not.
    let text30 = items_gateway_spec::to_sorted_json_pretty(&openapi30.document)?;
    outputs.push((CONSUMER_SPEC_30.to_owned(), text30));
    outputs.push((
        clients::RUST_CLIENT.to_owned(),
        clients::rust_client(&openapi30.document)?,
    ));
    match clients::typescript_types(root, spec_text)? {
        Ok(ts) => outputs.push((clients::TS_SCHEMA.to_owned(), ts)),
        Err(why) if check => bail!("{why}"),
        Err(why) => eprintln!("warning: {why}"),
    }
    Ok(outputs)
}

/// The API Gateway config of every region of every environment `args` selects.
fn gateway_configs(
    root: &Path,
    spec: &serde_json::Value,
    args: &Args,
) -> anyhow::Result<Vec<Rendered>> {
    let envs = match &args.env {
        Some(env) => vec![env.clone()],
        None => environment_names(&root.join(ENVIRONMENTS))?,
    };
    let mut rendered: Vec<Rendered> = Vec::new();
    for name in &envs {
        let path = root.join(ENVIRONMENTS).join(format!("{name}.toml"));
        if !path.is_file() {
            bail!(
                "there is no environment {name:?} ({} does not exist)",
                relative(root, &path)
            );
        }
        let mut env = Environment::load(&path)?;
        env.file = relative(root, &path);
        let regions: Vec<String> = match &args.region {
            Some(r) => vec![r.clone()],
            None => env.regions.iter().map(|r| r.name.clone()).collect(),
        };
        for region in regions {
            let file = root
                .join(GATEWAY_DIR)
                .join(format!("{}-{region}.yaml", env.name));
            let previous = std::fs::read_to_string(&file).ok();
            rendered.push(items_gateway_spec::render(
                spec,
                &env,
                &region,
                previous.as_deref(),
            )?);
        }
    }
    Ok(rendered)
}

/// `--check`: every output equals its committed file and, when every environment was rendered,
/// `openapi/gateway/` holds nothing else.
fn check(
    root: &Path,
    outputs: &[(String, String)],
    rendered: &[Rendered],
    all_environments: bool,
) -> anyhow::Result<ExitCode> {
    let mut stale = Vec::new();
    for (file, text) in outputs {
        let committed = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        if &committed != text {
            stale.push(format!(
                "{file} differs from what the code renders{}",
                first_difference(&committed, text)
            ));
        }
    }
    if all_environments {
        let expected: BTreeSet<&str> = outputs.iter().map(|(f, _)| f.as_str()).collect();
        for file in files_in(&root.join(GATEWAY_DIR))? {
            let name = format!("{GATEWAY_DIR}/{file}");
            if !expected.contains(name.as_str()) {
                stale.push(format!(
                    "{name} is rendered by no environment and region; delete it"
                ));
            }
        }
    }
    if stale.is_empty() {
        println!(
            "xtask: {} rendered files match the committed ones",
            outputs.len()
        );
        for r in rendered {
            println!("  {GATEWAY_DIR}/{}  {}", r.file_name, r.config_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for s in &stale {
        eprintln!("error: {s}");
    }
    eprintln!("run `cargo xtask render` and commit the result");
    Ok(ExitCode::FAILURE)
}

/// Writes the outputs that changed and lists what was rendered.
fn write_all(
    root: &Path,
    outputs: &[(String, String)],
    rendered: &[Rendered],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join(GATEWAY_DIR))
        .with_context(|| format!("creating {GATEWAY_DIR}"))?;
    for (file, text) in outputs {
        write_if_changed(&root.join(file), text)?;
    }
    for (file, _) in outputs.iter().filter(|(f, _)| !f.starts_with(GATEWAY_DIR)) {
        println!("{file}");
    }
    for r in rendered {
        println!("{GATEWAY_DIR}/{}  config id {}", r.file_name, r.config_id);
    }
    Ok(())
}

fn environment_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = files_in(dir)?
        .into_iter()
        .filter_map(|f| f.strip_suffix(".toml").map(str::to_owned))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{} has no <env>.toml files", dir.display());
    }
    Ok(names)
}

/// File names in `dir` (none when it does not exist), sorted.
fn files_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let path: PathBuf = entry?.path();
        if path.is_file()
            && let Some(name) = path.file_name()
        {
            names.push(name.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `: line N is now "…"` for the first line that differs.
fn first_difference(committed: &str, rendered: &str) -> String {
    if committed.is_empty() {
        return " (missing)".to_owned();
    }
    let mut old = committed.lines();
    for (i, new) in rendered.lines().enumerate() {
        if old.next() != Some(new) {
            return format!(" (first at line {}: {:?})", i + 1, new);
        }
    }
    " (the committed file is longer)".to_owned()
}
