//! Connection life cycle against the real Home Assistant: sockets cut by a proxy, a stalled
//! connection (missed pong), a refused token, SIGTERM, and a real Home Assistant restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Ha, HomeIq, HomeIqOptions, Influx, OwnHa, eventually, unique};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(45);

/// A TCP proxy in front of Home Assistant that can cut every connection, refuse new ones, or
/// silently swallow traffic (a dead connection whose sockets stay open).
struct Proxy {
    port: u16,
    cut: broadcast::Sender<()>,
    refuse: Arc<AtomicBool>,
    stall: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (cut, _) = broadcast::channel(4);
        let proxy = Proxy {
            port,
            cut,
            refuse: Arc::default(),
            stall: Arc::default(),
            accepted: Arc::default(),
        };
        let (cut, refuse, stall, accepted) = (
            proxy.cut.clone(),
            proxy.refuse.clone(),
            proxy.stall.clone(),
            proxy.accepted.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let mut cut_rx = cut.subscribe();
                let stall = stall.clone();
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pump(cr, sw, stall.clone()) => {}
                        () = pump(sr, cw, stall) => {}
                        _ = cut_rx.recv() => {}
                    }
                });
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut_all(&self) {
        let _ = self.cut.send(());
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stall: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stall.load(Ordering::SeqCst) {
            continue; // swallowed: the peer never hears of it
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn upstream(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn ha_status(deep: &Value) -> &Value {
    &deep["home_assistant"]
}

/// Sets `entity_id` to `n` distinct values and waits until InfluxDB holds exactly those `n` points.
async fn drive_and_count(ha: &Ha, homeiq: &HomeIq, influx: &Influx, entity_id: &str, n: usize) {
    for i in 0..n {
        ha.set_state(
            entity_id,
            &format!("{}", 100 + i),
            json!({"unit_of_measurement": "W"}),
        )
        .await;
    }
    let db = homeiq.database.clone();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = influx
            .rows(
                &db,
                &format!("SELECT count(state) FROM sensor WHERE entity_id = '{entity_id}'"),
            )
            .await;
        let count = rows.first().and_then(|r| r["count"].as_u64()).unwrap_or(0);
        assert!(count <= n as u64, "more points than changes: {count} > {n}");
        if count == n as u64 {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{count} of {n} points for {entity_id}; HomeIQ: {}",
                homeiq.deep().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The socket is cut while HomeIQ runs; while it cannot reconnect, HA changes. After reconnecting:
/// subscriptions sent exactly once more, no duplicate events, the mirror and the states re-synced.
#[tokio::test]
async fn reconnect_after_cut_resubscribes_once_and_resyncs() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let proxy = Proxy::start(upstream(&ha.url)).await;
    let mut options = HomeIqOptions::from_env();
    options.ha_url = proxy.url();
    let homeiq = HomeIq::spawn(options).await;
    let first = homeiq.wait_synced().await;
    assert_eq!(ha_status(&first)["connects"], 1);
    assert_eq!(ha_status(&first)["subscriptions"], 6);
    assert_eq!(ha_status(&first)["subscriptions_sent"], 6);

    // cut, and keep HomeIQ out while HA changes
    proxy.refuse.store(true, Ordering::SeqCst);
    proxy.cut_all();
    homeiq
        .wait_deep("disconnected", WAIT, |d| {
            ha_status(d)["state"] != "connected"
        })
        .await;
    let missed_entity = format!("sensor.{}", unique("missed"));
    let missed = ha
        .set_state(&missed_entity, "42", json!({"unit_of_measurement": "W"}))
        .await;
    let area_name = unique("Cellar");
    let area = ha
        .ws1(json!({"type": "config/area_registry/create", "name": area_name}))
        .await;
    let area_id = area["area_id"].as_str().expect("area").to_owned();
    proxy.refuse.store(false, Ordering::SeqCst);

    let outcome = std::panic::AssertUnwindSafe(async {
        let second = homeiq
            .wait_deep("reconnected and re-synced", WAIT, |d| {
                ha_status(d)["connects"] == 2
                    && ha_status(d)["state"] == "connected"
                    && d["ingest"]["snapshots"].as_u64().unwrap_or(0) >= 2
            })
            .await;
        assert_eq!(ha_status(&second)["subscriptions"], 6, "{second}");
        assert_eq!(
            ha_status(&second)["subscriptions_sent"],
            12,
            "each subscription once per connection"
        );

        // the mirror learnt of the area created while disconnected (full sync on reconnect)
        let store = homeiq.registry().await;
        eventually(
            "area created while disconnected is mirrored",
            WAIT,
            || async {
                let areas = store.list_areas().await.ok()?;
                areas
                    .into_iter()
                    .map(|a| serde_json::to_value(a).expect("serialise"))
                    .any(|a| a["area_id"] == area_id.as_str())
                    .then_some(())
            },
        )
        .await;
        // the state set while disconnected was written from the snapshot, at its own time
        let t = chrono::DateTime::parse_from_rfc3339(missed["last_updated"].as_str().expect("ts"))
            .expect("time")
            .timestamp_millis();
        let db = homeiq.database.clone();
        eventually("missed state written from the snapshot", WAIT, || async {
            let rows = influx
                .rows(
                    &db,
                    &format!("SELECT state FROM sensor WHERE entity_id = '{missed_entity}'"),
                )
                .await;
            rows.iter()
                .any(|r| r["time"] == t && r["state"] == "42")
                .then_some(())
        })
        .await;

        // each change is received once
        let entity = format!("sensor.{}", unique("after_cut"));
        drive_and_count(&ha, &homeiq, &influx, &entity, 5).await;
        let deep = homeiq.deep().await;
        assert_eq!(deep["ingest"]["duplicates"], 0, "{deep}");
    })
    .catch_unwind()
    .await;
    ha.ws1(json!({"type": "config/area_registry/delete", "area_id": area_id}))
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

use futures_util::FutureExt;

/// A connection that stays open but goes silent is detected by the missing pong and replaced.
#[tokio::test]
async fn missed_pong_reconnects() {
    let ha = Ha::from_env();
    let proxy = Proxy::start(upstream(&ha.url)).await;
    let mut options = HomeIqOptions::from_env()
        .env("HOMEIQ_HA__PING_INTERVAL_SECS", "1")
        .env("HOMEIQ_HA__PONG_TIMEOUT_SECS", "1");
    options.ha_url = proxy.url();
    let homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;

    proxy.stall.store(true, Ordering::SeqCst);
    let lost = homeiq
        .wait_deep("dead connection noticed", WAIT, |d| {
            ha_status(d)["state"] != "connected"
        })
        .await;
    assert!(
        ha_status(&lost)["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("pong"),
        "{lost}"
    );
    proxy.stall.store(false, Ordering::SeqCst);
    let back = homeiq
        .wait_deep("reconnected", WAIT, |d| {
            ha_status(d)["state"] == "connected" && ha_status(d)["connects"] == 2
        })
        .await;
    assert_eq!(ha_status(&back)["subscriptions_sent"], 12);
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 2);
}

/// A refused token stops the client (no retry storm) and health says why.
#[tokio::test]
async fn wrong_token_stops_retrying_and_health_says_why() {
    let ha = Ha::from_env();
    let proxy = Proxy::start(upstream(&ha.url)).await;
    let mut options = HomeIqOptions::from_env();
    options.ha_url = proxy.url();
    options.ha_token = "not-a-valid-token".into();
    let homeiq = HomeIq::spawn(options).await;

    let deep = homeiq
        .wait_deep("auth failure reported", WAIT, |d| {
            ha_status(d)["state"] == "auth_failed"
        })
        .await;
    assert_eq!(deep["status"], "failed");
    let reasons = deep["reasons"].to_string();
    assert!(reasons.contains("ha.token"), "{reasons}");
    assert!(
        !homeiq.log().contains("not-a-valid-token"),
        "the token must never be logged"
    );
    let status = reqwest::get(homeiq.url("/health/deep"))
        .await
        .expect("get")
        .status();
    assert_eq!(status, 503);
    // liveness stays up: restarting would not help
    let status = reqwest::get(homeiq.url("/health"))
        .await
        .expect("get")
        .status();
    assert_eq!(status, 200);

    // no further attempts: observe a window several times the first back-off
    let attempts = proxy.accepted.load(Ordering::SeqCst);
    assert_eq!(attempts, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        proxy.accepted.load(Ordering::SeqCst),
        attempts,
        "no retry after auth_invalid"
    );
    assert_eq!(ha_status(&homeiq.deep().await)["connects"], 0);
}

/// SIGTERM: everything accepted is written before the process exits, within 8 s.
#[tokio::test]
async fn sigterm_flushes_queued_points_within_eight_seconds() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    // a long linger keeps points queued, so only the shutdown flush can write them
    let mut homeiq =
        HomeIq::spawn(HomeIqOptions::from_env().env("HOMEIQ_INFLUXDB__FLUSH_INTERVAL_MS", "60000"))
            .await;
    homeiq.wait_synced().await;
    let entity = format!("sensor.{}", unique("shutdown"));
    for i in 0..5 {
        ha.set_state(&entity, &i.to_string(), json!({})).await;
    }
    let queued = homeiq
        .wait_deep("changes queued", WAIT, |d| {
            d["ingest"]["points"].as_u64().unwrap_or(0) >= 5
        })
        .await;
    assert!(
        queued["influxdb"]["queued"].as_u64().unwrap_or(0) >= 5,
        "{queued}"
    );

    homeiq.signal("TERM");
    let (code, took) = homeiq.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", homeiq.log());
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    let rows = influx
        .rows(
            &homeiq.database,
            &format!("SELECT count(state) FROM sensor WHERE entity_id = '{entity}'"),
        )
        .await;
    assert_eq!(
        rows.first().and_then(|r| r["count"].as_u64()),
        Some(5),
        "{}",
        homeiq.log()
    );
}

/// Home Assistant itself restarts: HomeIQ reconnects, subscribes once more, re-syncs, and each
/// change afterwards is written exactly once.
#[tokio::test]
async fn home_assistant_restart_reconnects_and_resyncs() {
    let influx = Influx::from_env();
    let (own, ha) = tokio::task::spawn_blocking(OwnHa::start)
        .await
        .expect("start own HA");
    let mut options = HomeIqOptions::from_env();
    options.ha_url = ha.url.clone();
    options.ha_token = ha.token.clone();
    let homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;
    let before = homeiq.deep().await;

    let own = tokio::task::spawn_blocking(move || {
        own.stop();
        own
    })
    .await
    .expect("stop");
    homeiq
        .wait_deep("disconnected", WAIT, |d| {
            ha_status(d)["state"] != "connected"
        })
        .await;
    let (own, ha) = tokio::task::spawn_blocking(move || {
        let ha = own.run_start();
        (own, ha)
    })
    .await
    .expect("restart");
    let after = homeiq
        .wait_deep("reconnected after restart", Duration::from_secs(120), |d| {
            ha_status(d)["state"] == "connected"
                && ha_status(d)["connects"] == 2
                && d["ingest"]["snapshots"].as_u64().unwrap_or(0) >= 2
                // the registry task applies the relisted registries on its own schedule
                && d["registry"]["last_full_sync"]["entity"]
                    != before["registry"]["last_full_sync"]["entity"]
        })
        .await;
    assert_eq!(ha_status(&after)["subscriptions_sent"], 12, "{after}");
    assert_ne!(
        after["registry"]["last_full_sync"]["entity"],
        before["registry"]["last_full_sync"]["entity"],
        "the mirror was re-synced"
    );
    let entity = format!("sensor.{}", unique("after_restart"));
    drive_and_count(&ha, &homeiq, &influx, &entity, 5).await;
    assert_eq!(homeiq.deep().await["ingest"]["duplicates"], 0);
    drop(own);
}

/// `https` Home Assistant URLs go through TLS (`wss://`) with the one ring provider: a peer that
/// does not speak TLS gives a reported connection error and a retry, never a panic.
#[tokio::test]
async fn wss_connections_use_tls_without_panicking() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"this is not TLS\r\n").await;
        }
    });
    let mut options = HomeIqOptions::from_env();
    options.ha_url = format!("https://127.0.0.1:{port}");
    let homeiq = HomeIq::spawn(options).await;
    let deep = homeiq
        .wait_deep("TLS failure reported", WAIT, |d| {
            ha_status(d)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("wss://"))
        })
        .await;
    assert_eq!(
        ha_status(&deep)["websocket_url"],
        format!("wss://127.0.0.1:{port}/api/websocket")
    );
    assert_eq!(deep["status"], "degraded", "{deep}");
    assert!(!homeiq.log().contains("panicked"), "{}", homeiq.log());
    reqwest::get(homeiq.url("/health"))
        .await
        .expect("still serving");
}
