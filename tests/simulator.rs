//! What only the simulated Home Assistant (`homeiq simulate`) has: its raw WebSocket protocol, its
//! webhook log and its slow-client limit. HomeIQ's client behaviour against it (mirror, points,
//! reconnects, auth failure, restart and backfill, SIGTERM) is in `ha_client.rs`, written once for
//! the simulator and the real Home Assistant.

mod common;

use std::time::Duration;

use common::{HomeIq, HomeIqOptions, Influx, SIM_TOKEN as TOKEN, Served, Sim, eventually, unique};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

fn homeiq_options(sim: &Sim, token: &str) -> HomeIqOptions {
    HomeIqOptions {
        ha_url: sim.url(),
        ha_token: token.to_owned(),
        influx_url: common::env("INFLUX_URL"),
        database: unique("homeiq_sim"),
        data_dir: None,
        extra_env: Vec::new(),
    }
}

fn first_of(states: &Value, domain: &str) -> String {
    states
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|s| s["entity_id"].as_str())
                .find(|id| id.starts_with(&format!("{domain}.")))
        })
        .expect("an entity of the domain")
        .to_owned()
}

fn micros(ts: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp"))
        .expect("rfc3339")
        .timestamp_micros()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_ws(sim: &Sim, token: &str) -> (Ws, Value) {
    let url = format!("ws://127.0.0.1:{}/api/websocket", sim.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "auth_required");
    ws.send(Message::Text(
        json!({"type": "auth", "access_token": token})
            .to_string()
            .into(),
    ))
    .await
    .expect("send auth");
    let reply = next_json(&mut ws).await;
    (ws, reply)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).expect("json frame");
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// Messages of the next frames until one answers `id` (frames may be arrays).
async fn until_result(ws: &mut Ws, id: u64) -> (Value, Vec<Value>, usize) {
    let mut seen = Vec::new();
    let mut arrays = 0;
    loop {
        let frame = next_json(ws).await;
        let items = match frame {
            Value::Array(items) => {
                arrays += 1;
                items
            }
            other => vec![other],
        };
        for item in items {
            if item["id"] == id && (item["type"] == "result" || item["type"] == "pong") {
                return (item, seen, arrays);
            }
            seen.push(item);
        }
    }
}

#[tokio::test]
async fn websocket_protocol_follows_home_assistant() {
    let sim = Sim::start(&["--seed", "11"]);
    let (_, reply) = raw_ws(&sim, "wrong").await;
    assert_eq!(reply["type"], "auth_invalid");

    let (mut ws, reply) = raw_ws(&sim, TOKEN).await;
    assert_eq!(reply["type"], "auth_ok");
    assert!(reply["ha_version"].is_string());
    send(
        &mut ws,
        json!({"id": 1, "type": "supported_features", "features": {"coalesce_messages": 1}}),
    )
    .await;
    let (r, _, _) = until_result(&mut ws, 1).await;
    assert_eq!(r["success"], true);
    send(&mut ws, json!({"id": 1, "type": "ping"})).await;
    let (r, _, _) = until_result(&mut ws, 1).await;
    assert_eq!(r["error"]["code"], "id_reuse");
    send(&mut ws, json!({"id": 2, "type": "no/such_command"})).await;
    let (r, _, _) = until_result(&mut ws, 2).await;
    assert_eq!(r["success"], false);
    assert_eq!(r["error"]["code"], "unknown_command");
    send(&mut ws, json!({"id": 3, "type": "ping"})).await;
    let (r, _, _) = until_result(&mut ws, 3).await;
    assert_eq!(r["type"], "pong");

    // subscribed state changes arrive, several per frame when they come together
    send(
        &mut ws,
        json!({"id": 4, "type": "subscribe_events", "event_type": "state_changed"}),
    )
    .await;
    until_result(&mut ws, 4).await;
    let ha = sim.ha();
    let id = format!("sensor.{}", unique("ws"));
    for i in 0..5 {
        ha.set_state(&id, &i.to_string(), json!({"unit_of_measurement": "W"}))
            .await;
    }
    send(&mut ws, json!({"id": 5, "type": "get_states"})).await;
    let (states, events, _) = until_result(&mut ws, 5).await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["data"]["entity_id"] == id.as_str())
        .collect();
    assert_eq!(
        mine.len(),
        5,
        "every change arrives before the snapshot reply: {events:?}"
    );
    assert!(
        mine.iter()
            .all(|e| e["id"] == 4 && e["event"]["event_type"] == "state_changed")
    );
    assert!(mine[0]["event"]["data"]["old_state"].is_null());
    let snapshot = states["result"].as_array().expect("states");
    assert!(
        snapshot
            .iter()
            .any(|s| s["entity_id"] == id.as_str() && s["state"] == "4")
    );

    // history in the compressed format the backfill reads
    send(
        &mut ws,
        json!({
            "id": 6, "type": "history/history_during_period",
            "start_time": "2000-01-01T00:00:00+00:00", "entity_ids": [id],
            "include_start_time_state": false, "significant_changes_only": false,
            "minimal_response": false, "no_attributes": false,
        }),
    )
    .await;
    let (h, _, _) = until_result(&mut ws, 6).await;
    let rows = h["result"][&id].as_array().expect("history rows");
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4]["s"], "4");
    assert_eq!(rows[4]["a"]["unit_of_measurement"], "W");
    assert!(rows[4]["lu"].is_f64());

    // a burst of events is coalesced into array frames
    for i in 0..50 {
        ha.set_state(&id, &format!("{}", 100 + i), json!({})).await;
    }
    send(&mut ws, json!({"id": 7, "type": "ping"})).await;
    let (_, events, _) = until_result(&mut ws, 7).await;
    let mut mine = events
        .iter()
        .filter(|e| e["event"]["data"]["entity_id"] == id.as_str())
        .count();
    // under load some events can still follow the pong (the simulator fans events out on another
    // task; Home Assistant would have queued them before): read on until all 50 are in
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mine < 50 && tokio::time::Instant::now() < deadline {
        let frame = tokio::time::timeout_at(deadline, next_json(&mut ws))
            .await
            .unwrap_or(Value::Null);
        let items = match frame {
            Value::Array(items) => items,
            other => vec![other],
        };
        mine += items
            .iter()
            .filter(|e| e["event"]["data"]["entity_id"] == id.as_str())
            .count();
    }
    assert_eq!(mine, 50);
    // one service call switching every light: its events and its result share array frames
    send(
        &mut ws,
        json!({"id": 8, "type": "call_service", "domain": "light",
                         "service": "toggle", "service_data": {"entity_id": "all"}}),
    )
    .await;
    let (r, events, arrays) = until_result(&mut ws, 8).await;
    assert_eq!(r["success"], true);
    assert!(r["result"]["context"]["id"].is_string());
    let lights = events
        .iter()
        .filter(|e| {
            e["event"]["data"]["entity_id"]
                .as_str()
                .is_some_and(|i| i.starts_with("light."))
        })
        .count();
    assert!(lights >= 5, "{events:?}");
    assert!(arrays >= 1, "coalesced frames are arrays");
}

#[tokio::test]
async fn a_webhook_automation_turns_on_a_light() {
    let sim = Sim::start(&["--seed", "61"]);
    let ha = sim.ha();
    let influx = Influx::from_env();
    let homeiq = HomeIq::spawn(homeiq_options(&sim, TOKEN)).await;
    homeiq.wait_synced().await;
    let light = first_of(&ha.get("states").await, "light");
    ha.call_service("light", "turn_off", json!({"entity_id": light}))
        .await;
    let hook = unique("hook");
    ha.post(
        "config/automation/config/test_hook",
        json!({
            "alias": "Light on webhook",
            "triggers": [{"trigger": "webhook", "webhook_id": hook, "local_only": true}],
            "conditions": [],
            "actions": [{"action": "light.turn_on", "target": {"entity_id": light}}],
            "mode": "single",
        }),
    )
    .await;
    let stored = ha.get("config/automation/config/test_hook").await;
    assert_eq!(stored["id"], "test_hook");

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/webhook/{hook}", sim.url()))
        .json(&json!({"hello": "world"}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200);
    let state = ha.state(&light).await;
    assert_eq!(state["state"], "on");
    // the change is made in the automation run's own context (a webhook trigger has no parent)
    assert!(state["context"]["id"].is_string());
    assert!(state["context"]["parent_id"].is_null() && state["context"]["user_id"].is_null());
    let calls = ha.get("simulator/webhook_calls").await;
    assert_eq!(calls[0]["webhook_id"], hook.as_str());
    assert_eq!(calls[0]["json"]["hello"], "world");
    let t = micros(&state["last_updated"]);
    eventually("the light's point", WAIT, || async {
        influx
            .point_times(&homeiq.database, "light", &light)
            .await
            .contains(&t)
            .then_some(())
    })
    .await;
}

/// `config/auth/list` answers as Home Assistant 2025.4 does (people and system-generated users),
/// and `/api/simulator/routines` lists the planted truth in the patterns API's vocabulary.
#[tokio::test]
async fn users_and_planted_routines_are_listed() {
    let sim = Sim::start(&["--seed", "13", "--time-zone", "Europe/Amsterdam"]);
    let (mut ws, reply) = raw_ws(&sim, TOKEN).await;
    assert_eq!(reply["type"], "auth_ok");
    send(&mut ws, json!({"id": 1, "type": "config/auth/list"})).await;
    let (r, _, _) = until_result(&mut ws, 1).await;
    assert_eq!(r["success"], true);
    let users = r["result"].as_array().expect("users");
    for u in users {
        let keys: Vec<&str> = u
            .as_object()
            .expect("user")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.len(),
            9,
            "id, username, name, is_owner, is_active, local_only, system_generated, group_ids, \
             credentials: {u}"
        );
        assert!(u["id"].as_str().is_some_and(|id| id.len() == 32), "{u}");
        assert!(u["group_ids"].is_array() && u["credentials"].is_array());
        if u["system_generated"] == true {
            assert!(u["username"].is_null() && u["credentials"] == json!([]));
        } else {
            assert_eq!(u["credentials"], json!([{"type": "homeassistant"}]));
        }
    }
    let owners: Vec<&Value> = users.iter().filter(|u| u["is_owner"] == true).collect();
    assert_eq!(owners.len(), 1);
    let people = users
        .iter()
        .filter(|u| u["system_generated"] == false)
        .count();
    assert!(people >= 2, "the owner and a second person: {users:?}");
    for name in ["Supervisor", "Node-RED"] {
        assert!(
            users
                .iter()
                .any(|u| u["name"] == name && u["system_generated"] == true)
        );
    }

    let ha = sim.ha();
    let routines = ha.get("simulator/routines").await;
    assert_eq!(routines["time_zone"], "Europe/Amsterdam");
    assert_eq!(routines["users"], r["result"]);
    let habits = routines["habits"].as_array().expect("habits");
    assert!(habits.len() >= 6, "{habits:?}");
    for h in habits {
        assert_eq!(h["kind"], "time_of_day");
        assert!(
            h["local_time"]
                .as_str()
                .is_some_and(|t| t.len() == 5 && t.as_bytes()[2] == b':')
        );
        assert!(["all", "weekday", "weekend"].contains(&h["day_type"].as_str().unwrap_or("")));
        assert!(
            h["probability"]
                .as_f64()
                .is_some_and(|p| p > 0.0 && p <= 1.0)
        );
        let user = users
            .iter()
            .find(|u| u["id"] == h["user_id"])
            .expect("a listed user");
        assert_eq!(user["system_generated"], false);
    }
    assert!(routines["sequences"].as_array().is_some_and(|s| {
        s.iter().all(|s| {
            s["kind"] == "co_occurrence"
                && s["trigger"]["entity_id"].is_string()
                && s["delay_seconds"]["max"].is_u64()
        })
    }));
    // each planted automation exists as an automation.* entity with its id
    let states = ha.get("states").await;
    for a in routines["automations"].as_array().expect("automations") {
        let entity = states
            .as_array()
            .and_then(|s| s.iter().find(|s| s["entity_id"] == a["entity_id"]))
            .expect("the automation's entity");
        assert_eq!(entity["attributes"]["id"], a["id"]);
        assert!(["state", "time"].contains(&a["trigger"]["platform"].as_str().unwrap_or("")));
    }
    assert!(
        routines["regularities"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    let r = reqwest::Client::new()
        .get(format!("{}/api/simulator/routines", sim.url()))
        .send()
        .await
        .expect("unauthenticated");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let sim = Sim::start(&["--seed", "71", "--rate", "20000", "--max-pending", "4096"]);
    let (mut ws, reply) = raw_ws(&sim, TOKEN).await;
    assert_eq!(reply["type"], "auth_ok");
    send(
        &mut ws,
        json!({"id": 1, "type": "supported_features", "features": {"coalesce_messages": 1}}),
    )
    .await;
    send(
        &mut ws,
        json!({"id": 2, "type": "subscribe_events", "event_type": "state_changed"}),
    )
    .await;
    // stop reading: the socket buffers fill, then the pending events pass the limit
    let ha = sim.ha();
    let status = eventually("the slow client dropped", WAIT, || async {
        let s = ha.get("simulator/status").await;
        (s["dropped_clients"].as_u64().unwrap_or(0) >= 1).then_some(s)
    })
    .await;
    assert!(status["events_published"].as_u64().unwrap_or(0) > 4_096);
    // what was buffered can still be read, then the socket ends
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed");
    assert!(sim.log().contains("too slow"), "{}", sim.log());
}

/// `--ha-version` picks the registry shapes: 2025.4 rows carry `has_entity_name`; 2026.11 rows
/// do not (and add `next_name_part`), legacy names lose their device-name prefix, and child
/// devices come as reduced rows with `parent_device_id`. The home itself is the same.
#[tokio::test]
async fn registry_rows_have_the_shape_of_the_chosen_release() {
    let old = Sim::start(&["--seed", "13"]);
    let new = Sim::start(&["--seed", "13", "--ha-version", "2026.11"]);
    let lists = |sim: &Sim| {
        let ha = sim.ha();
        async move {
            ha.ws(vec![
                json!({"type": "config/entity_registry/list"}),
                json!({"type": "config/device_registry/list"}),
                json!({"type": "get_config"}),
            ])
            .await
        }
    };
    let (old_lists, new_lists) = (lists(&old).await, lists(&new).await);
    assert_eq!(old_lists[2]["version"], "2025.4.4");
    assert_eq!(new_lists[2]["version"], "2026.11.0");
    let (old_entities, new_entities) = (
        old_lists[0].as_array().expect("entities"),
        new_lists[0].as_array().expect("entities"),
    );
    assert_eq!(old_entities.len(), new_entities.len());
    assert!(
        old_entities
            .iter()
            .all(|e| e["has_entity_name"].is_boolean())
    );
    assert!(
        new_entities
            .iter()
            .all(|e| e.get("has_entity_name").is_none() && e.get("next_name_part").is_some())
    );
    let by_id = |rows: &[Value], id: &str| {
        rows.iter()
            .find(|r| r["entity_id"] == id)
            .cloned()
            .expect("row")
    };
    // a battery is named the legacy way in 2025.4: its whole name, device name first
    let battery = old_entities
        .iter()
        .find(|e| {
            e["entity_id"]
                .as_str()
                .is_some_and(|id| id.ends_with("_battery"))
        })
        .expect("a battery");
    let id = battery["entity_id"].as_str().expect("id");
    assert_eq!(battery["has_entity_name"], false);
    assert!(
        battery["original_name"]
            .as_str()
            .is_some_and(|n| n.ends_with(" Battery") && n.len() > 8)
    );
    assert_eq!(by_id(new_entities, id)["original_name"], "Battery");

    let (old_devices, new_devices) = (
        old_lists[1].as_array().expect("devices"),
        new_lists[1].as_array().expect("devices"),
    );
    let children: Vec<&Value> = new_devices
        .iter()
        .filter(|d| d["parent_device_id"].is_string())
        .collect();
    assert_eq!(children.len(), 3);
    for child in &children {
        for absent in ["manufacturer", "model", "connections", "config_entries"] {
            assert!(child.get(absent).is_none(), "{absent} in {child}");
        }
        assert!(
            child["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Phase "))
        );
        let old_row = old_devices
            .iter()
            .find(|d| d["id"] == child["id"])
            .expect("same device");
        assert_eq!(old_row["via_device_id"], child["parent_device_id"]);
        assert!(old_row["manufacturer"].is_string());
        assert!(old_row.get("parent_device_id").is_none());
    }
    assert!(
        new_devices
            .iter()
            .all(|d| d.get("config_entry_id").is_some() && d.get("config_subentry_id").is_some())
    );
    // states (and so friendly names) are the same in both
    let names = |states: Value| {
        let mut v: Vec<(String, String)> = states
            .as_array()
            .expect("states")
            .iter()
            .map(|s| {
                (
                    s["entity_id"].as_str().unwrap_or_default().to_owned(),
                    s["attributes"]["friendly_name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(old.ha().get("states").await),
        names(new.ha().get("states").await)
    );
}

/// Entities Home Assistant no longer has when HomeIQ starts — removed while it was stopped — are
/// gone after the first snapshot, as a live removal makes them go: a registry entity (its
/// registry entry and state removed) and a state-only entity (its state removed).
#[tokio::test]
async fn entities_removed_while_homeiq_is_stopped_are_gone_after_it_starts() {
    let sim = Sim::start(&["--seed", "17"]);
    let ha = sim.ha();
    let data = tempfile::tempdir().expect("tempdir");
    let mut options = homeiq_options(&sim, TOKEN);
    options.data_dir = Some(data.path().join("data"));
    let mut homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;

    let states = ha.get("states").await;
    let registered = first_of(&states, "binary_sensor");
    let kept = first_of(&states, "light");
    let state_only = format!("sensor.{}", unique("state_only"));
    ha.set_state(&state_only, "1", json!({"friendly_name": "Soon Gone"}))
        .await;
    let http = reqwest::Client::new();
    let status = |homeiq: &HomeIq, id: &str| {
        let (http, url) = (http.clone(), homeiq.url(&format!("/api/v1/entities/{id}")));
        async move { http.get(url).send().await.expect("get").status().as_u16() }
    };
    let listed = |homeiq: &HomeIq| {
        let (http, url) = (
            http.clone(),
            homeiq.url("/api/v1/entities?include_disabled=true&limit=1000"),
        );
        async move {
            let page: Value = http
                .get(url)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            page["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|e| e["entity_id"].as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    eventually("both entities listed", WAIT, || async {
        let ids = listed(&homeiq).await;
        (ids.contains(&registered) && ids.contains(&state_only)).then_some(())
    })
    .await;
    // and stored: a state-only entity's facts are in the mirror's state metadata
    eventually("state-only entity in the mirror", WAIT, || async {
        let store = homeiq.registry().await;
        store.get_entity(&state_only).await.ok().flatten()
    })
    .await;

    homeiq.signal("TERM");
    let (code, _) = homeiq.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", homeiq.log());
    ha.ws1(json!({"type": "config/entity_registry/remove", "entity_id": registered}))
        .await;
    let r = http
        .delete(format!("{}/api/states/{state_only}", ha.url))
        .bearer_auth(&ha.token)
        .send()
        .await
        .expect("delete state");
    assert_eq!(r.status(), 200);

    homeiq.start().await;
    homeiq.wait_synced().await;
    eventually("removed entities gone from the API", WAIT, || async {
        let ids = listed(&homeiq).await;
        let gone = !ids.contains(&registered) && !ids.contains(&state_only);
        (gone
            && status(&homeiq, &registered).await == 404
            && status(&homeiq, &state_only).await == 404)
            .then_some(())
    })
    .await;
    assert_eq!(status(&homeiq, &kept).await, 200, "what HA still has stays");
    let store = homeiq.registry().await;
    assert!(store.get_entity(&registered).await.expect("get").is_none());
    assert!(store.get_entity(&state_only).await.expect("get").is_none());
}

/// `config/entity_registry/remove` removes the registry entry (an `entity_registry_updated`
/// `remove` event) and the state (`new_state: null`); `DELETE /api/states/<id>` the state only.
#[tokio::test]
async fn removing_entities_fires_what_home_assistant_fires() {
    let sim = Sim::start(&["--seed", "19"]);
    let ha = sim.ha();
    let (mut ws, _) = raw_ws(&sim, TOKEN).await;
    send(&mut ws, json!({"id": 1, "type": "subscribe_events"})).await;
    until_result(&mut ws, 1).await;
    let states = ha.get("states").await;
    let light = first_of(&states, "light");
    send(
        &mut ws,
        json!({"id": 2, "type": "config/entity_registry/remove", "entity_id": light}),
    )
    .await;
    let (r, mut events, _) = until_result(&mut ws, 2).await;
    assert_eq!(r["success"], true, "{r}");
    send(&mut ws, json!({"id": 3, "type": "ping"})).await;
    events.extend(until_result(&mut ws, 3).await.1);
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event"]["data"]["entity_id"] == light.as_str()
                && e["event"]["event_type"] != "state_changed"
                || e["event"]["data"]["entity_id"] == light.as_str()
                    && e["event"]["data"]["new_state"].is_null()
        })
        .collect();
    assert_eq!(mine.len(), 2, "{events:?}");
    assert_eq!(mine[0]["event"]["event_type"], "entity_registry_updated");
    assert_eq!(mine[0]["event"]["data"]["action"], "remove");
    assert_eq!(mine[1]["event"]["event_type"], "state_changed");
    let list = ha.ws1(json!({"type": "config/entity_registry/list"})).await;
    assert!(
        !list
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["entity_id"] == light.as_str())
    );
    send(
        &mut ws,
        json!({"id": 4, "type": "config/entity_registry/remove", "entity_id": light}),
    )
    .await;
    let (r, _, _) = until_result(&mut ws, 4).await;
    assert_eq!(r["error"]["code"], "not_found");

    let http = reqwest::Client::new();
    let delete = |id: String| {
        let (http, url, token) = (
            http.clone(),
            format!("{}/api/states/{id}", ha.url),
            ha.token.clone(),
        );
        async move {
            http.delete(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("delete")
                .status()
                .as_u16()
        }
    };
    let sensor = first_of(&states, "sensor");
    assert_eq!(delete(sensor.clone()).await, 200);
    assert_eq!(delete(sensor.clone()).await, 404);
    // the registry entry stays
    let list = ha.ws1(json!({"type": "config/entity_registry/list"})).await;
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|e| e["entity_id"] == sensor.as_str())
    );
}

/// `--time-zone` names the home's time zone in `get_config` (and `GET /api/config`); a name that
/// is not an IANA zone is refused before anything starts.
#[tokio::test]
async fn the_home_lives_in_the_time_zone_it_is_given() {
    let sim = Sim::start(&["--time-zone", "America/New_York"]);
    let config = sim.ha().ws(vec![json!({"type": "get_config"})]).await;
    assert_eq!(config[0]["time_zone"], "America/New_York");
    let utc = Sim::start(&[]);
    let config = utc.ha().ws(vec![json!({"type": "get_config"})]).await;
    assert_eq!(config[0]["time_zone"], "UTC");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homeiq"))
        .args([
            "simulate",
            "--port",
            "0",
            "--time-zone",
            "Mars/Olympus_Mons",
        ])
        .output()
        .expect("run homeiq simulate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`Mars/Olympus_Mons` is not an IANA time zone name"),
        "{stderr}"
    );
}
