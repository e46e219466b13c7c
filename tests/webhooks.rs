//! Signed webhooks end to end: the real `homeiq` binary, the real Home Assistant, and a receiver
//! inside the test that checks the HMAC over the raw body bytes.
//!
//! The automation test changes Home Assistant (an automation, `light.ceiling_lights`): nextest
//! runs it in the serial test group `ha-registry`. The others use entities of their own.
//!
//! The receivers listen on 127.0.0.1, an internal address HomeIQ refuses by default: tests that
//! deliver to them opt in with `webhooks.allow_internal_targets` ([`allow_internal`]).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{Ha, HomeIq, HomeIqOptions, Served, eventually, free_port, unique};
use futures_util::FutureExt;
use homeiq::webhooks::sign;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

/// The receivers here are on loopback: allow internal targets.
fn allow_internal(options: HomeIqOptions) -> HomeIqOptions {
    options.env("HOMEIQ_WEBHOOKS__ALLOW_INTERNAL_TARGETS", "true")
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: SystemTime,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A minimal HTTP/1.1 receiver: records every request and answers 200.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        headers,
        body: buf[header_end..header_end + len].to_vec(),
        at: SystemTime::now(),
    })
}

impl Receiver {
    fn new(port: u16) -> Self {
        Receiver {
            port,
            received: Arc::default(),
            task: None,
        }
    }

    /// Starts listening (again) on its port.
    async fn start(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("receiver port {}: {e}; retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind the receiver to port {}: {e}", self.port),
            }
        };
        let received = self.received.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let received = received.clone();
                tokio::spawn(async move {
                    if let Some(r) = read_request(&mut stream).await {
                        received.lock().expect("lock").push(r);
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                            )
                            .await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        }));
    }

    /// Stops listening: connections are refused.
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// HomeIQ's API as the tests use it.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(homeiq: &HomeIq) -> Self {
        Api {
            base: homeiq.url("/api/v1"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("HomeIQ API");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn deliveries(&self, id: &str) -> Vec<Value> {
        let (status, page) = self
            .call(
                reqwest::Method::GET,
                &format!("/webhooks/{id}/deliveries"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().cloned().unwrap_or_default()
    }
}

fn ms_between(later: SystemTime, earlier_rfc3339: &str) -> f64 {
    let earlier = chrono::DateTime::parse_from_rfc3339(earlier_rfc3339).expect("time");
    let later: chrono::DateTime<chrono::Utc> = later.into();
    (later - earlier.with_timezone(&chrono::Utc))
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0
}

#[tokio::test]
async fn signed_deliveries_verify_and_the_api_hides_secrets() {
    let ha = Ha::from_env();
    let mut receiver = Receiver::new(free_port());
    receiver.start().await;
    let homeiq = HomeIq::spawn(allow_internal(HomeIqOptions::from_env())).await;
    homeiq.wait_synced().await;
    let api = Api::new(&homeiq);
    let sensor = format!("sensor.{}", unique("hook_temp"));
    ha.set_state(&sensor, "20", json!({"unit_of_measurement": "°C"}))
        .await;
    let secret = "s3cret-for-the-receiver-0123456789";
    // without rules, nothing listens to the live stream (the pipeline builds no live events)
    let listeners = |rt: &Value| rt["counts"]["live_listeners"].as_u64();
    let (_, rt) = api
        .call(reqwest::Method::GET, "/metrics/realtime", None)
        .await;
    assert_eq!(listeners(&rt), Some(0), "{rt}");

    // validation names the field
    let (status, err) = api
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"name": "bad", "kind": "http", "url": receiver.url(), "rules": [{"entity_id": sensor, "above": "warm"}]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_parameter");
    assert_eq!(err["error"]["field"], "rules[0].above");
    let (status, err) = api
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"name": "bad", "kind": "http", "url": receiver.url(), "secret": "short", "rules": [{"entity_id": sensor}]})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["field"].clone()),
        (400, json!("secret"))
    );

    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({
                "name": "receiver",
                "kind": "http",
                "url": receiver.url(),
                "secret": secret,
                "rules": [{"entity_id": sensor, "above": 25, "hysteresis": 1}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret"], secret, "shown once, at creation");
    let id = created["id"].as_str().expect("id").to_owned();
    // the rule engine listens from the moment the target exists
    let (_, rt) = api
        .call(reqwest::Method::GET, "/metrics/realtime", None)
        .await;
    assert_eq!(listeners(&rt), Some(1), "{rt}");
    let (_, shown) = api
        .call(reqwest::Method::GET, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(shown["secret_set"], true);
    assert!(!shown.to_string().contains(secret), "{shown}");
    let (_, listed) = api.call(reqwest::Method::GET, "/webhooks", None).await;
    assert!(!listed.to_string().contains(secret));

    // 20 → 30 crosses 25: one delivery; 30 → 24.5 → 26 stays within the hysteresis: none
    ha.set_state(&sensor, "30", json!({"unit_of_measurement": "°C"}))
        .await;
    let first = eventually("the delivery", WAIT, || async {
        receiver.all().first().cloned()
    })
    .await;
    ha.set_state(&sensor, "24.5", json!({})).await;
    ha.set_state(&sensor, "26", json!({})).await;

    let body = first.json();
    assert!(sign::verify(
        secret.as_bytes(),
        &first.body,
        first.header(sign::SIGNATURE_HEADER)
    ));
    assert!(
        !sign::verify(
            b"another-secret-0123456789",
            &first.body,
            first.header(sign::SIGNATURE_HEADER)
        ),
        "a wrong secret must fail verification"
    );
    let mut tampered = first.body.clone();
    tampered.push(b' ');
    assert!(!sign::verify(
        secret.as_bytes(),
        &tampered,
        first.header(sign::SIGNATURE_HEADER)
    ));
    assert_eq!(first.header(sign::EVENT_HEADER), "state_changed");
    assert_eq!(first.header(sign::DELIVERY_HEADER), body["delivery_id"]);
    let ts: i64 = first
        .header(sign::TIMESTAMP_HEADER)
        .parse()
        .expect("timestamp");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(first.header("content-type"), "application/json");
    assert_eq!(body["event"], "state_changed");
    assert_eq!(body["entity_id"], sensor);
    assert_eq!(body["old_state"]["state"], "20");
    assert_eq!(body["new_state"]["state"], "30");
    assert_eq!(body["attributes"]["unit_of_measurement"], "°C");
    assert_eq!(body["rule"]["index"], 0);
    assert_eq!(body["rule"]["definition"]["above"], 25.0);
    assert_eq!(body["target"]["id"], id);
    let arrival_ms = ms_between(first.at, body["time"].as_str().expect("time"));

    // the log: delivered, with the trigger latency measured by HomeIQ
    let logged = eventually("delivery logged as delivered", WAIT, || async {
        api.deliveries(&id)
            .await
            .into_iter()
            .find(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(logged["id"], body["delivery_id"]);
    assert_eq!(logged["response_code"], 200);
    assert_eq!(logged["attempts"], 1);
    let start_ms = logged["trigger_latency_ms"]
        .as_i64()
        .expect("trigger latency");
    println!(
        "change→delivery start {start_ms} ms (HomeIQ), change→arrival at the receiver {arrival_ms:.1} ms"
    );
    assert!(start_ms < 1000, "change→delivery start {start_ms} ms");

    // a test delivery is signed the same way
    let (status, queued) = api
        .call(reqwest::Method::POST, &format!("/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, 202, "{queued}");
    let test = eventually("the test delivery", WAIT, || async {
        receiver
            .all()
            .into_iter()
            .find(|r| r.header(sign::EVENT_HEADER) == "test")
    })
    .await;
    assert_eq!(test.header(sign::DELIVERY_HEADER), queued["delivery_id"]);
    assert!(sign::verify(
        secret.as_bytes(),
        &test.body,
        test.header(sign::SIGNATURE_HEADER)
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state_changes = receiver
        .all()
        .iter()
        .filter(|r| r.header(sign::EVENT_HEADER) == "state_changed")
        .count();
    assert_eq!(
        state_changes, 1,
        "the hysteresis holds back a second crossing"
    );

    let (_, shown) = api
        .call(reqwest::Method::GET, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(shown["counters"]["success_count"], 2, "{shown}");
    let metrics = reqwest::get(homeiq.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("homeiq_webhook_matches_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "homeiq_webhook_deliveries_succeeded_total{{target=\"{id}\"}} 2"
    )));
    let deep = homeiq.deep().await;
    assert_eq!(deep["webhooks"]["events_missed"], 0, "{deep}");
    let (status, openapi) = (
        200,
        reqwest::get(homeiq.url("/api/openapi.json"))
            .await
            .expect("openapi")
            .json::<Value>()
            .await
            .expect("json"),
    );
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/api/v1/webhooks/{id}/deliveries"].is_object());

    let (status, _) = api
        .call(reqwest::Method::DELETE, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(reqwest::Method::GET, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(status, 404);
    assert!(
        !homeiq.log().contains(secret),
        "the secret must never be logged"
    );
}

/// Waits until every one of `n` deliveries of `id` is pending and was tried at least `attempts`
/// times; returns their ids.
async fn wait_pending(api: &Api, id: &str, n: usize, attempts: i64) -> Vec<String> {
    eventually("deliveries pending and retried", WAIT, || async {
        let items = api.deliveries(id).await;
        (items.len() == n
            && items
                .iter()
                .all(|d| d["status"] == "pending" && d["attempts"].as_i64() >= Some(attempts)))
        .then(|| {
            items
                .iter()
                .filter_map(|d| d["id"].as_str().map(str::to_owned))
                .collect()
        })
    })
    .await
}

#[tokio::test]
async fn receiver_outage_and_restarts_deliver_every_event_exactly_once() {
    let ha = Ha::from_env();
    let mut receiver = Receiver::new(free_port());
    let options = allow_internal(HomeIqOptions::from_env())
        .env("HOMEIQ_WEBHOOKS__RETRY_MIN_SECS", "0.5")
        .env("HOMEIQ_WEBHOOKS__RETRY_MAX_SECS", "2")
        .env("HOMEIQ_WEBHOOKS__MAX_ATTEMPTS", "100");
    let mut homeiq = HomeIq::spawn(options).await;
    homeiq.wait_synced().await;
    let api = Api::new(&homeiq);
    let sensor = format!("sensor.{}", unique("hook_outage"));
    ha.set_state(&sensor, "0", json!({})).await;
    let secret = "outage-secret-0123456789abcdef";
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(
                json!({"name": "outage", "kind": "http", "url": receiver.url(), "secret": secret,
                        "rules": [{"entity_id": sensor}]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();

    // the receiver is down: three changes are retried
    let down = Instant::now();
    for v in ["1", "2", "3"] {
        ha.set_state(&sensor, v, json!({})).await;
    }
    let before_restart = wait_pending(&api, &id, 3, 2).await;

    // SIGTERM with pending deliveries; they survive the restart
    homeiq.signal("TERM");
    let (code, took) = homeiq.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "clean exit\n{}", homeiq.log());
    assert!(took < Duration::from_secs(8), "stopped in {took:?}");
    homeiq.start().await;
    homeiq.wait_synced().await;
    let api = Api::new(&homeiq);
    // the start-up snapshot does not replay the rule: the exact count of 5 below would be 6
    for v in ["4", "5"] {
        ha.set_state(&sensor, v, json!({})).await;
    }
    let mut expected = wait_pending(&api, &id, 5, 1).await;
    assert!(
        before_restart.iter().all(|d| expected.contains(d)),
        "delivery ids are stable across a restart"
    );

    // SIGKILL, possibly mid-attempt: still delivered after the next start
    homeiq.kill();
    homeiq.start().await;
    homeiq.wait_synced().await;
    let api = Api::new(&homeiq);

    // back after 30 s
    let left = Duration::from_secs(30).saturating_sub(down.elapsed());
    tokio::time::sleep(left).await;
    receiver.start().await;
    eventually("all five delivered", WAIT, || async {
        let items = api.deliveries(&id).await;
        (items.len() == 5 && items.iter().all(|d| d["status"] == "delivered")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receiver.all();
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.header(sign::DELIVERY_HEADER).to_owned())
        .collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "each delivery exactly once");
    let mut states: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["new_state"]["state"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    states.sort();
    assert_eq!(states, ["1", "2", "3", "4", "5"]);
    for r in &got {
        assert!(sign::verify(
            secret.as_bytes(),
            &r.body,
            r.header(sign::SIGNATURE_HEADER)
        ));
    }
    let items = api.deliveries(&id).await;
    assert!(
        items.iter().all(|d| d["attempts"].as_i64() >= Some(2)),
        "every delivery was retried: {items:?}"
    );
    let (_, shown) = api
        .call(reqwest::Method::GET, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(shown["counters"]["success_count"], 5);
    assert_eq!(shown["counters"]["failure_count"], 0);
}

#[tokio::test]
async fn ha_target_triggers_a_real_automation() {
    let ha = Ha::from_env();
    let light = "light.ceiling_lights";
    let automation = unique("homeiq_hook");
    let webhook_id = format!("homeiq-{}", sign::random_hex(16));
    let sensor = format!("binary_sensor.{}", unique("hook_door"));
    ha.call_service("light", "turn_off", json!({"entity_id": light}))
        .await;
    eventually("light off", WAIT, || async {
        (ha.state(light).await["state"] == "off").then_some(())
    })
    .await;
    ha.post(
        &format!("config/automation/config/{automation}"),
        json!({
            "id": automation,
            "alias": format!("HomeIQ webhook test {automation}"),
            "triggers": [{"trigger": "webhook", "webhook_id": webhook_id, "allowed_methods": ["POST"], "local_only": true}],
            "conditions": [{"condition": "template", "value_template": "{{ trigger.json.new_state.state == 'on' }}"}],
            "actions": [{"action": "light.turn_on", "target": {"entity_id": light}}],
            "mode": "queued",
        }),
    )
    .await;
    let outcome = std::panic::AssertUnwindSafe(async {
        ha.set_state(&sensor, "off", json!({"device_class": "door"}))
            .await;
        let homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
        homeiq.wait_synced().await;
        let api = Api::new(&homeiq);
        let (status, created) = api
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(
                    json!({"name": "ha automation", "kind": "ha", "webhook_id": webhook_id,
                            "rules": [{"entity_id": sensor, "from": "off", "to": "on"}]}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        assert!(
            !created.to_string().contains(&webhook_id),
            "the webhook id is masked"
        );
        // the automation is loaded once its entity exists
        eventually("automation loaded", WAIT, || async {
            let states = ha.get("states").await;
            states
                .as_array()
                .and_then(|a| {
                    a.iter().find(|s| {
                        s["entity_id"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("automation."))
                            && s["attributes"]["id"] == automation
                    })
                })
                .map(|_| ())
        })
        .await;
        ha.set_state(&sensor, "on", json!({"device_class": "door"}))
            .await;
        eventually("the light turned on by the automation", WAIT, || async {
            (ha.state(light).await["state"] == "on").then_some(())
        })
        .await;
        let id = created["id"].as_str().expect("id");
        let delivered = api.deliveries(id).await;
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        assert_eq!(delivered[0]["status"], "delivered");
        assert_eq!(delivered[0]["response_code"], 200);
        assert!(
            !homeiq.log().contains(&webhook_id),
            "the webhook id must never be logged"
        );
    })
    .catch_unwind()
    .await;
    // clean up whatever happened
    let _ = reqwest::Client::new()
        .delete(format!(
            "{}/api/config/automation/config/{automation}",
            ha.url
        ))
        .bearer_auth(&ha.token)
        .send()
        .await;
    ha.call_service("light", "turn_off", json!({"entity_id": light}))
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The text of every refusal (the same whatever the host and port).
const REFUSED: &str = homeiq::webhooks::egress::REFUSED;

#[tokio::test]
async fn internal_targets_are_refused_at_creation_and_at_delivery() {
    let mut receiver = Receiver::new(free_port());
    receiver.start().await;
    let open = receiver.port;
    let closed = free_port();
    let mut homeiq = HomeIq::spawn(HomeIqOptions::from_env()).await;
    let api = Api::new(&homeiq);
    let rules = json!([{"entity_id": "sensor.homeiq_ssrf_never"}]);
    let create = |kind: &str, key: &str, value: &str| json!({"name": "ssrf", "kind": kind, key: value, "rules": rules});

    // at creation: every internal form, open or closed port alike
    let mut messages = Vec::new();
    for url in [
        format!("http://127.0.0.1:{open}/hook"),
        format!("http://127.0.0.1:{closed}/hook"),
        "http://127.0.0.1:8086/query?q=DROP%20DATABASE%20homeassistant".to_owned(),
        format!("http://2130706433:{open}/"),
        format!("http://[::1]:{open}/"),
        format!("http://[::ffff:127.0.0.1]:{open}/"),
        format!("http://localhost:{open}/"),
        "http://0.0.0.0:8099/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://224.0.0.251/".to_owned(),
        "http://172.30.32.2/supervisor/info".to_owned(),
        "http://172.30.33.254/".to_owned(),
        "http://[fd0c:ac1e:2100::2]/".to_owned(),
        "http://supervisor/core/api/states".to_owned(),
        "http://homeassistant:8123/api/".to_owned(),
        "http://HASSIO./addons".to_owned(),
    ] {
        let (status, err) = api
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(create("http", "url", &url)),
            )
            .await;
        assert_eq!(status, 400, "{url} must be refused: {err}");
        assert_eq!(err["error"]["field"], "url", "{url}: {err}");
        messages.push(err["error"]["message"].clone());
    }
    assert!(
        messages.windows(2).all(|w| w[0] == w[1]),
        "one message for every refusal: {messages:?}"
    );
    assert!(
        messages[0]
            .as_str()
            .is_some_and(|m| m.contains("webhooks.allow_internal_targets")),
        "{messages:?}"
    );
    // home LAN receivers stay allowed
    for url in [
        "http://192.168.1.20:8080/hook",
        "http://10.0.0.2/hook",
        "http://[fd00::2]/hook",
        "http://172.30.34.1/hook",
    ] {
        let (status, created) = api
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(create("http", "url", url)),
            )
            .await;
        assert_eq!(status, 201, "{url} must be allowed: {created}");
        let id = created["id"].as_str().expect("id");
        api.call(reqwest::Method::DELETE, &format!("/webhooks/{id}"), None)
            .await;
    }
    // an `ha` webhook id made of dots would reach `/api/` with the token
    for id in [".", "..", "..."] {
        let (status, err) = api
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(create("ha", "webhook_id", id)),
            )
            .await;
        assert_eq!(status, 400, "webhook id {id:?}: {err}");
        assert_eq!(err["error"]["field"], "webhook_id", "{err}");
    }

    // targets allowed before (by the setting, or by an older version) are refused at every
    // delivery, on the address actually connected to: an IP literal, and a name that resolves to
    // loopback (what DNS rebinding would do)
    homeiq.signal("TERM");
    homeiq.wait_exit(Duration::from_secs(10));
    homeiq.options = allow_internal(homeiq.options.clone());
    homeiq.start().await;
    let api = Api::new(&homeiq);
    let mut ids = Vec::new();
    for url in [
        format!("http://127.0.0.1:{open}/literal"),
        format!("http://localhost:{open}/name"),
        format!("http://localhost:{closed}/closed"),
        format!("http://[::ffff:127.0.0.1]:{open}/mapped"),
    ] {
        let (status, created) = api
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(create("http", "url", &url)),
            )
            .await;
        assert_eq!(status, 201, "{url}: {created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    homeiq.signal("TERM");
    homeiq.wait_exit(Duration::from_secs(10));
    homeiq
        .options
        .extra_env
        .retain(|(k, _)| k != "HOMEIQ_WEBHOOKS__ALLOW_INTERNAL_TARGETS");
    homeiq.start().await;
    let api = Api::new(&homeiq);
    for id in &ids {
        let (status, queued) = api
            .call(reqwest::Method::POST, &format!("/webhooks/{id}/test"), None)
            .await;
        assert_eq!(status, 202, "{queued}");
    }
    for id in &ids {
        let failed = eventually("the delivery refused", WAIT, || async {
            api.deliveries(id)
                .await
                .into_iter()
                .find(|d| d["status"] == "failed")
        })
        .await;
        assert_eq!(failed["last_error"], REFUSED, "{failed}");
        assert_eq!(failed["response_code"], Value::Null, "{failed}");
        assert_eq!(
            failed["attempts"], 1,
            "refused once, never retried: {failed}"
        );
    }
    assert!(receiver.all().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn a_full_outbox_drops_the_oldest_and_counts_them_across_restarts() {
    // a receiver that is down, one attempt an hour: deliveries pile up
    let options = allow_internal(HomeIqOptions::from_env())
        .env("HOMEIQ_WEBHOOKS__MAX_PENDING_PER_TARGET", "3")
        .env("HOMEIQ_WEBHOOKS__RETRY_MIN_SECS", "3600")
        .env("HOMEIQ_WEBHOOKS__RETRY_MAX_SECS", "3600");
    let mut homeiq = HomeIq::spawn(options).await;
    let api = Api::new(&homeiq);
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"name": "backlog", "kind": "http",
                        "url": format!("http://127.0.0.1:{}/down", free_port()),
                        "rules": [{"entity_id": "sensor.homeiq_cap_never"}],
                        "limits": {"rate_limit_per_minute": 1}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["counters"]["dropped_count"], 0, "{created}");
    let mut queued = Vec::new();
    for _ in 0..5 {
        let (status, q) = api
            .call(reqwest::Method::POST, &format!("/webhooks/{id}/test"), None)
            .await;
        assert_eq!(status, 202, "{q}");
        queued.push(q["delivery_id"].as_str().expect("id").to_owned());
    }
    let items = api.deliveries(&id).await;
    assert_eq!(items.len(), 3, "{items:?}");
    let kept: Vec<&str> = items.iter().filter_map(|d| d["id"].as_str()).collect();
    assert!(
        kept.contains(&queued[3].as_str()) && kept.contains(&queued[4].as_str()),
        "the newest are kept, the oldest dropped: {kept:?} of {queued:?}"
    );
    let (_, shown) = api
        .call(reqwest::Method::GET, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(shown["counters"]["dropped_count"], 2, "{shown}");
    assert_eq!(homeiq.deep().await["webhooks"]["dropped"], 2);
    let metrics = reqwest::get(homeiq.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("homeiq_webhook_dropped_total 2"),
        "{metrics}"
    );

    homeiq.signal("TERM");
    homeiq.wait_exit(Duration::from_secs(10));
    homeiq.start().await;
    let api = Api::new(&homeiq);
    let (_, listed) = api.call(reqwest::Method::GET, "/webhooks", None).await;
    assert_eq!(
        listed["items"][0]["counters"]["dropped_count"], 2,
        "kept across a restart: {listed}"
    );
}
