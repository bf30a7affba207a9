//! `/api/v1/secrets`: setting, listing and removing a tenant's secrets over the service core.
//! Values go in only; every answer names secrets and their update times.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;

use super::rest::{Reply, ok, presented_key, tenant_param, value_body};
use super::views::{Envelope, ErrorEnvelope, SecretList, SecretView, SetSecret};
use crate::service::JobService;

#[derive(Clone)]
struct SecretsApi {
    service: Arc<JobService>,
}

pub fn router<S: Clone + Send + Sync + 'static>(service: Arc<JobService>) -> Router<S> {
    Router::new()
        .route("/api/v1/secrets", get(list_secrets))
        .route(
            "/api/v1/secrets/{name}",
            get(get_secret).put(set_secret).delete(remove_secret),
        )
        .with_state(SecretsApi { service })
}

/// Sets a secret's value: the body is the value itself, or `{"value": "…"}` sent as JSON.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(
        ("name" = String, Path, description = "1-128 characters of A-Z a-z 0-9 _ . -"),
        ("tenant_id" = Option<String>, Query, description = "The secret's tenant; default: default"),
    ),
    request_body(content = String, description = "The value (UTF-8, at most 64 KiB)"),
    responses((status = 200, body = Envelope<SetSecret>), (status = "4XX", body = ErrorEnvelope)))]
async fn set_secret(
    State(api): State<SecretsApi>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Reply<SetSecret> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let value = value_body(&headers, bytes)?;
    let (info, created) = api
        .service
        .set_secret(&caller, tenant_param(&params), &name, value)
        .await?;
    ok(SetSecret {
        created,
        secret: info.into(),
    })
}

/// The names and update times of a tenant's secrets.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    params(("tenant_id" = Option<String>, Query, description = "default: default")),
    responses((status = 200, body = Envelope<SecretList>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_secrets(
    State(api): State<SecretsApi>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<SecretList> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let secrets = api
        .service
        .list_secrets(&caller, tenant_param(&params))
        .await?;
    ok(SecretList {
        secrets: secrets.into_iter().map(SecretView::from).collect(),
    })
}

/// One secret's name and update time; its value is never answered.
#[utoipa::path(get, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(
        ("name" = String, Path, description = "The secret's name"),
        ("tenant_id" = Option<String>, Query, description = "default: default"),
    ),
    responses((status = 200, body = Envelope<SecretView>), (status = "4XX", body = ErrorEnvelope)))]
async fn get_secret(
    State(api): State<SecretsApi>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<SecretView> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    ok(api
        .service
        .secret_info(&caller, tenant_param(&params), &name)
        .await?
        .into())
}

/// Removes a secret; handlers granted it read nothing from then on.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(
        ("name" = String, Path, description = "The secret's name"),
        ("tenant_id" = Option<String>, Query, description = "default: default"),
    ),
    responses((status = 200, body = Envelope<SecretView>), (status = "4XX", body = ErrorEnvelope)))]
async fn remove_secret(
    State(api): State<SecretsApi>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<SecretView> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let removed = api
        .service
        .remove_secret(&caller, tenant_param(&params), &name)
        .await?;
    ok(removed.into())
}
