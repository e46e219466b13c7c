use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use super::coverage::{self, Start};
use super::generate::{self, EntityInfo, Lookup, Synergy};
use super::model::{
    self, Actor, Event, Sensitive, Source, Status, SuggestionKind, Transition, Wording,
};
use super::store::{Change, Record, SuggestionStore};
use super::{ha_api, proposals, yaml};
use crate::patterns::{Actors, DayType, Delay, Pattern, PatternEntity, PatternKind, TimeWindow};

struct Names(HashMap<&'static str, EntityInfo>);

impl Lookup for Names {
    fn info(&self, entity_id: &str) -> EntityInfo {
        self.0.get(entity_id).cloned().unwrap_or(EntityInfo {
            name: entity_id.to_owned(),
            ..Default::default()
        })
    }
}

fn names() -> Names {
    let info = |name: &str, class: Option<&str>, area: Option<&str>| EntityInfo {
        name: name.into(),
        device_class: class.map(str::to_owned),
        area_id: area.map(str::to_owned),
    };
    Names(HashMap::from([
        (
            "light.kitchen",
            info("Kitchen light", None, Some("kitchen")),
        ),
        (
            "binary_sensor.front_door",
            info("Front door", Some("door"), Some("hall")),
        ),
        ("light.hall", info("Hall light", None, Some("hall"))),
        (
            "lock.front_door",
            info("Front door lock", None, Some("hall")),
        ),
        ("cover.garage", info("Garage door", Some("garage"), None)),
        ("cover.blinds", info("Blinds", Some("blind"), None)),
        (
            "binary_sensor.hall_motion",
            info("Hall motion", Some("motion"), Some("hall")),
        ),
    ]))
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn time_of_day(entity: &str, state: &str, day_type: DayType, centre: &str) -> Pattern {
    Pattern {
        id: "0123456789abcdef".into(),
        kind: PatternKind::TimeOfDay,
        entities: vec![PatternEntity {
            entity_id: entity.into(),
            state: state.into(),
        }],
        day_type,
        time_window: Some(TimeWindow {
            start: "06:40".into(),
            end: "06:55".into(),
            centre: centre.into(),
            spread_minutes: 4.0,
        }),
        delay: None,
        occurrences: 18,
        eligible_days: Some(22),
        trigger_occurrences: None,
        confidence: 0.8,
        chance: Some(0.05),
        lift: None,
        first_seen: t("2026-11-02T06:47:00Z"),
        last_seen: t("2026-12-04T06:45:00Z"),
        evidence: vec![crate::patterns::Occurrence {
            time: t("2026-12-04T06:45:00Z"),
            local_date: NaiveDate::from_ymd_opt(2026, 12, 4).expect("date"),
            local_time: "06:45:00".into(),
            delay_seconds: None,
        }],
        actors: Actors {
            person: 18,
            device: 2,
            unknown: 0,
        },
    }
}

fn co_occurrence(first: (&str, &str), then: (&str, &str)) -> Pattern {
    Pattern {
        id: "fedcba9876543210".into(),
        kind: PatternKind::CoOccurrence,
        entities: vec![
            PatternEntity {
                entity_id: first.0.into(),
                state: first.1.into(),
            },
            PatternEntity {
                entity_id: then.0.into(),
                state: then.1.into(),
            },
        ],
        day_type: DayType::All,
        time_window: None,
        delay: Some(Delay {
            median_seconds: 12,
            min_seconds: 3,
            max_seconds: 95,
            iqr_seconds: 10,
        }),
        occurrences: 40,
        eligible_days: None,
        trigger_occurrences: Some(50),
        confidence: 0.8,
        chance: None,
        lift: Some(6.0),
        first_seen: t("2026-11-05T18:00:00Z"),
        last_seen: t("2026-12-05T18:00:00Z"),
        evidence: vec![],
        actors: Actors {
            person: 40,
            device: 10,
            unknown: 0,
        },
    }
}

#[test]
fn a_persons_habit_outranks_a_device_doing_it_by_itself() {
    let habit = time_of_day("light.kitchen", "on", DayType::Weekday, "06:47");
    let mut schedule = time_of_day("switch.coffee", "on", DayType::Weekday, "07:00");
    schedule.confidence = 1.0;
    schedule.occurrences = 22;
    schedule.actors = Actors {
        person: 0,
        device: 22,
        unknown: 0,
    };
    let h = generate::from_pattern(&habit, &names()).expect("habit");
    let s = generate::from_pattern(&schedule, &names()).expect("schedule");
    assert!(
        h.score > s.score,
        "habit {} must outrank the device's own schedule {}",
        h.score,
        s.score
    );
    // unattributed history (read back from Home Assistant) ranks like device-reported changes
    let mut unknown = schedule.clone();
    unknown.actors = Actors {
        person: 0,
        device: 0,
        unknown: 22,
    };
    let u = generate::from_pattern(&unknown, &names()).expect("unknown");
    assert_eq!(u.score, s.score);
    // and every learned suggestion stays above every synergy
    assert!(s.score > 0.35);
}

#[test]
fn a_time_of_day_pattern_becomes_a_time_triggered_automation() {
    let p = time_of_day("light.kitchen", "on", DayType::Weekday, "06:47");
    let s = generate::from_pattern(&p, &names()).expect("suggestion");
    assert_eq!(s.kind, SuggestionKind::TimeOfDay);
    assert_eq!(s.source, Source::Pattern);
    assert_eq!(s.notify_only, None);
    assert_eq!(s.area_id.as_deref(), Some("kitchen"));
    assert_eq!(s.title, "Turn on Kitchen light at 06:47 on weekdays");
    assert_eq!(
        s.explanation,
        "On 18 of the last 22 weekdays Kitchen light went on between 06:40 and 06:55 (typically 06:47). HomeIQ would do it at 06:47 on weekdays."
    );
    assert_eq!(
        s.automation,
        json!({
            "id": "homeiq_p0123456789abcdef",
            "alias": "Turn on Kitchen light at 06:47 on weekdays",
            "description": format!("Created by HomeIQ (suggestion p0123456789abcdef): {}", s.explanation),
            "triggers": [{"trigger": "time", "at": "06:47:00"}],
            "conditions": [{"condition": "time", "weekday": ["mon", "tue", "wed", "thu", "fri"]}],
            "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.kitchen"}}],
            "mode": "single",
        })
    );
    // the YAML HA's editor would show, with the time quoted (YAML 1.1 reads 06:47:00 as a number)
    let text = yaml::to_yaml(&s.automation);
    assert_eq!(
        text,
        format!(
            "id: homeiq_p0123456789abcdef\nalias: Turn on Kitchen light at 06:47 on weekdays\ndescription: \"Created by HomeIQ (suggestion p0123456789abcdef): {}\"\ntriggers:\n  - trigger: time\n    at: \"06:47:00\"\nconditions:\n  - condition: time\n    weekday:\n      - mon\n      - tue\n      - wed\n      - thu\n      - fri\nactions:\n  - action: light.turn_on\n    target:\n      entity_id: light.kitchen\nmode: single\n",
            s.explanation
        )
    );
    // deterministic
    assert_eq!(generate::from_pattern(&p, &names()), Some(s));
}

#[test]
fn a_co_occurrence_becomes_a_state_triggered_automation() {
    let p = co_occurrence(("binary_sensor.front_door", "on"), ("light.hall", "on"));
    let s = generate::from_pattern(&p, &names()).expect("suggestion");
    assert_eq!(s.kind, SuggestionKind::CoOccurrence);
    assert_eq!(s.title, "Turn on Hall light when Front door opens");
    assert_eq!(
        s.explanation,
        "40 of the 50 times Front door opened, Hall light went on within 2 min (typically after 12 s). HomeIQ would do it as soon as Front door opens."
    );
    assert_eq!(s.evidence.occurrences, 40);
    assert_eq!(s.evidence.out_of, Some(50));
    assert_eq!(
        s.automation,
        json!({
            "id": "homeiq_pfedcba9876543210",
            "alias": "Turn on Hall light when Front door opens",
            "description": format!("Created by HomeIQ (suggestion pfedcba9876543210): {}", s.explanation),
            "triggers": [{"trigger": "state", "entity_id": "binary_sensor.front_door", "to": "on"}],
            "conditions": [],
            "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.hall"}}],
            "mode": "single",
        })
    );
    let text = yaml::to_yaml(&s.automation);
    assert!(
        text.contains("triggers:\n  - trigger: state\n    entity_id: binary_sensor.front_door\n    to: \"on\"\nconditions: []\n"),
        "{text}"
    );
}

fn mentions(v: &Value, needle: &str) -> bool {
    v.to_string().contains(needle)
}

#[test]
fn security_sensitive_habits_only_notify() {
    let unlock = co_occurrence(
        ("binary_sensor.front_door", "on"),
        ("lock.front_door", "unlocked"),
    );
    let s = generate::from_pattern(&unlock, &names()).expect("suggestion");
    assert_eq!(s.notify_only, Some(Sensitive::Unlock));
    assert_eq!(
        s.automation["actions"][0]["action"],
        "persistent_notification.create"
    );
    assert!(
        !mentions(&s.automation["actions"], "lock.unlock"),
        "{}",
        s.automation
    );
    assert!(
        s.explanation.contains("never unlocks it itself"),
        "{}",
        s.explanation
    );
    assert!(s.title.starts_with("Remind me"), "{}", s.title);

    let garage = time_of_day("cover.garage", "open", DayType::All, "07:30");
    let s = generate::from_pattern(&garage, &names()).expect("suggestion");
    assert_eq!(s.notify_only, Some(Sensitive::OpenCover));
    assert!(!mentions(&s.automation["actions"], "cover.open_cover"));
    // a blind is no door: opening it is an action
    let blinds = time_of_day("cover.blinds", "open", DayType::All, "07:30");
    let s = generate::from_pattern(&blinds, &names()).expect("suggestion");
    assert_eq!(s.notify_only, None);
    assert_eq!(s.automation["actions"][0]["action"], "cover.open_cover");
    // locking is not sensitive; disarming is
    assert_eq!(generate::sensitive("lock.front_door", "locked", None), None);
    assert_eq!(
        generate::sensitive("alarm_control_panel.home", "disarmed", None),
        Some(Sensitive::Disarm)
    );
    // a reminder ranks below the same habit as an action
    let lock_score = generate::from_pattern(&unlock, &names()).map(|s| s.score);
    let light_score = generate::from_pattern(
        &co_occurrence(("binary_sensor.front_door", "on"), ("light.hall", "on")),
        &names(),
    )
    .map(|s| s.score);
    assert!(lock_score < light_score, "{lock_score:?} {light_score:?}");
}

#[test]
fn ids_are_stable_while_a_habit_drifts() {
    let before = time_of_day("light.kitchen", "on", DayType::Weekday, "06:47");
    let mut after = before.clone();
    after.time_window = Some(TimeWindow {
        start: "07:05".into(),
        end: "07:20".into(),
        centre: "07:12".into(),
        spread_minutes: 5.0,
    });
    let (a, b) = (
        generate::from_pattern(&before, &names()).expect("a"),
        generate::from_pattern(&after, &names()).expect("b"),
    );
    assert_eq!(a.automation["id"], b.automation["id"]);
    assert_eq!(b.automation["triggers"][0]["at"], "07:12:00");
    let built = proposals(&[after], &[], &[], &names());
    assert_eq!(built[0].0, "p0123456789abcdef");
    // a synergy's id depends on its devices only
    let s = Synergy {
        kind: SuggestionKind::MotionLight,
        area_id: "hall".into(),
        area_name: "Hall".into(),
        sensor: "binary_sensor.hall_motion".into(),
        targets: vec!["light.hall".into()],
    };
    let mut renamed = s.clone();
    renamed.area_name = "Entrance".into();
    assert_eq!(generate::synergy_id(&s), generate::synergy_id(&renamed));
    let mut other = s.clone();
    other.targets.push("light.kitchen".into());
    assert_ne!(generate::synergy_id(&s), generate::synergy_id(&other));
}

#[test]
fn patterns_an_automation_already_covers_are_not_suggested() {
    let seq = co_occurrence(("binary_sensor.front_door", "on"), ("light.hall", "on"));
    let daily = time_of_day("light.kitchen", "on", DayType::All, "06:47");
    let patterns = [seq.clone(), daily.clone()];
    assert_eq!(proposals(&patterns, &[], &[], &names()).len(), 2);
    // the current syntax, a list of entities, a toggle
    let door_light = json!({"id": "1", "triggers": [{"trigger": "state", "entity_id": ["binary_sensor.front_door"], "to": "on"}],
        "actions": [{"action": "light.toggle", "target": {"entity_id": ["light.hall", "light.porch"]}}]});
    let built = proposals(&patterns, &[], &[door_light], &names());
    assert_eq!(built.len(), 1);
    assert_eq!(built[0].1.kind, SuggestionKind::TimeOfDay);
    // the older YAML syntax (`platform`, `service`, `data.entity_id`) inside a `choose`
    let morning = json!({"id": "2", "trigger": [{"platform": "time", "at": "06:30:00"}],
        "action": [{"choose": [{"conditions": [], "sequence": [{"service": "light.turn_on", "data": {"entity_id": "light.kitchen"}}]}]}]});
    let built = proposals(&patterns, &[], std::slice::from_ref(&morning), &names());
    assert_eq!(built.len(), 1);
    assert_eq!(built[0].1.kind, SuggestionKind::CoOccurrence);
    // what does not cover: another entity, the opposite service, another trigger, and HomeIQ's own
    // deployed automation of the same suggestion
    let others = [
        json!({"triggers": [{"trigger": "state", "entity_id": "binary_sensor.front_door"}],
               "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.kitchen"}}]}),
        json!({"triggers": [{"trigger": "time", "at": "23:00:00"}],
               "actions": [{"action": "light.turn_off", "target": {"entity_id": "light.kitchen"}}]}),
        json!({"triggers": [{"trigger": "state", "entity_id": "binary_sensor.hall_motion"}],
               "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.hall"}}]}),
        json!({"id": "homeiq_pfedcba9876543210", "triggers": [{"trigger": "state", "entity_id": "binary_sensor.front_door", "to": "on"}],
               "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.hall"}}]}),
    ];
    assert_eq!(proposals(&patterns, &[], &others, &names()).len(), 2);
    assert!(coverage::covers(
        &morning,
        &Start::Time,
        "light.kitchen",
        "light.turn_on"
    ));
    assert!(!coverage::covers(
        &morning,
        &Start::Entity("binary_sensor.x".into()),
        "light.kitchen",
        "light.turn_on"
    ));
}

#[test]
fn synergies_rank_below_learned_and_skip_linked_or_learned_pairs() {
    let motion = Synergy {
        kind: SuggestionKind::MotionLight,
        area_id: "hall".into(),
        area_name: "Hall".into(),
        sensor: "binary_sensor.hall_motion".into(),
        targets: vec!["light.hall".into()],
    };
    let door = Synergy {
        kind: SuggestionKind::DoorLight,
        sensor: "binary_sensor.front_door".into(),
        ..motion.clone()
    };
    let learned = co_occurrence(("binary_sensor.front_door", "on"), ("light.hall", "on"));
    let built = proposals(&[learned], &[motion.clone(), door], &[], &names());
    // the door → light synergy is what the pattern learned: only the motion one is added
    assert_eq!(built.len(), 2, "{built:?}");
    let synergy = &built[1].1;
    assert_eq!(synergy.source, Source::Synergy);
    assert_eq!(synergy.kind, SuggestionKind::MotionLight);
    assert!(synergy.score < 0.3 && built[0].1.score >= 0.35);
    assert!(
        synergy
            .explanation
            .contains("not learned from your history")
    );
    assert_eq!(
        synergy.automation["triggers"][1]["for"],
        json!({"minutes": 10})
    );
    let linked = json!({"triggers": [{"trigger": "state", "entity_id": "binary_sensor.hall_motion"}],
        "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.hall"}}]});
    assert!(proposals(&[], &[motion], &[linked], &names()).is_empty());
}

#[test]
fn lifecycle_transitions() {
    use Status::*;
    use Transition as T;
    let ok = |from, t| model::next(from, t).ok().flatten();
    assert_eq!(ok(New, T::Deploy), Some(Deployed));
    assert_eq!(ok(Undone, T::Deploy), Some(Deployed));
    assert_eq!(ok(RemovedInHa, T::Deploy), Some(Deployed));
    assert!(model::next(Deployed, T::Deploy).is_err());
    assert!(model::next(ModifiedInHa, T::Deploy).is_err());
    assert_eq!(ok(New, T::Dismiss), Some(Dismissed));
    assert!(model::next(Deployed, T::Dismiss).is_err(), "undo first");
    assert_eq!(model::next(Dismissed, T::Dismiss), Ok(None));
    assert_eq!(ok(Deployed, T::Undo), Some(Undone));
    assert_eq!(ok(ModifiedInHa, T::Undo), Some(Undone));
    assert!(model::next(New, T::Undo).is_err());
    assert!(model::next(Dismissed, T::Undo).is_err());
    assert_eq!(ok(Deployed, T::SeenModified), Some(ModifiedInHa));
    assert_eq!(
        model::next(ModifiedInHa, T::SeenModified),
        Ok(None),
        "recorded once"
    );
    assert_eq!(model::next(New, T::SeenModified), Ok(None));
    assert_eq!(ok(Deployed, T::SeenRemoved), Some(RemovedInHa));
    assert_eq!(ok(ModifiedInHa, T::SeenRemoved), Some(RemovedInHa));
    assert_eq!(model::next(Undone, T::SeenRemoved), Ok(None));
    assert_eq!(ok(Undone, T::Reoffer), Some(New));
    assert_eq!(
        model::next(Dismissed, T::Reoffer),
        Ok(None),
        "a dismissed one never comes back"
    );
    assert_eq!(ok(ModifiedInHa, T::Restore), Some(Deployed));
    assert_eq!(ok(New, T::Restore), Some(New));
}

#[test]
fn references_name_their_path_and_ha_errors_their_field() {
    let a = json!({"triggers": [{"trigger": "state", "entity_id": ["binary_sensor.a", "binary_sensor.b"]}],
        "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.x", "device_id": "d1"}},
                    {"action": "notify.x", "data": {"message": "{{ states('sensor.y') }}", "entity_id": "{{ x }}"}}]});
    let refs: Vec<(String, String)> = coverage::references(&a)
        .into_iter()
        .map(|r| (r.path, r.id))
        .collect();
    assert_eq!(
        refs,
        vec![
            ("actions[0].target.device_id".into(), "d1".into()),
            ("actions[0].target.entity_id".into(), "light.x".into()),
            ("triggers[0].entity_id[0]".into(), "binary_sensor.a".into()),
            ("triggers[0].entity_id[1]".into(), "binary_sensor.b".into()),
        ]
    );
    assert_eq!(
        ha_api::field_of("Entity x is neither a valid entity ID nor a valid UUID for dictionary value @ data[0]['entity_id']").as_deref(),
        Some("[0].entity_id")
    );
    assert_eq!(
        ha_api::field_of(
            "Message malformed: extra keys not allowed @ data['actions'][0]['target']"
        )
        .as_deref(),
        Some("actions[0].target")
    );
    assert_eq!(ha_api::field_of("Invalid trigger 'x' specified"), None);
}

#[tokio::test]
async fn every_change_is_a_version() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = crate::registry::RegistryStore::open(&dir.path().join("homeiq.db"))
        .await
        .expect("db");
    let store = SuggestionStore::new(registry.connection().clone());
    let p = time_of_day("light.kitchen", "on", DayType::All, "06:47");
    let proposal = generate::from_pattern(&p, &names()).expect("proposal");
    let now = t("2026-12-07T10:00:00Z");
    let mut r = Record {
        id: "p0123456789abcdef".into(),
        status: Status::New,
        proposal,
        deployed: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    store
        .save(&r, Some(&Change::new(Actor::Homeiq, Event::Created)))
        .await
        .expect("created");
    r.status = Status::Deployed;
    r.deployed = Some(r.proposal.automation.clone());
    r.version = 2;
    store
        .save(
            &r,
            Some(&Change::new(Actor::Person, Event::Deployed).note("42 ms")),
        )
        .await
        .expect("deployed");
    let loaded = store.load().await.expect("load");
    assert_eq!(loaded, vec![r.clone()]);
    let versions = store.versions(&r.id).await.expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (versions[0].event, versions[0].status),
        (Event::Created, Status::New)
    );
    assert_eq!(
        (versions[1].event, versions[1].actor, versions[1].status),
        (Event::Deployed, Actor::Person, Status::Deployed)
    );
    assert_eq!(versions[1].note.as_deref(), Some("42 ms"));
    // a second version number 2 is refused (one history per suggestion)
    assert!(
        store
            .save(&r, Some(&Change::new(Actor::Person, Event::Undone)))
            .await
            .is_err()
    );
    store
        .delete(std::slice::from_ref(&r.id))
        .await
        .expect("delete");
    assert!(
        store.versions(&r.id).await.expect("versions").is_empty(),
        "cascade"
    );
}

#[test]
fn the_notification_counts_the_new_suggestions() {
    assert_eq!(super::notification_text(1).0, "HomeIQ has a new suggestion");
    let (title, message) = super::notification_text(3);
    assert_eq!(title, "HomeIQ has 3 new suggestions");
    assert!(message.contains("3 new routines"));
}

#[test]
fn a_build_offers_new_ones_keeps_dismissed_and_reoffers_undone_only_when_stronger() {
    use std::collections::HashMap as Map;
    let now = t("2026-12-07T03:10:00Z");
    let daily = time_of_day("light.kitchen", "on", DayType::All, "06:47");
    let proposal = |confidence: f64| {
        let mut p = daily.clone();
        p.confidence = confidence;
        generate::from_pattern(&p, &names()).expect("proposal")
    };
    let record = |id: &str, status: Status, confidence: f64| Record {
        id: id.into(),
        status,
        proposal: proposal(confidence),
        deployed: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let id = "p0123456789abcdef".to_owned();
    // first build: offered
    let merged = super::merge(&Map::new(), vec![(id.clone(), proposal(0.8))], now);
    assert_eq!(merged.new, 1);
    assert_eq!(merged.writes[0].0.status, Status::New);
    assert_eq!(
        merged.writes[0].1.as_ref().map(|c| c.event),
        Some(Event::Created)
    );
    // dismissed: never offered again, whatever the pattern does
    let current = Map::from([(id.clone(), record(&id, Status::Dismissed, 0.8))]);
    let merged = super::merge(&current, vec![(id.clone(), proposal(0.99))], now);
    assert!(merged.writes.is_empty() && merged.new == 0);
    // undone at 0.8: not offered at 0.85, offered at 0.9
    let mut undone = record(&id, Status::Undone, 0.8);
    undone.proposal.strength_at_undo = Some(0.8);
    let current = Map::from([(id.clone(), undone)]);
    assert!(
        super::merge(&current, vec![(id.clone(), proposal(0.85))], now)
            .writes
            .is_empty()
    );
    let merged = super::merge(&current, vec![(id.clone(), proposal(0.9))], now);
    assert_eq!(merged.new, 1);
    assert_eq!(merged.writes[0].0.status, Status::New);
    assert_eq!(
        merged.writes[0].1.as_ref().map(|c| c.event),
        Some(Event::Reoffered)
    );
    // a new one whose habit drifted: a version (the automation changed); gone from the build:
    // withdrawn; a deployed one gone from the build stays
    let current = Map::from([
        (id.clone(), record(&id, Status::New, 0.8)),
        ("pgone".to_owned(), record("pgone", Status::New, 0.8)),
        ("pkept".to_owned(), record("pkept", Status::Deployed, 0.8)),
    ]);
    let mut drifted = daily.clone();
    drifted.time_window = Some(TimeWindow {
        start: "07:00".into(),
        end: "07:20".into(),
        centre: "07:10".into(),
        spread_minutes: 5.0,
    });
    let fresh = generate::from_pattern(&drifted, &names()).expect("proposal");
    let merged = super::merge(&current, vec![(id.clone(), fresh)], now);
    assert_eq!(merged.writes.len(), 1);
    assert_eq!(
        merged.writes[0].1.as_ref().map(|c| c.event),
        Some(Event::Updated)
    );
    assert_eq!(
        merged.writes[0].0.proposal.automation["triggers"][0]["at"],
        "07:10:00"
    );
    assert_eq!(merged.stale, vec!["pgone".to_owned()]);
    // only the evidence changed: saved without a version
    let merged = super::merge(
        &Map::from([(id.clone(), record(&id, Status::New, 0.8))]),
        vec![(id.clone(), proposal(0.81))],
        now,
    );
    assert_eq!(merged.writes.len(), 1);
    assert!(merged.writes[0].1.is_none());
}

/// HA's REST answers as HomeIQ reads them: a 400 names the field, 401 is the token, 405 on
/// DELETE (the Supervisor's older proxy) is "not supported", 400 on DELETE is "not there".
#[tokio::test]
async fn ha_rest_answers_become_typed_outcomes() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use ha_api::{Deleted, HaApiError, HaConfig};
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/api/config/automation/config/homeiq_refused",
                web::post().to(|| async {
                    HttpResponse::BadRequest().json(json!({"message": "Message malformed: extra keys not allowed @ data['actions'][0]['target']"}))
                }),
            )
            .route(
                "/api/config/automation/config/homeiq_refused",
                web::delete().to(|| async { HttpResponse::MethodNotAllowed().finish() }),
            )
            .route(
                "/api/config/automation/config/homeiq_gone",
                web::delete().to(|| async {
                    HttpResponse::BadRequest().json(json!({"message": "Resource not found"}))
                }),
            )
            .route(
                "/api/config/automation/config/homeiq_secret",
                web::get().to(|| async { HttpResponse::Unauthorized().finish() }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs()[0].port();
    let running = server.run();
    let stop = running.handle();
    tokio::spawn(running);
    let endpoint = crate::config::HaEndpoint {
        websocket_url: format!("ws://127.0.0.1:{port}/api/websocket"),
        rest_url: format!("http://127.0.0.1:{port}/api"),
        token: crate::config::Secret::new("t"),
        supervisor: false,
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let settings = crate::config::HaSettings::default();
    let (handle, _rx, client) = crate::ha::spawn(
        crate::ha::ClientOptions::new(&settings, endpoint.clone()),
        cancel.clone(),
    );
    let ha = HaConfig::new(handle, &endpoint);
    assert_eq!(
        ha.post("homeiq_refused", &json!({})).await,
        Err(HaApiError::Refused {
            field: Some("actions[0].target".into()),
            message: "Message malformed: extra keys not allowed @ data['actions'][0]['target']"
                .into()
        })
    );
    assert_eq!(ha.delete("homeiq_refused").await, Ok(Deleted::NotSupported));
    assert_eq!(ha.delete("homeiq_gone").await, Ok(Deleted::Missing));
    assert!(
        matches!(ha.get("homeiq_secret").await, Err(HaApiError::Auth(m)) if m.contains("administrator")),
        "a refused token says what token is needed"
    );
    // not connected: validation is unavailable (never silently skipped)
    assert!(matches!(
        ha.validate(&json!({"triggers": [], "actions": []})).await,
        Err(HaApiError::Unavailable(_))
    ));
    cancel.cancel();
    let _ = client.await;
    stop.stop(false).await;
}

/// A language model's wording stays while the template would word the suggestion the same, and
/// gives way to the template's when the evidence changed (numbers in old words would be wrong).
#[test]
fn llm_wording_survives_builds_only_while_the_evidence_is_the_same() {
    use std::collections::HashMap as Map;
    let now = t("2026-12-07T03:10:00Z");
    let daily = time_of_day("light.kitchen", "on", DayType::All, "06:47");
    let fresh = |occurrences: u32| {
        let mut p = daily.clone();
        p.occurrences = occurrences;
        generate::from_pattern(&p, &names()).expect("proposal")
    };
    let id = "p0123456789abcdef".to_owned();
    let mut reworded = fresh(23);
    let template = (reworded.title.clone(), reworded.explanation.clone());
    reworded.reworded(
        "Morning kitchen light".into(),
        "You switch it on at 6:47.".into(),
    );
    assert_eq!(reworded.wording, Wording::Llm);
    assert_eq!(reworded.template.as_ref(), Some(&template));
    let record = Record {
        id: id.clone(),
        status: Status::New,
        proposal: reworded.clone(),
        deployed: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let current = Map::from([(id.clone(), record)]);
    // the same evidence: nothing to write, the model's words stay
    let merged = super::merge(&current, vec![(id.clone(), fresh(23))], now);
    assert!(merged.writes.is_empty(), "{:?}", merged.writes);
    // new evidence: the template's wording again (to be reworded)
    let merged = super::merge(&current, vec![(id.clone(), fresh(26))], now);
    let p = &merged.writes[0].0.proposal;
    assert_eq!((p.wording, p.template.is_none()), (Wording::Template, true));
    assert_ne!(p.title, "Morning kitchen light");
}

/// What the model is told: only the suggestion's own entities, the pattern's window and the
/// template wording (never the model's own earlier words).
#[test]
fn the_wording_request_holds_only_the_suggestion() {
    let pattern = co_occurrence(("binary_sensor.front_door", "on"), ("light.hall", "on"));
    let mut proposal = generate::from_pattern(&pattern, &names()).expect("proposal");
    let template = proposal.title.clone();
    proposal.reworded("LLM title".into(), "LLM words".into());
    let req = generate::wording_request(&proposal, Some(&pattern), &names());
    assert_eq!(req.kind, crate::llm::WordingKind::CoOccurrence);
    assert_eq!(req.title, template);
    let ids: Vec<&str> = req.entities.iter().map(|e| e.entity_id.as_str()).collect();
    assert_eq!(ids, ["binary_sensor.front_door", "light.hall"]);
    assert_eq!(req.entities[0].role, crate::llm::EntityRole::Trigger);
    assert_eq!(req.entities[1].role, crate::llm::EntityRole::Action);
    assert_eq!(req.entities[1].name.as_deref(), Some("Hall light"));
    assert_eq!(req.entities[1].state.as_deref(), Some("on"));
    assert_eq!(req.entities[1].domain, "light");
    assert!(req.delay_seconds.is_some() && req.window.is_none());
}

#[test]
fn an_action_already_proposed_ranks_lower_the_second_time() {
    // the hall light on at 06:47, and the hall light on after the front door: one action
    let mut daily = time_of_day("light.hall", "on", DayType::All, "06:47");
    daily.id = "00000000000000aa".into();
    let seq = co_occurrence(("binary_sensor.front_door", "on"), ("light.hall", "on"));
    let other = time_of_day("light.kitchen", "on", DayType::All, "07:30");
    let alone = |p: &Pattern| generate::from_pattern(p, &names()).expect("alone").score;
    let built = proposals(
        &[daily.clone(), seq.clone(), other.clone()],
        &[],
        &[],
        &names(),
    );
    let score = |id: &str| {
        built
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, p)| p.score)
            .expect("built")
    };
    let (first, second) = if alone(&daily) >= alone(&seq) {
        (&daily, &seq)
    } else {
        (&seq, &daily)
    };
    let first_id = generate::pattern_suggestion_id(&first.id);
    let second_id = generate::pattern_suggestion_id(&second.id);
    assert_eq!(score(&first_id), alone(first), "the best keeps its score");
    assert!(
        score(&second_id) < alone(second) && score(&second_id) > 0.35,
        "the repeat sinks but stays above every synergy: {}",
        score(&second_id)
    );
    // another action is untouched
    assert_eq!(
        score(&generate::pattern_suggestion_id(&other.id)),
        alone(&other)
    );
}
