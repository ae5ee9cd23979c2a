//! service_control: the API key check and the quota (ESPv2's Service Control filter).

use actix_web::HttpRequest;

use super::reply::Refusal;
use super::request::header;
use super::routing::Matched;
use super::state::State;
use crate::keys;
use crate::log::Entry;

const MISSING_KEY: &str = "UNAUTHENTICATED: Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const INVALID_KEY: &str = "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.";

/// Checks the API key where the operation requires one and charges the consumer's quota.
/// Returns whether a key was checked (and so the backend learns the consumer).
pub(super) fn check(
    state: &State,
    req: &HttpRequest,
    matched: &Matched<'_>,
    query: &[(String, String)],
    entry: &mut Entry,
) -> Result<bool, Refusal> {
    // The key is looked for in query `key`, `api_key`, header `x-api-key`
    // (`service_control/config_parser.cc`), checked only when required.
    let api_key = ["key", "api_key"]
        .iter()
        .find_map(|k| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .or_else(|| header(req, "x-api-key"));
    entry.api_key.clone_from(&api_key);
    let key_checked = !matched.is_cors && matched.operation.requirements.api_key;
    if key_checked {
        check_key(state, api_key.as_deref(), entry)?;
    }
    charge_quota(state, matched, api_key.as_deref())?;
    Ok(key_checked)
}

/// Service Control's Check of the key, with ESPv2's replies and `api_key_state`
/// (esp-v2 `api_proxy/service_control/check_response_convert_utils.cc`,
/// `envoy/http/service_control/client_cache.cc`).
fn check_key(state: &State, api_key: Option<&str>, entry: &mut Entry) -> Result<(), Refusal> {
    match api_key {
        None => Err(Refusal::new(
            "service_control_bad_request{MISSING_API_KEY}",
            401,
            MISSING_KEY,
        )
        .cause("API_KEY")),
        // A key of a project that has not enabled the API: Check's SERVICE_NOT_ACTIVATED
        // (esp-v2 test `service_control_check_fail_test.go`).
        Some(k) if state.config.api_keys_not_enabled.iter().any(|n| n == k) => {
            entry.api_key_state = "NOT ENABLED";
            Err(Refusal::new(
                "service_control_check_error{SERVICE_NOT_ACTIVATED}",
                403,
                format!(
                    "PERMISSION_DENIED: API {} is not enabled for the project.",
                    state.spec.service_name()
                ),
            )
            .cause("API_KEY"))
        }
        Some(k) if !state.config.api_keys.iter().any(|known| known == k) => {
            entry.api_key_state = "INVALID";
            Err(Refusal::new(
                "service_control_check_error{API_KEY_INVALID}",
                400,
                INVALID_KEY,
            )
            .cause("API_KEY"))
        }
        Some(_) => {
            entry.api_key_state = "VERIFIED";
            Ok(())
        }
    }
}

/// The consumer is the key when there is one (required or not), else the producer project.
fn charge_quota(
    state: &State,
    matched: &Matched<'_>,
    api_key: Option<&str>,
) -> Result<(), Refusal> {
    let consumer = match api_key {
        Some(k) => format!("api_key:{k}"),
        None => format!("project:{}", state.config.producer_project),
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
    Err(Refusal::new(
        "service_control_quota_error{RESOURCE_EXHAUSTED}",
        429,
        format!(
            "RESOURCE_EXHAUSTED: Quota exceeded for quota metric '{}' and limit '{}' of service '{}' for consumer '{}'.",
            exceeded.metric,
            exceeded.limit,
            state.spec.service_name(),
            exceeded.consumer
        ),
    )
    .cause("QUOTA"))
}
