//! What a hostile client can do to the HTTP API: metrics labels it controls, cross-site writes
//! from a web page the user visits, DNS rebinding, token guessing, and secrets in URLs. No Home
//! Assistant or InfluxDB is needed: the application runs in-process with embedded storage and the
//! built-in simulator; only the test that reads the log runs the real binary.

mod common;

use std::time::Duration;

use common::app::{AppOptions, TestApp};
use common::{HomeIq, HomeIqOptions, Served, eventually, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "security-test-token-0123456789";

/// The application in-process, with `env`.
async fn homeiq(env: &[(&str, &str)]) -> TestApp {
    env.iter()
        .fold(AppOptions::default(), |options, (k, v)| options.env(k, v))
        .spawn()
        .await
}

/// The real binary with embedded storage and an unreachable Home Assistant, plus `env`.
async fn binary(env: &[(&str, &str)]) -> HomeIq {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut options = HomeIqOptions {
        ha_url: dead.clone(),
        ha_token: "unused".into(),
        influx_url: dead,
        database: common::unique("security"),
        data_dir: None,
        extra_env: Vec::new(),
    }
    .env("HOMEIQ_STORAGE", "embedded");
    for (k, v) in env {
        options = options.env(k, v);
    }
    HomeIq::spawn(options).await
}

async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn hook(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "ha",
        "webhook_id": format!("homeiq_security_{name}_0123456789"),
        "rules": [{"entity_id": "sensor.anything"}],
    })
}

async fn webhook_names(app: &impl Served) -> Vec<String> {
    let (status, list) = answer(
        app.client()
            .get(app.url("/api/v1/webhooks"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["name"].as_str().map(str::to_owned))
        .collect()
}

/// Item 1: methods and paths a client makes up never become label values; `/metrics` stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_labels_come_from_a_closed_set_whatever_the_client_sends() {
    let app = homeiq(&[
        ("HOMEIQ_HTTP__API_TOKEN", TOKEN),
        ("HOMEIQ_API__RATE_LIMIT_PER_SECOND", "0"),
    ])
    .await;
    let http = app.client();
    for i in 0..40 {
        let junk = format!("JUNK{i:03}{}", "X".repeat(2_000));
        let method = Method::from_bytes(junk.as_bytes()).expect("a token is a method");
        // refused (no token), and refused requests are counted too
        let status = http
            .request(
                method,
                app.url(&format!("/api/v1/nowhere-{i}-{}", "p".repeat(500))),
            )
            .send()
            .await
            .expect("request")
            .status();
        assert!(status.is_client_error(), "{status}");
    }
    let metrics = http
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics.contains("JUNK") && !metrics.contains("nowhere"),
        "client input in a label"
    );
    let durations: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("homeiq_http_request_duration_seconds_count"))
        .collect();
    assert!(
        durations
            .iter()
            .any(|l| l.contains("method=\"other\"") && l.contains("route=\"unmatched\"")),
        "{durations:#?}"
    );
    for line in &durations {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert!(
            [
                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"
            ]
            .contains(&method),
            "{line}"
        );
    }
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
}

/// Item 3: a web page on another origin cannot change anything, bodies must be JSON, and the same
/// origin (the panel; through the ingress gateway by `X-Forwarded-Host`) still can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_are_refused_and_bodies_must_be_json() {
    // no token, no gateway, loopback: the setup a browser on the same machine can reach
    let app = homeiq(&[]).await;
    let http = app.client();
    let create = |name: &str| http.post(app.url("/api/v1/webhooks")).json(&hook(name));

    // another site's page, JSON body (a browser would preflight it, a form or no-cors fetch not)
    let (status, body) = answer(create("evil").header("Origin", "https://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    // `Origin: null` (sandboxed frames, file: pages) is another origin too
    let (status, _) = answer(create("evil-null").header("Origin", "null")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // the same host on another port is another origin
    let other_port = format!("http://127.0.0.1:{}", free_port());
    let (status, _) = answer(create("evil-port").header("Origin", &other_port)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // what a cross-site form or a `text/plain` fetch sends, without Origin: 415
    let (status, body) = answer(
        http.post(app.url("/api/v1/webhooks"))
            .header("Content-Type", "text/plain")
            .body(hook("plain").to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    let (status, _) = answer(
        http.post(app.url("/api/v1/webhooks"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(hook("form").to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // cross-site deletes are refused as well
    let (status, _) = answer(
        http.delete(app.url("/api/v1/webhooks/1"))
            .header("Origin", "https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        webhook_names(&app).await.is_empty(),
        "a refused request created a webhook"
    );

    // the panel (same origin) and clients that send no Origin (curl, Home Assistant) work
    let own = format!("http://127.0.0.1:{}", app.port);
    let (status, body) = answer(create("panel").header("Origin", &own)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = answer(create("curl")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = answer(
        http.post(app.url("/api/v1/webhooks"))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(hook("charset").to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // reads are not affected by Origin
    let (status, _) = answer(
        http.get(app.url("/api/v1/webhooks"))
            .header("Origin", "https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut names = webhook_names(&app).await;
    names.sort();
    assert_eq!(names, ["charset", "curl", "panel"]);
    drop(app);

    // behind Home Assistant's ingress: the browser's host arrives as X-Forwarded-Host, trusted
    // from the gateway only
    let app = homeiq(&[("HOMEIQ_HTTP__INGRESS_GATEWAY", "127.0.0.1")]).await;
    let through_ingress = |name: &str, origin: &str, forwarded: Option<&str>| {
        let req = http
            .post(app.url("/api/v1/webhooks"))
            .header("Origin", origin)
            .header("X-Ingress-Path", "/api/hassio_ingress/abc")
            .json(&hook(name));
        match forwarded {
            Some(host) => req.header("X-Forwarded-Host", host),
            None => req,
        }
    };
    let (status, body) = answer(through_ingress(
        "ingress",
        "https://home.example:8443",
        Some("home.example:8443"),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = answer(through_ingress(
        "ingress-evil",
        "https://evil.example",
        Some("home.example:8443"),
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = answer(through_ingress(
        "ingress-none",
        "https://home.example",
        None,
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// DNS rebinding: without a token the API is open to this machine only, and a page whose host
/// name was made to resolve to 127.0.0.1 is same-origin with itself, so it could read and write.
/// Its requests name its host: only names of this machine are answered; with a token, any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_requests_addressed_to_this_machine_are_answered() {
    let app = homeiq(&[]).await;
    let http = app.client();
    let addressed = |host: &str| {
        http.get(app.url("/api/v1/webhooks"))
            .header("Host", format!("{host}:{}", app.port))
    };
    let (status, body) = answer(addressed("rebound.evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rebound.evil.example")),
        "{body}"
    );
    let (status, _) = answer(
        http.post(app.url("/api/v1/webhooks"))
            .header("Host", format!("rebound.evil.example:{}", app.port))
            .header(
                "Origin",
                format!("http://rebound.evil.example:{}", app.port),
            )
            .json(&hook("rebound")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let (status, body) = answer(addressed(host)).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    // the watchdog's /health answers whatever the name
    let (status, _) = answer(
        http.get(app.url("/health"))
            .header("Host", "rebound.evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    drop(app);

    let app = homeiq(&[("HOMEIQ_HTTP__API_TOKEN", TOKEN)]).await;
    let (status, body) = answer(
        app.client()
            .get(app.url("/api/v1/webhooks"))
            .header("Host", "homeiq.lan")
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Item 4: wrong tokens count against the client's rate limit, and once it is used up even the
/// right token waits, so guessing is no faster than any other use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_rate_limited_per_client() {
    let app = homeiq(&[
        ("HOMEIQ_HTTP__API_TOKEN", TOKEN),
        ("HOMEIQ_API__RATE_LIMIT_PER_SECOND", "1"),
        ("HOMEIQ_API__RATE_LIMIT_BURST", "3"),
    ])
    .await;
    let http = app.client();
    let mut statuses = Vec::new();
    for guess in 0..8 {
        let (status, _) = answer(
            http.get(app.url("/api/v1/devices"))
                .bearer_auth(format!("guess-{guess}")),
        )
        .await;
        statuses.push(status.as_u16());
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (status, body) = answer(http.get(app.url("/api/v1/devices")).bearer_auth(TOKEN)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    // liveness stays open
    assert_eq!(
        http.get(app.url("/health"))
            .send()
            .await
            .expect("health")
            .status(),
        StatusCode::OK
    );
    eventually("served again", Duration::from_secs(10), || async {
        let (status, _) = answer(http.get(app.url("/api/v1/devices")).bearer_auth(TOKEN)).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
}

/// Item 5: user information in URLs (`http://user:password@host`) is shown nowhere: not in the
/// settings, deep health, metrics or the log.
#[tokio::test]
async fn url_passwords_are_redacted_in_settings_health_and_logs() {
    let dead = free_port();
    let app = binary(&[
        ("HOMEIQ_HTTP__API_TOKEN", TOKEN),
        ("HOMEIQ_STORAGE", "external"),
        (
            "HOMEIQ_INFLUXDB__URL",
            &format!("http://admin:pw-influx-42@127.0.0.1:{dead}"),
        ),
        (
            "HOMEIQ_HA__URL",
            &format!("http://ha-user:pw-ha-42@127.0.0.1:{dead}"),
        ),
    ])
    .await;
    let http = app.client();
    let get = |path: &str| {
        let req = http.get(app.url(path)).bearer_auth(TOKEN);
        async move {
            req.send()
                .await
                .expect("request")
                .text()
                .await
                .expect("text")
        }
    };
    // wait until the Home Assistant client has failed (its error names the address)
    eventually("errors reported", Duration::from_secs(30), || async {
        let deep: Value = serde_json::from_str(&get("/health/deep").await).ok()?;
        deep["home_assistant"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{dead}")))
            .then_some(())
    })
    .await;
    let config = get("/api/v1/config").await;
    assert!(
        config.contains(&format!("http://***@127.0.0.1:{dead}")),
        "{config}"
    );
    for (what, text) in [
        ("config", config),
        ("deep health", get("/health/deep").await),
        ("realtime", get("/api/v1/metrics/realtime").await),
        ("metrics", get("/metrics").await),
        ("log", app.log()),
    ] {
        assert!(
            !text.contains("pw-influx-42") && !text.contains("pw-ha-42"),
            "{what} shows a password:\n{text}"
        );
    }
}
