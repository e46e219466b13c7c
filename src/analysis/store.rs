//! SQLite rows of the analysis (in `homeiq.db`, schema in migration `m20261207_000001_analysis`):
//! `analysis_runs`, one row per run and per refused request, and `patterns`, what the last
//! successful run learned (each pattern's JSON, with the columns the list is ordered by).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, DeriveActiveEnum, EntityTrait,
    EnumIter, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::patterns::Pattern;

/// What started a run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub(crate) enum Trigger {
    /// The nightly run at `analysis.schedule`.
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
    /// `POST /api/v1/analysis/runs`.
    #[sea_orm(string_value = "manual")]
    Manual,
}

/// How a run (or request) ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Under way.
    #[sea_orm(string_value = "running")]
    Running,
    /// Finished; its patterns replaced the previous ones.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Stopped by an error (`error` says which); the previous patterns stay.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// HomeIQ stopped during the run; the previous patterns stay.
    #[sea_orm(string_value = "interrupted")]
    Interrupted,
    /// A request refused: in the cooldown, or while another run was under way.
    #[sea_orm(string_value = "refused")]
    Refused,
}

/// `analysis_runs`.
pub(crate) mod run {
    use sea_orm::entity::prelude::*;

    /// One run or refused request.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "analysis_runs")]
    pub(crate) struct Model {
        /// Sequence number.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// What started it.
        pub trigger: super::Trigger,
        /// How it ended.
        pub outcome: super::Outcome,
        /// When it was asked for, Unix ms.
        pub requested_at: i64,
        /// When it started, Unix ms.
        pub started_at: Option<i64>,
        /// When it ended, Unix ms.
        pub finished_at: Option<i64>,
        /// How long it took, ms.
        pub duration_ms: Option<i64>,
        /// Stored changes read.
        pub changes_analysed: i64,
        /// Transitions among them.
        pub transitions: i64,
        /// Patterns found.
        pub patterns_found: i64,
        /// Analysed window start, Unix ms.
        pub window_start: Option<i64>,
        /// Analysed window end, Unix ms.
        pub window_end: Option<i64>,
        /// The home's time zone the run used.
        pub time_zone: Option<String>,
        /// Why it failed or was refused.
        pub error: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `patterns`.
pub(crate) mod pattern {
    use sea_orm::entity::prelude::*;

    /// One learned pattern.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "patterns")]
    pub(crate) struct Model {
        /// The pattern's stable id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `time_of_day` or `co_occurrence`.
        pub kind: String,
        /// `all`, `weekday` or `weekend`.
        pub day_type: String,
        /// Its confidence.
        pub confidence: f64,
        /// When a run first found it, Unix ms (kept while later runs find it again).
        pub first_detected_at: i64,
        /// The run that found it last.
        pub run_id: i64,
        /// The pattern as JSON.
        pub body: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A pattern with when HomeIQ first learned it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct StoredPattern {
    /// The pattern.
    #[serde(flatten)]
    pub pattern: Pattern,
    /// When an analysis first found it (kept while later ones find it again).
    pub first_detected_at: DateTime<Utc>,
    /// The run that found it last.
    pub run_id: i64,
}

/// What a finished run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RunCounts {
    /// Stored changes read.
    pub changes: u64,
    /// Transitions among them.
    pub transitions: u64,
    /// Patterns found.
    pub patterns: u64,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The analysis rows; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AnalysisStore {
    db: DatabaseConnection,
}

impl AnalysisStore {
    /// Rows in `db` (migrated).
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        AnalysisStore { db }
    }

    /// Marks runs left `running` by a stop or crash as `interrupted`; returns how many.
    pub(crate) async fn interrupt_leftovers(&self, now: DateTime<Utc>) -> Result<u64, DbErr> {
        let r = run::Entity::update_many()
            .col_expr(run::Column::Outcome, Expr::value(Outcome::Interrupted))
            .col_expr(run::Column::FinishedAt, Expr::value(ms(now)))
            .col_expr(
                run::Column::Error,
                Expr::value("HomeIQ stopped during the run"),
            )
            .filter(run::Column::Outcome.eq(Outcome::Running))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Records a refused request.
    pub(crate) async fn refuse(
        &self,
        trigger: Trigger,
        now: DateTime<Utc>,
        why: &str,
    ) -> Result<run::Model, DbErr> {
        let row = run::ActiveModel {
            trigger: Set(trigger),
            outcome: Set(Outcome::Refused),
            requested_at: Set(ms(now)),
            error: Set(Some(why.to_owned())),
            ..Default::default()
        };
        run::Entity::insert(row).exec_with_returning(&self.db).await
    }

    /// Records a run starting over `[start, end)` in `time_zone`.
    pub(crate) async fn start(
        &self,
        trigger: Trigger,
        now: DateTime<Utc>,
        window: (DateTime<Utc>, DateTime<Utc>),
        time_zone: &str,
    ) -> Result<run::Model, DbErr> {
        let row = run::ActiveModel {
            trigger: Set(trigger),
            outcome: Set(Outcome::Running),
            requested_at: Set(ms(now)),
            started_at: Set(Some(ms(now))),
            window_start: Set(Some(ms(window.0))),
            window_end: Set(Some(ms(window.1))),
            time_zone: Set(Some(time_zone.to_owned())),
            ..Default::default()
        };
        run::Entity::insert(row).exec_with_returning(&self.db).await
    }

    /// Records how run `id` ended.
    pub(crate) async fn finish(
        &self,
        id: i64,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        outcome: Outcome,
        counts: RunCounts,
        error: Option<String>,
    ) -> Result<(), DbErr> {
        let row = run::ActiveModel {
            id: Set(id),
            outcome: Set(outcome),
            finished_at: Set(Some(ms(now))),
            duration_ms: Set(Some((now - started).num_milliseconds().max(0))),
            changes_analysed: Set(i64_of(counts.changes)),
            transitions: Set(i64_of(counts.transitions)),
            patterns_found: Set(i64_of(counts.patterns)),
            error: Set(error),
            ..Default::default()
        };
        run::Entity::update(row).exec(&self.db).await.map(drop)
    }

    /// When the last requested run that really ran started.
    pub(crate) async fn last_manual_start(&self) -> Result<Option<DateTime<Utc>>, DbErr> {
        let row = run::Entity::find()
            .filter(run::Column::Trigger.eq(Trigger::Manual))
            .filter(run::Column::StartedAt.is_not_null())
            .order_by_desc(run::Column::StartedAt)
            .one(&self.db)
            .await?;
        Ok(row
            .and_then(|r| r.started_at)
            .and_then(DateTime::from_timestamp_millis))
    }

    /// Runs and requests, newest first: at most `limit` with ids below `before`.
    pub(crate) async fn runs(
        &self,
        limit: u64,
        before: Option<i64>,
    ) -> Result<Vec<run::Model>, DbErr> {
        let mut q = run::Entity::find().order_by_desc(run::Column::Id);
        if let Some(b) = before {
            q = q.filter(run::Column::Id.lt(b));
        }
        q.limit(limit).all(&self.db).await
    }

    /// Replaces the stored patterns with `patterns` found by run `run_id`, keeping when each
    /// was first detected; returns them as stored.
    pub(crate) async fn replace_patterns(
        &self,
        run_id: i64,
        patterns: Vec<Pattern>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredPattern>, DbErr> {
        let txn = self.db.begin().await?;
        let known: std::collections::HashMap<String, i64> = pattern::Entity::find()
            .select_only()
            .column(pattern::Column::Id)
            .column(pattern::Column::FirstDetectedAt)
            .into_tuple::<(String, i64)>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        pattern::Entity::delete_many().exec(&txn).await?;
        let mut stored = Vec::with_capacity(patterns.len());
        let mut rows = Vec::with_capacity(patterns.len());
        for p in patterns {
            let first = known.get(&p.id).copied().unwrap_or(ms(now));
            let body = serde_json::to_string(&p).map_err(|e| DbErr::Custom(e.to_string()))?;
            rows.push(pattern::ActiveModel {
                id: Set(p.id.clone()),
                kind: Set(p.kind.as_str().to_owned()),
                day_type: Set(p.day_type.as_str().to_owned()),
                confidence: Set(p.confidence),
                first_detected_at: Set(first),
                run_id: Set(run_id),
                body: Set(body),
            });
            stored.push(StoredPattern {
                first_detected_at: DateTime::from_timestamp_millis(first).unwrap_or(now),
                run_id,
                pattern: p,
            });
        }
        for chunk in rows.chunks(200) {
            pattern::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(stored)
    }

    /// The stored patterns (rows that no longer decode are skipped and logged).
    pub(crate) async fn patterns(&self) -> Result<Vec<StoredPattern>, DbErr> {
        let rows = pattern::Entity::find()
            .order_by_asc(pattern::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match serde_json::from_str::<Pattern>(&r.body) {
                Ok(pattern) => Some(StoredPattern {
                    pattern,
                    first_detected_at: DateTime::from_timestamp_millis(r.first_detected_at)
                        .unwrap_or_default(),
                    run_id: r.run_id,
                }),
                Err(e) => {
                    tracing::warn!(id = %r.id, error = %e, "a stored pattern does not decode; skipped");
                    None
                }
            })
            .collect())
    }
}
