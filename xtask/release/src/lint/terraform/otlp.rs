//! Check 8: the Cloud Run module of every environment sets `OTEL_EXPORTER_OTLP_ENDPOINT` to the
//! port of the collector sidecar's OTLP/HTTP receiver, read from `deploy/otel/collector.yaml`
//! (`receivers.otlp.protocols.http.endpoint`). The service speaks OTLP/HTTP only, so the
//! collector's gRPC port (4317) would lose every span and metric without an error at deploy time.

use std::fs;
use std::path::Path;

use anyhow::Context as _;
use yaml_serde::Value;

use super::module::{
    EnvironmentStack, environment_stacks, eval_string, find_in_locals, relative, string_locals,
};

const VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Checks the endpoint of every environment's Cloud Run module against the receivers of the
/// collector configuration at `collector`. A broken envs → stack → cloudrun chain is check 6's
/// problem, not reported again here.
pub(super) fn check_otlp_endpoints(
    envs: &Path,
    collector: &Path,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let name = relative(collector, root);
    let text = fs::read_to_string(collector).with_context(|| format!("reading {name}"))?;
    let config: Value =
        yaml_serde::from_str(&text).with_context(|| format!("{name}: not valid YAML"))?;
    let receiver_port = |protocol: &str| {
        config["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
            .as_str()
            .and_then(port_of_host_port)
    };
    let Some(http_port) = receiver_port("http") else {
        return Ok(vec![format!(
            "{name}: receivers.otlp.protocols.http.endpoint is not a host:port, so the port the service must export to is unknown"
        )]);
    };
    let grpc_port = receiver_port("grpc");
    let (stacks, _) = environment_stacks(envs, root)?;
    Ok(stacks
        .iter()
        .filter_map(|stack| check_endpoint(stack, &name, http_port, grpc_port))
        .collect())
}

/// The problem with one environment's endpoint, if any.
fn check_endpoint(
    stack: &EnvironmentStack,
    collector: &str,
    http_port: u16,
    grpc_port: Option<u16>,
) -> Option<String> {
    let what = &stack.cloudrun_name;
    let wanted =
        format!("the collector's OTLP/HTTP receiver listens on port {http_port} ({collector})");
    let Some(endpoint) = find_in_locals(&stack.cloudrun, VARIABLE)
        .and_then(|e| eval_string(e, &string_locals(&stack.cloudrun)))
    else {
        return Some(format!(
            "{what}: no {VARIABLE} (a string) in the app's environment; {wanted}"
        ));
    };
    let port = endpoint
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.port_u16());
    match port {
        Some(port) if port == http_port => None,
        Some(port) if Some(port) == grpc_port => Some(format!(
            "{what}: {VARIABLE} is \"{endpoint}\", the collector's gRPC port, but the service speaks OTLP/HTTP; {wanted}"
        )),
        Some(port) => Some(format!(
            "{what}: {VARIABLE} is \"{endpoint}\" (port {port}) but {wanted}"
        )),
        None => Some(format!(
            "{what}: {VARIABLE} is \"{endpoint}\", which names no port; {wanted}"
        )),
    }
}

/// `localhost:4318` → 4318.
fn port_of_host_port(endpoint: &str) -> Option<u16> {
    endpoint.rsplit_once(':')?.1.parse().ok()
}
