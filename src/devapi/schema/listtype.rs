//! `x-kubernetes-list-type: set|map` uniqueness (`listtype.ValidateListSetsAndMaps`): a set may
//! not hold an element twice, a map list may not hold two items with the same key values.
//! Only the second and later occurrence of a value is reported, once.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::node::Node;
use super::{FieldError, FieldErrorKind, FieldPath, MAX_SCHEMA_DEPTH, render};

pub(super) fn validate(root: Node<'_>, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(root, obj, &FieldPath::default(), &mut errs, 0);
    errs
}

fn walk(s: Node<'_>, x: &Value, pth: &FieldPath, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    match x {
        Value::Object(m) => {
            if let Some(ap) = s.additional_schema() {
                for (k, v) in m {
                    walk(ap, v, &pth.key(k), errs, depth + 1);
                }
            }
            if s.properties().is_some() {
                for (k, v) in m {
                    if let Some(p) = s.property(k) {
                        walk(p, v, &pth.child(k), errs, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            match s.list_type() {
                Some("set") => {
                    for i in non_unique(items) {
                        errs.push(duplicate(&pth.index(i), &items[i]));
                    }
                }
                Some("map") => errs.extend(validate_map(pth, s, items)),
                _ => {}
            }
            if let Some(is) = s.items() {
                for (i, v) in items.iter().enumerate() {
                    walk(is, v, &pth.index(i), errs, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn duplicate(pth: &FieldPath, v: &Value) -> FieldError {
    FieldError::new(
        pth.as_str(),
        FieldErrorKind::Duplicate,
        Some(render::bad_value(v)),
        String::new(),
    )
}

/// Indices whose value appeared before, each value reported at its second occurrence only.
/// Scalars compare by type and value (Go map keys), compounds by their marshalled JSON.
fn non_unique(items: &[Value]) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out = Vec::new();
    for (i, x) in items.iter().enumerate() {
        let key = match x {
            Value::Array(_) | Value::Object(_) => format!("c{}", render::json_unbounded(x)),
            scalar => format!("s{scalar}"),
        };
        let times = seen.entry(key).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

fn validate_map(pth: &FieldPath, s: Node<'_>, items: &[Value]) -> Vec<FieldError> {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            return vec![FieldError::invalid(
                pth.index(i).as_str(),
                render::bad_value(x),
                "must be an object for an array of list-type map",
            )];
        }
    }
    if items.len() <= 1 {
        return Vec::new();
    }
    let key_fields = s.list_map_keys();
    // A missing key differs from every present value, including null.
    let keys: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            if let Some(m) = x.as_object() {
                for k in &key_fields {
                    if let Some(v) = m.get(*k) {
                        key.insert((*k).to_string(), v.clone());
                    }
                }
            }
            Value::Object(key)
        })
        .collect();
    non_unique(&keys)
        .into_iter()
        .map(|i| duplicate(&pth.index(i), &keys[i]))
        .collect()
}
