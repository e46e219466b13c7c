//! `homeiq evaluate`: how well pattern detection finds what the simulator planted.
//!
//! For each seed, in one process: the simulated home ([`crate::simulate`]) starts `--days` in the
//! past in `--time-zone` and runs at `--speed` until it reaches now; HomeIQ (embedded storage)
//! records it through its real pipeline (so origins come from contexts, `automation_triggered`
//! and the user list, as with Home Assistant); then one analysis runs through the API and its
//! patterns are matched against `GET /api/simulator/routines`:
//!
//! - a **time-of-day** pattern matches a planted habit of the same entity and state whose local
//!   time lies in the pattern's window (± [`SLACK_MINUTES`]) and whose day type is the pattern's
//!   (a daily habit may also come back as weekday and weekend patterns);
//! - a **co-occurrence** matches a planted sequence with the same trigger and target;
//! - a pattern that matches no habit or sequence but a documented regularity of the routine (the
//!   front door opening as people leave, media in the evening, …) or a consequence of documented
//!   facts (what follows something that happens at a time of day happens at that time plus the
//!   delay: the hall light that follows the door opening as people leave for work; what follows
//!   something that follows A follows A; two steps; two things documented within the same hour
//!   follow one another) is *explained*, neither right nor wrong; any
//!   other pattern is a **false positive**;
//! - a pattern whose entity and state are what a planted automation or an add-on (system user)
//!   does, at its time or after its trigger, **re-describes an automation**: counted apart, it
//!   must never happen.
//!
//! **Recall** counts the planted habits whose probability reaches 0.7 and their domain's minimum
//! confidence (a lock's 0.85: a lock used on 81 % of days is rightly not suggested) and whose
//! expected occurrences in the window (probability × eligible days) reach the minimum for their
//! domain and day type, and the sequences likewise; **precision** is (patterns matching a plant) / (those plus
//! false positives). Prints one line per seed and a JSON summary (`--json`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::app::Application;
use crate::config::{AnalysisSettings, Settings, StorageMode};
use crate::patterns::{DayType, Pattern, PatternKind};
use crate::simulate::truth::{self, Routines};
use crate::simulate::{self, Profile, SimulatorOptions};

/// Minutes a habit's planted time may lie outside the pattern's window.
const SLACK_MINUTES: i64 = 10;

/// Documented windows at most this long (minutes) make what happens in them follow one another.
const SHORT_WINDOW: i64 = 60;

/// Planted habits and sequences at least this likely count for recall.
const RECALL_PROBABILITY: f64 = 0.7;

/// Options of `homeiq evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EvaluateOptions {
    /// Size of the simulated home.
    #[arg(long, value_enum, default_value_t = Profile::Medium)]
    pub profile: Profile,
    /// Seeds to evaluate (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// The home's IANA time zone.
    #[arg(long, default_value = "Europe/Amsterdam", value_parser = crate::simulate::parse_time_zone)]
    pub time_zone: chrono_tz::Tz,
    /// Days of history to simulate and analyse.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Simulated seconds per real second while catching up.
    #[arg(long, default_value_t = 20_000.0)]
    pub speed: f64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How one seed went.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SeedScore {
    /// The seed.
    pub seed: u64,
    /// State changes HomeIQ recorded.
    pub changes_recorded: u64,
    /// Seconds to simulate and record the window.
    pub record_secs: f64,
    /// Seconds the analysis took (as its run row says).
    pub analysis_secs: f64,
    /// Patterns reported.
    pub patterns: usize,
    /// Of them, matching a planted habit or sequence.
    pub matching_plants: usize,
    /// Of them, explained by a documented regularity only.
    pub explained: usize,
    /// Of them, matching nothing: false positives.
    pub false_positives: usize,
    /// Of them, re-describing a planted automation or an add-on's changes.
    pub automation_patterns: usize,
    /// Planted habits and sequences that recall counts.
    pub eligible: usize,
    /// Of them, found.
    pub found: usize,
    /// found / eligible.
    pub recall: f64,
    /// matching_plants / (matching_plants + false_positives).
    pub precision: f64,
    /// Suggestions built from the patterns (planted automations read as Home Assistant's).
    pub suggestions: usize,
    /// The best (at most 10) of them …
    pub top_suggestions: usize,
    /// … of which built on a pattern matching a planted habit or sequence …
    pub top_matching_plants: usize,
    /// … or on a documented regularity of the routine (a plug's schedule): real, not planted.
    pub top_explained: usize,
    /// Suggestions doing what a planted automation already does (should be none).
    pub suggestions_duplicating_automations: usize,
    /// What was missed and what was wrong, for reading.
    pub notes: Vec<String>,
}

/// Suggestions judged: the best [`TOP_SUGGESTIONS`].
const TOP_SUGGESTIONS: usize = 10;

/// Entities known by their ids only (the evaluation judges automations, not names).
struct IdsOnly;

impl crate::suggestions::Lookup for IdsOnly {
    fn info(&self, entity_id: &str) -> crate::suggestions::EntityInfo {
        crate::suggestions::EntityInfo {
            name: entity_id.to_owned(),
            ..Default::default()
        }
    }
}

/// Builds the suggestions of `patterns` against the planted automations' configurations (as
/// HomeIQ reads Home Assistant's) and scores the best [`TOP_SUGGESTIONS`].
fn score_suggestions(s: &mut SeedScore, patterns: &[Pattern], routines: &Routines) {
    let (times, follows) = facts(routines);
    let automations: Vec<Value> = routines
        .automations
        .iter()
        .map(crate::simulate::truth::Plan::automation_config)
        .collect();
    let mut built = crate::suggestions::proposals(patterns, &[], &automations, &IdsOnly);
    built.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then_with(|| a.0.cmp(&b.0)));
    s.suggestions = built.len();
    let pattern_of = |id: &Option<String>| patterns.iter().find(|p| Some(&p.id) == id.as_ref());
    for (i, (_, proposal)) in built.iter().enumerate() {
        let Some(p) = pattern_of(&proposal.pattern_id) else {
            continue;
        };
        if describes_automation(p, routines) {
            s.suggestions_duplicating_automations += 1;
            s.notes
                .push(format!("suggestion duplicates an automation: {}", brief(p)));
        }
        if i < TOP_SUGGESTIONS {
            s.top_suggestions += 1;
            if routines.habits.iter().any(|h| matches_habit(p, h))
                || routines.sequences.iter().any(|q| matches_sequence(p, q))
            {
                s.top_matching_plants += 1;
            } else if explained(p, &times, &follows) {
                s.top_explained += 1;
                s.notes.push(format!(
                    "top suggestion #{} a documented regularity, not a planted habit: {}",
                    i + 1,
                    brief(p)
                ));
            } else {
                s.notes
                    .push(format!("top suggestion #{} wrong: {}", i + 1, brief(p)));
            }
        }
    }
}

fn minutes(hhmm: &str) -> Option<i64> {
    let (h, m) = hhmm.split_once(':')?;
    Some(h.parse::<i64>().ok()? * 60 + m.get(..2).unwrap_or(m).parse::<i64>().ok()?)
}

/// Whether `t` (minutes of the day) lies within `start..=end` (may wrap midnight) ± slack.
fn in_window(t: i64, start: i64, end: i64, slack: i64) -> bool {
    let day = 1_440;
    let len = (end - start).rem_euclid(day);
    let from_start = (t - start + slack).rem_euclid(day);
    from_start <= len + 2 * slack
}

fn same_days(planted: truth::DayType, found: DayType) -> bool {
    matches!(
        (planted, found),
        (truth::DayType::All, _)
            | (truth::DayType::Weekday, DayType::Weekday)
            | (truth::DayType::Weekend, DayType::Weekend)
    )
}

fn window_of(p: &Pattern) -> Option<(i64, i64)> {
    let w = p.time_window.as_ref()?;
    Some((minutes(&w.start)?, minutes(&w.end)?))
}

fn entity_is(p: &Pattern, i: usize, entity_id: &str, state: &str) -> bool {
    p.entities
        .get(i)
        .is_some_and(|e| e.entity_id == entity_id && e.state == state)
}

/// Whether `p` matches planted habit `h`.
fn matches_habit(p: &Pattern, h: &truth::Habit) -> bool {
    p.kind == PatternKind::TimeOfDay
        && entity_is(p, 0, &h.entity_id, &h.state)
        && same_days(h.day_type, p.day_type)
        && minutes(&h.local_time)
            .zip(window_of(p))
            .is_some_and(|(t, (s, e))| in_window(t, s, e, SLACK_MINUTES))
}

fn matches_sequence(p: &Pattern, s: &truth::Sequence) -> bool {
    p.kind == PatternKind::CoOccurrence
        && entity_is(p, 0, &s.trigger.entity_id, &s.trigger.state)
        && entity_is(p, 1, &s.target.entity_id, &s.target.state)
}

/// A time-of-day fact of the simulated home: `entity` reaches `state` within a local window.
#[derive(Debug, Clone, PartialEq)]
struct TimeFact {
    entity: (String, String),
    window: (i64, i64),
}

/// A sequence fact: `from` is followed by `to` within `delay` seconds.
#[derive(Debug, Clone, PartialEq)]
struct FollowFact {
    from: (String, String),
    to: (String, String),
    delay: (i64, i64),
}

fn pair(e: &truth::EntityState) -> (String, String) {
    (e.entity_id.clone(), e.state.clone())
}

/// What the simulated home documents as happening (habits, sequences, regularities), closed
/// under consequence: what follows something that happens at a time of day happens at that
/// time plus the delay, and what follows something that follows A follows A (two steps).
fn facts(r: &Routines) -> (Vec<TimeFact>, Vec<FollowFact>) {
    let mut times = Vec::new();
    let mut follows = Vec::new();
    for h in &r.habits {
        if let Some(t) = minutes(&h.local_time) {
            let j = i64::from(h.jitter_minutes);
            times.push(TimeFact {
                entity: (h.entity_id.clone(), h.state.clone()),
                window: (t - j, t + j),
            });
        }
    }
    for q in &r.sequences {
        follows.push(FollowFact {
            from: pair(&q.trigger),
            to: pair(&q.target),
            delay: (
                i64::from(q.delay_seconds.min),
                i64::from(q.delay_seconds.max),
            ),
        });
    }
    for g in &r.regularities {
        match g.kind {
            truth::RegularityKind::TimeOfDay => {
                let window = g
                    .local_window
                    .as_ref()
                    .and_then(|w| Some((minutes(&w.start)?, minutes(&w.end)?)))
                    .unwrap_or((0, 1_439));
                for e in &g.entities {
                    times.push(TimeFact {
                        entity: pair(e),
                        window,
                    });
                }
            }
            truth::RegularityKind::CoOccurrence => {
                let delay = g
                    .delay_seconds
                    .map_or((0, 3_600), |d| (i64::from(d.min), i64::from(d.max)));
                for a in &g.entities {
                    for b in &g.entities {
                        if a.entity_id != b.entity_id || a.state != b.state {
                            follows.push(FollowFact {
                                from: pair(a),
                                to: pair(b),
                                delay,
                            });
                        }
                    }
                }
            }
        }
    }
    for _ in 0..2 {
        let mut more_times = Vec::new();
        for t in &times {
            for f in follows.iter().filter(|f| f.from == t.entity) {
                let shifted = TimeFact {
                    entity: f.to.clone(),
                    window: (
                        t.window.0 + f.delay.0 / 60,
                        t.window.1 + (f.delay.1 + 59) / 60,
                    ),
                };
                if !times.contains(&shifted) && !more_times.contains(&shifted) {
                    more_times.push(shifted);
                }
            }
        }
        let mut more_follows = Vec::new();
        for a in &follows {
            for b in follows.iter().filter(|b| b.from == a.to && b.to != a.from) {
                let chained = FollowFact {
                    from: a.from.clone(),
                    to: b.to.clone(),
                    delay: (a.delay.0 + b.delay.0, a.delay.1 + b.delay.1),
                };
                if !follows.contains(&chained) && !more_follows.contains(&chained) {
                    more_follows.push(chained);
                }
            }
        }
        times.extend(more_times);
        follows.extend(more_follows);
    }
    (times, follows)
}

/// Whether `p` is a documented fact (or a consequence of facts) of the simulated home.
fn explained(p: &Pattern, times: &[TimeFact], follows: &[FollowFact]) -> bool {
    let is = |i: usize, e: &(String, String)| entity_is(p, i, &e.0, &e.1);
    match p.kind {
        PatternKind::TimeOfDay => window_of(p).is_some_and(|(s, e)| {
            times.iter().any(|t| {
                is(0, &t.entity)
                    && (in_window(s, t.window.0, t.window.1, SLACK_MINUTES)
                        || in_window(e, t.window.0, t.window.1, SLACK_MINUTES)
                        || in_window(t.window.0, s, e, 0))
            })
        }),
        PatternKind::CoOccurrence => {
            follows.iter().any(|f| is(0, &f.from) && is(1, &f.to))
                // two things the home does within the same short window follow one another
                || times.iter().any(|a| {
                    is(0, &a.entity)
                        && a.window.1 - a.window.0 <= SHORT_WINDOW
                        && times.iter().any(|b| {
                            is(1, &b.entity)
                                && b.window.1 - b.window.0 <= SHORT_WINDOW
                                && (in_window(a.window.0, b.window.0, b.window.1, SLACK_MINUTES)
                                    || in_window(b.window.0, a.window.0, a.window.1, SLACK_MINUTES))
                        })
                })
        }
    }
}

/// Whether `p` re-describes what an automation or an add-on does.
fn describes_automation(p: &Pattern, r: &Routines) -> bool {
    let Some(last) = p.entities.last() else {
        return false;
    };
    let automated = r.automations.iter().any(|a| {
        a.targets
            .iter()
            .any(|t| t.entity_id == last.entity_id && t.state == last.state)
            && match (p.kind, &a.trigger.at, &a.trigger.entity_id) {
                (PatternKind::TimeOfDay, Some(at), _) => minutes(at)
                    .zip(window_of(p))
                    .is_some_and(|(t, (s, e))| in_window(t, s, e, SLACK_MINUTES)),
                (PatternKind::CoOccurrence, _, Some(trigger)) => {
                    p.entities.first().is_some_and(|f| &f.entity_id == trigger)
                }
                _ => false,
            }
    });
    let by_system = p.kind == PatternKind::TimeOfDay
        && r.system_changes.iter().any(|c| {
            c.entity_id == last.entity_id
                && c.state == last.state
                && minutes(&c.local_time)
                    .zip(window_of(p))
                    .is_some_and(|(t, (s, e))| in_window(t, s, e, SLACK_MINUTES))
        });
    automated || by_system
}

/// The share of days of a day type (weekdays 5 of 7).
fn day_share(d: truth::DayType) -> f64 {
    match d {
        truth::DayType::All => 1.0,
        truth::DayType::Weekday => 5.0 / 7.0,
        truth::DayType::Weekend => 2.0 / 7.0,
    }
}

/// The minimum occurrences a habit of `entity_id` on `day_type` needs in the window.
fn min_occurrences(
    settings: &AnalysisSettings,
    entity_id: &str,
    day_type: truth::DayType,
    days: u32,
) -> f64 {
    let domain = entity_id.split('.').next().unwrap_or_default();
    let base = crate::patterns::Thresholds::from_settings(settings)
        .lookup(domain, None)
        .min_occurrences;
    (f64::from(base) * day_share(day_type) * f64::from(days)
        / f64::from(settings.window_days.max(1)))
    .ceil()
}

/// The confidence a pattern of `entity_id` needs (its domain's, never below the security
/// minimum for locks, alarm panels and garage or door covers).
fn min_confidence(settings: &AnalysisSettings, entity_id: &str) -> f64 {
    let domain = entity_id.split('.').next().unwrap_or_default();
    crate::patterns::Thresholds::from_settings(settings)
        .lookup(domain, None)
        .min_confidence
}

/// Scores `patterns` against `routines` for a window of `days`.
pub(crate) fn score(
    seed: u64,
    patterns: &[Pattern],
    routines: &Routines,
    settings: &AnalysisSettings,
    days: u32,
) -> SeedScore {
    let mut s = SeedScore {
        seed,
        patterns: patterns.len(),
        ..SeedScore::default()
    };
    let (times, follows) = facts(routines);
    for p in patterns {
        let plant = routines.habits.iter().any(|h| matches_habit(p, h))
            || routines.sequences.iter().any(|q| matches_sequence(p, q));
        if describes_automation(p, routines) {
            s.automation_patterns += 1;
            s.notes
                .push(format!("re-describes an automation: {}", brief(p)));
        }
        if plant {
            s.matching_plants += 1;
        } else if explained(p, &times, &follows) {
            s.explained += 1;
        } else {
            s.false_positives += 1;
            s.notes.push(format!("false positive: {}", brief(p)));
        }
    }
    for h in &routines.habits {
        let expected = h.probability * day_share(h.day_type) * f64::from(days);
        if h.probability < RECALL_PROBABILITY.max(min_confidence(settings, &h.entity_id))
            || expected < min_occurrences(settings, &h.entity_id, h.day_type, days)
        {
            continue;
        }
        s.eligible += 1;
        if patterns.iter().any(|p| matches_habit(p, h)) {
            s.found += 1;
        } else {
            s.notes.push(format!(
                "missed habit: {} → {} at {} ({:?}, p = {:.2})",
                h.entity_id, h.state, h.local_time, h.day_type, h.probability
            ));
        }
    }
    for q in &routines.sequences {
        if q.probability < RECALL_PROBABILITY.max(min_confidence(settings, &q.target.entity_id)) {
            continue;
        }
        s.eligible += 1;
        if patterns.iter().any(|p| matches_sequence(p, q)) {
            s.found += 1;
        } else {
            s.notes.push(format!(
                "missed sequence: {} → {} then {} → {} (p = {:.2})",
                q.trigger.entity_id,
                q.trigger.state,
                q.target.entity_id,
                q.target.state,
                q.probability
            ));
        }
    }
    score_suggestions(&mut s, patterns, routines);
    s.recall = if s.eligible == 0 {
        1.0
    } else {
        s.found as f64 / s.eligible as f64
    };
    let judged = s.matching_plants + s.false_positives;
    s.precision = if judged == 0 {
        1.0
    } else {
        s.matching_plants as f64 / judged as f64
    };
    s
}

fn brief(p: &Pattern) -> String {
    let entities: Vec<String> = p
        .entities
        .iter()
        .map(|e| format!("{} → {}", e.entity_id, e.state))
        .collect();
    let when = p
        .time_window
        .as_ref()
        .map(|w| format!(" {}–{}", w.start, w.end))
        .unwrap_or_default();
    format!(
        "{}{when} ({}, confidence {:.2})",
        entities.join(" then "),
        p.day_type.as_str(),
        p.confidence
    )
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvaluateError {
    /// The simulator did not start.
    #[error("the simulated home did not start: {0}")]
    Simulator(String),
    /// HomeIQ did not start.
    #[error("HomeIQ did not start: {0}")]
    HomeIq(String),
    /// A request failed.
    #[error("{0}")]
    Http(String),
    /// Waiting took too long.
    #[error("timed out: {0}")]
    Timeout(String),
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, EvaluateError> {
    http.get(url)
        .send()
        .await
        .map_err(|e| EvaluateError::Http(format!("GET {url}: {e}")))?
        .json()
        .await
        .map_err(|e| EvaluateError::Http(format!("GET {url}: {e}")))
}

/// Simulates, records and analyses one seed, and scores it.
pub(crate) async fn evaluate_seed(
    options: &EvaluateOptions,
    seed: u64,
    data_dir: &std::path::Path,
) -> Result<SeedScore, EvaluateError> {
    let started = Instant::now();
    let simulator = simulate::spawn(SimulatorOptions {
        port: 0,
        profile: options.profile,
        speed: options.speed,
        backdate: Some(f64::from(options.days) * 24.0 + 1.0),
        seed,
        time_zone: options.time_zone,
        quiet_sensors: true,
        ..SimulatorOptions::default()
    })
    .map_err(|e| EvaluateError::Simulator(e.to_string()))?;
    let mut settings = Settings {
        data_dir: data_dir.to_path_buf(),
        storage: StorageMode::Embedded,
        ..Settings::default()
    };
    settings.http.bind = "127.0.0.1".into();
    settings.http.port = 0;
    settings.ha.url = Some(simulator.url.clone());
    settings.ha.token = Some(crate::config::Secret::new(simulator.token.clone()));
    settings.analysis.window_days = options.days.max(7);
    settings.analysis.manual_cooldown_hours = 0;
    let analysis = settings.analysis.clone();
    let app = Application::build(settings, None)
        .await
        .map_err(|e| EvaluateError::HomeIq(e.to_string()))?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let running = tokio::spawn(app.run_until(std::future::pending()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| EvaluateError::Http(e.to_string()))?;
    let sim_status = format!("{}/api/simulator/status", simulator.url);
    let result = async {
        // recorded: the routine reached now, and HomeIQ has taken every event (its count stands
        // still over a few polls) and written every point
        let deadline = Instant::now() + Duration::from_secs(3_600);
        let mut last = (u64::MAX, 0u32);
        let mut caught_up_at: Option<Instant> = None;
        let recorded = loop {
            let sim = http
                .get(&sim_status)
                .bearer_auth(&simulator.token)
                .send()
                .await
                .map_err(|e| EvaluateError::Http(e.to_string()))?
                .json::<Value>()
                .await
                .map_err(|e| EvaluateError::Http(e.to_string()))?;
            let deep = get_json(&http, &format!("{base}/health/deep")).await?;
            let events = deep["ingest"]["events"].as_u64().unwrap_or(0);
            let queued = deep["storage"]["queued"].as_u64().unwrap_or(1)
                + deep["storage"]["in_flight"].as_u64().unwrap_or(0);
            last = if events == last.0 {
                (events, last.1 + 1)
            } else {
                (events, 0)
            };
            // a large home at real time is never quiet for two seconds: once the routine has caught
            // up, a few seconds with nothing held drain what the simulator had queued for HomeIQ
            // (at most its `max_pending` events)
            let caught_up = sim["routine_caught_up"] == true;
            if caught_up && caught_up_at.is_none() {
                caught_up_at = Some(Instant::now());
            }
            let drained = caught_up_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(5))
                && deep["home_assistant"]["queue_depth"].as_u64() == Some(0);
            if caught_up && queued == 0 && (last.1 >= 4 || drained) {
                break deep["storage"]["written"].as_u64().unwrap_or(0);
            }
            if Instant::now() > deadline {
                return Err(EvaluateError::Timeout(format!(
                    "recording the simulated window ({events} events so far)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let record_secs = started.elapsed().as_secs_f64();
        let run = http
            .post(format!("{base}/api/v1/analysis/runs"))
            .send()
            .await
            .map_err(|e| EvaluateError::Http(e.to_string()))?
            .json::<Value>()
            .await
            .map_err(|e| EvaluateError::Http(e.to_string()))?;
        let id = run["id"]
            .as_i64()
            .ok_or_else(|| EvaluateError::Http(format!("the analysis did not start: {run}")))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let row = loop {
            let runs = get_json(&http, &format!("{base}/api/v1/analysis/runs?limit=5")).await?;
            let row = runs["items"]
                .as_array()
                .and_then(|items| items.iter().find(|r| r["id"] == id).cloned());
            if let Some(r) = row.filter(|r| r["outcome"] != "running") {
                break r;
            }
            if Instant::now() > deadline {
                return Err(EvaluateError::Timeout("the analysis".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if row["outcome"] != "succeeded" {
            return Err(EvaluateError::Http(format!("the analysis failed: {row}")));
        }
        let page = get_json(&http, &format!("{base}/api/v1/patterns?limit=1000")).await?;
        let patterns: Vec<Pattern> = serde_json::from_value(page["items"].clone())
            .map_err(|e| EvaluateError::Http(format!("patterns: {e}")))?;
        let mut s = score(
            seed,
            &patterns,
            &simulator.routines(),
            &analysis,
            options.days,
        );
        s.changes_recorded = recorded;
        s.record_secs = record_secs;
        s.analysis_secs = row["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        Ok(s)
    }
    .await;
    stop.cancel();
    let _ = running.await;
    simulator.shutdown().await;
    result
}

/// Summary over the seeds.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    profile: String,
    time_zone: String,
    days: u32,
    seeds: &'a [SeedScore],
    mean_recall: f64,
    mean_precision: f64,
    automation_patterns: usize,
}

/// Runs `homeiq evaluate`.
pub(crate) async fn run(options: EvaluateOptions) -> ExitCode {
    let mut scores = Vec::new();
    for &seed in &options.seeds {
        let dir = match tempfile_dir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("homeiq evaluate: {e}");
                return ExitCode::from(2);
            }
        };
        let result = evaluate_seed(&options, seed, &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(s) => {
                if !options.json {
                    println!(
                        "seed {seed}: recall {:.2} ({}/{}), precision {:.2} ({} matching, {} explained, {} false), {} re-describing automations; suggestions {}: top {} with {} planted and {} documented regularities, {} duplicating automations; {} changes recorded in {:.0} s, analysed in {:.1} s",
                        s.recall,
                        s.found,
                        s.eligible,
                        s.precision,
                        s.matching_plants,
                        s.explained,
                        s.false_positives,
                        s.automation_patterns,
                        s.suggestions,
                        s.top_suggestions,
                        s.top_matching_plants,
                        s.top_explained,
                        s.suggestions_duplicating_automations,
                        s.changes_recorded,
                        s.record_secs,
                        s.analysis_secs
                    );
                    for n in &s.notes {
                        println!("  {n}");
                    }
                }
                scores.push(s);
            }
            Err(e) => {
                eprintln!("homeiq evaluate: seed {seed}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let n = scores.len().max(1) as f64;
    let summary = Summary {
        profile: format!("{:?}", options.profile).to_lowercase(),
        time_zone: options.time_zone.name().to_owned(),
        days: options.days,
        mean_recall: scores.iter().map(|s| s.recall).sum::<f64>() / n,
        mean_precision: scores.iter().map(|s| s.precision).sum::<f64>() / n,
        automation_patterns: scores.iter().map(|s| s.automation_patterns).sum(),
        seeds: &scores,
    };
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        println!(
            "mean recall {:.2}, mean precision {:.2}, {} patterns re-describing automations",
            summary.mean_recall, summary.mean_precision, summary.automation_patterns
        );
    }
    ExitCode::SUCCESS
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("homeiq-evaluate-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_midnight_and_allow_slack() {
        assert!(in_window(5, 1_430, 20, 0));
        assert!(in_window(1_435, 1_430, 20, 0));
        assert!(!in_window(60, 1_430, 20, 10));
        assert!(in_window(25, 1_430, 20, 10));
        assert!(in_window(420, 410, 430, 0));
        assert!(!in_window(400, 410, 430, 5));
        assert_eq!(minutes("06:55"), Some(415));
    }

    #[test]
    fn min_occurrences_scale_with_the_day_type() {
        let s = AnalysisSettings::default();
        assert_eq!(min_occurrences(&s, "light.x", truth::DayType::All, 30), 8.0);
        assert_eq!(
            min_occurrences(&s, "lock.x", truth::DayType::Weekend, 30),
            2.0
        );
        assert_eq!(
            min_occurrences(&s, "fan.x", truth::DayType::Weekday, 30),
            8.0
        );
    }
}
