//! OpenAPI v3 documents: the `/openapi/v3` index and one document per group/version.
//!
//! kubectl reads them to learn that the server validates fields itself (the PATCH operation of
//! each kind carries `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter),
//! so it sends `fieldValidation=Strict` instead of validating client-side. Custom resources carry
//! their CRD schema as a component. Built-in kinds have paths but no schemas yet.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Map, Value, json};

use super::resources::{Registry, ResourceDef};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A short stable hash of a document, used as the `hash` query clients cache by.
fn hash(v: &Value) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(serde_json::to_vec(v).unwrap_or_default());
    d.iter().take(16).map(|b| format!("{b:02X}")).collect()
}

/// `/openapi/v3`. The hash changes whenever a document would (served kinds or CRD schemas).
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            let p = gv_path(group, v);
            let fingerprint: Vec<Value> = registry
                .resources(group, v)
                .iter()
                .map(|d| {
                    json!([
                        d.plural,
                        d.kind,
                        d.namespaced,
                        d.status_subresource,
                        d.custom.as_ref().and_then(|c| c.schema.as_deref())
                    ])
                })
                .collect();
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&json!(fingerprint)))}),
            );
        }
    }
    json!({"paths": paths})
}

type Components = Arc<Map<String, Value>>;

/// The upstream definitions of the built-in kinds of one group/version and everything they
/// reference, with `$ref`s pointing into `#/components/schemas`. Built once per group/version.
fn builtin_components(registry: &Registry, group: &str, version: &str) -> Components {
    static CACHE: LazyLock<Mutex<HashMap<(String, String), Components>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let key = (group.to_string(), version.to_string());
    if let Some(c) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return c.clone();
    }
    let mut out = Map::new();
    if let Ok(defs) = super::builtin_schema::definitions() {
        let mut todo: Vec<String> = registry
            .resources(group, version)
            .iter()
            .filter(|d| d.custom.is_none())
            .filter_map(|d| {
                defs.for_kind(&d.group, &d.version, &d.kind)
                    .map(String::from)
            })
            .collect();
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(def) = defs.get(&name) else { continue };
            let mut def = def.clone();
            rewrite_refs(&mut def, &mut todo);
            out.insert(name, def);
        }
    }
    let c = Arc::new(out);
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, c.clone());
    c
}

/// Point bare `$ref` names at `#/components/schemas/<name>` and queue them.
fn rewrite_refs(v: &mut Value, todo: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && !r.starts_with('#')
            {
                todo.push(r.clone());
                *r = format!("#/components/schemas/{r}");
            }
            for (_, child) in m.iter_mut() {
                rewrite_refs(child, todo);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_refs(c, todo)),
        _ => {}
    }
}

/// The component name Kubernetes uses for a kind (`dev.portcullis.v1alpha1.Route`).
pub fn component_name(d: &ResourceDef) -> String {
    let group = if d.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        d.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", d.version, d.kind)
}

fn field_validation_param() -> Value {
    json!({
        "name": "fieldValidation",
        "in": "query",
        "description": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
        "schema": {"type": "string", "uniqueItems": true},
    })
}

/// The document of one group/version, or `None` when it is not served.
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    if !registry.has_group_version(group, version) {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = (*builtin_components(registry, group, version)).clone();
    for d in registry.resources(group, version) {
        let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
        let item = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", d.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [field_validation_param(), {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(
            item.clone(),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        if d.status_subresource {
            paths.insert(
                format!("{item}/status"),
                json!({"patch": op("patch"), "put": op("put")}),
            );
        }
        if let Some(schema) = d.custom.as_ref().and_then(|c| c.schema.as_ref()) {
            let mut s = (**schema).clone();
            if let Some(m) = s.as_object_mut() {
                m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
            }
            schemas.insert(component_name(&d), s);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_paths_carry_gvk_and_field_validation() {
        let r = Registry::builtin();
        let d = document(&r, "", "v1").expect("core");
        let p = &d["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(
            p["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|x| x["name"] == "fieldValidation")
        );
        assert!(
            index(&r)["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .expect("url")
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
    }
}
