//! The dashboard and explorer every node serves at `/`: one page, shipped inside the binary (no
//! CDN, nothing fetched from elsewhere), that reads the node's own API (`/status`, `/blocks`,
//! `/jobs`, `/providers`, `/poai`) and stays current from `/events`.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("index.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything the page needs is its own: no script, style or frame from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
