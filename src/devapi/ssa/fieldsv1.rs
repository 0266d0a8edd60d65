//! The `FieldsV1` wire format of a field set, and Go-compatible JSON text.
//!
//! A port of `fieldpath/serialize.go` and `serialize-pe.go`: a set is a JSON object whose
//! keys are serialized path elements (`f:name`, `k:{"name":"a"}`, `v:"x"`, `i:0`), members
//! map to `{}`, and a node that is both a member and has children carries `".": {}` first.
//! Keys appear in element order, which is what makes two equal sets serialize identically.
//! The JSON inside `k:` and `v:` keys is written like Go's `encoding/json` (sorted object
//! keys, `<`, `>`, `&` escaped) so that keys written here equal keys the apiserver writes.

use serde_json::{Map, Value};

use super::fieldpath::{PathElement, Set};

/// Nesting accepted in a `fieldsV1` document (objects are limited to [`super::MAX_DEPTH`];
/// the set of an object is at most as deep).
const MAX_FIELDS_DEPTH: usize = super::MAX_DEPTH + 2;

/// Serializes a set as the `fieldsV1` object.
pub(crate) fn encode(set: &Set) -> Value {
    Value::Object(emit(set, false))
}

fn emit(set: &Set, include_self: bool) -> Map<String, Value> {
    let mut out = Map::new();
    if include_self && !(set.members.is_empty() && set.children.is_empty()) {
        out.insert(".".to_owned(), Value::Object(Map::new()));
    }
    let mut members = set.members.iter().peekable();
    let mut children = set.children.iter().peekable();
    loop {
        match (members.peek(), children.peek()) {
            (Some(m), Some((c, _))) if *m < *c => {
                out.insert(serialize_element(m), Value::Object(Map::new()));
                members.next();
            }
            (Some(m), Some((c, child))) if *m == *c => {
                out.insert(serialize_element(c), Value::Object(emit(child, true)));
                members.next();
                children.next();
            }
            (_, Some((c, child))) => {
                out.insert(serialize_element(c), Value::Object(emit(child, false)));
                children.next();
            }
            (Some(m), None) => {
                out.insert(serialize_element(m), Value::Object(Map::new()));
                members.next();
            }
            (None, None) => break,
        }
    }
    out
}

/// `SerializePathElement`.
pub(crate) fn serialize_element(pe: &PathElement) -> String {
    match pe {
        PathElement::Field(name) => format!("f:{name}"),
        PathElement::Key(fields) => {
            let mut out = String::from("k:{");
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string_into(name, &mut out);
                out.push(':');
                go_json_into(value, &mut out);
            }
            out.push('}');
            out
        }
        PathElement::Value(v) => format!("v:{}", go_json(v)),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

/// Why a `fieldsV1` document could not be read.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// A key that names a known element type but does not parse.
    BadKey(String),
    /// A value that is not a JSON object.
    NotAnObject,
    /// Nesting beyond [`MAX_FIELDS_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadKey(msg) => write!(f, "parsing key as path element: {msg}"),
            DecodeError::NotAnObject => f.write_str("expected a JSON object"),
            DecodeError::TooDeep => f.write_str("fieldsV1 is nested too deeply"),
        }
    }
}

/// Reads a `fieldsV1` object (`Set.FromJSON`). Keys with an unknown element type are
/// skipped, as upstream does, so a newer writer's extensions do not fail the read.
pub(crate) fn decode(value: &Value) -> Result<Set, DecodeError> {
    let obj = value.as_object().ok_or(DecodeError::NotAnObject)?;
    Ok(read(obj, 0)?.0.unwrap_or_default())
}

fn read(obj: &Map<String, Value>, depth: usize) -> Result<(Option<Set>, bool), DecodeError> {
    if depth > MAX_FIELDS_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let mut children: Option<Set> = None;
    let mut is_member = false;
    for (key, v) in obj {
        if key == "." {
            is_member = true;
            continue;
        }
        let pe = match deserialize_element(key) {
            Ok(Some(pe)) => pe,
            Ok(None) => continue,
            Err(msg) => return Err(DecodeError::BadKey(msg)),
        };
        let sub = v.as_object().ok_or(DecodeError::NotAnObject)?;
        let (grandchildren, child_is_member) = read(sub, depth + 1)?;
        if child_is_member {
            children
                .get_or_insert_with(Set::default)
                .members
                .insert(pe.clone());
        }
        if let Some(g) = grandchildren {
            children
                .get_or_insert_with(Set::default)
                .children
                .insert(pe, g);
        }
    }
    if children.is_none() {
        is_member = true;
    }
    Ok((children, is_member))
}

/// `DeserializePathElement`; `Ok(None)` for an unknown element type.
pub(crate) fn deserialize_element(s: &str) -> Result<Option<PathElement>, String> {
    let bytes = s.as_bytes();
    if bytes.len() < 2 {
        return Err("key must be 2 characters long:".to_owned());
    }
    if bytes[1] != b':' {
        return Err(format!("missing colon: {s}"));
    }
    let rest = &s[2..];
    match bytes[0] {
        b'f' => Ok(Some(PathElement::Field(rest.to_owned()))),
        b'v' => serde_json::from_str::<Value>(rest)
            .map(|v| Some(PathElement::Value(v)))
            .map_err(|e| e.to_string()),
        b'k' => {
            let parsed: Value = serde_json::from_str(rest).map_err(|e| e.to_string())?;
            let Value::Object(map) = parsed else {
                return Err(format!("expected an object after k: in {s}"));
            };
            let mut fields: Vec<(String, Value)> = map.into_iter().collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Ok(Some(PathElement::Key(fields)))
        }
        b'i' => rest
            .parse::<u64>()
            .map(|i| Some(PathElement::Index(i)))
            .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}

/// `v` as Go's `encoding/json` writes it (sorted keys, HTML-safe escapes).
pub(crate) fn go_json(v: &Value) -> String {
    crate::devapi::gojson::to_string(v)
}

fn go_json_into(v: &Value, out: &mut String) {
    crate::devapi::gojson::write(out, v, usize::MAX);
}

/// A JSON string literal with Go's escaping.
pub(crate) fn go_json_string_into(s: &str, out: &mut String) {
    crate::devapi::gojson::quote(out, s);
}
