//! Object metadata helpers: reading and writing `metadata.*` on JSON objects, name and label
//! validation as kube-apiserver does it, and timestamps.

use serde_json::{Map, Value};

use super::resources::NameRule;
use super::validation;

/// `metadata` of an object, if it is an object.
pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// `metadata` of an object, created when missing (the object itself must be a JSON object).
pub fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut()
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

/// Now, in the seconds-precision RFC 3339 form Kubernetes uses for `metav1.Time`.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn joined(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join(", "))
    }
}

/// Whether `s` is a DNS-1123 subdomain.
pub fn is_subdomain(s: &str) -> bool {
    validation::dns1123_subdomain(s).is_empty()
}

/// Validate an object name; `Err` carries the Kubernetes message (without the field prefix).
pub fn validate_name(name: &str, rule: NameRule) -> Result<(), String> {
    joined(match rule {
        NameRule::Subdomain => validation::dns1123_subdomain(name),
        NameRule::Label => validation::dns1123_label(name),
        NameRule::PathSegment => validation::path_segment(name, false),
    })
}

/// Validate a label or annotation key (`prefix/name`).
pub fn validate_qualified_name(key: &str) -> Result<(), String> {
    joined(validation::qualified_name(key))
}

/// Validate a label value.
pub fn validate_label_value(v: &str) -> Result<(), String> {
    joined(validation::label_value(v))
}

/// A random suffix for `generateName`, from the alphabet Kubernetes uses.
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("billing-api", NameRule::Subdomain).is_ok());
        assert!(validate_name("a.b.c", NameRule::Subdomain).is_ok());
        assert!(validate_name("Bad", NameRule::Subdomain).is_err());
        assert!(validate_name("-x", NameRule::Subdomain).is_err());
        assert!(validate_name("a.b", NameRule::Label).is_err());
        assert!(validate_name(&"a".repeat(64), NameRule::Label).is_err());
        assert!(validate_name("system:controller", NameRule::PathSegment).is_ok());
        assert!(validate_name("..", NameRule::PathSegment).is_err());
        assert!(validate_name("a/b", NameRule::PathSegment).is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(validate_qualified_name("app.kubernetes.io/name").is_ok());
        assert!(validate_qualified_name("app").is_ok());
        assert!(validate_qualified_name("Bad Key").is_err());
        assert!(validate_qualified_name("UPPER.example/x").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1.2_3").is_ok());
        assert!(validate_label_value("-x").is_err());
    }

    #[test]
    fn suffix_shape() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(validate_name(&format!("x-{s}"), NameRule::Label).is_ok());
    }
}
