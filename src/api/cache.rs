//! The history cache: answers of `history`, `history/aggregate` and `events/stats` for ranges
//! whose `end` the client gave, kept as rendered JSON and served again while current.
//!
//! A history answer costs a backend query (milliseconds for a day of one entity in InfluxDB,
//! tens for a month's aggregates) while serving stored bytes costs microseconds, and the same
//! ranges are asked again and again: a dashboard refreshing, several users opening the same
//! entity, a script polling. The cache ([`moka`]) also collapses identical requests arriving
//! together into one backend query.
//!
//! An answer stays valid until one of its entities is written (any entity, for `events/stats`):
//! the writers record every acknowledged batch in the [`WriteLog`], and each answer remembers the
//! log's position read before its query. Points reaching the backend some other way (another
//! program writing to the same InfluxDB database) are not in the log: answers therefore also
//! expire [`TIME_TO_LIVE`] after they were computed. Ranges without an explicit `end` run up to
//! "now", differ on every request and are never cached. Memory is bounded by `api.cache_mb`
//! (bytes of JSON); 0 turns the cache off. Answers are [`PreparedJson`]: a client asking for gzip
//! gets the compressed form made the first time one asked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::http::error::ApiError;
use crate::prepared::PreparedJson;
use crate::store::written::WriteLog;

/// Longest time an answer is served from the cache.
pub(crate) const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// A cached answer.
#[derive(Clone)]
struct Entry {
    body: Arc<PreparedJson>,
    /// The write log's position before the query ran.
    seq: u64,
}

/// Which writes make an answer out of date.
pub(crate) enum Scope<'a> {
    /// Writes of these entities.
    Entities(&'a [String]),
    /// Any write.
    Everything,
}

/// The history cache; cheap to clone.
#[derive(Clone)]
pub(crate) struct HistoryCache {
    cache: Option<moka::future::Cache<String, Entry>>,
    log: Arc<WriteLog>,
}

impl HistoryCache {
    /// A cache of at most `max_mb` MiB of answers (0: off), invalidated through `log`.
    pub(crate) fn new(max_mb: u32, log: Arc<WriteLog>) -> Self {
        let cache = (max_mb > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(u64::from(max_mb) * 1024 * 1024)
                // weighed when stored, before any gzip form exists (which adds about a tenth)
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.body.weight()).unwrap_or(u32::MAX)
                })
                .time_to_live(TIME_TO_LIVE)
                .build()
        });
        HistoryCache { cache, log }
    }

    /// The answer for `key`: from the cache while current, else rendered by `compute` (once for
    /// all callers asking at the same time) and kept.
    pub(crate) async fn get_or_compute<F, Fut>(
        &self,
        key: String,
        scope: Scope<'_>,
        compute: F,
    ) -> Result<Arc<PreparedJson>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        let Some(cache) = &self.cache else {
            return compute()
                .await
                .map(|body| Arc::new(PreparedJson::new(body)));
        };
        let entities = match scope {
            Scope::Entities(ids) => Some(ids),
            Scope::Everything => None,
        };
        if let Some(hit) = cache.get(&key).await {
            if !self.log.changed_since(entities, hit.seq) {
                return Ok(hit.body);
            }
            cache.invalidate(&key).await;
        }
        let seq = self.log.current();
        let entry = cache
            .try_get_with(key, async move {
                compute().await.map(|body| Entry {
                    body: Arc::new(PreparedJson::new(body)),
                    seq,
                })
            })
            .await
            .map_err(|e: Arc<ApiError>| (*e).clone())?;
        Ok(entry.body)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn plain(answer: Result<Arc<PreparedJson>, ApiError>) -> Option<Bytes> {
        answer.ok().map(|doc| doc.plain().clone())
    }

    fn counting(
        calls: &AtomicUsize,
        text: &'static str,
    ) -> impl Future<Output = Result<Bytes, ApiError>> {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(Bytes::from_static(text.as_bytes())) }
    }

    #[tokio::test]
    async fn answers_are_reused_until_one_of_their_entities_is_written() {
        let log = Arc::new(WriteLog::default());
        let cache = HistoryCache::new(1, Arc::clone(&log));
        let calls = &AtomicUsize::new(0);
        let ids = vec!["sensor.a".to_owned()];
        let ask = |text| {
            cache.get_or_compute("k".into(), Scope::Entities(&ids), move || {
                counting(calls, text)
            })
        };
        assert_eq!(plain(ask("one").await), Some(Bytes::from_static(b"one")));
        assert_eq!(
            plain(ask("two").await),
            Some(Bytes::from_static(b"one")),
            "served again"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        log.record(["sensor.b"]);
        assert_eq!(
            plain(ask("two").await),
            Some(Bytes::from_static(b"one")),
            "another entity"
        );
        log.record(["sensor.a"]);
        assert_eq!(
            plain(ask("three").await),
            Some(Bytes::from_static(b"three")),
            "its entity"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn statistics_are_out_of_date_after_any_write_and_errors_are_not_kept() {
        let log = Arc::new(WriteLog::default());
        let cache = HistoryCache::new(1, Arc::clone(&log));
        let calls = &AtomicUsize::new(0);
        let stats = |text| {
            cache.get_or_compute("s".into(), Scope::Everything, move || counting(calls, text))
        };
        assert_eq!(plain(stats("a").await), Some(Bytes::from_static(b"a")));
        assert_eq!(plain(stats("b").await), Some(Bytes::from_static(b"a")));
        log.record(["light.x"]);
        assert_eq!(plain(stats("c").await), Some(Bytes::from_static(b"c")));

        let failed = cache
            .get_or_compute("e".into(), Scope::Everything, || async {
                Err(ApiError::unavailable("down"))
            })
            .await;
        assert!(failed.is_err());
        let next = cache
            .get_or_compute("e".into(), Scope::Everything, || async {
                Ok(Bytes::from_static(b"up"))
            })
            .await;
        assert_eq!(
            plain(next),
            Some(Bytes::from_static(b"up")),
            "the error was not kept"
        );
    }

    #[tokio::test]
    async fn requests_arriving_together_share_one_query_and_off_means_off() {
        let log = Arc::new(WriteLog::default());
        let cache = HistoryCache::new(1, Arc::clone(&log));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, calls, gate) = (cache.clone(), Arc::clone(&calls), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("same".into(), Scope::Everything, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(Bytes::from_static(b"x"))
                    })
                    .await
            }));
        }
        // release the one query once it runs (the others wait on it, not on the gate)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no query started");
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.ok().and_then(plain), Some(Bytes::from_static(b"x")));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let off = HistoryCache::new(0, log);
        let n = AtomicUsize::new(0);
        for _ in 0..2 {
            let _ = off
                .get_or_compute("k".into(), Scope::Everything, || counting(&n, "y"))
                .await;
        }
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
