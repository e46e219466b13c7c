//! The HA client suite: HomeIQ's Home Assistant client (the real `homeiq` binary) against an
//! upstream, each case written once and run against both targets (`both_targets!` below):
//! * `real_ha::*`: the real Home Assistant `.ci/run` starts (`HA_URL`, `HA_TOKEN`), or, for the
//!   case that stops and restarts it, a private one (`OwnHa`), so no other test loses its upstream;
//! * `simulator::*`: `homeiq simulate` on a free port, one per test, speaking Home Assistant
//!   2025.4's registry shapes (as the real one CI runs);
//! * `sim_2026::*`: the same with `--ha-version 2026.11` (no `has_entity_name`, reduced child
//!   device rows: the real 2026.11 needs a newer Python than CI's machines have).
//!
//! Most cases put a TCP proxy between HomeIQ and the upstream that can cut every connection,
//! refuse new ones or swallow traffic. Raw protocol checks of the simulator stay in `simulator.rs`,
//! the `https`/TLS check (no upstream at all) in `connection.rs`.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Ha, HomeIq, HomeIqOptions, Influx, OwnHa, Served, Sim, eventually, unique};
use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(45);
/// A real Home Assistant takes far longer than the simulator to come back after a restart.
const RESTART_WAIT: Duration = Duration::from_secs(120);
/// Subscriptions HomeIQ keeps per connection: state changes, the five registries, and the runs
/// of automations and scripts (`automation_triggered`, `script_started`).
const SUBSCRIPTIONS: u64 = 8;

/// Which upstream a case runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    RealHa,
    /// The simulator speaking Home Assistant 2025.4.
    Simulator,
    /// The simulator speaking Home Assistant 2026.11.
    Simulator2026,
}

impl Target {
    /// The simulator's `--ha-version` (`None` for the real Home Assistant).
    fn ha_version(self) -> Option<&'static str> {
        match self {
            Target::RealHa => None,
            Target::Simulator => Some("2025.4"),
            Target::Simulator2026 => Some("2026.11"),
        }
    }
}

/// The upstream process behind an [`Upstream`].
enum Server {
    /// The shared Home Assistant of `.ci/run`: never stopped by a test.
    Shared,
    /// A private Home Assistant (`None` only while it is stopped or started off the runtime).
    Own(Option<OwnHa>),
    /// A simulator of the test's own (`None` only while it is started off the runtime).
    Sim(Option<Sim>),
}

/// An upstream Home Assistant, real or simulated: starts, stops and restarts it, and reaches it
/// (URL, token, states, registries) through REST and its WebSocket API, independently of HomeIQ.
struct Upstream {
    target: Target,
    server: Server,
    ha: Ha,
}

impl Upstream {
    /// One the test does not stop: the shared Home Assistant, or a simulator of its own
    /// (`sim_args`: `--seed`, `--profile`, ...).
    async fn start(target: Target, sim_args: &[&str]) -> Self {
        match target {
            Target::RealHa => Upstream {
                target,
                server: Server::Shared,
                ha: Ha::from_env(),
            },
            Target::Simulator | Target::Simulator2026 => Self::simulator(target, sim_args).await,
        }
    }

    /// One the test may stop and restart: a private Home Assistant, or a simulator of its own.
    async fn start_restartable(target: Target, sim_args: &[&str]) -> Self {
        match target {
            Target::RealHa => {
                let (own, ha) = tokio::task::spawn_blocking(OwnHa::start)
                    .await
                    .expect("start a private Home Assistant");
                Upstream {
                    target,
                    server: Server::Own(Some(own)),
                    ha,
                }
            }
            Target::Simulator | Target::Simulator2026 => Self::simulator(target, sim_args).await,
        }
    }

    async fn simulator(target: Target, sim_args: &[&str]) -> Self {
        let mut args: Vec<String> = sim_args.iter().map(|s| (*s).to_owned()).collect();
        if let Some(version) = target.ha_version() {
            args.extend(["--ha-version".to_owned(), version.to_owned()]);
        }
        let sim = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Sim::start(&args)
        })
        .await
        .expect("start the simulator");
        Upstream {
            target,
            ha: sim.ha(),
            server: Server::Sim(Some(sim)),
        }
    }

    /// REST and WebSocket access with the upstream's URL and token.
    fn ha(&self) -> &Ha {
        &self.ha
    }

    /// `host:port`, for the proxy.
    fn addr(&self) -> String {
        self.ha
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    }

    /// HomeIQ settings for this upstream at `ha_url` (the upstream itself or a proxy), with a
    /// database of its own.
    fn options(&self, ha_url: &str) -> HomeIqOptions {
        HomeIqOptions {
            ha_url: ha_url.to_owned(),
            ha_token: self.ha.token.clone(),
            influx_url: common::env("INFLUX_URL"),
            database: unique("haclient"),
            data_dir: None,
            extra_env: Vec::new(),
        }
    }

    /// Stops the upstream; its port stays reserved for [`Upstream::start_again`].
    async fn stop(&mut self) {
        match &mut self.server {
            Server::Shared => panic!("the shared Home Assistant is never stopped by a test"),
            Server::Own(slot) => {
                let own = slot.take().expect("running");
                let own = tokio::task::spawn_blocking(move || {
                    own.stop();
                    own
                })
                .await
                .expect("stop Home Assistant");
                *slot = Some(own);
            }
            Server::Sim(slot) => slot.as_mut().expect("running").kill(),
        }
    }

    /// Starts the stopped upstream again on the same port (Home Assistant with its files; the
    /// simulator with its seed, so the same registries).
    async fn start_again(&mut self) {
        match &mut self.server {
            Server::Shared => panic!("the shared Home Assistant is never restarted by a test"),
            Server::Own(slot) => {
                let own = slot.take().expect("stopped");
                let (own, ha) = tokio::task::spawn_blocking(move || {
                    let ha = own.run_start();
                    (own, ha)
                })
                .await
                .expect("start Home Assistant again");
                self.ha = ha;
                *slot = Some(own);
            }
            Server::Sim(slot) => {
                let mut sim = slot.take().expect("stopped");
                let port = sim.port;
                let sim = tokio::task::spawn_blocking(move || {
                    sim.run(port);
                    sim
                })
                .await
                .expect("start the simulator again");
                self.ha = sim.ha();
                *slot = Some(sim);
            }
        }
    }

    /// A light of the upstream no other test uses: its state (`points` case) or its registry entry
    /// (`mirror` case, changed and restored) may be changed. The shared Home Assistant's demo lights
    /// are split between the cases and other test files (which use `bed_light`, `kitchen_lights`
    /// and `ceiling_lights`); a simulator belongs to its test.
    async fn spare_light(&self, which: usize) -> String {
        match self.target {
            Target::RealHa => {
                ["light.living_room_rgbww_lights", "light.office_rgbw_lights"][which].to_owned()
            }
            Target::Simulator | Target::Simulator2026 => self
                .ha
                .get("states")
                .await
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .filter_map(|s| s["entity_id"].as_str())
                        .find(|id| id.starts_with("light."))
                        .map(str::to_owned)
                })
                .expect("a light in the simulated home"),
        }
    }
}

/// The registries in the order of [`REGISTRIES`].
const REGISTRIES: [(&str, &str); 5] = [
    ("config/floor_registry/list", "floor_id"),
    ("config/area_registry/list", "area_id"),
    ("config/label_registry/list", "label_id"),
    ("config/device_registry/list", "id"),
    ("config/entity_registry/list", "entity_id"),
];

fn ids_of(rows: &[Value], key: &str) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|r| r[key].as_str().map(str::to_owned))
        .collect()
}

/// The ids in each of the upstream's five registries.
async fn upstream_ids(ha: &Ha) -> [BTreeSet<String>; 5] {
    let lists = ha
        .ws(REGISTRIES
            .iter()
            .map(|(command, _)| json!({ "type": command }))
            .collect())
        .await;
    std::array::from_fn(|i| ids_of(lists[i].as_array().expect("a list"), REGISTRIES[i].1))
}

fn as_values<T: serde::Serialize>(rows: Vec<T>) -> Vec<Value> {
    rows.into_iter()
        .map(|r| serde_json::to_value(r).expect("serialise"))
        .collect()
}

/// The ids in each of HomeIQ's five mirrored registries (entities: registry rows only; the mirror
/// also lists state-only entities, which have no registry id).
async fn mirror_ids(homeiq: &HomeIq) -> Option<[BTreeSet<String>; 5]> {
    let store = homeiq.registry().await;
    let entities: Vec<Value> = as_values(store.list_entities().await.ok()?)
        .into_iter()
        .filter(|e| !e["id"].is_null())
        .collect();
    Some([
        ids_of(&as_values(store.list_floors().await.ok()?), "floor_id"),
        ids_of(&as_values(store.list_areas().await.ok()?), "area_id"),
        ids_of(&as_values(store.list_labels().await.ok()?), "label_id"),
        ids_of(&as_values(store.list_devices().await.ok()?), "id"),
        ids_of(&entities, "entity_id"),
    ])
}

async fn mirror_entity(homeiq: &HomeIq, entity_id: &str) -> Option<Value> {
    let store = homeiq.registry().await;
    as_values(store.list_entities().await.ok()?)
        .into_iter()
        .find(|r| r["entity_id"] == entity_id && !r["id"].is_null())
}

async fn mirror_area(homeiq: &HomeIq, area_id: &str) -> Option<Value> {
    let store = homeiq.registry().await;
    as_values(store.list_areas().await.ok()?)
        .into_iter()
        .find(|a| a["area_id"] == area_id)
}

/// A TCP proxy in front of the upstream that can cut every connection, refuse new ones, or
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

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
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

fn ha_status(deep: &Value) -> &Value {
    &deep["home_assistant"]
}

fn micros(ts: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp"))
        .expect("rfc3339")
        .timestamp_micros()
}

/// How many points an entity has (`count(state)`).
async fn point_count(influx: &Influx, db: &str, measurement: &str, entity_id: &str) -> u64 {
    influx
        .rows(
            db,
            &format!("SELECT count(state) FROM \"{measurement}\" WHERE entity_id = '{entity_id}'"),
        )
        .await
        .first()
        .and_then(|r| r["count"].as_u64())
        .unwrap_or(0)
}

/// Sets `entity_id` to `n` distinct values and waits until InfluxDB holds exactly those `n` points,
/// at the `last_updated` times Home Assistant gave them (never more points on the way).
async fn drive_and_count(ha: &Ha, homeiq: &HomeIq, influx: &Influx, entity_id: &str, n: usize) {
    let mut times = Vec::new();
    for i in 0..n {
        let s = ha
            .set_state(
                entity_id,
                &format!("{}", 100 + i),
                json!({"unit_of_measurement": "W"}),
            )
            .await;
        times.push(micros(&s["last_updated"]));
    }
    let db = homeiq.database.clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let count = point_count(influx, &db, "sensor", entity_id).await;
        assert!(count <= n as u64, "more points than changes: {count} > {n}");
        if count == n as u64 {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "{count} of {n} points for {entity_id}; HomeIQ: {}",
                homeiq.deep().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        influx.point_times(&db, "sensor", entity_id).await,
        times,
        "points at last_updated, to the microsecond"
    );
}

/// Asserts that `check` stays true for the whole `window`, checking it repeatedly. Only for
/// asserting that something does *not* happen (which needs a window), never to wait for something.
async fn holds_for<F, Fut>(what: &str, window: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(check().await, "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(check().await, "no longer true: {what}");
}

/// Runs `body`, then `cleanup` whatever happened, then reports a failure of `body`: the shared
/// Home Assistant is restored before the test fails.
async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()>,
    C: Future<Output = ()>,
{
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ------------------------------------------------------------------------------------------------
// The cases, each generic over the target
// ------------------------------------------------------------------------------------------------

/// After the first connect the mirror holds exactly the upstream's floors, areas, labels, devices
/// and entities; registry changes then reach it live, without a reconnect.
async fn registry_mirror_matches_and_follows_upstream(target: Target) {
    let up = Upstream::start(target, &["--seed", "21", "--profile", "medium"]).await;
    let ha = up.ha().clone();
    let homeiq = HomeIq::spawn(up.options(&ha.url)).await;
    homeiq.wait_synced().await;
    let expected = eventually("mirror ids equal to the upstream's", WAIT, || async {
        let upstream = upstream_ids(&ha).await;
        (mirror_ids(&homeiq).await? == upstream).then_some(upstream)
    })
    .await;
    let min_entities = match target {
        Target::RealHa => 60,                             // the demo integration
        Target::Simulator | Target::Simulator2026 => 450, // a medium simulated home
    };
    assert!(expected[1].len() >= 3, "areas: {:?}", expected[1]);
    assert!(expected[3].len() >= 40, "devices: {}", expected[3].len());
    assert!(
        expected[4].len() >= min_entities,
        "entities: {}",
        expected[4].len()
    );
    let connects = ha_status(&homeiq.deep().await)["connects"].clone();
    assert_eq!(connects, 1);

    // an area created and renamed, a light moved into it and named; then all of it undone
    let name = unique("Suite Area");
    let area = ha
        .ws1(json!({"type": "config/area_registry/create", "name": name}))
        .await;
    let area_id = area["area_id"].as_str().expect("area_id").to_owned();
    let light = up.spare_light(1).await;
    let original = ha
        .ws1(json!({"type": "config/entity_registry/get", "entity_id": light}))
        .await;
    let before = eventually("the light in the mirror", WAIT, || {
        mirror_entity(&homeiq, &light)
    })
    .await;
    let light_name = unique("Suite Light");
    let body = async {
        eventually("created area in the mirror", WAIT, || async {
            mirror_area(&homeiq, &area_id)
                .await
                .filter(|a| a["name"] == name.as_str())
        })
        .await;
        let renamed = unique("Renamed Suite Area");
        ha.ws1(json!({"type": "config/area_registry/update", "area_id": area_id, "name": renamed}))
            .await;
        eventually("area rename in the mirror", WAIT, || async {
            mirror_area(&homeiq, &area_id)
                .await
                .filter(|a| a["name"] == renamed.as_str())
        })
        .await;
        ha.ws1(
            json!({"type": "config/entity_registry/update", "entity_id": light,
                      "area_id": area_id, "name": light_name}),
        )
        .await;
        let moved = eventually("the light's new area and name in the mirror", WAIT, || {
            let (homeiq, light, area_id, light_name) = (&homeiq, &light, &area_id, &light_name);
            async move {
                mirror_entity(homeiq, light).await.filter(|r| {
                    r["area_id"] == area_id.as_str() && r["name"] == light_name.as_str()
                })
            }
        })
        .await;
        assert_eq!(moved["id"], before["id"], "the registry id stays");
    };
    let cleanup = async {
        ha.ws1(
            json!({"type": "config/entity_registry/update", "entity_id": light,
                      "area_id": original["area_id"], "name": original["name"]}),
        )
        .await;
        ha.ws1(json!({"type": "config/area_registry/delete", "area_id": area_id}))
            .await;
    };
    with_cleanup(body, cleanup).await;
    eventually(
        "deleted area gone, light restored in the mirror",
        WAIT,
        || async {
            let row = mirror_entity(&homeiq, &light).await?;
            (mirror_area(&homeiq, &area_id).await.is_none()
                && row["area_id"] == original["area_id"]
                && row["name"] == original["name"])
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        ha_status(&homeiq.deep().await)["connects"],
        connects,
        "followed live, no reconnect"
    );
}

/// State changes become points: exactly one per change, at its `last_updated`; a service call's
/// change too.
async fn state_changes_become_points_exactly_once(target: Target) {
    let up = Upstream::start(target, &["--seed", "31"]).await;
    let ha = up.ha().clone();
    let influx = Influx::from_env();
    let homeiq = HomeIq::spawn(up.options(&ha.url)).await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();

    let id = format!("sensor.{}", unique("points"));
    drive_and_count(&ha, &homeiq, &influx, &id, 7).await;

    // a light switched through service calls
    let light = up.spare_light(0).await;
    ha.call_service("light", "turn_off", json!({"entity_id": light}))
        .await;
    ha.call_service(
        "light",
        "turn_on",
        json!({"entity_id": light, "brightness": 77}),
    )
    .await;
    let state = ha.state(&light).await;
    assert_eq!(state["state"], "on");
    assert_eq!(state["attributes"]["brightness"], 77);
    let t = micros(&state["last_updated"]);
    eventually("the light's point at last_updated", WAIT, || async {
        influx
            .point_times(&db, "light", &light)
            .await
            .contains(&t)
            .then_some(())
    })
    .await;

    let deep = homeiq.deep().await;
    assert_eq!(deep["ingest"]["duplicates"], 0, "{deep}");
    assert_eq!(deep["storage"]["influxdb"]["dropped_rejected"], 0, "{deep}");
    assert_eq!(point_count(&influx, &db, "sensor", &id).await, 7);
}

/// The socket is cut; while HomeIQ cannot reconnect the upstream changes (a state, an area). After
/// reconnecting: every subscription sent exactly once more, the mirror and the states re-synced,
/// and each later change received once.
async fn connection_cut_resubscribes_once_and_resyncs(target: Target) {
    let up = Upstream::start(target, &["--seed", "41"]).await;
    let ha = up.ha().clone();
    let influx = Influx::from_env();
    let proxy = Proxy::start(up.addr()).await;
    let homeiq = HomeIq::spawn(
        up.options(&proxy.url())
            .env("HOMEIQ_HA__RECONNECT_MAX_SECS", "2"),
    )
    .await;
    let first = homeiq.wait_synced().await;
    assert_eq!(ha_status(&first)["connects"], 1);
    assert_eq!(ha_status(&first)["subscriptions"], SUBSCRIPTIONS);
    assert_eq!(ha_status(&first)["subscriptions_sent"], SUBSCRIPTIONS);

    // cut, and keep HomeIQ out while the upstream changes
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
    let area = ha
        .ws1(json!({"type": "config/area_registry/create", "name": unique("Cellar")}))
        .await;
    let area_id = area["area_id"].as_str().expect("area").to_owned();
    proxy.refuse.store(false, Ordering::SeqCst);

    let body = async {
        let second = homeiq
            .wait_deep("reconnected and re-synced", WAIT, |d| {
                ha_status(d)["connects"] == 2
                    && ha_status(d)["state"] == "connected"
                    && d["ingest"]["snapshots"].as_u64().unwrap_or(0) >= 2
            })
            .await;
        assert_eq!(ha_status(&second)["subscriptions"], SUBSCRIPTIONS);
        assert_eq!(
            ha_status(&second)["subscriptions_sent"],
            2 * SUBSCRIPTIONS,
            "each subscription once per connection: {second}"
        );
        // the mirror learnt of the area created while disconnected (full sync on reconnect)
        eventually("area created while disconnected is mirrored", WAIT, || {
            mirror_area(&homeiq, &area_id)
        })
        .await;
        // the state set while disconnected was written from the snapshot, at its own time
        let t = micros(&missed["last_updated"]);
        eventually("missed state written from the snapshot", WAIT, || async {
            (influx
                .point_times(&homeiq.database, "sensor", &missed_entity)
                .await
                == [t])
            .then_some(())
        })
        .await;
        // each later change is received once
        let entity = format!("sensor.{}", unique("after_cut"));
        drive_and_count(&ha, &homeiq, &influx, &entity, 5).await;
        let deep = homeiq.deep().await;
        assert_eq!(deep["ingest"]["duplicates"], 0, "{deep}");
        assert_eq!(ha_status(&deep)["subscriptions_sent"], 2 * SUBSCRIPTIONS);
    };
    let cleanup = async {
        ha.ws1(json!({"type": "config/area_registry/delete", "area_id": area_id}))
            .await;
    };
    with_cleanup(body, cleanup).await;
}

/// A connection that stays open but goes silent is detected by the missing pong and replaced.
async fn missed_pong_reconnects(target: Target) {
    let up = Upstream::start(target, &["--seed", "45"]).await;
    let proxy = Proxy::start(up.addr()).await;
    let homeiq = HomeIq::spawn(
        up.options(&proxy.url())
            .env("HOMEIQ_HA__PING_INTERVAL_SECS", "1")
            .env("HOMEIQ_HA__PONG_TIMEOUT_SECS", "1"),
    )
    .await;
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
    assert_eq!(ha_status(&back)["subscriptions_sent"], 2 * SUBSCRIPTIONS);
    assert!(proxy.accepted() >= 2);
}

/// A refused token is reported in `/health/deep` (with the reason, never the token) and stops the
/// client: no retry storm, liveness stays up.
async fn wrong_token_reports_auth_failure_without_retrying(target: Target) {
    let up = Upstream::start(target, &["--seed", "51"]).await;
    let proxy = Proxy::start(up.addr()).await;
    let mut options = up
        .options(&proxy.url())
        // a retry storm would show within the observation window below
        .env("HOMEIQ_HA__RECONNECT_MIN_SECS", "0.5")
        .env("HOMEIQ_HA__RECONNECT_MAX_SECS", "1");
    options.ha_token = "not-a-valid-token".into();
    let homeiq = HomeIq::spawn(options).await;

    let deep = homeiq
        .wait_deep("auth failure reported", WAIT, |d| {
            ha_status(d)["state"] == "auth_failed"
        })
        .await;
    assert_eq!(deep["status"], "failed", "{deep}");
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

    // no further attempts in a window several times the back-off
    assert_eq!(proxy.accepted(), 1);
    holds_for(
        "a single connection attempt",
        Duration::from_secs(4),
        || async { proxy.accepted() == 1 },
    )
    .await;
    let deep = homeiq.deep().await;
    assert_eq!(ha_status(&deep)["connects"], 0);
    assert_eq!(ha_status(&deep)["state"], "auth_failed");
}

/// The upstream restarts; while it is down and until HomeIQ is let back in, an entity changes. After
/// reconnecting: subscriptions sent once more, the mirror re-synced, the missed changes backfilled
/// from the upstream's history (each at its own time, none twice), and later changes written once.
async fn upstream_restart_reconnects_and_backfills(target: Target) {
    let mut up = Upstream::start_restartable(target, &["--seed", "61"]).await;
    let influx = Influx::from_env();
    let proxy = Proxy::start(up.addr()).await;
    let homeiq = HomeIq::spawn(
        up.options(&proxy.url())
            .env("HOMEIQ_HA__RECONNECT_MAX_SECS", "2"),
    )
    .await;
    homeiq.wait_synced().await;
    let db = homeiq.database.clone();

    let id = format!("sensor.{}", unique("gap"));
    let s = up
        .ha()
        .set_state(&id, "1", json!({"unit_of_measurement": "W"}))
        .await;
    let mut times = vec![micros(&s["last_updated"])];
    eventually("the live point", WAIT, || async {
        (influx.point_times(&db, "sensor", &id).await == times).then_some(())
    })
    .await;
    // the backfill starts at the cursor: let it pass the live point
    eventually("backfill cursor past the live point", WAIT, || async {
        let d = homeiq.deep().await;
        let cursor = d["backfill"]["cursor"]
            .as_str()
            .map(|c| micros(&json!(c)))?;
        (cursor >= times[0]).then_some(())
    })
    .await;
    let before = homeiq.deep().await;
    let runs_before = before["backfill"]["runs"].as_u64().unwrap_or(0);
    let points_before = before["backfill"]["total_points"].as_u64().unwrap_or(0);

    // HomeIQ stays out from the stop until the missed changes are made
    proxy.refuse.store(true, Ordering::SeqCst);
    up.stop().await;
    homeiq
        .wait_deep("disconnect noticed", WAIT, |d| {
            ha_status(d)["state"] != "connected"
        })
        .await;
    up.start_again().await;
    let ha = up.ha().clone();
    for v in 2..=6 {
        let s = ha
            .set_state(&id, &v.to_string(), json!({"unit_of_measurement": "W"}))
            .await;
        times.push(micros(&s["last_updated"]));
    }
    assert_ne!(
        ha_status(&homeiq.deep().await)["state"],
        "connected",
        "the changes were made while HomeIQ was away"
    );
    proxy.refuse.store(false, Ordering::SeqCst);

    let after = homeiq
        .wait_deep("reconnected, re-synced and backfilled", RESTART_WAIT, |d| {
            ha_status(d)["state"] == "connected"
                && ha_status(d)["connects"] == 2
                && d["ingest"]["snapshots"].as_u64().unwrap_or(0) >= 2
                // the registry task applies the relisted registries on its own schedule
                && d["registry"]["last_full_sync"]["entity"]
                    != before["registry"]["last_full_sync"]["entity"]
                && d["backfill"]["runs"].as_u64().unwrap_or(0) > runs_before
                && d["backfill"]["running"] == false
        })
        .await;
    assert_eq!(ha_status(&after)["subscriptions_sent"], 2 * SUBSCRIPTIONS);
    let written = eventually("every missed change written", WAIT, || async {
        let t = influx.point_times(&db, "sensor", &id).await;
        (t.len() >= times.len()).then_some(t)
    })
    .await;
    assert_eq!(written, times, "each change once, at its last_updated");
    // only the last missed change is in the snapshot: the others came from the history
    let backfilled = after["backfill"]["total_points"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(points_before);
    assert!(backfilled >= 4, "backfilled {backfilled}: {after}");

    let entity = format!("sensor.{}", unique("after_restart"));
    drive_and_count(&ha, &homeiq, &influx, &entity, 5).await;
    let deep = homeiq.deep().await;
    assert_eq!(deep["ingest"]["duplicates"], 0, "{deep}");
    assert_eq!(point_count(&influx, &db, "sensor", &id).await, 6);
}

/// SIGTERM: every change accepted is written before the process exits, within 8 s.
async fn sigterm_flushes_queued_points(target: Target) {
    let up = Upstream::start(target, &["--seed", "71"]).await;
    let ha = up.ha().clone();
    let influx = Influx::from_env();
    // a long linger keeps points queued, so only the shutdown flush can write them
    let mut homeiq = HomeIq::spawn(
        up.options(&ha.url)
            .env("HOMEIQ_INFLUXDB__FLUSH_INTERVAL_MS", "60000"),
    )
    .await;
    homeiq.wait_synced().await;
    let entity = format!("sensor.{}", unique("shutdown"));
    for i in 0..5 {
        ha.set_state(&entity, &i.to_string(), json!({})).await;
    }
    // the last change is HomeIQ's current state: all five are with the writer (other entities'
    // points, on a shared Home Assistant, must not stand in for them)
    homeiq.wait_state(&entity, "4").await;
    let queued = homeiq.deep().await;
    assert!(
        queued["storage"]["queued"].as_u64().unwrap_or(0) >= 5,
        "{queued}"
    );
    assert_eq!(
        point_count(&influx, &homeiq.database, "sensor", &entity).await,
        0
    );

    homeiq.signal("TERM");
    let (code, took) = homeiq.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", homeiq.log());
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    assert_eq!(
        point_count(&influx, &homeiq.database, "sensor", &entity).await,
        5,
        "{}",
        homeiq.log()
    );
}

/// An entity's name as HomeIQ shows it (`display_name`) is what Home Assistant shows (the state's
/// `friendly_name`), in 2025.x and 2026.x alike; fields Home Assistant did not send are `null`,
/// never made up (2026.x: `has_entity_name`; child devices: their config entries).
async fn entity_names_match_home_assistant(target: Target) {
    let up = Upstream::start(target, &["--seed", "81", "--profile", "medium"]).await;
    let ha = up.ha().clone();
    let homeiq = HomeIq::spawn(up.options(&ha.url)).await;
    homeiq.wait_synced().await;
    let http = reqwest::Client::new();
    let entities = || async {
        let mut all = Vec::new();
        loop {
            let page: Value = http
                .get(homeiq.url(&format!(
                    "/api/v1/entities?include_disabled=true&limit=1000&offset={}",
                    all.len()
                )))
                .send()
                .await
                .expect("entities")
                .json()
                .await
                .expect("json");
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let done = items.is_empty()
                || all.len() + items.len() >= page["total"].as_u64().unwrap_or(0) as usize;
            all.extend(items);
            if done {
                return all;
            }
        }
    };
    let checked = eventually(
        "every display name equal to the friendly name",
        WAIT,
        || async {
            let states = ha.get("states").await;
            let friendly: std::collections::HashMap<String, String> = states
                .as_array()
                .expect("states")
                .iter()
                .filter_map(|s| {
                    Some((
                        s["entity_id"].as_str()?.to_owned(),
                        s["attributes"]["friendly_name"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            let listed = entities().await;
            let mut checked = 0;
            for e in &listed {
                let Some(name) = e["entity_id"].as_str().and_then(|id| friendly.get(id)) else {
                    continue;
                };
                if e["display_name"] != name.as_str() {
                    return None;
                }
                checked += 1;
            }
            (checked >= 40).then_some(listed)
        },
    )
    .await;
    let registered: Vec<&Value> = checked.iter().filter(|e| !e["id"].is_null()).collect();
    assert!(!registered.is_empty());
    match target {
        Target::Simulator2026 => assert!(
            registered.iter().all(|e| e["has_entity_name"].is_null()),
            "2026.x sends no has_entity_name: none may be made up"
        ),
        Target::RealHa | Target::Simulator => assert!(
            registered.iter().all(|e| e["has_entity_name"].is_boolean()),
            "2025.x sends has_entity_name"
        ),
    }
    let devices: Value = http
        .get(homeiq.url("/api/v1/devices?limit=1000"))
        .send()
        .await
        .expect("devices")
        .json()
        .await
        .expect("json");
    let devices = devices["items"].as_array().cloned().unwrap_or_default();
    let children: Vec<&Value> = devices
        .iter()
        .filter(|d| !d["parent_device_id"].is_null())
        .collect();
    if target == Target::Simulator2026 {
        // the meter's phases: reduced rows, named without their parent's name
        assert_eq!(children.len(), 3, "{devices:?}");
        for child in children {
            assert!(child["config_entries"].is_null(), "{child}");
            assert!(child["manufacturer"].is_null(), "{child}");
            assert!(child["config_entry_id"].is_string(), "{child}");
        }
    } else {
        assert!(children.is_empty(), "no parent_device_id before 2026");
        assert!(devices.iter().all(|d| d["config_entries"].is_array()));
    }
}

/// One test per case and target: `real_ha::<case>`, `simulator::<case>` (2025.4 shapes) and
/// `sim_2026::<case>` (2026.11 shapes).
macro_rules! both_targets {
    ($($case:ident),* $(,)?) => {
        mod real_ha {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Target::RealHa).await;
                }
            )*
        }
        mod simulator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Target::Simulator).await;
                }
            )*
        }
        mod sim_2026 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Target::Simulator2026).await;
                }
            )*
        }
    };
}

both_targets!(
    registry_mirror_matches_and_follows_upstream,
    state_changes_become_points_exactly_once,
    connection_cut_resubscribes_once_and_resyncs,
    missed_pong_reconnects,
    wrong_token_reports_auth_failure_without_retrying,
    upstream_restart_reconnects_and_backfills,
    sigterm_flushes_queued_points,
    entity_names_match_home_assistant,
);
