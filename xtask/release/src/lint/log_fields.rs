//! The committed log-analytics queries (`deploy/log-analytics/*.sql`) read only fields the log
//! lines carry. Each query names its source in its first line (`-- source: service` or
//! `-- source: gateway`); the fields of each source are read from the code that writes them:
//!
//! - the service: the fields every line of the JSON layer writes (the JSON keys in the string
//!   literals of `crates/telemetry/src/logging.rs`) and the fields of the access-log event
//!   (`access_log` in `crates/http/src/middleware.rs`, `httpRequest.x = …`);
//! - the gateway: the serialized names of `Line` and `HttpRequest` in
//!   `crates/local-gateway/src/log.rs` (serde renames included).
//!
//! A query's column maps to a line field as Cloud Logging maps a structured line to a
//! `LogEntry` (special fields: `httpRequest` → `http_request` with snake_case names,
//! `logging.googleapis.com/trace` → `trace`, `…/spanId` → `span_id`, `…/trace_sampled` →
//! `trace_sampled`, `time` → `timestamp`; every other field → `json_payload`; Cloud Logging
//! "Structured logging: special JSON fields"). `resource.*` and `log_name` come from the
//! platform, not from the line: only the monitored-resource labels of the source are allowed
//! (Cloud Run's `cloud_run_revision`: service_name, revision_name, location, configuration_name;
//! API Gateway's `apigateway.googleapis.com/Gateway`: gateway_id, location;
//! https://cloud.google.com/logging/docs/api/platform-logs).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, bail};
use syn::{Expr, Fields, Item, Stmt};

/// Fields a query may read whatever the source: set by Cloud Logging for every entry.
const PLATFORM_COLUMNS: [&str; 2] = ["log_name", "resource.type"];

struct Source {
    name: &'static str,
    /// `resource.labels.x` the source's monitored resource has.
    resource_labels: &'static [&'static str],
}

const SOURCES: [Source; 2] = [
    Source {
        name: "service",
        resource_labels: &[
            "service_name",
            "revision_name",
            "location",
            "configuration_name",
        ],
    },
    Source {
        name: "gateway",
        resource_labels: &["gateway_id", "location"],
    },
];

/// The JSON paths of the service's access-log lines (`httpRequest.requestUrl`, `severity`, …).
fn service_fields(repo_root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let logging = read(repo_root, "crates/telemetry/src/logging.rs")?;
    let code = logging.split("#[cfg(test)]").next().unwrap_or_default();
    let mut fields = json_keys(code);
    let middleware = read(repo_root, "crates/http/src/middleware.rs")?;
    let file = syn::parse_file(&middleware).context("parsing middleware.rs")?;
    let access_log = file
        .items
        .iter()
        .find_map(|item| match item {
            Item::Fn(f) if f.sig.ident == "access_log" => Some(f),
            _ => None,
        })
        .context("middleware.rs has no fn access_log")?;
    let before = fields.len();
    for stmt in &access_log.block.stmts {
        let mac = match stmt {
            Stmt::Macro(m) => &m.mac,
            Stmt::Expr(Expr::Macro(m), _) => &m.mac,
            _ => continue,
        };
        let is_event = mac.path.segments.last().is_some_and(|s| {
            ["info", "warn", "error", "debug", "trace"].contains(&s.ident.to_string().as_str())
        });
        if is_event {
            event_fields(&mac.tokens.to_string(), &mut fields);
        }
    }
    if fields.len() == before {
        bail!("access_log in middleware.rs logs no field");
    }
    Ok(fields)
}

/// `"name":` keys in the text (the JSON the layer writes by hand).
fn json_keys(code: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (i, _) in code.match_indices("\":") {
        let head = &code[..i];
        if let Some(start) = head.rfind('"') {
            let key = &head[start + 1..];
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@./_".contains(c))
            {
                keys.insert(key.to_owned());
            }
        }
    }
    keys
}

/// In the tokens of `info!(a.b = x, c = %y, "message")` (as text, `a . b = x , c = % y , …`):
/// `a.b` and `c`.
fn event_fields(tokens: &str, out: &mut BTreeSet<String>) {
    for argument in tokens.split(',') {
        let Some((name, _)) = argument.split_once(" = ") else {
            continue;
        };
        let name: String = name.chars().filter(|c| !c.is_whitespace()).collect();
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            out.insert(name);
        }
    }
}

/// The JSON paths of the local gateway's lines, from the serde names of `Line`.
fn gateway_fields(repo_root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let text = read(repo_root, "crates/local-gateway/src/log.rs")?;
    let file = syn::parse_file(&text).context("parsing log.rs")?;
    let structs: Vec<&syn::ItemStruct> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Struct(s) => Some(s),
            _ => None,
        })
        .collect();
    let fields_of = |name: &str| -> anyhow::Result<Vec<(String, String)>> {
        let item = structs
            .iter()
            .find(|s| s.ident == name)
            .with_context(|| format!("log.rs has no struct {name}"))?;
        let Fields::Named(named) = &item.fields else {
            bail!("{name} has no named fields");
        };
        Ok(named
            .named
            .iter()
            .map(|f| {
                let ident = f
                    .ident
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let ty = match &f.ty {
                    syn::Type::Path(p) => p
                        .path
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                (serde_name(f).unwrap_or(ident), ty)
            })
            .collect())
    };
    let mut fields = BTreeSet::new();
    for (name, ty) in fields_of("Line")? {
        if ty == "HttpRequest" {
            for (inner, _) in fields_of("HttpRequest")? {
                fields.insert(format!("{name}.{inner}"));
            }
        } else {
            fields.insert(name);
        }
    }
    Ok(fields)
}

/// `#[serde(rename = "x")]` of a field.
fn serde_name(field: &syn::Field) -> Option<String> {
    field
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .find_map(|a| {
            let mut renamed = None;
            let _ = a.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let value: syn::LitStr = meta.value()?.parse()?;
                    renamed = Some(value.value());
                } else if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
            renamed
        })
}

fn read(repo_root: &Path, path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(repo_root.join(path)).with_context(|| format!("reading {path}"))
}

/// The columns a query reads: `http_request.x.y`, `json_payload.x`, `resource.x.y` and the
/// top-level columns, outside comments and string literals.
fn columns(sql: &str) -> BTreeSet<String> {
    let mut code = String::new();
    for line in sql.lines() {
        let line = line.split("--").next().unwrap_or_default();
        let mut in_string = None;
        for c in line.chars() {
            match in_string {
                Some(quote) if c == quote => in_string = None,
                Some(_) => {}
                None if c == '\'' || c == '"' || c == '`' => {
                    in_string = Some(c);
                    code.push(' ');
                }
                None => code.push(c),
            }
        }
        code.push('\n');
    }
    let mut found = BTreeSet::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .collect();
    for word in words {
        let top = word.split('.').next().unwrap_or_default();
        match top {
            "http_request" | "json_payload" | "resource" => {
                found.insert(word.to_owned());
            }
            "trace" | "span_id" | "trace_sampled" | "severity" | "timestamp" | "log_name"
                if word == top =>
            {
                found.insert(word.to_owned());
            }
            _ => {}
        }
    }
    found
}

/// The line field a column is read from, `None` for what the platform sets.
fn line_field(column: &str) -> Option<String> {
    let parts: Vec<&str> = column.split('.').collect();
    match parts.as_slice() {
        ["http_request"] => Some("httpRequest".to_owned()),
        ["http_request", field, ..] => Some(format!("httpRequest.{}", camel(field))),
        ["json_payload", field, ..] => Some((*field).to_owned()),
        ["trace"] => Some("logging.googleapis.com/trace".to_owned()),
        ["span_id"] => Some("logging.googleapis.com/spanId".to_owned()),
        ["trace_sampled"] => Some("logging.googleapis.com/trace_sampled".to_owned()),
        ["severity"] => Some("severity".to_owned()),
        ["timestamp"] => Some("time".to_owned()),
        _ => None,
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// One problem per column of `sql` that the source's lines do not carry.
fn check_query(file: &str, sql: &str, source: &Source, fields: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for column in columns(sql) {
        let carried = match line_field(&column) {
            Some(field) => {
                fields.contains(&field)
                    || fields.iter().any(|f| f.starts_with(&format!("{field}.")))
            }
            None => {
                PLATFORM_COLUMNS.contains(&column.as_str())
                    || column
                        .strip_prefix("resource.labels.")
                        .is_some_and(|label| source.resource_labels.contains(&label))
            }
        };
        if !carried {
            problems.push(format!(
                "{file}: reads {column}, which the {}'s log lines do not carry",
                source.name
            ));
        }
    }
    problems
}

/// Every query of `deploy/log-analytics` against the fields of its source.
pub(crate) fn check(repo_root: &Path) -> anyhow::Result<Vec<String>> {
    let service = service_fields(repo_root)?;
    let gateway = gateway_fields(repo_root)?;
    let dir = repo_root.join("deploy/log-analytics");
    let mut problems = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no .sql file", dir.display());
    }
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sql = std::fs::read_to_string(&path)?;
        let declared = sql
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- source: "))
            .map(str::trim);
        let Some(source) = SOURCES.iter().find(|s| Some(s.name) == declared) else {
            problems.push(format!(
                "{name}: the first line must be `-- source: service` or `-- source: gateway`"
            ));
            continue;
        };
        let fields = if source.name == "service" {
            &service
        } else {
            &gateway
        };
        problems.extend(check_query(&name, &sql, source, fields));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        crate::util::project_root()
    }

    #[test]
    fn committed_queries_read_only_fields_the_lines_carry() {
        let problems = check(&root()).expect("readable queries and sources");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_sources_are_read_from_the_code() {
        let service = service_fields(&root()).expect("service fields");
        for field in [
            "severity",
            "time",
            "logging.googleapis.com/trace",
            "logging.googleapis.com/spanId",
            "httpRequest.requestUrl",
            "httpRequest.latency",
            "httpRequest.status",
        ] {
            assert!(service.contains(field), "{field} not in {service:?}");
        }
        let gateway = gateway_fields(&root()).expect("gateway fields");
        for field in [
            "api_key",
            "api_method",
            "response_code_detail",
            "httpRequest.latency",
            "logging.googleapis.com/trace",
        ] {
            assert!(gateway.contains(field), "{field} not in {gateway:?}");
        }
        // The service's lines are not the gateway's: no API key there.
        assert!(!service.contains("api_key"), "{service:?}");
    }

    #[test]
    fn a_field_the_lines_do_not_carry_fails() {
        let root = root();
        let service = service_fields(&root).expect("service fields");
        let sql = "-- source: service\nSELECT JSON_VALUE(json_payload.api_key), http_request.cache_hit, \
                   JSON_VALUE(resource.labels.gateway_id) FROM t WHERE http_request.status = 500 -- json_payload.ignored";
        let problems = check_query("q.sql", sql, &SOURCES[0], &service);
        assert_eq!(
            problems,
            [
                "q.sql: reads http_request.cache_hit, which the service's log lines do not carry",
                "q.sql: reads json_payload.api_key, which the service's log lines do not carry",
                "q.sql: reads resource.labels.gateway_id, which the service's log lines do not carry",
            ]
        );
    }
}
