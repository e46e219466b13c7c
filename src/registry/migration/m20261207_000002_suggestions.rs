//! Suggestions: `suggestions` (one row per suggestion: its status, its proposal as JSON and the
//! automation as deployed) and `suggestion_versions` (every change: who, when, the status and the
//! automation at that moment), which belong to their suggestion by a real foreign key.

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
                    .table(Suggestions::Table)
                    .if_not_exists()
                    .col(text(Suggestions::Id).primary_key())
                    .col(text(Suggestions::Source))
                    .col(text(Suggestions::Status))
                    .col(double(Suggestions::Score))
                    .col(text(Suggestions::Body))
                    .col(text_null(Suggestions::Deployed))
                    .col(big_integer(Suggestions::CreatedAt))
                    .col(big_integer(Suggestions::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SuggestionVersions::Table)
                    .if_not_exists()
                    .col(
                        big_integer(SuggestionVersions::Id)
                            .primary_key()
                            .auto_increment(),
                    )
                    .col(text(SuggestionVersions::SuggestionId))
                    .col(big_integer(SuggestionVersions::Version))
                    .col(big_integer(SuggestionVersions::At))
                    .col(text(SuggestionVersions::Actor))
                    .col(text(SuggestionVersions::Event))
                    .col(text(SuggestionVersions::Status))
                    .col(text(SuggestionVersions::Automation))
                    .col(text_null(SuggestionVersions::Note))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_suggestion_versions_suggestion")
                            .from(SuggestionVersions::Table, SuggestionVersions::SuggestionId)
                            .to(Suggestions::Table, Suggestions::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_suggestion_versions_suggestion")
                    .table(SuggestionVersions::Table)
                    .col(SuggestionVersions::SuggestionId)
                    .col(SuggestionVersions::Version)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Suggestions {
    Table,
    Id,
    Source,
    Status,
    Score,
    Body,
    Deployed,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SuggestionVersions {
    Table,
    Id,
    SuggestionId,
    Version,
    At,
    Actor,
    Event,
    Status,
    Automation,
    Note,
}
