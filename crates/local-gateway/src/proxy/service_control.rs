//! service_control: the API key check and the quota (ESPv2's Service Control filter).

use actix_web::HttpRequest;

use super::reply::Refusal;
use super::routing::Matched;
use super::state::State;
use crate::keys;
use crate::log::Entry;

/// The status message of a missing key (esp-v2 `service_control/handler_impl.cc`); the reply is
/// `UNAUTHENTICATED: ` + it (`filter.cc` `status.ToString()`), the log's `error_cause` it alone.
const MISSING_KEY: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
/// esp-v2 `api_proxy/service_control/check_response_convert_utils.cc`.
const INVALID_KEY: &str = "API key not valid. Please pass a valid API key.";

/// The request's API key as ESPv2 extracts it (`service_control/config_parser.cc` default
/// locations; `handler_utils.cc` `extractAPIKeyFromQuery`/`FromHeader`): the first location that
/// is present wins, query `key`, then `api_key` (the first of repeated parameters, as sent), then
/// header `x-api-key`. A present but empty one (`?key=`) ends the search with no key
/// (`handler_impl.h` `hasApiKey`).
pub(super) fn api_key<'a>(req: &'a HttpRequest, query: &'a [(String, String)]) -> &'a str {
    ["key", "api_key"]
        .iter()
        .find_map(|k| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or_default()
}

/// A refusal of Service Control: the reply's message is the status code's name and the
/// status message; `error_cause` is the status message (esp-v2 `request_builder.cc`
/// `FillLogEntry`: `info.status.message()`).
fn sc_refusal(detail: &'static str, status: u16, code: &str, message: String) -> Refusal {
    Refusal::new(detail, status, format!("{code}: {message}")).cause(message)
}

/// Checks the API key where the operation requires one and charges the consumer's quota.
/// Returns the consumer project of a checked key (the backend learns its number).
pub(super) fn check<'s>(
    state: &'s State,
    matched: &Matched<'_>,
    api_key: &str,
    entry: &mut Entry,
) -> Result<Option<&'s str>, Refusal> {
    let key_checked = !matched.is_cors && matched.operation.requirements.api_key;
    let project = if key_checked {
        Some(check_key(state, api_key, entry)?)
    } else {
        None
    };
    charge_quota(state, matched, api_key)?;
    Ok(project)
}

/// Service Control's Check of the key, with ESPv2's replies and `api_key_state`
/// (esp-v2 `api_proxy/service_control/check_response_convert_utils.cc`,
/// `envoy/http/service_control/client_cache.cc`); the key's consumer project when it passes.
fn check_key<'s>(state: &'s State, api_key: &str, entry: &mut Entry) -> Result<&'s str, Refusal> {
    if api_key.is_empty() {
        return Err(sc_refusal(
            "service_control_bad_request{MISSING_API_KEY}",
            401,
            "UNAUTHENTICATED",
            MISSING_KEY.to_owned(),
        ));
    }
    // A key of a project that has not enabled the API: Check's SERVICE_NOT_ACTIVATED
    // (esp-v2 test `service_control_check_fail_test.go`).
    if state
        .config
        .api_keys_not_enabled
        .iter()
        .any(|n| n == api_key)
    {
        entry.api_key_state = "NOT ENABLED";
        return Err(sc_refusal(
            "service_control_check_error{SERVICE_NOT_ACTIVATED}",
            403,
            "PERMISSION_DENIED",
            format!(
                "API {} is not enabled for the project.",
                state.spec.service_name()
            ),
        ));
    }
    if !state.config.api_keys.iter().any(|known| known == api_key) {
        entry.api_key_state = "INVALID";
        return Err(sc_refusal(
            "service_control_check_error{API_KEY_INVALID}",
            400,
            "INVALID_ARGUMENT",
            INVALID_KEY.to_owned(),
        ));
    }
    entry.api_key_state = "VERIFIED";
    Ok(state.key_project(api_key))
}

/// AllocateQuota's consumer is `api_key:<key>`, or `project:<producer project>` without one
/// (esp-v2 `request_builder.cc`), and Service Control charges the limit (`1/min/{project}`) to
/// the consumer's project ("Configuring quotas"): keys of one project share a bucket, and a
/// request without a key uses the producer project's. A key the local list does not know has no
/// project here and gets a bucket of its own [not confirmed].
fn charge_quota(state: &State, matched: &Matched<'_>, api_key: &str) -> Result<(), Refusal> {
    if matched.operation.metric_costs.is_empty() {
        return Ok(());
    }
    let known = state.config.api_keys.iter().any(|k| k == api_key);
    let consumer = if api_key.is_empty() {
        state.consumer_id(&state.config.producer_project)
    } else if known {
        state.consumer_id(state.key_project(api_key))
    } else {
        format!("api_key:{api_key}")
    };
    let minute = keys::now_secs() / 60;
    let Err(exceeded) = state.quotas.allocate(
        &state.spec.limits,
        &matched.operation.metric_costs,
        &consumer,
        minute,
    ) else {
        return Ok(());
    };
    // ESPv2 prefixes Service Control's QuotaError description, whose real text is
    // [not confirmed]; this one is shaped like Google's quota errors.
    Err(sc_refusal(
        "service_control_quota_error{RESOURCE_EXHAUSTED}",
        429,
        "RESOURCE_EXHAUSTED",
        format!(
            "Quota exceeded for quota metric '{}' and limit '{}' of service '{}' for consumer '{}'.",
            exceeded.metric,
            exceeded.limit,
            state.spec.service_name(),
            exceeded.consumer
        ),
    ))
}
