//! Pattern analysis: `analysis_runs` (every run and every refused request: the audit and status
//! rows of `/api/v1/analysis/runs`) and `patterns` (what the last successful run learned).

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
                    .table(AnalysisRuns::Table)
                    .if_not_exists()
                    .col(big_integer(AnalysisRuns::Id).primary_key().auto_increment())
                    .col(string(AnalysisRuns::Trigger))
                    .col(string(AnalysisRuns::Outcome))
                    .col(big_integer(AnalysisRuns::RequestedAt))
                    .col(big_integer_null(AnalysisRuns::StartedAt))
                    .col(big_integer_null(AnalysisRuns::FinishedAt))
                    .col(big_integer_null(AnalysisRuns::DurationMs))
                    .col(big_integer(AnalysisRuns::ChangesAnalysed).default(0))
                    .col(big_integer(AnalysisRuns::Transitions).default(0))
                    .col(big_integer(AnalysisRuns::PatternsFound).default(0))
                    .col(big_integer_null(AnalysisRuns::WindowStart))
                    .col(big_integer_null(AnalysisRuns::WindowEnd))
                    .col(string_null(AnalysisRuns::TimeZone))
                    .col(text_null(AnalysisRuns::Error))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_analysis_runs_trigger_started")
                    .table(AnalysisRuns::Table)
                    .col(AnalysisRuns::Trigger)
                    .col(AnalysisRuns::StartedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Patterns::Table)
                    .if_not_exists()
                    .col(string(Patterns::Id).primary_key())
                    .col(string(Patterns::Kind))
                    .col(string(Patterns::DayType))
                    .col(double(Patterns::Confidence))
                    .col(big_integer(Patterns::FirstDetectedAt))
                    .col(big_integer(Patterns::RunId))
                    .col(text(Patterns::Body))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AnalysisRuns {
    Table,
    Id,
    Trigger,
    Outcome,
    RequestedAt,
    StartedAt,
    FinishedAt,
    DurationMs,
    ChangesAnalysed,
    Transitions,
    PatternsFound,
    WindowStart,
    WindowEnd,
    TimeZone,
    Error,
}

#[derive(DeriveIden)]
enum Patterns {
    Table,
    Id,
    Kind,
    DayType,
    Confidence,
    FirstDetectedAt,
    RunId,
    Body,
}
