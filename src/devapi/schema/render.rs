//! Renders values the way Go prints them in Kubernetes error messages: `strconv.Quote` for
//! strings, `%v` for numbers, `encoding/json` for everything else. Exact text matters because
//! clients and tests compare these messages.

use serde_json::Value;

/// Rendered values longer than this are cut (the apiserver has no limit; a dev server does).
const MAX_RENDERED: usize = 4096;

pub(super) fn bound(mut s: String) -> String {
    if s.len() > MAX_RENDERED {
        let mut cut = MAX_RENDERED;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// A JSON value as `field.Error.ErrorBody` prints a bad value.
pub(super) fn bad_value(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Number(n) => number_v(n),
        Value::Bool(b) => b.to_string(),
        _ => json(v),
    }
}

/// A JSON number as Go's `%v` prints the int64/float64 the apiserver decoded it into.
pub(super) fn number_v(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else {
        go_float_v(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Go `strconv.Quote`.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !is_go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint` for the characters that matter in practice: controls,
/// separators other than the ASCII space, format characters and private use are not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || matches!(
            u,
            0xA0 | 0xAD | 0x1680 | 0x180E | 0x2028 | 0x2029 | 0x202F | 0x205F
        )
        || (0x2000..=0x200F).contains(&u)
        || (0x202A..=0x202E).contains(&u)
        || (0x2060..=0x206F).contains(&u)
        || u == 0x3000
        || u == 0xFEFF
        || (0xFFF9..=0xFFFB).contains(&u)
        || (0x600..=0x605).contains(&u)
        || matches!(u, 0x61C | 0x6DD | 0x70F)
        || (0xE000..=0xF8FF).contains(&u)
        || (0xE0000..=0xE007F).contains(&u)
        || u >= 0xF0000)
}

/// Go `%v` for a float64: `strconv.FormatFloat(f, 'g', -1, 64)`.
pub(super) fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let (neg, digits, exp) = shortest(f);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        push_exponent(&mut out, &digits, exp, true);
    } else {
        push_fixed(&mut out, &digits, exp);
    }
    out
}

/// Go `encoding/json` for a float64 (`1e+21`, `1e-7`, otherwise fixed notation).
fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let (neg, digits, exp) = shortest(f);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        push_exponent(&mut out, &digits, exp, false);
    } else {
        push_fixed(&mut out, &digits, exp);
    }
    out
}

/// Shortest round-trip decimal digits of `f` and the exponent of the first digit.
fn shortest(f: f64) -> (bool, String, i32) {
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    (f.is_sign_negative(), digits, exp.parse().unwrap_or(0))
}

fn push_exponent(out: &mut String, digits: &str, exp: i32, two_digit_min: bool) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    if two_digit_min {
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else {
        out.push_str(&exp.unsigned_abs().to_string());
    }
}

fn push_fixed(out: &mut String, digits: &str, exp: i32) {
    let point = exp + 1;
    if point <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(point.unsigned_abs() as usize));
        out.push_str(digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(digits);
            out.push_str(&"0".repeat(point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

/// Go `encoding/json.Marshal` of a decoded JSON value: sorted keys, HTML-safe escaping.
pub(super) fn json(v: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, v, MAX_RENDERED);
    out
}

/// [`json`] without the length bound, for comparing values the way Go compares marshalled JSON.
pub(super) fn json_unbounded(v: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, v, usize::MAX);
    out
}

fn write_json(out: &mut String, v: &Value, limit: usize) {
    if out.len() > limit {
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None if n.is_u64() => out.push_str(&n.to_string()),
            None => out.push_str(&go_json_float(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => write_json_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item, limit);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                if let Some(item) = m.get(k) {
                    write_json(out, item, limit);
                }
            }
            out.push('}');
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_go_percent_v() {
        assert_eq!(go_float_v(1.0), "1");
        assert_eq!(go_float_v(0.5), "0.5");
        assert_eq!(go_float_v(123456.0), "123456");
        assert_eq!(go_float_v(1e6), "1e+06");
        assert_eq!(go_float_v(1234567.0), "1.234567e+06");
        assert_eq!(go_float_v(0.0001), "0.0001");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_float_v(-2.5), "-2.5");
        assert_eq!(go_float_v(1e100), "1e+100");
    }

    #[test]
    fn json_matches_go_encoding() {
        assert_eq!(
            json(&json!({"b": 1, "a": "<x>"})),
            r#"{"a":"\u003cx\u003e","b":1}"#
        );
        assert_eq!(
            json(&json!([1.5, 1e21, 0.0000001, null, true])),
            "[1.5,1e+21,1e-7,null,true]"
        );
        assert_eq!(json(&json!(2.0)), "2");
    }

    #[test]
    fn quote_matches_strconv() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quote("\u{1}é\u{a0}"), r#""\x01é\u00a0""#);
        assert_eq!(quote("😀"), "\"😀\"");
    }

    #[test]
    fn long_values_are_bounded() {
        let s = bound("é".repeat(5000));
        assert!(s.len() <= MAX_RENDERED + 3);
        assert!(s.ends_with("..."));
    }
}
