//! The binary's `check-config` as an operator runs it.

use std::collections::BTreeMap;
use std::process::Output;

/// `items-service check-config` with only `vars` set (no `APP__…`, `OTEL_*` or `K_SERVICE` of the
/// test process).
fn check_config(vars: &[(&str, &str)]) -> Output {
    let launch = vars.iter().fold(
        crate::support::launch_binary()
            .clean_env()
            .arg("check-config"),
        |launch, (name, value)| launch.env(*name, value),
    );
    launch.std_command().output().unwrap()
}

#[test]
fn prod_without_a_page_token_key_fails_naming_it() {
    let out = check_config(&[("APP_ENVIRONMENT", "prod")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("api.page_token_secret"), "{stderr}");

    // The public development key is refused as well.
    let out = check_config(&[
        ("APP_ENVIRONMENT", "prod"),
        (
            "APP__API__PAGE_TOKEN_SECRET",
            "items-local-page-token-secret",
        ),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("api.page_token_secret") && stderr.contains("development key"),
        "{stderr}"
    );
}

#[test]
fn otel_service_name_shows_in_check_config() {
    let out = check_config(&[("OTEL_SERVICE_NAME", "x")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("service.name = \"x\"") && stdout.contains("OTEL_SERVICE_NAME"),
        "{stdout}"
    );
    // The APP__ twin wins, and check-config says so.
    let out = check_config(&[
        ("OTEL_SERVICE_NAME", "x"),
        ("APP__TELEMETRY__SERVICE_NAME", "y"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("service.name = \"y\"") && stdout.contains("APP__TELEMETRY__SERVICE_NAME"),
        "{stdout}"
    );
}

/// Header values may be credentials: a malformed `OTEL_EXPORTER_OTLP_HEADERS` (ignored with a
/// warning) or `APP__TELEMETRY__OTLP_HEADERS` (an error) is reported without its text.
#[test]
fn check_config_never_echoes_malformed_otlp_headers() {
    let out = check_config(&[("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr3t%zz")]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{all}");
    assert!(!all.contains("s3cr3t"), "{all}");

    let out = check_config(&[(
        "APP__TELEMETRY__OTLP_HEADERS",
        "authorization=Bearer s3cr3t,x",
    )]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("telemetry.otlp_headers"), "{all}");
    assert!(!all.contains("s3cr3t"), "{all}");
}

/// A table's values by dotted key (arrays are values).
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(t) => flatten(&key, t, out),
            v => {
                out.insert(key, v.clone());
            }
        }
    }
}

fn values(text: &str) -> BTreeMap<String, toml::Value> {
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    out
}

/// What the config files say for `env`: config/base.toml, the `[cors]` table of the deployment
/// file (dev, stage, prod), then the environment's file.
fn stated(env: &str) -> BTreeMap<String, toml::Value> {
    let (env_file, deploy) = match env {
        "local" => (include_str!("../../config/local.toml"), None),
        "dev" => (
            include_str!("../../config/dev.toml"),
            Some(include_str!("../../../../deploy/environments/dev.toml")),
        ),
        "stage" => (
            include_str!("../../config/stage.toml"),
            Some(include_str!("../../../../deploy/environments/stage.toml")),
        ),
        "prod" => (
            include_str!("../../config/prod.toml"),
            Some(include_str!("../../../../deploy/environments/prod.toml")),
        ),
        other => panic!("no environment {other}"),
    };
    let mut out = values(include_str!("../../config/base.toml"));
    if let Some(deploy) = deploy {
        out.extend(
            values(deploy)
                .into_iter()
                .filter(|(k, _)| k.starts_with("cors.")),
        );
    }
    out.extend(values(env_file));
    out
}

/// A file in a directory of its own, removed on drop.
struct SecretFile(std::path::PathBuf);

impl SecretFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("items-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// The output parses as TOML and has exactly the config files' keys (with the variables' on
/// top), each with the files' value, secrets redacted, and where it came from.
#[test]
fn check_config_prints_the_config_files_tables_and_keys_as_toml() {
    let key = SecretFile::new("page-token", "0123456789abcdef0123456789abcdef-cli\n");
    let password = SecretFile::new("db-password", "pw\n");
    for env in ["local", "dev", "stage", "prod"] {
        let mut vars = vec![("APP_ENVIRONMENT", env.to_owned())];
        if env != "local" {
            vars.push(("APP__API__PAGE_TOKEN_SECRET_FILE", key.path()));
            vars.push(("APP__DATABASE__PASSWORD_FILE", password.path()));
        }
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = check_config(&vars);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{env}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = values(&stdout);
        let mut expected = stated(env);
        if env != "local" {
            expected.insert("api.page_token_secret_file".into(), key.path().into());
            expected.insert("database.password_file".into(), password.path().into());
        } else {
            expected.insert("api.page_token_secret".into(), "REDACTED".into());
        }
        assert_eq!(
            printed.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{env}:\n{stdout}"
        );
        for (k, v) in &expected {
            assert_eq!(&printed[k], v, "{env}: {k}\n{stdout}");
        }
        // Where each value came from, as a comment after it.
        let line = |start: &str| {
            stdout
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("{env}: no line {start}\n{stdout}"))
                .to_owned()
        };
        assert!(line("shutdown_timeout_secs = ").ends_with("# config/base.toml"));
        if env == "local" {
            assert!(line("format = \"pretty\"").ends_with("# config/local.toml"));
        } else {
            assert!(line("exporter = \"otlp\"").ends_with(&format!("# config/{env}.toml")));
            assert!(line("password_file = ").ends_with("# APP__DATABASE__PASSWORD_FILE"));
            assert!(
                line("allow_origins = ")
                    .ends_with(&format!("# deploy/environments/{env}.toml [cors]"))
            );
        }
    }
}

#[test]
fn check_config_prints_no_secret() {
    let markers = [
        "marker-page-token-0123456789abcdef0123456789",
        "marker-previous-a",
        "marker-previous-b",
        "marker-db-password",
        "marker-url-password",
        "marker-header",
    ];
    let out = check_config(&[
        ("APP__API__PAGE_TOKEN_SECRET", markers[0]),
        (
            "APP__API__PAGE_TOKEN_PREVIOUS_SECRETS",
            &format!("{},{}", markers[1], markers[2]),
        ),
        ("APP__DATABASE__PASSWORD", markers[3]),
        (
            "APP__DATABASE__URL",
            &format!("postgres://user:{}@127.0.0.1:1/items", markers[4]),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            &format!("x-api-key={}", markers[5]),
        ),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    for marker in markers {
        assert!(!all.contains(marker), "{marker}:\n{all}");
    }
    let printed = values(&stdout);
    let redacted = toml::Value::from("REDACTED");
    assert_eq!(printed["api.page_token_secret"], redacted);
    assert_eq!(printed["database.password"], redacted);
    assert_eq!(printed["database.url"], redacted);
    assert_eq!(
        printed["api.page_token_previous_secrets"],
        toml::Value::Array(vec![redacted.clone(), redacted])
    );
    assert_eq!(
        printed["telemetry.otlp_headers"],
        toml::Value::from("x-api-key=REDACTED")
    );
}
