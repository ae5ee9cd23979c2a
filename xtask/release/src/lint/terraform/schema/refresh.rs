//! `cargo xtask lint terraform --refresh-schema`: fetch the Google providers' schemas from the
//! cdktf npm packages (their jsii assemblies list every resource and data source with its
//! arguments and nested blocks) and write the compact files the schema check reads.
//!
//! In a jsii assembly of a cdktf provider, each resource or data source is a class whose base is
//! `cdktf.TerraformResource` or `cdktf.TerraformDataSource`; its documentation links to the
//! registry page (`…/providers/hashicorp/google/6.50.0/docs/resources/sql_database_instance
//! google_sql_database_instance`). Its arguments are the properties of the interface
//! `<Class>Config`: `optional` absent means required; a property whose type is another interface
//! of the package (directly, or as the element of an array: repeated) is a nested block, whose
//! own interface holds its arguments. Each property's documentation links to the registry anchor
//! of its Terraform name (`…#deletion_protection`), which is taken as the name; the camelCase
//! property name is converted only when a link is missing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use flate2::read::GzDecoder;
use serde::Deserialize;

use super::{BlockSchema, NestedBlock, PROVIDERS, ProviderSchema, schema_path};
use crate::bench::TempDir;

#[derive(Deserialize)]
struct Redirect {
    #[serde(default)]
    schema: String,
    filename: Option<String>,
    compression: Option<String>,
}

#[derive(Deserialize)]
struct Assembly {
    name: String,
    version: String,
    types: HashMap<String, JsiiType>,
}

#[derive(Deserialize)]
struct JsiiType {
    kind: String,
    base: Option<String>,
    #[serde(default)]
    docs: Docs,
    #[serde(default)]
    properties: Vec<Property>,
}

#[derive(Deserialize)]
struct Property {
    name: String,
    #[serde(default)]
    optional: bool,
    #[serde(rename = "type")]
    type_ref: serde_json::Value,
    #[serde(default)]
    docs: Docs,
}

#[derive(Default, Deserialize)]
struct Docs {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    remarks: String,
}

/// Fetch every package of [`PROVIDERS`] with `npm pack` and rewrite its schema file.
pub(crate) fn refresh(repo_root: &Path) -> anyhow::Result<()> {
    for provider in PROVIDERS {
        let work = TempDir::create()?;
        let (tarball, integrity) = npm_pack(provider.package, work.path())?;
        let assembly = read_assembly(&tarball)?;
        let schema = convert(&assembly, provider.name, &integrity)?;
        let path = schema_path(repo_root, provider.name);
        write_gzip_json(&path, &schema)?;
        println!(
            "xtask: {} ({} {}, provider {} {}): {} resources, {} data sources -> {}",
            provider.name,
            assembly.name,
            assembly.version,
            provider.name,
            schema.provider_version,
            schema.resource.len(),
            schema.data.len(),
            path.display()
        );
    }
    Ok(())
}

/// `npm pack <spec>` into `dir`: the tarball's path and its integrity hash.
fn npm_pack(spec: &str, dir: &Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    #[derive(Deserialize)]
    struct Packed {
        filename: String,
        integrity: String,
    }
    let output = Command::new("npm")
        .args(["pack", spec, "--json", "--pack-destination"])
        .arg(dir)
        .current_dir(dir)
        .output()
        .context("running npm (is Node.js installed?)")?;
    if !output.status.success() {
        bail!(
            "npm pack {spec} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let packed: Vec<Packed> =
        serde_json::from_slice(&output.stdout).context("reading npm pack --json output")?;
    let first = packed
        .into_iter()
        .next()
        .context("npm pack packed nothing")?;
    Ok((dir.join(first.filename), first.integrity))
}

/// The jsii assembly of a package tarball, following a `jsii/file-redirect` to a gzip file.
fn read_assembly(tarball: &Path) -> anyhow::Result<Assembly> {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let file = File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    for entry in archive.entries().context("reading the package tarball")? {
        let mut entry = entry.context("tarball entry")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name.starts_with("package/.jsii") || name.starts_with("package/_.jsii") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            files.insert(name, bytes);
        }
    }
    let main = files
        .get("package/.jsii")
        .context("the package has no .jsii assembly")?;
    let redirect: Redirect = serde_json::from_slice(main).context("parsing .jsii")?;
    if redirect.schema != "jsii/file-redirect" {
        return serde_json::from_slice(main).context("parsing the jsii assembly");
    }
    let target = format!(
        "package/{}",
        redirect
            .filename
            .context("file redirect without filename")?
    );
    let bytes = files.get(&target).with_context(|| {
        format!("the .jsii redirect names {target}, which is not in the package")
    })?;
    if redirect.compression.as_deref() != Some("gzip") {
        bail!("unsupported jsii compression {:?}", redirect.compression);
    }
    let mut text = Vec::new();
    GzDecoder::new(bytes.as_slice()).read_to_end(&mut text)?;
    serde_json::from_slice(&text).context("parsing the compressed jsii assembly")
}

fn convert(assembly: &Assembly, provider: &str, integrity: &str) -> anyhow::Result<ProviderSchema> {
    let prefix = format!("{}.", assembly.name);
    let mut schema = ProviderSchema {
        package: assembly.name.clone(),
        package_version: assembly.version.clone(),
        integrity: integrity.to_owned(),
        provider: provider.to_owned(),
        ..ProviderSchema::default()
    };
    for (fqn, class) in &assembly.types {
        let kind = match class.base.as_deref() {
            Some("cdktf.TerraformResource") if class.kind == "class" => "resource",
            Some("cdktf.TerraformDataSource") if class.kind == "class" => "data",
            _ => continue,
        };
        let (version, type_name) = registry_link(&class.docs.summary)
            .with_context(|| format!("{fqn}: no registry link in {:?}", class.docs.summary))?;
        schema.provider_version = version;
        let config = assembly
            .types
            .get(&format!("{fqn}Config"))
            .with_context(|| format!("{fqn} has no Config interface"))?;
        let block = block_schema(assembly, &prefix, config, 0)?;
        let map = if kind == "resource" {
            &mut schema.resource
        } else {
            &mut schema.data
        };
        map.insert(type_name, block);
    }
    if schema.resource.is_empty() {
        bail!("{}: no resource class found", assembly.name);
    }
    Ok(schema)
}

/// From `{@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/x google_x}`:
/// the provider version and the type name.
fn registry_link(summary: &str) -> Option<(String, String)> {
    let start = summary.find("/providers/hashicorp/")?;
    let rest = &summary[start + "/providers/hashicorp/".len()..];
    let mut parts = rest.splitn(3, '/');
    let _provider = parts.next()?;
    let version = parts.next()?.to_owned();
    let after = parts.next()?;
    let type_name = after
        .split_whitespace()
        .nth(1)?
        .trim_end_matches(['}', '.']);
    Some((version, type_name.to_owned()))
}

fn block_schema(
    assembly: &Assembly,
    prefix: &str,
    interface: &JsiiType,
    depth: usize,
) -> anyhow::Result<BlockSchema> {
    if depth > 32 {
        bail!("nested blocks deeper than 32 levels");
    }
    let mut block = BlockSchema::default();
    for property in &interface.properties {
        let name = terraform_name(property);
        match nested_interface(&property.type_ref, prefix, assembly) {
            Some((nested, repeated)) => {
                let inner = block_schema(assembly, prefix, nested, depth + 1)?;
                block.blocks.insert(
                    name,
                    NestedBlock {
                        required: !property.optional,
                        repeated,
                        block: inner,
                    },
                );
            }
            None => {
                block.arguments.insert(name, !property.optional);
            }
        }
    }
    Ok(block)
}

/// The interface of the package a property's type names (directly: one block; as the element
/// of an array, possibly in a union with `cdktf.IResolvable`: repeated).
fn nested_interface<'a>(
    type_ref: &serde_json::Value,
    prefix: &str,
    assembly: &'a Assembly,
) -> Option<(&'a JsiiType, bool)> {
    if let Some(fqn) = type_ref.get("fqn").and_then(|f| f.as_str()) {
        let found = assembly.types.get(fqn)?;
        return (fqn.starts_with(prefix) && found.kind == "interface").then_some((found, false));
    }
    if let Some(types) = type_ref.pointer("/union/types").and_then(|t| t.as_array()) {
        return types
            .iter()
            .find_map(|t| nested_interface(t, prefix, assembly));
    }
    let element = type_ref.pointer("/collection/elementtype")?;
    nested_interface(element, prefix, assembly).map(|(t, _)| (t, true))
}

/// The registry anchor of the property's documentation link (`{@link
/// https://registry.terraform.io/providers/…#name Class#name}`), else its name in snake_case.
fn terraform_name(property: &Property) -> String {
    const LINK: &str = "{@link https://registry.terraform.io/providers/";
    for text in [&property.docs.remarks, &property.docs.summary] {
        let Some(start) = text.rfind(LINK) else {
            continue;
        };
        let link = &text[start + LINK.len()..];
        let link = &link[..link.find([' ', '}']).unwrap_or(link.len())];
        if let Some((_, anchor)) = link.rsplit_once('#')
            && !anchor.is_empty()
            && anchor
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return anchor.to_owned();
        }
    }
    let mut snake = String::new();
    for c in property.name.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// Gzip with a fixed header (no file name, mtime 0), so a refresh with no change is no diff.
fn write_gzip_json(path: &Path, schema: &ProviderSchema) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec(schema)?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::best());
    encoder.write_all(&json)?;
    encoder.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_links_give_version_and_type() {
        let summary = "Represents a {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/sql_database_instance google_sql_database_instance}.";
        assert_eq!(
            registry_link(summary),
            Some(("6.50.0".into(), "google_sql_database_instance".into()))
        );
    }

    #[test]
    fn property_names_come_from_the_registry_anchor() {
        let property = Property {
            name: "ipv4Enabled".into(),
            optional: true,
            type_ref: serde_json::Value::Null,
            docs: Docs {
                summary: String::new(),
                remarks: "Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/sql_database_instance#ipv4_enabled SqlDatabaseInstance#ipv4_enabled}".into(),
            },
        };
        assert_eq!(terraform_name(&property), "ipv4_enabled");
        let bare = Property {
            docs: Docs::default(),
            name: "portRange".into(),
            ..property
        };
        assert_eq!(terraform_name(&bare), "port_range");
    }
}
