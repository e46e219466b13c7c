//! `/api/v1/webhooks`: targets (create, list, read, replace, delete), a test delivery, and the
//! delivery log.
//!
//! Bodies are decoded through `serde_path_to_error`, so a wrong type or an unknown key is a 400
//! whose `field` names it (`rules[0].above`), like every other validation error here.

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rules::{self, Rule};
pub(crate) use super::store::{DeliveryStatus, TargetKind};
use super::store::{delivery, now_ms, target};
use super::{EVENT_TEST, WebhookError, WebhookHandle, egress, sign};
use crate::http::decode_json;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::Params;

/// Most targets HomeIQ keeps.
pub(crate) const MAX_TARGETS: usize = 200;

/// Largest page of the delivery log.
const MAX_LIMIT: u64 = 1000;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        tracing::error!(error = %e, "webhook store error");
        ApiError::unavailable(format!("the metadata database failed: {e}"))
    }
}

/// The webhook routes (under `/api/v1`); they read the [`WebhookHandle`] from the app data.
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_webhooks)
        .service(create_webhook)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(test_webhook)
        .service(list_deliveries);
}

/// A target's own limits (the `webhooks.*` settings apply where unset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    /// Requests per minute, 1..60000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 60000)]
    pub rate_limit_per_minute: Option<u32>,
    /// Requests in flight at once, 1..64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<u32>,
}

/// Body of `POST /api/v1/webhooks` and `PUT /api/v1/webhooks/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookRequest {
    /// Name, 1..100 characters.
    pub name: String,
    /// `ha` or `http`.
    pub kind: TargetKind,
    /// `ha`: the webhook id of the automation's webhook trigger (keep it long and random: it is
    /// the secret; one made only of dots is refused). On `PUT`, leaving it out keeps the current
    /// one.
    #[serde(default)]
    pub webhook_id: Option<String>,
    /// `http`: the receiver's URL (`http` or `https`). Internal addresses (loopback, link-local,
    /// multicast, the Supervisor's network and its host names) are refused unless
    /// `webhooks.allow_internal_targets`; home LAN addresses are fine.
    #[serde(default)]
    pub url: Option<String>,
    /// HMAC secret, at least 16 characters; generated when left out. On `PUT`, leaving it out
    /// keeps the current one.
    #[serde(default)]
    pub secret: Option<String>,
    /// Whether the rules are evaluated (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The rules; any one matching sends a delivery.
    pub rules: Vec<Rule>,
    /// Own limits.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// Delivery counters of a target.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TargetCounters {
    /// Deliveries that succeeded.
    pub success_count: i64,
    /// Deliveries given up.
    pub failure_count: i64,
    /// Pending deliveries dropped, oldest first, because the target already had
    /// `webhooks.max_pending_per_target` waiting.
    pub dropped_count: i64,
    /// Last success.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Last give-up.
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// A target as the API shows it: never its secret, and an `ha` webhook id only masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct WebhookView {
    /// Target id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `ha` or `http`.
    pub kind: TargetKind,
    /// `ha`: the first characters of the webhook id (it is a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id_hint: Option<String>,
    /// `http`: the receiver's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Always true: a secret is set (it is shown only once, at creation).
    pub secret_set: bool,
    /// Whether the rules are evaluated.
    pub enabled: bool,
    /// The rules.
    pub rules: Vec<Rule>,
    /// Own limits.
    pub limits: Limits,
    /// Counters.
    pub counters: TargetCounters,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last edit.
    pub updated_at: DateTime<Utc>,
}

/// The answer to `POST /api/v1/webhooks`: the target and, this once, its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    /// The target.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The HMAC secret; store it now, it is never shown again.
    pub secret: String,
}

/// Every target.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    /// Number of targets.
    pub total: usize,
    /// The targets, oldest first.
    pub items: Vec<WebhookView>,
}

/// The answer to a test delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TestQueued {
    /// The delivery id (see the delivery log).
    pub delivery_id: String,
}

/// One entry of the delivery log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// Delivery id (`X-HomeIQ-Delivery`).
    pub id: String,
    /// Event type.
    pub event: String,
    /// Rule that fired.
    pub rule_index: Option<i32>,
    /// Entity.
    pub entity_id: Option<String>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i32,
    /// When the delivery was written.
    pub created_at: Option<DateTime<Utc>>,
    /// Next attempt (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Last attempt's start.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration of the last attempt, ms.
    pub latency_ms: Option<i64>,
    /// Change in Home Assistant → first attempt, ms.
    pub trigger_latency_ms: Option<i64>,
    /// HTTP status of the last answer.
    pub response_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A page of the delivery log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    /// Deliveries matching.
    pub total: u64,
    /// Page size.
    pub limit: u64,
    /// Skipped.
    pub offset: u64,
    /// Newest first.
    pub items: Vec<DeliveryView>,
}

/// Parameters of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryParams {
    /// Only deliveries in this status.
    status: Option<DeliveryStatus>,
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// Items to skip.
    offset: Option<u64>,
}

fn ms(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
}

fn view(row: &target::Model) -> WebhookView {
    WebhookView {
        id: row.id.clone(),
        name: row.name.clone(),
        kind: row.kind,
        webhook_id_hint: row
            .webhook_id
            .as_ref()
            .map(|w| format!("{}…", w.chars().take(4).collect::<String>())),
        url: row.url.clone(),
        secret_set: !row.secret.is_empty(),
        enabled: row.enabled,
        rules: super::rules_of(row),
        limits: Limits {
            rate_limit_per_minute: row
                .rate_limit_per_minute
                .and_then(|v| u32::try_from(v).ok()),
            concurrency: row.concurrency.and_then(|v| u32::try_from(v).ok()),
        },
        counters: TargetCounters {
            success_count: row.success_count,
            failure_count: row.failure_count,
            dropped_count: row.dropped_count,
            last_success_at: row.last_success_at.and_then(ms),
            last_failure_at: row.last_failure_at.and_then(ms),
        },
        created_at: ms(row.created_at).unwrap_or_default(),
        updated_at: ms(row.updated_at).unwrap_or_default(),
    }
}

fn delivery_view(d: delivery::Model) -> DeliveryView {
    DeliveryView {
        trigger_latency_ms: d
            .first_attempt_at
            .zip(d.event_time)
            .map(|(a, e)| (a - e).max(0)),
        next_attempt_at: (d.status == DeliveryStatus::Pending)
            .then(|| ms(d.next_attempt_at))
            .flatten(),
        id: d.id,
        event: d.event,
        rule_index: d.rule_index,
        entity_id: d.entity_id,
        status: d.status,
        attempts: d.attempts,
        created_at: ms(d.created_at),
        last_attempt_at: d.last_attempt_at.and_then(ms),
        finished_at: d.finished_at.and_then(ms),
        latency_ms: d.latency_ms,
        response_code: d.response_code,
        last_error: d.last_error,
    }
}

fn check_webhook_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    if !ok {
        return Err(ApiError::invalid(
            "webhook_id",
            "must be 1..255 characters of letters, digits, '-', '_', '.', '~'",
        ));
    }
    if egress::is_dot_segment(id) {
        return Err(ApiError::invalid(
            "webhook_id",
            "must not be made only of dots (it would reach another path of Home Assistant's API)",
        ));
    }
    Ok(())
}

/// Refuses an `http` target on an internal address (unless `webhooks.allow_internal_targets`);
/// the name is resolved too. Every delivery checks again.
async fn check_egress(webhooks: &WebhookHandle, row: &target::Model) -> Result<(), ApiError> {
    if row.kind == TargetKind::Ha || webhooks.settings().allow_internal_targets {
        return Ok(());
    }
    let url = row
        .url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .ok_or_else(|| ApiError::invalid("url", "required for kind `http`"))?;
    egress::check_url(&url)
        .await
        .map_err(|e| ApiError::invalid("url", e.to_string()))
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let parsed =
        url::Url::parse(url).map_err(|e| ApiError::invalid("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid("url", "scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "has no host"));
    }
    if url.len() > 2048 {
        return Err(ApiError::invalid("url", "longer than 2048 characters"));
    }
    Ok(())
}

/// Validates a request against the current row (for `PUT`) and builds the row to store.
fn to_row(
    req: WebhookRequest,
    current: Option<&target::Model>,
    id: String,
    now: i64,
) -> Result<(target::Model, Option<String>), ApiError> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1..100 characters"));
    }
    let keep = current.filter(|c| c.kind == req.kind);
    let (webhook_id, url) = match req.kind {
        TargetKind::Ha => {
            if req.url.is_some() {
                return Err(ApiError::invalid("url", "only for kind `http`"));
            }
            let webhook_id = match req.webhook_id {
                Some(w) => w,
                None => keep
                    .and_then(|c| c.webhook_id.clone())
                    .ok_or_else(|| ApiError::invalid("webhook_id", "required for kind `ha`"))?,
            };
            check_webhook_id(&webhook_id)?;
            (Some(webhook_id), None)
        }
        TargetKind::Http => {
            if req.webhook_id.is_some() {
                return Err(ApiError::invalid("webhook_id", "only for kind `ha`"));
            }
            let url = req
                .url
                .ok_or_else(|| ApiError::invalid("url", "required for kind `http`"))?;
            check_url(&url)?;
            (None, Some(url))
        }
    };
    let (secret, generated) = match req.secret {
        Some(s) => {
            if s.chars().count() < sign::MIN_SECRET_LEN || s.len() > 256 {
                return Err(ApiError::invalid(
                    "secret",
                    format!("must be {}..256 characters", sign::MIN_SECRET_LEN),
                ));
            }
            (s, None)
        }
        None => match current {
            Some(c) => (c.secret.clone(), None),
            None => {
                let s = sign::random_hex(32);
                (s.clone(), Some(s))
            }
        },
    };
    // the secret given by the caller is also returned once at creation
    let returned = if current.is_none() {
        Some(generated.unwrap_or_else(|| secret.clone()))
    } else {
        None
    };
    rules::compile_rules(&req.rules).map_err(|(field, message)| {
        ApiError::invalid(field.clone(), format!("{field}: {message}"))
    })?;
    if req.rules.is_empty() {
        return Err(ApiError::invalid("rules", "at least one rule is needed"));
    }
    let limits = req.limits.unwrap_or_default();
    if limits
        .rate_limit_per_minute
        .is_some_and(|r| !(1..=60_000).contains(&r))
    {
        return Err(ApiError::invalid(
            "limits.rate_limit_per_minute",
            "must be 1..60000",
        ));
    }
    if limits.concurrency.is_some_and(|c| !(1..=64).contains(&c)) {
        return Err(ApiError::invalid("limits.concurrency", "must be 1..64"));
    }
    let rules_json = serde_json::to_value(&req.rules)
        .map_err(|e| ApiError::internal(format!("cannot encode rules: {e}")))?;
    let row = target::Model {
        id,
        name,
        kind: req.kind,
        webhook_id,
        url,
        secret,
        enabled: req.enabled.unwrap_or(true),
        rules: rules_json,
        rate_limit_per_minute: limits
            .rate_limit_per_minute
            .and_then(|v| i32::try_from(v).ok()),
        concurrency: limits.concurrency.and_then(|v| i32::try_from(v).ok()),
        success_count: current.map_or(0, |c| c.success_count),
        failure_count: current.map_or(0, |c| c.failure_count),
        dropped_count: current.map_or(0, |c| c.dropped_count),
        last_success_at: current.and_then(|c| c.last_success_at),
        last_failure_at: current.and_then(|c| c.last_failure_at),
        created_at: current.map_or(now, |c| c.created_at),
        // strictly increasing, so the rule engine sees every edit as a new version
        updated_at: current.map_or(now, |c| now.max(c.updated_at + 1)),
    };
    Ok((row, returned))
}

async fn find(webhooks: &WebhookHandle, id: &str) -> Result<target::Model, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found(format!("no webhook target `{id}`")));
    }
    webhooks
        .store()
        .get_target(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook target `{id}`")))
}

/// Every webhook target (secrets never included).
#[utoipa::path(
    tag = "webhooks",
    responses(
        (status = 200, body = WebhookList),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[get("/webhooks")]
pub(crate) async fn list_webhooks(
    webhooks: web::Data<WebhookHandle>,
) -> Result<HttpResponse, ApiError> {
    let rows = webhooks.store().list_targets().await?;
    let items: Vec<WebhookView> = rows.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(WebhookList {
        total: items.len(),
        items,
    }))
}

/// Creates a target. The answer holds its secret: the only time it is shown.
#[utoipa::path(
    tag = "webhooks",
    request_body = WebhookRequest,
    responses(
        (status = 201, body = CreatedWebhook),
        (status = 400, body = ErrorBody, description = "The body is invalid; `field` names the part at fault (`rules[0].above`)"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[post("/webhooks")]
pub(crate) async fn create_webhook(
    webhooks: web::Data<WebhookHandle>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let req: WebhookRequest = decode_json(&body)?;
    let store = webhooks.store();
    if store.list_targets().await?.len() >= MAX_TARGETS {
        return Err(ApiError::invalid(
            "body",
            format!("at most {MAX_TARGETS} webhook targets"),
        ));
    }
    let (row, secret) = to_row(req, None, sign::random_hex(12), now_ms())?;
    check_egress(&webhooks, &row).await?;
    store.insert_target(row.clone()).await?;
    webhooks.reload().await?;
    tracing::info!(target = %row.name, id = %row.id, kind = ?row.kind, "webhook target created");
    Ok(HttpResponse::Created().json(CreatedWebhook {
        webhook: view(&row),
        secret: secret.unwrap_or_default(),
    }))
}

/// One target.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Target id")),
    responses(
        (status = 200, body = WebhookView),
        (status = 404, body = ErrorBody, description = "No such target"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[get("/webhooks/{id}")]
pub(crate) async fn get_webhook(
    webhooks: web::Data<WebhookHandle>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&webhooks, &id).await?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Replaces a target's configuration; `secret` and `webhook_id` may be left out to keep them.
/// Its rule state (pending `for` holds, cooldowns) starts over.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Target id")),
    request_body = WebhookRequest,
    responses(
        (status = 200, body = WebhookView),
        (status = 400, body = ErrorBody, description = "The body is invalid; `field` names the part at fault"),
        (status = 404, body = ErrorBody, description = "No such target"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[put("/webhooks/{id}")]
pub(crate) async fn update_webhook(
    webhooks: web::Data<WebhookHandle>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let current = find(&webhooks, &id).await?;
    let req: WebhookRequest = decode_json(&body)?;
    let (row, _) = to_row(req, Some(&current), current.id.clone(), now_ms())?;
    check_egress(&webhooks, &row).await?;
    if !webhooks.store().update_target(row.clone()).await? {
        return Err(ApiError::not_found(format!("no webhook target `{id}`")));
    }
    webhooks.reload().await?;
    tracing::info!(target = %row.name, id = %row.id, "webhook target updated");
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Deletes a target with its pending deliveries and log.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Target id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody, description = "No such target"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[delete("/webhooks/{id}")]
pub(crate) async fn delete_webhook(
    webhooks: web::Data<WebhookHandle>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&webhooks, &id).await?;
    if !webhooks.store().delete_target(&row.id).await? {
        return Err(ApiError::not_found(format!("no webhook target `{id}`")));
    }
    webhooks.reload().await?;
    tracing::info!(target = %row.name, id = %row.id, "webhook target deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Queues a `test` delivery to the target (signed like any other); follow it in the delivery log.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Target id")),
    responses(
        (status = 202, body = TestQueued),
        (status = 404, body = ErrorBody, description = "No such target"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[post("/webhooks/{id}/test")]
pub(crate) async fn test_webhook(
    webhooks: web::Data<WebhookHandle>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&webhooks, &id).await?;
    let delivery_id = webhooks
        .enqueue((&row.id, &row.name), EVENT_TEST, None, None, Utc::now())
        .await?;
    Ok(HttpResponse::Accepted().json(TestQueued { delivery_id }))
}

/// The target's deliveries, newest first: pending ones (the outbox) and the log of finished ones
/// (kept `webhooks.log_retention_days`).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Target id"), DeliveryParams),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
        (status = 404, body = ErrorBody, description = "No such target"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[get("/webhooks/{id}/deliveries")]
pub(crate) async fn list_deliveries(
    webhooks: web::Data<WebhookHandle>,
    id: web::Path<String>,
    Params(p): Params<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = match p.limit {
        None => 100,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(l) => {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1..{MAX_LIMIT}, got {l}"),
            ));
        }
    };
    let offset = p.offset.unwrap_or(0).min(i64::MAX as u64);
    let row = find(&webhooks, &id).await?;
    let (total, rows) = webhooks
        .store()
        .list_deliveries(&row.id, p.status, offset, limit)
        .await?;
    Ok(HttpResponse::Ok().json(DeliveryPage {
        total,
        limit,
        offset,
        items: rows.into_iter().map(delivery_view).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(v: serde_json::Value) -> Option<String> {
        let req: Result<WebhookRequest, _> = decode_json(v.to_string().as_bytes());
        match req {
            Err(e) => e.body().error.field,
            Ok(req) => to_row(req, None, "x".into(), 0)
                .err()
                .and_then(|e| e.body().error.field),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let ok = json!({"name": "n", "kind": "http", "url": "http://127.0.0.1:1/x", "rules": [{"entity_id": "light.a"}]});
        assert_eq!(field(ok.clone()), None);
        let with = |k: &str, v: serde_json::Value| {
            let mut b = ok.clone();
            b[k] = v;
            field(b)
        };
        assert_eq!(
            with("rules", json!([{"entity_id": "light.a", "above": "x"}])).as_deref(),
            Some("rules[0].above")
        );
        assert_eq!(
            with(
                "rules",
                json!([{"entity_id": "light.a"}, {"entity_id": "sensor.a", "above": 5, "below": 1}])
            )
            .as_deref(),
            Some("rules[1].below")
        );
        assert_eq!(
            with("rules", json!([{"entity_id": "light.a", "colour": 1}])).as_deref(),
            Some("rules[0].colour")
        );
        assert_eq!(with("kind", json!("ftp")).as_deref(), Some("kind"));
        assert_eq!(with("secret", json!("short")).as_deref(), Some("secret"));
        assert_eq!(with("url", json!("ftp://x")).as_deref(), Some("url"));
        assert_eq!(with("rules", json!([])).as_deref(), Some("rules"));
        assert_eq!(
            with("limits", json!({"concurrency": 0})).as_deref(),
            Some("limits.concurrency")
        );
        assert_eq!(with("name", json!(" ")).as_deref(), Some("name"));
        assert_eq!(field(json!({"kind": "http"})).as_deref(), Some("name"));
        assert_eq!(
            field(json!({"name": "n", "kind": "ha", "rules": [{"entity_id": "light.a"}]}))
                .as_deref(),
            Some("webhook_id")
        );
        assert_eq!(
            field(json!({"name": "n", "kind": "ha", "webhook_id": "a/b", "rules": [{"entity_id": "light.a"}]})).as_deref(),
            Some("webhook_id")
        );
        assert_eq!(field(json!([1])).as_deref(), Some("body"));
    }

    #[test]
    fn openapi_documents_every_route_and_the_rule_shape() {
        let doc = serde_json::to_value(crate::api::openapi()).expect("json");
        for (path, method) in [
            ("/api/v1/webhooks", "get"),
            ("/api/v1/webhooks", "post"),
            ("/api/v1/webhooks/{id}", "get"),
            ("/api/v1/webhooks/{id}", "put"),
            ("/api/v1/webhooks/{id}", "delete"),
            ("/api/v1/webhooks/{id}/test", "post"),
            ("/api/v1/webhooks/{id}/deliveries", "get"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
        let rule = &doc["components"]["schemas"]["Rule"]["properties"];
        assert!(rule["for"].is_object(), "{rule}");
        assert!(rule["for_secs"].is_null());
        assert!(doc["components"]["schemas"]["WebhookRequest"].is_object());
        // closed sets are enums in the document, with the names stored and sent
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["TargetKind"]["enum"], json!(["ha", "http"]));
        assert_eq!(
            schemas["DeliveryStatus"]["enum"],
            json!(["pending", "in_flight", "delivered", "failed"])
        );
        let reference = |schema: &serde_json::Value| schema.to_string();
        assert!(reference(&schemas["WebhookView"]["properties"]["kind"]).contains("TargetKind"));
        assert!(
            reference(&schemas["DeliveryView"]["properties"]["status"]).contains("DeliveryStatus")
        );
        let params = doc["paths"]["/api/v1/webhooks/{id}/deliveries"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        let status = params
            .iter()
            .find(|p| p["name"] == "status")
            .expect("status parameter");
        assert!(
            reference(&status["schema"]).contains("DeliveryStatus"),
            "{status}"
        );
    }

    #[test]
    fn secrets_are_generated_once_and_kept_on_update() {
        let req = |secret: Option<&str>| WebhookRequest {
            name: "n".into(),
            kind: TargetKind::Http,
            webhook_id: None,
            url: Some("https://example.com/hook".into()),
            secret: secret.map(str::to_owned),
            enabled: None,
            rules: vec![Rule {
                entity_id: Some("light.a".into()),
                ..Rule::default()
            }],
            limits: None,
        };
        let (row, secret) = to_row(req(None), None, "id".into(), 1).expect("valid");
        let secret = secret.expect("returned at creation");
        assert_eq!(secret.len(), 64);
        assert_eq!(row.secret, secret);
        let (updated, again) = to_row(req(None), Some(&row), "id".into(), 1).expect("valid");
        assert_eq!(again, None);
        assert_eq!(updated.secret, secret);
        assert!(updated.updated_at > row.updated_at);
        let shown = serde_json::to_string(&view(&updated)).expect("json");
        assert!(!shown.contains(&secret));
    }
}
