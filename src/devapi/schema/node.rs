//! Read-only view of one `JSONSchemaProps` node. Every accessor tolerates hostile shapes: a
//! keyword with the wrong JSON type reads as absent, a non-object node as the empty schema.

use serde_json::{Map, Value};

/// One schema node.
#[derive(Clone, Copy, Debug)]
pub(super) struct Node<'a>(Option<&'a Map<String, Value>>);

/// What `additionalProperties` says.
#[derive(Clone, Copy, Debug)]
pub(super) enum Additional<'a> {
    /// Absent or `false`: unknown keys are not allowed.
    Absent,
    /// `true`: any key, values without a schema.
    Any,
    /// A schema for every value.
    Schema(Node<'a>),
}

impl<'a> Node<'a> {
    pub(super) fn new(v: &'a Value) -> Self {
        Self(v.as_object())
    }

    pub(super) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(key))
    }

    /// Identity of this node within one schema, for caches keyed per call.
    pub(super) fn id(&self) -> usize {
        self.0
            .map_or(0, |m| m as *const Map<String, Value> as usize)
    }

    fn flag(&self, key: &str) -> bool {
        self.raw(key).and_then(Value::as_bool) == Some(true)
    }

    pub(super) fn properties(&self) -> Option<&'a Map<String, Value>> {
        self.raw("properties").and_then(Value::as_object)
    }

    pub(super) fn property(&self, name: &str) -> Option<Node<'a>> {
        self.properties().and_then(|p| p.get(name)).map(Node::new)
    }

    pub(super) fn items(&self) -> Option<Node<'a>> {
        self.raw("items").filter(|v| v.is_object()).map(Node::new)
    }

    pub(super) fn additional(&self) -> Additional<'a> {
        match self.raw("additionalProperties") {
            Some(Value::Bool(true)) => Additional::Any,
            Some(v @ Value::Object(_)) => Additional::Schema(Node::new(v)),
            _ => Additional::Absent,
        }
    }

    pub(super) fn additional_schema(&self) -> Option<Node<'a>> {
        match self.additional() {
            Additional::Schema(n) => Some(n),
            _ => None,
        }
    }

    pub(super) fn preserve_unknown(&self) -> bool {
        self.flag("x-kubernetes-preserve-unknown-fields")
    }

    pub(super) fn embedded(&self) -> bool {
        self.flag("x-kubernetes-embedded-resource")
    }

    pub(super) fn nullable(&self) -> bool {
        self.flag("nullable")
    }

    pub(super) fn int_or_string(&self) -> bool {
        self.flag("x-kubernetes-int-or-string")
    }

    /// The structural `type` (empty when absent, as for int-or-string).
    pub(super) fn type_name(&self) -> &'a str {
        self.str("type").unwrap_or("")
    }

    pub(super) fn str(&self, key: &str) -> Option<&'a str> {
        self.raw(key).and_then(Value::as_str)
    }

    /// The `default`; a JSON `null` default means none, as in the apiserver.
    pub(super) fn default(&self) -> Option<&'a Value> {
        self.raw("default").filter(|v| !v.is_null())
    }

    pub(super) fn list_type(&self) -> Option<&'a str> {
        self.str("x-kubernetes-list-type")
    }

    pub(super) fn list_map_keys(&self) -> Vec<&'a str> {
        self.raw("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    pub(super) fn rules(&self) -> &'a [Value] {
        self.raw("x-kubernetes-validations")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    pub(super) fn branches(&self, key: &str) -> Vec<Node<'a>> {
        self.raw(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter(|v| v.is_object()).map(Node::new).collect())
            .unwrap_or_default()
    }

    /// A non-negative integer keyword such as `maxLength`.
    pub(super) fn count(&self, key: &str) -> Option<u64> {
        let v = self.raw(key)?;
        v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        })
    }

    pub(super) fn number(&self, key: &str) -> Option<f64> {
        self.raw(key).and_then(Value::as_f64)
    }
}
