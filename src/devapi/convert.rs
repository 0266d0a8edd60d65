//! Conversion between the version an object is stored at and the version a client asked for.
//!
//! Custom resources use the `None` strategy (only `apiVersion` changes). Events are one kind
//! served twice: stored as `events.k8s.io/v1` (what kube-runtime's `Recorder` writes) and served
//! as core/v1 too (what `kubectl describe` and `kubectl events` read), with the field mapping of
//! upstream `pkg/apis/events/v1/conversion.go`.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::resources::ResourceDef;

/// events.k8s.io/v1 field ↔ core/v1 field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `def` is the core/v1 view of Events.
pub fn is_core_event(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "events"
}

fn rename(obj: &mut Map<String, Value>, to_core: bool) {
    for (new, old) in EVENT_FIELDS {
        let (from, to) = if to_core { (new, old) } else { (old, new) };
        if let Some(v) = obj.remove(*from) {
            obj.insert((*to).to_string(), v);
        }
    }
}

/// The object as served at `def`'s version.
pub fn served(def: &ResourceDef, obj: &Arc<Value>) -> Arc<Value> {
    let want = def.api_version();
    if obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
        return obj.clone();
    }
    let mut v = (**obj).clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(want));
        if is_core_event(def) {
            rename(m, true);
            // core/v1 requires both; the events API may leave them empty.
            for f in ["reportingComponent", "reportingInstance"] {
                m.entry(f).or_insert_with(|| Value::String(String::new()));
            }
        }
    }
    Arc::new(v)
}

/// Rewrite an incoming object to the version it is stored at.
pub fn to_storage(def: &ResourceDef, obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if is_core_event(def) {
        rename(m, false);
        m.insert(
            "apiVersion".into(),
            Value::String("events.k8s.io/v1".into()),
        );
        return;
    }
    let av = if def.group.is_empty() {
        def.storage_version.clone()
    } else {
        format!("{}/{}", def.group, def.storage_version)
    };
    m.insert("apiVersion".into(), Value::String(av));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devapi::resources::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_versions() {
        let r = Registry::builtin();
        let core = r.get("", "v1", "events").expect("core events");
        let new = r
            .get("events.k8s.io", "v1", "events")
            .expect("events.k8s.io");
        assert_eq!(core.key_prefix(), new.key_prefix());
        let mut posted = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Route", "name": "r"}, "message": "hello", "count": 2,
            "reason": "Accepted", "source": {"component": "x"}
        });
        to_storage(&core, &mut posted);
        assert_eq!(posted["apiVersion"], "events.k8s.io/v1");
        assert_eq!(posted["regarding"]["name"], "r");
        assert_eq!(posted["note"], "hello");
        assert_eq!(posted["deprecatedCount"], 2);
        assert!(posted.get("message").is_none());
        let stored = Arc::new(posted);
        let back = served(&core, &stored);
        assert_eq!(back["involvedObject"]["kind"], "Route");
        assert_eq!(back["message"], "hello");
        assert_eq!(back["reportingComponent"], "");
        assert!(Arc::ptr_eq(&served(&new, &stored), &stored));
    }
}
