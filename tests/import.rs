//! Importing Home Assistant's past against the real Home Assistant `.ci/run` starts (`HA_URL`,
//! `HA_TOKEN`): its recorder is seeded with states (REST) and a year of hourly statistics
//! (`recorder/import_statistics`); HomeIQ (in-process, embedded storage) imports them on its first
//! start, is stopped in the middle and resumes, and a second import adds nothing. Counts are
//! compared with what Home Assistant answers for the same queries.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Timelike, Utc};
use common::app::{AppOptions, TestApp};
use common::{Ha, Served, eventually, unique};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("hour")
}

/// Every state Home Assistant's recorder holds of `entity` in the last day, as Unix µs.
async fn ha_states(ha: &Ha, entity: &str) -> Vec<i64> {
    let start = (Utc::now() - Span::days(1)).to_rfc3339();
    let r = ha
        .ws1(json!({
            "type": "history/history_during_period",
            "start_time": start,
            "entity_ids": [entity],
            "include_start_time_state": false,
            "significant_changes_only": false,
            "minimal_response": false,
            "no_attributes": false,
        }))
        .await;
    r[entity]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["lu"].as_f64())
                // as Home Assistant's `datetime.fromtimestamp`: the fraction rounded half to even
                .map(|lu| {
                    lu.trunc() as i64 * 1_000_000
                        + ((lu - lu.trunc()) * 1e6).round_ties_even() as i64
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Hour starts (Unix s) of the hourly statistics Home Assistant holds of `id`.
async fn ha_hours(ha: &Ha, id: &str) -> Vec<i64> {
    let r = ha
        .ws1(json!({
            "type": "recorder/statistics_during_period",
            "start_time": "2000-01-01T00:00:00Z",
            "statistic_ids": [id],
            "period": "hour",
            "types": ["mean", "sum"],
        }))
        .await;
    r[id]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|row| row["start"].as_i64())
                .map(|ms| ms / 1000)
                .collect()
        })
        .unwrap_or_default()
}

/// HomeIQ's stored records of `entity` (Unix µs).
async fn homeiq_states(app: &TestApp, entity: &str) -> Vec<i64> {
    let z = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start = z(Utc::now() - Span::days(2));
    let end = z(Utc::now() + Span::hours(1));
    let r = app
        .client()
        .get(app.url(&format!(
            "/api/v1/history?entity_id={entity}&start={start}&end={end}&limit=10000"
        )))
        .send()
        .await
        .expect("history");
    assert!(r.status().is_success(), "{}", r.status());
    let v: Value = r.json().await.expect("json");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["time"].as_str())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_micros())
        .collect()
}

/// Hour starts (Unix s) per entity of the rollups' tier `imported` (tier id 4 in `rollups.db`).
fn imported_hours(data_dir: &Path) -> BTreeMap<String, Vec<i64>> {
    let conn = rusqlite::Connection::open(data_dir.join("rollups.db")).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT e.entity_id, n.start_us / 1000000 FROM numeric n JOIN entities e ON e.id = n.entity
             WHERE n.tier = 4 ORDER BY e.entity_id, n.start_us",
        )
        .expect("prepare");
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("query");
    for row in rows {
        let (e, s) = row.expect("row");
        out.entry(e).or_default().push(s);
    }
    out
}

async fn status(app: &TestApp) -> Value {
    app.client()
        .get(app.url("/api/v1/import"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

async fn spawn(ha: &Ha, data_dir: &Path, prefix: &str, rps: u32) -> TestApp {
    AppOptions::default()
        .env("HOMEIQ_HA__URL", &ha.url)
        .env("HOMEIQ_HA__TOKEN", &ha.token)
        .env("HOMEIQ_DATA_DIR", &data_dir.display().to_string())
        .env(
            "HOMEIQ_INCLUDE__ENTITY_GLOBS",
            &format!("sensor.{prefix}_*"),
        )
        .env("HOMEIQ_IMPORT__REQUESTS_PER_SECOND", &rps.to_string())
        .env("HOMEIQ_IMPORT__ON_FIRST_START", "true")
        .env("HOMEIQ_ANALYSIS__ENABLED", "false")
        .spawn()
        .await
}

async fn ended(app: &TestApp) -> Value {
    eventually("the import to end", WAIT, || async {
        let s = status(app).await;
        (s["running"] == json!(false) && s["run"]["status"] != json!("running")).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_home_assistants_past_resumes_after_a_restart_and_adds_nothing_twice() {
    let ha = Ha::from_env();
    let prefix = unique("imp").to_lowercase();
    let power = format!("sensor.{prefix}_power");
    let energy = format!("sensor.{prefix}_energy");

    // states through the REST API, each different (a repeat is not history)
    for i in 0..12 {
        ha.set_state(
            &power,
            &format!("{}", 100 + i),
            json!({"unit_of_measurement": "W"}),
        )
        .await;
    }
    for i in 0..5 {
        ha.set_state(
            &energy,
            &format!("{}.5", 10 + i),
            json!({"unit_of_measurement": "kWh"}),
        )
        .await;
    }
    // a year of hourly statistics ending two days ago: a mean-type and a sum-type statistic
    let last = hour_floor(Utc::now() - Span::days(2));
    let hours = |n: i64| (0..n).map(move |h| last - Span::hours(n - 1 - h));
    let mean_stats: Vec<Value> = hours(365 * 24)
        .enumerate()
        .map(|(i, t)| json!({"start": t.to_rfc3339(), "mean": 100.0 + (i % 24) as f64, "min": 90.0, "max": 130.0}))
        .collect();
    let sum_stats: Vec<Value> = hours(90 * 24)
        .enumerate()
        .map(|(i, t)| json!({"start": t.to_rfc3339(), "sum": i as f64 * 0.5, "state": 1000.0 + i as f64 * 0.5}))
        .collect();
    ha.ws(vec![
        json!({"type": "recorder/import_statistics",
               "metadata": {"has_mean": true, "has_sum": false, "name": null, "source": "recorder",
                            "statistic_id": power, "unit_of_measurement": "W"},
               "stats": mean_stats}),
        json!({"type": "recorder/import_statistics",
               "metadata": {"has_mean": false, "has_sum": true, "name": null, "source": "recorder",
                            "statistic_id": energy, "unit_of_measurement": "kWh"},
               "stats": sum_stats}),
    ])
    .await;
    // until the recorder has committed all of it
    let want_states = [(power.clone(), 12usize), (energy.clone(), 5)];
    for (entity, n) in &want_states {
        eventually("HA's recorder to commit the states", WAIT, || async {
            (ha_states(&ha, entity).await.len() == *n).then_some(())
        })
        .await;
    }
    let want_hours = [(power.clone(), 365 * 24usize), (energy.clone(), 90 * 24)];
    for (id, n) in &want_hours {
        eventually("HA's recorder to commit the statistics", WAIT, || async {
            (ha_hours(&ha, id).await.len() == *n).then_some(())
        })
        .await;
    }

    // first start, slowly (2 requests/s): stopped in the statistics phase, after its first rows
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let app = spawn(&ha, &data_dir, &prefix, 2).await;
    let mid = eventually("the import to reach its statistics", WAIT, || async {
        let s = status(&app).await;
        assert_ne!(s["run"]["status"], json!("failed"), "{s}");
        (s["run"]["position"]["phase"] == json!("statistics")
            && s["run"]["statistics"]["imported"].as_u64() > Some(0))
        .then_some(s)
    })
    .await;
    assert_eq!(mid["run"]["trigger"], json!("first_start"), "{mid}");
    app.stop().await;
    let partial: usize = imported_hours(&data_dir).values().map(Vec::len).sum();
    assert!(
        partial > 0 && partial < 365 * 24 + 90 * 24,
        "stopped mid-import: {partial}"
    );

    // restart: the interrupted import resumes by itself and completes
    let app = spawn(&ha, &data_dir, &prefix, 50).await;
    let done = ended(&app).await;
    let run = &done["run"];
    assert_eq!(run["status"], json!("succeeded"), "{done}");
    assert_eq!(
        run["trigger"],
        json!("first_start"),
        "the same import, resumed: {done}"
    );
    assert_eq!(run["states"]["total"], json!(2), "{done}");
    assert_eq!(run["statistics"]["total"], json!(2), "{done}");
    assert_eq!(run["position"]["phase"], json!("done"), "{done}");

    // counts equal to what Home Assistant answers for the same queries
    let mut first_raw = BTreeMap::new();
    for (entity, n) in &want_states {
        let ha_times = ha_states(&ha, entity).await;
        let ours = homeiq_states(&app, entity).await;
        assert_eq!(ours.len(), *n, "{entity}: {ours:?} vs HA {ha_times:?}");
        // serde_json's float parser (not HomeIQ's exact one) may be 1 µs off
        assert!(
            ours.iter().zip(&ha_times).all(|(a, b)| (a - b).abs() <= 1),
            "{entity}: the same states at the same times: {ours:?} vs HA {ha_times:?}"
        );
        first_raw.insert(entity.clone(), ours[0] / 1_000_000);
    }
    let imported = imported_hours(&data_dir);
    for (id, _) in &want_hours {
        let before = first_raw[id];
        let ha_rows: Vec<i64> = ha_hours(&ha, id)
            .await
            .into_iter()
            .filter(|s| s + 3600 <= before)
            .collect();
        assert_eq!(
            imported.get(id),
            Some(&ha_rows),
            "{id}: the hours before HomeIQ's own data"
        );
    }
    assert_eq!(imported.len(), 2, "nothing else: {:?}", imported.keys());
    let deep: Value = app
        .client()
        .get(app.url("/health/deep"))
        .send()
        .await
        .expect("deep")
        .json()
        .await
        .expect("json");
    assert_eq!(deep["import"]["run"]["status"], json!("succeeded"));
    let metrics = app
        .client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("homeiq_import_statistics_rows_imported_total"),
        "{metrics}"
    );

    // again, on request: nothing new, nothing twice
    let r = app
        .client()
        .post(app.url("/api/v1/import"))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 202);
    let again = ended(&app).await;
    assert_eq!(again["run"]["status"], json!("succeeded"), "{again}");
    assert_eq!(again["run"]["trigger"], json!("manual"), "{again}");
    assert_eq!(again["run"]["states"]["imported"], json!(0), "{again}");
    for (entity, n) in &want_states {
        assert_eq!(homeiq_states(&app, entity).await.len(), *n, "{entity}");
    }
    assert_eq!(
        imported_hours(&data_dir),
        imported,
        "the same hours, no more"
    );
    app.stop().await;
}
