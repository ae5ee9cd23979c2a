//! `check-config`'s output: the effective settings in the config files' own TOML form (the tables
//! and keys of crates/service/config/*.toml), secrets redacted, each value followed by a comment
//! saying where it came from, then the telemetry values derived from several settings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use config::{Config, Source as _, Value, ValueKind};
use items_telemetry::PlatformIdentity;

use super::{AppEnvironment, BASE_TOML, Settings};

/// What a secret's value prints as.
pub const REDACTED: &str = "REDACTED";

/// Secrets the naming rule of [`is_secret`] does not catch: a database URL may carry a password;
/// OTLP header values may be credentials (their names still show).
const SECRET_KEYS: [&str; 2] = ["database.url", "telemetry.otlp_headers"];

/// Whether the value of setting `key` is a secret: a key naming a password or a secret (not a
/// file holding one: `…_file`, `…_files` are paths), or one of [`SECRET_KEYS`].
pub fn is_secret(key: &str) -> bool {
    let name = key.rsplit('.').next().unwrap_or(key);
    SECRET_KEYS.contains(&key)
        || ((name.contains("password") || name.contains("secret"))
            && !name.ends_with("_file")
            && !name.ends_with("_files"))
}

/// Every setting that has a value, as `(dotted key, value)`; arrays are values.
pub(super) fn leaves(config: &Config) -> Vec<(String, Value)> {
    fn walk(prefix: &str, table: config::Map<String, Value>, out: &mut Vec<(String, Value)>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            match value.kind {
                ValueKind::Table(table) => walk(&key, table, out),
                ValueKind::Nil => {}
                _ => out.push((key, value)),
            }
        }
    }
    let mut out = Vec::new();
    walk("", config.collect().unwrap_or_default(), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One key of a table: its dotted key, its name in the table, its value.
type Entry<'a> = (&'a str, &'a str, &'a toml::Value);

/// The effective settings, secrets already redacted: the only copy `check-config` prints from.
#[derive(Debug, Clone)]
pub struct Effective {
    environment: AppEnvironment,
    /// Dotted key → value.
    values: BTreeMap<String, toml::Value>,
}

impl Effective {
    pub(super) fn new(config: &Config, environment: AppEnvironment) -> Self {
        let values = leaves(config)
            .into_iter()
            .filter_map(|(key, value)| {
                let value = if is_secret(&key) {
                    redact(&key, &value.kind)
                } else {
                    to_toml(value.kind)?
                };
                Some((key, value))
            })
            .collect();
        Self {
            environment,
            values,
        }
    }

    /// The tables in the order `config/base.toml` has them, then any other alphabetically; in
    /// each, its keys alphabetically.
    fn tables(&self) -> Vec<(&str, Vec<Entry<'_>>)> {
        let order: Vec<&str> = BASE_TOML
            .lines()
            .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
            .collect();
        let mut tables: BTreeMap<&str, Vec<Entry<'_>>> = BTreeMap::new();
        for (key, value) in &self.values {
            let (table, name) = key.rsplit_once('.').unwrap_or(("", key));
            tables
                .entry(table)
                .or_default()
                .push((key.as_str(), name, value));
        }
        let mut tables: Vec<_> = tables.into_iter().collect();
        tables.sort_by_key(|(table, _)| {
            (
                !table.is_empty(),
                order.iter().position(|t| t == table).unwrap_or(order.len()),
                *table,
            )
        });
        tables
    }
}

/// A secret's value as printed: `REDACTED` (a list keeps its length; OTLP headers keep their
/// names); an empty one stays empty, as unset.
fn redact(key: &str, kind: &ValueKind) -> toml::Value {
    let hidden = || toml::Value::String(REDACTED.to_owned());
    match kind {
        ValueKind::String(s) if s.is_empty() => toml::Value::String(String::new()),
        ValueKind::String(s) if key == "telemetry.otlp_headers" => {
            match items_telemetry::env::parse_key_values(s) {
                Ok(headers) => toml::Value::String(
                    headers
                        .into_iter()
                        .map(|(name, _)| format!("{name}={REDACTED}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Err(_) => hidden(),
            }
        }
        ValueKind::Array(items) => toml::Value::Array(items.iter().map(|_| hidden()).collect()),
        _ => hidden(),
    }
}

/// A settings value as TOML (`None`: unset).
fn to_toml(kind: ValueKind) -> Option<toml::Value> {
    let integer = |i: i128| {
        i64::try_from(i).map_or_else(|_| toml::Value::String(i.to_string()), toml::Value::Integer)
    };
    Some(match kind {
        ValueKind::Nil => return None,
        ValueKind::Boolean(b) => toml::Value::Boolean(b),
        ValueKind::I64(i) => toml::Value::Integer(i),
        ValueKind::I128(i) => integer(i),
        ValueKind::U64(u) => integer(i128::from(u)),
        ValueKind::U128(u) => {
            i128::try_from(u).map_or_else(|_| toml::Value::String(u.to_string()), integer)
        }
        ValueKind::Float(f) => toml::Value::Float(f),
        ValueKind::String(s) => toml::Value::String(s),
        ValueKind::Array(items) => {
            toml::Value::Array(items.into_iter().filter_map(|v| to_toml(v.kind)).collect())
        }
        ValueKind::Table(table) => toml::Value::Table(
            table
                .into_iter()
                .filter_map(|(k, v)| Some((k, to_toml(v.kind)?)))
                .collect(),
        ),
    })
}

impl Settings {
    /// `items-service check-config`: the effective settings as a TOML document of the config
    /// files' tables and keys (secrets `REDACTED`), each value followed by a comment naming where
    /// it came from (a file, an `APP__…` or `OTEL_*` variable, `PORT`), then, as comments, the
    /// derived telemetry values (`identity` gives `K_SERVICE`) and the ignored `OTEL_*` variables.
    pub fn to_toml(&self, identity: &PlatformIdentity) -> String {
        let e = &self.effective;
        let mut out = format!(
            "# The effective settings of environment `{}`, in the form of crates/service/config/*.toml.\n\
             # Secrets show as \"{REDACTED}\"; after each value, where it came from.\n",
            e.environment.name()
        );
        for (table, keys) in e.tables() {
            if !table.is_empty() {
                let _ = write!(out, "\n[{table}]\n");
            }
            for (key, name, value) in keys {
                let _ = writeln!(out, "{name} = {value}  # {}", self.origins.of(key));
            }
        }
        out.push('\n');
        for line in self.describe_telemetry(identity).lines() {
            let _ = writeln!(out, "# {line}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_settings_are_secrets() {
        for key in [
            "database.url",
            "database.password",
            "database.runtime_password",
            "api.page_token_secret",
            "api.page_token_previous_secrets",
            "telemetry.otlp_headers",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "database.password_file",
            "database.runtime_password_file",
            "api.page_token_secret_file",
            "api.page_token_previous_secret_files",
            "database.idempotency_key_ttl_hours",
            "telemetry.otlp_endpoint",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
