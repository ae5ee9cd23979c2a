//! Defaults are written once, in `config/base.toml` (per-environment values in the environment's
//! file): README's settings tables must say the same, and the repository's own fallback
//! (`DatabaseSettings::from_url`, for callers without these files) must agree with them.
//!
//! A README row is `| key [/ key…] | default [/ default…] | meaning |`; a key without a dot is a
//! sibling of the key before it. A default in backticks is the value `base.toml` holds, any other
//! text (`—`, `unset`, `one per CPU`) says `base.toml` has none. `(`value` in local)` or
//! `(words in dev, stage, prod)` after a default names the environment files that set the key
//! (to that value, when in backticks); no other environment file may set it.

use std::collections::BTreeMap;

use super::{AppEnvironment, BASE_TOML, Settings, SettingsSources};

const ENVIRONMENTS: &[AppEnvironment] = AppEnvironment::ALL;

/// Every key a TOML file sets, with its value as README writes it (strings without quotes).
fn keys_of(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
        for (name, value) in table {
            let key = format!("{prefix}{name}");
            match value {
                toml::Value::Table(inner) => walk(&format!("{key}."), inner, out),
                toml::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &text.parse::<toml::Table>().expect("valid TOML"),
        &mut out,
    );
    out
}

/// What README says of one key: the default (`None`: none in `base.toml`) and the environments
/// that set it, each with its value when README gives it.
#[derive(Debug)]
struct Documented {
    default: Option<String>,
    environments: Vec<(String, Option<String>)>,
}

/// The text between the first pair of backticks, when `text` starts with one.
fn literal(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix('`')?;
    rest.split_once('`').map(|(value, _)| value.to_owned())
}

/// Splits on ` / ` outside parentheses.
fn alternatives(cell: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in cell.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '/' if depth == 0 && cell[..i].ends_with(' ') && cell[i + 1..].starts_with(' ') => {
                parts.push(cell[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(cell[start..].trim());
    parts
}

fn documented(cell: &str) -> Result<Documented, String> {
    let (default, environments) = match cell.split_once(" (") {
        Some((default, rest)) => (default, rest.strip_suffix(')').ok_or("unclosed (")?),
        None => (cell, ""),
    };
    let mut out = Documented {
        default: literal(default),
        environments: Vec::new(),
    };
    for entry in environments.split("; ").filter(|e| !e.is_empty()) {
        let (value, names) = entry
            .rsplit_once(" in ")
            .ok_or_else(|| format!("{entry:?}: expected `value` in <environments>"))?;
        for name in names.split(", ") {
            AppEnvironment::parse(name).map_err(|e| format!("{entry:?}: {e}"))?;
            out.environments.push((name.to_owned(), literal(value)));
        }
    }
    Ok(out)
}

/// Every row of README's tables whose second column is the default, by key.
fn readme_rows(readme: &str) -> Result<Vec<(String, Documented)>, Vec<String>> {
    let (mut rows, mut problems, mut in_table) = (Vec::new(), Vec::new(), false);
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if cells[2].eq_ignore_ascii_case("default") {
            in_table = true;
            continue;
        }
        if !in_table || cells[1].starts_with("---") {
            continue;
        }
        let mut keys: Vec<String> = Vec::new();
        for part in alternatives(cells[1]) {
            let Some(name) = literal(part) else {
                problems.push(format!("{line}\n  {part:?} names no key"));
                continue;
            };
            match (name.contains('.'), keys.last()) {
                (false, Some(previous)) => {
                    let parent = previous.rsplit_once('.').map_or("", |(p, _)| p);
                    keys.push(format!("{parent}.{name}"));
                }
                _ => keys.push(name),
            }
        }
        let defaults = alternatives(cells[2]);
        if defaults.len() != keys.len() && defaults.len() != 1 {
            problems.push(format!(
                "{line}\n  {} keys but {} defaults",
                keys.len(),
                defaults.len()
            ));
            continue;
        }
        for (i, key) in keys.into_iter().enumerate() {
            match documented(defaults[i.min(defaults.len() - 1)]) {
                Ok(doc) => rows.push((key, doc)),
                Err(e) => problems.push(format!("{line}\n  {e}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// Where README's tables and the configuration files disagree (empty: they agree).
fn disagreements(readme: &str) -> Vec<String> {
    let rows = match readme_rows(readme) {
        Ok(rows) => rows,
        Err(problems) => return problems,
    };
    let base = keys_of(BASE_TOML);
    let files: Vec<(&str, BTreeMap<String, String>)> = ENVIRONMENTS
        .iter()
        .map(|env| (env.name(), keys_of(env.file().1)))
        .collect();
    let mut problems = Vec::new();
    for (key, doc) in &rows {
        if doc.default.as_ref() != base.get(key) {
            problems.push(format!(
                "{key}: README's default is {:?}, config/base.toml's {:?}",
                doc.default,
                base.get(key)
            ));
        }
        for (env, set) in &files {
            let said = doc.environments.iter().find(|(name, _)| name == env);
            match (said, set.get(key)) {
                (None, None) => {}
                (Some((_, Some(value))), Some(actual)) if value == actual => {}
                (Some((_, None)), Some(_)) => {}
                (said, actual) => problems.push(format!(
                    "{key}: README says config/{env}.toml sets {:?}, the file sets {actual:?}",
                    said.map(|(_, value)| value.as_deref().unwrap_or("a value"))
                )),
            }
        }
    }
    let documented: Vec<&String> = rows.iter().map(|(key, _)| key).collect();
    let set = base
        .keys()
        .chain(files.iter().flat_map(|(_, keys)| keys.keys()));
    for key in set {
        if !documented.contains(&key) {
            problems.push(format!(
                "{key}: set in the configuration files, missing from README"
            ));
        }
    }
    problems.dedup();
    problems
}

/// The settings tables: docs/configuration.md, and the log and telemetry tables of
/// docs/observability.md.
fn readme() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/");
    ["configuration.md", "observability.md"]
        .iter()
        .map(|doc| std::fs::read_to_string(format!("{root}{doc}")).expect("a settings doc"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_settings_tables_agree_with_the_configuration_files() {
    let problems = disagreements(&readme());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_readme_check_notices_each_kind_of_disagreement() {
    let readme = readme();
    let changes = [
        // A wrong default.
        (
            "| `database.statement_timeout_ms` | `5000` |",
            "| `database.statement_timeout_ms` | `6000` |",
        ),
        // A default base.toml does not have.
        (
            "| `server.workers` | one per CPU |",
            "| `server.workers` | `4` |",
        ),
        // An environment file left out, and a wrong per-environment value.
        ("(`otlp` in dev, stage, prod)", "(`otlp` in dev, stage)"),
        ("(`pretty` in local)", "(`json` in local)"),
        // A key of base.toml missing from README.
        (
            "| `telemetry.metrics_interval_secs` |",
            "| `telemetry.metrics_interval` |",
        ),
    ];
    for (from, to) in changes {
        assert!(readme.contains(from), "README lost {from:?}");
        let changed = readme.replacen(from, to, 1);
        assert!(!disagreements(&changed).is_empty(), "{from} → {to}");
    }
}

#[test]
fn the_repositorys_fallback_defaults_are_the_configured_ones() {
    let loaded = Settings::load(&SettingsSources::default())
        .unwrap()
        .database;
    let fallback = items_repository::DatabaseSettings::from_url("postgres://u@h/d");
    assert_eq!(fallback.statement_timeout_ms, loaded.statement_timeout_ms);
    assert_eq!(fallback.migrate_on_start, loaded.migrate_on_start);
    assert_eq!(
        fallback.idempotency_key_ttl_hours,
        loaded.idempotency_key_ttl_hours
    );
    let (a, b) = (&fallback.pool, &loaded.pool);
    assert_eq!(
        (
            a.max_size,
            a.wait_timeout_ms,
            a.create_timeout_ms,
            a.recycle_timeout_ms
        ),
        (
            b.max_size,
            b.wait_timeout_ms,
            b.create_timeout_ms,
            b.recycle_timeout_ms
        )
    );
}

#[test]
fn secrets_have_no_default_outside_local() {
    let secrets = [
        "api.page_token_secret",
        "api.page_token_previous_secrets",
        "database.url",
        "database.password",
    ];
    let files = std::iter::once(("base", BASE_TOML)).chain(
        ENVIRONMENTS
            .iter()
            .filter(|env| **env != AppEnvironment::Local)
            .map(|env| (env.name(), env.file().1)),
    );
    for (name, text) in files {
        let keys = keys_of(text);
        for secret in secrets {
            assert!(
                !keys.contains_key(secret),
                "config/{name}.toml sets {secret}"
            );
        }
    }
    assert!(keys_of(AppEnvironment::Local.file().1).contains_key("api.page_token_secret"));
}
