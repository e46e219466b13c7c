//! Retention in InfluxDB 1.x: raw points before a cutoff removed by HomeIQ, not by a retention
//! policy.
//!
//! # Why not a retention policy
//!
//! A retention policy (`ALTER RETENTION POLICY autogen … DURATION 30d`) is InfluxDB's cheap way:
//! its enforcer drops whole shards once they are older than the duration. But it drops them
//! whether or not HomeIQ's rollups cover them yet, and nothing must be deleted before its rollup
//! exists (an install catching up on rollups, a rollup task that failed for a day). So HomeIQ
//! deletes itself, with the same cheap operation where it can:
//!
//! 1. `SHOW SHARDS` lists the database's shards; each one ending at or before the cutoff goes
//!    with `DROP SHARD <id>` — the file-level drop a retention policy does, immediate and
//!    independent of the points inside;
//! 2. the shard straddling the cutoff is trimmed with `DELETE WHERE time < '<cutoff>'`, the
//!    expensive operation on 1.x (tombstones for every series in the shard, compacted later), but
//!    over at most one shard (7 days for `autogen`).
//!
//! `SHOW SHARDS` and `DROP SHARD` need an admin user when InfluxDB has authentication on (the
//! add-on's sidecar has none); without them the whole range is one `DELETE` (slower, same
//! result).
//!
//! InfluxDB 2.x and 3 are not written by HomeIQ's retention: their users set the bucket's
//! retention period (README, configuration).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::client::{InfluxClient, InfluxError};

/// What one InfluxDB deletion run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct InfluxDeleteReport {
    /// Shards entirely before the cutoff dropped.
    pub shards_dropped: u64,
    /// `DELETE` statements run (the straddling shard, or everything without shard access).
    pub deletes: u64,
}

/// One shard of the database: id and time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    id: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// The database's shards from `SHOW SHARDS`, `None` when the user may not list them.
async fn shards(client: &InfluxClient) -> Result<Option<Vec<Shard>>, InfluxError> {
    let result = match client.query("SHOW SHARDS").await {
        Ok(r) => r,
        // not an admin (authentication on): refused as a statement or with 401/403
        Err(InfluxError::Statement { .. } | InfluxError::Unauthorized(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let time = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let mut found = Vec::new();
    for series in result
        .first_series()
        .iter()
        .filter(|s| s.name == client.database())
    {
        let column = |name: &str| series.columns.iter().position(|c| c == name);
        let (Some(id), Some(start), Some(end)) =
            (column("id"), column("start_time"), column("end_time"))
        else {
            continue;
        };
        for row in &series.values {
            if let (Some(id), Some(start), Some(end)) = (
                row.get(id).and_then(serde_json::Value::as_u64),
                row.get(start).and_then(time),
                row.get(end).and_then(time),
            ) {
                found.push(Shard { id, start, end });
            }
        }
    }
    Ok(Some(found))
}

/// Removes every point of the database earlier than `before`: drops the shards that end by then
/// and deletes the rest of the range.
pub(crate) async fn delete_before(
    client: &InfluxClient,
    before: DateTime<Utc>,
) -> Result<InfluxDeleteReport, InfluxError> {
    let mut report = InfluxDeleteReport::default();
    let cutoff = before.to_rfc3339_opts(SecondsFormat::Micros, true);
    let delete = format!("DELETE WHERE time < '{cutoff}'");
    let Some(shards) = shards(client).await? else {
        client.query(&delete).await?;
        report.deletes = 1;
        return Ok(report);
    };
    for shard in shards.iter().filter(|s| s.end <= before) {
        client.query(&format!("DROP SHARD {}", shard.id)).await?;
        report.shards_dropped += 1;
    }
    if shards.iter().any(|s| s.start < before && before < s.end) {
        client.query(&delete).await?;
        report.deletes = 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::influx::test_support::{count, fresh_settings};

    const DAY_US: i64 = 86_400_000_000;

    #[tokio::test]
    async fn drops_old_shards_and_trims_the_straddling_one() {
        let settings = fresh_settings("retention");
        let client = InfluxClient::new(&settings).expect("client");
        client.create_database().await.expect("create");
        let now = Utc::now();
        let now_us = now.timestamp_micros();
        // one point a day for 40 days, two entities: several 7-day shards
        let mut body = String::new();
        for day in 0..40_i64 {
            for entity in ["sensor.a", "sensor.b"] {
                body.push_str(&format!(
                    "sensor,entity_id={entity} value={day} {}\n",
                    now_us - day * DAY_US
                ));
            }
        }
        assert!(
            client
                .write(body, crate::store::point::Precision::Micros)
                .await
                .is_written()
        );
        assert_eq!(count(&client, "value", "sensor").await, 80);
        let cutoff = now - chrono::Duration::days(20) - chrono::Duration::hours(12);
        let report = delete_before(&client, cutoff).await.expect("delete");
        assert!(report.shards_dropped >= 1, "{report:?}");
        // days 0..=20 stay, two entities each
        assert_eq!(count(&client, "value", "sensor").await, 42);
        let cutoff_rfc = cutoff.to_rfc3339_opts(SecondsFormat::Micros, true);
        assert_eq!(
            count(
                &client,
                "value",
                &format!("sensor WHERE time < '{cutoff_rfc}'")
            )
            .await,
            0
        );
        // again: nothing left to drop, nothing changes
        delete_before(&client, cutoff).await.expect("delete");
        assert_eq!(count(&client, "value", "sensor").await, 42);
        client.drop_database().await.expect("drop");
    }
}
