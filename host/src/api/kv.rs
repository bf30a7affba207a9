//! `/api/v1/kv`: operators' view and edits of tenants' key-value buckets, over the service
//! core.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;

use super::rest::{Reply, ok, presented_key, tenant_param, value_body};
use super::views::{
    Envelope, ErrorEnvelope, KvBucketList, KvBucketView, KvKeyList, KvValue, KvWritten,
};
use crate::service::{DEFAULT_TENANT, JobService, ServiceError};

#[derive(Clone)]
struct KvApi {
    service: Arc<JobService>,
}

pub fn router<S: Clone + Send + Sync + 'static>(service: Arc<JobService>) -> Router<S> {
    Router::new()
        .route("/api/v1/kv", get(list_buckets))
        .route("/api/v1/kv/{bucket}", get(list_keys))
        .route(
            "/api/v1/kv/{bucket}/{*key}",
            get(get_value).put(set_value).delete(delete_value),
        )
        .with_state(KvApi { service })
}

/// A tenant's buckets that hold keys.
#[utoipa::path(get, path = "/api/v1/kv", tag = "kv",
    params(("tenant_id" = Option<String>, Query, description = "default: default")),
    responses((status = 200, body = Envelope<KvBucketList>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_buckets(
    State(api): State<KvApi>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<KvBucketList> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let buckets = api
        .service
        .kv_buckets(&caller, tenant_param(&params))
        .await?;
    let tenant_id = match tenant_param(&params).trim() {
        "" => DEFAULT_TENANT.to_string(),
        named => named.to_string(),
    };
    ok(KvBucketList {
        tenant_id,
        buckets: buckets
            .into_iter()
            .map(|b| KvBucketView {
                name: b.name,
                keys: b.usage.keys,
                bytes: b.usage.bytes,
            })
            .collect(),
        limits: api.service.quotas().kv,
    })
}

/// A page of a bucket's keys, in byte order.
#[utoipa::path(get, path = "/api/v1/kv/{bucket}", tag = "kv",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("tenant_id" = Option<String>, Query, description = "default: default"),
        ("after" = Option<String>, Query, description = "The previous page's `next`"),
        ("limit" = Option<u32>, Query, description = "1 to 1000; 100 by default"),
    ),
    responses((status = 200, body = Envelope<KvKeyList>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_keys(
    State(api): State<KvApi>,
    headers: HeaderMap,
    Path(bucket): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<KvKeyList> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let limit = match params.get("limit") {
        None => None,
        Some(text) => Some(text.trim().parse().map_err(|_| {
            ServiceError::InvalidArgument(format!("limit must be a number, not '{text}'"))
        })?),
    };
    let page = api
        .service
        .kv_keys(
            &caller,
            tenant_param(&params),
            &bucket,
            params.get("after").map(String::as_str),
            limit,
        )
        .await?;
    ok(KvKeyList {
        keys: page.keys,
        next: page.next,
    })
}

/// The value under a key.
#[utoipa::path(get, path = "/api/v1/kv/{bucket}/{key}", tag = "kv",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("key" = String, Path, description = "The key (may contain /)"),
        ("tenant_id" = Option<String>, Query, description = "default: default"),
    ),
    responses((status = 200, body = Envelope<KvValue>), (status = "4XX", body = ErrorEnvelope)))]
async fn get_value(
    State(api): State<KvApi>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<KvValue> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let bytes = api
        .service
        .kv_get(&caller, tenant_param(&params), &bucket, &key)
        .await?;
    let size = bytes.len();
    let (value, value_hex) = match String::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(error) => (None, Some(hex::encode(error.into_bytes()))),
    };
    ok(KvValue {
        key,
        value,
        value_hex,
        bytes: size,
    })
}

/// Sets the value under a key: the body is the value itself, or `{"value": "…"}` sent as
/// JSON. Durable when answered; held to the tenant's quotas.
#[utoipa::path(put, path = "/api/v1/kv/{bucket}/{key}", tag = "kv",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("key" = String, Path, description = "The key (may contain /)"),
        ("tenant_id" = Option<String>, Query, description = "default: default"),
    ),
    request_body(content = String, description = "The value"),
    responses((status = 200, body = Envelope<KvWritten>), (status = "4XX", body = ErrorEnvelope)))]
async fn set_value(
    State(api): State<KvApi>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Reply<KvWritten> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    let value = value_body(&headers, bytes)?;
    api.service
        .kv_set(&caller, tenant_param(&params), &bucket, &key, value)
        .await?;
    ok(KvWritten { key })
}

/// Deletes a key.
#[utoipa::path(delete, path = "/api/v1/kv/{bucket}/{key}", tag = "kv",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("key" = String, Path, description = "The key (may contain /)"),
        ("tenant_id" = Option<String>, Query, description = "default: default"),
    ),
    responses((status = 200, body = Envelope<KvWritten>), (status = "4XX", body = ErrorEnvelope)))]
async fn delete_value(
    State(api): State<KvApi>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<KvWritten> {
    let caller = api.service.authenticate(presented_key(&headers))?;
    api.service
        .kv_delete(&caller, tenant_param(&params), &bucket, &key)
        .await?;
    ok(KvWritten { key })
}
