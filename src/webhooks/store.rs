//! SQLite rows of webhooks (in `homeiq.db`, schema in migrations `m20261201_000001_webhooks` and
//! `m20261202_000001_webhook_outbox_cap`): `webhook_targets` and `webhook_deliveries`, the outbox
//! and delivery log in one table.
//!
//! A target's outbox is bounded: writing a delivery when `max_pending_per_target` are already
//! waiting drops the oldest pending ones in the same transaction and adds them to the target's
//! `dropped_count`.
//!
//! A delivery row is written before anything is sent (status `pending`), claimed by the worker
//! (`in_flight`), and ends `delivered` or `failed`; a retry puts it back to `pending` with a later
//! `next_attempt_at`. Rows left `in_flight` by a crash are put back to `pending` at start
//! ([`WebhookStore::reset_in_flight`]): at-least-once, with the same delivery id.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, DeriveActiveEnum, EntityTrait, EnumIter,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a target delivers to (`webhook_targets.kind`). The stored text and the API's name are
/// the same word (`ha`, `http`).
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
#[serde(rename_all = "lowercase")]
pub(crate) enum TargetKind {
    /// A Home Assistant webhook trigger (`/api/webhook/<webhook_id>` of Core).
    #[sea_orm(string_value = "ha")]
    Ha,
    /// Any HTTP(S) URL.
    #[sea_orm(string_value = "http")]
    Http,
}

/// Where a delivery stands (`webhook_deliveries.status`). The stored text and the API's name
/// are the same word.
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
pub(crate) enum DeliveryStatus {
    /// Waiting for its next attempt.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// An attempt is under way.
    #[sea_orm(string_value = "in_flight")]
    InFlight,
    /// The receiver answered 2xx.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Given up: a non-retryable answer, too many attempts or too old.
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// `webhook_targets`.
pub(crate) mod target {
    use sea_orm::entity::prelude::*;

    /// One target.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_targets")]
    pub(crate) struct Model {
        /// Random id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Name given by the user.
        pub name: String,
        /// What it delivers to.
        pub kind: super::TargetKind,
        /// Home Assistant webhook id (`ha`).
        pub webhook_id: Option<String>,
        /// Receiver URL (`http`).
        pub url: Option<String>,
        /// HMAC secret.
        pub secret: String,
        /// Whether rules are evaluated.
        pub enabled: bool,
        /// The rules (JSON array).
        pub rules: Json,
        /// Own rate limit, requests per minute.
        pub rate_limit_per_minute: Option<i32>,
        /// Own concurrency.
        pub concurrency: Option<i32>,
        /// Deliveries that succeeded.
        pub success_count: i64,
        /// Deliveries given up.
        pub failure_count: i64,
        /// Pending deliveries dropped because the target's outbox was full.
        pub dropped_count: i64,
        /// Last success, Unix ms.
        pub last_success_at: Option<i64>,
        /// Last give-up, Unix ms.
        pub last_failure_at: Option<i64>,
        /// Creation, Unix ms.
        pub created_at: i64,
        /// Last edit, Unix ms (also the rule engine's version of the target).
        pub updated_at: i64,
    }

    /// Deliveries reference targets; nothing is navigated from here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhook_deliveries`.
pub(crate) mod delivery {
    use sea_orm::entity::prelude::*;

    /// One delivery: outbox entry while pending, log entry once finished.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub(crate) struct Model {
        /// Delivery id, stable across retries (sent as `X-HomeIQ-Delivery`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The target (foreign key, cascading delete).
        pub target_id: String,
        /// Event type (`state_changed`, `test`).
        pub event: String,
        /// Index of the rule that fired.
        pub rule_index: Option<i32>,
        /// The entity.
        pub entity_id: Option<String>,
        /// The exact body sent and signed.
        pub body: String,
        /// Where it stands.
        pub status: super::DeliveryStatus,
        /// Attempts made.
        pub attempts: i32,
        /// When the row was written, Unix ms.
        pub created_at: i64,
        /// When Home Assistant fired the event, Unix ms.
        pub event_time: Option<i64>,
        /// Earliest next attempt, Unix ms.
        pub next_attempt_at: i64,
        /// Start of the first attempt, Unix ms.
        pub first_attempt_at: Option<i64>,
        /// Start of the last attempt, Unix ms.
        pub last_attempt_at: Option<i64>,
        /// When it was delivered or given up, Unix ms.
        pub finished_at: Option<i64>,
        /// Duration of the last attempt, ms.
        pub latency_ms: Option<i64>,
        /// HTTP status of the last answer.
        pub response_code: Option<i32>,
        /// Why the last attempt failed.
        pub last_error: Option<String>,
    }

    /// See `webhook_targets`.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The result of one attempt, to record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptRecord {
    /// New status: `Pending` (retry), `Delivered` or `Failed`.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// Next attempt (retries), Unix ms.
    pub next_attempt_at: i64,
    /// Start of this attempt, Unix ms.
    pub started_at: i64,
    /// Duration, ms.
    pub latency_ms: Option<i64>,
    /// HTTP status.
    pub response_code: Option<i32>,
    /// Error text.
    pub error: Option<String>,
}

/// Current Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Webhook rows in the metadata database; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WebhookStore {
    db: DatabaseConnection,
}

impl WebhookStore {
    /// The store over `homeiq.db`'s pool (migrations already applied).
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        WebhookStore { db }
    }

    /// Every target, oldest first.
    pub(crate) async fn list_targets(&self) -> Result<Vec<target::Model>, DbErr> {
        target::Entity::find()
            .order_by_asc(target::Column::CreatedAt)
            .order_by_asc(target::Column::Id)
            .all(&self.db)
            .await
    }

    /// One target.
    pub(crate) async fn get_target(&self, id: &str) -> Result<Option<target::Model>, DbErr> {
        target::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await
    }

    /// Inserts a new target.
    pub(crate) async fn insert_target(&self, model: target::Model) -> Result<(), DbErr> {
        target::Entity::insert(target::ActiveModel::from(model))
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Replaces a target's configuration (counters and creation time stay); false if missing.
    pub(crate) async fn update_target(&self, model: target::Model) -> Result<bool, DbErr> {
        let result = target::Entity::update_many()
            .col_expr(target::Column::Name, Expr::value(model.name))
            .col_expr(target::Column::Kind, Expr::value(model.kind))
            .col_expr(target::Column::WebhookId, Expr::value(model.webhook_id))
            .col_expr(target::Column::Url, Expr::value(model.url))
            .col_expr(target::Column::Secret, Expr::value(model.secret))
            .col_expr(target::Column::Enabled, Expr::value(model.enabled))
            .col_expr(target::Column::Rules, Expr::value(model.rules))
            .col_expr(
                target::Column::RateLimitPerMinute,
                Expr::value(model.rate_limit_per_minute),
            )
            .col_expr(target::Column::Concurrency, Expr::value(model.concurrency))
            .col_expr(target::Column::UpdatedAt, Expr::value(model.updated_at))
            .filter(target::Column::Id.eq(model.id))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Deletes a target and (by cascade) its deliveries; false if missing.
    pub(crate) async fn delete_target(&self, id: &str) -> Result<bool, DbErr> {
        let result = target::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Writes a delivery to the outbox; if its target then has more than `max_pending` deliveries
    /// waiting (pending or in flight), drops the oldest pending ones and counts them on the target,
    /// in the same transaction. Returns how many were dropped.
    pub(crate) async fn insert_delivery(
        &self,
        model: delivery::Model,
        max_pending: u64,
    ) -> Result<u64, DbErr> {
        let target_id = model.target_id.clone();
        let tx = self.db.begin().await?;
        delivery::Entity::insert(delivery::ActiveModel::from(model))
            .exec_without_returning(&tx)
            .await?;
        let waiting = delivery::Entity::find()
            .filter(delivery::Column::TargetId.eq(&target_id))
            .filter(
                delivery::Column::Status.is_in([DeliveryStatus::Pending, DeliveryStatus::InFlight]),
            )
            .count(&tx)
            .await?;
        let mut dropped = 0;
        if waiting > max_pending {
            let oldest = delivery::Entity::find()
                .select_only()
                .column(delivery::Column::Id)
                .filter(delivery::Column::TargetId.eq(&target_id))
                .filter(delivery::Column::Status.eq(DeliveryStatus::Pending))
                .order_by_asc(delivery::Column::CreatedAt)
                .order_by_asc(delivery::Column::Id)
                .limit(waiting - max_pending)
                .into_query();
            dropped = delivery::Entity::delete_many()
                .filter(delivery::Column::Id.in_subquery(oldest))
                .exec(&tx)
                .await?
                .rows_affected;
            let n = i64::try_from(dropped).unwrap_or(i64::MAX);
            target::Entity::update_many()
                .col_expr(
                    target::Column::DroppedCount,
                    Expr::col(target::Column::DroppedCount).add(n),
                )
                .filter(target::Column::Id.eq(&target_id))
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(dropped)
    }

    /// Pending deliveries due at `now`, oldest due first, skipping `exclude`d targets.
    pub(crate) async fn due(
        &self,
        now: i64,
        exclude: &[String],
        limit: u64,
    ) -> Result<Vec<delivery::Model>, DbErr> {
        let mut q = delivery::Entity::find()
            .filter(delivery::Column::Status.eq(DeliveryStatus::Pending))
            .filter(delivery::Column::NextAttemptAt.lte(now));
        if !exclude.is_empty() {
            q = q.filter(delivery::Column::TargetId.is_not_in(exclude.iter().cloned()));
        }
        q.order_by_asc(delivery::Column::NextAttemptAt)
            .order_by_asc(delivery::Column::CreatedAt)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// The earliest `next_attempt_at` of a pending delivery not of an `exclude`d target.
    pub(crate) async fn next_due_at(&self, exclude: &[String]) -> Result<Option<i64>, DbErr> {
        let mut q = delivery::Entity::find()
            .filter(delivery::Column::Status.eq(DeliveryStatus::Pending))
            .select_only()
            .column_as(delivery::Column::NextAttemptAt.min(), "next");
        if !exclude.is_empty() {
            q = q.filter(delivery::Column::TargetId.is_not_in(exclude.iter().cloned()));
        }
        q.into_tuple::<Option<i64>>()
            .one(&self.db)
            .await
            .map(Option::flatten)
    }

    /// Marks a pending delivery in flight; false if someone else changed it meanwhile.
    pub(crate) async fn claim(&self, id: &str, now: i64) -> Result<bool, DbErr> {
        let result = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::Status,
                Expr::value(DeliveryStatus::InFlight),
            )
            .col_expr(delivery::Column::LastAttemptAt, Expr::value(now))
            .filter(delivery::Column::Id.eq(id))
            .filter(delivery::Column::Status.eq(DeliveryStatus::Pending))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Puts deliveries a crash left in flight back to pending; returns how many.
    pub(crate) async fn reset_in_flight(&self) -> Result<u64, DbErr> {
        let result = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::Status,
                Expr::value(DeliveryStatus::Pending),
            )
            .filter(delivery::Column::Status.eq(DeliveryStatus::InFlight))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Records an attempt's outcome and, when the delivery finished, the target's counters, in
    /// one transaction.
    pub(crate) async fn record(
        &self,
        id: &str,
        target_id: &str,
        record: &AttemptRecord,
    ) -> Result<(), DbErr> {
        let finished = record.status != DeliveryStatus::Pending;
        let now = now_ms();
        let tx = self.db.begin().await?;
        let mut update = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(record.status))
            .col_expr(delivery::Column::Attempts, Expr::value(record.attempts))
            .col_expr(
                delivery::Column::NextAttemptAt,
                Expr::value(record.next_attempt_at),
            )
            .col_expr(
                delivery::Column::LastAttemptAt,
                Expr::value(record.started_at),
            )
            .col_expr(delivery::Column::LatencyMs, Expr::value(record.latency_ms))
            .col_expr(
                delivery::Column::ResponseCode,
                Expr::value(record.response_code),
            )
            .col_expr(
                delivery::Column::LastError,
                Expr::value(record.error.clone()),
            )
            .col_expr(
                delivery::Column::FirstAttemptAt,
                Expr::cust_with_values("COALESCE(first_attempt_at, ?)", [record.started_at]),
            );
        if finished {
            update = update.col_expr(delivery::Column::FinishedAt, Expr::value(now));
        }
        let result = update.filter(delivery::Column::Id.eq(id)).exec(&tx).await?;
        if finished && result.rows_affected == 1 {
            let (count, at) = if record.status == DeliveryStatus::Delivered {
                (target::Column::SuccessCount, target::Column::LastSuccessAt)
            } else {
                (target::Column::FailureCount, target::Column::LastFailureAt)
            };
            target::Entity::update_many()
                .col_expr(count, Expr::col(count).add(1))
                .col_expr(at, Expr::value(now))
                .filter(target::Column::Id.eq(target_id))
                .exec(&tx)
                .await?;
        }
        tx.commit().await
    }

    /// A target's deliveries, newest first, optionally of one status; with the total.
    pub(crate) async fn list_deliveries(
        &self,
        target_id: &str,
        status: Option<DeliveryStatus>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<delivery::Model>), DbErr> {
        let mut q = delivery::Entity::find().filter(delivery::Column::TargetId.eq(target_id));
        if let Some(s) = status {
            q = q.filter(delivery::Column::Status.eq(s));
        }
        let total = q.clone().count(&self.db).await?;
        let rows = q
            .order_by_desc(delivery::Column::CreatedAt)
            .order_by_desc(delivery::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok((total, rows))
    }

    /// Deletes finished deliveries that finished before `before` (Unix ms); returns how many.
    pub(crate) async fn purge_finished(&self, before: i64) -> Result<u64, DbErr> {
        let result = delivery::Entity::delete_many()
            .filter(
                delivery::Column::Status.is_in([DeliveryStatus::Delivered, DeliveryStatus::Failed]),
            )
            .filter(delivery::Column::FinishedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Deliveries per status (for health and metrics).
    pub(crate) async fn status_counts(&self) -> Result<Vec<(DeliveryStatus, i64)>, DbErr> {
        delivery::Entity::find()
            .select_only()
            .column(delivery::Column::Status)
            .column_as(delivery::Column::Id.count(), "n")
            .group_by(delivery::Column::Status)
            .into_tuple::<(DeliveryStatus, i64)>()
            .all(&self.db)
            .await
    }
}

/// Rows for the webhook unit tests.
#[cfg(test)]
pub(crate) mod test_rows {
    use super::{DeliveryStatus, TargetKind, delivery, target};

    /// An enabled `http` target named `id` without rules.
    pub(crate) fn target_row(id: &str) -> target::Model {
        target::Model {
            id: id.into(),
            name: id.into(),
            kind: TargetKind::Http,
            webhook_id: None,
            url: Some("http://127.0.0.1:1/".into()),
            secret: "0123456789abcdef".into(),
            enabled: true,
            rules: serde_json::json!([]),
            rate_limit_per_minute: None,
            concurrency: None,
            success_count: 0,
            failure_count: 0,
            dropped_count: 0,
            last_success_at: None,
            last_failure_at: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// A pending `test` delivery of `target`, written and due at `at`.
    pub(crate) fn pending_row(id: &str, target: &str, at: i64) -> delivery::Model {
        delivery::Model {
            id: id.into(),
            target_id: target.into(),
            event: "test".into(),
            rule_index: None,
            entity_id: None,
            body: "{}".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            created_at: at,
            event_time: None,
            next_attempt_at: at,
            first_attempt_at: None,
            last_attempt_at: None,
            finished_at: None,
            latency_ms: None,
            response_code: None,
            last_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_rows::{pending_row as delivery_row, target_row};
    use super::*;
    use crate::registry::RegistryStore;

    #[tokio::test]
    async fn a_full_outbox_drops_its_oldest_pending_and_counts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::config::METADATA_DB_FILE);
        let registry = RegistryStore::open(&path).await.expect("open");
        let store = WebhookStore::new(registry.connection().clone());
        store.insert_target(target_row("a")).await.expect("insert");
        store.insert_target(target_row("b")).await.expect("insert");
        let mut dropped = 0;
        for i in 1..=5 {
            dropped += store
                .insert_delivery(delivery_row(&format!("d{i}"), "a", i), 3)
                .await
                .expect("insert");
        }
        // another target's outbox is its own
        let other = store
            .insert_delivery(delivery_row("b1", "b", 1), 3)
            .await
            .expect("insert");
        assert_eq!((dropped, other), (2, 0));
        let ids = |rows: Vec<delivery::Model>| {
            let mut ids: Vec<String> = rows.into_iter().map(|d| d.id).collect();
            ids.sort();
            ids
        };
        let (_, rows) = store.list_deliveries("a", None, 0, 10).await.expect("list");
        assert_eq!(ids(rows), ["d3", "d4", "d5"], "the oldest were dropped");
        // a delivery being attempted counts as waiting but is never dropped
        assert!(store.claim("d3", 10).await.expect("claim"));
        let n = store
            .insert_delivery(delivery_row("d6", "a", 6), 3)
            .await
            .expect("insert");
        assert_eq!(n, 1);
        let (_, rows) = store.list_deliveries("a", None, 0, 10).await.expect("list");
        assert_eq!(ids(rows), ["d3", "d5", "d6"]);
        let a = store.get_target("a").await.expect("get").expect("row");
        assert_eq!(a.dropped_count, 3);
        // kept like the other counters: it survives closing and reopening the database
        drop(store);
        registry.close().await.expect("close");
        let registry = RegistryStore::open(&path).await.expect("reopen");
        let store = WebhookStore::new(registry.connection().clone());
        let a = store.get_target("a").await.expect("get").expect("row");
        assert_eq!(a.dropped_count, 3);
        let b = store.get_target("b").await.expect("get").expect("row");
        assert_eq!(b.dropped_count, 0);
    }

    #[tokio::test]
    async fn outbox_claim_reset_record_and_cascade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = RegistryStore::open(&dir.path().join(crate::config::METADATA_DB_FILE))
            .await
            .expect("open");
        let store = WebhookStore::new(registry.connection().clone());
        store.insert_target(target_row("a")).await.expect("insert");
        store.insert_target(target_row("b")).await.expect("insert");
        store
            .insert_delivery(delivery_row("d1", "a", 10), 100)
            .await
            .expect("insert");
        store
            .insert_delivery(delivery_row("d2", "b", 20), 100)
            .await
            .expect("insert");
        store
            .insert_delivery(delivery_row("d3", "a", 99), 100)
            .await
            .expect("insert");
        // a delivery of an unknown target is refused by the foreign key
        assert!(
            store
                .insert_delivery(delivery_row("dx", "zz", 1), 100)
                .await
                .is_err()
        );

        let due: Vec<String> = store
            .due(50, &[], 10)
            .await
            .expect("due")
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(due, ["d1", "d2"]);
        let due_b = store.due(50, &["a".into()], 10).await.expect("due");
        assert_eq!(due_b.len(), 1);
        assert_eq!(store.next_due_at(&[]).await.expect("next"), Some(10));
        assert!(store.claim("d1", 50).await.expect("claim"));
        assert!(!store.claim("d1", 50).await.expect("claim twice"));
        assert_eq!(
            store.next_due_at(&["b".into()]).await.expect("next"),
            Some(99)
        );
        // a crash leaves it in flight; the next start puts it back
        assert_eq!(store.reset_in_flight().await.expect("reset"), 1);
        assert!(store.claim("d1", 60).await.expect("claim"));
        store
            .record(
                "d1",
                "a",
                &AttemptRecord {
                    status: DeliveryStatus::Delivered,
                    attempts: 1,
                    next_attempt_at: 60,
                    started_at: 60,
                    latency_ms: Some(3),
                    response_code: Some(200),
                    error: None,
                },
            )
            .await
            .expect("record");
        let a = store.get_target("a").await.expect("get").expect("row");
        assert_eq!((a.success_count, a.failure_count), (1, 0));
        let (total, rows) = store.list_deliveries("a", None, 0, 10).await.expect("list");
        assert_eq!(total, 2);
        assert_eq!(rows[1].first_attempt_at, Some(60));
        assert_eq!(rows[1].status, DeliveryStatus::Delivered);
        assert_eq!(store.purge_finished(i64::MAX).await.expect("purge"), 1);
        // deleting a target deletes its deliveries
        assert!(store.delete_target("a").await.expect("delete"));
        assert_eq!(
            store
                .list_deliveries("a", None, 0, 10)
                .await
                .expect("list")
                .0,
            0
        );
        let counts = store.status_counts().await.expect("counts");
        assert_eq!(counts, vec![(DeliveryStatus::Pending, 1)]);
    }

    /// Rows written as text by earlier versions read back as the enums, and the enums write the
    /// very same text: existing databases need no migration.
    #[tokio::test]
    async fn enums_read_and_write_the_stored_text_unchanged() {
        use sea_orm::{ActiveEnum, ConnectionTrait, DbBackend, Iterable, Statement};
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = RegistryStore::open(&dir.path().join(crate::config::METADATA_DB_FILE))
            .await
            .expect("open");
        let db = registry.connection().clone();
        // what the previous version wrote (strings compared with literals)
        let target_sql = |id: &str, kind: &str| {
            format!(
                "INSERT INTO webhook_targets (id, name, kind, webhook_id, url, secret, enabled, \
                 rules, success_count, failure_count, dropped_count, created_at, updated_at) \
                 VALUES ('{id}', 'n', '{kind}', 'hook', 'http://127.0.0.1:1/', \
                 '0123456789abcdef', 1, '[]', 0, 0, 0, 1, 1)"
            )
        };
        db.execute_unprepared(&target_sql("h", "ha"))
            .await
            .expect("ha");
        db.execute_unprepared(&target_sql("w", "http"))
            .await
            .expect("http");
        for (i, status) in ["pending", "in_flight", "delivered", "failed"]
            .iter()
            .enumerate()
        {
            db.execute_unprepared(&format!(
                "INSERT INTO webhook_deliveries (id, target_id, event, body, status, attempts, \
                 created_at, next_attempt_at) VALUES ('d{i}', 'w', 'test', '{{}}', '{status}', 0, \
                 {i}, {i})"
            ))
            .await
            .expect("delivery");
        }
        let store = WebhookStore::new(db.clone());
        let kinds: Vec<TargetKind> = store
            .list_targets()
            .await
            .expect("targets")
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(kinds, [TargetKind::Ha, TargetKind::Http]);
        let (_, rows) = store.list_deliveries("w", None, 0, 10).await.expect("list");
        let statuses: Vec<DeliveryStatus> = rows.into_iter().rev().map(|d| d.status).collect();
        assert_eq!(statuses, DeliveryStatus::iter().collect::<Vec<_>>());
        let (n, _) = store
            .list_deliveries("w", Some(DeliveryStatus::InFlight), 0, 10)
            .await
            .expect("filter");
        assert_eq!(n, 1);

        // and what this version writes is the same text, byte for byte
        store.insert_target(target_row("t")).await.expect("insert");
        store
            .insert_delivery(delivery_row("e", "t", 1), 100)
            .await
            .expect("insert");
        assert!(store.claim("e", 2).await.expect("claim"));
        let text = |sql: &'static str| {
            let db = db.clone();
            async move {
                db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| {
                        let t: String = r.try_get_by_index(0).expect("text");
                        let kind: String = r.try_get_by_index(1).expect("typeof");
                        format!("{t}:{kind}")
                    })
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            text("SELECT kind, typeof(kind) FROM webhook_targets WHERE id = 't'").await,
            ["http:text"]
        );
        assert_eq!(
            text("SELECT status, typeof(status) FROM webhook_deliveries WHERE id = 'e'").await,
            ["in_flight:text"]
        );
        // the API's names are the stored ones
        for kind in TargetKind::iter() {
            assert_eq!(serde_json::json!(kind), serde_json::json!(kind.to_value()));
        }
        for status in DeliveryStatus::iter() {
            assert_eq!(
                serde_json::json!(status),
                serde_json::json!(status.to_value())
            );
        }
    }
}
