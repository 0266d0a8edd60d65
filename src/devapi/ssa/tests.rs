//! Unit tests: the `fieldsV1` format against real apiserver output, set algebra, conflict
//! messages, and the guards of the public functions. Also the schema helper the other test
//! modules share.

use serde_json::{Map, Value, json};

use super::fieldpath::{PathElement, Set, path_string};
use super::*;

/// A `$ref`-resolving [`SchemaLookup`] over a map of definitions (bare names as refs), the
/// way the server's built-in definitions work.
pub(super) struct Defs(pub(super) Map<String, Value>);

impl Defs {
    pub(super) fn new(defs: Value) -> Defs {
        match defs {
            Value::Object(m) => Defs(m),
            _ => Defs(Map::new()),
        }
    }
}

impl SchemaLookup for Defs {
    fn child<'a>(&'a self, node: &'a Value, field: Option<&str>) -> Option<&'a Value> {
        let node = self.resolve(node);
        match field {
            Some(name) => node
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| node.get("additionalProperties").filter(|v| v.is_object())),
            None => node.get("items").filter(|v| v.is_object()),
        }
    }

    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        let mut current = node;
        for _ in 0..16 {
            let target = current.get("$ref").and_then(Value::as_str).or_else(|| {
                current
                    .get("allOf")
                    .and_then(Value::as_array)
                    .filter(|a| a.len() == 1)
                    .and_then(|a| a[0].get("$ref"))
                    .and_then(Value::as_str)
            });
            match target.and_then(|t| self.0.get(t)) {
                Some(next) => current = next,
                None => return current,
            }
        }
        current
    }
}

pub(super) fn set_of(fields_v1: Value) -> Set {
    match FieldSet::from_fields_v1(&fields_v1) {
        Ok(FieldSet(set)) => set,
        Err(e) => panic!("bad fieldsV1 {fields_v1}: {e}"),
    }
}

fn round_trip(text: &str) {
    let parsed: Value = serde_json::from_str(text).expect("test JSON parses");
    let set = set_of(parsed.clone());
    let written = FieldSet(set).to_fields_v1();
    assert_eq!(
        serde_json::to_string(&written).expect("serializes"),
        serde_json::to_string(&parsed).expect("serializes"),
        "re-encoding changed the document"
    );
}

// Each literal below is a `fieldsV1` document as a real kube-apiserver wrote it.

#[test]
fn fields_v1_round_trips_kubectl_client_side_apply_entry() {
    round_trip(
        r#"{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}}"#,
    );
}

#[test]
fn fields_v1_round_trips_apply_and_status_entries() {
    round_trip(
        r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:env":{"k:{\"name\":\"MY_NODE_NAME\"}":{".":{},"f:name":{},"f:valueFrom":{"f:fieldRef":{}}}},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#,
    );
    round_trip(
        r#"{"f:metadata":{"f:annotations":{".":{},"f:deployment.kubernetes.io/revision":{}}},"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\"type\":\"Available\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Progressing\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}}"#,
    );
}

#[test]
fn fields_v1_round_trips_statefulset_update_entry() {
    round_trip(
        r#"{"f:spec":{"f:podManagementPolicy":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:serviceName":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"iab\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}},"f:updateStrategy":{"f:rollingUpdate":{".":{},"f:partition":{}},"f:type":{}}}}"#,
    );
}

#[test]
fn fields_v1_round_trips_sets_owner_references_and_html_escapes() {
    round_trip(
        r#"{"f:metadata":{"f:finalizers":{".":{},"v:\"kubernetes.io/pvc-protection\"":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"fe768b9d-011f-46a0-ac74-6b0256c6acf6\"}":{}}}}"#,
    );
    // Go escapes <, > and & inside the key JSON; the key must survive unchanged.
    round_trip(r#"{"f:list":{"v:\"a\\u003cb\"":{}}}"#);
}

#[test]
fn fields_v1_orders_keys_like_upstream() {
    // Written out of order: fields first, then keys, then values, each sorted.
    let doc = json!({
        "v:2": {}, "k:{\"b\":1,\"a\":\"x\"}": {}, "f:z": {}, "v:\"s\"": {}, "f:a": {"f:c": {}, ".": {}}
    });
    let written = FieldSet(set_of(doc)).to_fields_v1();
    assert_eq!(
        serde_json::to_string(&written).expect("serializes"),
        r#"{"f:a":{".":{},"f:c":{}},"f:z":{},"k:{\"a\":\"x\",\"b\":1}":{},"v:2":{},"v:\"s\"":{}}"#
    );
}

#[test]
fn fields_v1_rejects_malformed_keys_and_skips_unknown_types() {
    assert!(FieldSet::from_fields_v1(&json!({"x": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"fz": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    let skipped = FieldSet::from_fields_v1(&json!({"z:future": {}, "f:a": {}})).expect("reads");
    assert_eq!(skipped.paths(), [".a"]);
}

#[test]
fn fields_v1_refuses_over_deep_documents() {
    let mut doc = json!({});
    for _ in 0..(MAX_DEPTH + 10) {
        doc = json!({ "f:a": doc });
    }
    assert!(FieldSet::from_fields_v1(&doc).is_err());
}

#[test]
fn paths_print_like_the_apiserver() {
    let set = set_of(json!({
        "f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"a\"}": {"f:image": {}, "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}}
        }}}},
        "f:metadata": {"f:finalizers": {"v:\"x\"": {}}}
    }));
    assert_eq!(
        FieldSet(set).paths(),
        [
            ".metadata.finalizers[=\"x\"]",
            ".spec.template.spec.containers[name=\"a\"].image",
            ".spec.template.spec.containers[name=\"a\"].ports[containerPort=80,protocol=\"TCP\"]",
        ]
    );
}

#[test]
fn set_algebra_matches_upstream_semantics() {
    let f = |s: &str| PathElement::Field(s.to_owned());
    let mut parent = Set::default();
    parent.insert(&[f("a")]);
    let mut child = Set::default();
    child.insert(&[f("a"), f("b")]);
    // parent − child = parent; child − parent = child (Difference ignores members of s2 when
    // walking children); RecursiveDifference removes the whole subtree.
    assert_eq!(parent.difference(&child), parent);
    assert_eq!(child.difference(&parent), child);
    assert!(child.recursive_difference(&parent).is_empty());
    assert!(parent.intersection(&child).is_empty());
    let both = parent.union(&child);
    assert!(both.has(&[f("a")]) && both.has(&[f("a"), f("b")]));
    assert_eq!(
        both.paths()
            .iter()
            .map(|p| path_string(p))
            .collect::<Vec<_>>(),
        [".a", ".a.b"]
    );
}

fn conflict(manager: &str, op: Operation, version: &str, field: &str) -> Conflict {
    Conflict {
        manager: manager.into(),
        operation: op,
        api_version: version.into(),
        subresource: None,
        field: field.into(),
    }
}

#[test]
fn conflict_messages_match_the_apiserver() {
    let one = [conflict(
        "kubectl-client-side-apply",
        Operation::Update,
        "v1",
        ".data.key",
    )];
    assert_eq!(
        SsaError::Conflicts(one.to_vec()).to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.key"
    );
    assert_eq!(
        one[0].message(),
        "conflict with \"kubectl-client-side-apply\" using v1"
    );

    let many = [
        conflict("kubectl", Operation::Update, "apps/v1", ".spec.replicas"),
        conflict("helm", Operation::Apply, "apps/v1", ".spec.replicas"),
        conflict("kubectl", Operation::Update, "apps/v1", ".spec.paused"),
    ];
    assert_eq!(
        conflicts_message(&many),
        "Apply failed with 3 conflicts: conflicts with \"helm\":\n- .spec.replicas\n\
         conflicts with \"kubectl\" using apps/v1:\n- .spec.replicas\n- .spec.paused"
    );
    let mut status = conflict("ctrl", Operation::Update, "v1", ".status.phase");
    status.subresource = Some("status".into());
    assert_eq!(
        status.message(),
        "conflict with \"ctrl\" with subresource \"status\" using v1"
    );
}

struct NoSchema;

impl SchemaLookup for NoSchema {
    fn child<'a>(&'a self, _: &'a Value, _: Option<&str>) -> Option<&'a Value> {
        None
    }
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        node
    }
}

fn req<'a>(root: &'a Value, manager: &'a str) -> ApplyRequest<'a> {
    ApplyRequest {
        schema: &NoSchema,
        root,
        api_version: "example.com/v1",
        manager,
        force: false,
        subresource: None,
        now: "2024-05-01T10:00:00Z",
        status_subresource: false,
    }
}

#[test]
fn apply_refuses_bad_configurations() {
    let root = json!({});
    let r = req(&root, "m");
    let err = |applied: Value| match apply(&r, None, &applied) {
        Err(SsaError::Invalid(msg)) => msg,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        err(json!(["not", "an", "object"])),
        "the apply configuration must be an object"
    );
    assert_eq!(
        err(
            json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"managedFields": []}})
        ),
        "metadata.managedFields must be nil"
    );
    assert_eq!(
        err(json!({"apiVersion": "example.com/v2", "kind": "Widget"})),
        "invalid object type: example.com/v2, Kind=Widget"
    );
    assert_eq!(
        err(json!({"apiVersion": "v1", "kind": "ConfigMap"})),
        "invalid object type: /v1, Kind=ConfigMap"
    );
    // `managedFields: null` is allowed, as upstream allows it.
    let ok = apply(
        &r,
        None,
        &json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "a", "managedFields": null}, "x": 1}),
    )
    .expect("applies");
    assert_eq!(ok["x"], 1);
}

#[test]
fn over_deep_objects_are_refused_without_panicking() {
    let root = json!({});
    let r = req(&root, "m");
    let mut deep = json!(1);
    for _ in 0..(MAX_DEPTH + 5) {
        deep = json!({ "a": deep });
    }
    let applied = json!({"apiVersion": "example.com/v1", "kind": "W", "spec": deep.clone()});
    assert!(matches!(
        apply(&r, None, &applied),
        Err(SsaError::Invalid(_))
    ));
    let mut new = applied.clone();
    assert!(matches!(
        record_update(&r, None, &mut new),
        Err(SsaError::Invalid(_))
    ));
    let mut wide = json!([]);
    for _ in 0..(MAX_DEPTH + 5) {
        wide = json!([wide]);
    }
    let applied = json!({"apiVersion": "example.com/v1", "kind": "W", "spec": {"l": wide}});
    assert!(matches!(
        apply(&r, None, &applied),
        Err(SsaError::Invalid(_))
    ));
}

#[test]
fn malformed_stored_managed_fields_fail_apply_and_are_replaced_on_update() {
    let root = json!({});
    let r = req(&root, "m");
    let live = json!({
        "apiVersion": "example.com/v1", "kind": "W",
        "metadata": {"name": "a", "uid": "u1", "managedFields": [{"manager": "x", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]},
        "x": 1
    });
    match apply(
        &r,
        Some(&live),
        &json!({"apiVersion": "example.com/v1", "kind": "W", "x": 2}),
    ) {
        Err(SsaError::Invalid(msg)) => assert_eq!(
            msg,
            "failed to decode managed fields: operation must be `Apply` or `Update`"
        ),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // An update that sends valid managed fields replaces the broken ones.
    let mut new = live.clone();
    new["metadata"]["managedFields"] = json!([{
        "manager": "m", "operation": "Update", "apiVersion": "example.com/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:x": {}}
    }]);
    new["x"] = json!(3);
    record_update(&r, Some(&live), &mut new).expect("records");
    let entries = new["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["fieldsV1"], json!({"f:x": {}}));
    assert_eq!(entries[0]["time"], "2024-05-01T10:00:00Z");
}

/// The deepest accepted object goes through apply and update on a small (1 MiB) stack,
/// like a runtime worker thread's, even in a debug build.
#[test]
fn deepest_accepted_object_fits_a_small_stack() {
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let root = json!({});
            let r = req(&root, "m");
            let mut deep = json!({"leaf": 1});
            for i in 0..(MAX_DEPTH - 2) {
                deep = json!({ format!("k{i}"): deep });
            }
            let applied = json!({"apiVersion": "example.com/v1", "kind": "W", "spec": deep});
            let live = apply(&r, None, &applied).expect("applies");
            let mut next = live.clone();
            next["spec"] = json!({"other": 1});
            record_update(&req(&root, "n"), Some(&live), &mut next).expect("records");
            apply(&r, Some(&next), &applied).expect("re-applies")
        })
        .expect("spawns");
    let out = handle.join().expect("no stack overflow");
    assert!(out["spec"].is_object());
}
