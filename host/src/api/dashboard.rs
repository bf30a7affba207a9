//! The web dashboard: static assets (`dashboard/index.html`, `app.js`, `app.css`) embedded in
//! the binary and served at `/` and `/dashboard/…`. Everything it shows comes from the REST API
//! with the key the user enters; the server gives the page no data of its own.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// Changes whenever an asset changes. The page names its assets with this tag, so browsers
/// may keep them forever and still never run a stale script against a newer page.
const ASSET_TAG: u64 = fnv1a(APP_CSS.as_bytes(), fnv1a(APP_JS.as_bytes(), FNV_OFFSET));

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

const fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The page with its asset links tagged.
static PAGE: LazyLock<String> =
    LazyLock::new(|| INDEX_HTML.replace("{{asset_tag}}", &format!("{ASSET_TAG:016x}")));

/// The page loads nothing but its own script and style and talks only to this origin; data
/// from the API is put into the DOM as text, and this policy stops anything that slips
/// through from running.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/app.js", get(app_js))
        .route("/dashboard/app.css", get(app_css))
}

async fn index() -> Response {
    // The page itself is revalidated every time, so a new binary's page (and with it the new
    // asset tag) is picked up at once.
    asset("text/html; charset=utf-8", "no-cache", PAGE.as_str())
}

async fn app_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        "public, max-age=31536000, immutable",
        APP_JS,
    )
}

async fn app_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        "public, max-age=31536000, immutable",
        APP_CSS,
    )
}

fn asset(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_with_the_current_tag() {
        let tag = format!("{ASSET_TAG:016x}");
        assert!(PAGE.contains(&format!("/dashboard/app.js?v={tag}")));
        assert!(PAGE.contains(&format!("/dashboard/app.css?v={tag}")));
        assert!(!PAGE.contains("{{"));
    }

    #[test]
    fn the_script_never_parses_strings_as_html() {
        // Every value shown comes from the API; the script builds nodes and sets text only.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
