//! The web panel's serving rules, black-box: the real application in-process (embedded storage,
//! the built-in simulator) serving a small fixture folder through `http.panel_dir`.

mod common;

use common::Served;
use common::app::{AppOptions, TestApp};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};

const INDEX: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>HomeIQ</title>\
<script type=\"module\" src=\"./assets/index-3f2a9c.js\"></script></head><body><div id=\"root\"></div></body></html>";
const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("assets")).expect("assets");
    std::fs::write(dir.path().join("index.html"), INDEX).expect("index");
    std::fs::write(
        dir.path().join("assets/index-3f2a9c.js"),
        "console.log('panel');\n",
    )
    .expect("js");
    std::fs::write(
        dir.path().join("favicon.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .expect("icon");
    std::fs::write(dir.path().join(".secret"), "hidden").expect("dotfile");
    dir
}

async fn get(app: &TestApp, path: &str, accept: &str, ingress: Option<&str>) -> reqwest::Response {
    let mut req = app.client().get(app.url(path)).header(ACCEPT, accept);
    if let Some(p) = ingress {
        req = req.header("X-Ingress-Path", p);
    }
    req.send().await.expect("request")
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_serving_rules() {
    let panel = fixture();
    let homeiq = AppOptions::default()
        .env("HOMEIQ_HTTP__PANEL_DIR", &panel.path().to_string_lossy())
        .spawn()
        .await;

    // index.html: no-cache, base href "/" without ingress
    let resp = get(&homeiq, "/", HTML, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-cache");
    assert!(header(&resp, CONTENT_TYPE).starts_with("text/html"));
    let body = resp.text().await.expect("body");
    assert!(
        body.starts_with("<!doctype html><html><head><base href=\"/\"><meta charset"),
        "{body}"
    );

    // under ingress: the base is the ingress path, at any depth of client route (deep links)
    let prefix = "/api/hassio_ingress/abc123XYZ";
    for route in [
        "/",
        "/devices",
        "/devices/0123abcd",
        "/entities/sensor.outside_temperature",
    ] {
        let resp = get(&homeiq, route, HTML, Some(prefix)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{route}");
        assert_eq!(header(&resp, CACHE_CONTROL), "no-cache", "{route}");
        let body = resp.text().await.expect("body");
        assert!(
            body.contains(&format!("<base href=\"{prefix}/\">")),
            "{route}: {body}"
        );
        assert!(body.contains("./assets/index-3f2a9c.js"), "{route}");
    }
    // a header that would break out of the attribute is ignored
    let resp = get(&homeiq, "/", HTML, Some("/x\"><script>alert(1)</script>")).await;
    let body = resp.text().await.expect("body");
    assert!(
        body.contains("<base href=\"/\">") && !body.contains("alert"),
        "{body}"
    );

    // hashed assets: immutable, right type
    let resp = get(&homeiq, "/assets/index-3f2a9c.js", "*/*", Some(prefix)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert!(header(&resp, CONTENT_TYPE).contains("javascript"));
    assert_eq!(resp.text().await.expect("js"), "console.log('panel');\n");

    // other files: served, revalidated
    let resp = get(&homeiq, "/favicon.svg", "image/*", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-cache");

    // a missing asset is a real 404, even for a browser asking for HTML
    for accept in ["*/*", HTML] {
        let resp = get(&homeiq, "/assets/index-missing.js", accept, None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{accept}");
    }
    // missing non-HTML files, dotfiles and traversal attempts: 404
    for path in ["/favicon.ico", "/.secret", "/assets/..%2f..%2fetc%2fpasswd"] {
        let resp = get(&homeiq, path, "image/*", None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // the API keeps its own 404/405 and never gets index.html
    let resp = get(&homeiq, "/api/v1/nothing", HTML, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(header(&resp, CONTENT_TYPE).starts_with("application/json"));
    let resp = get(&homeiq, "/health/nothing", HTML, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = homeiq
        .client()
        .post(homeiq.url("/devices"))
        .header(ACCEPT, HTML)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = get(&homeiq, "/api/v1/devices?limit=1", HTML, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, CONTENT_TYPE).starts_with("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_panel_means_plain_404() {
    let homeiq = AppOptions::default()
        .env("HOMEIQ_HTTP__PANEL_DIR", "none")
        .spawn()
        .await;
    let resp = get(&homeiq, "/", HTML, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = get(&homeiq, "/devices", HTML, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // the configuration shows the setting and where it came from
    let config: serde_json::Value = homeiq
        .client()
        .get(homeiq.url("/api/v1/config"))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    assert_eq!(config["settings"]["http"]["panel_dir"], "none");
    assert!(
        config["sources"]["http.panel_dir"]
            .as_str()
            .unwrap_or("")
            .contains("HOMEIQ_HTTP__PANEL_DIR"),
        "{config}"
    );
}
