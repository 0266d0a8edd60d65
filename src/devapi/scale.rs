//! The `scale` subresource of built-in workloads (Deployments, StatefulSets, ReplicaSets,
//! ReplicationControllers): an `autoscaling/v1` `Scale` view of the object's replica counts, and
//! writes to it mapped onto `spec.replicas` (what `kubectl scale` does).

use serde_json::{Value, json};

use super::error::{ApiError, Result};
use super::resources::ResourceDef;

/// Whether `def` has a `scale` subresource.
pub fn supported(def: &ResourceDef) -> bool {
    matches!(
        (def.group.as_str(), def.plural.as_str()),
        ("apps", "deployments" | "statefulsets" | "replicasets") | ("", "replicationcontrollers")
    )
}

/// `matchLabels` and `matchExpressions` as a selector string (`app=web,tier in (a,b)`).
fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    // ReplicationControllers use a plain map as their selector.
    let labels = sel.get("matchLabels").unwrap_or(sel);
    if let Some(m) = labels.as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The `Scale` view of an object.
pub fn view(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

/// The replica count a written `Scale` asks for.
pub fn desired_replicas(scale: &Value, name: &str) -> Result<i64> {
    match scale.pointer("/spec/replicas") {
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 && n <= i64::from(i32::MAX) => Ok(n),
            _ => Err(ApiError::invalid_field(
                "autoscaling",
                "Scale",
                name,
                "spec.replicas",
                format!("Invalid value: {v}: must be greater than or equal to 0"),
            )),
        },
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_and_desired() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 1}});
        let s = view(&d);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": 5}}), "web").expect("ok"),
            5
        );
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": -1}}), "web")
                .expect_err("neg")
                .code,
            422
        );
    }
}
