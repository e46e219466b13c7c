//! The web panel (`frontend/`, built by Vite) served from `http.panel_dir`.
//!
//! Rules:
//! - `/` and client routes (`/devices/<id>`, `/entities/light.kitchen`, …): GET or HEAD requests
//!   outside the API (`/api…`, `/health…`, `/metrics`) that accept `text/html` get `index.html`
//!   (the single-page app routes them), with `Cache-Control: no-cache` and a
//!   `<base href="<X-Ingress-Path>/">` injected (`/` without the header), so the panel's relative
//!   URLs resolve under Home Assistant's ingress prefix at any depth.
//! - Files that exist are served with `actix-files` (ETag, ranges); `assets/` holds content-hashed
//!   names and is `immutable` for a year, other files are `no-cache`.
//! - A missing file under `assets/`, or any other path that does not accept HTML, is a real 404.

use std::path::{Path, PathBuf};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::KnownRoutes;
use crate::http::error::ApiError;

/// Cache policy of content-hashed files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of everything else: revalidate every time.
const NO_CACHE: &str = "no-cache";

/// Where the built panel is, if anywhere.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    dir: Option<PathBuf>,
}

impl Panel {
    /// A panel served from `dir` (`None`: no panel, every non-API path is 404).
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        match &dir {
            Some(d) if d.join("index.html").is_file() => {
                tracing::info!(dir = %d.display(), "serving the web panel");
            }
            Some(d) => tracing::warn!(
                dir = %d.display(),
                "http.panel_dir has no index.html; the panel answers 404 until it is built"
            ),
            None => tracing::info!("no web panel (http.panel_dir: none, or no built panel found)"),
        }
        Panel { dir }
    }
}

/// True for paths that belong to the API and never get the panel.
fn is_api_path(path: &str) -> bool {
    path == "/api"
        || path.starts_with("/api/")
        || path == "/health"
        || path.starts_with("/health/")
        || path == "/metrics"
        || path.starts_with("/metrics/")
}

/// The file a request path names inside `dir`, when the path is plain (no `..`, no encoded or
/// hidden segments).
fn file_for(dir: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return None;
    }
    let mut out = dir.to_path_buf();
    for segment in rel.split('/') {
        if segment.is_empty()
            || segment.starts_with('.')
            || segment.contains('%')
            || segment.contains('\\')
        {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

/// The `<base href>` for a request: `X-Ingress-Path` plus `/` when present and plain, else `/`.
pub(crate) fn base_href(req: &HttpRequest) -> String {
    let prefix = req
        .headers()
        .get("x-ingress-path")
        .and_then(|v| v.to_str().ok())
        .map(|p| p.trim().trim_end_matches('/'))
        .filter(|p| {
            p.starts_with('/')
                && !p.contains("//")
                && !p.split('/').any(|s| s == "..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-.~".contains(&b))
        })
        .unwrap_or("");
    format!("{prefix}/")
}

/// `index.html` with the `<base href>` injected right after `<head>`.
pub(crate) fn inject_base(html: &str, base: &str) -> String {
    let tag = format!("<base href=\"{base}\">");
    match html.find("<head>") {
        Some(i) => {
            let at = i + "<head>".len();
            format!("{}{tag}{}", &html[..at], &html[at..])
        }
        None => format!("{tag}{html}"),
    }
}

fn accepts_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

async fn index(req: &HttpRequest, dir: &Path) -> Result<HttpResponse, ApiError> {
    let html = tokio::fs::read_to_string(dir.join("index.html"))
        .await
        .map_err(|e| {
            ApiError::not_found(format!(
                "the web panel is not built ({}: {e})",
                dir.display()
            ))
        })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, NO_CACHE))
        .insert_header((header::VARY, "X-Ingress-Path"))
        .body(inject_base(&html, &base_href(req))))
}

/// The default service: the panel's files and routes, else the API's 404/405.
pub(crate) async fn serve(
    req: HttpRequest,
    panel: web::Data<Panel>,
    known: web::Data<KnownRoutes>,
) -> Result<HttpResponse, ApiError> {
    let path = req.path().to_owned();
    let readable = req.method() == actix_web::http::Method::GET
        || req.method() == actix_web::http::Method::HEAD;
    let Some(dir) = panel
        .dir
        .as_deref()
        .filter(|_| readable && !is_api_path(&path))
    else {
        return super::not_found(req, known).await;
    };
    if path == "/" || path == "/index.html" {
        return index(&req, dir).await;
    }
    if let Some(file) = file_for(dir, &path)
        && tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_file())
    {
        let named = actix_files::NamedFile::open_async(&file)
            .await
            .map_err(|e| ApiError::internal(format!("cannot read {path}: {e}")))?;
        let mut response = named.into_response(&req);
        let policy = if path.starts_with("/assets/") {
            IMMUTABLE
        } else {
            NO_CACHE
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        return Ok(response);
    }
    if !path.starts_with("/assets/") && accepts_html(&req) {
        return index(&req, dir).await;
    }
    Err(ApiError::not_found(format!("no file {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_never_get_the_panel() {
        for p in [
            "/api",
            "/api/v1/devices",
            "/health",
            "/health/deep",
            "/metrics",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in [
            "/",
            "/devices",
            "/entities/light.kitchen",
            "/apis",
            "/healthy",
        ] {
            assert!(!is_api_path(p), "{p}");
        }
    }

    #[test]
    fn files_stay_inside_the_folder() {
        let dir = Path::new("/panel");
        assert_eq!(
            file_for(dir, "/assets/index-abc.js"),
            Some(PathBuf::from("/panel/assets/index-abc.js"))
        );
        for bad in [
            "/../etc/passwd",
            "/assets/..%2f",
            "/.env",
            "/a//b",
            "/a\\b",
            "/",
        ] {
            assert_eq!(file_for(dir, bad), None, "{bad}");
        }
    }

    #[test]
    fn base_is_injected_after_head() {
        assert_eq!(
            inject_base("<html><head><title>x</title></head></html>", "/p/"),
            "<html><head><base href=\"/p/\"><title>x</title></head></html>"
        );
    }

    #[test]
    fn ingress_path_is_sanitised() {
        let req = |v: &str| {
            actix_web::test::TestRequest::default()
                .insert_header(("X-Ingress-Path", v))
                .to_http_request()
        };
        assert_eq!(
            base_href(&req("/api/hassio_ingress/abc123")),
            "/api/hassio_ingress/abc123/"
        );
        assert_eq!(
            base_href(&req("/api/hassio_ingress/abc123/")),
            "/api/hassio_ingress/abc123/"
        );
        assert_eq!(base_href(&req("/x\"><script>")), "/");
        assert_eq!(base_href(&req("relative")), "/");
        assert_eq!(
            base_href(&actix_web::test::TestRequest::default().to_http_request()),
            "/"
        );
    }
}
