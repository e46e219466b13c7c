//! The automation as YAML text, keys in the order Home Assistant's editor shows them (JSON maps
//! have none). Strings YAML 1.1 would read as something else (`on`, `06:45:00`, `1e3`) are
//! quoted, so the text pasted into `automations.yaml` is the same automation.

use serde_json::{Map, Value};

/// Keys in this order first; others after them, alphabetically.
const ORDER: [&str; 24] = [
    "id",
    "alias",
    "description",
    "trigger",
    "condition",
    "action",
    "platform",
    "service",
    "entity_id",
    "device_id",
    "from",
    "to",
    "at",
    "for",
    "weekday",
    "triggers",
    "conditions",
    "actions",
    "target",
    "data",
    "choose",
    "sequence",
    "default",
    "mode",
];

/// `value` as a YAML document.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => map_lines(map, 0, None, &mut out),
        Value::Array(items) if !items.is_empty() => list_lines(items, 2, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn ordered(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(k, _)| {
        (
            ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()),
            (*k).clone(),
        )
    });
    entries
}

/// Writes `map` at `indent`; the first line starts with `first` (a list item's `- `) instead.
fn map_lines(map: &Map<String, Value>, indent: usize, first: Option<&str>, out: &mut String) {
    for (i, (k, v)) in ordered(map).into_iter().enumerate() {
        match (i, first) {
            (0, Some(prefix)) => out.push_str(prefix),
            _ => out.push_str(&" ".repeat(indent)),
        }
        out.push_str(&key(k));
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                map_lines(m, indent + 2, None, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                list_lines(items, indent + 4, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// Writes list items whose contents are at `indent` (the `- ` two columns before).
fn list_lines(items: &[Value], indent: usize, out: &mut String) {
    let prefix = format!("{}- ", " ".repeat(indent.saturating_sub(2)));
    for item in items {
        match item {
            Value::Object(m) if !m.is_empty() => map_lines(m, indent, Some(&prefix), out),
            other => {
                out.push_str(&prefix);
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn key(k: &str) -> String {
    if needs_quotes(k) {
        quoted(k)
    } else {
        k.to_owned()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if needs_quotes(s) => quoted(s),
        Value::String(s) => s.clone(),
        // empty collections (and nested lists): JSON is valid YAML flow style
        other => other.to_string(),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Whether a plain scalar would not read back as this string.
fn needs_quotes(s: &str) -> bool {
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "",
    ];
    let lower = s.to_ascii_lowercase();
    WORDS.contains(&lower.as_str())
        || s.parse::<f64>().is_ok()
        || s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ':' | '.' | '-' | '+' | '_'))
        || s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.contains('\n')
        || s.contains('\t')
        || s.contains("{{")
}
