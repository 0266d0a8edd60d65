//! CustomResourceDefinitions: validating a CRD, filling its status (`NamesAccepted`,
//! `Established`, `acceptedNames`, `storedVersions`), and turning it into served resources.
//!
//! Called by [`super::cluster::Cluster`] when a CRD is written; the new kind is in discovery as
//! soon as the write is acknowledged.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Value, json};

use super::error::{ApiError, Cause, Result};
use super::meta;
use super::resources::{ALL_VERBS, CustomInfo, NameRule, Registry, ResourceDef};
use super::table;

fn field_err(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Validate a CRD and fill its status. `name` is the object's name.
pub fn admit(obj: &mut Value, old: Option<&Value>, registry: &Registry, name: &str) -> Result<()> {
    let mut causes = Vec::new();
    let group = s(obj, "/spec/group").to_string();
    let plural = s(obj, "/spec/names/plural").to_string();
    let kind = s(obj, "/spec/names/kind").to_string();
    if group.is_empty() {
        causes.push(field_err(
            "FieldValueRequired",
            "spec.group",
            "Required value".into(),
        ));
    } else if !meta::is_subdomain(&group) || !group.contains('.') {
        causes.push(field_err(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        causes.push(field_err(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value".into(),
        ));
    }
    if kind.is_empty() {
        causes.push(field_err(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value".into(),
        ));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(field_err(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = s(obj, "/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(field_err(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(field_err(
            "FieldValueRequired",
            "spec.versions",
            "Required value: must have exactly one version marked as storage version".into(),
        ));
    }
    let storage: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .collect();
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(field_err(
            "FieldValueInvalid",
            "spec.versions",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                storage.len()
            ),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if s(v, "/name").is_empty() {
            causes.push(field_err(
                "FieldValueRequired",
                &format!("spec.versions[{i}].name"),
                "Required value".into(),
            ));
        }
        if let Err(e) =
            table::custom_columns(v.get("additionalPrinterColumns").unwrap_or(&Value::Null))
        {
            let (field, detail) = match &e {
                table::TableError::InvalidColumn {
                    index,
                    field,
                    detail,
                } => (
                    format!("spec.versions[{i}].additionalPrinterColumns[{index}]{field}"),
                    detail.clone(),
                ),
                other => (
                    format!("spec.versions[{i}].additionalPrinterColumns"),
                    other.to_string(),
                ),
            };
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: detail,
                field,
            });
        }
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            causes.push(field_err(
                "FieldValueRequired",
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            ));
        }
    }
    // Names must not collide with another served kind of the same group.
    if let Some(existing) = registry
        .groups()
        .filter(|(g, _)| **g == group)
        .flat_map(|(g, vs)| vs.iter().flat_map(move |v| registry.resources(g, v)))
        .find(|d| d.plural == plural && d.custom.as_ref().is_none_or(|c| c.crd_name != name))
    {
        causes.push(field_err(
            "FieldValueInvalid",
            "spec.names.plural",
            format!(
                "Invalid value: \"{}\": already served by another definition",
                existing.plural
            ),
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            name,
            causes,
        ));
    }

    let mut names = obj
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if s(&names, "/singular").is_empty() {
        names["singular"] = json!(kind.to_ascii_lowercase());
    }
    if s(&names, "/listKind").is_empty() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    if let Some(spec_names) = obj.pointer_mut("/spec/names") {
        *spec_names = names.clone();
    }
    let storage_name = storage
        .first()
        .map(|v| s(v, "/name").to_string())
        .unwrap_or_default();
    let mut stored: Vec<Value> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !stored
        .iter()
        .any(|v| v.as_str() == Some(storage_name.as_str()))
    {
        stored.push(json!(storage_name));
    }
    let now = meta::now();
    let since = |t: &str| -> String {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/type") == t))
            .map(|c| s(c, "/lastTransitionTime").to_string())
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| now.clone())
    };
    let status = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    });
    if let Some(o) = obj.as_object_mut() {
        o.insert("status".into(), status);
    }
    Ok(())
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, then others
/// alphabetically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> (u8, u64, u64, String) {
        let rest = v.strip_prefix('v').unwrap_or("");
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(major) = digits.parse::<u64>() else {
            return (3, 0, 0, v.to_string());
        };
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return (0, major, 0, String::new());
        }
        for (tag, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(tag)
                && let Ok(minor) = n.parse::<u64>()
            {
                return (rank, major, minor, String::new());
            }
        }
        (3, 0, 0, v.to_string())
    }
    let (ra, ma, na, sa) = parse(a);
    let (rb, mb, nb, sb) = parse(b);
    ra.cmp(&rb)
        .then(mb.cmp(&ma))
        .then(nb.cmp(&na))
        .then(sa.cmp(&sb))
}

/// The storage key prefix of a CRD's objects.
pub fn storage_prefix(crd: &Value) -> Option<String> {
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    (!group.is_empty() && !plural.is_empty()).then(|| format!("{group}/{plural}/"))
}

/// Serve every served version of a CRD.
pub fn register(registry: &mut Registry, crd: &Value) -> Result<()> {
    let name = meta::meta_str(crd, "name").unwrap_or("").to_string();
    let group = s(crd, "/spec/group").to_string();
    let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
    let kind = s(&names, "/kind").to_string();
    let plural = s(&names, "/plural").to_string();
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Err(ApiError::bad_request(format!(
            "CRD {name} lacks group or names"
        )));
    }
    let strings = |ptr: &str| -> Vec<String> {
        names
            .pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| s(v, "/name").to_string())
        .unwrap_or_default();
    registry.remove_crd(&name);
    let mut served: Vec<String> = Vec::new();
    for v in &versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = s(v, "/name").to_string();
        served.push(version.clone());
        registry.insert(ResourceDef {
            group: group.clone(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: if s(&names, "/singular").is_empty() {
                kind.to_ascii_lowercase()
            } else {
                s(&names, "/singular").to_string()
            },
            namespaced: s(crd, "/spec/scope") != "Cluster",
            short_names: strings("/shortNames"),
            categories: strings("/categories"),
            status_subresource: v.pointer("/subresources/status").is_some(),
            generation: true,
            name_rule: NameRule::Subdomain,
            storage_version: storage_version.clone(),
            custom: Some(CustomInfo {
                crd_name: name.clone(),
                schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            }),
            verbs: ALL_VERBS,
            // Invalid columns are refused when the CRD is written; fall back to NAME, AGE.
            columns: Arc::new(
                table::custom_columns(v.get("additionalPrinterColumns").unwrap_or(&Value::Null))
                    .or_else(|_| table::custom_columns(&Value::Null))
                    .unwrap_or_default(),
            ),
        });
    }
    let mut order: Vec<String> = registry
        .groups()
        .find(|(g, _)| **g == group)
        .map(|(_, vs)| vs.clone())
        .unwrap_or_default();
    for v in served {
        if !order.contains(&v) {
            order.push(v);
        }
    }
    order.sort_by(|a, b| compare_versions(a, b));
    registry.set_version_order(&group, order);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}, "subresources": {"status": {}}}
                ]
            }
        })
    }

    #[test]
    fn version_priority() {
        let mut v = vec![
            "v1alpha1", "v2beta1", "v1", "v2", "v1beta2", "foo", "v1beta1",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    #[test]
    fn admit_fills_status_and_register_serves_versions() {
        let reg = Registry::builtin();
        let mut crd = widget_crd();
        admit(&mut crd, None, &reg, "widgets.example.com").expect("valid");
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        let mut reg = reg;
        register(&mut reg, &crd).expect("register");
        let d = reg
            .get("example.com", "v1alpha1", "widgets")
            .expect("served");
        assert_eq!(d.storage_version, "v1");
        assert!(!d.status_subresource);
        assert!(
            reg.get("example.com", "v1", "widgets")
                .expect("v1")
                .status_subresource
        );
        let order: Vec<_> = reg
            .groups()
            .find(|(g, _)| *g == "example.com")
            .map(|(_, v)| v.clone())
            .expect("group");
        assert_eq!(order, ["v1", "v1alpha1"]);
    }

    #[test]
    fn admit_refuses_bad_crds() {
        let reg = Registry::builtin();
        let mut crd = widget_crd();
        crd["spec"]["versions"][0]["storage"] = json!(true);
        let e = admit(&mut crd, None, &reg, "widgets.example.com").expect_err("two storage");
        assert_eq!(e.code, 422);
        let mut crd = widget_crd();
        let e = admit(&mut crd, None, &reg, "gadgets.example.com").expect_err("name");
        assert!(e.message.contains("metadata.name"), "{}", e.message);
    }

    #[test]
    fn invalid_printer_columns_are_refused() {
        let reg = Registry::builtin();
        let mut crd = widget_crd();
        crd["spec"]["versions"][1]["additionalPrinterColumns"] =
            json!([{"name": "Size", "type": "integer", "jsonPath": ".spec.size[?(@.x=="}]);
        let e = admit(&mut crd, None, &reg, "widgets.example.com").expect_err("bad JSONPath");
        assert_eq!(e.code, 422);
        assert!(
            e.causes.iter().any(|c| c
                .field
                .starts_with("spec.versions[1].additionalPrinterColumns[0]")),
            "{:?}",
            e.causes
        );
        let mut crd = widget_crd();
        crd["spec"]["versions"][1]["additionalPrinterColumns"] =
            json!([{"name": "Size", "type": "int", "jsonPath": ".spec.size"}]);
        let e = admit(&mut crd, None, &reg, "widgets.example.com").expect_err("bad type");
        assert!(e.message.contains("must be one of"), "{}", e.message);
    }
}
