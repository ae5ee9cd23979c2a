use actix_web::{HttpResponse, web};
use items_domain::ItemStore;

use crate::{ApiError, ApiState};

/// Liveness: the process answers; never touches the database.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: a pooled connection answers a query.
pub(crate) async fn readyz<S: ItemStore>(
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ready()
        .await
        .map_err(|e| match ApiError::from(e) {
            // Whatever the cause, "not ready" is a 503 that the platform retries.
            ApiError::Internal(e) => ApiError::Unavailable(items_domain::StoreError::Other(e)),
            other => other,
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}
