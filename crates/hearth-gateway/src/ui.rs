//! The browser UI: the files `web/` builds (`web/dist`, see `docs/ui.md`), served from a
//! directory at `/` (the editor), `/status` (the status page) and `/ui/<file>` (scripts,
//! styles, icons). Files are read at request time, so a rebuilt UI shows on reload; only
//! names made of `[A-Za-z0-9._-]` with a known extension are served, never a path.
//!
//! The directory is found like the nats-server is: the flag (`--web-dir`, `HEARTH_WEB_DIR`),
//! a `web/dist` above the running executable (a checkout's `target/*/hearth`), `web/dist`
//! under the working directory, then `/usr/share/hearth/web`. Without one, `/` answers 404
//! with a page that says how to build it; the API is not affected.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The page every UI directory has.
const INDEX: &str = "index.html";

/// What the UI's pages may load: only this origin (CodeMirror sets inline styles).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// True when `dir` holds a built UI.
pub fn is_ui_dir(dir: &Path) -> bool {
    dir.join(INDEX).is_file()
}

/// The UI directory: `flag` when given (even if it holds no UI: then `/` says so), else the
/// first of the places in the module docs that holds one.
pub fn find_dir(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return Some(dir.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|d| d.join("web/dist")));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join("web/dist"));
    }
    candidates.push(PathBuf::from("/usr/share/hearth/web"));
    candidates.into_iter().find(|d| is_ui_dir(d))
}

/// The content type of a servable file name, `None` for anything else.
fn content_type(name: &str) -> Option<&'static str> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return None;
    }
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "map" | "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// A weak validator from the file's size and modification time.
fn etag(meta: &std::fs::Metadata) -> String {
    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    format!("W/\"{:x}-{:x}\"", meta.len(), modified.as_nanos())
}

fn not_built(dir: Option<&Path>) -> Response {
    let where_ = match dir {
        Some(d) => format!("{} has no {INDEX}", d.display()),
        None => "no UI directory was found".to_string(),
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>hearth</title>\
         <p>hearth's browser UI is not built here ({}). Run <code>scripts/setup</code> in a checkout \
         (it runs <code>npm ci</code> and the esbuild build into <code>web/dist</code>), or pass \
         <code>--web-dir</code>. The API works without it: see <code>/v1/languages</code>.</p>",
        html_escape(&where_)
    );
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Serves `name` from the UI directory, with revalidation (`ETag`, `no-cache`).
async fn serve_file(state: &AppState, name: &str, headers: &HeaderMap) -> Response {
    let Some(dir) = state.config.web_dir.as_deref() else { return not_built(None) };
    if !is_ui_dir(dir) {
        return not_built(Some(dir));
    }
    let Some(kind) = content_type(name) else { return crate::error::not_found().await.into_response() };
    let path = dir.join(name);
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => m,
        _ => return crate::error::not_found().await.into_response(),
    };
    let tag = etag(&meta);
    let mut response = if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match tokio::fs::read(&path).await {
            Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading a UI file");
                return crate::error::not_found().await.into_response();
            }
        }
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if kind.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// `GET /`: the editor.
pub async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    serve_file(&state, INDEX, &headers).await
}

/// `GET /status`: the status page.
pub async fn status_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    serve_file(&state, "status.html", &headers).await
}

/// `GET /ui/{file}`: a script, style sheet or icon of the pages.
pub async fn asset(
    State(state): State<Arc<AppState>>,
    name: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    match name {
        Ok(UrlPath(name)) if !name.ends_with(".html") => serve_file(&state, &name, &headers).await,
        _ => crate::error::not_found().await.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_with_known_extensions_are_served() {
        assert_eq!(content_type("app.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("app.css"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type("index.html"), Some("text/html; charset=utf-8"));
        for bad in ["", ".env", "../secret.js", "a/b.js", "x.rs", "noext", "a%2Fb.js", "a\\b.js", "..js"] {
            assert_eq!(content_type(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_flag_wins_and_a_dir_without_index_is_not_a_ui() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_ui_dir(dir.path()));
        assert_eq!(find_dir(Some(dir.path())), Some(dir.path().to_path_buf()));
        std::fs::write(dir.path().join(INDEX), "<!doctype html>").unwrap();
        assert!(is_ui_dir(dir.path()));
    }
}
