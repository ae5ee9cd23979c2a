//! The Swagger 2.0 document API Gateway reads, typed where the order of keys matters to a reader
//! (serde writes struct fields in declaration order; free-form parts are [`Value`]s written with
//! sorted keys).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::sorted_json::{sorted_map, sorted_value, sorted_vec};

/// `paths`: template → method → operation.
pub(crate) type Paths = BTreeMap<String, BTreeMap<Method, Operation>>;

/// A `security` list: alternatives, each naming its schemes (with no scopes).
pub(crate) type Security = Vec<BTreeMap<String, Vec<String>>>;

#[derive(Debug, Serialize)]
pub(crate) struct Document {
    pub(crate) swagger: &'static str,
    pub(crate) info: Info,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    pub(crate) schemes: Vec<&'static str>,
    pub(crate) produces: Vec<&'static str>,
    #[serde(rename = "x-google-endpoints", skip_serializing_if = "Vec::is_empty")]
    pub(crate) endpoints: Vec<Endpoint>,
    #[serde(rename = "x-google-management")]
    pub(crate) management: Management,
    #[serde(rename = "securityDefinitions")]
    pub(crate) security_definitions: BTreeMap<String, SecurityDefinition>,
    pub(crate) security: Security,
    #[serde(serialize_with = "sorted_value")]
    pub(crate) tags: Value,
    pub(crate) paths: Paths,
    #[serde(serialize_with = "sorted_value")]
    pub(crate) definitions: Value,
    #[serde(
        skip_serializing_if = "is_empty_object",
        serialize_with = "sorted_value"
    )]
    pub(crate) parameters: Value,
    #[serde(
        skip_serializing_if = "is_empty_object",
        serialize_with = "sorted_value"
    )]
    pub(crate) responses: Value,
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_none_or(Map::is_empty)
}

#[derive(Debug, Serialize)]
pub(crate) struct Info {
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) version: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Endpoint {
    pub(crate) name: String,
    #[serde(rename = "allowCors")]
    pub(crate) allow_cors: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Management {
    pub(crate) metrics: Vec<Metric>,
    pub(crate) quota: QuotaLimits,
}

#[derive(Debug, Serialize)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    #[serde(rename = "displayName")]
    pub(crate) display_name: &'static str,
    #[serde(rename = "valueType")]
    pub(crate) value_type: &'static str,
    #[serde(rename = "metricKind")]
    pub(crate) metric_kind: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct QuotaLimits {
    pub(crate) limits: Vec<Limit>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Limit {
    pub(crate) name: &'static str,
    pub(crate) metric: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) values: BTreeMap<&'static str, u32>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum SecurityDefinition {
    ApiKey {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'static str,
        #[serde(rename = "in")]
        location: &'static str,
    },
    Jwt {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "authorizationUrl")]
        authorization_url: String,
        flow: &'static str,
        #[serde(rename = "x-google-issuer")]
        issuer: String,
        #[serde(rename = "x-google-jwks_uri")]
        jwks_uri: String,
        #[serde(rename = "x-google-audiences")]
        audiences: String,
    },
}

/// Swagger method keys, ordered as [`crate::checks::METHODS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
    Options,
    Head,
    Patch,
}

impl Method {
    pub(crate) fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "get" => Self::Get,
            "put" => Self::Put,
            "post" => Self::Post,
            "delete" => Self::Delete,
            "options" => Self::Options,
            "head" => Self::Head,
            "patch" => Self::Patch,
            _ => return None,
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Operation {
    #[serde(rename = "operationId")]
    pub(crate) operation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) summary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tags: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) consumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) produces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "sorted_vec")]
    pub(crate) parameters: Vec<Value>,
    #[serde(serialize_with = "sorted_map")]
    pub(crate) responses: Map<String, Value>,
    /// Replaces the document's `security` for this operation (see [`super::policy::GATEWAY_AUTH`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) security: Option<Security>,
    #[serde(rename = "x-google-backend")]
    pub(crate) backend: Backend,
    #[serde(
        rename = "x-google-quota",
        skip_serializing_if = "OperationQuota::is_free"
    )]
    pub(crate) quota: OperationQuota,
}

#[derive(Debug, Serialize)]
pub(crate) struct Backend {
    pub(crate) address: String,
    pub(crate) path_translation: &'static str,
    pub(crate) jwt_audience: String,
    pub(crate) deadline: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct OperationQuota {
    #[serde(rename = "metricCosts")]
    pub(crate) metric_costs: BTreeMap<&'static str, u32>,
}

impl OperationQuota {
    pub(crate) fn is_free(&self) -> bool {
        self.metric_costs.is_empty()
    }
}
