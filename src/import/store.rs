//! SQLite rows of the import (in `homeiq.db`, migration `m20261207_000010_import`):
//! `import_runs` and `import_plan`.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, TransactionTrait,
};

use super::{ImportPhase, ImportRunStatus, ImportTrigger};

/// `import_runs`.
pub(crate) mod run {
    use sea_orm::entity::prelude::*;

    /// One import.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_runs")]
    pub(crate) struct Model {
        /// Sequence number.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// `first_start` or `manual`.
        pub trigger: String,
        /// `running`, `succeeded`, `failed` or `interrupted`.
        pub status: String,
        /// `planning`, `states`, `statistics` or `done`.
        pub phase: String,
        /// Unix ms.
        pub requested_at: i64,
        /// Unix ms.
        pub finished_at: Option<i64>,
        /// Why it failed or stopped.
        pub error: Option<String>,
        /// When it was planned (µs): nothing at or after it is imported.
        pub plan_at_us: i64,
        /// The oldest state the recorder holds (µs, an hour's precision); `None`: none.
        pub states_from_us: Option<i64>,
        /// ImportPosition: the next batch of the phase.
        pub batch: i64,
        /// ImportPosition: the next window's start inside the batch (µs); `None`: its beginning.
        pub window_us: Option<i64>,
        /// The counts ([`super::super::Progress`] as JSON).
        pub progress: String,
    }

    /// None.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `import_plan`.
pub(crate) mod plan {
    use sea_orm::entity::prelude::*;

    /// One entity (or statistic id) of a run's phase.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_plan")]
    pub(crate) struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The run.
        pub run_id: i64,
        /// `states` or `statistics`.
        pub phase: String,
        /// Order inside the phase.
        pub seq: i64,
        /// The entity.
        pub entity_id: String,
        /// Its past is imported before this instant (µs).
        pub before_us: i64,
    }

    /// None declared (the foreign key is in the migration).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Plan rows inserted per statement.
const INSERT_CHUNK: usize = 200;

/// The import's tables.
#[derive(Debug, Clone)]
pub(crate) struct ImportStore {
    db: DatabaseConnection,
}

impl ImportStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        ImportStore { db }
    }

    /// The newest run.
    pub(crate) async fn latest(&self) -> Result<Option<run::Model>, DbErr> {
        run::Entity::find()
            .order_by_desc(run::Column::Id)
            .one(&self.db)
            .await
    }

    /// Runs a stop cut short (`running` in the table at start) become `interrupted`.
    pub(crate) async fn interrupt_leftovers(&self) -> Result<u64, DbErr> {
        let r = run::Entity::update_many()
            .col_expr(
                run::Column::Status,
                sea_orm::sea_query::Expr::value(ImportRunStatus::Interrupted.as_str()),
            )
            .filter(run::Column::Status.eq(ImportRunStatus::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// A new run, planning.
    pub(crate) async fn create(
        &self,
        trigger: ImportTrigger,
        now_ms: i64,
        plan_at_us: i64,
    ) -> Result<run::Model, DbErr> {
        run::ActiveModel {
            trigger: Set(trigger.as_str().to_owned()),
            status: Set(ImportRunStatus::Running.as_str().to_owned()),
            phase: Set(ImportPhase::Planning.as_str().to_owned()),
            requested_at: Set(now_ms),
            finished_at: Set(None),
            error: Set(None),
            plan_at_us: Set(plan_at_us),
            states_from_us: Set(None),
            batch: Set(0),
            window_us: Set(None),
            progress: Set("{}".to_owned()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
    }

    /// Saves every column of `run`.
    pub(crate) async fn save(&self, run: &run::Model) -> Result<(), DbErr> {
        save_in(&self.db, run).await
    }

    /// Replaces the plan of `run`'s `phase` and saves `run` in one transaction.
    pub(crate) async fn put_plan(
        &self,
        run: &run::Model,
        phase: ImportPhase,
        rows: &[(String, i64)],
    ) -> Result<(), DbErr> {
        let tx = self.db.begin().await?;
        plan::Entity::delete_many()
            .filter(plan::Column::RunId.eq(run.id))
            .filter(plan::Column::Phase.eq(phase.as_str()))
            .exec(&tx)
            .await?;
        for (i, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
            let models =
                chunk
                    .iter()
                    .enumerate()
                    .map(|(j, (entity_id, before))| plan::ActiveModel {
                        run_id: Set(run.id),
                        phase: Set(phase.as_str().to_owned()),
                        seq: Set((i * INSERT_CHUNK + j) as i64),
                        entity_id: Set(entity_id.clone()),
                        before_us: Set(*before),
                        ..Default::default()
                    });
            plan::Entity::insert_many(models).exec(&tx).await?;
        }
        save_in(&tx, run).await?;
        tx.commit().await
    }

    /// The plan of `run`'s `phase`, in order.
    pub(crate) async fn plan(
        &self,
        run_id: i64,
        phase: ImportPhase,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        Ok(plan::Entity::find()
            .filter(plan::Column::RunId.eq(run_id))
            .filter(plan::Column::Phase.eq(phase.as_str()))
            .order_by_asc(plan::Column::Seq)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.entity_id, r.before_us))
            .collect())
    }

    /// Older runs' plans are not needed once a run is finished.
    pub(crate) async fn drop_plan(&self, run_id: i64) -> Result<(), DbErr> {
        plan::Entity::delete_many()
            .filter(plan::Column::RunId.eq(run_id))
            .exec(&self.db)
            .await
            .map(|_| ())
    }
}

async fn save_in(db: &impl ConnectionTrait, run: &run::Model) -> Result<(), DbErr> {
    let mut active = run.clone().into_active_model();
    for c in [
        run::Column::Status,
        run::Column::Phase,
        run::Column::FinishedAt,
        run::Column::Error,
        run::Column::PlanAtUs,
        run::Column::StatesFromUs,
        run::Column::Batch,
        run::Column::WindowUs,
        run::Column::Progress,
    ] {
        active.reset(c);
    }
    active.update(db).await.map(|_| ())
}
