//! SQLite rows of suggestions (in `homeiq.db`, migration `m20261207_000002_suggestions`):
//! `suggestions` and `suggestion_versions`.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait, sea_query::OnConflict,
};
use serde_json::Value;

use super::model::{Actor, Event, Proposal, Status};

/// `suggestions`.
pub(crate) mod suggestion {
    use sea_orm::entity::prelude::*;

    /// One suggestion.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "suggestions")]
    pub(crate) struct Model {
        /// Stable id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `pattern` or `synergy`.
        pub source: String,
        /// Where it is in its life.
        pub status: super::Status,
        /// Ranking score.
        pub score: f64,
        /// The [`super::Proposal`] as JSON.
        pub body: String,
        /// The automation as deployed (JSON), while it is in Home Assistant.
        pub deployed: Option<String>,
        /// Unix ms.
        pub created_at: i64,
        /// Unix ms.
        pub updated_at: i64,
    }

    /// Its versions.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `suggestion_versions`.
pub(crate) mod version {
    use sea_orm::entity::prelude::*;

    /// One recorded change.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "suggestion_versions")]
    pub(crate) struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The suggestion.
        pub suggestion_id: String,
        /// 1, 2, … per suggestion.
        pub version: i64,
        /// Unix ms.
        pub at: i64,
        /// Who.
        pub actor: super::Actor,
        /// What.
        pub event: super::Event,
        /// The status after it.
        pub status: super::Status,
        /// The automation then (JSON).
        pub automation: String,
        /// Details.
        pub note: Option<String>,
    }

    /// No relations declared (the foreign key is in the migration).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A suggestion as HomeIQ keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Stable id.
    pub id: String,
    /// Where it is in its life.
    pub status: Status,
    /// What it proposes.
    pub proposal: Proposal,
    /// The automation as deployed, while in Home Assistant.
    pub deployed: Option<Value>,
    /// First offered.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The latest version number (0: none recorded).
    pub version: i64,
}

impl Record {
    /// The automation shown: as deployed while in Home Assistant, else the proposal's.
    pub(crate) fn automation(&self) -> &Value {
        self.deployed.as_ref().unwrap_or(&self.proposal.automation)
    }
}

/// A change to record with a save.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// Who.
    pub actor: Actor,
    /// What.
    pub event: Event,
    /// Details.
    pub note: Option<String>,
    /// The automation to record (default: the record's).
    pub automation: Option<Value>,
}

impl Change {
    /// A change without details.
    pub(crate) fn new(actor: Actor, event: Event) -> Self {
        Change {
            actor,
            event,
            note: None,
            automation: None,
        }
    }

    /// With a note.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Custom(e.to_string())
}

/// The suggestion rows; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SuggestionStore {
    db: DatabaseConnection,
}

impl SuggestionStore {
    /// Rows in `db` (migrated).
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        SuggestionStore { db }
    }

    /// Every suggestion (rows that no longer decode are skipped and logged).
    pub(crate) async fn load(&self) -> Result<Vec<Record>, DbErr> {
        let rows = suggestion::Entity::find()
            .order_by_asc(suggestion::Column::Id)
            .all(&self.db)
            .await?;
        let versions = version::Entity::find()
            .order_by_asc(version::Column::Version)
            .all(&self.db)
            .await?;
        let mut latest = std::collections::HashMap::new();
        for v in versions {
            latest.insert(v.suggestion_id, v.version);
        }
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let proposal = match serde_json::from_str::<Proposal>(&r.body) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(id = %r.id, error = %e, "a stored suggestion does not decode; skipped");
                        return None;
                    }
                };
                Some(Record {
                    version: latest.get(&r.id).copied().unwrap_or(0),
                    status: r.status,
                    deployed: r.deployed.and_then(|d| serde_json::from_str(&d).ok()),
                    created_at: at(r.created_at),
                    updated_at: at(r.updated_at),
                    proposal,
                    id: r.id,
                })
            })
            .collect())
    }

    /// Writes `record` and, with `change`, its next version (`record.version` is that number).
    pub(crate) async fn save(&self, record: &Record, change: Option<&Change>) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        let row = suggestion::ActiveModel {
            id: Set(record.id.clone()),
            source: Set(record.proposal.source.as_str().to_owned()),
            status: Set(record.status),
            score: Set(record.proposal.score),
            body: Set(serde_json::to_string(&record.proposal).map_err(json_err)?),
            deployed: Set(record
                .deployed
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(json_err)?),
            created_at: Set(ms(record.created_at)),
            updated_at: Set(ms(record.updated_at)),
        };
        suggestion::Entity::insert(row)
            .on_conflict(
                OnConflict::column(suggestion::Column::Id)
                    .update_columns([
                        suggestion::Column::Source,
                        suggestion::Column::Status,
                        suggestion::Column::Score,
                        suggestion::Column::Body,
                        suggestion::Column::Deployed,
                        suggestion::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&txn)
            .await?;
        if let Some(change) = change {
            let automation = change.automation.as_ref().unwrap_or(record.automation());
            version::Entity::insert(version::ActiveModel {
                suggestion_id: Set(record.id.clone()),
                version: Set(record.version),
                at: Set(ms(record.updated_at)),
                actor: Set(change.actor),
                event: Set(change.event),
                status: Set(record.status),
                automation: Set(serde_json::to_string(automation).map_err(json_err)?),
                note: Set(change.note.clone()),
                ..Default::default()
            })
            .exec(&txn)
            .await?;
        }
        txn.commit().await
    }

    /// Deletes suggestions (and their versions).
    pub(crate) async fn delete(&self, ids: &[String]) -> Result<(), DbErr> {
        if ids.is_empty() {
            return Ok(());
        }
        suggestion::Entity::delete_many()
            .filter(suggestion::Column::Id.is_in(ids.iter().cloned()))
            .exec(&self.db)
            .await
            .map(drop)
    }

    /// The versions of suggestion `id`, oldest first.
    pub(crate) async fn versions(&self, id: &str) -> Result<Vec<version::Model>, DbErr> {
        version::Entity::find()
            .filter(version::Column::SuggestionId.eq(id))
            .order_by_asc(version::Column::Version)
            .all(&self.db)
            .await
    }
}
