//! The domain's errors: invalid input (`DomainError`) and what the storage port reports
//! (`StoreError`).

use thiserror::Error;

/// A value that does not satisfy the domain's rules. `field` names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct DomainError {
    pub field: &'static str,
    pub reason: String,
}

impl DomainError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// What the storage port can report. Only `http` turns these into status codes.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The item does not exist.
    #[error("item not found")]
    NotFound,
    /// `If-Match` did not match the stored version.
    #[error("precondition failed: the item has changed")]
    PreconditionFailed,
    /// The idempotency key was used before with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The store cannot answer now (database down, pool exhausted, timeout); retry later.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else; keeps its cause chain for the log.
    #[error("storage failure")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}
