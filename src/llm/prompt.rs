//! The facts of one suggestion ([`WordingRequest`]) and the chat messages built from them.
//!
//! The prompt holds only the entities of that one suggestion and stays under [`PROMPT_TOKEN_CAP`]
//! estimated tokens whatever the home's size or the strings it holds: at most [`MAX_ENTITIES`]
//! entities, every string cleaned of control characters and cut to its own cap, and entities
//! dropped from the end should the whole still be too long. Tokens are estimated as UTF-8 bytes
//! / 4 (about a token per four characters of English; never fewer tokens than that estimate for
//! other scripts, whose characters take two to four bytes).

use serde::Serialize;

use crate::patterns::DayType;

/// The most estimated tokens the messages of one request may hold.
pub(crate) const PROMPT_TOKEN_CAP: usize = 2_000;
/// Entities of one suggestion sent at most (a suggestion has one to four).
pub(crate) const MAX_ENTITIES: usize = 8;

/// Caps of single strings, in characters.
const ENTITY_ID_CAP: usize = 80;
const NAME_CAP: usize = 60;
const AREA_CAP: usize = 40;
const DOMAIN_CAP: usize = 32;
const STATE_CAP: usize = 32;
const TIME_CAP: usize = 8;
const TEMPLATE_TITLE_CAP: usize = 160;
const TEMPLATE_EXPLANATION_CAP: usize = 800;

/// What a suggestion is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WordingKind {
    /// An entity reaches a state around the same local time (a learned habit).
    TimeOfDay,
    /// One entity reaches a state shortly after another (a learned habit).
    CoOccurrence,
    /// Devices of one area that usually work together and no automation links (from the
    /// registry, not learned).
    Synergy,
}

/// What an entity does in the suggested automation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntityRole {
    /// Its change starts the automation.
    Trigger,
    /// The automation changes it.
    Action,
}

/// One entity of the suggestion, as the person knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EntityFacts {
    /// `light.kitchen`.
    pub entity_id: String,
    /// Its friendly name (`Kitchen ceiling`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its area's name (`Kitchen`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Its domain (`light`).
    pub domain: String,
    /// What it does in the automation.
    pub role: EntityRole,
    /// The state it reaches or is set to (`on`, `locked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// The local time window a time-of-day suggestion acts in (`HH:MM`, the home's wall clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LocalWindow {
    /// Earliest, `HH:MM`.
    pub start: String,
    /// Latest, `HH:MM`.
    pub end: String,
}

impl From<&crate::patterns::TimeWindow> for LocalWindow {
    fn from(w: &crate::patterns::TimeWindow) -> Self {
        LocalWindow {
            start: w.start.clone(),
            end: w.end.clone(),
        }
    }
}

/// The facts of ONE suggestion: everything the LLM is told. Built by `suggestions` from a pattern
/// or a synergy; `title` and `explanation` are the template wording, kept when the LLM is off or
/// fails ([`WordingRequest::template`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WordingRequest {
    /// What the suggestion is about.
    pub kind: WordingKind,
    /// Its entities, the trigger first (only the first [`MAX_ENTITIES`] are sent).
    pub entities: Vec<EntityFacts>,
    /// Time of day: the local window it happened in.
    pub window: Option<LocalWindow>,
    /// Co-occurrence: the usual delay between the first and the second change, seconds.
    pub delay_seconds: Option<u32>,
    /// The days it holds on.
    pub day_type: Option<DayType>,
    /// Times it happened (days for a time-of-day habit, sequences for a co-occurrence).
    pub occurrences: Option<u32>,
    /// Out of how many chances (days of that type in the window, or times the first change
    /// happened).
    pub out_of: Option<u32>,
    /// Confidence, 0..=1.
    pub confidence: Option<f64>,
    /// The template title.
    pub title: String,
    /// The template explanation, with the evidence.
    pub explanation: String,
}

/// The facts as sent (the user message): cleaned and capped copies.
#[derive(Debug, Serialize)]
struct Facts<'a> {
    kind: WordingKind,
    entities: Vec<EntityFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<LocalWindow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    days: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    occurrences: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out_of: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence_percent: Option<u32>,
    title: String,
    explanation: String,
}

/// The system message: the task, the rules and the answer's shape (it names JSON, which
/// OpenAI's JSON mode requires).
pub(crate) const SYSTEM_PROMPT: &str = "You reword home automation suggestions for the person \
who lives in the home. You get the facts of one suggestion as JSON. Write a short title and a \
plain-language explanation of what the automation would do and why it is suggested. Use only \
the facts given: never invent devices, rooms, times or numbers. Call devices by their name and \
room, not by their entity id. kind time_of_day: something happened at about the same time of \
day; co_occurrence: one thing usually followed another; synergy: devices in one room usually \
work together but no automation links them. Answer with one JSON object and nothing else: \
{\"title\": \"...\", \"explanation\": \"...\"}. The title has at most 80 characters and no \
final period. The explanation is one or two sentences, at most 350 characters. Plain text only: \
no markdown, no lists, no emoji. Write in the language of the template.";

/// The chat messages for `req`: the system prompt, then the facts as one JSON user message.
pub(crate) fn messages(req: &WordingRequest) -> [(&'static str, String); 2] {
    let mut facts = Facts {
        kind: req.kind,
        entities: req
            .entities
            .iter()
            .take(MAX_ENTITIES)
            .map(|e| EntityFacts {
                entity_id: clean(&e.entity_id, ENTITY_ID_CAP),
                name: e
                    .name
                    .as_deref()
                    .map(|n| clean(n, NAME_CAP))
                    .filter(|n| !n.is_empty()),
                area: e
                    .area
                    .as_deref()
                    .map(|a| clean(a, AREA_CAP))
                    .filter(|a| !a.is_empty()),
                domain: clean(&e.domain, DOMAIN_CAP),
                role: e.role,
                state: e.state.as_deref().map(|s| clean(s, STATE_CAP)),
            })
            .collect(),
        window: req.window.as_ref().map(|w| LocalWindow {
            start: clean(&w.start, TIME_CAP),
            end: clean(&w.end, TIME_CAP),
        }),
        delay_seconds: req.delay_seconds,
        days: req.day_type.map(|d| match d {
            DayType::All => "every day",
            DayType::Weekday => "weekdays",
            DayType::Weekend => "weekends",
        }),
        occurrences: req.occurrences,
        out_of: req.out_of,
        confidence_percent: req
            .confidence
            .filter(|c| c.is_finite())
            // a fraction 0..=1 as a whole percentage; the cast cannot overflow after the clamp
            .map(|c| (c.clamp(0.0, 1.0) * 100.0).round() as u32),
        title: clean(&req.title, TEMPLATE_TITLE_CAP),
        explanation: clean(&req.explanation, TEMPLATE_EXPLANATION_CAP),
    };
    loop {
        // serialising plain structs of strings and numbers cannot fail
        let user = serde_json::to_string(&facts).unwrap_or_default();
        if estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(&user) <= PROMPT_TOKEN_CAP
            || facts.entities.len() <= 1
        {
            return [("system", SYSTEM_PROMPT.to_owned()), ("user", user)];
        }
        facts.entities.pop();
    }
}

/// Estimated tokens of `text`: UTF-8 bytes / 4, rounded up.
pub(crate) fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// `text` with control characters and runs of white space turned into one space, trimmed and cut
/// to `cap` characters (an ellipsis marks a cut).
pub(crate) fn clean(text: &str, cap: usize) -> String {
    let mut out = String::with_capacity(text.len().min(cap.saturating_mul(4)));
    let mut chars = 0usize;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if chars + usize::from(space) + 1 > cap {
            out.push('…');
            return out;
        }
        if space {
            out.push(' ');
            chars += 1;
            space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entity(id: &str, role: EntityRole) -> EntityFacts {
        EntityFacts {
            entity_id: id.into(),
            name: Some("Kitchen ceiling".into()),
            area: Some("Kitchen".into()),
            domain: id.split('.').next().unwrap_or_default().into(),
            role,
            state: Some("on".into()),
        }
    }

    #[test]
    fn the_prompt_is_bounded_whatever_the_input() {
        let huge = "x".repeat(200_000);
        let wide = "語".repeat(50_000);
        let req = WordingRequest {
            kind: WordingKind::Synergy,
            // a home of 10,000 entities; the first ten with enormous hostile strings
            entities: (0..10_000)
                .map(|i| {
                    let big = |s: &str| {
                        if i < 10 {
                            s.to_owned()
                        } else {
                            "y".repeat(100)
                        }
                    };
                    EntityFacts {
                        entity_id: format!("light.{i}_{}", big(&huge)),
                        name: Some(big(&wide)),
                        area: Some(format!("{}\n\t\u{0}", big(&huge))),
                        domain: big(&huge),
                        role: EntityRole::Action,
                        state: Some(big(&wide)),
                    }
                })
                .collect(),
            window: Some(LocalWindow {
                start: huge.clone(),
                end: wide.clone(),
            }),
            delay_seconds: Some(u32::MAX),
            day_type: Some(DayType::Weekday),
            occurrences: Some(u32::MAX),
            out_of: Some(u32::MAX),
            confidence: Some(f64::NAN),
            title: wide.clone(),
            explanation: format!("{wide}{huge}"),
        };
        let [system, user] = messages(&req);
        let tokens = estimate_tokens(&system.1) + estimate_tokens(&user.1);
        assert!(tokens <= PROMPT_TOKEN_CAP, "{tokens} tokens");
        let facts: serde_json::Value = serde_json::from_str(&user.1).expect("JSON facts");
        let sent = facts["entities"].as_array().map(Vec::len).unwrap_or(0);
        assert!((1..=MAX_ENTITIES).contains(&sent), "{sent} entities");
        assert!(!user.1.contains('\u{0}') && !user.1.contains("\\u0000"));
        assert!(facts.get("confidence_percent").is_none(), "NaN is left out");
    }

    #[test]
    fn a_normal_suggestion_is_sent_whole() {
        let req = WordingRequest {
            kind: WordingKind::CoOccurrence,
            entities: vec![
                entity("binary_sensor.hall_motion", EntityRole::Trigger),
                entity("light.hall", EntityRole::Action),
            ],
            window: None,
            delay_seconds: Some(12),
            day_type: Some(DayType::All),
            occurrences: Some(41),
            out_of: Some(45),
            confidence: Some(0.911),
            title: "Turn on Hall when Hall motion detects motion".into(),
            explanation: "On 41 of 45 times the hall light went on within 12 s.".into(),
        };
        let [_, user] = messages(&req);
        let facts: serde_json::Value = serde_json::from_str(&user.1).expect("JSON facts");
        assert_eq!(facts["kind"], "co_occurrence");
        assert_eq!(facts["entities"][0]["role"], "trigger");
        assert_eq!(facts["entities"][1]["entity_id"], "light.hall");
        assert_eq!(facts["days"], "every day");
        assert_eq!(facts["confidence_percent"], 91);
        assert_eq!(facts["delay_seconds"], 12);
        assert_eq!(facts["title"], req.title);
        assert!(estimate_tokens(&user.1) < 300);
    }

    #[test]
    fn clean_collapses_space_and_cuts_on_characters() {
        assert_eq!(clean("  a \n\t b\u{7}c  ", 10), "a b c");
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(clean("ééé", 2), "éé…");
        assert_eq!(clean("", 5), "");
    }
}
