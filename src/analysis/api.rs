//! `/api/v1/analysis/runs` (start a run, list runs and refused requests) and `/api/v1/patterns`
//! (what the last successful run learned, filtered and paged like the registry's lists).

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::store::{Outcome, StoredPattern, Trigger, run};
use super::{Analysis, Refusal};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Params, within};
use crate::patterns::{DayType, PatternKind};
use crate::registry::CatalogHandle;

/// Largest page of runs or patterns.
const MAX_LIMIT: usize = 1000;
/// Default page size.
const DEFAULT_LIMIT: usize = 100;

/// What the analysis routes read.
#[derive(Debug, Clone)]
pub(crate) struct AnalysisApi {
    /// The analysis.
    pub analysis: Analysis,
    /// Entity → area, for the `area_id` filter.
    pub catalog: CatalogHandle,
}

/// The analysis routes (under `/api/v1`).
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(start_run)
        .service(list_runs)
        .service(list_patterns);
}

/// One analysis run, or a refused request to start one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RunView {
    /// Sequence number.
    pub id: i64,
    /// `scheduled` (nightly) or `manual` (requested).
    pub trigger: Trigger,
    /// `running`, `succeeded`, `failed`, `interrupted` or `refused`.
    pub outcome: Outcome,
    /// When it was asked for.
    pub requested_at: Option<DateTime<Utc>>,
    /// When it started (none for a refused request).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How long it took, ms.
    pub duration_ms: Option<i64>,
    /// Stored changes read.
    pub changes_analysed: i64,
    /// Transitions among them (of entities that can make a pattern).
    pub transitions: i64,
    /// Patterns found.
    pub patterns_found: i64,
    /// The analysed window's start.
    pub window_start: Option<DateTime<Utc>>,
    /// The analysed window's end.
    pub window_end: Option<DateTime<Utc>>,
    /// The home's time zone the run used.
    pub time_zone: Option<String>,
    /// Why it failed or was refused.
    pub error: Option<String>,
}

fn at(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

impl From<run::Model> for RunView {
    fn from(r: run::Model) -> Self {
        RunView {
            id: r.id,
            trigger: r.trigger,
            outcome: r.outcome,
            requested_at: at(Some(r.requested_at)),
            started_at: at(r.started_at),
            finished_at: at(r.finished_at),
            duration_ms: r.duration_ms,
            changes_analysed: r.changes_analysed,
            transitions: r.transitions,
            patterns_found: r.patterns_found,
            window_start: at(r.window_start),
            window_end: at(r.window_end),
            time_zone: r.time_zone,
            error: r.error,
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunPage {
    /// Whether a run is under way now.
    pub running: bool,
    /// The page.
    pub items: Vec<RunView>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    pub next_before: Option<i64>,
}

/// Paging of `GET /api/v1/analysis/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunParams {
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only rows with a smaller id (the previous page's `next_before`).
    #[param(minimum = 1)]
    before: Option<i64>,
}

/// Starts an analysis now. Requested runs are at most one per `analysis.manual_cooldown_hours`;
/// every request, also a refused one, is recorded in the run list.
#[utoipa::path(
    tag = "patterns",
    responses(
        (status = 202, body = RunView, description = "Started; poll the run list for its outcome"),
        (status = 409, body = ErrorBody, description = "A run is under way, or analysis is turned off"),
        (status = 429, body = ErrorBody, description = "Inside the cooldown; `Retry-After` says when a run may be asked for again"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[post("/analysis/runs")]
pub(crate) async fn start_run(state: web::Data<AnalysisApi>) -> Result<HttpResponse, ApiError> {
    match state.analysis.request(Trigger::Manual).await {
        Ok(row) => Ok(HttpResponse::Accepted().json(RunView::from(row))),
        Err(Refusal::Cooldown(wait)) => {
            let secs = wait.as_secs().max(1);
            let (h, m) = (secs / 3600, (secs % 3600).div_ceil(60));
            Err(ApiError::too_soon(
                secs,
                format!(
                    "an analysis was requested less than analysis.manual_cooldown_hours ago; the next one can be requested in {h} h {m} min"
                ),
            ))
        }
        Err(e @ (Refusal::Busy | Refusal::Disabled)) => Err(ApiError::conflict(e.to_string())),
        Err(Refusal::Db(e)) => Err(ApiError::unavailable(format!(
            "the metadata database failed: {e}"
        ))),
    }
}

/// Analysis runs and refused requests, newest first.
#[utoipa::path(
    tag = "patterns",
    params(RunParams),
    responses(
        (status = 200, body = RunPage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[get("/analysis/runs")]
pub(crate) async fn list_runs(
    state: web::Data<AnalysisApi>,
    Params(p): Params<RunParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = within("limit", p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    if p.before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid("before", "must be a run id (1 or more)"));
    }
    let rows = state.analysis.runs(limit as u64 + 1, p.before).await?;
    let more = rows.len() > limit;
    let items: Vec<RunView> = rows.into_iter().take(limit).map(RunView::from).collect();
    let next_before = more.then(|| items.last().map(|r| r.id)).flatten();
    Ok(HttpResponse::Ok().json(RunPage {
        running: state.analysis.running(),
        items,
        next_before,
    }))
}

/// Filters and paging of `GET /api/v1/patterns`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PatternParams {
    /// `time_of_day` or `co_occurrence`.
    kind: Option<PatternKind>,
    /// Patterns naming this entity.
    entity_id: Option<String>,
    /// Patterns naming an entity of this area (the entity's, else its device's).
    area_id: Option<String>,
    /// Patterns naming an entity of this domain.
    domain: Option<String>,
    /// `all`, `weekday` or `weekend`.
    day_type: Option<DayType>,
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 100000000)]
    offset: Option<usize>,
}

/// A page of patterns, most confident first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PatternPage {
    /// Patterns matching the filters.
    pub total: usize,
    /// Page size asked for.
    pub limit: usize,
    /// Items skipped.
    pub offset: usize,
    /// The page.
    pub items: Vec<StoredPattern>,
}

/// What the last successful analysis learned: time-of-day habits and sequences, each with a
/// stable id and its evidence.
#[utoipa::path(
    tag = "patterns",
    params(PatternParams),
    responses(
        (status = 200, body = PatternPage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
    )
)]
#[get("/patterns")]
pub(crate) async fn list_patterns(
    request: HttpRequest,
    state: web::Data<AnalysisApi>,
    Params(p): Params<PatternParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = within("limit", p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = p.offset.unwrap_or(0);
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let (entity, area, domain) = (
        non_empty(p.entity_id),
        non_empty(p.area_id),
        non_empty(p.domain),
    );
    let learned = state.analysis.patterns();
    let catalog = area.as_ref().map(|_| state.catalog.current());
    let render = || {
        let mut matching: Vec<&StoredPattern> = learned
            .iter()
            .filter(|s| {
                let pt = &s.pattern;
                p.kind.is_none_or(|k| pt.kind == k)
                    && p.day_type.is_none_or(|d| pt.day_type == d)
                    && entity
                        .as_ref()
                        .is_none_or(|e| pt.entities.iter().any(|x| &x.entity_id == e))
                    && domain.as_ref().is_none_or(|d| {
                        pt.entities
                            .iter()
                            .any(|x| x.entity_id.split_once('.').is_some_and(|(dom, _)| dom == d))
                    })
                    && area.as_ref().is_none_or(|a| {
                        pt.entities.iter().any(|x| {
                            catalog
                                .as_ref()
                                .and_then(|c| c.area_of(&x.entity_id))
                                .is_some_and(|ea| ea == a)
                        })
                    })
            })
            .collect();
        matching.sort_by(|a, b| {
            b.pattern
                .confidence
                .total_cmp(&a.pattern.confidence)
                .then_with(|| a.pattern.id.cmp(&b.pattern.id))
        });
        let page = PageView {
            total: matching.len(),
            limit,
            offset,
            items: matching.into_iter().skip(offset).take(limit).collect(),
        };
        // serialising owned, derived values cannot fail
        bytes::Bytes::from(serde_json::to_vec(&page).unwrap_or_default())
    };
    if area.is_some() {
        // the answer depends on the catalog snapshot as well: rendered each time
        return Ok(crate::http::json_ok(render()));
    }
    // a page is rendered once per analysis run (the patterns change only then) and filter
    let key = format!(
        "{:?}|{entity:?}|{domain:?}|{:?}|{offset}|{limit}",
        p.kind, p.day_type
    );
    let doc = learned.pages.get_or_render(key, render);
    Ok(crate::http::prepared_json_ok(&request, &doc))
}

/// [`PatternPage`] as rendered, borrowing its items.
#[derive(Serialize)]
struct PageView<'a> {
    total: usize,
    limit: usize,
    offset: usize,
    items: Vec<&'a StoredPattern>,
}
