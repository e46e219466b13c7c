//! The REST API under `/api/`, with `Authorization: Bearer <token>` like Home Assistant's
//! (webhooks need none).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::DateTime;
use serde_json::{Value, json};

use super::history::Query;
use super::hub::{Hub, HubError, Origin};

type HubData = web::Data<Arc<Hub>>;

fn json_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(body)
}

fn message(status: StatusCode, text: &str) -> HttpResponse {
    json_response(status, json!({ "message": text }).to_string())
}

/// The 401 response when the request lacks the right bearer token.
fn refused(req: &HttpRequest, hub: &Hub) -> Option<HttpResponse> {
    let ok = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == hub.token);
    (!ok).then(|| {
        HttpResponse::Unauthorized()
            .content_type("text/plain")
            .body("401: Unauthorized")
    })
}

fn error_response(e: &HubError) -> HttpResponse {
    let status = match e {
        HubError::NotFound(_) => StatusCode::NOT_FOUND,
        HubError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::BAD_REQUEST,
    };
    message(status, &e.to_string())
}

/// The JSON body (an empty body is `{}`), or the 400 response.
fn parse_body(body: &[u8]) -> Result<Value, Box<HttpResponse>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| Box::new(message(StatusCode::BAD_REQUEST, "Invalid JSON specified.")))
}

/// `GET /api/`.
pub(crate) async fn api_root(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    message(StatusCode::OK, "API running.")
}

/// `GET /api/config`.
pub(crate) async fn config(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let json = hub.with(|i| super::ws::config_json(i)).0;
    json_response(StatusCode::OK, json)
}

/// `GET /api/states`.
pub(crate) async fn states(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    json_response(StatusCode::OK, hub.with(|i| i.states_json()).0)
}

/// `GET /api/states/<entity_id>`.
pub(crate) async fn state_get(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    match hub.with(|i| i.state(&path).map(|s| s.json.clone())).0 {
        Some(json) => json_response(StatusCode::OK, json.to_string()),
        None => message(StatusCode::NOT_FOUND, "Entity not found."),
    }
}

/// `POST /api/states/<entity_id>`: sets a state (attributes replaced, as Home Assistant does).
pub(crate) async fn state_post(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let data = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(state) = data.get("state").map(|s| match s {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }) else {
        return message(StatusCode::BAD_REQUEST, "No state specified.");
    };
    let attributes = match data.get("attributes") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return message(StatusCode::BAD_REQUEST, "Invalid JSON specified."),
    };
    let force = data
        .get("force_update")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let entity_id = path.into_inner();
    let r = hub.with(|i| i.set_state(&entity_id, &state, Some(attributes), force, &Origin::user()));
    match r.0 {
        Ok((created, json)) => HttpResponse::build(if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        })
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((LOCATION, format!("/api/states/{entity_id}")))
        .body(json.to_string()),
        Err(e) => error_response(&e),
    }
}

/// `DELETE /api/states/<entity_id>`: removes a state (`state_changed` with `new_state: null`);
/// its registry entry, if any, stays, as in Home Assistant.
pub(crate) async fn state_delete(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    if hub.with(|i| i.remove_state(&path)).0 {
        message(StatusCode::OK, "Entity removed.")
    } else {
        message(StatusCode::NOT_FOUND, "Entity not found.")
    }
}

/// `POST /api/services/<domain>/<service>`: returns the states that changed.
pub(crate) async fn service(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let data = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (domain, service) = path.into_inner();
    let r = hub.with(|i| i.call_service(&domain, &service, &data, None, &Origin::user()));
    match r.0 {
        Ok(changed) => {
            let items: Vec<&str> = changed.iter().map(|s| &**s).collect();
            json_response(StatusCode::OK, format!("[{}]", items.join(",")))
        }
        Err(e) => error_response(&e),
    }
}

/// `POST|PUT|GET|HEAD /api/webhook/<id>`: no authentication; always 200, as Home Assistant.
pub(crate) async fn webhook(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let json_body = serde_json::from_slice::<Value>(&body).unwrap_or_else(|_| {
        if body.is_empty() {
            Value::Null
        } else {
            Value::String(String::from_utf8_lossy(&body).into_owned())
        }
    });
    let query: BTreeMap<String, String> =
        web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let id = path.into_inner();
    let (n, _) = hub.with(|i| i.webhook(&id, &method, json_body, json!(query)));
    tracing::debug!(webhook_id = %id, %method, automations = n, "webhook called");
    HttpResponse::Ok().finish()
}

/// `GET /api/config/automation/config/<id>`.
pub(crate) async fn automation_get(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    match hub
        .with(|i| i.automations.get(path.as_str()).map(|a| a.config.clone()))
        .0
    {
        Some(config) => json_response(StatusCode::OK, config.to_string()),
        None => message(StatusCode::NOT_FOUND, "Resource not found"),
    }
}

/// `POST /api/config/automation/config/<id>`: stores (validates the keys) and "reloads".
pub(crate) async fn automation_post(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let config = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match hub.with(|i| i.automation_put(&path, config)).0 {
        Ok(()) => json_response(StatusCode::OK, json!({"result": "ok"}).to_string()),
        Err(e) => error_response(&e),
    }
}

/// `DELETE /api/config/automation/config/<id>`.
pub(crate) async fn automation_delete(
    req: HttpRequest,
    hub: HubData,
    path: web::Path<String>,
) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    match hub.with(|i| i.automation_delete(&path)).0 {
        Ok(()) => json_response(StatusCode::OK, json!({"result": "ok"}).to_string()),
        Err(e) => error_response(&e),
    }
}

/// `GET /api/history/period[/<start>]?filter_entity_id=…&end_time=…&minimal_response&no_attributes&significant_changes_only=0`.
pub(crate) async fn history(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let query: BTreeMap<String, String> =
        web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros());
    let start = match req.match_info().get("start") {
        Some(s) => match parse(s) {
            Ok(t) => Some(t),
            Err(_) => return message(StatusCode::BAD_REQUEST, "Invalid datetime"),
        },
        None => None,
    };
    let end = match query.get("end_time").map(|s| parse(s)) {
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => return message(StatusCode::BAD_REQUEST, "Invalid end_time"),
        None => None,
    };
    let ids = super::hub::entity_ids_of(
        query
            .get("filter_entity_id")
            .map(|s| Value::from(s.as_str()))
            .as_ref(),
    );
    if ids.is_empty() {
        return message(StatusCode::BAD_REQUEST, "filter_entity_id is missing");
    }
    let body = hub
        .with(|i| {
            let now = i.clock().now();
            let start = start.unwrap_or(now - 86_400_000_000);
            if start > now {
                return "[]".to_owned();
            }
            let q = Query {
                start,
                end: end.unwrap_or(start + 86_400_000_000),
                include_start_time_state: true,
                significant_changes_only: query
                    .get("significant_changes_only")
                    .is_none_or(|v| v != "0"),
                minimal_response: query.contains_key("minimal_response"),
                no_attributes: query.contains_key("no_attributes"),
            };
            i.history.rest_period(&ids, &q)
        })
        .0;
    json_response(StatusCode::OK, body)
}

/// `GET /api/simulator/webhook_calls`: the webhook calls received, oldest first (simulator only).
pub(crate) async fn webhook_calls(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let calls: Vec<Value> = hub.with(|i| i.webhook_calls.iter().cloned().collect()).0;
    json_response(StatusCode::OK, Value::from(calls).to_string())
}

/// `GET /api/simulator/routines`: the planted habits, sequences, automations, system changes,
/// regularities and users, in the vocabulary of HomeIQ's patterns API (simulator only).
pub(crate) async fn routines(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    match serde_json::to_string(&hub.routines()) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/simulator/status`: counts of the simulated home (simulator only).
pub(crate) async fn status(req: HttpRequest, hub: HubData) -> HttpResponse {
    if let Some(r) = refused(&req, &hub) {
        return r;
    }
    let body = hub
        .with(|i| {
            json!({
                "entities": i.home.states.len(),
                "registry": {
                    "floors": i.home.floors.len(), "areas": i.home.areas.len(),
                    "labels": i.home.labels.len(), "devices": i.home.devices.len(),
                    "entities": i.home.entities.len(),
                },
                "automations": i.automations.len(),
                "webhook_calls": i.webhook_calls.len(),
                "history_per_entity": i.history.capacity(),
                "simulated_now": super::render::iso(i.clock().now()),
                "caught_up": i.clock().caught_up(),
                "routine_now": i.routine_at.map(super::render::iso),
                "routine_caught_up": i.clock().caught_up()
                    && i.routine_at.is_some_and(|t| t >= i.clock().now() - 60_000_000),
            })
        })
        .0;
    let mut body = body;
    body["events_published"] = json!(hub.published());
    body["dropped_clients"] = json!(
        hub.dropped_clients
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    json_response(StatusCode::OK, body.to_string())
}

/// Registers every route on an actix `App`.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/websocket", web::get().to(super::ws::websocket))
        .route("/api/", web::get().to(api_root))
        .route("/api/config", web::get().to(config))
        .route("/api/states", web::get().to(states))
        .route("/api/states/{entity_id}", web::get().to(state_get))
        .route("/api/states/{entity_id}", web::post().to(state_post))
        .route("/api/states/{entity_id}", web::delete().to(state_delete))
        .route("/api/services/{domain}/{service}", web::post().to(service))
        .route("/api/webhook/{webhook_id}", web::route().to(webhook))
        .route(
            "/api/config/automation/config/{id}",
            web::get().to(automation_get),
        )
        .route(
            "/api/config/automation/config/{id}",
            web::post().to(automation_post),
        )
        .route(
            "/api/config/automation/config/{id}",
            web::delete().to(automation_delete),
        )
        .route("/api/history/period", web::get().to(history))
        .route("/api/history/period/{start}", web::get().to(history))
        .route("/api/simulator/webhook_calls", web::get().to(webhook_calls))
        .route("/api/simulator/status", web::get().to(status))
        .route("/api/simulator/routines", web::get().to(routines));
}
