//! RFC 9457 problem details: the body of every error response.

use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Problem {
    /// A URI reference identifying the problem type (`about:blank` for plain HTTP errors).
    #[serde(rename = "type")]
    #[schema(format = "uri-reference", example = "/problems/validation-error")]
    pub kind: String,
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// Which inputs were wrong, when the problem is about input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub invalid_params: Vec<InvalidParam>,
    /// The request's trace id (32 hex digits), to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    pub trace_id: Option<String>,
}

/// One offending input: a body field (`name`), a path parameter (`id`), a query parameter
/// (`page_size`) or a header (`If-Match`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct InvalidParam {
    pub name: String,
    pub reason: String,
}
