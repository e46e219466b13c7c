//! `GET /api/v1/storage`: the disk, HomeIQ's stores, growth, the tiers kept and for how long, and
//! the last retention run.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{StorageGuard, StorageGuardStatus};
use crate::config::RetentionSettings;
use crate::retention::{Retention, RetentionStatus};
use crate::store::history::Tier;
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
    /// How long each tier is kept (the rollups' tiers read theirs from here).
    pub tier_settings: RetentionSettings,
}

/// How long a tier is kept.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct TierView {
    /// The tier.
    pub tier: Tier,
    /// The setting that keeps it.
    pub setting: &'static str,
    /// Days configured (`null`: forever; the `imported` tier is kept as long as HomeIQ runs).
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
            tiers: self.tiers(&retention),
            guard: self.guard.status(),
            retention,
        }
    }
}

impl StorageApi {
    /// Every tier, finest first: raw (its days as the guard applies them), the rollups' 5-minute,
    /// hourly and daily rows, and the hours imported from Home Assistant's statistics.
    fn tiers(&self, retention: &RetentionStatus) -> Vec<TierView> {
        let r = &self.tier_settings;
        let rollup = |tier, setting, days: u32| TierView {
            tier,
            setting,
            days: Some(days),
            days_in_effect: Some(days),
        };
        vec![
            TierView {
                tier: Tier::Raw,
                setting: "retention.raw_days",
                days: retention.raw_days,
                days_in_effect: retention.raw_days_in_effect,
            },
            rollup(
                Tier::FiveMinute,
                "retention.five_minute_days",
                r.five_minute_days,
            ),
            rollup(Tier::Hour, "retention.hourly_days", r.hourly_days),
            rollup(Tier::Day, "retention.daily_days", r.daily_days),
            TierView {
                tier: Tier::Imported,
                setting: "import.on_first_start",
                days: None,
                days_in_effect: None,
            },
        ]
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
