//! Importing Home Assistant's past (`crate::import`): `import_runs` (each import: trigger, status,
//! phase, the resumable position and its counts) and `import_plan` (per run and phase, the
//! entities or statistic ids in order with the instant before which their past is imported, so a
//! resumed run imports exactly what the interrupted one planned).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates both tables.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportRuns::Table)
                    .if_not_exists()
                    .col(big_integer(ImportRuns::Id).primary_key().auto_increment())
                    .col(string(ImportRuns::Trigger))
                    .col(string(ImportRuns::Status))
                    .col(string(ImportRuns::Phase))
                    .col(big_integer(ImportRuns::RequestedAt))
                    .col(big_integer_null(ImportRuns::FinishedAt))
                    .col(text_null(ImportRuns::Error))
                    .col(big_integer(ImportRuns::PlanAtUs))
                    .col(big_integer_null(ImportRuns::StatesFromUs))
                    .col(big_integer(ImportRuns::Batch).default(0))
                    .col(big_integer_null(ImportRuns::WindowUs))
                    .col(text(ImportRuns::Progress))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ImportPlan::Table)
                    .if_not_exists()
                    .col(big_integer(ImportPlan::Id).primary_key().auto_increment())
                    .col(big_integer(ImportPlan::RunId))
                    .col(string(ImportPlan::Phase))
                    .col(big_integer(ImportPlan::Seq))
                    .col(text(ImportPlan::EntityId))
                    .col(big_integer(ImportPlan::BeforeUs))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_import_plan_run")
                            .from(ImportPlan::Table, ImportPlan::RunId)
                            .to(ImportRuns::Table, ImportRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_import_plan_run_phase_seq")
                    .table(ImportPlan::Table)
                    .col(ImportPlan::RunId)
                    .col(ImportPlan::Phase)
                    .col(ImportPlan::Seq)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ImportRuns {
    Table,
    Id,
    Trigger,
    Status,
    Phase,
    RequestedAt,
    FinishedAt,
    Error,
    PlanAtUs,
    StatesFromUs,
    Batch,
    WindowUs,
    Progress,
}

#[derive(DeriveIden)]
enum ImportPlan {
    Table,
    Id,
    RunId,
    Phase,
    Seq,
    EntityId,
    BeforeUs,
}
