//! Never lose an event: InfluxDB outages, HomeIQ killed, Home Assistant restarted, a tiny spool,
//! and points InfluxDB rejects — against the real services, with load driven through HA's REST API.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Ha, HomeIq, HomeIqOptions, Influx, OwnHa, OwnInflux, Served, eventually, unique};
use serde_json::{Value, json};

/// One state change as Home Assistant recorded it: (entity, state, `last_updated` in µs).
type Change = (String, String, i64);

fn micros(ts: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp"))
        .expect("rfc3339")
        .timestamp_micros()
}

/// Drives state changes through HA's REST API at `rate` per second, round-robin over `entities`,
/// until stopped; returns every change HA accepted. Failed requests (HA restarting) are skipped.
struct Driver {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Change>, Duration)>,
}

impl Driver {
    fn start(ha: Ha, entities: Vec<String>, rate: u32, attributes: Value) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut changes = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                tick.tick().await;
                let entity = &entities[(n as usize) % entities.len()];
                let value = format!("{}", 1000 + n);
                n += 1;
                let body = json!({"state": value, "attributes": attributes});
                let url = format!("{}/api/states/{entity}", ha.url);
                let Ok(r) = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(&ha.token)
                    .json(&body)
                    .send()
                    .await
                else {
                    continue;
                };
                if !r.status().is_success() {
                    continue;
                }
                if let Ok(state) = r.json::<Value>().await {
                    changes.push((entity.clone(), value, micros(&state["last_updated"])));
                }
            }
            (changes, started.elapsed())
        });
        Driver { stop, task }
    }

    async fn finish(self) -> (Vec<Change>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("driver")
    }
}

fn entities(prefix: &str, n: usize) -> Vec<String> {
    let base = unique(prefix);
    (0..n).map(|i| format!("sensor.{base}_{i}")).collect()
}

/// Waits until InfluxDB holds exactly the driven changes: every (entity, time) once, with its state.
async fn assert_all_written(influx: &Influx, db: &str, changes: &[Change], timeout: Duration) {
    let mut expected: BTreeMap<String, BTreeSet<(i64, String)>> = BTreeMap::new();
    for (entity, state, t) in changes {
        expected
            .entry(entity.clone())
            .or_default()
            .insert((*t, state.clone()));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut missing = 0usize;
        let mut extra = 0usize;
        for (entity, want) in &expected {
            let series = influx
                .query_epoch(
                    db,
                    &format!("SELECT state FROM sensor WHERE entity_id = '{entity}'"),
                    "u",
                )
                .await;
            let got: BTreeSet<(i64, String)> = series
                .iter()
                .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                .map(|v| {
                    (
                        v[0].as_i64().unwrap_or_default(),
                        v[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            missing += want.difference(&got).count();
            extra += got.difference(want).count();
        }
        if missing == 0 && extra == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} changes missing and {extra} unexpected points after {timeout:?}",
            changes.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn rate(changes: &[Change], took: Duration) -> f64 {
    changes.len() as f64 / took.as_secs_f64()
}

/// InfluxDB stopped for over a minute under ≥ 50 changes/s: afterwards every change is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_outage_of_a_minute_loses_nothing() {
    let ha = Ha::from_env();
    let own = tokio::task::spawn_blocking(OwnInflux::start)
        .await
        .expect("influx");
    let mut options = HomeIqOptions::from_env();
    options.influx_url = own.url.clone();
    let homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;

    let driver = Driver::start(
        ha,
        entities("outage", 10),
        80,
        json!({"unit_of_measurement": "W"}),
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // load before the outage
    let own = tokio::task::spawn_blocking(move || {
        own.stop();
        own
    })
    .await
    .expect("stop influx");
    let down_since = Instant::now();
    let during = homeiq
        .wait_deep("spooling reported", Duration::from_secs(30), |d| {
            d["status"] == "degraded" && d["storage"]["reachable"] == false
        })
        .await;
    assert!(
        during["reasons"].to_string().contains("InfluxDB"),
        "{during}"
    );
    // the outage lasts over a minute
    tokio::time::sleep(Duration::from_secs(62).saturating_sub(down_since.elapsed())).await;
    let during = homeiq.deep().await;
    assert_eq!(
        during["status"], "degraded",
        "degraded, not failed: {during}"
    );
    let own = tokio::task::spawn_blocking(move || {
        own.run_start();
        own
    })
    .await
    .expect("start influx");
    tokio::time::sleep(Duration::from_secs(3)).await; // load after the outage
    let (changes, took) = driver.finish().await;
    assert!(
        rate(&changes, took) >= 50.0,
        "drove {:.1}/s",
        rate(&changes, took)
    );

    assert_all_written(
        &own.client(),
        &homeiq.database,
        &changes,
        Duration::from_secs(90),
    )
    .await;
    let after = homeiq
        .wait_deep("healthy again", Duration::from_secs(30), |d| {
            d["status"] == "ok"
        })
        .await;
    assert!(
        after["storage"]["influxdb"]["replayed"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{after}"
    );
    assert_eq!(after["storage"]["influxdb"]["spool_dropped"], 0, "{after}");
}

/// HomeIQ SIGKILLed mid-stream and restarted: the backfill writes what was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_is_recovered_by_backfill() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let mut homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    homeiq.wait_synced().await;

    let driver = Driver::start(
        ha,
        entities("killed", 10),
        60,
        json!({"unit_of_measurement": "W"}),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    homeiq.kill();
    tokio::time::sleep(Duration::from_secs(4)).await; // changes while HomeIQ is dead
    homeiq.start().await;
    homeiq.wait_synced().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (changes, took) = driver.finish().await;
    assert!(
        rate(&changes, took) >= 50.0,
        "drove {:.1}/s",
        rate(&changes, took)
    );

    assert_all_written(&influx, &homeiq.database, &changes, Duration::from_secs(60)).await;
    let deep = homeiq.deep().await;
    assert!(
        deep["backfill"]["total_points"].as_u64().unwrap_or(0) > 0,
        "{deep}"
    );
}

/// Home Assistant stopped and started mid-stream: no gap, and no points for entities whose state
/// the restart merely re-announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_restart_leaves_no_gap_and_no_false_points() {
    let influx = Influx::from_env();
    let (own, ha) = tokio::task::spawn_blocking(OwnHa::start)
        .await
        .expect("own HA");
    let mut options = HomeIqOptions::from_env();
    options.ha_url = ha.url.clone();
    options.ha_token = ha.token.clone();
    let homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();

    let names = entities("ha_restart", 5);
    let before = Driver::start(ha.clone(), names.clone(), 50, json!({}));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut changes, _) = before.finish().await;

    let states_before = ha.get("states").await;
    let count_points = |entity: String| {
        let influx = influx.clone();
        let db = db.clone();
        async move {
            let domain = entity.split('.').next().unwrap_or_default().to_owned();
            let rows = influx
                .rows(
                    &db,
                    &format!("SELECT count(state) FROM \"{domain}\" WHERE entity_id = '{entity}'"),
                )
                .await;
            rows.first().and_then(|r| r["count"].as_u64()).unwrap_or(0)
        }
    };
    let mut points_before = BTreeMap::new();
    for s in states_before.as_array().expect("states") {
        let id = s["entity_id"].as_str().unwrap_or_default().to_owned();
        points_before.insert(id.clone(), count_points(id).await);
    }

    let restarted_from = chrono::Utc::now();
    let own = tokio::task::spawn_blocking(move || {
        own.stop();
        own
    })
    .await
    .expect("stop HA");
    let (own, ha) = tokio::task::spawn_blocking(move || {
        let ha = own.run_start();
        (own, ha)
    })
    .await
    .expect("start HA");
    homeiq
        .wait_deep("reconnected", Duration::from_secs(120), |d| {
            d["home_assistant"]["connects"] == 2
                && d["ingest"]["snapshots"].as_u64().unwrap_or(0) >= 2
        })
        .await;
    let after = Driver::start(ha.clone(), names, 50, json!({}));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (more, _) = after.finish().await;
    changes.extend(more);
    assert_all_written(&influx, &db, &changes, Duration::from_secs(30)).await;

    // entities the restart merely re-announced (same state and attributes before and after, and no
    // other state in HA's own recorder across the restart) got no new point
    let states_after = ha.get("states").await;
    let candidates: Vec<String> = states_after
        .as_array()
        .expect("states")
        .iter()
        .filter(|a| {
            states_before.as_array().expect("states").iter().any(|b| {
                b["entity_id"] == a["entity_id"]
                    && b["state"] == a["state"]
                    && b["attributes"] == a["attributes"]
            })
        })
        .filter_map(|a| a["entity_id"].as_str().map(str::to_owned))
        .collect();
    let history = ha
        .get(&format!(
            "history/period/{}?filter_entity_id={}&no_attributes",
            restarted_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            candidates.join(",")
        ))
        .await;
    let passed_through_other_states: BTreeSet<String> = history
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|entries| {
            let entries = entries.as_array()?;
            let id = entries.first()?["entity_id"].as_str()?.to_owned();
            let first = entries.first()?["state"].clone();
            entries.iter().any(|e| e["state"] != first).then_some(id)
        })
        .collect();
    // HA's recorder commits every second or so: an entity that changed just before this read may
    // not be in its history yet, so what HomeIQ recorded since the restart counts too (a point
    // with another state than before is a real change, never a false point)
    let state_before = |id: &str| {
        states_before
            .as_array()
            .and_then(|a| a.iter().find(|b| b["entity_id"] == id))
            .map(|b| b["state"].clone())
            .unwrap_or(Value::Null)
    };
    let mut same = Vec::new();
    for id in candidates {
        if passed_through_other_states.contains(&id) {
            continue;
        }
        let domain = id.split('.').next().unwrap_or_default();
        let since = influx
            .rows(
                &db,
                &format!(
                    "SELECT state FROM \"{domain}\" WHERE entity_id = '{id}' AND time >= '{}'",
                    restarted_from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
            )
            .await;
        let before = state_before(&id);
        if since.iter().all(|r| r["state"] == before) {
            same.push(id);
        }
    }
    assert!(
        same.len() >= 30,
        "only {} entities came back unchanged",
        same.len()
    );
    let deep = homeiq.deep().await;
    assert!(
        deep["ingest"]["unchanged"].as_u64().unwrap_or(0) > 0,
        "{deep}"
    );
    for entity in same {
        assert_eq!(
            count_points(entity.clone()).await,
            points_before[&entity],
            "{entity}: a false point from the restart burst; {deep}"
        );
    }
    drop(own);
}

/// A tiny spool with InfluxDB down: the oldest points are dropped, counted and reported, and
/// memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_spool_drops_oldest_counts_and_stays_bounded() {
    let ha = Ha::from_env();
    let own = tokio::task::spawn_blocking(OwnInflux::start)
        .await
        .expect("influx");
    own.stop();
    let mut options = HomeIqOptions::from_env()
        .env("HOMEIQ_SPOOL__MAX_BYTES", "1048576")
        .env("HOMEIQ_INFLUXDB__QUEUE_CAPACITY", "1000")
        .env("HOMEIQ_INFLUXDB__BATCH_SIZE", "100");
    options.influx_url = own.url.clone();
    let homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;

    // ~3 MB of points against a 1 MiB spool
    let big = "x".repeat(10_000);
    let names = entities("tiny_spool", 3);
    for i in 0..300 {
        ha.set_state(&names[i % 3], &i.to_string(), json!({"blob": big}))
            .await;
    }
    let deep = homeiq
        .wait_deep("spool bound hit", Duration::from_secs(60), |d| {
            d["storage"]["influxdb"]["spool_dropped"]
                .as_u64()
                .unwrap_or(0)
                > 0
        })
        .await;
    let spool_bytes = deep["storage"]["influxdb"]["spool_bytes"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        spool_bytes <= 1_200_000,
        "spool holds {spool_bytes} bytes: {deep}"
    );
    assert!(deep["warnings"].to_string().contains("dropped"), "{deep}");
    assert_eq!(deep["status"], "degraded", "{deep}");
    let pid = homeiq.child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    assert!(rss_kb < 100_000, "RSS {rss_kb} kB");

    // back up: the newest points arrive
    own.run_start();
    let client = own.client();
    let db = homeiq.database.clone();
    eventually(
        "newest point written after recovery",
        Duration::from_secs(60),
        || async {
            if !client.has_db(&db).await {
                return None;
            }
            let rows = client
                .rows(
                    &db,
                    &format!(
                        "SELECT state FROM sensor WHERE entity_id = '{}' AND state = '299'",
                        names[299 % 3]
                    ),
                )
                .await;
            (!rows.is_empty()).then_some(())
        },
    )
    .await;
}

/// A field type conflict in InfluxDB: those points are quarantined with the reason, all others
/// are written, and the quarantine can be inspected through the API.
#[tokio::test]
async fn type_conflicts_are_quarantined_and_everything_else_written() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let options = HomeIqOptions::from_env();
    let db = options.database.clone();
    // a measurement whose `value` field is already text in InfluxDB
    let domain = unique("hqconflict").replace('_', "x");
    influx.create_db(&db).await;
    let status = reqwest::Client::new()
        .post(format!("{}/write?db={db}", influx.url))
        .body(format!("{domain},entity_id={domain}.seed value=\"text\""))
        .send()
        .await
        .expect("seed write")
        .status();
    assert_eq!(status, 204);
    let homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;

    let conflicting = format!("{domain}.meter");
    let fine = format!("sensor.{}", unique("fine"));
    ha.set_state(&conflicting, "21.5", json!({})).await;
    ha.set_state(&fine, "7", json!({})).await;

    let deep = homeiq
        .wait_deep("quarantined", Duration::from_secs(30), |d| {
            d["storage"]["influxdb"]["quarantined"]
                .as_u64()
                .unwrap_or(0)
                >= 1
        })
        .await;
    eventually(
        "the other point written",
        Duration::from_secs(30),
        || async {
            let rows = influx
                .rows(
                    &db,
                    &format!("SELECT state FROM sensor WHERE entity_id = '{fine}'"),
                )
                .await;
            (!rows.is_empty()).then_some(())
        },
    )
    .await;
    let listed: Value = reqwest::get(homeiq.url("/api/v1/quarantine?limit=10"))
        .await
        .expect("quarantine api")
        .json()
        .await
        .expect("json");
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    let item = items
        .iter()
        .find(|q| {
            q["line"]
                .as_str()
                .unwrap_or_default()
                .contains(&conflicting)
        })
        .unwrap_or_else(|| panic!("conflicting point not listed: {listed}; {deep}"));
    assert!(
        item["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("conflict"),
        "{item}"
    );
    assert!(listed["total"].as_u64().unwrap_or(0) >= 1);
    // not retried in a loop: the count stays put
    let quarantined = deep["storage"]["influxdb"]["quarantined"]
        .as_u64()
        .unwrap_or(0);
    ha.set_state(&fine, "8", json!({})).await;
    eventually("a later point written", Duration::from_secs(30), || async {
        let rows = influx
            .rows(
                &db,
                &format!("SELECT state FROM sensor WHERE entity_id = '{fine}' AND state = '8'"),
            )
            .await;
        (!rows.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        homeiq.deep().await["storage"]["influxdb"]["quarantined"].as_u64(),
        Some(quarantined)
    );
}

/// Accepts connections and never answers: an InfluxDB that hangs.
struct HangingServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl HangingServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        HangingServer { url, task }
    }
}

impl Drop for HangingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// SIGTERM while InfluxDB accepts connections but never answers: HomeIQ exits within its
/// shutdown budget (8 s, DOCS.md) with every accepted change spooled; a restart against a working
/// InfluxDB (backfill off, so only the spool can bring them) writes every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_influxdb_hangs_spools_within_the_budget() {
    let ha = Ha::from_env();
    let influx = Influx::from_env();
    let hanging = HangingServer::start().await;
    let mut options = HomeIqOptions::from_env().env("HOMEIQ_BACKFILL__ENABLED", "false");
    options.influx_url = hanging.url.clone();
    let mut homeiq = HomeIq::spawn(options.clone()).await;
    homeiq.wait_synced().await;

    let names = entities("hang", 6);
    let mut changes = Vec::new();
    for i in 0..60 {
        let entity = &names[i % names.len()];
        let value = format!("{}", 2000 + i);
        let state = ha.set_state(entity, &value, json!({})).await;
        changes.push((entity.clone(), value, micros(&state["last_updated"])));
    }
    // every entity's last change is HomeIQ's current state: all 60 are with the writer
    for (entity, value, _) in &changes[changes.len() - names.len()..] {
        homeiq.wait_state(entity, value).await;
    }
    let deep = homeiq.deep().await;
    assert_eq!(deep["storage"]["written"], 0, "{deep}");

    homeiq.signal("TERM");
    let (code, took) = homeiq.wait_exit(Duration::from_secs(15));
    let log = homeiq.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took < homeiq::app::SHUTDOWN_BUDGET,
        "shutdown took {took:?}:\n{log}"
    );
    assert!(log.contains("spooled what could not be written"), "{log}");
    assert!(log.contains("HomeIQ stopped"), "{log}");
    eprintln!("shutdown with a hanging InfluxDB took {took:?}");

    options.influx_url = influx.url.clone();
    homeiq.options = options;
    homeiq.start().await;
    assert_all_written(&influx, &homeiq.database, &changes, Duration::from_secs(60)).await;
}
