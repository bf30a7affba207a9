//! `GET /api/v1/backup`: the store's snapshot file, streamed as the service core writes it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_stream::wrappers::ReceiverStream;

use super::rest::{ApiError, presented_key};
use super::views::ErrorEnvelope;
use crate::service::{JobService, ServiceError};

pub fn router<S: Clone + Send + Sync + 'static>(service: Arc<JobService>) -> Router<S> {
    Router::new()
        .route("/api/v1/backup", get(download_backup))
        .with_state(service)
}

/// A consistent snapshot of the whole store, as a snapshot file for `jobhost restore`. Needs
/// a key with the permission `*` on every tenant.
#[utoipa::path(get, path = "/api/v1/backup", tag = "operations",
    params(("with_compiled" = Option<bool>, Query,
        description = "Also include the compiled-code cache")),
    responses(
        (status = 200, description = "The snapshot file", content_type = "application/octet-stream",
            body = Vec<u8>),
        (status = "4XX", body = ErrorEnvelope)))]
async fn download_backup(
    State(service): State<Arc<JobService>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = service.authenticate(presented_key(&headers))?;
    let with_compiled = match params.get("with_compiled").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ServiceError::InvalidArgument(format!(
                "with_compiled must be true or false, not '{other}'"
            ))
            .into());
        }
    };
    let chunks = service.backup(&caller, with_compiled).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream"),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"jobhost.snapshot\"",
        ),
    ];
    Ok((headers, Body::from_stream(ReceiverStream::new(chunks))).into_response())
}
