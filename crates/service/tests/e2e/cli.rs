//! The binary's `check-config` as an operator runs it.

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
