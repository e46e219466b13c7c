//! The delivery worker: claims due deliveries from the outbox, signs and POSTs them, and records
//! the outcome (retry with back-off, delivered, or given up).
//!
//! One dispatcher task decides, attempts run as their own tasks. Per target, a semaphore bounds the
//! requests in flight and a `governor` limiter the rate. A target at its bound is left out of the
//! outbox queries: one without a free request slot until an attempt ends, a rate-limited one until
//! its limiter lets the next request through (the pause is remembered, so its due rows are not read
//! again meanwhile). Within a round the query is repeated without the targets that became blocked,
//! so a rate-limited target's backlog never hides other targets' due rows, and the dispatcher never
//! spins on rows it cannot start. It wakes when the rule engine writes a row (a `Notify`, which
//! keeps change→delivery latency in milliseconds), when an attempt ends, when a rate-limit pause
//! ends, at the next due retry, and at least once a second.
//!
//! Retries: network errors, timeouts, 408, 429 and 5xx, with exponential back-off and jitter
//! (`retry_min_secs` doubling up to `retry_max_secs`), or exactly the receiver's `Retry-After`
//! (capped at an hour); other answers (2xx aside) are final. A delivery is given up after
//! `max_attempts` attempts or when its next attempt would fall after `max_age_hours`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::Utc;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::WebhookCounters;
use super::egress::{self, GuardedResolver};
use super::sign;
use super::store::{AttemptRecord, DeliveryStatus, WebhookStore, delivery, now_ms};
use crate::config::{Secret, WebhookSettings};
use crate::http::outbound::{self, parse_retry_after, transport_error_text};

/// Due deliveries read per outbox query.
const CLAIM_BATCH: u64 = 64;

/// Outbox queries per round at most (the next round follows at once if rows are left).
const MAX_PASSES: usize = 8;

/// Longest sleep of the dispatcher between rounds: a safety net only. Every new delivery wakes
/// it ([`Notify`]), every attempt's end too, and a round sleeps until the next retry or rate
/// limit is due; so an idle HomeIQ does not query the outbox every second.
const IDLE_WAKE: Duration = Duration::from_secs(30);

/// Sleep after the outbox could not be read.
const ERROR_WAKE: Duration = Duration::from_secs(1);

/// What an attempt needs to know about its target.
#[derive(Debug, Clone)]
pub(crate) struct TargetConfig {
    /// Name, for logs.
    pub name: String,
    /// Where to POST (for `ha` targets it holds the webhook id: never log it).
    pub url: String,
    /// HMAC secret.
    pub secret: Secret,
    /// Bearer token sent along (the Supervisor's proxy needs it for `ha` targets).
    pub bearer: Option<Secret>,
    /// Requests per minute.
    pub rate_limit_per_minute: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Whether the address is checked ([`super::egress`]): `http` targets unless
    /// `webhooks.allow_internal_targets`. An `ha` target's base is Home Assistant itself.
    pub guarded: bool,
}

/// The targets the dispatcher delivers to, by id; swapped whole when one changes.
pub(crate) type TargetTable = Arc<ArcSwap<HashMap<String, Arc<TargetConfig>>>>;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// 2xx.
    Delivered {
        /// HTTP status.
        code: u16,
    },
    /// Worth another attempt.
    Retry {
        /// HTTP status, if an answer came.
        code: Option<u16>,
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
        /// What went wrong.
        error: String,
    },
    /// Final failure.
    Fail {
        /// HTTP status, if an answer came (none when the target is refused).
        code: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// Classifies an HTTP answer.
pub(crate) fn classify(code: u16, retry_after: Option<Duration>) -> Outcome {
    match code {
        200..=299 => Outcome::Delivered { code },
        408 | 429 | 500..=599 => Outcome::Retry {
            code: Some(code),
            retry_after,
            error: format!("HTTP {code}"),
        },
        _ => Outcome::Fail {
            code: Some(code),
            error: format!("HTTP {code} (not retried)"),
        },
    }
}

/// Retry policy from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Longest life of a delivery, ms.
    pub max_age_ms: i64,
    /// First back-off, seconds.
    pub min_secs: f64,
    /// Longest back-off, seconds.
    pub max_secs: f64,
}

impl From<&WebhookSettings> for RetryPolicy {
    fn from(s: &WebhookSettings) -> Self {
        RetryPolicy {
            max_attempts: s.max_attempts,
            max_age_ms: i64::try_from(s.max_age_hours)
                .unwrap_or(i64::MAX / 3_600_000)
                .saturating_mul(3_600_000),
            min_secs: s.retry_min_secs,
            max_secs: s.retry_max_secs,
        }
    }
}

impl RetryPolicy {
    /// Back-off before attempt `attempts + 1`: `min · 2^(attempts-1)` up to `max`, then "equal
    /// jitter" (half fixed, half random; `jitter` in `[0, 1)`).
    pub(crate) fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = f64::from(attempts.saturating_sub(1).min(30));
        let base = (self.min_secs * 2f64.powf(exp)).min(self.max_secs);
        Duration::from_secs_f64(base / 2.0 + base / 2.0 * jitter.clamp(0.0, 1.0))
    }

    /// What to record after attempt number `attempts` (1-based) of a delivery created at
    /// `created_at` ended with `outcome` at `now` (all Unix ms).
    pub(crate) fn decide(
        &self,
        outcome: &Outcome,
        attempts: u32,
        created_at: i64,
        now: i64,
        jitter: f64,
    ) -> (DeliveryStatus, i64, Option<String>) {
        match outcome {
            Outcome::Delivered { .. } => (DeliveryStatus::Delivered, now, None),
            Outcome::Fail { error, .. } => (DeliveryStatus::Failed, now, Some(error.clone())),
            Outcome::Retry {
                retry_after, error, ..
            } => {
                if attempts >= self.max_attempts {
                    return (
                        DeliveryStatus::Failed,
                        now,
                        Some(format!("gave up after {attempts} attempts: {error}")),
                    );
                }
                let wait = retry_after.unwrap_or_else(|| self.backoff(attempts, jitter));
                let next = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                if next > created_at.saturating_add(self.max_age_ms) {
                    return (
                        DeliveryStatus::Failed,
                        now,
                        Some(format!(
                            "gave up: older than webhooks.max_age_hours: {error}"
                        )),
                    );
                }
                (DeliveryStatus::Pending, next, Some(error.clone()))
            }
        }
    }
}
/// A reqwest client for deliveries ([`outbound::client`]). A `guarded` client resolves names
/// through [`GuardedResolver`] and ignores proxies from the environment, so it connects only to
/// addresses it checked.
pub(crate) fn http_client(
    timeout: Duration,
    guarded: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = outbound::client(timeout);
    if guarded {
        builder = builder.dns_resolver(Arc::new(GuardedResolver)).no_proxy();
    }
    builder.build()
}

/// The refusal of a guarded target, as an attempt's outcome: final, and the same text whatever
/// the host and port (nothing was attempted).
fn refused() -> Outcome {
    Outcome::Fail {
        code: None,
        error: egress::REFUSED.to_owned(),
    }
}

/// Sends one delivery; never logs the URL (an `ha` target's URL holds its webhook id).
pub(crate) async fn attempt(
    http: &reqwest::Client,
    target: &TargetConfig,
    d: &delivery::Model,
) -> Outcome {
    if target.guarded {
        // IP literals never reach the resolver: check them here
        let Ok(url) = url::Url::parse(&target.url) else {
            return refused();
        };
        if egress::check_literal(&url).is_err() {
            return refused();
        }
    }
    let body = d.body.clone().into_bytes();
    let signature = sign::sign(target.secret.expose().as_bytes(), &body);
    let mut req = http
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::SIGNATURE_HEADER, signature)
        .header(sign::TIMESTAMP_HEADER, Utc::now().timestamp().to_string())
        .header(sign::EVENT_HEADER, d.event.as_str())
        .header(sign::DELIVERY_HEADER, d.id.as_str());
    if let Some(token) = &target.bearer {
        req = req.bearer_auth(token.expose());
    }
    match req.body(body).send().await {
        Ok(mut response) => {
            let code = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            // read (a little of) the answer so the connection can be reused
            let mut read = 0usize;
            while read < 64 * 1024 {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            classify(code, retry_after)
        }
        Err(e) if egress::is_refused(&e) => refused(),
        Err(e) => Outcome::Retry {
            code: None,
            retry_after: None,
            error: transport_error_text(e),
        },
    }
}

struct Runtime {
    semaphore: Arc<Semaphore>,
    limiter: DefaultDirectRateLimiter,
    concurrency: u32,
    rate: u32,
    /// The rate limiter refused until then: the target's rows are not read before.
    paused_until: Option<Instant>,
}

impl Runtime {
    fn new(t: &TargetConfig) -> Self {
        let rate = NonZeroU32::new(t.rate_limit_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Runtime {
            semaphore: Arc::new(Semaphore::new(t.concurrency.max(1) as usize)),
            limiter: RateLimiter::direct(Quota::per_minute(rate)),
            concurrency: t.concurrency,
            rate: t.rate_limit_per_minute,
            paused_until: None,
        }
    }
}

/// The delivery worker.
pub(crate) struct Dispatcher {
    /// The outbox.
    pub store: WebhookStore,
    /// Targets by id.
    pub targets: TargetTable,
    /// Woken when a delivery is written.
    pub notify: Arc<Notify>,
    /// Counters.
    pub counters: Arc<WebhookCounters>,
    /// Retry policy.
    pub policy: RetryPolicy,
    /// The HTTP client of guarded targets ([`TargetConfig::guarded`]).
    pub guarded_http: reqwest::Client,
    /// The HTTP client of the others.
    pub http: reqwest::Client,
    /// Cleanup of the delivery log: finished deliveries older than this are deleted.
    pub log_retention: Duration,
}

impl Dispatcher {
    /// Runs until `cancel`; then stops claiming and gives attempts under way up to `drain` to end
    /// (the rest are retried after the next start).
    pub(crate) async fn run(self, cancel: CancellationToken, drain: Duration) {
        match self.store.reset_in_flight().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "webhook deliveries interrupted by the last stop will be retried"
            ),
            Err(e) => tracing::error!(error = %e, "cannot reset interrupted webhook deliveries"),
        }
        let mut runtimes: HashMap<String, Runtime> = HashMap::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut last_purge: Option<Instant> = None;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_purge = Some(Instant::now());
                let before = now_ms()
                    - i64::try_from(self.log_retention.as_millis()).unwrap_or(i64::MAX / 2);
                match self.store.purge_finished(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deliveries = n, "webhook delivery log trimmed"),
                    Err(e) => tracing::warn!(error = %e, "cannot trim the webhook delivery log"),
                }
            }
            let wake = self.round(&mut runtimes, &mut tasks).await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.notify.notified() => {}
                () = tokio::time::sleep(wake) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        if !tasks.is_empty() {
            let _ =
                tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
                    .await;
            tasks.abort_all();
        }
        tracing::info!("webhook delivery stopped");
    }

    /// Starts every attempt it may; returns how long to sleep at most.
    async fn round(
        &self,
        runtimes: &mut HashMap<String, Runtime>,
        tasks: &mut JoinSet<()>,
    ) -> Duration {
        self.counters
            .counts
            .dispatcher_rounds
            .fetch_add(1, Ordering::Relaxed);
        let targets = self.targets.load_full();
        runtimes.retain(|id, _| targets.contains_key(id));
        for (id, t) in targets.iter() {
            let stale = runtimes.get(id).is_none_or(|r| {
                r.concurrency != t.concurrency || r.rate != t.rate_limit_per_minute
            });
            if stale {
                runtimes.insert(id.clone(), Runtime::new(t));
            }
        }
        let started = Instant::now();
        let mut blocked: Vec<String> = runtimes
            .iter()
            .filter(|(_, r)| {
                r.semaphore.available_permits() == 0 || r.paused_until.is_some_and(|t| t > started)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut more = false;
        for _ in 0..MAX_PASSES {
            let now = now_ms();
            let due = match self.store.due(now, &blocked, CLAIM_BATCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the webhook outbox");
                    return ERROR_WAKE;
                }
            };
            more = u64::try_from(due.len()).unwrap_or(u64::MAX) >= CLAIM_BATCH;
            for d in due {
                if blocked.contains(&d.target_id) {
                    continue;
                }
                let (Some(target), Some(runtime)) =
                    (targets.get(&d.target_id), runtimes.get_mut(&d.target_id))
                else {
                    // deleted meanwhile (the cascade removes its rows) or not loaded (invalid):
                    // its rows are not read again this round
                    blocked.push(d.target_id.clone());
                    continue;
                };
                if now.saturating_sub(d.created_at) > self.policy.max_age_ms {
                    self.give_up_old(&d, now).await;
                    continue;
                }
                let Ok(permit) = runtime.semaphore.clone().try_acquire_owned() else {
                    blocked.push(d.target_id.clone());
                    continue;
                };
                if let Err(not_until) = runtime.limiter.check() {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    runtime.paused_until = Some(Instant::now() + wait);
                    self.counters
                        .counts
                        .rate_limited
                        .fetch_add(1, Ordering::Relaxed);
                    blocked.push(d.target_id.clone());
                    continue;
                }
                runtime.paused_until = None;
                match self.store.claim(&d.id, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim a webhook delivery");
                        continue;
                    }
                }
                let job = Job {
                    store: self.store.clone(),
                    counters: self.counters.clone(),
                    policy: self.policy,
                    http: if target.guarded {
                        self.guarded_http.clone()
                    } else {
                        self.http.clone()
                    },
                    target: target.clone(),
                };
                tasks.spawn(async move {
                    job.run(d).await;
                    drop(permit);
                });
            }
            if !more {
                break;
            }
        }
        if more {
            // a full batch on the last pass: go on at once
            return Duration::ZERO;
        }
        let mut wake = IDLE_WAKE;
        let now = Instant::now();
        for r in runtimes.values() {
            if let Some(until) = r.paused_until.filter(|t| *t > now) {
                wake = wake.min(until - now);
            }
        }
        match self.store.next_due_at(&blocked).await {
            Ok(Some(next)) => {
                let ms = u64::try_from(next.saturating_sub(now_ms())).unwrap_or(0);
                wake = wake.min(Duration::from_millis(ms.max(1)));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the webhook outbox"),
        }
        wake
    }

    /// Gives up a delivery older than `webhooks.max_age_hours` without an attempt.
    async fn give_up_old(&self, d: &delivery::Model, now: i64) {
        let record = AttemptRecord {
            status: DeliveryStatus::Failed,
            attempts: d.attempts,
            next_attempt_at: now,
            started_at: d.last_attempt_at.unwrap_or(now),
            latency_ms: d.latency_ms,
            response_code: d.response_code,
            error: Some("gave up: older than webhooks.max_age_hours".into()),
        };
        if self
            .store
            .record(&d.id, &d.target_id, &record)
            .await
            .is_ok()
        {
            self.counters.counts.failed.fetch_add(1, Ordering::Relaxed);
            self.counters.count_target(&d.target_id, false);
        }
    }
}

struct Job {
    store: WebhookStore,
    counters: Arc<WebhookCounters>,
    policy: RetryPolicy,
    http: reqwest::Client,
    target: Arc<TargetConfig>,
}

impl Job {
    async fn run(self, d: delivery::Model) {
        let started = now_ms();
        if d.attempts == 0
            && let Some(event_time) = d.event_time
        {
            // change in Home Assistant → first delivery start
            let latency = started.saturating_sub(event_time).max(0);
            self.counters
                .last_trigger_latency_ms
                .store(u64::try_from(latency).unwrap_or(0), Ordering::Relaxed);
        }
        self.counters
            .counts
            .attempts
            .fetch_add(1, Ordering::Relaxed);
        let clock = Instant::now();
        let outcome = attempt(&self.http, &self.target, &d).await;
        let latency = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        let attempts = d.attempts.saturating_add(1);
        let (new_status, next, error) = self.policy.decide(
            &outcome,
            u32::try_from(attempts).unwrap_or(u32::MAX),
            d.created_at,
            now_ms(),
            rand::random::<f64>(),
        );
        let code = match &outcome {
            Outcome::Delivered { code } => Some(i32::from(*code)),
            Outcome::Fail { code, .. } | Outcome::Retry { code, .. } => code.map(i32::from),
        };
        match new_status {
            DeliveryStatus::Delivered => {
                self.counters
                    .counts
                    .delivered
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.count_target(&d.target_id, true);
                tracing::debug!(target = %self.target.name, delivery = %d.id, latency_ms = latency, "webhook delivered");
            }
            DeliveryStatus::Failed => {
                self.counters.counts.failed.fetch_add(1, Ordering::Relaxed);
                self.counters.count_target(&d.target_id, false);
                tracing::warn!(target = %self.target.name, delivery = %d.id, attempts, error = error.as_deref().unwrap_or(""), "webhook delivery given up");
            }
            DeliveryStatus::Pending | DeliveryStatus::InFlight => {
                self.counters.counts.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target = %self.target.name, delivery = %d.id, attempts, error = error.as_deref().unwrap_or(""), "webhook delivery will be retried");
            }
        }
        let record = AttemptRecord {
            status: new_status,
            attempts,
            next_attempt_at: next,
            started_at: started,
            latency_ms: Some(latency),
            response_code: code,
            error,
        };
        if let Err(e) = self.store.record(&d.id, &d.target_id, &record).await {
            // the row stays in flight; the next start retries it (at-least-once)
            tracing::error!(error = %e, delivery = %d.id, "cannot record a webhook attempt");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryStore;
    use crate::webhooks::store::test_rows::{pending_row, target_row};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A receiver on 127.0.0.1 answering every request with `response`; counts requests by path.
    async fn receiver(response: String) -> (u16, Arc<std::sync::Mutex<HashMap<String, usize>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counts = counts.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() < len {
                            continue;
                        }
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        *counts.lock().expect("lock").entry(path).or_default() += 1;
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                });
            }
        });
        (port, seen)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    fn target_config(id: &str, url: String, rate: u32, concurrency: u32) -> TargetConfig {
        TargetConfig {
            name: id.into(),
            url,
            secret: Secret::new(String::from("0123456789abcdef")),
            bearer: None,
            rate_limit_per_minute: rate,
            concurrency,
            guarded: false,
        }
    }

    async fn delivered(store: &WebhookStore, target: &str) -> u64 {
        store
            .list_deliveries(target, Some(DeliveryStatus::Delivered), 0, 1)
            .await
            .expect("list")
            .0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_limited_backlog_neither_starves_other_targets_nor_spins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = RegistryStore::open(&dir.path().join(crate::config::METADATA_DB_FILE))
            .await
            .expect("open");
        let store = WebhookStore::new(registry.connection().clone());
        let (port, seen) = receiver(OK.to_owned()).await;
        let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
        // `slow`: one request a minute and a backlog of 300 due deliveries, older than any of
        // `other`'s 20
        store
            .insert_target(target_row("slow"))
            .await
            .expect("insert");
        store
            .insert_target(target_row("other"))
            .await
            .expect("insert");
        let now = now_ms();
        for i in 0..300 {
            store
                .insert_delivery(
                    pending_row(&format!("s{i:03}"), "slow", now - 60_000 + i),
                    10_000,
                )
                .await
                .expect("insert");
        }
        for i in 0..20 {
            store
                .insert_delivery(
                    pending_row(&format!("o{i:02}"), "other", now - 1_000 + i),
                    10_000,
                )
                .await
                .expect("insert");
        }
        let table: HashMap<String, Arc<TargetConfig>> = [
            target_config("slow", url("slow"), 1, 2),
            target_config("other", url("other"), 6_000, 4),
        ]
        .into_iter()
        .map(|t| (t.name.clone(), Arc::new(t)))
        .collect();
        let counters = Arc::new(WebhookCounters::default());
        let dispatcher = Dispatcher {
            store: store.clone(),
            targets: Arc::new(ArcSwap::from_pointee(table)),
            notify: Arc::new(Notify::new()),
            counters: counters.clone(),
            policy: policy(),
            guarded_http: http_client(Duration::from_secs(5), true).expect("client"),
            http: http_client(Duration::from_secs(5), false).expect("client"),
            log_retention: Duration::from_secs(3600),
        };
        let cancel = CancellationToken::new();
        let worker = tokio::spawn(dispatcher.run(cancel.clone(), Duration::from_secs(1)));

        // the other target's deliveries are all attempted promptly
        let started = Instant::now();
        while delivered(&store, "other").await < 20 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the other target was starved: {} of 20 delivered, {:?}",
                delivered(&store, "other").await,
                seen.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        // every attempt's end wakes the dispatcher once (a round after the first): let those pass
        while counters.counts.dispatcher_rounds.load(Ordering::Relaxed)
            <= counters.counts.attempts.load(Ordering::Relaxed)
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "attempts never ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // while the rate-limited target waits with its backlog, the dispatcher sleeps: it wakes
        // about once a second, not every millisecond
        let rounds = counters.counts.dispatcher_rounds.load(Ordering::Relaxed);
        let limited = counters.counts.rate_limited.load(Ordering::Relaxed);
        let window = Duration::from_millis(1500);
        tokio::time::sleep(window).await;
        let rounds = counters.counts.dispatcher_rounds.load(Ordering::Relaxed) - rounds;
        let limited = counters.counts.rate_limited.load(Ordering::Relaxed) - limited;
        println!("other target delivered in {took:?}; {rounds} dispatcher rounds in {window:?}");
        assert!(rounds <= 4, "{rounds} dispatcher rounds in {window:?}");
        assert!(limited <= 2, "{limited} rate-limit checks in {window:?}");
        assert_eq!(delivered(&store, "slow").await, 1, "one a minute");
        assert_eq!(seen.lock().expect("lock").get("/slow"), Some(&1));
        cancel.cancel();
        worker.await.expect("worker");
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_guarded_targets_are_refused() {
        let (elsewhere, elsewhere_seen) = receiver(OK.to_owned()).await;
        let (port, seen) = receiver(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ))
        .await;
        let d = pending_row("d", "t", 0);
        let open = http_client(Duration::from_secs(5), false).expect("client");
        let guarded = http_client(Duration::from_secs(5), true).expect("client");
        let target = target_config("t", format!("http://127.0.0.1:{port}/hook"), 60, 1);
        assert_eq!(
            attempt(&open, &target, &d).await,
            Outcome::Fail {
                code: Some(307),
                error: "HTTP 307 (not retried)".into()
            }
        );
        assert_eq!(seen.lock().expect("lock").get("/hook"), Some(&1));
        assert!(
            elsewhere_seen.lock().expect("lock").is_empty(),
            "redirect followed"
        );

        // guarded: an IP literal (checked before the request) and a name resolving to loopback
        // (checked by the resolver) are refused alike, with nothing sent
        for url in [
            format!("http://127.0.0.1:{port}/guarded"),
            format!("http://[::ffff:127.0.0.1]:{port}/guarded"),
            format!("http://localhost:{port}/guarded"),
            format!("http://localhost:{}/guarded", port.wrapping_add(1)),
        ] {
            let mut target = target_config("t", url.clone(), 60, 1);
            target.guarded = true;
            for client in [&guarded, &open] {
                assert_eq!(attempt(client, &target, &d).await, refused(), "{url}");
            }
        }
        // the resolver alone refuses a name by the addresses it resolves to
        let mut target = target_config("t", format!("http://localhost:{port}/guarded"), 60, 1);
        target.guarded = false;
        assert_eq!(
            attempt(&guarded, &target, &d).await,
            refused(),
            "the resolver refuses"
        );
        assert_eq!(seen.lock().expect("lock").get("/guarded"), None);
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            max_age_ms: 3_600_000,
            min_secs: 1.0,
            max_secs: 10.0,
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(204, None), Outcome::Delivered { code: 204 });
        for code in [408, 429, 500, 502, 503] {
            assert!(
                matches!(classify(code, None), Outcome::Retry { .. }),
                "{code}"
            );
        }
        for code in [400, 401, 404, 410, 422, 301] {
            assert!(
                matches!(classify(code, None), Outcome::Fail { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = policy();
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff(20, 1.0), Duration::from_secs(10));
        assert!(p.backoff(3, 0.5) >= Duration::from_secs(2));
    }

    #[test]
    fn decisions() {
        let p = policy();
        let retry = Outcome::Retry {
            code: Some(503),
            retry_after: None,
            error: "HTTP 503".into(),
        };
        assert_eq!(
            p.decide(&retry, 1, 0, 1000, 1.0),
            (DeliveryStatus::Pending, 2000, Some("HTTP 503".into()))
        );
        // Retry-After wins over the back-off
        let later = Outcome::Retry {
            code: Some(429),
            retry_after: Some(Duration::from_secs(30)),
            error: "HTTP 429".into(),
        };
        assert_eq!(p.decide(&later, 1, 0, 1000, 0.0).1, 31_000);
        // attempts exhausted
        assert_eq!(p.decide(&retry, 4, 0, 1000, 0.0).0, DeliveryStatus::Failed);
        // too old for another attempt
        assert_eq!(
            p.decide(&retry, 1, 0, 3_599_900, 1.0).0,
            DeliveryStatus::Failed
        );
        assert_eq!(
            p.decide(
                &Outcome::Fail {
                    code: Some(404),
                    error: "x".into()
                },
                1,
                0,
                5,
                0.0
            )
            .0,
            DeliveryStatus::Failed
        );
        assert_eq!(
            p.decide(&Outcome::Delivered { code: 200 }, 3, 0, 5, 0.0).0,
            DeliveryStatus::Delivered
        );
    }
}
