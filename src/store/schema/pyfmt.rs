//! Python semantics Home Assistant's InfluxDB integration relies on, re-implemented over the JSON
//! values HomeIQ receives: `float(x)`, `str(x)`/`repr(x)` and the two regular expressions that
//! pull a number out of a text attribute. Used by the `ha_compat` schema only.
//!
//! Tables are from Unicode 15.1 (Python 3.13, which Home Assistant 2025.4 runs on). Known limits,
//! because JSON has lost the Python type: tuples print as lists unless the attribute is one of
//! the light colour attributes, enum members in lists print as `<Enum.NAME: 'value'>` only for
//! `hvac_modes` and `supported_color_modes`, and `datetime` attributes print with a space
//! separator only for the attributes in [`DATETIME_ATTRIBUTES`]. Unassigned code points inside
//! quoted strings are printed raw (Python escapes them). Dictionary keys come in the order the
//! JSON map keeps them.

use std::fmt::Write as _;

use serde_json::Value;

/// Light attributes Home Assistant keeps as tuples.
const TUPLE_ATTRIBUTES: &[&str] = &[
    "hs_color",
    "rgb_color",
    "rgbw_color",
    "rgbww_color",
    "xy_color",
];

/// Attributes holding lists of enum members, with the enum class name.
const ENUM_LIST_ATTRIBUTES: &[(&str, &str)] = &[
    ("hvac_modes", "HVACMode"),
    ("supported_color_modes", "ColorMode"),
];

/// Attributes Home Assistant keeps as `datetime` objects (`str()` uses a space, not `T`).
pub(crate) const DATETIME_ATTRIBUTES: &[&str] =
    &["last_triggered", "media_position_updated_at", "next_event"];

/// First code point of each run of ten Unicode decimal digits (category Nd).
const ND_ZEROS: [u32; 68] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// Assigned non-ASCII code points `str.isprintable()` rejects (Cc, Cf, Cs, Co, Zl, Zp, Zs).
const NON_PRINTABLE: [(u32, u32); 27] = [
    (0x80, 0xA0),
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x1680, 0x1680),
    (0x180E, 0x180E),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x2064),
    (0x2066, 0x206F),
    (0x3000, 0x3000),
    (0xD800, 0xF8FF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xF0000, 0xFFFFD),
    (0x100000, 0x10FFFD),
];

/// The value of a Unicode decimal digit (`\d` in Python's `re`), if `c` is one.
pub(crate) fn decimal_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - 0x30);
    }
    if c.is_ascii() {
        return None;
    }
    let cp = c as u32;
    let i = ND_ZEROS.partition_point(|&z| z <= cp);
    let zero = ND_ZEROS[i.checked_sub(1)?];
    (cp - zero < 10).then_some(cp - zero)
}

/// Python's `str.isspace()` for one character.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `float(s)` for a `str`: surrounding whitespace, Unicode digits, `_` between digits,
/// `inf`/`infinity`/`nan` in any case. `None` where Python raises `ValueError`.
pub(crate) fn float_from_str(s: &str) -> Option<f64> {
    // Fast path: plain ASCII numbers are by far the most common input.
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        if is_py_space(c) {
            ascii.push(' ');
        } else if let Some(d) = decimal_value(c) {
            ascii.push(char::from(b'0' + d as u8));
        } else if c.is_ascii() {
            ascii.push(c);
        } else {
            return None;
        }
    }
    let ascii = remove_underscores(&ascii)?;
    ascii.trim_matches(' ').parse::<f64>().ok()
}

/// Python's rule for `_` in numbers: only between two digits.
fn remove_underscores(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut prev = '\0';
    for c in s.chars() {
        if c == '_' {
            if !prev.is_ascii_digit() {
                return None;
            }
        } else {
            if prev == '_' && !c.is_ascii_digit() {
                return None;
            }
            out.push(c);
        }
        prev = c;
    }
    (prev != '_').then_some(out)
}

/// Python's `float(x)` for a JSON value: numbers and booleans convert, strings parse, `None`,
/// lists and dicts raise `TypeError` (`None` here).
pub(crate) fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => float_from_str(s),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The integration's `RE_DIGIT_TAIL` (`^[^\.]*\d+\.?\d+[^\.]*$`): at most one `.`; with none,
/// two adjacent digits somewhere; with one, a digit on each side of it.
pub(crate) fn has_digit_tail(s: &str) -> bool {
    let mut dots = s.match_indices('.');
    match (dots.next(), dots.next()) {
        (None, _) => {
            let mut prev_digit = false;
            for c in s.chars() {
                let d = decimal_value(c).is_some();
                if d && prev_digit {
                    return true;
                }
                prev_digit = d;
            }
            false
        }
        (Some((i, _)), None) => {
            let before = s[..i].chars().next_back().and_then(decimal_value);
            let after = s[i + 1..].chars().next().and_then(decimal_value);
            before.is_some() && after.is_some()
        }
        _ => false,
    }
}

/// `float(RE_DECIMAL.sub("", s))`: keeps digits and dots, then parses.
pub(crate) fn digits_as_float(s: &str) -> Option<f64> {
    let kept: String = s
        .chars()
        .filter_map(|c| {
            if c == '.' {
                Some('.')
            } else {
                decimal_value(c).map(|d| char::from(b'0' + d as u8))
            }
        })
        .collect();
    kept.parse::<f64>().ok()
}

/// Python's `str(value)` of attribute `key` as Home Assistant holds it.
pub(crate) fn str_of(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) => {
            if DATETIME_ATTRIBUTES.contains(&key) && looks_like_isoformat(s) {
                let mut out = s.clone();
                out.replace_range(10..11, " ");
                out
            } else {
                s.clone()
            }
        }
        Value::Array(items) => {
            let mut out = String::new();
            if TUPLE_ATTRIBUTES.contains(&key) {
                out.push('(');
                join_repr(items, &mut out);
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            } else if let Some((_, class)) = ENUM_LIST_ATTRIBUTES.iter().find(|(k, _)| *k == key) {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match item {
                        Value::String(s) => {
                            let _ = write!(out, "<{class}.{}: ", s.to_uppercase());
                            repr_str(s, &mut out);
                            out.push('>');
                        }
                        other => repr(other, &mut out),
                    }
                }
                out.push(']');
            } else {
                repr(v, &mut out);
            }
            out
        }
        other => {
            let mut out = String::new();
            repr(other, &mut out);
            out
        }
    }
}

/// Whether `s` is `YYYY-MM-DDTHH:MM:SS…`, the start of `datetime.isoformat()`.
fn looks_like_isoformat(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

fn join_repr(items: &[Value], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        repr(item, out);
    }
}

/// Python's `repr()` of a JSON value (`None`, `True`, `'text'`, `[1, 2.5]`, `{'k': 'v'}`).
pub(crate) fn repr(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                repr_float(f, out);
            }
        }
        Value::String(s) => repr_str(s, out),
        Value::Array(items) => {
            out.push('[');
            join_repr(items, out);
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_str(k, out);
                out.push_str(": ");
                repr(v, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub(crate) fn repr_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-7`, `1e16`, `0e0`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if neg {
        out.push('-');
    }
    let decpt = exp + 1;
    if (-4 < decpt && decpt <= 16) || f == 0.0 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let decpt = decpt as usize;
            if digits.len() <= decpt {
                out.push_str(&digits);
                for _ in digits.len()..decpt {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
}

fn is_printable(c: char) -> bool {
    let cp = c as u32;
    if cp < 0x80 {
        return (0x20..0x7f).contains(&cp);
    }
    let i = NON_PRINTABLE.partition_point(|&(start, _)| start <= cp);
    match i.checked_sub(1) {
        Some(j) => cp > NON_PRINTABLE[j].1,
        None => true,
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub(crate) fn repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let cp = c as u32;
                let _ = if cp <= 0xff {
                    write!(out, "\\x{cp:02x}")
                } else if cp <= 0xffff {
                    write!(out, "\\u{cp:04x}")
                } else {
                    write!(out, "\\U{cp:08x}")
                };
            }
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: f64) -> String {
        let mut s = String::new();
        repr_float(v, &mut s);
        s
    }

    #[test]
    fn float_repr_matches_python() {
        for (v, want) in [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
            (33.333333333333336, "33.333333333333336"),
            (2.0261123232707e17, "2.0261123232707e+17"),
            (-2.5e-7, "-2.5e-07"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(r(v), want, "{v}");
        }
    }

    #[test]
    fn float_parsing_matches_python() {
        for (s, want) in [
            ("12", Some(12.0)),
            (" 12.5 ", Some(12.5)),
            ("1_000", Some(1000.0)),
            ("1__0", None),
            ("_1", None),
            ("1_", None),
            ("1e5", Some(1e5)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("", None),
            ("abc", None),
            ("١٢", Some(12.0)),
            ("１２.５", Some(12.5)),
            ("\u{a0}7\u{2003}", Some(7.0)),
            ("\x1c3", Some(3.0)),
            ("12 °C", None),
        ] {
            assert_eq!(float_from_str(s), want, "{s:?}");
        }
        assert!(float_from_str("NaN").is_some_and(f64::is_nan));
        assert_eq!(float_from_str("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(float_of(&json!(true)), Some(1.0));
        assert_eq!(float_of(&json!(null)), None);
        assert_eq!(float_of(&json!([1])), None);
    }

    #[test]
    fn digit_tail_matches_the_regex() {
        for (s, want) in [
            ("Epic sax guy 10 hours", true),
            ("kxopViU98Xo", true),
            ("(255, 127, 125)", true),
            ("(0.923, 50.98)", false),
            ("v1", false),
            ("v1.2", true),
            ("1.2.3", false),
            ("a.12", false),
            ("12.", false),
            ("2026-11-23 14:12:59.590059+00:00", true),
        ] {
            assert_eq!(has_digit_tail(s), want, "{s}");
        }
        assert_eq!(digits_as_float("(255, 127, 125)"), Some(255_127_125.0));
        assert_eq!(
            digits_as_float("2026-11-23 14:12:59.590059+00:00"),
            Some(20_261_123_141_259.59)
        );
    }

    #[test]
    fn str_matches_python() {
        assert_eq!(str_of("x", &json!(null)), "None");
        assert_eq!(
            str_of("x", &json!(["a", 1, 2.5, true, null])),
            "['a', 1, 2.5, True, None]"
        );
        assert_eq!(
            str_of("rgb_color", &json!([255, 64, 112])),
            "(255, 64, 112)"
        );
        assert_eq!(str_of("hs_color", &json!([1.0])), "(1.0,)");
        assert_eq!(
            str_of("hvac_modes", &json!(["off", "heat_cool"])),
            "[<HVACMode.OFF: 'off'>, <HVACMode.HEAT_COOL: 'heat_cool'>]"
        );
        assert_eq!(
            str_of(
                "media_position_updated_at",
                &json!("2026-11-23T14:12:59.590059+00:00")
            ),
            "2026-11-23 14:12:59.590059+00:00"
        );
        assert_eq!(
            str_of("x", &json!({"a": "it's", "b": [1]})),
            "{'a': \"it's\", 'b': [1]}"
        );
        let mut s = String::new();
        repr_str("q'\"\\\n\t\u{7f}\u{a0}é\u{200b}😀", &mut s);
        assert_eq!(s, "'q\\'\"\\\\\\n\\t\\x7f\\xa0é\\u200b😀'");
    }
}
