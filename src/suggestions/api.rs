//! `/api/v1/suggestions`: the list (filters `status`, `source`, `area_id`; paging), one
//! suggestion, and its deploy, dismiss, undo, versions and restore.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::generate::automation_id;
use super::model::{Source, Status, SuggestionView, VersionView};
use super::{HaApiError, SuggestionError, Suggestions};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Params, within};

/// Largest page.
const MAX_LIMIT: usize = 1000;
/// Default page size.
const DEFAULT_LIMIT: usize = 100;

/// The suggestion routes (under `/api/v1`).
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(show)
        .service(deploy)
        .service(dismiss)
        .service(undo)
        .service(versions)
        .service(restore);
}

impl From<SuggestionError> for ApiError {
    fn from(e: SuggestionError) -> Self {
        let message = e.to_string();
        match e {
            SuggestionError::NotFound(_) => ApiError::not_found(message),
            SuggestionError::NotAllowed(_) | SuggestionError::Edited => ApiError::conflict(message),
            SuggestionError::Unknown { path, .. } => ApiError::unprocessable(
                "unknown_entity",
                Some(format!("automation.{path}")),
                message,
            ),
            SuggestionError::Invalid(_) => {
                ApiError::unprocessable("invalid_automation", Some("automation".into()), message)
            }
            SuggestionError::NoVersion(..) => ApiError::invalid("version", message),
            SuggestionError::Ha(HaApiError::Refused { field, .. }) => ApiError::unprocessable(
                "ha_refused",
                Some(field.map_or_else(|| "automation".to_owned(), |f| format!("automation.{f}"))),
                message,
            ),
            SuggestionError::Ha(HaApiError::Auth(_)) => ApiError::bad_gateway(message),
            SuggestionError::Ha(HaApiError::Unavailable(_)) => ApiError::unavailable(message),
            SuggestionError::Db(e) => ApiError::from(e),
        }
    }
}

/// Filters and paging of `GET /api/v1/suggestions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only suggestions with this status.
    status: Option<Status>,
    /// `pattern` (learned) or `synergy` (from the registry).
    source: Option<Source>,
    /// Only suggestions in this area.
    #[serde(alias = "area")]
    area_id: Option<String>,
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 100000000)]
    offset: Option<usize>,
}

/// A page of suggestions, best first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SuggestionPage {
    /// Suggestions matching the filters.
    pub total: usize,
    /// Page size asked for.
    pub limit: usize,
    /// Items skipped.
    pub offset: usize,
    /// The page.
    pub items: Vec<SuggestionView>,
}

/// Suggestions, best first: learned ones (`source: pattern`) rank above every synergy.
#[utoipa::path(
    tag = "suggestions",
    params(ListParams),
    responses(
        (status = 200, body = SuggestionPage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
    )
)]
#[get("/suggestions")]
pub(crate) async fn list(
    request: HttpRequest,
    state: web::Data<Suggestions>,
    Params(p): Params<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = within("limit", p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = p.offset.unwrap_or(0);
    let area = p.area_id.filter(|a| !a.trim().is_empty());
    let listing = state.entries();
    let matching: Vec<_> = listing
        .iter()
        .filter(|e| {
            let r = &e.record;
            p.status.is_none_or(|s| r.status == s)
                && p.source.is_none_or(|s| r.proposal.source == s)
                && area
                    .as_ref()
                    .is_none_or(|a| r.proposal.area_id.as_ref() == Some(a))
        })
        .collect();
    let total = matching.len();
    let page: Vec<_> = matching.into_iter().skip(offset).take(limit).collect();
    // a page is rendered and compressed once per build and filter, and again only when the
    // automations it shows change in Home Assistant: their entities and states are in the key
    let in_ha = state.automation_entities();
    let mut key = format!("{:?}|{:?}|{area:?}|{limit}|{offset}", p.status, p.source);
    for e in &page {
        if let Some(h) = in_ha.get(&automation_id(&e.record.id)) {
            use std::fmt::Write;
            let _ = write!(key, "|{}={:?}:{:?}", e.record.id, h.entity_id, h.state);
        }
    }
    let doc = listing.pages.get_or_render(key, || {
        let items = page.iter().map(|e| Suggestions::view(e, &in_ha)).collect();
        // serialising owned, derived values cannot fail
        bytes::Bytes::from(
            serde_json::to_vec(&SuggestionPage {
                total,
                limit,
                offset,
                items,
            })
            .unwrap_or_default(),
        )
    });
    Ok(crate::http::prepared_json_ok(&request, &doc))
}

/// One suggestion; a deployed one's state in Home Assistant is checked first.
#[utoipa::path(
    tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion's id")),
    responses(
        (status = 200, body = SuggestionView),
        (status = 404, body = ErrorBody, description = "No such suggestion"),
    )
)]
#[get("/suggestions/{id}")]
pub(crate) async fn show(
    state: web::Data<Suggestions>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.get(&id).await?))
}

/// Optional body of a deploy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployBody {
    /// The automation to deploy instead of the proposed one (Home Assistant's form, as edited
    /// in the panel); its `id` is always HomeIQ's.
    #[schema(value_type = Option<Object>)]
    pub automation: Option<Value>,
}

/// What a deploy did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeployAnswer {
    /// The suggestion, now `deployed`.
    pub suggestion: SuggestionView,
    /// Request received → automation entity present in Home Assistant, ms; `null` when the
    /// entity did not appear within 15 s (HA took the automation).
    pub round_trip_ms: Option<u64>,
}

/// An optional JSON body: empty → `None`, else decoded as every body is.
fn optional_body<T: serde::de::DeserializeOwned>(body: &web::Bytes) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    crate::http::decode_json(body).map(Some)
}

/// Deploys the suggestion's automation to Home Assistant: every entity and device it names must
/// be in the registry, Home Assistant validates it, then it is written and HomeIQ waits until
/// its entity exists.
#[utoipa::path(
    tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion's id")),
    request_body(content = Option<DeployBody>, description = "Optional: an edited automation"),
    responses(
        (status = 200, body = DeployAnswer),
        (status = 400, body = ErrorBody, description = "The body is not valid JSON of this form"),
        (status = 404, body = ErrorBody, description = "No such suggestion"),
        (status = 409, body = ErrorBody, description = "Already deployed"),
        (status = 422, body = ErrorBody, description = "Refused: an entity or device not in the registry (`unknown_entity`, nothing sent to HA), or Home Assistant's validation (`ha_refused`, with HA's message); `field` names the part"),
        (status = 502, body = ErrorBody, description = "Home Assistant refused HomeIQ's token for its config API"),
        (status = 503, body = ErrorBody, description = "Home Assistant or the database is unavailable"),
    )
)]
#[post("/suggestions/{id}/deploy")]
pub(crate) async fn deploy(
    state: web::Data<Suggestions>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let received = Instant::now();
    let body: Option<DeployBody> = optional_body(&body)?;
    let done = state
        .deploy(&id, body.and_then(|b| b.automation), received)
        .await?;
    Ok(HttpResponse::Ok().json(DeployAnswer {
        suggestion: done.view,
        round_trip_ms: done.round_trip_ms,
    }))
}

/// Dismisses the suggestion: it is never offered again for the same pattern.
#[utoipa::path(
    tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion's id")),
    responses(
        (status = 200, body = SuggestionView),
        (status = 404, body = ErrorBody, description = "No such suggestion"),
        (status = 409, body = ErrorBody, description = "Deployed: undo it first"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    )
)]
#[post("/suggestions/{id}/dismiss")]
pub(crate) async fn dismiss(
    state: web::Data<Suggestions>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.dismiss(&id).await?))
}

/// `force` of an undo.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UndoParams {
    /// Undo even when the automation was edited in Home Assistant since.
    force: Option<bool>,
}

/// Optional body of an undo.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UndoBody {
    /// As the query parameter `force`.
    pub force: Option<bool>,
}

/// What an undo did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UndoAnswer {
    /// The suggestion, now `undone`.
    pub suggestion: SuggestionView,
    /// `deleted`; `disabled` where Home Assistant's proxy cannot delete (the automation was
    /// turned off instead: delete it in Home Assistant); `already_gone`.
    pub how: String,
}

/// Takes the deployed automation back: deleted from Home Assistant (or turned off where it
/// cannot be deleted). An automation edited in Home Assistant since answers 409 unless `force`.
#[utoipa::path(
    tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion's id"), UndoParams),
    request_body(content = Option<UndoBody>, description = "Optional: `force`"),
    responses(
        (status = 200, body = UndoAnswer),
        (status = 400, body = ErrorBody, description = "A parameter or the body is invalid"),
        (status = 404, body = ErrorBody, description = "No such suggestion"),
        (status = 409, body = ErrorBody, description = "Not deployed, or edited in Home Assistant (undo with force)"),
        (status = 502, body = ErrorBody, description = "Home Assistant refused HomeIQ's token for its config API"),
        (status = 503, body = ErrorBody, description = "Home Assistant or the database is unavailable"),
    )
)]
#[post("/suggestions/{id}/undo")]
pub(crate) async fn undo(
    state: web::Data<Suggestions>,
    id: web::Path<String>,
    Params(p): Params<UndoParams>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: Option<UndoBody> = optional_body(&body)?;
    let force = p.force.or(body.and_then(|b| b.force)).unwrap_or(false);
    let done = state.undo(&id, force).await?;
    Ok(HttpResponse::Ok().json(UndoAnswer {
        suggestion: done.view,
        how: done.how.to_owned(),
    }))
}

/// Every recorded change of the suggestion, oldest first: who, when, the status and the
/// automation at that moment.
#[utoipa::path(
    tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion's id")),
    responses(
        (status = 200, body = Vec<VersionView>),
        (status = 404, body = ErrorBody, description = "No such suggestion"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    )
)]
#[get("/suggestions/{id}/versions")]
pub(crate) async fn versions(
    state: web::Data<Suggestions>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.versions(&id).await?))
}

/// Body of a restore.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBody {
    /// The version whose automation becomes the suggestion's.
    #[schema(minimum = 1)]
    pub version: i64,
}

/// Makes a recorded version's automation the suggestion's; when deployed it is validated and
/// written to Home Assistant again.
#[utoipa::path(
    tag = "suggestions",
    params(("id" = String, Path, description = "The suggestion's id")),
    request_body = RestoreBody,
    responses(
        (status = 200, body = SuggestionView),
        (status = 400, body = ErrorBody, description = "The body is invalid, or no such version"),
        (status = 404, body = ErrorBody, description = "No such suggestion"),
        (status = 422, body = ErrorBody, description = "Refused by HomeIQ's check or Home Assistant; `field` names the part"),
        (status = 502, body = ErrorBody, description = "Home Assistant refused HomeIQ's token for its config API"),
        (status = 503, body = ErrorBody, description = "Home Assistant or the database is unavailable"),
    )
)]
#[post("/suggestions/{id}/restore")]
pub(crate) async fn restore(
    state: web::Data<Suggestions>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(body) = optional_body::<RestoreBody>(&body)? else {
        return Err(ApiError::invalid(
            "version",
            "the body {\"version\": N} is required",
        ));
    };
    Ok(HttpResponse::Ok().json(state.restore(&id, body.version).await?))
}
