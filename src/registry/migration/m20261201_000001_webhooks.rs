//! Webhooks: `webhook_targets` (targets, their rules, limits and counters) and
//! `webhook_deliveries` (the persistent outbox and the delivery log in one table).
//!
//! Unlike the registry mirror, these are HomeIQ's own rows: a delivery belongs to its target by a
//! real foreign key, and deleting a target deletes its outbox and log (`ON DELETE CASCADE`).
//! Times are Unix milliseconds, so "due" and "older than" are integer comparisons.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates both tables and the indexes the delivery worker and the log queries use.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookTargets::Table)
                    .if_not_exists()
                    .col(text(WebhookTargets::Id).primary_key())
                    .col(text(WebhookTargets::Name))
                    .col(text(WebhookTargets::Kind))
                    .col(text_null(WebhookTargets::WebhookId))
                    .col(text_null(WebhookTargets::Url))
                    .col(text(WebhookTargets::Secret))
                    .col(boolean(WebhookTargets::Enabled))
                    .col(json(WebhookTargets::Rules))
                    .col(integer_null(WebhookTargets::RateLimitPerMinute))
                    .col(integer_null(WebhookTargets::Concurrency))
                    .col(big_integer(WebhookTargets::SuccessCount).default(0))
                    .col(big_integer(WebhookTargets::FailureCount).default(0))
                    .col(big_integer_null(WebhookTargets::LastSuccessAt))
                    .col(big_integer_null(WebhookTargets::LastFailureAt))
                    .col(big_integer(WebhookTargets::CreatedAt))
                    .col(big_integer(WebhookTargets::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(text(WebhookDeliveries::Id).primary_key())
                    .col(text(WebhookDeliveries::TargetId))
                    .col(text(WebhookDeliveries::Event))
                    .col(integer_null(WebhookDeliveries::RuleIndex))
                    .col(text_null(WebhookDeliveries::EntityId))
                    .col(text(WebhookDeliveries::Body))
                    .col(text(WebhookDeliveries::Status))
                    .col(integer(WebhookDeliveries::Attempts).default(0))
                    .col(big_integer(WebhookDeliveries::CreatedAt))
                    .col(big_integer_null(WebhookDeliveries::EventTime))
                    .col(big_integer(WebhookDeliveries::NextAttemptAt))
                    .col(big_integer_null(WebhookDeliveries::FirstAttemptAt))
                    .col(big_integer_null(WebhookDeliveries::LastAttemptAt))
                    .col(big_integer_null(WebhookDeliveries::FinishedAt))
                    .col(big_integer_null(WebhookDeliveries::LatencyMs))
                    .col(integer_null(WebhookDeliveries::ResponseCode))
                    .col(text_null(WebhookDeliveries::LastError))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_target")
                            .from(WebhookDeliveries::Table, WebhookDeliveries::TargetId)
                            .to(WebhookTargets::Table, WebhookTargets::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_target")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::TargetId)
                    .col(WebhookDeliveries::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookTargets {
    Table,
    Id,
    Name,
    Kind,
    WebhookId,
    Url,
    Secret,
    Enabled,
    Rules,
    RateLimitPerMinute,
    Concurrency,
    SuccessCount,
    FailureCount,
    LastSuccessAt,
    LastFailureAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    TargetId,
    Event,
    RuleIndex,
    EntityId,
    Body,
    Status,
    Attempts,
    CreatedAt,
    EventTime,
    NextAttemptAt,
    FirstAttemptAt,
    LastAttemptAt,
    FinishedAt,
    LatencyMs,
    ResponseCode,
    LastError,
}
