//! The policy document compile walks: JSON whose strings are borrowed from where the policy is
//! kept. A Route keeps its policy as compact JSON text ([`crate::api::RoutePolicy`]); parsing
//! that into a [`serde_json::Value`] made a map (two allocations) per object and a `String` per
//! key and string, all dropped again as soon as the policy was compiled. [`Json::parse`]
//! borrows every string without escapes from the text and keeps objects as short lists.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value. Object keys are in document order; a document parsed from text has unique
/// keys only when the text had (a Route's policy text is written from a map, so it has).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses JSON text (`serde_json`'s parser: nesting at most 128 deep).
    pub(crate) fn parse(text: &'a str) -> serde_json::Result<Json<'a>> {
        serde_json::from_str(text)
    }

    /// `v`, its strings borrowed; `None` when it nests deeper than `max_depth` (the top level
    /// is depth 1). Recurses at most `max_depth` deep.
    pub(crate) fn borrow(v: &'a Value, max_depth: usize) -> Option<Json<'a>> {
        Some(match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => {
                let deeper = max_depth
                    .checked_sub(1)
                    .filter(|d| *d > 0 || items.is_empty())?;
                Json::Array(
                    items
                        .iter()
                        .map(|x| Json::borrow(x, deeper))
                        .collect::<Option<_>>()?,
                )
            }
            Value::Object(m) => return Json::borrow_object(m, max_depth),
        })
    }

    /// [`Json::borrow`] of an object.
    fn borrow_object(m: &'a Map<String, Value>, max_depth: usize) -> Option<Json<'a>> {
        let deeper = max_depth
            .checked_sub(1)
            .filter(|d| *d > 0 || m.is_empty())?;
        let entries = m
            .iter()
            .map(|(k, x)| Some((Cow::Borrowed(k.as_str()), Json::borrow(x, deeper)?)))
            .collect::<Option<_>>()?;
        Some(Json::Object(entries))
    }

    /// What kind of value it is, for problems (`a string`, `an object`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a bool",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        // As `serde_json::Value` does: JSON text has no NaN or infinity to meet here.
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed when it has no escapes (serde's own `Cow<str>` always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsing_text_gives_what_borrowing_its_value_gives() {
        let samples = [
            json!(null),
            json!({"allow": {"or": [{"email": {"is": "a\"b\\c\n\u{1}é"}}]}}),
            json!([
                1,
                2.5,
                -3,
                true,
                false,
                "x",
                {},
                [],
                18446744073709551615u64,
                1e300
            ]),
            json!({"b": 1, "a": {"z": [], "y": {}}}),
        ];
        for v in samples {
            let text = v.to_string();
            assert_eq!(Json::parse(&text).ok(), Json::borrow(&v, 100), "{text}");
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_text() {
        let text = r#"{"allow": {"or": [{"email": "a@example.com"}, {"user": "tab\there"}]}}"#;
        let Ok(Json::Object(top)) = Json::parse(text) else {
            panic!("an object");
        };
        assert!(matches!(top[0].0, Cow::Borrowed("allow")));
        let Json::Object(block) = &top[0].1 else {
            panic!("a block");
        };
        let Json::Array(items) = &block[0].1 else {
            panic!("a list");
        };
        let strings: Vec<&Cow<'_, str>> = items
            .iter()
            .filter_map(|item| match item {
                Json::Object(e) => match &e[0].1 {
                    Json::String(s) => Some(s),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert!(matches!(strings[0], Cow::Borrowed("a@example.com")));
        assert!(matches!(strings[1], Cow::Owned(s) if s == "tab\there"));
    }

    #[test]
    fn borrowing_stops_past_the_depth_given() {
        let v = json!({"a": [[{"b": 1}]]});
        // Depth: object 1, list 2, list 3, object 4, the number 5 (leaves count, as the
        // policy size check counts them).
        assert!(Json::borrow(&v, 5).is_some());
        assert!(Json::borrow(&v, 4).is_none());
        assert!(Json::borrow(&json!({}), 1).is_some());
        assert!(Json::borrow(&json!("leaf"), 1).is_some());
    }
}
