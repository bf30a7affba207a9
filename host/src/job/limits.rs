//! Bounds on what a request may ask for. Requests beyond them are refused as invalid, so no
//! single job can exhaust memory, disk or time.

/// Largest request message (gRPC) or body (REST).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Longest job type, worker name or error message kept as given.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest error message kept on a failure.
pub const MAX_ERROR_BYTES: usize = 4096;
/// Custom headers one job may carry.
pub const MAX_CUSTOM_HEADERS: usize = 64;
/// Longest custom header value.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// Deepest nesting of arrays and objects in variables and results (serde_json refuses
/// deeper documents while parsing, so no recursion can exhaust the stack).
pub const MAX_JSON_DEPTH: usize = 128;
/// Follow-up jobs one Wasm completion may create.
pub const MAX_FOLLOW_UPS: usize = 1000;
/// Retries a job may be given.
pub const MAX_RETRIES: i32 = 1000;
/// Retries of a job created without a number.
pub const DEFAULT_RETRIES: i32 = 3;
/// Lease length of an activation that names none.
pub const DEFAULT_JOB_TIMEOUT_MS: i64 = 30_000;
/// Longest lease.
pub const MAX_JOB_TIMEOUT_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest backoff after a failure, and latest delay of a scheduled job.
pub const MAX_BACKOFF_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// Jobs per activation when the request names no number.
pub const DEFAULT_MAX_JOBS: usize = 10;
/// Most jobs one activation may take.
pub const MAX_JOBS_PER_ACTIVATION: usize = 100;
/// Most jobs one batch creation may carry.
pub const MAX_JOBS_PER_BATCH: usize = 1000;
/// How long a long poll waits when the request does not say.
pub const DEFAULT_LONG_POLL_MS: i64 = 10_000;
/// Longest long poll.
pub const MAX_LONG_POLL_MS: i64 = 60 * 60 * 1000;
/// Failures kept in a job's history (the count of all failures is kept too).
pub const FAILURE_HISTORY_KEPT: usize = 50;

/// Checks a tenant id: 1-31 characters of `[A-Za-z0-9._-]`.
pub fn valid_tenant_id(tenant: &str) -> bool {
    (1..=31).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Checks a job's custom headers against the limits; answers why they are refused.
pub fn check_custom_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(format!(
            "custom_headers may hold at most {MAX_CUSTOM_HEADERS} headers, got {}",
            headers.len()
        ));
    }
    for (name, value) in headers {
        if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "custom header names must be 1-{MAX_NAME_BYTES} bytes, got {}",
                name.len()
            ));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(format!(
                "custom header '{}' is {} bytes; at most {MAX_HEADER_VALUE_BYTES} are kept",
                truncate(name.clone(), 64),
                value.len()
            ));
        }
    }
    Ok(())
}

/// Checks that `text` can be a job's variables, from any source (an API, a handler's result
/// or follow-up): at most [`MAX_MESSAGE_BYTES`] and one JSON object. Answers why not, naming
/// `field`. Checked without building the value.
pub fn check_variables(field: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{field} exceed {MAX_MESSAGE_BYTES} bytes ({} bytes)",
            text.len()
        ));
    }
    if !text.trim_start().starts_with('{') {
        return Err(format!("{field} must be a JSON object"));
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("{field} is not valid JSON: {error}")),
    }
}

/// Checks an idempotency key (present: non-empty) against the limits; answers why it is
/// refused. Stored keys join tenant, type and key with NULs, so a key holds none.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_NAME_BYTES || key.contains('\0') {
        return Err(format!(
            "idempotency_key must be 1-{MAX_NAME_BYTES} bytes without NUL, got {} bytes",
            key.len()
        ));
    }
    Ok(())
}
