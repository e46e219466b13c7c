//! `GET /api/v1/storage`: the disk, HomeIQ's stores, growth, the tiers kept and for how long, and
//! the last retention run.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{StorageGuard, StorageGuardStatus};
use crate::retention::{Retention, RetentionStatus};
use crate::store::sink::StorageBackend;

/// What the storage route reads.
#[derive(Debug, Clone)]
pub(crate) struct StorageApi {
    /// Where history goes.
    pub backend: StorageBackend,
    /// The storage guard.
    pub guard: StorageGuard,
    /// The raw retention.
    pub retention: Retention,
}

/// A tier of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Tier {
    /// Raw points, as recorded.
    Raw,
}

/// How long a tier is kept.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct TierView {
    /// The tier.
    pub tier: Tier,
    /// The setting that keeps it.
    pub setting: &'static str,
    /// Days configured (`null`: forever).
    pub days: Option<u32>,
    /// Days applied now (shorter while the storage guard shortened raw retention).
    pub days_in_effect: Option<u32>,
}

/// The answer of `GET /api/v1/storage`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct StorageView {
    /// Where history goes.
    pub backend: StorageBackend,
    /// The tiers kept and for how long.
    pub tiers: Vec<TierView>,
    /// The disk, HomeIQ's stores, growth and days until full.
    pub guard: StorageGuardStatus,
    /// The raw retention: settings in effect, last run, next run.
    pub retention: RetentionStatus,
}

impl StorageApi {
    /// The view.
    pub(crate) fn view(&self) -> StorageView {
        let retention = self.retention.status();
        StorageView {
            backend: self.backend,
            tiers: vec![TierView {
                tier: Tier::Raw,
                setting: "retention.raw_days",
                days: retention.raw_days,
                days_in_effect: retention.raw_days_in_effect,
            }],
            guard: self.guard.status(),
            retention,
        }
    }
}

/// The storage routes (under `/api/v1`).
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(storage);
}

/// The data directory's disk (usage, HomeIQ's stores, growth per day, days until full, the
/// guard's level), the tiers of history kept and for how long, and the last retention run.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, body = StorageView))
)]
#[get("/storage")]
pub(crate) async fn storage(state: web::Data<StorageApi>) -> HttpResponse {
    HttpResponse::Ok().json(state.view())
}
