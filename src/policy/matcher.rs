//! String matchers (`is`, `starts_with`, `ends_with`, `contains`, `in`, `has`) and the
//! `claim/<path>` lookup. Used by `eval.rs`; built by `compile.rs`.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// How a criterion folds case before comparing. Operands are folded once at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Compare exactly.
    None,
    /// ASCII-lowercase both sides (email, domain).
    Lower,
    /// ASCII-uppercase both sides (HTTP method).
    Upper,
}

impl Fold {
    pub(crate) fn apply<'a>(self, s: &'a str) -> Cow<'a, str> {
        match self {
            Fold::None => Cow::Borrowed(s),
            Fold::Lower if s.bytes().any(|b| b.is_ascii_uppercase()) => {
                Cow::Owned(s.to_ascii_lowercase())
            }
            Fold::Upper if s.bytes().any(|b| b.is_ascii_lowercase()) => {
                Cow::Owned(s.to_ascii_uppercase())
            }
            Fold::Lower | Fold::Upper => Cow::Borrowed(s),
        }
    }
}

/// One matcher operator with its (already folded) operand. `has` compiles to `Is`: it is
/// applied to each element of a list-valued subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StringOp {
    Is(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    In(Vec<String>),
}

impl StringOp {
    fn matches(&self, value: &str) -> bool {
        match self {
            StringOp::Is(s) => value == s,
            StringOp::StartsWith(s) => value.starts_with(s.as_str()),
            StringOp::EndsWith(s) => value.ends_with(s.as_str()),
            StringOp::Contains(s) => value.contains(s.as_str()),
            StringOp::In(list) => list.iter().any(|s| s == value),
        }
    }
}

/// A matcher object such as `{starts_with: admin@, ends_with: .example.com}`: every operator
/// must hold (AND), as in Pomerium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StringMatcher {
    pub(crate) ops: Vec<StringOp>,
    pub(crate) fold: Fold,
}

impl StringMatcher {
    /// Whether `value` satisfies every operator.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let value = self.fold.apply(value);
        self.ops.iter().all(|op| op.matches(&value))
    }

    /// A claim matches when its value (a string, or a number/bool as JSON text) satisfies the
    /// matcher, or, for a list, when one of its scalar elements does.
    pub(crate) fn matches_claim(&self, value: &Value) -> bool {
        match value {
            Value::Array(items) => items
                .iter()
                .any(|v| scalar_text(v).is_some_and(|t| self.matches(&t))),
            v => scalar_text(v).is_some_and(|t| self.matches(&t)),
        }
    }
}

/// A string as itself, a number or bool as its JSON text; nothing for null, lists, objects.
pub fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Follows a `claim/<path>`: at each level the longest key equal to a `.`-bounded prefix of the
/// rest of the path wins (so `kubernetes.io.namespace` reads `claims["kubernetes.io"]
/// ["namespace"]`, and a top-level key `kubernetes.io.namespace` beats both). No backtracking:
/// when the winner is not an object and path is left, there is no value.
pub fn lookup_claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut map = claims;
    let mut rest = path;
    loop {
        if let Some(v) = map.get(rest) {
            return Some(v);
        }
        let (value, remainder) = rest
            .rmatch_indices('.')
            .find_map(|(i, _)| map.get(&rest[..i]).map(|v| (v, &rest[i + 1..])))?;
        match value {
            Value::Object(inner) => {
                map = inner;
                rest = remainder;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("test claims must be an object"),
        }
    }

    #[test]
    fn longest_key_wins_at_each_level() {
        let c = claims(json!({
            "kubernetes.io": {"namespace": "team-a", "serviceaccount": {"name": "bot"}},
            "kubernetes": {"io": {"namespace": "wrong"}},
        }));
        assert_eq!(
            lookup_claim(&c, "kubernetes.io.namespace"),
            Some(&json!("team-a"))
        );
        assert_eq!(
            lookup_claim(&c, "kubernetes.io.serviceaccount.name"),
            Some(&json!("bot"))
        );
    }

    #[test]
    fn whole_remaining_path_as_key_beats_shorter_keys() {
        let c = claims(json!({
            "kubernetes.io.namespace": "flat",
            "kubernetes.io": {"namespace": "nested"},
        }));
        assert_eq!(
            lookup_claim(&c, "kubernetes.io.namespace"),
            Some(&json!("flat"))
        );
    }

    #[test]
    fn dotted_keys_at_several_levels() {
        let c = claims(json!({
            "a.b": {"c.d": {"e": 1}, "c": {"d": {"e": 2}}},
            "a": {"b": {"c": {"d": {"e": 3}}}},
        }));
        assert_eq!(lookup_claim(&c, "a.b.c.d.e"), Some(&json!(1)));
        assert_eq!(lookup_claim(&c, "a.b.c.d"), Some(&json!({"e": 1})));
        assert_eq!(lookup_claim(&c, "a.b.c"), Some(&json!({"d": {"e": 2}})));
    }

    #[test]
    fn no_backtracking_when_the_longest_key_is_not_an_object() {
        let c = claims(json!({"a.b": "scalar", "a": {"b": {"c": "deep"}}}));
        assert_eq!(lookup_claim(&c, "a.b.c"), None);
        assert_eq!(lookup_claim(&c, "a.b"), Some(&json!("scalar")));
    }

    #[test]
    fn missing_paths() {
        let c = claims(json!({"a": {"b": 1}, "list": [{"x": 1}]}));
        assert_eq!(lookup_claim(&c, "a.c"), None);
        assert_eq!(lookup_claim(&c, "b"), None);
        assert_eq!(lookup_claim(&c, "a.b.c"), None);
        assert_eq!(lookup_claim(&c, "list.x"), None);
        assert_eq!(lookup_claim(&c, ""), None);
    }

    #[test]
    fn claim_values_match_as_text_or_elementwise() {
        let is = |s: &str| StringMatcher {
            ops: vec![StringOp::Is(s.to_owned())],
            fold: Fold::None,
        };
        assert!(is("team-a").matches_claim(&json!("team-a")));
        assert!(is("3").matches_claim(&json!(3)));
        assert!(is("true").matches_claim(&json!(true)));
        assert!(!is("3").matches_claim(&json!(3.5)));
        assert!(is("b").matches_claim(&json!(["a", "b"])));
        assert!(is("2").matches_claim(&json!([1, 2])));
        assert!(!is("c").matches_claim(&json!(["a", "b"])));
        assert!(!is("null").matches_claim(&json!(null)));
        assert!(!is("a").matches_claim(&json!({"a": "a"})));
        assert!(!is("a").matches_claim(&json!([["a"]])));
    }

    #[test]
    fn all_operators_of_one_matcher_must_hold_on_the_same_element() {
        let m = StringMatcher {
            ops: vec![
                StringOp::StartsWith("a".into()),
                StringOp::EndsWith("z".into()),
            ],
            fold: Fold::None,
        };
        assert!(m.matches("abcz"));
        assert!(!m.matches("abc"));
        assert!(!m.matches_claim(&json!(["ab", "yz"])));
        assert!(m.matches_claim(&json!(["ab", "az"])));
    }

    #[test]
    fn folding() {
        let m = StringMatcher {
            ops: vec![StringOp::Is("GET".into())],
            fold: Fold::Upper,
        };
        assert!(m.matches("get"));
        assert!(m.matches("GeT"));
        assert!(!m.matches("POST"));
        let m = StringMatcher {
            ops: vec![StringOp::In(vec!["example.com".into()])],
            fold: Fold::Lower,
        };
        assert!(m.matches("EXAMPLE.com"));
        assert!(!m.matches("sub.example.com"));
    }
}
