//! Renders values the way Go prints them in Kubernetes error messages: `strconv.Quote` for
//! strings, `%v` for numbers, `encoding/json` for everything else. Exact text matters because
//! clients and tests compare these messages.

use serde_json::Value;

use crate::devapi::gojson::{self, push_exponent, push_fixed, shortest};

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
    gojson::strconv_quote(s)
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

/// Go `encoding/json.Marshal` of a decoded JSON value: sorted keys, HTML-safe escaping.
pub(super) fn json(v: &Value) -> String {
    let mut out = String::new();
    gojson::write(&mut out, v, MAX_RENDERED);
    out
}

/// [`json`] without the length bound, for comparing values the way Go compares marshalled JSON.
pub(super) fn json_unbounded(v: &Value) -> String {
    let mut out = String::new();
    gojson::write(&mut out, v, usize::MAX);
    out
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
