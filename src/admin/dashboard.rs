//! The operator's dashboard: `GET /` on the admin listener. One HTML page, one stylesheet and
//! one script, all ours, compiled into the binary (`src/admin/dashboard/`), with no build step
//! and nothing fetched from elsewhere, so it works offline.
//!
//! The page itself holds no data and no secret, so it is served without the token; the script
//! asks for the admin token, keeps it in `sessionStorage` and sends it as
//! `Authorization: Bearer` on each API call. The content security policy allows only this
//! origin's script, style and API.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");
const ICON_SVG: &str = include_str!("dashboard/icon.svg");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router() -> Router {
    routes().into_public_router()
}

pub(crate) fn routes() -> super::Routes<()> {
    use axum::http::Method;
    super::Routes::public()
        .add(
            Method::GET,
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .add(
            Method::GET,
            "/dashboard/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .add(
            Method::GET,
            "/dashboard/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .add(
            Method::GET,
            "/dashboard/icon.svg",
            get(|| async { asset(ICON_SVG, "image/svg+xml") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files; a new binary must be seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}
