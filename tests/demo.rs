//! `homeiq demo`: the real binary, on a free port and a temporary data directory, with no Home
//! Assistant and no InfluxDB. It must become healthy with embedded storage and show a mirrored
//! registry and recorded history within a bounded time (polled, never slept), and stop cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, free_port};
use serde_json::Value;

/// The longest time the demo may take to show history (the issue: "within a minute").
const WITHIN: Duration = Duration::from_secs(60);

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

#[tokio::test]
async fn demo_shows_a_healthy_home_with_history_within_a_minute() {
    common::init_tls();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo-data");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("demo.log")).expect("log");
    let out = std::fs::File::create(dir.path().join("demo.out")).expect("out");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_homeiq"))
        .args(["demo", "--port", &port.to_string(), "--profile", "small"])
        .arg("--data-dir")
        .arg(&data)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn homeiq demo");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let deep = eventually("demo healthy with embedded storage", WITHIN, || async {
        let d = get(&http, &format!("{base}/health/deep")).await?;
        // the demo's storage guard watches this machine's /tmp, which a parallel build may fill:
        // a warning about that alone is the machine's state, not the demo's
        let only_the_disk = d["status"] == "degraded"
            && d["reasons"].as_array().map(Vec::len) == Some(1)
            && d["storage_guard"]["level"] == "warning";
        ((d["status"] == "ok" || only_the_disk)
            && d["storage"]["backend"] == "embedded"
            && d["home_assistant"]["state"] == "connected"
            && d["storage"]["written"].as_u64().unwrap_or(0) > 0)
            .then_some(d)
    })
    .await;
    // every view and metric speaks of the embedded store, none of InfluxDB
    let realtime = get(&http, &format!("{base}/api/v1/metrics/realtime"))
        .await
        .expect("realtime");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    common::assert_storage_reported(&realtime, &deep, &metrics, "embedded");

    let devices = eventually("devices mirrored", WITHIN, || async {
        let d = get(&http, &format!("{base}/api/v1/devices?limit=1")).await?;
        (d["total"].as_u64().unwrap_or(0) > 0).then_some(d)
    })
    .await;
    assert!(devices["total"].as_u64().unwrap_or(0) > 0);

    let lights = get(
        &http,
        &format!("{base}/api/v1/entities?domain=light&limit=100"),
    )
    .await
    .expect("entities");
    let ids: Vec<String> = lights["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["entity_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(!ids.is_empty(), "the simulated home has lights: {lights}");
    let records = eventually("a light with recorded history", WITHIN, || {
        let (http, base, ids) = (&http, &base, &ids);
        async move {
            for id in ids.iter().take(20) {
                let page = get(http, &format!("{base}/api/v1/history?entity_id={id}")).await?;
                let n = page["items"].as_array().map_or(0, Vec::len);
                if n >= 1 {
                    return Some((id.clone(), n));
                }
            }
            None
        }
    })
    .await;
    assert!(records.1 >= 1, "{records:?}");
    // the home is alive: state changes after the snapshot were recorded too
    let deep = eventually("live changes recorded", WITHIN, || async {
        let d = get(&http, &format!("{base}/health/deep")).await?;
        let snapshot = d["ingest"]["snapshot_points"].as_u64().unwrap_or(0);
        (d["ingest"]["events"].as_u64().unwrap_or(0) > 0
            && d["storage"]["written"].as_u64().unwrap_or(0) > snapshot)
            .then_some(d)
    })
    .await;
    assert_eq!(deep["storage"]["dropped_overflow"], 0, "{deep}");
    let stats = get(&http, &format!("{base}/api/v1/events/stats"))
        .await
        .expect("stats");
    assert!(stats["total"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(
        started.elapsed() < WITHIN * 2,
        "took {:?}",
        started.elapsed()
    );
    assert!(data.join("history.db").is_file());

    // Ctrl-C / SIGTERM stops both, in time, with success
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(dir.path().join("demo.out")).unwrap_or_default();
    assert!(
        printed.contains(&format!("http://127.0.0.1:{port}/")),
        "prints the panel URL: {printed}"
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "demo exits 0 after SIGTERM: {status:?}\n{}",
        std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
    );
}
