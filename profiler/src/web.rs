//! The web viewer (`web/`): its built assets (`web/dist`, made by `cargo
//! xtask` with npm and esbuild) are embedded into the binary at build time
//! (rust-embed), so the page works offline. Served at `/` by the agent and
//! by `tailprof serve`. The assets hold no data: they are served without
//! the token, and the page asks the API (which needs it) for everything.

use axum::{
    http::{header, StatusCode, Uri},
    response::{IntoResponse, Response},
};

#[derive(rust_embed::RustEmbed)]
#[folder = "$OUT_DIR/web"]
struct Assets;

/// The paths of the assets, as served (`/` is `index.html`).
pub fn is_asset(path: &str) -> bool {
    path == "/" || Assets::get(path.trim_start_matches('/')).is_some()
}

/// One asset, by the request's path.
pub async fn asset(uri: Uri) -> Response {
    let path = match uri.path() {
        "/" => "index.html",
        p => p.trim_start_matches('/'),
    };
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let kind = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    // Not content-hashed names: always revalidated.
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], file.data.into_owned()).into_response()
}
