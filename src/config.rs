//! HomeIQ's configuration: one typed [`Settings`] struct, loaded in layers with the `config` crate.
//!
//! Layers, later ones winning:
//! 1. built-in defaults (the `Default` impls below);
//! 2. the file given by `--config` (TOML, YAML or JSON, by extension);
//! 3. the add-on options, `/data/options.json` (path set by `--options` or `HOMEIQ_OPTIONS_FILE`;
//!    a missing file is skipped);
//! 4. environment variables `HOMEIQ_*`, with `__` between nesting levels
//!    (`HOMEIQ_INFLUXDB__URL`, `HOMEIQ_HTTP__PORT`); list keys take comma-separated values.
//!
//! A value of the wrong type or out of range stops start-up with an error that names the key
//! (`influxdb.schema: unknown variant ...`). Unknown keys are logged as warnings, never fatal, so an
//! unrelated `HOMEIQ_*` variable cannot stop the add-on. Secrets are wrapped in [`Secret`], whose
//! `Debug`, `Display` and `Serialize` never reveal the value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use url::Url;

/// File name of the metadata database (registry mirror, webhooks) inside the data directory.
pub(crate) const METADATA_DB_FILE: &str = "homeiq.db";

/// Environment variable prefix of HomeIQ's settings.
pub const ENV_PREFIX: &str = "HOMEIQ";
/// Default location of the add-on options file.
pub const DEFAULT_OPTIONS_FILE: &str = "/data/options.json";
/// Supervisor proxy addresses used when `SUPERVISOR_TOKEN` is set.
pub const SUPERVISOR_WS_URL: &str = "ws://supervisor/core/websocket";
/// Supervisor proxy for Home Assistant's REST API.
pub const SUPERVISOR_REST_URL: &str = "http://supervisor/core/api";
/// Where the add-on image installs the built panel (`http.panel_dir = auto` looks here first).
pub const PANEL_DIR_ADDON: &str = "/usr/share/homeiq/panel";

/// A configuration error that names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or is out of range.
    #[error("invalid configuration value for `{key}`: {message}")]
    Invalid {
        /// Dotted key path, e.g. `influxdb.url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A configuration source could not be read or parsed.
    #[error("cannot read configuration: {0}")]
    Source(String),
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: redact_urls(&message.into()).into_owned(),
        }
    }

    fn source(message: impl Into<String>) -> Self {
        ConfigError::Source(redact_urls(&message.into()).into_owned())
    }

    /// The key this error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Source(_) => None,
        }
    }
}

/// A secret string: never printed, logged or serialised in clear.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (treated as unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// `text` with the user information (`user:password@`) of every URL in it replaced by `***`:
/// for settings, errors and log lines that show a URL (`http://admin:pw@host` becomes
/// `http://***@host`). Text without such a URL is returned as it is.
pub fn redact_urls(text: &str) -> std::borrow::Cow<'_, str> {
    const SEPARATOR: &str = "://";
    if !text.contains(SEPARATOR) || !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(SEPARATOR) {
        let (head, tail) = rest.split_at(at + SEPARATOR.len());
        out.push_str(head);
        // the authority ends at the path, query, fragment, or anything that cannot be in a URL
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Serialises a URL setting with [`redact_urls`].
fn serialize_redacted<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_urls(url))
}

/// [`serialize_redacted`] for optional URLs.
fn serialize_redacted_opt<S: Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_some(&*redact_urls(url)),
        None => serializer.serialize_none(),
    }
}

/// Every HomeIQ setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Folder for SQLite, the spool and other state (the add-on's `/data`).
    pub data_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full `tracing` filter.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// The HTTP server.
    pub http: HttpSettings,
    /// The Home Assistant connection.
    pub ha: HaSettings,
    /// The InfluxDB server history is written to.
    pub influxdb: InfluxSettings,
    /// Where history goes (the add-on's run scripts start the InfluxDB sidecar only for
    /// `sidecar`; `embedded` keeps it in `<data_dir>/history.db`).
    pub storage: StorageMode,
    /// The durable spool between the pipeline and InfluxDB.
    pub spool: SpoolSettings,
    /// Gap backfill from Home Assistant's history.
    pub backfill: BackfillSettings,
    /// Periodic re-writes of current values.
    pub heartbeat: HeartbeatSettings,
    /// Importing what Home Assistant's recorder already holds (`crate::import`).
    pub import: ImportSettings,
    /// Entities to record (empty: all).
    pub include: EntityFilterSettings,
    /// Entities never to record (wins over `include`).
    pub exclude: EntityFilterSettings,
    /// The REST API's limits.
    pub api: ApiSettings,
    /// Signed webhooks: delivery limits and retries.
    pub webhooks: WebhookSettings,
    /// Pattern analysis: the habits learned from history (`crate::patterns`).
    pub analysis: AnalysisSettings,
    /// Optional plain-language wording of suggestions by an LLM (`crate::llm`); off by default.
    pub llm: LlmSettings,
    /// Suggestions: automations proposed from what the analysis learned (`crate::suggestions`).
    pub suggestions: SuggestionSettings,
    /// How long each tier of history is kept (raw: `crate::retention`; rollups:
    /// `crate::rollups`).
    pub retention: RetentionSettings,
    /// The data directory's disk watch and what HomeIQ does when it fills (`crate::storage`).
    pub storage_guard: StorageGuardSettings,
    /// Where each set key came from (`key` → source); keys not listed have their default.
    #[serde(skip)]
    pub provenance: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("/data"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            http: HttpSettings::default(),
            ha: HaSettings::default(),
            influxdb: InfluxSettings::default(),
            storage: StorageMode::External,
            spool: SpoolSettings::default(),
            backfill: BackfillSettings::default(),
            heartbeat: HeartbeatSettings::default(),
            import: ImportSettings::default(),
            include: EntityFilterSettings::default(),
            exclude: EntityFilterSettings::default(),
            api: ApiSettings::default(),
            webhooks: WebhookSettings::default(),
            analysis: AnalysisSettings::default(),
            llm: LlmSettings::default(),
            suggestions: SuggestionSettings::default(),
            retention: RetentionSettings::default(),
            storage_guard: StorageGuardSettings::default(),
            provenance: BTreeMap::new(),
        }
    }
}

/// `api.*`: limits of the REST API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Requests per second each client may make on average (0 turns rate limiting off).
    pub rate_limit_per_second: u32,
    /// Requests a client may make in a burst above the average.
    pub rate_limit_burst: u32,
    /// The longest time range one history request may cover, in days.
    pub max_history_days: u32,
    /// MiB of history answers kept for repeated requests (0 turns the cache off).
    pub cache_mb: u32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            max_history_days: 31,
            cache_mb: 16,
        }
    }
}

/// `webhooks.*`: delivery of signed webhooks (targets and rules themselves live in SQLite and are
/// managed through the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Attempts per delivery before it is given up (the first one included).
    pub max_attempts: u32,
    /// A delivery not done after this many hours is given up.
    pub max_age_hours: u64,
    /// Timeout of every delivery request, seconds.
    pub timeout_secs: u64,
    /// Finished deliveries are kept in the delivery log this many days.
    pub log_retention_days: u64,
    /// Requests in flight at once per target (a target's own `limits.concurrency` wins).
    pub concurrency_per_target: u32,
    /// Requests per minute per target (a target's own `limits.rate_limit_per_minute` wins).
    pub rate_limit_per_minute: u32,
    /// First retry delay, seconds; it doubles per attempt (with jitter).
    pub retry_min_secs: f64,
    /// Longest retry delay, seconds.
    pub retry_max_secs: f64,
    /// Allow `http` targets on internal addresses (loopback, link-local, multicast, the
    /// Supervisor's network and host names), refused by default (see `webhooks::egress`).
    pub allow_internal_targets: bool,
    /// Deliveries waiting per target at most; beyond, the oldest pending are dropped and counted.
    pub max_pending_per_target: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            max_attempts: 10,
            max_age_hours: 24,
            timeout_secs: 10,
            log_retention_days: 7,
            concurrency_per_target: 2,
            rate_limit_per_minute: 60,
            retry_min_secs: 1.0,
            retry_max_secs: 600.0,
            allow_internal_targets: false,
            max_pending_per_target: 10_000,
        }
    }
}

/// `suggestions.*`: automations HomeIQ proposes from what the analysis learned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SuggestionSettings {
    /// A Home Assistant persistent notification when a nightly analysis yields new suggestions.
    pub notify: bool,
}

impl Default for SuggestionSettings {
    fn default() -> Self {
        SuggestionSettings { notify: true }
    }
}

/// `retention.*`: how long each tier of history is kept (days). Raw points are deleted only once
/// the rollups cover them (`crate::retention`); rollup rows older than their tier's days are
/// deleted in chunks (`crate::rollups`). Defaults sized for a Raspberry Pi with a 32 GB card
/// (README: space per 1,000 entities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// Days raw points are kept, 1..=3650, at least `analysis.window_days` while the analysis is
    /// on; 0 keeps them forever. Unset: [`DEFAULT_RAW_DAYS`], or the analysis window when that
    /// is longer (so raising `analysis.window_days` alone never makes the settings invalid).
    pub raw_days: Option<u32>,
    /// Days of 5-minute rollups; 0 turns the 5-minute tier off (it is still computed, and kept
    /// two days, where local days do not start on a whole UTC hour).
    pub five_minute_days: u32,
    /// Days of hourly rollups.
    pub hourly_days: u32,
    /// Days of daily rollups (also the longest range an aggregate may span).
    pub daily_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            raw_days: None,
            five_minute_days: 7,
            hourly_days: 365,
            daily_days: 3_650,
        }
    }
}

/// Default of `retention.raw_days`: the default analysis window (the least the analysis needs).
/// For 1,000 sensors changing once a minute that is about 260 MB in InfluxDB and 2.0 GB in the
/// embedded store (46.7 bytes a point; README, benchmarks).
pub(crate) const DEFAULT_RAW_DAYS: u32 = 30;

impl RetentionSettings {
    /// Days raw points are kept with these settings, `None` when forever (`raw_days: 0`).
    pub(crate) fn raw_days_in_effect(&self, analysis: &AnalysisSettings) -> Option<u32> {
        match self.raw_days {
            Some(0) => None,
            Some(days) => Some(days),
            None if analysis.enabled => Some(DEFAULT_RAW_DAYS.max(analysis.window_days)),
            None => Some(DEFAULT_RAW_DAYS),
        }
    }

    /// Every problem of the `retention` section, each naming its key; `analysis`: the analysis
    /// settings, whose window the raw points must cover.
    fn problems(&self, analysis: &AnalysisSettings) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Some(raw_days) = self.raw_days.filter(|d| *d != 0) {
            if let Err(e) = check_range("retention.raw_days", raw_days, 1, 3_650) {
                problems.push(e);
            } else if analysis.enabled && raw_days < analysis.window_days {
                problems.push(ConfigError::invalid(
                    "retention.raw_days",
                    format!(
                        "{} is shorter than analysis.window_days ({}): the analysis reads raw \
                         points; raise retention.raw_days, lower analysis.window_days or turn \
                         analysis.enabled off",
                        raw_days, analysis.window_days
                    ),
                ));
            }
        }
        problems
    }
}

/// `storage_guard.*`: the watch on the data directory's file system.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageGuardSettings {
    /// Used share of the file system (percent) from which `/health/deep` warns, 1..=99.
    pub warning_percent: u8,
    /// Used share (percent) from which the storage is critical and HomeIQ protects the device
    /// (no heartbeat rewrites; a shorter raw retention with `may_shorten_raw`); above
    /// `warning_percent`, at most 99.
    pub critical_percent: u8,
    /// Whether HomeIQ may keep raw points for less than `retention.raw_days` while the storage
    /// is critical (halved, never below `analysis.window_days`, nor below one day).
    pub may_shorten_raw: bool,
}

impl Default for StorageGuardSettings {
    fn default() -> Self {
        StorageGuardSettings {
            warning_percent: 80,
            critical_percent: 90,
            may_shorten_raw: false,
        }
    }
}

impl StorageGuardSettings {
    /// Every problem of the `storage_guard` section, each naming its key.
    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = check_range("storage_guard.warning_percent", self.warning_percent, 1, 99) {
            problems.push(e);
        }
        if self.critical_percent <= self.warning_percent || self.critical_percent > 99 {
            problems.push(ConfigError::invalid(
                "storage_guard.critical_percent",
                format!(
                    "{} must be above storage_guard.warning_percent ({}) and at most 99",
                    self.critical_percent, self.warning_percent
                ),
            ));
        }
        problems
    }
}

/// `analysis.*`: the pattern analysis (habits learned from the home's own history, see
/// `crate::patterns`). The thresholds default to those of the system HomeIQ replaces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisSettings {
    /// Whether analyses run (nightly and on request).
    pub enabled: bool,
    /// Days of history one analysis reads, 7..=365.
    pub window_days: u32,
    /// Occurrences a daily time-of-day pattern needs over `window_days` (weekday and weekend
    /// patterns need proportionally fewer: `ceil(min × their days / window_days)`).
    pub min_occurrences: u32,
    /// Confidence a pattern needs, 0..=1.
    pub min_confidence: f64,
    /// Co-occurrence support (trigger occurrences followed by the action) a sequence needs.
    pub min_support: u32,
    /// Per-domain thresholds (a list: the add-on schema takes no maps); an unset value keeps the
    /// general one. Security-relevant entities never go below
    /// `patterns::SECURITY_MIN_CONFIDENCE` whatever is set here.
    pub domain_overrides: Vec<DomainOverride>,
    /// How long after the trigger the action may follow to count as a sequence, seconds.
    pub co_occurrence_window_seconds: u32,
    /// Local time (`HH:MM`, the home's time zone) of the nightly analysis.
    pub schedule: String,
    /// Hours a requested analysis must wait after the previous requested one (0: no wait).
    pub manual_cooldown_hours: u32,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        let domain =
            |domain: &str, occ: Option<u32>, conf: f64, support: Option<u32>| DomainOverride {
                domain: domain.into(),
                min_occurrences: occ,
                min_confidence: Some(conf),
                min_support: support,
            };
        AnalysisSettings {
            enabled: true,
            window_days: 30,
            min_occurrences: 10,
            min_confidence: 0.7,
            min_support: 10,
            domain_overrides: vec![
                domain("light", Some(8), 0.6, Some(6)),
                domain("switch", Some(8), 0.6, Some(6)),
                domain("media_player", Some(6), 0.6, Some(4)),
                domain("lock", Some(4), 0.85, Some(4)),
                domain("climate", None, 0.75, None),
            ],
            co_occurrence_window_seconds: 300,
            schedule: "03:00".into(),
            manual_cooldown_hours: 24,
        }
    }
}

impl AnalysisSettings {
    /// The nightly run's local time (`schedule`), or the error naming the key.
    pub fn schedule_time(&self) -> Result<chrono::NaiveTime, ConfigError> {
        let s = self.schedule.trim();
        let parsed = match s.split_once(':') {
            Some((h, m)) if h.len() == 2 && m.len() == 2 => h
                .parse::<u32>()
                .ok()
                .zip(m.parse::<u32>().ok())
                .and_then(|(h, m)| chrono::NaiveTime::from_hms_opt(h, m, 0)),
            _ => None,
        };
        parsed.ok_or_else(|| {
            ConfigError::invalid(
                "analysis.schedule",
                format!("`{s}` is not a local time HH:MM (00:00..23:59)"),
            )
        })
    }

    /// Every problem of the `analysis` section, each naming its key.
    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut check = |result: Result<(), ConfigError>| {
            if let Err(e) = result {
                problems.push(e);
            }
        };
        check(check_range(
            "analysis.window_days",
            self.window_days,
            7,
            365,
        ));
        check(check_range(
            "analysis.min_occurrences",
            self.min_occurrences,
            1,
            10_000,
        ));
        check(check_confidence(
            "analysis.min_confidence",
            self.min_confidence,
        ));
        check(check_range(
            "analysis.min_support",
            self.min_support,
            1,
            100_000,
        ));
        check(check_range(
            "analysis.co_occurrence_window_seconds",
            self.co_occurrence_window_seconds,
            10,
            3_600,
        ));
        check(self.schedule_time().map(drop));
        check(check_range(
            "analysis.manual_cooldown_hours",
            self.manual_cooldown_hours,
            0,
            24 * 30,
        ));
        let mut seen = std::collections::BTreeSet::new();
        for (i, o) in self.domain_overrides.iter().enumerate() {
            let key = |field: &str| format!("analysis.domain_overrides[{i}].{field}");
            let domain = o.domain.trim();
            if domain.is_empty()
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                check(Err(ConfigError::invalid(
                    &key("domain"),
                    format!("`{domain}` is not a domain (lower-case letters, digits, _)"),
                )));
            } else if !seen.insert(domain) {
                check(Err(ConfigError::invalid(
                    &key("domain"),
                    format!("`{domain}` is listed twice"),
                )));
            }
            if let Some(v) = o.min_occurrences {
                check(check_range(&key("min_occurrences"), v, 1, 10_000));
            }
            if let Some(v) = o.min_confidence {
                check(check_confidence(&key("min_confidence"), v));
            }
            if let Some(v) = o.min_support {
                check(check_range(&key("min_support"), v, 1, 100_000));
            }
        }
        problems
    }
}

/// `llm.*`: an OpenAI-compatible chat-completions endpoint (OpenAI, a local Ollama, LM Studio,
/// vLLM…) that rewrites a suggestion's title and explanation in plain language (`crate::llm`).
/// Off by default; a suggestion is complete without it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmSettings {
    /// Whether suggestions are reworded by the LLM.
    pub enabled: bool,
    /// The OpenAI-style base URL, as the OpenAI SDKs take it (`https://api.openai.com/v1`,
    /// `http://192.168.1.20:11434/v1`); `/chat/completions` is added. A URL without a path gets
    /// `/v1` first. Its user information is never shown.
    #[serde(serialize_with = "serialize_redacted")]
    pub base_url: String,
    /// The model name (`gpt-4o-mini`, `llama3.2`); required when enabled.
    pub model: String,
    /// Sent as `Authorization: Bearer` when set (a local Ollama needs none).
    pub api_key: Option<Secret>,
    /// Timeout of one request, seconds, 1..=300.
    pub timeout_seconds: u64,
    /// Requests sent in any 24 hours at most (a rolling window), 1..=100000.
    pub daily_request_budget: u32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            enabled: false,
            base_url: String::new(),
            model: String::new(),
            api_key: None,
            timeout_seconds: 20,
            daily_request_budget: 200,
        }
    }
}

impl LlmSettings {
    /// Every problem of the `llm` section, each naming its key. `base_url` is checked whenever it
    /// is set; it and `model` are required only when `enabled`.
    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let base_url = self.base_url.trim();
        if !base_url.is_empty() {
            if let Err(e) = check_url("llm.base_url", base_url, &["http", "https"]) {
                problems.push(e);
            }
        } else if self.enabled {
            problems.push(ConfigError::invalid(
                "llm.base_url",
                "required when llm.enabled is true (e.g. https://api.openai.com/v1 or \
                 http://<ollama host>:11434/v1)",
            ));
        }
        if self.enabled && self.model.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "llm.model",
                "required when llm.enabled is true (e.g. gpt-4o-mini or llama3.2)",
            ));
        }
        if let Err(e) = check_range("llm.timeout_seconds", self.timeout_seconds, 1, 300) {
            problems.push(e);
        }
        if let Err(e) = check_range(
            "llm.daily_request_budget",
            self.daily_request_budget,
            1,
            100_000,
        ) {
            problems.push(e);
        }
        problems
    }
}

/// A confidence threshold: a finite number in (0, 1].
fn check_confidence(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} is outside 0..=1 (0 excluded)"),
        ))
    }
}

/// One entry of `analysis.domain_overrides`: thresholds for the entities of one domain (for
/// co-occurrences, the domain of the entity that follows); unset values keep the general ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainOverride {
    /// The domain (`light`, `lock`).
    pub domain: String,
    /// Replaces `analysis.min_occurrences` for this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_occurrences: Option<u32>,
    /// Replaces `analysis.min_confidence` for this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
    /// Replaces `analysis.min_support` for this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_support: Option<u32>,
}

/// Where history is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageMode {
    /// The add-on's own InfluxDB 1.8 on 127.0.0.1:8086 (started by its run scripts).
    Sidecar,
    /// The InfluxDB at `influxdb.url`.
    External,
    /// HomeIQ's own embedded store: SQLite in `<data_dir>/history.db`; no InfluxDB is used.
    Embedded,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `http.*`: the REST API, health endpoints and the ingress panel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Address to listen on: an IP address, or `auto` = `0.0.0.0` when running as an add-on (the
    /// ingress gateway must reach it) and `127.0.0.1` otherwise. An address other machines can
    /// reach needs `api_token` (or a trusted `ingress_gateway`).
    pub bind: String,
    /// Port to listen on (the add-on's ingress port is 8099).
    pub port: u16,
    /// Bearer token required by the API when set (`/health` stays open).
    pub api_token: Option<Secret>,
    /// The ingress gateway's address: requests from it are trusted (the Supervisor already
    /// authenticated the user); others need `api_token`. `auto` = `172.30.32.2` when running as an
    /// add-on, `none` = no gateway.
    pub ingress_gateway: String,
    /// Folder of the built web panel (`index.html` and `assets/`): `auto` =
    /// [`PANEL_DIR_ADDON`] when it holds an `index.html`, else `frontend/dist` under the working
    /// directory (a checkout) when that does; `none` = no panel; else a path.
    pub panel_dir: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: "auto".into(),
            port: 8099,
            api_token: None,
            ingress_gateway: "auto".into(),
            panel_dir: "auto".into(),
        }
    }
}

/// `ha.*`: how to reach Home Assistant when not running as an add-on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HaSettings {
    /// Base URL of Home Assistant (`http://homeassistant.local:8123`); ignored under the Supervisor.
    #[serde(serialize_with = "serialize_redacted_opt")]
    pub url: Option<String>,
    /// Long-lived access token; ignored under the Supervisor (which provides `SUPERVISOR_TOKEN`).
    pub token: Option<Secret>,
    /// Capacity of the queue between the WebSocket reader and the pipeline, in messages.
    pub event_queue: usize,
    /// Seconds between WebSocket pings.
    pub ping_interval_secs: u64,
    /// Seconds to wait for a pong (or any reply) before the connection counts as dead.
    pub pong_timeout_secs: u64,
    /// First reconnect delay, seconds.
    pub reconnect_min_secs: f64,
    /// Largest reconnect delay, seconds.
    pub reconnect_max_secs: f64,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            url: None,
            token: None,
            event_queue: 20_000,
            ping_interval_secs: 30,
            pong_timeout_secs: 10,
            reconnect_min_secs: 1.0,
            reconnect_max_secs: 300.0,
        }
    }
}

/// The InfluxDB schema HomeIQ writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaMode {
    /// HomeIQ's schema: measurement per domain, full entity id and registry tags.
    Homeiq,
    /// Exactly what Home Assistant's own InfluxDB integration writes.
    HaCompat,
}

/// `influxdb.*`: the InfluxDB 1.x HTTP API (also InfluxDB 2.x/3 through their v1 endpoints).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InfluxSettings {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// Database (created when missing).
    pub database: String,
    /// Retention policy to write to (the database default when unset).
    pub retention_policy: Option<String>,
    /// User name for InfluxDB 1.x authentication.
    pub username: Option<String>,
    /// Password for InfluxDB 1.x authentication.
    pub password: Option<Secret>,
    /// Token for InfluxDB 2.x/3 (`Authorization: Token …`); wins over user/password.
    pub token: Option<Secret>,
    /// `homeiq` or `ha_compat`.
    pub schema: SchemaMode,
    /// Points per write request.
    pub batch_size: usize,
    /// Longest time a point waits for its batch to fill, milliseconds.
    pub flush_interval_ms: u64,
    /// Points held in memory while InfluxDB is slow or down; the oldest are dropped beyond it.
    pub queue_capacity: usize,
    /// Write requests in flight at once.
    pub max_in_flight: usize,
    /// Timeout of every request, seconds.
    pub timeout_secs: u64,
    /// Compress write bodies with gzip.
    pub gzip: bool,
    /// `ha_compat`: which attribute names the measurement (`unit_of_measurement`,
    /// `domain__device_class` or `entity_id`), as the integration's `measurement_attr`.
    pub measurement_attr: String,
    /// `ha_compat`: measurement when the chosen attribute is missing (default: the entity id).
    pub default_measurement: Option<String>,
    /// `ha_compat`: one measurement for everything.
    pub override_measurement: Option<String>,
    /// Attributes never written as fields.
    pub ignore_attributes: Vec<String>,
}

impl Default for InfluxSettings {
    fn default() -> Self {
        InfluxSettings {
            url: "http://127.0.0.1:8086".into(),
            database: "homeiq".into(),
            retention_policy: None,
            username: None,
            password: None,
            token: None,
            schema: SchemaMode::Homeiq,
            batch_size: 5_000,
            flush_interval_ms: 250,
            queue_capacity: 200_000,
            max_in_flight: 2,
            timeout_secs: 10,
            gzip: false,
            measurement_attr: "unit_of_measurement".into(),
            default_measurement: None,
            override_measurement: None,
            ignore_attributes: Vec::new(),
        }
    }
}

impl InfluxSettings {
    /// Timeout of every request.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Flush interval as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }
}

/// `spool.*`: batches InfluxDB cannot take yet are kept on disk (`<data_dir>/spool/`) and replayed
/// oldest first when it is back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SpoolSettings {
    /// Largest size on disk; beyond it the oldest spooled points are dropped (and counted).
    pub max_bytes: u64,
    /// Spooled points older than this are dropped (and counted), hours; 0 keeps them until
    /// `max_bytes` forces a drop.
    pub max_age_hours: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            max_bytes: 1 << 30,
            max_age_hours: 24 * 7,
        }
    }
}

/// `backfill.*`: after a reconnect or a restart, the missed interval is read from Home Assistant's
/// history and written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BackfillSettings {
    /// Whether gaps are backfilled.
    pub enabled: bool,
    /// The longest gap backfilled, hours (older history is left out and reported).
    pub window_hours: u64,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            enabled: true,
            window_hours: 24,
        }
    }
}

/// `import.*`: on first start (and on request) HomeIQ reads the states and long-term statistics
/// Home Assistant's recorder already holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportSettings {
    /// Whether the import runs by itself on HomeIQ's first start (`POST /api/v1/import` works
    /// either way).
    pub on_first_start: bool,
    /// Requests to Home Assistant per second at most, so it stays responsive.
    pub requests_per_second: u32,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            on_first_start: true,
            requests_per_second: 5,
        }
    }
}

/// `heartbeat.*`: re-write every recorded entity's current value periodically so graphs have no
/// gaps (HA's own integration cannot).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HeartbeatSettings {
    /// Minutes between re-writes; 0 turns the heartbeat off (the default).
    pub interval_minutes: u64,
}

/// `include.*` / `exclude.*`: which entities are recorded, as in Home Assistant's own filters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityFilterSettings {
    /// Whole domains (`light`, `sensor`).
    pub domains: Vec<String>,
    /// Exact entity ids.
    pub entities: Vec<String>,
    /// Globs over entity ids (`sensor.*_power`).
    pub entity_globs: Vec<String>,
}

impl EntityFilterSettings {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.entities.is_empty() && self.entity_globs.is_empty()
    }
}

/// Where configuration is read from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// File given by `--config`.
    pub config_file: Option<PathBuf>,
    /// Add-on options file (default `/data/options.json`).
    pub options_file: Option<PathBuf>,
    /// Whether HomeIQ runs as an add-on (`SUPERVISOR_TOKEN` is set): what `auto` means for
    /// `http.bind` and `http.ingress_gateway`.
    pub supervisor: bool,
}

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "include.domains",
    "include.entities",
    "include.entity_globs",
    "exclude.domains",
    "exclude.entities",
    "exclude.entity_globs",
    "influxdb.ignore_attributes",
];

impl Settings {
    /// Loads settings from every layer and validates them. Returns the settings and the keys that
    /// were present but unknown (to be logged as warnings once logging is up), or every problem
    /// found with what could still be read ([`InvalidConfig`]).
    pub fn load(sources: &ConfigSources) -> Result<(Settings, Vec<String>), InvalidConfig> {
        Self::load_with_env(sources, environment())
    }

    /// [`Settings::load`] with an explicit environment source (tests pass a map).
    pub fn load_with_env(
        sources: &ConfigSources,
        env: config::Environment,
    ) -> Result<(Settings, Vec<String>), InvalidConfig> {
        let options = sources
            .options_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OPTIONS_FILE));
        let merged = merge(sources, &options, env).map_err(|e| InvalidConfig {
            errors: vec![e],
            fallback: FallbackSettings::new(&Settings::default(), sources.supervisor),
        })?;
        let fallback = FallbackSettings::from_merged(&merged, sources.supervisor);
        let invalid = |errors: Vec<ConfigError>| InvalidConfig {
            errors,
            fallback: fallback.clone(),
        };

        let provenance = provenance(&merged, sources.config_file.as_deref(), &options);
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(path.to_string());
        let ignored = serde_ignored::Deserializer::new(merged, &mut note_unknown);
        let mut settings: Settings = serde_path_to_error::deserialize(ignored).map_err(|e| {
            let key = e.path().to_string();
            invalid(vec![ConfigError::invalid(&key, e.into_inner().to_string())])
        })?;
        let problems = settings.problems(sources.supervisor);
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        // `HOMEIQ_OPTIONS_FILE` names a source, not a setting
        unknown.retain(|key| key != "options_file");
        settings.provenance = provenance
            .into_iter()
            .filter(|(key, _)| !unknown.contains(key) && key != "options_file")
            .collect();
        Ok((settings, unknown))
    }

    /// Checks values that types alone cannot: URLs, ranges, non-empty names. Returns the first
    /// problem; [`Settings::problems`] lists them all. `supervisor`: running as an add-on.
    pub fn validate(&self, supervisor: bool) -> Result<(), ConfigError> {
        match self.problems(supervisor).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every value types alone cannot check that is wrong (URLs, ranges, non-empty names, an API
    /// open to the network), each naming its key; empty when the settings are valid.
    /// `supervisor`: running as an add-on.
    pub fn problems(&self, supervisor: bool) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut check = |result: Result<(), ConfigError>| {
            if let Err(e) = result {
                problems.push(e);
            }
        };
        if self.data_dir.as_os_str().is_empty() {
            check(Err(ConfigError::invalid("data_dir", "must not be empty")));
        }
        if self.http.port == 0 {
            check(Err(ConfigError::invalid("http.port", "must be 1..65535")));
        }
        check(self.bind_setting().map(drop));
        check(self.exposure(supervisor));
        if self.http.panel_dir.trim().is_empty() {
            check(Err(ConfigError::invalid(
                "http.panel_dir",
                "must be `auto`, `none` or a folder",
            )));
        }
        if let Some(url) = &self.ha.url {
            check(check_url("ha.url", url, &["http", "https", "ws", "wss"]));
        }
        check(check_url(
            "influxdb.url",
            &self.influxdb.url,
            &["http", "https"],
        ));
        if self.influxdb.database.trim().is_empty() {
            check(Err(ConfigError::invalid(
                "influxdb.database",
                "must not be empty",
            )));
        }
        check(check_range(
            "influxdb.batch_size",
            self.influxdb.batch_size,
            1,
            100_000,
        ));
        check(check_range(
            "influxdb.queue_capacity",
            self.influxdb.queue_capacity,
            self.influxdb.batch_size,
            50_000_000,
        ));
        check(check_range(
            "influxdb.max_in_flight",
            self.influxdb.max_in_flight,
            1,
            16,
        ));
        check(check_range(
            "influxdb.timeout_secs",
            self.influxdb.timeout_secs,
            1,
            600,
        ));
        check(check_range(
            "influxdb.flush_interval_ms",
            self.influxdb.flush_interval_ms,
            1,
            60_000,
        ));
        if !["unit_of_measurement", "domain__device_class", "entity_id"]
            .contains(&self.influxdb.measurement_attr.as_str())
        {
            check(Err(ConfigError::invalid(
                "influxdb.measurement_attr",
                "must be unit_of_measurement, domain__device_class or entity_id",
            )));
        }
        check(check_range(
            "ha.event_queue",
            self.ha.event_queue,
            100,
            10_000_000,
        ));
        check(check_range(
            "spool.max_bytes",
            self.spool.max_bytes,
            1 << 20,
            1 << 40,
        ));
        check(check_range(
            "backfill.window_hours",
            self.backfill.window_hours,
            1,
            24 * 30,
        ));
        check(check_range(
            "import.requests_per_second",
            self.import.requests_per_second,
            1,
            100,
        ));
        check(check_range(
            "retention.five_minute_days",
            self.retention.five_minute_days,
            0,
            3_650,
        ));
        check(check_range(
            "retention.hourly_days",
            self.retention.hourly_days,
            1,
            36_500,
        ));
        check(check_range(
            "retention.daily_days",
            self.retention.daily_days,
            1,
            36_500,
        ));
        check(check_range(
            "heartbeat.interval_minutes",
            self.heartbeat.interval_minutes,
            0,
            24 * 60,
        ));
        check(check_range(
            "ha.ping_interval_secs",
            self.ha.ping_interval_secs,
            1,
            3_600,
        ));
        check(check_range(
            "ha.pong_timeout_secs",
            self.ha.pong_timeout_secs,
            1,
            600,
        ));
        if !(self.ha.reconnect_min_secs > 0.0
            && self.ha.reconnect_min_secs <= self.ha.reconnect_max_secs)
        {
            check(Err(ConfigError::invalid(
                "ha.reconnect_min_secs",
                "must be > 0 and <= ha.reconnect_max_secs",
            )));
        }
        for (side, filter) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, glob) in filter.entity_globs.iter().enumerate() {
                check(globset::Glob::new(glob).map(drop).map_err(|e| {
                    ConfigError::invalid(&format!("{side}.entity_globs[{i}]"), e.to_string())
                }));
            }
        }
        check(self.ingress_gateway().map(drop));
        check(check_range(
            "api.rate_limit_per_second",
            self.api.rate_limit_per_second,
            0,
            1_000_000,
        ));
        check(check_range(
            "api.rate_limit_burst",
            self.api.rate_limit_burst,
            1,
            1_000_000,
        ));
        check(check_range(
            "api.max_history_days",
            self.api.max_history_days,
            1,
            3_650,
        ));
        check(check_range("api.cache_mb", self.api.cache_mb, 0, 1_024));
        let w = &self.webhooks;
        check(check_range("webhooks.max_attempts", w.max_attempts, 1, 100));
        check(check_range(
            "webhooks.max_age_hours",
            w.max_age_hours,
            1,
            24 * 30,
        ));
        check(check_range("webhooks.timeout_secs", w.timeout_secs, 1, 300));
        check(check_range(
            "webhooks.log_retention_days",
            w.log_retention_days,
            1,
            365,
        ));
        check(check_range(
            "webhooks.concurrency_per_target",
            w.concurrency_per_target,
            1,
            64,
        ));
        check(check_range(
            "webhooks.rate_limit_per_minute",
            w.rate_limit_per_minute,
            1,
            60_000,
        ));
        check(check_range(
            "webhooks.max_pending_per_target",
            w.max_pending_per_target,
            1,
            1_000_000,
        ));
        if !(w.retry_min_secs.is_finite() && (0.1..=3_600.0).contains(&w.retry_min_secs)) {
            check(Err(ConfigError::invalid(
                "webhooks.retry_min_secs",
                "must be 0.1..=3600",
            )));
        }
        if !(w.retry_max_secs.is_finite()
            && w.retry_max_secs >= w.retry_min_secs
            && w.retry_max_secs <= 86_400.0)
        {
            check(Err(ConfigError::invalid(
                "webhooks.retry_max_secs",
                "must be >= webhooks.retry_min_secs and <= 86400",
            )));
        }
        for problem in self.analysis.problems() {
            check(Err(problem));
        }
        for problem in self.llm.problems() {
            check(Err(problem));
        }
        for problem in self.retention.problems(&self.analysis) {
            check(Err(problem));
        }
        for problem in self.storage_guard.problems() {
            check(Err(problem));
        }
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log_level)
                .map(drop)
                .map_err(|e| ConfigError::invalid("log_level", e.to_string())),
        );
        problems
    }

    /// The folder the panel is served from (`http.panel_dir` with `auto` resolved), or `None` when
    /// there is no panel (`none`, or `auto` finding no built panel).
    pub fn panel_dir(&self) -> Option<PathBuf> {
        match self.http.panel_dir.trim() {
            "none" => None,
            "auto" => [
                PathBuf::from(PANEL_DIR_ADDON),
                PathBuf::from("frontend").join("dist"),
            ]
            .into_iter()
            .find(|d| d.join("index.html").is_file()),
            dir => Some(PathBuf::from(dir)),
        }
    }

    /// The trusted ingress gateway (`http.ingress_gateway`) before `auto` is resolved: `Ok(None)`
    /// for `auto`, the address otherwise; `none` and an empty value give `Some(None)`.
    fn ingress_gateway(&self) -> Result<Option<Option<IpAddr>>, ConfigError> {
        match self.http.ingress_gateway.trim() {
            "auto" => Ok(None),
            "" | "none" => Ok(Some(None)),
            ip => ip.parse().map(|ip| Some(Some(ip))).map_err(|_| {
                ConfigError::invalid(
                    "http.ingress_gateway",
                    format!("`{ip}` is not an IP address, `auto` or `none`"),
                )
            }),
        }
    }

    /// `http.bind` before `auto` is resolved: `None` for `auto`.
    fn bind_setting(&self) -> Result<Option<IpAddr>, ConfigError> {
        match self.http.bind.trim() {
            "auto" => Ok(None),
            ip => ip.parse().map(Some).map_err(|_| {
                ConfigError::invalid(
                    "http.bind",
                    format!("`{ip}` is not an IP address or `auto`"),
                )
            }),
        }
    }

    /// The address to listen on: `http.bind`, where `auto` means `0.0.0.0` when running as an
    /// add-on (`supervisor`: the ingress gateway and the watchdog reach HomeIQ from outside the
    /// container) and `127.0.0.1` otherwise.
    pub fn listen_address(&self, supervisor: bool) -> IpAddr {
        match self.bind_setting() {
            Ok(Some(ip)) => ip,
            Ok(None) | Err(_) => default_bind(supervisor),
        }
    }

    /// An API other machines can reach with nothing to tell who may use it: a non-loopback
    /// address, no `http.api_token` and no trusted ingress gateway.
    fn exposure(&self, supervisor: bool) -> Result<(), ConfigError> {
        let address = self.listen_address(supervisor);
        let token = self.http.api_token.as_ref().is_some_and(|t| !t.is_empty());
        if address.is_loopback() || token || self.trusted_gateway(supervisor).is_some() {
            return Ok(());
        }
        Err(ConfigError::invalid(
            "http.bind",
            format!(
                "`{address}` lets other machines reach the API, which has no http.api_token: \
                 anyone on the network could read the home's history and create webhooks; \
                 set http.api_token, or bind 127.0.0.1"
            ),
        ))
    }

    /// The ingress gateway whose requests are trusted: `http.ingress_gateway`, where `auto` means
    /// the Supervisor's `172.30.32.2` when running as an add-on (`supervisor` is true).
    pub fn trusted_gateway(&self, supervisor: bool) -> Option<IpAddr> {
        match self.ingress_gateway() {
            Ok(Some(explicit)) => explicit,
            Ok(None) => supervisor.then_some(IpAddr::V4(std::net::Ipv4Addr::new(172, 30, 32, 2))),
            Err(_) => None,
        }
    }

    /// How to reach Home Assistant: the Supervisor proxy when `supervisor_token` is given,
    /// otherwise `ha.url` + `ha.token`.
    pub fn ha_endpoint(&self, supervisor_token: Option<&str>) -> Result<HaEndpoint, ConfigError> {
        if let Some(token) = supervisor_token.filter(|t| !t.is_empty()) {
            return Ok(HaEndpoint {
                websocket_url: SUPERVISOR_WS_URL.into(),
                rest_url: SUPERVISOR_REST_URL.into(),
                token: Secret::new(token),
                supervisor: true,
            });
        }
        let base = self.ha.url.as_deref().ok_or_else(|| {
            ConfigError::invalid(
                "ha.url",
                "required when SUPERVISOR_TOKEN is not set (e.g. http://homeassistant.local:8123)",
            )
        })?;
        let token = self
            .ha
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ConfigError::invalid("ha.token", "required when SUPERVISOR_TOKEN is not set")
            })?;
        let mut url =
            Url::parse(base).map_err(|e| ConfigError::invalid("ha.url", e.to_string()))?;
        let (ws_scheme, http_scheme) = match url.scheme() {
            "https" | "wss" => ("wss", "https"),
            _ => ("ws", "http"),
        };
        let path = url.path().trim_end_matches('/').to_owned();
        // a URL that already names the WebSocket endpoint is taken as the base above it
        let base_path = path
            .strip_suffix("/api/websocket")
            .unwrap_or(&path)
            .to_owned();
        url.set_path(&format!("{base_path}/api/websocket"));
        url.set_scheme(ws_scheme)
            .map_err(|()| ConfigError::invalid("ha.url", "cannot derive the WebSocket URL"))?;
        let websocket_url = url.to_string();
        url.set_path(&format!("{base_path}/api"));
        url.set_scheme(http_scheme)
            .map_err(|()| ConfigError::invalid("ha.url", "cannot derive the REST URL"))?;
        Ok(HaEndpoint {
            websocket_url,
            rest_url: url.to_string(),
            token,
            supervisor: false,
        })
    }

    /// Path of the SQLite metadata database ([`METADATA_DB_FILE`] in the data directory).
    pub fn metadata_db_path(&self) -> PathBuf {
        self.data_dir.join(METADATA_DB_FILE)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Resolved Home Assistant addresses and credentials.
#[derive(Debug, Clone)]
pub struct HaEndpoint {
    /// WebSocket API URL.
    pub websocket_url: String,
    /// REST API base URL (ends in `/api`).
    pub rest_url: String,
    /// Access token.
    pub token: Secret,
    /// Whether this goes through the Supervisor proxy.
    pub supervisor: bool,
}

/// The `HOMEIQ_*` variables of `vars` instead of the process's environment, parsed as the
/// environment is: for [`Settings::load_with_env`] in tests and the in-process test application.
pub fn environment_of(vars: HashMap<String, String>) -> config::Environment {
    environment().source(Some(vars))
}

/// The `HOMEIQ_*` environment as a configuration source.
fn environment() -> config::Environment {
    let env = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    LIST_KEYS
        .iter()
        .fold(env, |env, key| env.with_list_parse_key(key))
}

/// Every layer merged: the `--config` file, the add-on options, the environment.
fn merge(
    sources: &ConfigSources,
    options: &Path,
    env: config::Environment,
) -> Result<config::Config, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = &sources.config_file {
        if !file.exists() {
            return Err(ConfigError::source(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        builder = builder.add_source(config::File::from(file.as_path()).required(true));
    }
    builder = builder.add_source(
        config::File::from(options)
            .format(config::FileFormat::Json)
            .required(false),
    );
    builder
        .add_source(env)
        .build()
        .map_err(|e| ConfigError::source(e.to_string()))
}

/// The configuration could not be used: every problem found (at least one), each naming its key
/// where it has one, and the few settings still readable so HomeIQ can log and answer health.
#[derive(Debug)]
pub struct InvalidConfig {
    /// The problems, in the order found. A value of the wrong type stops reading, so it is
    /// reported alone; values of the right type but out of range are all reported.
    pub errors: Vec<ConfigError>,
    /// What could still be read (defaults where nothing valid was given).
    pub fallback: FallbackSettings,
}

impl InvalidConfig {
    /// The key of the first problem, if it names one.
    pub fn key(&self) -> Option<&str> {
        self.errors.first().and_then(ConfigError::key)
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidConfig {}

/// Settings read one by one from a configuration that is invalid as a whole: where to listen and
/// how to log while HomeIQ reports the problem. A value that is itself invalid falls back to its
/// default.
#[derive(Debug, Clone)]
pub struct FallbackSettings {
    /// `http.bind`, when it is an IP address; else what `auto` means here.
    pub bind: String,
    /// `http.port`, when it is 1..65535.
    pub port: u16,
    /// `log_level`, when it is a valid filter.
    pub log_level: String,
    /// `log_format`.
    pub log_format: LogFormat,
}

impl FallbackSettings {
    /// From valid settings (`supervisor`: running as an add-on, for `http.bind = auto`).
    pub fn new(settings: &Settings, supervisor: bool) -> Self {
        FallbackSettings {
            bind: settings.listen_address(supervisor).to_string(),
            port: settings.http.port,
            log_level: settings.log_level.clone(),
            log_format: settings.log_format,
        }
    }

    fn from_merged(merged: &config::Config, supervisor: bool) -> Self {
        let defaults = FallbackSettings::new(&Settings::default(), supervisor);
        FallbackSettings {
            bind: merged
                .get::<String>("http.bind")
                .ok()
                .and_then(|b| b.trim().parse::<IpAddr>().ok())
                .map_or(defaults.bind, |ip| ip.to_string()),
            port: merged
                .get::<u16>("http.port")
                .ok()
                .filter(|p| *p != 0)
                .unwrap_or(defaults.port),
            log_level: merged
                .get::<String>("log_level")
                .ok()
                .filter(|l| tracing_subscriber::EnvFilter::try_new(l).is_ok())
                .unwrap_or(defaults.log_level),
            log_format: merged
                .get::<LogFormat>("log_format")
                .unwrap_or(defaults.log_format),
        }
    }
}

/// What `http.bind = auto` means: every address under the Supervisor, loopback otherwise.
fn default_bind(supervisor: bool) -> IpAddr {
    if supervisor {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    }
}

fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let url = Url::parse(value)
        .map_err(|e| ConfigError::invalid(key, format!("`{value}` is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::invalid(
            key,
            format!("scheme must be one of {}", schemes.join(", ")),
        ));
    }
    if url.host_str().is_none() {
        return Err(ConfigError::invalid(key, "has no host"));
    }
    Ok(())
}

/// Where each key of the merged configuration came from: the `--config` file, the add-on options
/// or an environment variable. Keys absent from every layer keep their defaults.
fn provenance(
    merged: &config::Config,
    config_file: Option<&Path>,
    options_file: &Path,
) -> BTreeMap<String, String> {
    fn walk(
        prefix: &str,
        table: &config::Map<String, config::Value>,
        out: &mut BTreeMap<String, String>,
        describe: &dyn Fn(&str, Option<&str>) -> String,
    ) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match &value.kind {
                config::ValueKind::Table(inner) => walk(&path, inner, out, describe),
                _ => {
                    let source = describe(&path, value.origin());
                    out.insert(path, source);
                }
            }
        }
    }
    let options = options_file.display().to_string();
    let file = config_file.map(|f| f.display().to_string());
    let describe = |key: &str, origin: Option<&str>| match origin {
        Some(o) if o == options => format!("add-on options ({o})"),
        Some(o) if Some(o) == file.as_deref() => format!("config file ({o})"),
        _ => format!(
            "environment ({ENV_PREFIX}_{})",
            key.to_uppercase().replace('.', "__")
        ),
    };
    let mut out = BTreeMap::new();
    if let config::ValueKind::Table(table) = &merged.cache.kind {
        walk("", table, &mut out, &describe);
    }
    out
}

fn check_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        environment_of(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn no_options() -> ConfigSources {
        ConfigSources {
            config_file: None,
            options_file: Some(PathBuf::from("/nonexistent/options.json")),
            supervisor: false,
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let (s, unknown) = Settings::load_with_env(&no_options(), env(&[])).expect("loads");
        assert!(unknown.is_empty());
        assert_eq!(s.http.port, 8099);
        assert_eq!(s.influxdb.database, "homeiq");
        assert_eq!(s.influxdb.schema, SchemaMode::Homeiq);
    }

    #[test]
    fn layers_apply_in_order_file_options_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("homeiq.toml");
        std::fs::File::create(&file)
            .and_then(|mut f| {
                f.write_all(b"data_dir = \"/from-file\"\n[http]\nport = 9000\n[influxdb]\ndatabase = \"file_db\"\n")
            })
            .expect("write");
        let options = dir.path().join("options.json");
        std::fs::write(
            &options,
            br#"{"http":{"port":9100},"influxdb":{"schema":"ha_compat"}}"#,
        )
        .expect("write");
        let sources = ConfigSources {
            config_file: Some(file),
            options_file: Some(options),
            supervisor: false,
        };
        let (s, _) = Settings::load_with_env(
            &sources,
            env(&[
                ("HOMEIQ_HTTP__PORT", "9200"),
                ("HOMEIQ_INCLUDE__DOMAINS", "light,sensor"),
                ("HOMEIQ_HTTP__API_TOKEN", "12345"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.data_dir, PathBuf::from("/from-file"));
        assert_eq!(s.influxdb.database, "file_db");
        assert_eq!(s.influxdb.schema, SchemaMode::HaCompat);
        assert_eq!(s.http.port, 9200);
        assert_eq!(s.include.domains, vec!["light", "sensor"]);
        assert_eq!(s.http.api_token.as_ref().map(Secret::expose), Some("12345"));
    }

    #[test]
    fn webhook_targets_are_guarded_and_outboxes_capped_by_default() {
        let (s, _) = Settings::load_with_env(&no_options(), env(&[])).expect("loads");
        assert!(!s.webhooks.allow_internal_targets);
        assert_eq!(s.webhooks.max_pending_per_target, 10_000);
        let (s, _) = Settings::load_with_env(
            &no_options(),
            env(&[
                ("HOMEIQ_WEBHOOKS__ALLOW_INTERNAL_TARGETS", "true"),
                ("HOMEIQ_WEBHOOKS__MAX_PENDING_PER_TARGET", "50"),
            ]),
        )
        .expect("loads");
        assert!(s.webhooks.allow_internal_targets);
        assert_eq!(s.webhooks.max_pending_per_target, 50);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("HOMEIQ_INFLUXDB__SCHEMA", "grafana", "influxdb.schema"),
            ("HOMEIQ_STORAGE", "cloud", "storage"),
            ("HOMEIQ_HTTP__PORT", "70000", "http.port"),
            ("HOMEIQ_HTTP__PORT", "0", "http.port"),
            ("HOMEIQ_INFLUXDB__URL", "not a url", "influxdb.url"),
            ("HOMEIQ_INFLUXDB__BATCH_SIZE", "0", "influxdb.batch_size"),
            ("HOMEIQ_HA__URL", "ftp://x", "ha.url"),
            (
                "HOMEIQ_WEBHOOKS__MAX_ATTEMPTS",
                "0",
                "webhooks.max_attempts",
            ),
            (
                "HOMEIQ_WEBHOOKS__RETRY_MAX_SECS",
                "0.01",
                "webhooks.retry_max_secs",
            ),
            (
                "HOMEIQ_WEBHOOKS__RATE_LIMIT_PER_MINUTE",
                "x",
                "webhooks.rate_limit_per_minute",
            ),
            (
                "HOMEIQ_WEBHOOKS__MAX_PENDING_PER_TARGET",
                "0",
                "webhooks.max_pending_per_target",
            ),
            (
                "HOMEIQ_WEBHOOKS__ALLOW_INTERNAL_TARGETS",
                "maybe",
                "webhooks.allow_internal_targets",
            ),
            (
                "HOMEIQ_INCLUDE__ENTITY_GLOBS",
                "sensor.[",
                "include.entity_globs[0]",
            ),
        ];
        for (var, value, key) in cases {
            let err = Settings::load_with_env(&no_options(), env(&[(var, value)]))
                .expect_err(&format!("{var}={value} must fail"));
            assert_eq!(err.key(), Some(key), "{var}={value}: {err}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn every_out_of_range_value_is_reported_with_a_fallback_address() {
        let err = Settings::load_with_env(
            &no_options(),
            env(&[
                ("HOMEIQ_INFLUXDB__BATCH_SIZE", "0"),
                ("HOMEIQ_WEBHOOKS__MAX_ATTEMPTS", "0"),
                ("HOMEIQ_HTTP__PORT", "9300"),
                ("HOMEIQ_HTTP__BIND", "not-an-ip"),
                ("HOMEIQ_LOG_FORMAT", "json"),
            ]),
        )
        .expect_err("must fail");
        let keys: Vec<_> = err.errors.iter().filter_map(ConfigError::key).collect();
        assert_eq!(
            keys,
            ["http.bind", "influxdb.batch_size", "webhooks.max_attempts"]
        );
        assert_eq!(err.fallback.port, 9300);
        assert_eq!(err.fallback.bind, "127.0.0.1", "an invalid bind falls back");
        assert_eq!(err.fallback.log_format, LogFormat::Json);
        // a value of the wrong type: reported alone, the rest still read for the fallback
        let err = Settings::load_with_env(
            &no_options(),
            env(&[("HOMEIQ_HTTP__PORT", "9301"), ("HOMEIQ_STORAGE", "cloud")]),
        )
        .expect_err("must fail");
        assert_eq!(err.key(), Some("storage"));
        assert_eq!(err.fallback.port, 9301);
    }

    #[test]
    fn bind_is_loopback_outside_the_addon_and_an_open_api_is_refused() {
        let (s, _) = Settings::load_with_env(&no_options(), env(&[])).expect("loads");
        assert_eq!(s.listen_address(false).to_string(), "127.0.0.1");
        assert_eq!(s.listen_address(true).to_string(), "0.0.0.0");
        let addon = ConfigSources {
            supervisor: true,
            ..no_options()
        };
        // under the Supervisor the gateway (auto) is trusted and others are refused: valid
        let (s, _) = Settings::load_with_env(&addon, env(&[])).expect("add-on defaults load");
        assert_eq!(s.listen_address(true).to_string(), "0.0.0.0");
        // everywhere else: every address, no token, no gateway is an error naming http.bind
        let err = Settings::load_with_env(&no_options(), env(&[("HOMEIQ_HTTP__BIND", "0.0.0.0")]))
            .expect_err("open API");
        assert_eq!(err.key(), Some("http.bind"));
        assert!(err.to_string().contains("api_token"), "{err}");
        assert_eq!(
            err.fallback.bind, "0.0.0.0",
            "reported where it was asked for"
        );
        let err = Settings::load_with_env(&addon, env(&[("HOMEIQ_HTTP__INGRESS_GATEWAY", "none")]))
            .expect_err("add-on without a gateway or token");
        assert_eq!(err.key(), Some("http.bind"));
        for ok in [
            &[
                ("HOMEIQ_HTTP__BIND", "0.0.0.0"),
                ("HOMEIQ_HTTP__API_TOKEN", "t0ken"),
            ][..],
            &[
                ("HOMEIQ_HTTP__BIND", "0.0.0.0"),
                ("HOMEIQ_HTTP__INGRESS_GATEWAY", "10.0.0.2"),
            ],
            &[("HOMEIQ_HTTP__BIND", "::1")],
            &[("HOMEIQ_HTTP__BIND", "127.0.0.2")],
        ] {
            Settings::load_with_env(&no_options(), env(ok)).expect("valid");
        }
    }

    #[test]
    fn url_userinfo_is_redacted_in_text_settings_and_errors() {
        assert_eq!(
            redact_urls("http://admin:pw@host:8086/x?y=1"),
            "http://***@host:8086/x?y=1"
        );
        assert_eq!(
            redact_urls("cannot connect to ws://u@h/api/websocket: refused (see https://a:b@c)"),
            "cannot connect to ws://***@h/api/websocket: refused (see https://***@c)"
        );
        assert_eq!(
            redact_urls("http://host/a@b"),
            "http://host/a@b",
            "@ in the path"
        );
        assert_eq!(redact_urls("mail me@x, no URL"), "mail me@x, no URL");
        assert_eq!(redact_urls("http://p:a@b@host"), "http://***@host");
        let (s, _) = Settings::load_with_env(
            &no_options(),
            env(&[
                ("HOMEIQ_INFLUXDB__URL", "http://admin:pw-influx@db.lan:8086"),
                ("HOMEIQ_HA__URL", "http://ha:pw-ha@ha.lan:8123"),
            ]),
        )
        .expect("loads");
        let json = serde_json::to_string(&s).expect("serialises");
        assert!(!json.contains("pw-"), "{json}");
        assert!(json.contains("http://***@db.lan:8086"), "{json}");
        assert_eq!(
            s.influxdb.url, "http://admin:pw-influx@db.lan:8086",
            "kept for use"
        );
        // a URL that does not parse is named in the error, without its password
        let err = Settings::load_with_env(
            &no_options(),
            env(&[("HOMEIQ_INFLUXDB__URL", "http://admin:pw-influx@db lan")]),
        )
        .expect_err("not a URL")
        .to_string();
        assert!(err.contains("http://***@db lan"), "{err}");
        assert!(!err.contains("pw-influx"), "{err}");
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let (_, unknown) = Settings::load_with_env(
            &no_options(),
            env(&[("HOMEIQ_HA_VENV", "/x"), ("HOMEIQ_OPTIONS_FILE", "/y")]),
        )
        .expect("loads");
        assert_eq!(unknown, vec!["ha_venv"]);
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings {
            ha: HaSettings {
                token: Some(Secret::new("super-secret-token")),
                ..HaSettings::default()
            },
            ..Settings::default()
        };
        let debug = format!("{s:?}");
        let json = serde_json::to_string(&s).expect("serialises");
        assert!(!debug.contains("super-secret-token"));
        assert!(!json.contains("super-secret-token"));
        assert!(json.contains("***"));
    }

    #[test]
    fn analysis_defaults_are_the_replaced_systems_thresholds() {
        let (s, unknown) = Settings::load_with_env(&no_options(), env(&[])).expect("loads");
        assert!(unknown.is_empty());
        let a = &s.analysis;
        assert!(a.enabled);
        assert_eq!(
            (a.window_days, a.min_occurrences, a.min_support),
            (30, 10, 10)
        );
        assert!((a.min_confidence - 0.7).abs() < 1e-9);
        assert_eq!(a.co_occurrence_window_seconds, 300);
        assert_eq!(a.manual_cooldown_hours, 24);
        assert_eq!(
            a.schedule_time().ok(),
            chrono::NaiveTime::from_hms_opt(3, 0, 0)
        );
        let lock = a
            .domain_overrides
            .iter()
            .find(|o| o.domain == "lock")
            .expect("lock override");
        assert_eq!(
            (lock.min_occurrences, lock.min_confidence, lock.min_support),
            (Some(4), Some(0.85), Some(4))
        );
        let climate = a
            .domain_overrides
            .iter()
            .find(|o| o.domain == "climate")
            .expect("climate override");
        assert_eq!(
            (
                climate.min_occurrences,
                climate.min_confidence,
                climate.min_support
            ),
            (None, Some(0.75), None)
        );
        let domains: Vec<_> = a
            .domain_overrides
            .iter()
            .map(|o| o.domain.as_str())
            .collect();
        assert_eq!(
            domains,
            ["light", "switch", "media_player", "lock", "climate"]
        );
    }

    #[test]
    fn analysis_reads_options_lists_and_env_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = dir.path().join("options.json");
        std::fs::write(
            &options,
            br#"{"analysis":{"window_days":60,"schedule":"04:30","domain_overrides":[
                {"domain":"fan","min_confidence":0.9},
                {"domain":"light","min_occurrences":5,"min_support":3}]}}"#,
        )
        .expect("write");
        let sources = ConfigSources {
            options_file: Some(options),
            ..no_options()
        };
        let (s, unknown) = Settings::load_with_env(
            &sources,
            env(&[
                ("HOMEIQ_ANALYSIS__MIN_CONFIDENCE", "0.8"),
                ("HOMEIQ_ANALYSIS__WINDOW_DAYS", "14"),
                ("HOMEIQ_ANALYSIS__ENABLED", "false"),
                ("HOMEIQ_ANALYSIS__SCHEDULE", "23:59"),
            ]),
        )
        .expect("loads");
        assert!(unknown.is_empty(), "{unknown:?}");
        let a = &s.analysis;
        assert!(!a.enabled);
        assert_eq!(a.window_days, 14, "environment wins over options");
        assert!((a.min_confidence - 0.8).abs() < 1e-9);
        assert_eq!(
            a.schedule_time().ok(),
            chrono::NaiveTime::from_hms_opt(23, 59, 0)
        );
        assert_eq!(
            a.domain_overrides,
            vec![
                DomainOverride {
                    domain: "fan".into(),
                    min_occurrences: None,
                    min_confidence: Some(0.9),
                    min_support: None,
                },
                DomainOverride {
                    domain: "light".into(),
                    min_occurrences: Some(5),
                    min_confidence: None,
                    min_support: Some(3),
                },
            ],
            "a list given replaces the default list"
        );
        assert_eq!(
            s.provenance.get("analysis.window_days").map(String::as_str),
            Some("environment (HOMEIQ_ANALYSIS__WINDOW_DAYS)")
        );
    }

    #[test]
    fn invalid_analysis_values_name_the_key() {
        let cases = [
            ("HOMEIQ_ANALYSIS__WINDOW_DAYS", "6", "analysis.window_days"),
            (
                "HOMEIQ_ANALYSIS__WINDOW_DAYS",
                "366",
                "analysis.window_days",
            ),
            (
                "HOMEIQ_ANALYSIS__MIN_CONFIDENCE",
                "1.5",
                "analysis.min_confidence",
            ),
            (
                "HOMEIQ_ANALYSIS__MIN_CONFIDENCE",
                "0",
                "analysis.min_confidence",
            ),
            (
                "HOMEIQ_ANALYSIS__MIN_OCCURRENCES",
                "0",
                "analysis.min_occurrences",
            ),
            ("HOMEIQ_ANALYSIS__MIN_SUPPORT", "0", "analysis.min_support"),
            ("HOMEIQ_ANALYSIS__SCHEDULE", "3:00", "analysis.schedule"),
            ("HOMEIQ_ANALYSIS__SCHEDULE", "24:00", "analysis.schedule"),
            ("HOMEIQ_ANALYSIS__SCHEDULE", "nightly", "analysis.schedule"),
            (
                "HOMEIQ_ANALYSIS__CO_OCCURRENCE_WINDOW_SECONDS",
                "5",
                "analysis.co_occurrence_window_seconds",
            ),
            (
                "HOMEIQ_ANALYSIS__MANUAL_COOLDOWN_HOURS",
                "-1",
                "analysis.manual_cooldown_hours",
            ),
        ];
        for (var, value, key) in cases {
            let err = Settings::load_with_env(&no_options(), env(&[(var, value)]))
                .expect_err(&format!("{var}={value} must fail"));
            assert_eq!(err.key(), Some(key), "{var}={value}: {err}");
            assert!(err.to_string().contains(key), "{err}");
        }
        let mut s = Settings::default();
        s.analysis.domain_overrides.push(DomainOverride {
            domain: "light".into(),
            min_occurrences: Some(0),
            min_confidence: Some(2.0),
            min_support: None,
        });
        s.analysis.domain_overrides.push(DomainOverride {
            domain: "Not A Domain".into(),
            min_occurrences: None,
            min_confidence: None,
            min_support: Some(0),
        });
        let keys: Vec<String> = s
            .problems(false)
            .iter()
            .filter_map(|e| e.key().map(str::to_owned))
            .collect();
        assert_eq!(
            keys,
            [
                "analysis.domain_overrides[5].domain",
                "analysis.domain_overrides[5].min_occurrences",
                "analysis.domain_overrides[5].min_confidence",
                "analysis.domain_overrides[6].domain",
                "analysis.domain_overrides[6].min_support",
            ]
        );
    }

    #[test]
    fn the_addon_manifest_options_are_the_analysis_defaults() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
        let options: AnalysisSettings = config::Config::builder()
            .add_source(config::File::from(manifest.as_path()))
            .build()
            .and_then(|c| c.get("options.analysis"))
            .expect("config.yaml options.analysis");
        let defaults = AnalysisSettings::default();
        assert_eq!(
            serde_json::to_value(&options).ok(),
            serde_json::to_value(&defaults).ok()
        );
    }

    #[test]
    fn llm_is_off_by_default_and_its_key_is_a_secret() {
        let (s, unknown) = Settings::load_with_env(&no_options(), env(&[])).expect("loads");
        assert!(unknown.is_empty());
        assert!(!s.llm.enabled);
        assert_eq!(
            (s.llm.timeout_seconds, s.llm.daily_request_budget),
            (20, 200)
        );
        let (s, _) = Settings::load_with_env(
            &no_options(),
            env(&[
                ("HOMEIQ_LLM__ENABLED", "true"),
                (
                    "HOMEIQ_LLM__BASE_URL",
                    "http://user:url-secret@ollama.lan:11434/v1",
                ),
                ("HOMEIQ_LLM__MODEL", "llama3.2"),
                ("HOMEIQ_LLM__API_KEY", "sk-llm-secret"),
                ("HOMEIQ_LLM__TIMEOUT_SECONDS", "30"),
                ("HOMEIQ_LLM__DAILY_REQUEST_BUDGET", "50"),
            ]),
        )
        .expect("loads");
        assert!(s.llm.enabled);
        assert_eq!(s.llm.model, "llama3.2");
        assert_eq!(
            s.llm.api_key.as_ref().map(Secret::expose),
            Some("sk-llm-secret")
        );
        assert_eq!(
            (s.llm.timeout_seconds, s.llm.daily_request_budget),
            (30, 50)
        );
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(json["llm"]["api_key"], "***");
        assert_eq!(json["llm"]["base_url"], "http://***@ollama.lan:11434/v1");
        assert!(!json.to_string().contains("url-secret"));
        let shown = format!("{json} {s:?}");
        assert!(!shown.contains("sk-llm-secret"));
        assert_eq!(
            s.provenance.get("llm.api_key").map(String::as_str),
            Some("environment (HOMEIQ_LLM__API_KEY)")
        );
    }

    #[test]
    fn invalid_llm_values_name_the_key() {
        let enabled = ("HOMEIQ_LLM__ENABLED", "true");
        let url = ("HOMEIQ_LLM__BASE_URL", "https://api.openai.com/v1");
        let model = ("HOMEIQ_LLM__MODEL", "gpt-4o-mini");
        type Vars<'a> = Vec<(&'a str, &'a str)>;
        let cases: [(Vars, &[&str]); 7] = [
            (vec![enabled], &["llm.base_url", "llm.model"]),
            (vec![enabled, url], &["llm.model"]),
            (
                vec![enabled, url, ("HOMEIQ_LLM__MODEL", "  ")],
                &["llm.model"],
            ),
            (
                vec![enabled, model, ("HOMEIQ_LLM__BASE_URL", "ftp://host/v1")],
                &["llm.base_url"],
            ),
            // a set URL is checked even while off
            (
                vec![("HOMEIQ_LLM__BASE_URL", "localhost:11434")],
                &["llm.base_url"],
            ),
            (
                vec![enabled, url, model, ("HOMEIQ_LLM__TIMEOUT_SECONDS", "0")],
                &["llm.timeout_seconds"],
            ),
            (
                vec![("HOMEIQ_LLM__DAILY_REQUEST_BUDGET", "0")],
                &["llm.daily_request_budget"],
            ),
        ];
        for (vars, keys) in cases {
            let err = Settings::load_with_env(&no_options(), env(&vars))
                .expect_err(&format!("{vars:?} must fail"));
            let found: Vec<&str> = err.errors.iter().filter_map(ConfigError::key).collect();
            assert_eq!(found, keys, "{vars:?}: {err}");
        }
        Settings::load_with_env(&no_options(), env(&[enabled, url, model]))
            .expect("enabled with a URL and a model");
    }

    #[test]
    fn the_addon_manifest_options_are_the_llm_defaults() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
        let options: LlmSettings = config::Config::builder()
            .add_source(config::File::from(manifest.as_path()))
            .build()
            .and_then(|c| c.get("options.llm"))
            .expect("config.yaml options.llm");
        assert_eq!(
            serde_json::to_value(&options).ok(),
            serde_json::to_value(LlmSettings::default()).ok()
        );
    }

    #[test]
    fn the_addon_manifest_options_are_the_suggestion_defaults() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
        let options: SuggestionSettings = config::Config::builder()
            .add_source(config::File::from(manifest.as_path()))
            .build()
            .and_then(|c| c.get("options.suggestions"))
            .expect("config.yaml options.suggestions");
        assert_eq!(
            serde_json::to_value(&options).ok(),
            serde_json::to_value(SuggestionSettings::default()).ok()
        );
        assert!(SuggestionSettings::default().notify);
    }

    #[test]
    fn endpoint_prefers_the_supervisor() {
        let mut s = Settings::default();
        let e = s.ha_endpoint(Some("sup")).expect("endpoint");
        assert_eq!(e.websocket_url, SUPERVISOR_WS_URL);
        assert_eq!(e.rest_url, SUPERVISOR_REST_URL);
        assert!(
            s.ha_endpoint(None)
                .is_err_and(|e| e.key() == Some("ha.url"))
        );
        s.ha.url = Some("https://ha.example:8443/".into());
        assert!(
            s.ha_endpoint(None)
                .is_err_and(|e| e.key() == Some("ha.token"))
        );
        s.ha.token = Some(Secret::new("t"));
        let e = s.ha_endpoint(None).expect("endpoint");
        assert_eq!(e.websocket_url, "wss://ha.example:8443/api/websocket");
        assert_eq!(e.rest_url, "https://ha.example:8443/api");
    }

    #[test]
    fn raw_retention_covers_the_analysis_window() {
        let mut s = Settings::default();
        assert_eq!(
            s.retention.raw_days_in_effect(&s.analysis),
            Some(DEFAULT_RAW_DAYS)
        );
        s.analysis.window_days = 90;
        assert_eq!(
            s.retention.raw_days_in_effect(&s.analysis),
            Some(90),
            "unset follows a longer analysis window"
        );
        assert!(s.problems(false).is_empty());
        s.retention.raw_days = Some(60);
        let problems = s.problems(false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = problems[0].to_string();
        assert_eq!(problems[0].key(), Some("retention.raw_days"));
        assert!(
            message.contains("analysis.window_days") && message.contains("90"),
            "{message}"
        );
        s.analysis.enabled = false;
        assert!(s.problems(false).is_empty(), "no analysis, no floor");
        s.retention.raw_days = Some(0);
        assert_eq!(s.retention.raw_days_in_effect(&s.analysis), None);
        s.retention.raw_days = Some(4_000);
        assert!(
            s.problems(false)
                .iter()
                .any(|p| p.key() == Some("retention.raw_days"))
        );
    }

    #[test]
    fn storage_guard_thresholds_are_ordered() {
        let mut s = Settings::default();
        assert_eq!(
            (
                s.storage_guard.warning_percent,
                s.storage_guard.critical_percent
            ),
            (80, 90)
        );
        s.storage_guard.critical_percent = 80;
        assert!(
            s.problems(false)
                .iter()
                .any(|p| p.key() == Some("storage_guard.critical_percent"))
        );
        s.storage_guard.critical_percent = 100;
        assert!(
            s.problems(false)
                .iter()
                .any(|p| p.key() == Some("storage_guard.critical_percent"))
        );
        s.storage_guard.warning_percent = 0;
        s.storage_guard.critical_percent = 50;
        assert!(
            s.problems(false)
                .iter()
                .any(|p| p.key() == Some("storage_guard.warning_percent"))
        );
    }
}
