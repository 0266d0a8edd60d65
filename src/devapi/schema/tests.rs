//! Behaviour tests for [`super::validate`]: each asserts the exact message kube-apiserver prints.

use serde_json::{Value, json};

use super::{FieldErrorKind, Outcome, validate};

/// A CRD root schema with the given `spec` schema.
fn crd(spec: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec
        }
    })
}

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

fn check(schema: &Value, obj: Value) -> (Value, Outcome) {
    let mut obj = obj;
    let out = validate(schema, &mut obj, None);
    (obj, out)
}

fn messages(out: &Outcome) -> Vec<String> {
    out.errors.iter().map(|e| e.message()).collect()
}

fn spec_errors(spec_schema: Value, spec: Value) -> Vec<String> {
    messages(&check(&crd(spec_schema), cr(spec)).1)
}

fn update_errors(schema: &Value, old: Value, new: Value) -> Vec<String> {
    let mut new = new;
    messages(&validate(schema, &mut new, Some(&old)))
}

#[test]
fn pattern_failure_reads_like_the_apiserver() {
    let errs = spec_errors(
        json!({"type": "object", "properties": {"from": {"type": "string", "pattern": "^https?://"}}}),
        json!({"from": "ftp://x"}),
    );
    assert_eq!(
        errs,
        [r#"spec.from: Invalid value: "ftp://x": spec.from in body should match '^https?://'"#]
    );
}

#[test]
fn pattern_perl_classes_are_ascii_like_go() {
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "string", "pattern": r"^\d+$"}}});
    assert!(spec_errors(schema.clone(), json!({"n": "123"})).is_empty());
    // Arabic-Indic digits are \d in Rust's Unicode mode but not in Go's RE2.
    assert_eq!(spec_errors(schema, json!({"n": "١٢٣"})).len(), 1);
}

#[test]
fn invalid_or_huge_patterns_are_reported_not_fatal() {
    let errs = spec_errors(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}}),
        json!({"a": "x"}),
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with(r#"spec.a: Invalid value: "x": spec.a in body should match '(unclosed, but pattern is invalid: "#));

    let errs = spec_errors(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "((a{100}){100}){100}"}}}),
        json!({"a": "x"}),
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("but pattern is invalid"), "{errs:?}");
}

#[test]
fn missing_required_fields_are_named_by_their_own_path() {
    let schema = crd(json!({
        "type": "object",
        "required": ["to"],
        "properties": {
            "to": {"type": "array", "items": {
                "type": "object",
                "required": ["service"],
                "properties": {"service": {"type": "object"}}
            }}
        }
    }));
    let schema = {
        let mut s = schema;
        s["required"] = json!(["spec"]);
        s
    };
    let (_, out) = check(
        &schema,
        json!({"apiVersion": "v1", "kind": "W", "metadata": {}}),
    );
    assert_eq!(messages(&out), ["spec: Required value"]);
    assert_eq!(out.errors[0].kind.reason(), "FieldValueRequired");

    let (_, out) = check(&schema, cr(json!({})));
    assert_eq!(messages(&out), ["spec.to: Required value"]);

    let (_, out) = check(&schema, cr(json!({"to": [{"service": {}}, {}]})));
    assert_eq!(messages(&out), ["spec.to[1].service: Required value"]);
}

#[test]
fn enum_violations_list_supported_values() {
    let errs = spec_errors(
        json!({"type": "object", "properties": {"format": {"type": "string", "enum": ["default", "jwt"]}}}),
        json!({"format": "x"}),
    );
    assert_eq!(
        errs,
        [r#"spec.format: Unsupported value: "x": supported values: "default", "jwt""#]
    );

    let errs = spec_errors(
        json!({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}),
        json!({"n": 3}),
    );
    assert_eq!(
        errs,
        [r#"spec.n: Unsupported value: 3: supported values: "1", "2""#]
    );
    assert!(
        spec_errors(
            json!({"type": "object", "properties": {"n": {"type": "number", "enum": [1.5, 2]}}}),
            json!({"n": 2.0}),
        )
        .is_empty()
    );
}

#[test]
fn type_errors_name_the_json_type() {
    let schema = json!({"type": "object", "properties": {
        "x": {"type": "integer"},
        "b": {"type": "boolean"},
        "o": {"type": "object"},
        "l": {"type": "array", "items": {"type": "string"}}
    }});
    let errs = spec_errors(
        schema.clone(),
        json!({"x": "string", "b": 1, "o": [], "l": "s"}),
    );
    assert_eq!(
        errs,
        [
            r#"spec.x: Invalid value: "string": spec.x in body must be of type integer: "string""#,
            r#"spec.b: Invalid value: "integer": spec.b in body must be of type boolean: "integer""#,
            r#"spec.o: Invalid value: "array": spec.o in body must be of type object: "array""#,
            r#"spec.l: Invalid value: "string": spec.l in body must be of type array: "string""#,
        ]
    );
    let (_, out) = check(&crd(schema.clone()), cr(json!({"x": "1"})));
    assert_eq!(out.errors[0].kind, FieldErrorKind::TypeInvalid);
    assert_eq!(out.errors[0].kind.reason(), "FieldValueTypeInvalid");
}

#[test]
fn integers_must_be_whole_numbers() {
    let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}});
    assert_eq!(
        spec_errors(schema.clone(), json!({"x": 1.5})),
        [r#"spec.x: Invalid value: "number": spec.x in body must be of type integer: "number""#]
    );
    // A whole float is an integer to kube-openapi.
    assert!(spec_errors(schema, json!({"x": 2.0})).is_empty());
}

#[test]
fn int_or_string_accepts_both_and_nothing_else() {
    let schema =
        json!({"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": true}}});
    assert!(spec_errors(schema.clone(), json!({"port": 8080})).is_empty());
    assert!(spec_errors(schema.clone(), json!({"port": "http"})).is_empty());
    assert_eq!(
        spec_errors(schema, json!({"port": true})),
        [
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
        ]
    );
}

#[test]
fn nullable_and_non_nullable_nulls() {
    let schema = crd(json!({"type": "object", "properties": {
        "keep": {"type": "string", "nullable": true},
        "drop": {"type": "string"},
        "dflt": {"type": "string", "default": "d"},
        "list": {"type": "array", "items": {"type": "string"}},
        "nlist": {"type": "array", "items": {"type": "string", "nullable": true}}
    }}));
    let (obj, out) = check(
        &schema,
        cr(json!({"keep": null, "drop": null, "dflt": null, "list": ["a", null], "nlist": [null]})),
    );
    assert_eq!(
        obj["spec"],
        json!({"keep": null, "dflt": "d", "list": ["a", null], "nlist": [null]})
    );
    assert_eq!(
        messages(&out),
        [
            r#"spec.list[1]: Invalid value: "null": spec.list[1] in body must be of type string: "null""#
        ]
    );
    assert!(out.unknown_fields.is_empty());
}

#[test]
fn string_lengths_count_characters() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 3, "minLength": 2}}});
    assert!(spec_errors(schema.clone(), json!({"name": "ééé"})).is_empty());
    let (_, out) = check(&crd(schema.clone()), cr(json!({"name": "abcd"})));
    assert_eq!(
        messages(&out),
        ["spec.name: Too long: may not be more than 3 bytes"]
    );
    assert_eq!(out.errors[0].kind.reason(), "FieldValueTooLong");
    assert_eq!(
        spec_errors(schema, json!({"name": "a"})),
        [r#"spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long"#]
    );
    assert_eq!(
        spec_errors(
            json!({"type": "object", "properties": {"c": {"type": "string", "maxLength": 1}}}),
            json!({"c": "ab"})
        ),
        ["spec.c: Too long: may not be more than 1 byte"]
    );
}

#[test]
fn numeric_bounds_and_multiples() {
    let schema = json!({"type": "object", "properties": {
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "ratio": {"type": "number", "maximum": 1, "exclusiveMinimum": true, "minimum": 0},
        "step": {"type": "integer", "multipleOf": 5},
        "half": {"type": "number", "multipleOf": 0.5}
    }});
    assert_eq!(
        spec_errors(
            schema.clone(),
            json!({"replicas": 0, "ratio": 1.5, "step": 7, "half": 0.7})
        ),
        [
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than or equal to 1",
            "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5",
            "spec.half: Invalid value: 0.7: spec.half in body should be a multiple of 0.5",
        ]
    );
    assert_eq!(
        spec_errors(schema.clone(), json!({"replicas": 11, "ratio": 0})),
        [
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
        ]
    );
    assert!(
        spec_errors(
            schema,
            json!({"replicas": 10, "ratio": 0.5, "step": 15, "half": 2.5})
        )
        .is_empty()
    );
}

#[test]
fn list_and_map_sizes() {
    let schema = json!({"type": "object", "properties": {
        "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
        "one": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
        "labels": {"type": "object", "minProperties": 1, "maxProperties": 2,
                   "additionalProperties": {"type": "string"}}
    }});
    let (_, out) = check(
        &crd(schema.clone()),
        cr(json!({"list": ["a", "b", "c"], "one": ["a", "b"], "labels": {}})),
    );
    assert_eq!(
        messages(&out),
        [
            "spec.list: Too many: 3: must have at most 2 items",
            "spec.one: Too many: 2: must have at most 1 item",
            "spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties",
        ]
    );
    assert_eq!(out.errors[0].kind.reason(), "FieldValueTooMany");
    assert_eq!(
        spec_errors(
            schema,
            json!({"list": [], "labels": {"a": "1", "b": "2", "c": "3"}})
        ),
        [
            "spec.list: Invalid value: 0: spec.list in body should have at least 1 items",
            "spec.labels: Too many: 3: must have at most 2 items",
        ]
    );
}

#[test]
fn additional_properties_values_are_validated_with_dotted_paths() {
    let errs = spec_errors(
        json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "integer"}}}}),
        json!({"m": {"a": 1, "b": "x"}}),
    );
    assert_eq!(
        errs,
        [
            r#"spec.m.b: Invalid value: "string": spec.m.b in body must be of type integer: "string""#
        ]
    );
}

#[test]
fn formats_are_checked_and_unknown_ones_ignored() {
    let schema = json!({"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"},
        "at": {"type": "string", "format": "date-time"},
        "x": {"type": "string", "format": "my-own-format"},
        "n": {"type": "integer", "format": "int32"}
    }});
    assert_eq!(
        spec_errors(
            schema.clone(),
            json!({"id": "abc", "at": "yesterday", "x": "whatever", "n": 1})
        ),
        [
            r#"spec.id: Invalid value: "abc": spec.id in body must be of type uuid: "abc""#,
            r#"spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time: "yesterday""#,
        ]
    );
    assert!(spec_errors(
        schema,
        json!({"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-05-01T10:00:00Z", "n": 5})
    )
    .is_empty());
}

#[test]
fn list_type_set_and_map_reject_duplicates() {
    let schema = json!({"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
        "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["host", "port"],
                   "items": {"type": "object", "properties": {"host": {"type": "string"}, "port": {"type": "integer"}}}}
    }});
    let (_, out) = check(
        &crd(schema),
        cr(json!({
            "tags": ["a", "b", "a", "a"],
            "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}],
            "routes": [{"host": "a", "port": 1}, {"host": "a", "port": 2}, {"host": "a", "port": 1}]
        })),
    );
    assert_eq!(
        messages(&out),
        [
            r#"spec.tags[2]: Duplicate value: "a""#,
            r#"spec.ports[1]: Duplicate value: {"name":"http"}"#,
            r#"spec.routes[2]: Duplicate value: {"host":"a","port":1}"#,
        ]
    );
    assert_eq!(out.errors[0].kind.reason(), "FieldValueDuplicate");
}

#[test]
fn value_combinators_report_like_kube_openapi() {
    let schema = json!({"type": "object", "properties": {
        "a": {"type": "string", "anyOf": [{"pattern": "^x"}, {"pattern": "^y"}]},
        "o": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
        "all": {"type": "string", "allOf": [{"minLength": 2}, {"pattern": "^z"}]},
        "n": {"type": "string", "not": {"enum": ["forbidden"]}}
    }});
    assert_eq!(
        spec_errors(
            schema.clone(),
            json!({"a": "z", "o": 5, "all": "a", "n": "forbidden"})
        ),
        [
            r#"<nil>: Invalid value: "": "spec.a" must validate at least one schema (anyOf)"#,
            r#"spec.a: Invalid value: "z": spec.a in body should match '^x'"#,
            r#"<nil>: Invalid value: "": "spec.o" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            r#"spec.all: Invalid value: "a": spec.all in body should be at least 2 chars long"#,
            r#"spec.all: Invalid value: "a": spec.all in body should match '^z'"#,
            r#"<nil>: Invalid value: "": "spec.all" must validate all the schemas (allOf). None validated"#,
            r#"<nil>: Invalid value: "": "spec.n" must not validate the schema (not)"#,
        ]
    );
    assert!(spec_errors(schema, json!({"a": "yes", "o": -1, "all": "zz", "n": "ok"})).is_empty());
}

#[test]
fn defaults_fill_absent_fields_recursively() {
    let schema = crd(json!({"type": "object", "properties": {
        "mode": {"type": "string", "default": "fast"},
        "tls": {"type": "object", "default": {}, "properties": {
            "enabled": {"type": "boolean", "default": true},
            "port": {"type": "integer", "default": 443}
        }},
        "routes": {"type": "array", "items": {"type": "object", "properties": {
            "weight": {"type": "integer", "default": 1},
            "path": {"type": "string"}
        }}},
        "limits": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"burst": {"type": "integer", "default": 10}}
        }},
        "absent": {"type": "object", "properties": {"x": {"type": "string", "default": "not created"}}}
    }}));
    let (obj, out) = check(
        &schema,
        cr(
            json!({"tls": {"port": 8443}, "routes": [{"path": "/"}, {"weight": 5}], "limits": {"a": {}}}),
        ),
    );
    assert!(out.is_valid(), "{:?}", messages(&out));
    assert_eq!(
        obj["spec"],
        json!({
            "tls": {"port": 8443, "enabled": true},
            "routes": [{"path": "/", "weight": 1}, {"weight": 5}],
            "limits": {"a": {"burst": 10}},
            "mode": "fast"
        })
    );
    let (obj, _) = check(&schema, cr(json!({})));
    assert_eq!(
        obj["spec"],
        json!({"mode": "fast", "tls": {"enabled": true, "port": 443}})
    );
}

#[test]
fn unknown_fields_are_pruned_and_reported_sorted() {
    let schema = crd(json!({"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}
    }}));
    let (obj, out) = check(
        &schema,
        json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"zeta": 1, "foo": {"deep": true}, "items": [{"a": "x", "bar": 1}],
                     "free": {"anything": {"goes": 1}}, "m": {"k": "v"}},
            "status": {"phase": "x"}
        }),
    );
    assert_eq!(
        out.unknown_fields,
        ["spec.foo", "spec.items[0].bar", "spec.zeta", "status"]
    );
    assert!(out.is_valid());
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"items": [{"a": "x"}], "free": {"anything": {"goes": 1}}, "m": {"k": "v"}}
        })
    );
}

#[test]
fn embedded_resources_keep_type_meta_and_coerce_metadata() {
    let schema = crd(json!({"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                     "x-kubernetes-preserve-unknown-fields": false,
                     "properties": {"spec": {"type": "object", "properties": {"image": {"type": "string"}}}}}
    }}));
    let (obj, out) = check(
        &schema,
        cr(json!({"template": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "x"}, "bogus": 1, "namespace": ""},
            "spec": {"image": "nginx", "extra": 1}
        }})),
    );
    assert!(out.is_valid(), "{:?}", messages(&out));
    assert_eq!(
        out.unknown_fields,
        ["spec.template.spec.extra", "spec.template.metadata.bogus"]
    );
    assert_eq!(
        obj["spec"]["template"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x"}},
               "spec": {"image": "nginx"}})
    );

    let (_, out) = check(
        &schema,
        cr(
            json!({"template": {"kind": "Bad_Kind", "metadata": {"name": "a/b", "labels": {"-x": "y"}}}}),
        ),
    );
    assert_eq!(
        messages(&out),
        [
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Invalid value: \"Bad_Kind\": may have mixed case, but should otherwise match: \
             a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic \
             character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
             validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            "spec.template.metadata.name: Invalid value: \"a/b\": may not contain '/'",
            "spec.template.metadata.labels: Invalid value: \"-x\": name part must consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  \
             or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ]
    );

    let (_, out) = check(
        &schema,
        cr(json!({"template": {"apiVersion": "v1", "kind": 5}})),
    );
    assert_eq!(
        messages(&out),
        ["spec.template.kind: Invalid value: 5: must be a string"]
    );
}

fn cel_schema(rules: Value) -> Value {
    crd(json!({
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "name": {"type": "string"}},
        "x-kubernetes-validations": rules
    }))
}

#[test]
fn cel_rule_failure_reports_message_on_the_node() {
    let schema = cel_schema(json!([{"rule": "self.a <= self.b", "message": "a must be <= b"}]));
    let (_, out) = check(&schema, cr(json!({"a": 2, "b": 1})));
    assert_eq!(
        messages(&out),
        [r#"spec: Invalid value: "object": a must be <= b"#]
    );
    assert_eq!(out.errors[0].kind.reason(), "FieldValueInvalid");
    assert!(check(&schema, cr(json!({"a": 1, "b": 2}))).1.is_valid());

    let schema = cel_schema(json!([{"rule": "self.a <= self.b"}]));
    assert_eq!(
        messages(&check(&schema, cr(json!({"a": 2, "b": 1}))).1),
        [r#"spec: Invalid value: "object": failed rule: self.a <= self.b"#]
    );
}

#[test]
fn cel_transition_rules_only_fire_on_update() {
    let schema = crd(json!({"type": "object", "properties": {
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}]}
    }}));
    assert!(check(&schema, cr(json!({"name": "a"}))).1.is_valid());
    assert!(update_errors(&schema, cr(json!({"name": "a"})), cr(json!({"name": "a"}))).is_empty());
    assert_eq!(
        update_errors(&schema, cr(json!({"name": "a"})), cr(json!({"name": "b"}))),
        [r#"spec.name: Invalid value: "string": name is immutable"#]
    );
}

#[test]
fn cel_optional_old_self_runs_on_create() {
    let schema = cel_schema(json!([{
        "rule": "oldSelf == null || self.a >= oldSelf.a",
        "message": "a may not decrease",
        "optionalOldSelf": true
    }]));
    assert!(check(&schema, cr(json!({"a": 1}))).1.is_valid());
    assert_eq!(
        update_errors(&schema, cr(json!({"a": 5})), cr(json!({"a": 1}))),
        [r#"spec: Invalid value: "object": a may not decrease"#]
    );
}

#[test]
fn cel_message_expression_reason_and_field_path() {
    let schema = cel_schema(json!([
        {"rule": "self.a <= self.b", "messageExpression": "'a (' + string(self.a) + ') exceeds b'"},
        {"rule": "self.name != 'root'", "message": "reserved", "reason": "FieldValueForbidden", "fieldPath": ".name"},
        {"rule": "has(self.name)", "message": "name please", "reason": "FieldValueRequired"},
        {"rule": "self.a != 7", "reason": "FieldValueDuplicate"},
        {"rule": "self.a != 8", "messageExpression": "''", "message": "eight"}
    ]));
    let (_, out) = check(&schema, cr(json!({"a": 9, "b": 1, "name": "root"})));
    assert_eq!(
        messages(&out),
        [
            r#"spec: Invalid value: "object": a (9) exceeds b"#,
            "spec.name: Forbidden: reserved",
        ]
    );
    assert_eq!(out.errors[1].kind.reason(), "FieldValueForbidden");
    let (_, out) = check(&schema, cr(json!({"a": 7, "b": 8})));
    assert_eq!(
        messages(&out),
        [
            // An absent field is a runtime error for a rule that reads it, as in the apiserver.
            r#"spec: Invalid value: "object": no such key: name evaluating rule: reserved"#,
            "spec: Required value: name please",
            r#"spec: Duplicate value: "object""#,
        ]
    );
    // An empty messageExpression result falls back to the static message.
    assert_eq!(
        messages(&check(&schema, cr(json!({"a": 8, "b": 9, "name": "n"}))).1),
        [r#"spec: Invalid value: "object": eight"#]
    );
}

#[test]
fn cel_rules_on_list_items_and_map_values_use_field_paths() {
    let schema = crd(json!({"type": "object", "properties": {
        "ports": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [
            {"rule": "self > 0", "message": "must be positive"}]}},
        "m": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [
            {"rule": "self.size() < 3", "message": "too long"}]}}
    }}));
    assert_eq!(
        messages(
            &check(
                &schema,
                cr(json!({"ports": [1, -1], "m": {"ok": "a", "bad": "abcd"}}))
            )
            .1
        ),
        [
            r#"spec.ports[1]: Invalid value: "integer": must be positive"#,
            r#"spec.m[bad]: Invalid value: "string": too long"#,
        ]
    );
}

#[test]
fn cel_root_rules_report_the_nil_path() {
    let mut schema = crd(json!({"type": "object", "properties": {"a": {"type": "integer"}}}));
    schema["x-kubernetes-validations"] =
        json!([{"rule": "self.metadata.name.startsWith('w-')", "message": "bad name"}]);
    let (_, out) = check(&schema, cr(json!({"a": 1})));
    assert_eq!(
        messages(&out),
        [r#"<nil>: Invalid value: "object": bad name"#]
    );
    assert_eq!(out.errors[0].field, "<nil>");
}

#[test]
fn cel_compile_failures_are_errors_not_passes() {
    let schema = cel_schema(json!([{"rule": "self.a <=", "message": "m"}]));
    let errs = messages(&check(&schema, cr(json!({"a": 1, "b": 2}))).1);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(r#"spec: Invalid value: "object": rule compile error: "#),
        "{errs:?}"
    );

    // Parses, but calls a function this CEL implementation lacks: fail closed.
    let schema = cel_schema(json!([{"rule": "cel.bind(x, self.a, x > 0)"}]));
    let errs = messages(&check(&schema, cr(json!({"a": 1, "b": 2}))).1);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("rule compile error: compilation failed: undeclared reference to 'bind'"),
        "{errs:?}"
    );

    let schema = cel_schema(json!([{"message": "no rule"}]));
    let errs = messages(&check(&schema, cr(json!({"a": 1}))).1);
    assert!(
        errs[0].contains("rule compile error: invalid rule definition"),
        "{errs:?}"
    );
}

#[test]
fn cel_runtime_errors_name_the_rule() {
    let schema = cel_schema(json!([{"rule": "self.missing > 0"}]));
    assert_eq!(
        messages(&check(&schema, cr(json!({"a": 1}))).1),
        [
            r#"spec: Invalid value: "object": no such key: missing evaluating rule: self.missing > 0"#
        ]
    );
}

#[test]
fn cel_kubernetes_library_functions_work() {
    let schema = crd(json!({"type": "object", "properties": {
        "url": {"type": "string", "x-kubernetes-validations": [
            {"rule": "isURL(self) && url(self).getScheme() == 'https'", "message": "https only"}]},
        "cpu": {"type": "string", "x-kubernetes-validations": [
            {"rule": "quantity(self).isLessThan(quantity('4'))", "message": "too much cpu"}]},
        "hosts": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [
            {"rule": "self.all(h, h.matches('^[a-z.]+$'))", "message": "bad host"}]}
    }}));
    assert!(
        check(
            &schema,
            cr(json!({"url": "https://x", "cpu": "500m", "hosts": ["a.b"]}))
        )
        .1
        .is_valid()
    );
    assert_eq!(
        messages(
            &check(
                &schema,
                cr(json!({"url": "http://x", "cpu": "8", "hosts": ["A"]}))
            )
            .1
        ),
        [
            r#"spec.url: Invalid value: "string": https only"#,
            r#"spec.cpu: Invalid value: "string": too much cpu"#,
            r#"spec.hosts: Invalid value: "array": bad host"#,
        ]
    );
}

#[test]
fn cel_rules_in_all_of_branches_are_evaluated() {
    let schema = crd(
        json!({"type": "object", "properties": {"a": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "true"}],
        "allOf": [{"x-kubernetes-validations": [{"rule": "self.a > 1", "message": "a > 1"}]}]}),
    );
    assert_eq!(
        messages(&check(&schema, cr(json!({"a": 1}))).1),
        [r#"spec: Invalid value: "object": a > 1"#]
    );
}

#[test]
fn schema_errors_block_cel_rules() {
    let schema = cel_schema(json!([{"rule": "self.a <= self.b", "message": "a must be <= b"}]));
    assert_eq!(
        messages(&check(&schema, cr(json!({"a": "x", "b": 1}))).1),
        [
            r#"spec.a: Invalid value: "string": spec.a in body must be of type integer: "string""#,
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; \
             correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn ratcheting_ignores_unchanged_invalid_values() {
    let schema = crd(json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 3},
        "other": {"type": "string"},
        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                  "items": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "string", "pattern": "^ok$"}}}}
    }}));
    let old = cr(json!({"name": "toolong", "other": "a", "items": [{"k": "x", "v": "bad"}]}));
    // Unchanged bad values (also when list items move) are tolerated; changed ones are not.
    assert!(
        update_errors(
            &schema,
            old.clone(),
            cr(json!({"name": "toolong", "other": "b",
        "items": [{"k": "y", "v": "ok"}, {"k": "x", "v": "bad"}]}))
        )
        .is_empty()
    );
    assert_eq!(
        update_errors(
            &schema,
            old.clone(),
            cr(json!({"name": "toolong2", "other": "b", "items": [{"k": "x", "v": "bad2"}]}))
        ),
        [
            "spec.name: Too long: may not be more than 3 bytes",
            r#"spec.items[0].v: Invalid value: "bad2": spec.items[0].v in body should match '^ok$'"#,
        ]
    );
    // The same object on create is invalid.
    assert_eq!(check(&schema, old).1.errors.len(), 2);
}

#[test]
fn cel_ratcheting_keeps_transition_rules() {
    let schema = crd(json!({"type": "object", "properties": {
        "a": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 5", "message": "a > 5"}]},
        "b": {"type": "integer"}
    }}));
    assert!(
        update_errors(
            &schema,
            cr(json!({"a": 1, "b": 1})),
            cr(json!({"a": 1, "b": 2}))
        )
        .is_empty()
    );
    assert_eq!(
        update_errors(
            &schema,
            cr(json!({"a": 1, "b": 1})),
            cr(json!({"a": 2, "b": 1}))
        ),
        [r#"spec.a: Invalid value: "integer": a > 5"#]
    );
}

#[test]
fn errors_follow_schema_order() {
    let schema = json!({"type": "object", "properties": {
        "z": {"type": "integer"}, "a": {"type": "integer"}, "m": {"type": "integer"}
    }});
    let errs = spec_errors(schema, json!({"m": "1", "a": "1", "z": "1"}));
    let fields: Vec<&str> = errs
        .iter()
        .map(|e| e.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(fields, ["spec.z", "spec.a", "spec.m"]);
}

#[test]
fn hostile_inputs_do_not_panic() {
    // Schema nested far beyond the walk limit, with a value to match.
    let mut schema = json!({"type": "string"});
    let mut value = json!("leaf");
    for _ in 0..100 {
        schema = json!({"type": "object", "properties": {"n": schema}});
        value = json!({"n": value});
    }
    let (_, out) = check(&crd(schema), cr(value));
    assert_eq!(out.errors.len(), 1, "{:?}", messages(&out));
    assert!(
        out.errors[0]
            .detail
            .contains("maximum supported schema depth")
    );

    // Object nesting beyond what any JSON parser hands the server.
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let (_, out) = check(
        &crd(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})),
        cr(json!({"d": deep})),
    );
    assert!(!out.is_valid());

    // Malformed keywords everywhere.
    let weird = json!({"type": 5, "properties": [], "items": "x", "required": "spec", "enum": {},
                       "maxLength": -1, "pattern": 3, "x-kubernetes-validations": "nope", "allOf": {}});
    let mut obj = json!({"spec": {"a": [1, {"b": null}]}});
    let _ = validate(&weird, &mut obj, Some(&json!("old is not an object")));

    // A CEL expression nested beyond the parser's limits.
    let rule = format!("{}true{}", "(".repeat(500), ")".repeat(500));
    let schema = cel_schema(json!([{"rule": rule}]));
    let errs = messages(&check(&schema, cr(json!({"a": 1}))).1);
    assert!(errs[0].contains("rule compile error"), "{errs:?}");
    let rule = vec!["self.a"; 3000].join(" + ") + " > 0";
    let schema = cel_schema(json!([{"rule": rule}]));
    let _ = check(&schema, cr(json!({"a": 1})));
}

#[test]
fn field_error_body_and_kinds() {
    let schema =
        cel_schema(json!([{"rule": "false", "message": "m", "reason": "FieldValueRequired"}]));
    let (_, out) = check(&schema, cr(json!({})));
    let e = &out.errors[0];
    assert_eq!(e.body(), "Required value: m");
    assert_eq!(e.to_string(), "spec: Required value: m");
    for (kind, reason) in [
        (FieldErrorKind::Required, "FieldValueRequired"),
        (FieldErrorKind::Invalid, "FieldValueInvalid"),
        (FieldErrorKind::NotSupported, "FieldValueNotSupported"),
        (FieldErrorKind::TooLong, "FieldValueTooLong"),
        (FieldErrorKind::TooMany, "FieldValueTooMany"),
        (FieldErrorKind::TypeInvalid, "FieldValueTypeInvalid"),
        (FieldErrorKind::Forbidden, "FieldValueForbidden"),
        (FieldErrorKind::Duplicate, "FieldValueDuplicate"),
    ] {
        assert_eq!(kind.reason(), reason);
    }
}

#[test]
fn metadata_at_the_root_is_neither_pruned_nor_coerced() {
    let schema = crd(json!({"type": "object"}));
    let (obj, out) = check(
        &schema,
        json!({"apiVersion": "v1", "kind": "W", "metadata": {"name": "w", "weird": 1}, "spec": {}}),
    );
    assert!(out.unknown_fields.is_empty());
    assert_eq!(obj["metadata"], json!({"name": "w", "weird": 1}));
}

#[test]
fn known_fields_below_preserved_objects_are_still_pruned() {
    let schema = crd(json!({"type": "object", "properties": {
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
            "known": {"type": "object", "properties": {"a": {"type": "string"}}}
        }}
    }}));
    let (obj, out) = check(
        &schema,
        cr(json!({"free": {"other": 1, "known": {"a": "x", "b": 2}}})),
    );
    assert_eq!(out.unknown_fields, ["spec.free.known.b"]);
    assert_eq!(
        obj["spec"],
        json!({"free": {"other": 1, "known": {"a": "x"}}})
    );
}

#[test]
fn list_uniqueness_is_not_enforced_when_the_old_object_already_broke_it() {
    let schema = crd(json!({"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "other": {"type": "string"}
    }}));
    let old = cr(json!({"tags": ["a", "a"], "other": "x"}));
    assert!(
        update_errors(
            &schema,
            old,
            cr(json!({"tags": ["a", "a", "b"], "other": "y"}))
        )
        .is_empty()
    );
    let old = cr(json!({"tags": ["a"]}));
    assert_eq!(
        update_errors(&schema, old, cr(json!({"tags": ["a", "a"]}))),
        [r#"spec.tags[1]: Duplicate value: "a""#]
    );
}

#[test]
fn badly_typed_embedded_metadata_fails_decoding() {
    let schema = crd(json!({"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
    }}));
    let (_, out) = check(
        &schema,
        cr(
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": 1}}}}),
        ),
    );
    assert_eq!(
        messages(&out),
        [
            r#"spec.template.metadata: Invalid value: {"labels":{"a":1}}: json: cannot unmarshal number into Go struct field ObjectMeta.labels of type string"#
        ]
    );
}

#[test]
fn cel_sees_defaulted_values_and_old_list_items_by_key() {
    let schema = crd(json!({"type": "object", "properties": {
        "replicas": {"type": "integer", "default": 3},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                            "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}]}}
    }, "x-kubernetes-validations": [{"rule": "self.replicas == 3", "message": "replicas must default to 3"}]}));
    assert!(check(&schema, cr(json!({}))).1.is_valid());
    let old = cr(json!({"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}));
    // Reordered items correlate by key; a new key has no old value, so the transition rule skips it.
    assert!(update_errors(&schema, old.clone(), cr(json!({"ports": [{"name": "c", "port": 9}, {"name": "b", "port": 2}, {"name": "a", "port": 1}]}))).is_empty());
    assert_eq!(
        update_errors(
            &schema,
            old,
            cr(json!({"ports": [{"name": "b", "port": 5}]}))
        ),
        [r#"spec.ports[0]: Invalid value: "object": port is immutable"#]
    );
}
