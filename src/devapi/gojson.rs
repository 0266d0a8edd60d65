//! Go's output formats Kubernetes messages depend on: `strconv.Quote`, and `encoding/json` for
//! JSON values: sorted object keys, HTML-safe string escaping
//! (`<`, `>`, `&`, U+2028, U+2029), `\b`/`\f` as Go 1.22+ writes them, and Go's float format.
//! Kubernetes prints values this way in error messages, table cells, JSONPath output and
//! `managedFields` keys, so every place that must match it uses this one module.

use serde_json::{Number, Value};

/// A number as `encoding/json` writes it.
pub fn number(n: &Number) -> String {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i.to_string(),
        (None, Some(u)) => u.to_string(),
        _ => float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// `v` as `encoding/json.Marshal` writes it.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v, usize::MAX);
    out
}

/// Go `encoding/json` for a float64 (`1e+21`, `1e-7`, otherwise fixed notation).
pub fn float(f: f64) -> String {
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
pub(crate) fn shortest(f: f64) -> (bool, String, i32) {
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    (f.is_sign_negative(), digits, exp.parse().unwrap_or(0))
}

pub(crate) fn push_exponent(out: &mut String, digits: &str, exp: i32, two_digit_min: bool) {
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

pub(crate) fn push_fixed(out: &mut String, digits: &str, exp: i32) {
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

/// Append `v` to `out`, stopping once `out` is longer than `limit`.
pub fn write(out: &mut String, v: &Value, limit: usize) {
    if out.len() > limit {
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None if n.is_u64() => out.push_str(&n.to_string()),
            None => out.push_str(&float(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => quote(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, limit);
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
                quote(out, k);
                out.push(':');
                if let Some(item) = m.get(k) {
                    write(out, item, limit);
                }
            }
            out.push('}');
        }
    }
}

/// Append `s` as a JSON string literal.
pub fn quote(out: &mut String, s: &str) {
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

/// Go `strconv.Quote`.
pub fn strconv_quote(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_go() {
        assert_eq!(
            to_string(&json!({"b": 1, "a": "<x>&\u{8}"})),
            r#"{"a":"\u003cx\u003e\u0026\b","b":1}"#
        );
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(123456789.0), "123456789");
        assert_eq!(number(&Number::from(u64::MAX)), "18446744073709551615");
    }
}
