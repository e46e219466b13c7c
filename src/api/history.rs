//! History endpoints: records, aggregates and event statistics, bounded in time and size.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;

use super::cache::HistoryCache;
use super::cache::Scope;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Params, within};
use crate::http::prepared_json_ok;
use crate::prepared::PreparedJson;
use crate::rollups::read::TieredAggregate;
use crate::rollups::{RollupError, Rollups, Tier};
use crate::store::history::HistoryStore;
use crate::store::history::{
    AggregateQuery, AggregateSeries, Cursor, HistoryPage, HistoryQuery, Order, StatsBucket,
    choose_interval,
};

/// Entities one history request may name.
pub(crate) const MAX_HISTORY_ENTITIES: usize = 50;
/// Entities one aggregate request read from raw points may name.
pub(crate) const MAX_AGGREGATE_ENTITIES: usize = 20;
/// Entities one aggregate request read from rollups may name.
pub(crate) const MAX_ROLLUP_ENTITIES: usize = 50;
/// Most records per history page.
pub(crate) const MAX_HISTORY_LIMIT: usize = 10_000;
/// Most buckets per aggregate series or statistics answer.
pub(crate) const MAX_POINTS: u64 = 10_000;

/// Parses an RFC 3339 time from a query parameter (a `+` decoded to a space is put back).
fn parse_time(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let t = DateTime::parse_from_rfc3339(&text.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid(
                field,
                format!("{field} must be an RFC 3339 time such as 2026-01-31T18:00:00Z ({e})"),
            )
        })?;
    // the span InfluxDB's nanosecond timestamps can hold
    if !(1678..=2261).contains(&t.year()) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must lie between the years 1678 and 2261"),
        ));
    }
    Ok(Some(t))
}

/// Parses a duration: seconds (`90`) or with a unit (`90s`, `5m`, `1h`, `2d`).
fn parse_interval(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(factor).filter(|&s| s > 0)
}

/// Splits and checks a comma-separated entity id list.
fn entity_list(text: Option<&str>, max: usize) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = text
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "entity_id",
            "entity_id is required: one entity id or several separated by commas",
        ));
    }
    if ids.len() > max {
        return Err(ApiError::invalid(
            "entity_id",
            format!("at most {max} entities per request, got {}", ids.len()),
        ));
    }
    for id in &ids {
        let valid = id.split_once('.').is_some_and(|(d, o)| {
            !d.is_empty()
                && !o.is_empty()
                && id.len() <= 255
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        });
        if !valid {
            return Err(ApiError::invalid(
                "entity_id",
                format!("`{id}` is not an entity id (domain.object_id)"),
            ));
        }
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    Ok(unique)
}

/// The range `[start, end]` with defaults (`end` = now, `start` = `end` − `default_span`) and the
/// configured maximum.
fn range(
    max_days: u32,
    start: Option<&str>,
    end: Option<&str>,
    default_span: Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let end_t = parse_time("end", end)?.unwrap_or_else(Utc::now);
    let start_t = parse_time("start", start)?.unwrap_or(end_t - default_span);
    if start_t >= end_t {
        return Err(ApiError::invalid("start", "start must be before end"));
    }
    if end_t - start_t > Duration::days(i64::from(max_days)) {
        return Err(ApiError::invalid(
            "start",
            format!(
                "the range may cover at most {max_days} days (api.max_history_days; aggregates read from rollups: retention.daily_days)"
            ),
        ));
    }
    Ok((start_t, end_t))
}

/// Record order.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OrderParam {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// Parameters of `GET /api/v1/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// One entity id, or several separated by commas (at most 50).
    #[param(
        required = true,
        pattern = r"^[a-z0-9_]+\.[a-z0-9_]+(,[a-z0-9_]+\.[a-z0-9_]+)*$"
    )]
    entity_id: Option<String>,
    /// Range start, RFC 3339 (default: `end` − 24 h).
    #[param(format = DateTime)]
    start: Option<String>,
    /// Range end, RFC 3339 (default: now).
    #[param(format = DateTime)]
    end: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(inline)]
    order: Option<OrderParam>,
    /// Records per page, 1..10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Recorded states of entities over a time range: state, value, attributes, the previous state and
/// how long each lasted; keyset-paged with `cursor`.
#[utoipa::path(
    tag = "history",
    params(HistoryParams),
    responses(
        (status = 200, body = HistoryPage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
        (status = 503, body = ErrorBody, description = "History storage is unreachable"),
    )
)]
#[get("/history")]
pub(crate) async fn history(
    request: HttpRequest,
    state: web::Data<HistoryApi>,
    Params(p): Params<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let entity_ids = entity_list(p.entity_id.as_deref(), MAX_HISTORY_ENTITIES)?;
    let (start, end) = range(
        state.max_history_days,
        p.start.as_deref(),
        p.end.as_deref(),
        Duration::hours(24),
    )?;
    let order = match p.order {
        None | Some(OrderParam::Asc) => Order::Ascending,
        Some(OrderParam::Desc) => Order::Descending,
    };
    let limit = within("limit", p.limit, 1000, MAX_HISTORY_LIMIT)?;
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            ApiError::invalid(
                "cursor",
                "cursor must be a next_cursor from an earlier page",
            )
        })?),
    };
    let q = HistoryQuery {
        entity_ids,
        start,
        end,
        order,
        limit,
        after,
    };
    let key = p.end.is_some().then(|| {
        format!(
            "history|{}|{}|{}|{:?}|{}|{}",
            q.entity_ids.join(","),
            q.start.timestamp_micros(),
            q.end.timestamp_micros(),
            q.order,
            q.limit,
            p.cursor.as_deref().unwrap_or("")
        )
    });
    // a range wholly before the oldest raw record still stored: from rollups, never empty
    let beyond_raw = state
        .rollups
        .raw_from()
        .is_some_and(|first| q.end.timestamp_micros() < first);
    let body = answer(&state, key, Scope::Entities(&q.entity_ids), || async {
        if beyond_raw {
            render(&state.rollups.history_page(&q).await?)
        } else {
            render(&state.history.history(&q).await?)
        }
    })
    .await?;
    Ok(prepared_json_ok(&request, &body))
}

/// Renders an answer as JSON bytes.
fn render<T: Serialize>(answer: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(answer)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot render the answer: {e}")))
}

/// The answer through the history cache when `key` is given (the client named the range's
/// end), else computed directly.
async fn answer<F, Fut>(
    state: &HistoryApi,
    key: Option<String>,
    scope: Scope<'_>,
    compute: F,
) -> Result<Arc<PreparedJson>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, ApiError>>,
{
    match key {
        Some(key) => state.cache.get_or_compute(key, scope, compute).await,
        None => compute()
            .await
            .map(|body| Arc::new(PreparedJson::new(body))),
    }
}

/// Parameters of `GET /api/v1/history/aggregate`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AggregateParams {
    /// One entity id, or several separated by commas (at most 20).
    #[param(
        required = true,
        pattern = r"^[a-z0-9_]+\.[a-z0-9_]+(,[a-z0-9_]+\.[a-z0-9_]+)*$"
    )]
    entity_id: Option<String>,
    /// Range start, RFC 3339 (default: `end` − 24 h).
    #[param(format = DateTime)]
    start: Option<String>,
    /// Range end, RFC 3339 (default: now).
    #[param(format = DateTime)]
    end: Option<String>,
    /// Bucket width: seconds or `30s`, `5m`, `1h`, `1d`; chosen from `max_points` when absent.
    interval: Option<String>,
    /// Most buckets when HomeIQ chooses the interval, 1..10000 (default 500).
    #[param(minimum = 1, maximum = 10000)]
    max_points: Option<u64>,
}

/// What the history routes read: the history store, its answer cache and the range limit.
#[derive(Clone)]
pub(crate) struct HistoryApi {
    /// History reads.
    pub history: HistoryStore,
    /// Aggregates from the right tier.
    pub rollups: Rollups,
    /// Answers of history reads with an explicit end, while current.
    pub cache: HistoryCache,
    /// `api.max_history_days`.
    pub max_history_days: u32,
}

/// The history routes (under `/api/v1`); they read [`HistoryApi`] from the app data.
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(history).service(aggregate).service(event_stats);
}

/// Aggregates of numeric entities.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AggregateAnswer {
    /// Range start.
    pub start: DateTime<Utc>,
    /// Range end.
    pub end: DateTime<Utc>,
    /// Bucket width used, seconds.
    pub interval_secs: u64,
    /// Where the numbers come from: `raw` points, rollups (`5m`, `1h`, `1d`: the coarsest used;
    /// the range's ragged edges and the last hour are always read raw) or `imported` (Home
    /// Assistant's statistics filled hours HomeIQ did not record). The numbers are the same
    /// whichever tier answers.
    pub tier: Tier,
    /// One series per entity.
    pub series: Vec<AggregateSeries>,
}

/// Mean, min, max, count and last value per interval for numeric entities.
#[utoipa::path(
    tag = "history",
    params(AggregateParams),
    responses(
        (status = 200, body = AggregateAnswer),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
        (status = 503, body = ErrorBody, description = "History storage is unreachable"),
    )
)]
#[get("/history/aggregate")]
pub(crate) async fn aggregate(
    request: HttpRequest,
    state: web::Data<HistoryApi>,
    Params(p): Params<AggregateParams>,
) -> Result<HttpResponse, ApiError> {
    // parsed with the rollups' limits, then held to the raw ones when no rollup tier serves
    let entity_ids = entity_list(p.entity_id.as_deref(), MAX_ROLLUP_ENTITIES)?;
    let (start, end) = range(
        state.rollups.max_days().max(state.max_history_days),
        p.start.as_deref(),
        p.end.as_deref(),
        Duration::hours(24),
    )?;
    let max_points = within("max_points", p.max_points, 500, MAX_POINTS)?;
    let span = u64::try_from((end - start).num_seconds())
        .unwrap_or(0)
        .max(1);
    let interval_secs = match p.interval.as_deref().filter(|i| !i.trim().is_empty()) {
        None => choose_interval(span, max_points),
        Some(text) => {
            let secs = parse_interval(text).ok_or_else(|| {
                ApiError::invalid(
                    "interval",
                    format!("interval must be seconds or a number with s, m, h or d, got `{text}`"),
                )
            })?;
            if span.div_ceil(secs) > MAX_POINTS {
                return Err(ApiError::invalid(
                    "interval",
                    format!(
                        "interval {secs} s makes more than {MAX_POINTS} buckets over the range"
                    ),
                ));
            }
            secs
        }
    };
    if !state.rollups.serves(interval_secs) {
        if entity_ids.len() > MAX_AGGREGATE_ENTITIES {
            return Err(ApiError::invalid(
                "entity_id",
                format!(
                    "at most {MAX_AGGREGATE_ENTITIES} entities per request when the interval is not a multiple of an hour (or of 5 minutes with the 5-minute tier), got {}",
                    entity_ids.len()
                ),
            ));
        }
        range(
            state.max_history_days,
            p.start.as_deref(),
            p.end.as_deref(),
            Duration::hours(24),
        )?;
    }
    let q = AggregateQuery {
        entity_ids,
        start,
        end,
        interval_secs,
    };
    let key = p.end.is_some().then(|| {
        format!(
            "aggregate|{}|{}|{}|{interval_secs}",
            q.entity_ids.join(","),
            start.timestamp_micros(),
            end.timestamp_micros()
        )
    });
    let body = answer(&state, key, Scope::Entities(&q.entity_ids), || async {
        let TieredAggregate { tier, series } = state.rollups.aggregate(&q, false).await?;
        render(&AggregateAnswer {
            start,
            end,
            interval_secs,
            tier,
            series,
        })
    })
    .await?;
    Ok(prepared_json_ok(&request, &body))
}

/// Parameters of `GET /api/v1/events/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsParams {
    /// Range start, RFC 3339 (default: `end` − 1 h).
    #[param(format = DateTime)]
    start: Option<String>,
    /// Range end, RFC 3339 (default: now).
    #[param(format = DateTime)]
    end: Option<String>,
    /// Bucket width, at least 60 s (default `1m`).
    interval: Option<String>,
}

/// Events per bucket by domain.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsAnswer {
    /// Range start.
    pub start: DateTime<Utc>,
    /// Range end.
    pub end: DateTime<Utc>,
    /// Bucket width, seconds.
    pub interval_secs: u64,
    /// Records in the whole range.
    pub total: u64,
    /// Buckets holding records, oldest first.
    pub buckets: Vec<StatsBucket>,
}

/// Recorded events per minute (or `interval`) over a range, by domain.
#[utoipa::path(
    tag = "history",
    params(StatsParams),
    responses(
        (status = 200, body = StatsAnswer),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
        (status = 503, body = ErrorBody, description = "History storage is unreachable"),
    )
)]
#[get("/events/stats")]
pub(crate) async fn event_stats(
    request: HttpRequest,
    state: web::Data<HistoryApi>,
    Params(p): Params<StatsParams>,
) -> Result<HttpResponse, ApiError> {
    let (start, end) = range(
        state.max_history_days,
        p.start.as_deref(),
        p.end.as_deref(),
        Duration::hours(1),
    )?;
    let interval_secs = match p.interval.as_deref().filter(|i| !i.trim().is_empty()) {
        None => 60,
        Some(text) => parse_interval(text).filter(|&s| s >= 60).ok_or_else(|| {
            ApiError::invalid(
                "interval",
                format!("interval must be at least 60 s (`1m`, `5m`, `1h`…), got `{text}`"),
            )
        })?,
    };
    let span = u64::try_from((end - start).num_seconds())
        .unwrap_or(0)
        .max(1);
    if span.div_ceil(interval_secs) > MAX_POINTS {
        return Err(ApiError::invalid(
            "interval",
            format!("more than {MAX_POINTS} buckets; use a wider interval or a shorter range"),
        ));
    }
    let key = p.end.is_some().then(|| {
        format!(
            "stats|{}|{}|{interval_secs}",
            start.timestamp_micros(),
            end.timestamp_micros()
        )
    });
    let body = answer(&state, key, Scope::Everything, || async {
        let buckets = state.history.event_stats(start, end, interval_secs).await?;
        render(&StatsAnswer {
            start,
            end,
            interval_secs,
            total: buckets.iter().map(|b| b.total).sum(),
            buckets,
        })
    })
    .await?;
    Ok(prepared_json_ok(&request, &body))
}

impl From<RollupError> for ApiError {
    fn from(e: RollupError) -> Self {
        match e {
            RollupError::History(h) => h.into(),
            RollupError::CatchingUp => ApiError::unavailable(e.to_string()),
            RollupError::Expired { .. } => ApiError::invalid("interval", e.to_string()),
            other => {
                tracing::error!(error = %other, "rollups read failed");
                ApiError::unavailable(format!("history query failed: {other}"))
            }
        }
    }
}

impl From<crate::store::history::HistoryError> for ApiError {
    fn from(e: crate::store::history::HistoryError) -> Self {
        match e {
            crate::store::history::HistoryError::Unavailable(m) => {
                tracing::warn!(error = %m, "history backend unreachable");
                ApiError::unavailable(format!(
                    "history is unavailable: {m}; live data and the registry keep working"
                ))
            }
            crate::store::history::HistoryError::Backend(m)
            | crate::store::history::HistoryError::TooLarge(m) => {
                tracing::error!(error = %m, "history query failed");
                ApiError::unavailable(format!("history query failed: {m}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units() {
        assert_eq!(parse_interval("90"), Some(90));
        assert_eq!(parse_interval("5m"), Some(300));
        assert_eq!(parse_interval("2h"), Some(7200));
        assert_eq!(parse_interval("1d"), Some(86_400));
        for bad in ["", "0", "5x", "m", "-5", "1.5h"] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
    }

    #[test]
    fn entity_lists_are_checked() {
        assert_eq!(
            entity_list(Some("light.b, light.a,light.b"), 5).ok(),
            Some(vec!["light.a".to_owned(), "light.b".to_owned()])
        );
        for bad in [
            None,
            Some(""),
            Some("nodot"),
            Some("Light.X"),
            Some("a.b;drop"),
        ] {
            assert!(entity_list(bad, 5).is_err(), "{bad:?}");
        }
        assert!(entity_list(Some("a.b,a.c"), 1).is_err());
    }

    #[test]
    fn times_accept_a_plus_decoded_as_space() {
        let t = parse_time("start", Some("2026-01-01T00:00:00 01:00"))
            .ok()
            .flatten();
        assert_eq!(
            t.map(|t| t.to_rfc3339()),
            Some("2025-12-31T23:00:00+00:00".into())
        );
        assert!(parse_time("start", Some("yesterday")).is_err());
        assert!(parse_time("end", Some("0174-09-24T02:16:09+23:20")).is_err());
        assert!(parse_time("end", Some("9999-01-01T00:00:00Z")).is_err());
    }
}
