//! The OpenTelemetry specification's environment variables (`OTEL_*`), mapped onto the
//! `telemetry.*` settings they configure. The service layers them between its configuration
//! files and its own `APP__…` variables, so an `APP__…` setting wins over its `OTEL_*` twin.
//!
//! As the specification asks, an empty value counts as unset, and a value that cannot be used is
//! ignored with a warning (the service still starts); `OTEL_RESOURCE_ATTRIBUTES` and
//! `OTEL_EXPORTER_OTLP_HEADERS` are discarded whole when any entry is malformed.

/// Each supported variable and the setting it feeds (`OTEL_SDK_DISABLED=true` sets
/// `telemetry.exporter = "none"`; `OTEL_TRACES_SAMPLER_ARG` is the ratio of the ratio samplers).
pub const OTEL_VARIABLES: [(&str, &str); 10] = [
    ("OTEL_SDK_DISABLED", "telemetry.exporter"),
    ("OTEL_SERVICE_NAME", "telemetry.service_name"),
    ("OTEL_RESOURCE_ATTRIBUTES", "telemetry.resource_attributes"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "telemetry.otlp_traces_endpoint",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "telemetry.otlp_metrics_endpoint",
    ),
    ("OTEL_EXPORTER_OTLP_HEADERS", "telemetry.otlp_headers"),
    (
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "telemetry.otlp_compression",
    ),
    ("OTEL_TRACES_SAMPLER", "telemetry.sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "telemetry.sample_ratio"),
];

/// Settings taken from `OTEL_*` variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtelEnv {
    /// `(setting key, value, variable)` for every variable that is set and usable.
    pub values: Vec<(&'static str, String, &'static str)>,
    /// Variables that were set but ignored, and why.
    pub warnings: Vec<String>,
}

/// Reads the `OTEL_*` variables through `get` (the process environment in production).
pub fn otel_env(get: impl Fn(&str) -> Option<String>) -> OtelEnv {
    let mut out = OtelEnv::default();
    for (var, key) in OTEL_VARIABLES {
        let Some(raw) = get(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = raw.trim();
        let parsed: Result<Option<String>, String> = match var {
            "OTEL_SDK_DISABLED" => match value.to_ascii_lowercase().as_str() {
                "true" => Ok(Some("none".to_owned())),
                "false" => Ok(None),
                _ => Err("expected true or false".to_owned()),
            },
            "OTEL_RESOURCE_ATTRIBUTES" | "OTEL_EXPORTER_OTLP_HEADERS" => {
                parse_key_values(value).map(|_| Some(value.to_owned()))
            }
            "OTEL_EXPORTER_OTLP_ENDPOINT"
            | "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            | "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" => {
                check_url(value).map(|()| Some(value.to_owned()))
            }
            "OTEL_EXPORTER_OTLP_COMPRESSION" => match value.to_ascii_lowercase().as_str() {
                v @ ("gzip" | "none") => Ok(Some(v.to_owned())),
                _ => Err("expected gzip or none".to_owned()),
            },
            "OTEL_TRACES_SAMPLER" => {
                let v = value.to_ascii_lowercase();
                if SAMPLERS.contains(&v.as_str()) {
                    Ok(Some(v))
                } else {
                    Err(format!("supported samplers: {}", SAMPLERS.join(", ")))
                }
            }
            "OTEL_TRACES_SAMPLER_ARG" => match value.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(Some(value.to_owned())),
                _ => Err("expected a probability between 0 and 1".to_owned()),
            },
            _ => Ok(Some(value.to_owned())),
        };
        match parsed {
            Ok(Some(v)) => out.values.push((key, v, var)),
            Ok(None) => {}
            // The headers may hold credentials (an API key, a bearer token): never echoed.
            Err(why) if var == "OTEL_EXPORTER_OTLP_HEADERS" => out
                .warnings
                .push(format!("{var} ignored (its value is not shown): {why}")),
            Err(why) => out.warnings.push(format!("{var}={raw:?} ignored: {why}")),
        }
    }
    out
}

/// The `OTEL_TRACES_SAMPLER` values this service supports (the specification's built-in ones).
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// `key1=value1,key2=value2` as `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` write
/// it: entries separated by commas, whitespace around keys and values trimmed, values (and keys)
/// percent-decoded. An empty string is an empty list; any malformed entry fails the whole value.
/// Errors name the entry by position, never by its text: header values may be credentials.
pub fn parse_key_values(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, entry) in input.split(',').enumerate().map(|(i, e)| (i + 1, e)) {
        if entry.trim().is_empty() {
            continue;
        }
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("entry {n} is not key=value"))?;
        let key = percent_decode(key.trim()).map_err(|why| format!("entry {n}: key {why}"))?;
        if key.is_empty() {
            return Err(format!("entry {n} has an empty key"));
        }
        let value =
            percent_decode(value.trim()).map_err(|why| format!("entry {n}: value {why}"))?;
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "has malformed percent-encoding".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is percent-encoded bytes that are not UTF-8".to_owned())
}

/// An `http://` or `https://` URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    url.parse::<http::Uri>()
        .map(|_| ())
        .map_err(|e| format!("{url:?}: {e}"))
}

/// The URL of one signal from a base URL, as the specification says for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: `v1/traces` or `v1/metrics` appended to the base path (with one
/// slash between them).
pub fn signal_url(base: &str, signal_path: &str) -> String {
    format!("{}/{signal_path}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> OtelEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        otel_env(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn every_variable_feeds_its_setting() {
        let got = env(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_SERVICE_NAME", "x"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=a%2Cb",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example.com/custom",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://m:4318/v1/metrics",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, x-tenant = t1",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
            ("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert!(got.warnings.is_empty(), "{:?}", got.warnings);
        let keys: Vec<(&str, &str)> = got
            .values
            .iter()
            .map(|(k, v, _)| (*k, v.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("telemetry.exporter", "none"),
                ("telemetry.service_name", "x"),
                (
                    "telemetry.resource_attributes",
                    "deployment.environment=prod,team=a%2Cb"
                ),
                ("telemetry.otlp_endpoint", "http://collector:4318/base"),
                (
                    "telemetry.otlp_traces_endpoint",
                    "https://traces.example.com/custom"
                ),
                (
                    "telemetry.otlp_metrics_endpoint",
                    "http://m:4318/v1/metrics"
                ),
                ("telemetry.otlp_headers", "api-key=s%3Dcret, x-tenant = t1"),
                ("telemetry.otlp_compression", "gzip"),
                ("telemetry.sampler", "parentbased_traceidratio"),
                ("telemetry.sample_ratio", "0.25"),
            ]
        );
    }

    #[test]
    fn empty_false_and_malformed_values_are_ignored() {
        let got = env(&[
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_SERVICE_NAME", ""),
            ("OTEL_RESOURCE_ATTRIBUTES", "ok=1,broken"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        assert!(got.values.is_empty(), "{:?}", got.values);
        assert_eq!(got.warnings.len(), 6, "{:?}", got.warnings);
        for var in [
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
        ] {
            assert!(
                got.warnings.iter().any(|w| w.starts_with(var)),
                "{var}: {:?}",
                got.warnings
            );
        }
    }

    #[test]
    fn a_malformed_headers_value_is_never_echoed() {
        for headers in [
            "authorization=Bearer%zzs3cr3t-token",
            "x-api-key=s3cr3t-token,broken-s3cr3t",
            "x-api-key=s3cr3t-token,=s3cr3t",
            "x-api-key=s3cr3t%ff%fe",
        ] {
            let got = env(&[("OTEL_EXPORTER_OTLP_HEADERS", headers)]);
            assert!(got.values.is_empty(), "{headers}: {:?}", got.values);
            assert_eq!(got.warnings.len(), 1, "{headers}: {:?}", got.warnings);
            let warning = &got.warnings[0];
            assert!(
                warning.starts_with("OTEL_EXPORTER_OTLP_HEADERS") && !warning.contains("s3cr3t"),
                "{headers}: {warning}"
            );
            let err = parse_key_values(headers).unwrap_err();
            assert!(!err.contains("s3cr3t") && err.contains("entry"), "{err}");
        }
    }

    #[test]
    fn key_values_are_trimmed_and_percent_decoded() {
        assert_eq!(
            parse_key_values(" a = 1 ,b=x%2Cy%3Dz,, c=").unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x,y=z".to_owned()),
                ("c".to_owned(), String::new()),
            ]
        );
        assert!(parse_key_values("").unwrap().is_empty());
        assert!(parse_key_values("=v").is_err());
        assert!(parse_key_values("k=%e2%82").is_err());
    }

    #[test]
    fn the_generic_endpoint_gets_the_signal_path_appended() {
        assert_eq!(
            signal_url("http://localhost:4318", "v1/traces"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://localhost:4318/", "v1/metrics"),
            "http://localhost:4318/v1/metrics"
        );
        assert_eq!(
            signal_url("https://c.example.com/otlp", "v1/traces"),
            "https://c.example.com/otlp/v1/traces"
        );
    }
}
