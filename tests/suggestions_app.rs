//! Suggestions on the in-process application and the simulated Home Assistant (as `homeiq demo`
//! runs):
//!
//! - reworded by a language model: after the build that follows the connection, new suggestions
//!   are sent one by one to a local server speaking OpenAI's chat-completions JSON; the answers
//!   become their titles and explanations (`wording: llm`), an answer that fails leaves its
//!   suggestion in the template's words, and `/health/deep` and `/metrics` report the requests;
//! - deployed and undone: the simulator validates (`validate_config`), stores the automation
//!   over the REST config API and creates its entity; undo deletes it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::app::AppOptions;
use common::{Served, eventually};
use serde_json::{Value, json};

/// The fake model: a failure for every prompt about the bedroom, a success for anything else;
/// and every request it received.
#[derive(Default)]
struct Model {
    seen: Mutex<Vec<(String, Option<String>, Value)>>,
}

async fn completions(model: web::Data<Model>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let prompt = body.to_string();
    let n = {
        let mut seen = model.seen.lock().expect("lock");
        seen.push((
            req.path().to_owned(),
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        ));
        seen.len()
    };
    if prompt.contains("bedroom") {
        return HttpResponse::InternalServerError().json(
            json!({"error": {"message": "the model is overloaded", "type": "server_error"}}),
        );
    }
    let content = json!({
        "title": format!("Plain title {n}"),
        "explanation": format!("A plain explanation, number {n}."),
    })
    .to_string();
    HttpResponse::Ok().json(json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 1_765_000_000,
        "model": "fake-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 400, "completion_tokens": 40, "total_tokens": 440},
    }))
}

/// Serves `model` on 127.0.0.1; returns its base URL.
fn serve(model: Arc<Model>) -> String {
    let data = web::Data::from(model);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/chat/completions", web::post().to(completions))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    format!("http://{addr}/v1")
}

/// Three learned habits, stored as an analysis run leaves them, so the first build after the
/// connection has suggestions: `p0000000000000001` … `p0000000000000003`.
async fn seed_patterns(data_dir: &std::path::Path) {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
    homeiq::registry::RegistryStore::open(&data_dir.join("homeiq.db"))
        .await
        .expect("migrate")
        .close()
        .await
        .expect("close");
    let db = Database::connect(format!(
        "sqlite:{}?mode=rwc",
        data_dir.join("homeiq.db").display()
    ))
    .await
    .expect("connect");
    for (k, (entity, centre)) in [
        ("light.kitchen_light_1", "06:47"),
        ("light.bedroom", "22:30"),
        ("switch.coffee_maker", "07:05"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("{:016x}", k + 1);
        let body = json!({
            "id": id, "kind": "time_of_day", "day_type": "weekday",
            "entities": [{"entity_id": entity, "state": "on"}],
            "time_window": {"start": centre, "end": centre, "centre": centre, "spread_minutes": 6.0},
            "occurrences": 18, "eligible_days": 22, "confidence": 0.8, "chance": 0.02,
            "first_seen": "2026-11-02T06:47:00Z", "last_seen": "2026-12-04T06:45:00Z",
            "evidence": [], "actors": {"person": 18, "device": 0, "unknown": 0},
        });
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO patterns (id, kind, day_type, confidence, first_detected_at, run_id, body) \
             VALUES (?, 'time_of_day', 'weekday', 0.8, 1764000000000, 1, ?)",
            [id.into(), body.to_string().into()],
        ))
        .await
        .expect("insert pattern");
    }
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_suggestions_are_reworded_and_a_failed_answer_keeps_the_template() {
    // the bedroom's suggestion always fails: it keeps HomeIQ's words and stays deployable
    let model = Arc::new(Model::default());
    let base = serve(Arc::clone(&model));
    let data = tempfile::tempdir().expect("tempdir");
    seed_patterns(data.path()).await;
    let app = AppOptions::default()
        .env("HOMEIQ_DATA_DIR", &data.path().display().to_string())
        .env("HOMEIQ_LLM__ENABLED", "true")
        .env("HOMEIQ_LLM__BASE_URL", &base)
        .env("HOMEIQ_LLM__MODEL", "fake-model")
        .env("HOMEIQ_LLM__API_KEY", "sk-test-key")
        .spawn()
        .await;
    app.wait_synced().await;

    let page = eventually(
        "suggestions reworded by the model",
        Duration::from_secs(90),
        || async {
            // three suggestions: the bedroom's failed, the other two reworded
            let page = app.get_json("/api/v1/suggestions?limit=100").await;
            let items = page["items"].as_array()?;
            let llm = items.iter().filter(|s| s["wording"] == "llm").count();
            (items.len() == 3 && llm == 2).then(|| page.clone())
        },
    )
    .await;
    let items = page["items"].as_array().expect("items");
    let reworded: Vec<&Value> = items.iter().filter(|s| s["wording"] == "llm").collect();
    for s in &reworded {
        let title = s["title"].as_str().expect("title");
        assert!(title.starts_with("Plain title "), "{s:#}");
        assert!(
            s["explanation"]
                .as_str()
                .is_some_and(|e| e.starts_with("A plain explanation")),
            "{s:#}"
        );
        // the automation is HomeIQ's, whatever the model said
        assert!(
            s["automation"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("homeiq_")),
            "{s:#}"
        );
    }

    let seen = model.seen.lock().expect("lock").clone();
    for (path, authorization, body) in &seen {
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(authorization.as_deref(), Some("Bearer sk-test-key"));
        assert_eq!(body["model"], "fake-model");
        assert!(body["messages"].as_array().is_some_and(|m| m.len() >= 2));
    }
    // a request per suggestion (a later build asks again for the one that failed)
    assert!(seen.len() >= 3, "{} requests", seen.len());
    let template: Vec<&Value> = items
        .iter()
        .filter(|s| s["wording"] == "template")
        .collect();
    assert_eq!(template.len(), 1, "{page:#}");
    assert_eq!(template[0]["id"], "p0000000000000002", "{page:#}");
    assert!(
        template[0]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty() && !t.starts_with("Plain title")),
        "{page:#}"
    );

    let deep = app.deep().await;
    let llm = &deep["llm"];
    assert_eq!(llm["enabled"], true, "{deep:#}");
    assert_eq!(llm["model"], "fake-model", "{deep:#}");
    assert_eq!(llm["breaker"], "closed", "{deep:#}");
    assert!(
        llm["requests_last_24h"]
            .as_u64()
            .is_some_and(|n| n >= seen.len() as u64),
        "{deep:#}"
    );
    assert!(
        llm["last_error"]
            .as_str()
            .is_some_and(|e| !e.contains("sk-test-key")),
        "the failure is reported, never with the key: {deep:#}"
    );
    let metrics = app
        .client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("homeiq_llm_"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suggestion_is_deployed_to_the_simulator_and_undone() {
    let data = tempfile::tempdir().expect("tempdir");
    seed_patterns(data.path()).await;
    let app = AppOptions::default()
        .env("HOMEIQ_DATA_DIR", &data.path().display().to_string())
        .spawn()
        .await;
    app.wait_synced().await;
    let http = app.client();
    let entity = app.get_json("/api/v1/entities/light.kitchen_light_1").await;
    assert_eq!(entity["entity_id"], "light.kitchen_light_1", "{entity:#}");
    eventually(
        "the suggestions are built",
        Duration::from_secs(30),
        || async {
            let s = app.get_json("/api/v1/suggestions/p0000000000000001").await;
            (s["status"] == "new").then_some(())
        },
    )
    .await;
    // rendered (and kept) before the deploy
    let page = app.get_json("/api/v1/suggestions?limit=10").await;
    let first = page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == "p0000000000000001"))
        .cloned();
    assert_eq!(
        first.map(|i| i["status"].clone()),
        Some(json!("new")),
        "{page:#}"
    );

    // an entity the home does not have is refused by HomeIQ before Home Assistant is asked
    let refused = http
        .post(app.url("/api/v1/suggestions/p0000000000000002/deploy"))
        .send()
        .await
        .expect("deploy");
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unknown_entity", "{body:#}");

    // one the simulator refuses (an unknown trigger platform): its words, its field
    let bad = http
        .post(app.url("/api/v1/suggestions/p0000000000000001/deploy"))
        .json(&json!({"automation": {
            "alias": "Kitchen light", "description": "edited",
            "triggers": [{"trigger": "teleport"}],
            "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.kitchen_light_1"}}],
        }}))
        .send()
        .await
        .expect("deploy");
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.expect("json");
    assert_eq!(body["error"]["code"], "ha_refused", "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Invalid trigger 'teleport'")),
        "{body:#}"
    );

    let deployed = http
        .post(app.url("/api/v1/suggestions/p0000000000000001/deploy"))
        .send()
        .await
        .expect("deploy");
    assert_eq!(deployed.status(), 200, "{:?}", deployed.text().await);
    let body: Value = deployed.json().await.expect("json");
    assert_eq!(body["suggestion"]["status"], "deployed", "{body:#}");
    let automation_entity = body["suggestion"]["ha"]["entity_id"]
        .as_str()
        .expect("the automation's entity")
        .to_owned();
    assert!(automation_entity.starts_with("automation."), "{body:#}");
    let sim = app.simulator.as_ref().expect("simulator");

    // the list's pages are kept rendered, yet show the deploy and what Home Assistant then says
    let listed = |page: &Value| {
        page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["id"] == "p0000000000000001"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let item = eventually(
        "the list shows the automation on",
        Duration::from_secs(30),
        || async {
            let item = listed(&app.get_json("/api/v1/suggestions?limit=10").await);
            (item["status"] == "deployed" && item["ha"]["state"] == "on").then_some(item)
        },
    )
    .await;
    assert_eq!(
        item["ha"]["entity_id"],
        automation_entity.as_str(),
        "{item:#}"
    );
    let off = http
        .post(format!("{}/api/services/automation/turn_off", sim.url))
        .bearer_auth(&sim.token)
        .json(&json!({"entity_id": automation_entity}))
        .send()
        .await
        .expect("turn_off");
    assert_eq!(off.status(), 200);
    eventually(
        "the list shows the automation off",
        Duration::from_secs(30),
        || async {
            let item = listed(&app.get_json("/api/v1/suggestions?limit=10").await);
            (item["ha"]["state"] == "off").then_some(())
        },
    )
    .await;
    let stored = http
        .get(format!(
            "{}/api/config/automation/config/homeiq_p0000000000000001",
            sim.url
        ))
        .bearer_auth(&sim.token)
        .send()
        .await
        .expect("config");
    assert_eq!(stored.status(), 200);
    let config: Value = stored.json().await.expect("json");
    assert_eq!(config["triggers"][0]["trigger"], "time", "{config:#}");

    let undone = http
        .post(app.url("/api/v1/suggestions/p0000000000000001/undo"))
        .send()
        .await
        .expect("undo");
    assert_eq!(undone.status(), 200, "{:?}", undone.text().await);
    let gone = http
        .get(format!(
            "{}/api/config/automation/config/homeiq_p0000000000000001",
            sim.url
        ))
        .bearer_auth(&sim.token)
        .send()
        .await
        .expect("config");
    assert_eq!(gone.status(), 404);
    let s = app.get_json("/api/v1/suggestions/p0000000000000001").await;
    assert_eq!(s["status"], "undone", "{s:#}");
    app.stop().await;
}
