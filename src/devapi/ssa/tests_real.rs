//! Real-shaped scenarios through the public API, with the built-in OpenAPI data the server
//! embeds: helm applying Deployments, `kubectl create` then `kubectl apply --server-side`,
//! another manager's update then a conflicting apply, status scoping, the update-entry cap.

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::tests::{Defs, set_of};
use super::*;

static BUILTIN: LazyLock<Defs> = LazyLock::new(|| {
    let data: Value = serde_json::from_str(include_str!("../data/builtin-openapi-v1.35.json"))
        .expect("embedded OpenAPI data parses");
    Defs::new(data["definitions"].clone())
});

const NOW: &str = "2024-09-03T14:09:23Z";
const LATER: &str = "2024-09-03T15:00:00Z";

fn req<'a>(root: &'a Value, api_version: &'a str, manager: &'a str) -> ApplyRequest<'a> {
    ApplyRequest {
        schema: &*BUILTIN,
        root,
        api_version,
        manager,
        force: false,
        subresource: None,
        now: NOW,
        status_subresource: false,
    }
}

fn deployment_root() -> Value {
    json!({"$ref": "io.k8s.api.apps.v1.Deployment"})
}

/// The entry of `manager` with `operation`, or a panic listing what is there.
fn entry<'v>(obj: &'v Value, manager: &str, operation: &str) -> &'v Value {
    let entries = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("no managedFields in {obj}"));
    entries
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .unwrap_or_else(|| panic!("no {operation} entry for {manager} in {entries:?}"))
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_owned(),
                        e["operation"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the server does after a write: assign identity on create.
fn stored(mut obj: Value, rv: u64) -> Value {
    let meta = obj["metadata"].as_object_mut().expect("metadata");
    meta.entry("uid")
        .or_insert_with(|| json!("c8e67d4e-72a8-4555-acd9-9c2c41081f4c"));
    meta.entry("creationTimestamp")
        .or_insert_with(|| json!(NOW));
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    obj
}

/// The applied configuration behind a real apiserver `Apply` entry (crossplane's
/// provider-kubernetes extraction test): applying it must produce that entry exactly.
#[test]
fn apply_of_a_deployment_produces_the_apiservers_field_set() {
    let root = deployment_root();
    let r = req(
        &root,
        "apps/v1",
        "provider-kubernetes/sample-deployment-owner",
    );
    let applied: Value = serde_json::from_str(
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"nginx-deployment","namespace":"default","labels":{"app":"nginx"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"nginx"}},"template":{"metadata":{"labels":{"app":"nginx"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.14.2","ports":[{"containerPort":80}],"env":[{"name":"MY_NODE_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"spec.nodeName"}}}]}]}}}}"#,
    )
    .expect("parses");
    let obj = apply(&r, None, &applied).expect("applies");
    let e = entry(&obj, "provider-kubernetes/sample-deployment-owner", "Apply");
    assert_eq!(
        serde_json::to_string(&e["fieldsV1"]).expect("serializes"),
        r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:env":{"k:{\"name\":\"MY_NODE_NAME\"}":{".":{},"f:name":{},"f:valueFrom":{"f:fieldRef":{}}}},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
    );
    assert_eq!(
        serde_json::to_string(e)
            .expect("serializes")
            .split("\"fieldsV1\"")
            .next(),
        Some(
            r#"{"manager":"provider-kubernetes/sample-deployment-owner","operation":"Apply","apiVersion":"apps/v1","time":"2024-09-03T14:09:23Z","fieldsType":"FieldsV1","#
        )
    );
    assert_eq!(managers(&obj).len(), 1);
    // The object is the configuration (the server defaults and stores it).
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.14.2"
    );
}

fn helm_deployment(replicas: u64, labels: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "ports": ports},
                    {"name": "sidecar", "image": "busybox", "args": ["sleep", "3600"]}
                ]}
            }
        }
    })
}

#[test]
fn helm_upgrade_removes_what_the_chart_no_longer_sets() {
    let root = deployment_root();
    let r = req(&root, "apps/v1", "helm");
    let v1 = helm_deployment(
        2,
        json!({"app": "web", "tier": "frontend"}),
        json!([{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP", "name": "dns"}]),
    );
    let live = stored(apply(&r, None, &v1).expect("installs"), 1);
    assert_eq!(
        entry(&live, "helm", "Apply")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"web\"}"]["f:ports"],
        json!({
            "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}},
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}}
        })
    );

    // The next chart version drops the `tier` label and the DNS port.
    let v2 = helm_deployment(
        2,
        json!({"app": "web"}),
        json!([{"containerPort": 80, "name": "http"}]),
    );
    let upgraded = apply(&r, Some(&live), &v2).expect("upgrades");
    assert_eq!(upgraded["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        upgraded["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "name": "http"}])
    );
    // Identity and server-set metadata survive.
    assert_eq!(upgraded["metadata"]["uid"], live["metadata"]["uid"]);
    assert_eq!(upgraded["metadata"]["resourceVersion"], "1");
    let fields = &entry(&upgraded, "helm", "Apply")["fieldsV1"];
    assert_eq!(fields["f:metadata"], json!({"f:labels": {"f:app": {}}}));
    assert_eq!(
        managers(&upgraded),
        [("helm".to_owned(), "Apply".to_owned())]
    );

    // Re-applying the same chart changes nothing, so the entry keeps its time.
    let again = req(&root, "apps/v1", "helm");
    let again = ApplyRequest {
        now: LATER,
        ..again
    };
    let same = apply(&again, Some(&stored(upgraded.clone(), 2)), &v2).expect("re-applies");
    assert_eq!(entry(&same, "helm", "Apply")["time"], NOW);
    assert_eq!(same["spec"], upgraded["spec"]);
}

#[test]
fn labels_removed_by_the_applier_go_but_labels_of_others_stay() {
    let root = json!({"$ref": "io.k8s.api.core.v1.ConfigMap"});
    let helm = req(&root, "v1", "helm");
    let cm = |labels: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "default", "labels": labels},
               "data": {"k": "v"}})
    };
    let live = stored(
        apply(&helm, None, &cm(json!({"a": "1", "b": "2"}))).expect("applies"),
        1,
    );
    // Someone else adds a label with a plain update.
    let mut labelled = live.clone();
    labelled["metadata"]["labels"]["team"] = json!("x");
    let kubectl = req(&root, "v1", "kubectl-label");
    record_update(&kubectl, Some(&live), &mut labelled).expect("records");
    let live = stored(labelled, 2);
    assert_eq!(
        entry(&live, "kubectl-label", "Update")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:team": {}}}})
    );

    let out = apply(&helm, Some(&live), &cm(json!({"a": "1"}))).expect("applies");
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "team": "x"}));

    // Dropping the last label it owns leaves no empty or null map behind.
    let live = stored(out, 3);
    let no_labels = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}});
    let out = apply(&helm, Some(&live), &no_labels).expect("applies");
    assert_eq!(out["metadata"]["labels"], json!({"team": "x"}));
}

#[test]
fn apply_conflicts_with_a_scale_style_update_and_force_takes_over() {
    let root = deployment_root();
    let helm = req(&root, "apps/v1", "helm");
    let chart = helm_deployment(2, json!({"app": "web"}), json!([{"containerPort": 80}]));
    let live = stored(apply(&helm, None, &chart).expect("installs"), 1);

    // `kubectl scale`-style write by another manager.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let kubectl = req(&root, "apps/v1", "kubectl");
    let kubectl = ApplyRequest {
        now: LATER,
        ..kubectl
    };
    record_update(&kubectl, Some(&live), &mut scaled).expect("records");
    let live = stored(scaled, 2);
    let e = entry(&live, "kubectl", "Update");
    assert_eq!(e["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], LATER);
    // helm no longer owns replicas: the update took it.
    assert!(
        entry(&live, "helm", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );

    // helm applies its own replica count: 409.
    let err = apply(&helm, Some(&live), &chart).expect_err("conflicts");
    let SsaError::Conflicts(conflicts) = &err else {
        panic!("expected conflicts, got {err:?}");
    };
    assert_eq!(
        conflicts,
        &[Conflict {
            manager: "kubectl".into(),
            operation: Operation::Update,
            api_version: "apps/v1".into(),
            subresource: None,
            field: ".spec.replicas".into(),
        }]
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
    );

    // Applying the live value instead is fine: shared ownership.
    let mut agreeing = chart.clone();
    agreeing["spec"]["replicas"] = json!(5);
    let shared = apply(&helm, Some(&live), &agreeing).expect("no conflict on equal values");
    assert_eq!(
        entry(&shared, "kubectl", "Update")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        entry(&shared, "helm", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some()
    );

    // --force-conflicts takes the field.
    let forced = ApplyRequest {
        force: true,
        ..req(&root, "apps/v1", "helm")
    };
    let out = apply(&forced, Some(&live), &chart).expect("forced");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(managers(&out), [("helm".to_owned(), "Apply".to_owned())]);
}

fn configmap(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "settings", "namespace": "default"}, "data": data})
}

#[test]
fn configmap_created_by_kubectl_create_then_applied() {
    let root = json!({"$ref": "io.k8s.api.core.v1.ConfigMap"});
    let create = req(&root, "v1", "kubectl-create");
    let mut created = configmap(json!({"key": "a", "other": "b"}));
    record_update(&create, None, &mut created).expect("records");
    let e = entry(&created, "kubectl-create", "Update");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {".": {}, "f:key": {}, "f:other": {}}})
    );
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["time"], NOW);
    let live = stored(created, 1);

    // `kubectl apply --server-side` with the same values: no conflict, shared ownership,
    // nothing changed so the new entry has no time (as upstream).
    let kubectl = ApplyRequest {
        now: LATER,
        ..req(&root, "v1", "kubectl")
    };
    let same = apply(&kubectl, Some(&live), &configmap(json!({"key": "a"}))).expect("applies");
    assert_eq!(
        entry(&same, "kubectl", "Apply")["fieldsV1"],
        json!({"f:data": {"f:key": {}}})
    );
    assert!(entry(&same, "kubectl", "Apply").get("time").is_none());
    assert_eq!(same["data"], json!({"key": "a", "other": "b"}));
    assert_eq!(
        same["metadata"]["managedFields"][0]["operation"], "Apply",
        "Apply entries sort first"
    );

    // A different value conflicts with the creator.
    let err = apply(&kubectl, Some(&live), &configmap(json!({"key": "z"}))).expect_err("conflict");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.key"
    );
}

#[test]
fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
    let root = json!({"$ref": "io.k8s.api.core.v1.ConfigMap"});
    let live = stored(configmap(json!({"key": "a"})), 1);
    let r = req(&root, "v1", "kubectl");
    let err = apply(&r, Some(&live), &configmap(json!({"key": "b"}))).expect_err("conflict");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1: .data.key"
    );
    let ok = apply(&r, Some(&live), &configmap(json!({"key": "a", "new": "c"}))).expect("applies");
    assert_eq!(
        managers(&ok),
        [
            ("kubectl".to_owned(), "Apply".to_owned()),
            ("before-first-apply".to_owned(), "Update".to_owned())
        ]
    );
    assert_eq!(
        entry(&ok, "before-first-apply", "Update")["fieldsV1"],
        json!({"f:data": {".": {}, "f:key": {}}})
    );
}

#[test]
fn updates_record_changes_and_leave_untouched_entries_alone() {
    let root = json!({"$ref": "io.k8s.api.core.v1.ConfigMap"});
    let mut created = configmap(json!({"a": "1"}));
    record_update(&req(&root, "v1", "creator"), None, &mut created).expect("records");
    let live = stored(created, 1);

    // A write that changes nothing the manager could own (only server metadata) does not
    // touch managedFields.
    let mut same = live.clone();
    same["metadata"]["resourceVersion"] = json!("7");
    let later = ApplyRequest {
        now: LATER,
        ..req(&root, "v1", "creator")
    };
    record_update(&later, Some(&live), &mut same).expect("records");
    assert_eq!(
        same["metadata"]["managedFields"],
        live["metadata"]["managedFields"]
    );

    // Another manager changing a value takes it; removing a field drops it from every set.
    let mut edited = live.clone();
    edited["data"] = json!({"b": "2"});
    record_update(
        &ApplyRequest {
            now: LATER,
            ..req(&root, "v1", "editor")
        },
        Some(&live),
        &mut edited,
    )
    .expect("records");
    // The creator keeps `data` itself (its `.`), as upstream: only `.data.a` was removed.
    assert_eq!(
        managers(&edited),
        [
            ("creator".to_owned(), "Update".to_owned()),
            ("editor".to_owned(), "Update".to_owned())
        ]
    );
    assert_eq!(
        entry(&edited, "creator", "Update")["fieldsV1"],
        json!({"f:data": {}})
    );
    assert_eq!(
        entry(&edited, "editor", "Update")["fieldsV1"],
        json!({"f:data": {"f:b": {}}})
    );

    // `managedFields: []` in an update clears tracking; the object then stays untracked.
    let mut cleared = live.clone();
    cleared["metadata"]["managedFields"] = json!([]);
    cleared["data"]["a"] = json!("9");
    record_update(&req(&root, "v1", "editor"), Some(&live), &mut cleared).expect("records");
    assert!(cleared["metadata"].get("managedFields").is_none());

    // A client echoing stale managed fields it read cannot remove entries by omission.
    let mut echo = live.clone();
    echo["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("managedFields");
    echo["data"]["a"] = json!("2");
    record_update(&req(&root, "v1", "creator"), Some(&live), &mut echo).expect("records");
    assert_eq!(
        entry(&echo, "creator", "Update")["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}}})
    );
}

#[test]
fn status_is_scoped_to_its_subresource() {
    let root = deployment_root();
    let main = ApplyRequest {
        status_subresource: true,
        ..req(&root, "apps/v1", "helm")
    };
    let mut chart = helm_deployment(1, json!({"app": "web"}), json!([{"containerPort": 80}]));
    chart["status"] = json!({"replicas": 9});
    let live = apply(&main, None, &chart).expect("applies");
    assert!(
        live.get("status").is_none(),
        "status is not applied through the main resource"
    );
    assert!(
        entry(&live, "helm", "Apply")["fieldsV1"]
            .get("f:status")
            .is_none()
    );
    let live = stored(live, 1);

    // The controller writes status through the subresource.
    let status = ApplyRequest {
        subresource: Some("status"),
        status_subresource: true,
        ..req(&root, "apps/v1", "kube-controller-manager")
    };
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 1, "readyReplicas": 1});
    record_update(&status, Some(&live), &mut with_status).expect("records");
    let e = entry(&with_status, "kube-controller-manager", "Update");
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {".": {}, "f:readyReplicas": {}, "f:replicas": {}}})
    );
    let live = stored(with_status, 2);

    // Applying status keeps only .status of the configuration.
    let status_apply = ApplyRequest {
        subresource: Some("status"),
        status_subresource: true,
        ..req(&root, "apps/v1", "status-writer")
    };
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"sneaky": "x"}},
        "spec": {"replicas": 7},
        "status": {"observedGeneration": 3}});
    let out = apply(&status_apply, Some(&live), &applied).expect("applies");
    assert_eq!(out["spec"]["replicas"], 1);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(out["status"]["observedGeneration"], 3);
    let e = entry(&out, "status-writer", "Apply");
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}}})
    );
}

#[test]
fn update_entries_are_capped_into_ancient_changes() {
    let root = json!({"$ref": "io.k8s.api.core.v1.ConfigMap"});
    let mut created = configmap(json!({}));
    let creator = ApplyRequest {
        now: "2023-12-31T00:00:00Z",
        ..req(&root, "v1", "creator")
    };
    record_update(&creator, None, &mut created).expect("records");
    let mut live = stored(created, 1);
    let times: Vec<String> = (0..12)
        .map(|i| format!("2024-01-01T00:00:{i:02}Z"))
        .collect();
    for (i, now) in times.iter().enumerate() {
        let manager = format!("m{i:02}");
        let r = ApplyRequest {
            now,
            ..req(&root, "v1", &manager)
        };
        let mut next = live.clone();
        next["data"][format!("k{i}")] = json!("v");
        record_update(&r, Some(&live), &mut next).expect("records");
        live = stored(next, i as u64 + 2);
    }
    let names: Vec<String> = managers(&live).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names.len(), MAX_UPDATE_MANAGERS);
    assert_eq!(names[0], "ancient-changes");
    // The creator and the three oldest updaters were merged, oldest first.
    assert!(!names.contains(&"creator".to_owned()) && !names.contains(&"m02".to_owned()));
    assert_eq!(names[1], "m03");
    let bucket = entry(&live, "ancient-changes", "Update");
    assert_eq!(
        bucket["fieldsV1"],
        json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}})
    );
    assert_eq!(bucket["time"], times[2]);
}

#[test]
fn kubectl_server_side_apply_refreshes_the_last_applied_annotation() {
    let root = json!({"$ref": "io.k8s.api.core.v1.ConfigMap"});
    let mut live = configmap(json!({"key": "a"}));
    live["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: "{\"old\":true}\n"});
    let live = stored(live, 1);
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default", "annotations": {"note": "<b>&"}},
        "data": {"key": "a"}});
    let out = apply(&req(&root, "v1", "kubectl"), Some(&live), &applied).expect("applies");
    assert_eq!(
        out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
        "{\"apiVersion\":\"v1\",\"data\":{\"key\":\"a\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{\"note\":\"\\u003cb\\u003e\\u0026\"},\"name\":\"settings\",\"namespace\":\"default\"}}\n"
    );
    // Other managers leave it alone.
    let other = apply(&req(&root, "v1", "helm"), Some(&live), &applied).expect("applies");
    assert_eq!(
        other["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
        "{\"old\":true}\n"
    );
}

/// A custom resource: CRD schema without `$ref`, untyped `metadata` (typed as ObjectMeta),
/// a map list, a set, and a preserve-unknown-fields subtree.
#[test]
fn custom_resource_with_crd_schema() {
    let root = json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 63}}},
            "spec": {"type": "object", "properties": {
                "opts": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
                "hosts": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "port": {"type": "integer", "default": 80}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }
    });
    let r = ApplyRequest {
        status_subresource: true,
        ..req(&root, "portcullis.dev/v1alpha1", "helm")
    };
    let applied = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": "r", "namespace": "default", "labels": {"a": "b"}, "finalizers": ["x"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-1"}]},
        "spec": {"hosts": ["a.example", "b.example"], "routes": [{"name": "r1", "port": 8080}],
                 "extra": {"deep": {"x": 1}, "list": [1, 2]}}
    });
    let obj = apply(&r, None, &applied).expect("applies");
    let e = entry(&obj, "helm", "Apply");
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {
                "f:finalizers": {"v:\"x\"": {}},
                "f:labels": {"f:a": {}},
                "f:ownerReferences": {"k:{\"uid\":\"u-1\"}": {}}
            },
            "f:spec": {
                // Untyped (preserve-unknown-fields) maps own their keys as members.
                "f:extra": {"f:deep": {".": {}, "f:x": {}}, "f:list": {}},
                "f:hosts": {"v:\"a.example\"": {}, "v:\"b.example\"": {}},
                "f:routes": {"k:{\"name\":\"r1\"}": {".": {}, "f:name": {}, "f:port": {}}}
            }
        })
    );
    assert_eq!(FieldSet(set_of(e["fieldsV1"].clone())).paths().len(), 11);

    // A list item without its key is refused with the path, as upstream words it.
    let bad = json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": "r"}, "spec": {"routes": [{"name": "a"}, {"name": "a"}]}});
    match apply(&r, Some(&obj), &bad) {
        Err(SsaError::Invalid(msg)) => {
            assert_eq!(msg, ".spec.routes: duplicate entries for key [name=\"a\"]")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let keyless = json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": "r"}, "spec": {"routes": [{"port": 1}]}});
    match apply(&r, Some(&obj), &keyless) {
        Err(SsaError::Invalid(msg)) => assert_eq!(
            msg,
            ".spec.routes: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        ),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn route_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "opts": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
                "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}
            }}
        }
    })
}

fn route(spec: Value) -> Value {
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
           "metadata": {"name": "r", "namespace": "default"}, "spec": spec})
}

/// Upstream's prune leaves `opts: null` behind here (a map another manager still claims as
/// a whole, emptied of the only field in it); the stored object drops the null instead.
#[test]
fn pruning_leaves_no_null_behind() {
    let root = route_schema();
    let mut created = route(json!({"opts": {"a": 1}}));
    record_update(
        &req(&root, "portcullis.dev/v1alpha1", "kubectl-create"),
        None,
        &mut created,
    )
    .expect("records");
    let live = stored(created, 1);
    let forced = ApplyRequest {
        force: true,
        ..req(&root, "portcullis.dev/v1alpha1", "app")
    };
    let live = stored(
        apply(&forced, Some(&live), &route(json!({"opts": {"a": 2}}))).expect("applies"),
        2,
    );
    assert_eq!(
        entry(&live, "kubectl-create", "Update")["fieldsV1"],
        json!({"f:spec": {".": {}, "f:opts": {}}})
    );
    let out = apply(&forced, Some(&live), &route(json!({}))).expect("applies");
    assert_eq!(out["spec"], json!({}));
}

/// A write the schema cannot describe (a map-list item without its key) keeps the stored
/// managed fields, as `UpdateNoErrors` does.
#[test]
fn update_that_cannot_be_walked_keeps_stored_managed_fields() {
    let root = route_schema();
    let r = req(&root, "portcullis.dev/v1alpha1", "creator");
    let mut created = route(json!({"routes": [{"name": "a", "port": 1}]}));
    record_update(&r, None, &mut created).expect("records");
    let live = stored(created, 1);
    let mut broken = live.clone();
    broken["spec"]["routes"] = json!([{"port": 2}]);
    record_update(
        &req(&root, "portcullis.dev/v1alpha1", "other"),
        Some(&live),
        &mut broken,
    )
    .expect("never fails on walk errors");
    assert_eq!(
        broken["metadata"]["managedFields"],
        live["metadata"]["managedFields"]
    );
}

/// `kubectl scale` writes through the scale subresource; the server records it on the
/// parent with `subresource: scale`, and a later apply names it that way.
#[test]
fn scale_subresource_writes_are_named_in_conflicts() {
    let root = deployment_root();
    let helm = req(&root, "apps/v1", "helm");
    let chart = helm_deployment(2, json!({"app": "web"}), json!([{"containerPort": 80}]));
    let live = stored(apply(&helm, None, &chart).expect("installs"), 1);
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    let scale = ApplyRequest {
        subresource: Some("scale"),
        ..req(&root, "apps/v1", "kubectl")
    };
    record_update(&scale, Some(&live), &mut scaled).expect("records");
    let e = entry(&scaled, "kubectl", "Update");
    assert_eq!(e["subresource"], "scale");
    let err = apply(&helm, Some(&stored(scaled, 2)), &chart).expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}
