//! Optional plain-language wording of suggestions by an LLM (`llm.*`, off by default): an
//! OpenAI-compatible chat-completions endpoint (OpenAI, a local Ollama, LM Studio, vLLM,
//! llama.cpp's server) rewrites one suggestion's title and explanation. A suggestion is complete
//! and deployable without it: every failure is an [`LlmError`] and the caller keeps the template
//! wording ([`Llm::reword_or_template`]).
//!
//! - **Prompt** ([`prompt`]): the facts of one suggestion only, at most about 2,000 tokens
//!   whatever the home's size.
//! - **Request**: `POST {base_url}/chat/completions` (a base URL without a path gets `/v1` first,
//!   so both `http://host:11434` and `http://host:11434/v1` reach Ollama), `Authorization:
//!   Bearer` when `llm.api_key` is set, temperature 0.2, `max_tokens` 300, `stream: false`, and
//!   `response_format: {"type": "json_object"}`; a server that refuses `response_format` (HTTP 400
//!   naming it) is asked again without it, and never again with it.
//! - **Answer** ([`answer`]): `choices[0].message.content` as `{title, explanation}`, read with a
//!   size cap ([`MAX_ANSWER_BYTES`]), fences and markdown stripped, lengths checked.
//! - **Limits** ([`guard`]): `llm.timeout_seconds` per request, `llm.daily_request_budget`
//!   requests per rolling 24 hours, a circuit breaker (open after 3 consecutive failures for
//!   10 minutes, then one half-open probe) and 429 `Retry-After` honoured (no request before it).
//!   No retries otherwise: the next suggestion is the next try.
//!
//! Names in the prompt come from the home (friendly names, areas) and could hold instructions;
//! the answer can only ever become a title and an explanation of plain text within the caps,
//! never an automation, so the worst a hostile name achieves is odd wording.
//!
//! The API key is only ever put in the `Authorization` header: never logged, never in an error,
//! and `/api/v1/config` shows it as `***` ([`crate::config::Secret`]).

mod answer;
mod guard;
mod prompt;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use url::Url;
use utoipa::ToSchema;

use crate::config::{Secret, Settings, redact_urls};
use crate::health::{Health, Verdict};

pub(crate) use answer::Wording;
pub(crate) use guard::BreakerState;
use guard::{Clock, Guard, Refusal};
pub(crate) use prompt::{EntityFacts, EntityRole, LocalWindow, WordingKind, WordingRequest};

/// The most bytes of an answer read; a longer one is [`LlmError::Malformed`].
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most bytes of an error answer read for its message.
const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Temperature of every request: low, for faithful rewording.
const TEMPERATURE: f64 = 0.2;
/// Tokens the model may answer with (a title and two sentences need about 120).
const MAX_ANSWER_TOKENS: u32 = 300;

crate::counters::counters! {
    /// The LLM client's requests and their outcomes.
    pub(crate) struct LlmCounters => LlmCountersSnapshot ("homeiq_llm") {
        /// Requests sent to the chat-completions endpoint.
        requests,
        /// Rewordings used.
        worded,
        /// Requests that failed (HTTP errors, timeouts, unreachable, unusable answers).
        failed,
        /// Answers that could not be used (part of `failed`).
        malformed,
        /// Rewordings not tried because the daily request budget was used up.
        refused_budget,
        /// Rewordings not tried because the circuit breaker was open.
        refused_breaker,
    }
}

/// Why a suggestion keeps its template wording. Every variant leaves the suggestion usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LlmError {
    /// `llm.enabled` is false.
    #[error("LLM wording is off (llm.enabled is false)")]
    Disabled,
    /// The daily request budget is used up.
    #[error(
        "the LLM's daily request budget ({budget}) is used up; the next request is possible in \
         {} s",
        retry_in.as_secs()
    )]
    BudgetExhausted {
        /// `llm.daily_request_budget`.
        budget: u32,
        /// Until a request frees.
        retry_in: Duration,
    },
    /// The circuit breaker is open (repeated failures, or the server asked to wait).
    #[error("LLM requests are paused after failures or a rate limit; next try in {} s", retry_in.as_secs())]
    CircuitOpen {
        /// Until the breaker lets a probe through.
        retry_in: Duration,
    },
    /// No answer within `llm.timeout_seconds`.
    #[error("the LLM did not answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The endpoint could not be reached.
    #[error("cannot reach the LLM: {0}")]
    Transport(String),
    /// 401 or 403: the key is wrong or lacks access.
    #[error("the LLM refused the credentials (HTTP {status}): {message}; check llm.api_key")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// 429: the server asked to slow down.
    #[error("the LLM is rate limiting (HTTP 429): {message}")]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// The server's message.
        message: String,
    },
    /// Another non-success status.
    #[error("the LLM answered HTTP {status}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer could not be used (not chat-completions JSON, no `{title, explanation}`, too
    /// long, too large).
    #[error("the LLM's answer cannot be used: {0}")]
    Malformed(String),
}

impl LlmError {
    /// A short name of the kind of error, for logs and the status.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            LlmError::Disabled => "disabled",
            LlmError::BudgetExhausted { .. } => "budget_exhausted",
            LlmError::CircuitOpen { .. } => "circuit_open",
            LlmError::Timeout(_) => "timeout",
            LlmError::Transport(_) => "transport",
            LlmError::Unauthorized { .. } => "unauthorized",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Http { .. } => "http",
            LlmError::Malformed(_) => "malformed",
        }
    }
}

/// Where a suggestion's wording came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WordingSource {
    /// The suggestion's own template.
    Template,
    /// Reworded by the LLM.
    Llm,
}

/// A suggestion's wording and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Worded {
    /// The wording to show.
    pub wording: Wording,
    /// The LLM's, or the template's.
    pub source: WordingSource,
    /// Why the template was kept ([`LlmError::Disabled`] when the LLM is off).
    pub error: Option<LlmError>,
}

/// The LLM client's state, for `/health/deep` and the panel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LlmStatus {
    /// `llm.enabled`.
    pub enabled: bool,
    /// `llm.model` (empty when off).
    pub model: String,
    /// Requests sent in the last 24 hours.
    pub requests_last_24h: u32,
    /// `llm.daily_request_budget`.
    pub daily_request_budget: u32,
    /// Requests left in the rolling 24 hours.
    pub budget_left: u32,
    /// The circuit breaker.
    pub breaker: BreakerState,
    /// Seconds until an open breaker lets a probe through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_retry_in_seconds: Option<u64>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The last failure, in plain words (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the last rewording was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// Counters since start.
    pub counters: LlmCountersSnapshot,
}

impl LlmStatus {
    /// Judges the status: an open breaker is degraded (someone should look at the endpoint or
    /// the key; suggestions keep their own wording meanwhile); a used-up budget is a warning.
    pub(crate) fn health(&self) -> Health {
        let mut health = Health::default();
        if !self.enabled {
            return health;
        }
        if self.breaker == BreakerState::Open {
            let why = self
                .last_error
                .as_deref()
                .unwrap_or("the server asked to wait");
            health.flag(
                Verdict::Degraded,
                format!(
                    "LLM wording paused ({why}); suggestions keep their own wording until it \
                     recovers"
                ),
            );
        }
        if self.budget_left == 0 {
            health.warn(format!(
                "the LLM's daily request budget ({}) is used up; new suggestions keep their own \
                 wording",
                self.daily_request_budget
            ));
        }
        health
    }
}

/// The last outcome, for the status.
#[derive(Debug, Default)]
struct Last {
    error: Option<(String, DateTime<Utc>)>,
    success: Option<DateTime<Utc>>,
}

/// A configured client.
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    url: Url,
    model: String,
    api_key: Option<Secret>,
    timeout: Duration,
    /// Whether `response_format` is sent (cleared when the server refuses it).
    json_mode: AtomicBool,
    guard: Mutex<Guard>,
    clock: Clock,
    counters: LlmCounters,
    last: Mutex<Last>,
}

/// The LLM client: cheap to clone; a disabled one answers every call with
/// [`LlmError::Disabled`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Llm {
    inner: Option<Arc<Client>>,
}

/// The parts of `llm.*` the client uses.
#[derive(Debug, Clone)]
struct ClientConfig {
    base_url: String,
    model: String,
    api_key: Option<Secret>,
    timeout: Duration,
    budget: u32,
}

/// The chat-completions URL of a base URL: `/chat/completions` appended to its path, `/v1`
/// first when it has none. The query is kept.
pub(crate) fn chat_url(base_url: &str) -> Result<Url, url::ParseError> {
    let mut url = Url::parse(base_url.trim())?;
    let path = url.path().trim_end_matches('/');
    let path = if path.is_empty() {
        "/v1/chat/completions".to_owned()
    } else {
        format!("{path}/chat/completions")
    };
    url.set_path(&path);
    Ok(url)
}

impl Llm {
    /// The client `settings.llm` describes; disabled when `llm.enabled` is false (or, logged, when
    /// the settings cannot make one, which validation already refuses).
    pub(crate) fn from_settings(settings: &Settings) -> Llm {
        let s = &settings.llm;
        if !s.enabled {
            return Llm::default();
        }
        let config = ClientConfig {
            base_url: s.base_url.clone(),
            model: s.model.trim().to_owned(),
            api_key: s.api_key.clone().filter(|k| !k.is_empty()),
            timeout: Duration::from_secs(s.timeout_seconds.max(1)),
            budget: s.daily_request_budget.max(1),
        };
        match Llm::with_config(config, Clock::default()) {
            Ok(llm) => llm,
            Err(e) => {
                tracing::error!(error = %e, "LLM wording stays off");
                Llm::default()
            }
        }
    }

    fn with_config(config: ClientConfig, clock: Clock) -> Result<Llm, String> {
        let url = chat_url(&config.base_url)
            .map_err(|e| format!("llm.base_url {}: {e}", redact_urls(&config.base_url)))?;
        let http = crate::http::outbound::client(config.timeout)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Llm {
            inner: Some(Arc::new(Client {
                http,
                url,
                model: config.model,
                api_key: config.api_key,
                timeout: config.timeout,
                json_mode: AtomicBool::new(true),
                guard: Mutex::new(Guard::new(config.budget)),
                clock,
                counters: LlmCounters::default(),
                last: Mutex::new(Last::default()),
            })),
        })
    }

    /// Whether rewording is on.
    pub(crate) fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The title and explanation of `req` reworded by the LLM, or why not. One request at most
    /// (two when the server refuses `response_format`); never retried otherwise.
    pub(crate) async fn reword(&self, req: &WordingRequest) -> Result<Wording, LlmError> {
        let Some(client) = &self.inner else {
            return Err(LlmError::Disabled);
        };
        client.reword(req).await
    }

    /// [`Llm::reword`], falling back to the template wording of `req` on any error (the status
    /// keeps the last one): what a suggestion shows.
    pub(crate) async fn reword_or_template(&self, req: &WordingRequest) -> Worded {
        match self.reword(req).await {
            Ok(wording) => Worded {
                wording,
                source: WordingSource::Llm,
                error: None,
            },
            Err(e) => Worded {
                wording: req.template(),
                source: WordingSource::Template,
                error: Some(e),
            },
        }
    }

    /// The client's state.
    pub(crate) fn status(&self) -> LlmStatus {
        let Some(client) = &self.inner else {
            return LlmStatus {
                enabled: false,
                model: String::new(),
                requests_last_24h: 0,
                daily_request_budget: 0,
                budget_left: 0,
                breaker: BreakerState::Closed,
                breaker_retry_in_seconds: None,
                consecutive_failures: 0,
                last_error: None,
                last_error_at: None,
                last_success_at: None,
                counters: LlmCountersSnapshot::default(),
            };
        };
        let now = client.clock.now();
        let (used, budget, (breaker, retry_in), failures) = {
            let mut g = client.guard();
            (g.used(now), g.budget(), g.breaker(now), g.failures())
        };
        let last = client.last();
        LlmStatus {
            enabled: true,
            model: client.model.clone(),
            requests_last_24h: used,
            daily_request_budget: budget,
            budget_left: budget.saturating_sub(used),
            breaker,
            breaker_retry_in_seconds: retry_in.map(|d| d.as_secs_f64().ceil() as u64),
            consecutive_failures: failures,
            last_error: last.error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: last.error.as_ref().map(|(_, at)| *at),
            last_success_at: last.success,
            counters: client.counters.snapshot(),
        }
    }
}

impl WordingRequest {
    /// The template wording (what the suggestion says without the LLM).
    pub(crate) fn template(&self) -> Wording {
        Wording {
            title: self.title.clone(),
            explanation: self.explanation.clone(),
        }
    }
}

/// Ends an admitted request: its outcome goes to the guard; dropped without one (the caller went
/// away mid-request), it frees the half-open probe.
struct Admission<'a> {
    client: &'a Client,
    done: bool,
}

impl Admission<'_> {
    fn finish(mut self, outcome: &Result<Wording, LlmError>) {
        self.done = true;
        let c = self.client;
        let now = c.clock.now();
        let mut g = c.guard();
        match outcome {
            Ok(_) => g.success(),
            Err(LlmError::RateLimited { retry_after, .. }) => {
                g.back_off(now, retry_after.unwrap_or(guard::RATE_LIMITED_FOR));
            }
            Err(_) => g.failure(now),
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.guard().abandon();
        }
    }
}

impl Client {
    fn guard(&self) -> MutexGuard<'_, Guard> {
        // a panic while holding it cannot leave the guard inconsistent: keep using it
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last(&self) -> MutexGuard<'_, Last> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refusal(&self, refusal: Refusal) -> LlmError {
        match refusal {
            Refusal::Budget(retry_in) => {
                bump(&self.counters.refused_budget);
                LlmError::BudgetExhausted {
                    budget: self.guard().budget(),
                    retry_in,
                }
            }
            Refusal::Breaker(retry_in) => {
                bump(&self.counters.refused_breaker);
                LlmError::CircuitOpen { retry_in }
            }
        }
    }

    async fn reword(&self, req: &WordingRequest) -> Result<Wording, LlmError> {
        let admitted = self.guard().admit(self.clock.now(), self.timeout);
        if let Err(refusal) = admitted {
            return Err(self.refusal(refusal));
        }
        let admission = Admission {
            client: self,
            done: false,
        };
        let messages = prompt::messages(req);
        let mut outcome = self.send(&messages).await;
        if self.json_mode.load(Ordering::Relaxed)
            && matches!(&outcome, Err(LlmError::Http { status: 400, message })
                if message.contains("response_format"))
        {
            self.json_mode.store(false, Ordering::Relaxed);
            tracing::info!("the LLM server refuses response_format; asking without it from now on");
            let retry = self.guard().take(self.clock.now());
            outcome = match retry {
                Ok(()) => self.send(&messages).await,
                Err(refusal) => Err(self.refusal(refusal)),
            };
        }
        admission.finish(&outcome);
        self.record(&outcome);
        outcome
    }

    fn record(&self, outcome: &Result<Wording, LlmError>) {
        let mut last = self.last();
        match outcome {
            Ok(_) => {
                bump(&self.counters.worded);
                last.success = Some(Utc::now());
            }
            Err(e) => {
                bump(&self.counters.failed);
                if matches!(e, LlmError::Malformed(_)) {
                    bump(&self.counters.malformed);
                }
                tracing::warn!(error = %e, kind = e.kind(), model = %self.model, "LLM rewording failed");
                last.error = Some((e.to_string(), Utc::now()));
            }
        }
    }

    /// One request and its answer.
    async fn send(&self, messages: &[(&'static str, String); 2]) -> Result<Wording, LlmError> {
        bump(&self.counters.requests);
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": messages
                .iter()
                .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
                .collect::<Vec<_>>(),
            "temperature": TEMPERATURE,
            "max_tokens": MAX_ANSWER_TOKENS,
            "stream": false,
        });
        if self.json_mode.load(Ordering::Relaxed) {
            body["response_format"] = serde_json::json!({"type": "json_object"});
        }
        let mut request = self.http.post(self.url.clone()).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            let body = read_capped(response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| self.read_error(e))?;
            return answer::parse(&body).map_err(|e| LlmError::Malformed(e.0));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::http::outbound::parse_retry_after(v, Utc::now()));
        let message = match read_capped(response, MAX_ERROR_BYTES).await {
            Ok(body) => answer::error_message(&body),
            Err(ReadError::TooLarge) => "(a long error answer)".into(),
            Err(ReadError::Transport(e)) => return Err(self.transport(e)),
        };
        let status = status.as_u16();
        Err(match status {
            401 | 403 => LlmError::Unauthorized { status, message },
            429 => LlmError::RateLimited {
                retry_after,
                message,
            },
            _ => LlmError::Http { status, message },
        })
    }

    fn read_error(&self, e: ReadError) -> LlmError {
        match e {
            ReadError::TooLarge => LlmError::Malformed(format!(
                "the answer is larger than {} KiB",
                MAX_ANSWER_BYTES / 1024
            )),
            ReadError::Transport(e) => self.transport(e),
        }
    }

    /// A transport error without the URL (it may hold user information).
    fn transport(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            return LlmError::Timeout(self.timeout);
        }
        let text = crate::http::outbound::transport_error_text(e);
        LlmError::Transport(redact_urls(&text).into_owned())
    }
}

fn bump(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why a body could not be read.
enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// The body of `response`, refused once it exceeds `limit` bytes (announced or read).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
