//! Webhook outbox cap (`webhooks.max_pending_per_target`): a target counts the pending deliveries
//! dropped because its outbox was full (`webhook_targets.dropped_count`, kept like its other
//! counters), and an index on (target, status, creation) lets the cap count and drop a target's
//! waiting rows without reading its delivery log.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `dropped_count` and the index.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookTargets::Table)
                    .add_column(big_integer(WebhookTargets::DroppedCount).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_target_status")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::TargetId)
                    .col(WebhookDeliveries::Status)
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
    DroppedCount,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    TargetId,
    Status,
    CreatedAt,
}
