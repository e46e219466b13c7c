//! Decoding of Home Assistant WebSocket frames.
//!
//! A text frame holds one JSON message, or (after `coalesce_messages` was negotiated) a JSON array
//! of messages. Messages are decoded borrowing from the frame; event payloads are decoded into the
//! typed structs of [`super::model`], anything else is kept as raw JSON for whoever asked for it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::{RegistryEvent, RegistryKind, RunKind, RunStarted, State, StateChanged};

/// The error object of a failed command.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub(crate) struct CommandErrorBody {
    /// Machine-readable code (`unknown_command`, `not_found`, `id_reuse`, …).
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

/// One decoded incoming message.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// `auth_required`: the server waits for our token.
    AuthRequired,
    /// `auth_ok`.
    AuthOk {
        /// Home Assistant's version.
        ha_version: String,
    },
    /// `auth_invalid`: the token was refused; the server closes the socket.
    AuthInvalid {
        /// Why.
        message: String,
    },
    /// A command's result.
    Result {
        /// Id of the command.
        id: u64,
        /// The result payload (or the error).
        outcome: Result<Box<RawValue>, CommandErrorBody>,
    },
    /// `pong` for one of our pings.
    Pong {
        /// Id of the ping.
        id: u64,
    },
    /// A `state_changed` event.
    StateChanged(Box<StateChanged>),
    /// A registry change event.
    Registry(RegistryEvent),
    /// An automation or a script started a run (`automation_triggered`, `script_started`).
    RunStarted(RunStarted),
    /// Another event type (counted, not used).
    OtherEvent {
        /// The event type.
        event_type: String,
    },
    /// A message type this client does not know.
    Unknown {
        /// Its `type`.
        kind: String,
    },
}

/// A frame or message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable message from Home Assistant: {0}")]
pub(crate) struct DecodeError(#[from] serde_json::Error);

/// A message, decoded in one pass over its text: the `event` object straight into what its
/// `event_type` calls for.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<CommandErrorBody>,
    #[serde(default, borrow)]
    event: Option<Event<'a>>,
    #[serde(default)]
    ha_version: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct StateChangedData {
    entity_id: String,
    #[serde(
        rename = "old_state",
        default,
        deserialize_with = "super::model::present"
    )]
    had_old_state: bool,
    #[serde(default)]
    new_state: Option<State>,
}

/// `data` of `automation_triggered` / `script_started`: which automation or script.
#[derive(Deserialize)]
struct RunData {
    #[serde(default)]
    entity_id: Option<String>,
}

/// The event's own `context` (its id only).
#[derive(Deserialize)]
struct EventContext<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

/// An event's `data`, decoded as its type asks.
enum EventData<'a> {
    StateChanged(StateChangedData),
    Registry(RegistryKind, serde_json::Value),
    Run(RunKind, RunData),
    /// Another event type: not decoded.
    Skipped,
    /// `data` came before `event_type` (Home Assistant sends it after): decoded once the type
    /// is known.
    Raw(&'a RawValue),
}

/// The `event` object of an `event` message.
struct Event<'a> {
    event_type: Cow<'a, str>,
    data: EventData<'a>,
    time_fired: Option<DateTime<Utc>>,
    /// The event's context id (read for run events, which are attributed by it).
    context_id: Option<Cow<'a, str>>,
}

/// A timestamp, read as [`super::model::ha_time`] reads them.
#[derive(Deserialize)]
struct Time(#[serde(deserialize_with = "super::model::ha_time")] DateTime<Utc>);

/// A string borrowed from the frame unless it holds escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> EventData<'a> {
    /// Decodes `data` of an event of type `event_type`.
    fn decode<'de: 'a, D: serde::Deserializer<'de>>(
        event_type: &str,
        d: D,
    ) -> Result<Self, D::Error> {
        if event_type == "state_changed" {
            return StateChangedData::deserialize(d).map(EventData::StateChanged);
        }
        if let Some(kind) = RunKind::from_event_type(event_type) {
            return RunData::deserialize(d).map(|data| EventData::Run(kind, data));
        }
        match RegistryKind::from_event_type(event_type) {
            Some(kind) => serde_json::Value::deserialize(d).map(|v| EventData::Registry(kind, v)),
            None => serde::de::IgnoredAny::deserialize(d).map(|_| EventData::Skipped),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Event<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Key {
            EventType,
            Data,
            TimeFired,
            Context,
            #[serde(other)]
            Other,
        }

        /// `data` decoded with the event type known so far.
        struct DataSeed<'t>(Option<&'t str>);

        impl<'de, 't> serde::de::DeserializeSeed<'de> for DataSeed<'t> {
            type Value = EventData<'de>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<EventData<'de>, D::Error> {
                match self.0 {
                    Some(t) => EventData::decode(t, d),
                    None => <&RawValue>::deserialize(d).map(EventData::Raw),
                }
            }
        }

        struct EventVisitor;

        impl<'de> serde::de::Visitor<'de> for EventVisitor {
            type Value = Event<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Event<'de>, A::Error> {
                let mut event_type: Option<Cow<'de, str>> = None;
                let mut data = None;
                let mut time_fired = None;
                let mut context_id = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::EventType => event_type = Some(map.next_value::<Text<'de>>()?.0),
                        Key::Data => {
                            data = Some(map.next_value_seed(DataSeed(event_type.as_deref()))?)
                        }
                        Key::TimeFired => {
                            time_fired = map.next_value::<Option<Time>>()?.map(|t| t.0)
                        }
                        Key::Context => {
                            context_id = map
                                .next_value::<Option<EventContext<'de>>>()?
                                .and_then(|c| c.id)
                        }
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let event_type =
                    event_type.ok_or_else(|| serde::de::Error::missing_field("event_type"))?;
                let data = match data {
                    Some(EventData::Raw(raw)) => {
                        let mut d = serde_json::Deserializer::from_str(raw.get());
                        EventData::decode(&event_type, &mut d).map_err(serde::de::Error::custom)?
                    }
                    Some(data) => data,
                    None => return Err(serde::de::Error::missing_field("data")),
                };
                Ok(Event {
                    event_type,
                    data,
                    time_fired,
                    context_id,
                })
            }
        }

        d.deserialize_map(EventVisitor)
    }
}

/// Decodes one text frame into its messages (one, or several when coalesced).
pub(crate) fn decode_frame(text: &str) -> Result<Vec<Incoming>, DecodeError> {
    if text.trim_start().starts_with('[') {
        let items: Vec<Envelope<'_>> = serde_json::from_str(text)?;
        Ok(items.into_iter().map(incoming).collect())
    } else {
        Ok(vec![incoming(serde_json::from_str(text)?)])
    }
}

fn incoming(env: Envelope<'_>) -> Incoming {
    match env.kind.as_ref() {
        "auth_required" => Incoming::AuthRequired,
        "auth_ok" => Incoming::AuthOk {
            ha_version: env.ha_version.unwrap_or_default(),
        },
        "auth_invalid" => Incoming::AuthInvalid {
            message: env
                .message
                .unwrap_or_else(|| "access token refused".to_owned()),
        },
        "result" => {
            let id = env.id.unwrap_or(0);
            let outcome = if env.success == Some(true) {
                Ok(env.result.map(ToOwned::to_owned).unwrap_or_else(null_raw))
            } else {
                Err(env.error.unwrap_or(CommandErrorBody {
                    code: "unknown_error".into(),
                    message: "command failed without an error object".into(),
                }))
            };
            Incoming::Result { id, outcome }
        }
        "pong" => Incoming::Pong {
            id: env.id.unwrap_or(0),
        },
        "event" => match env.event {
            Some(event) => event_incoming(event),
            None => Incoming::Unknown {
                kind: "event without payload".into(),
            },
        },
        other => Incoming::Unknown {
            kind: other.to_owned(),
        },
    }
}

fn event_incoming(event: Event<'_>) -> Incoming {
    match event.data {
        EventData::StateChanged(data) => {
            let time_fired = event
                .time_fired
                .or_else(|| data.new_state.as_ref().map(|s| s.last_updated))
                .unwrap_or_else(Utc::now);
            Incoming::StateChanged(Box::new(StateChanged {
                entity_id: data.entity_id,
                had_old_state: data.had_old_state,
                new_state: data.new_state,
                time_fired,
            }))
        }
        EventData::Registry(kind, data) => {
            let text_of = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            Incoming::Registry(RegistryEvent {
                kind,
                action: text_of("action").unwrap_or_default(),
                id: text_of(kind.event_id_key()).unwrap_or_default(),
                old_entity_id: text_of("old_entity_id"),
                data,
            })
        }
        EventData::Run(kind, data) => match (data.entity_id, event.context_id) {
            (Some(entity_id), Some(context_id)) if !context_id.is_empty() => {
                Incoming::RunStarted(RunStarted {
                    kind,
                    entity_id,
                    context_id: context_id.into_owned(),
                })
            }
            // a run without an entity or a context cannot attribute anything
            _ => Incoming::OtherEvent {
                event_type: event.event_type.into_owned(),
            },
        },
        EventData::Skipped | EventData::Raw(_) => Incoming::OtherEvent {
            event_type: event.event_type.into_owned(),
        },
    }
}

fn null_raw() -> Box<RawValue> {
    // serde_json's default raw value is `null`
    Box::<RawValue>::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE_EVENT: &str = r#"{"id":2,"type":"event","event":{"event_type":"state_changed","data":{"entity_id":"sensor.t","old_state":null,"new_state":{"entity_id":"sensor.t","state":"error","attributes":{"note":"a,b \"c\"\n"},"last_changed":"2025-04-01T10:00:00+00:00","last_updated":"2025-04-01T10:00:00+00:00","context":{"id":"x","parent_id":null,"user_id":null}}},"origin":"LOCAL","time_fired":"2025-04-01T10:00:00.5+00:00","context":{"id":"x"}}}"#;

    #[test]
    fn run_events_carry_their_automation_and_context() {
        let automation = r#"{"id":5,"type":"event","event":{"event_type":"automation_triggered","data":{"name":"Wake","entity_id":"automation.wake","source":"time"},"origin":"LOCAL","time_fired":"2025-04-01T05:00:00+00:00","context":{"id":"01RUN","parent_id":null,"user_id":null}}}"#;
        let script = r#"{"id":6,"type":"event","event":{"context":{"id":"01S"},"data":{"name":"Night","entity_id":"script.night"},"event_type":"script_started"}}"#;
        let frame = format!("[{automation},{script}]");
        let got = decode_frame(&frame).expect("decodes");
        match (&got[0], &got[1]) {
            (Incoming::RunStarted(a), Incoming::RunStarted(s)) => {
                assert_eq!(
                    (a.kind, a.entity_id.as_str(), a.context_id.as_str()),
                    (RunKind::Automation, "automation.wake", "01RUN")
                );
                assert_eq!(
                    (s.kind, s.entity_id.as_str(), s.context_id.as_str()),
                    (RunKind::Script, "script.night", "01S")
                );
            }
            other => panic!("not two runs: {other:?}"),
        }
        // without a context nothing can be attributed: just another event
        let bare = r#"{"id":5,"type":"event","event":{"event_type":"automation_triggered","data":{"entity_id":"automation.x"}}}"#;
        assert!(matches!(
            decode_frame(bare).expect("decodes")[0],
            Incoming::OtherEvent { .. }
        ));
    }

    #[test]
    fn decodes_single_and_coalesced_frames() {
        let one = decode_frame(STATE_EVENT).expect("decodes");
        assert_eq!(one.len(), 1);
        let coalesced = format!("[{STATE_EVENT},{{\"id\":3,\"type\":\"pong\"}}]");
        let many = decode_frame(&coalesced).expect("decodes");
        assert_eq!(many.len(), 2);
        match &many[0] {
            Incoming::StateChanged(ev) => {
                let new = ev.new_state.as_ref().expect("new state");
                assert_eq!(new.state, "error");
                assert_eq!(new.attributes["note"], "a,b \"c\"\n");
                assert_eq!(ev.time_fired.timestamp_subsec_millis(), 500);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(many[1], Incoming::Pong { id: 3 }));
    }

    #[test]
    fn a_state_of_error_is_not_a_failed_result() {
        let r =
            decode_frame(r#"{"id":5,"type":"result","success":true,"result":[{"state":"error"}]}"#)
                .expect("decodes");
        assert!(matches!(
            &r[0],
            Incoming::Result {
                id: 5,
                outcome: Ok(_)
            }
        ));
        let r = decode_frame(
            r#"{"id":6,"type":"result","success":false,"error":{"code":"not_found","message":"nope"}}"#,
        )
        .expect("decodes");
        match &r[0] {
            Incoming::Result {
                outcome: Err(e), ..
            } => assert_eq!(e.code, "not_found"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn decodes_registry_events_and_renames() {
        let frame = r#"{"id":4,"type":"event","event":{"event_type":"entity_registry_updated","data":{"action":"update","entity_id":"light.new","old_entity_id":"light.old","changes":{"entity_id":"light.old"}},"time_fired":"2025-04-01T10:00:00+00:00"}}"#;
        match &decode_frame(frame).expect("decodes")[0] {
            Incoming::Registry(ev) => {
                assert_eq!(ev.kind, RegistryKind::Entity);
                assert_eq!(ev.action, "update");
                assert_eq!(ev.id, "light.new");
                assert_eq!(ev.old_entity_id.as_deref(), Some("light.old"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn auth_messages_and_garbage() {
        assert!(matches!(
            decode_frame(r#"{"type":"auth_required","ha_version":"2025.4.4"}"#).expect("ok")[0],
            Incoming::AuthRequired
        ));
        match &decode_frame(
            r#"{"type":"auth_invalid","message":"Invalid access token or password"}"#,
        )
        .expect("ok")[0]
        {
            Incoming::AuthInvalid { message } => assert!(message.contains("Invalid")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(decode_frame("{not json").is_err());
        assert!(decode_frame(r#"{"id":1}"#).is_err());
    }
}
