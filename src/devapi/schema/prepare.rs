//! The decoding half of the apiserver's custom-resource handling, which mutates the object:
//! pruning of unknown fields (`pruning.PruneWithOptions`), removal of non-nullable nulls that
//! have no default, coercion of embedded `metadata` to ObjectMeta (`objectmeta.Coerce`) and
//! structural defaulting (`defaulting.Default`), in that order.

use serde_json::Value;

use super::embedded::coerce_object_meta;
use super::node::{Additional, Node};
use super::{FieldError, FieldPath, MAX_SCHEMA_DEPTH, render};

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

pub(super) struct Prepared {
    pub(super) unknown_fields: Vec<String>,
    /// A TypeMeta/ObjectMeta coercion failure inside an embedded resource (a 400 in the apiserver).
    pub(super) error: Option<FieldError>,
}

pub(super) fn prepare(root: Node<'_>, obj: &mut Value) -> Prepared {
    let mut pruned = Vec::new();
    prune_root(root, obj, &mut pruned);
    pruned.sort();
    prune_nulls(Some(root), obj, 0);
    let mut meta_unknown = Vec::new();
    let error = coerce(root, obj, &FieldPath::default(), &mut meta_unknown, 0).err();
    meta_unknown.sort();
    pruned.extend(meta_unknown);
    default(root, obj, 0);
    Prepared {
        unknown_fields: pruned,
        error,
    }
}

/// The resource root is treated as an embedded resource: TypeMeta and metadata are kept.
fn prune_root(root: Node<'_>, obj: &mut Value, out: &mut Vec<String>) {
    if root.preserve_unknown() {
        skip_prune(root, obj, &mut String::new(), out, true, 0);
    } else {
        prune(Some(root), obj, &mut String::new(), out, true, 0);
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn record(path: &str, key: &str, out: &mut Vec<String>) {
    let mut p = path.to_string();
    push_key(&mut p, key);
    out.push(p);
}

fn prune(
    s: Option<Node<'_>>,
    x: &mut Value,
    path: &mut String,
    out: &mut Vec<String>,
    embedded: bool,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if let Some(s) = s
        && s.preserve_unknown()
    {
        skip_prune(s, x, path, out, embedded || s.embedded(), depth);
        return;
    }
    let len = path.len();
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    record(path, k, out);
                }
                map.clear();
                return;
            };
            let embedded = embedded || s.embedded();
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child_schema = match (s.property(&k), s.additional()) {
                    (Some(p), _) => Some(Some(p)),
                    (None, Additional::Schema(a)) => Some(Some(a)),
                    (None, Additional::Any) => Some(None),
                    (None, Additional::Absent) => None,
                };
                match child_schema {
                    Some(cs) => {
                        if let Some(v) = map.get_mut(&k) {
                            push_key(path, &k);
                            let child_embedded = cs.is_some_and(|c| c.embedded());
                            prune(cs, v, path, out, child_embedded, depth + 1);
                            path.truncate(len);
                        }
                    }
                    None => {
                        if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                            record(path, &k, out);
                        }
                        map.shift_remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items());
            for (i, v) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                let child_embedded = item_schema.is_some_and(|c| c.embedded());
                prune(item_schema, v, path, out, child_embedded, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: unknown keys stay, known ones are pruned.
fn skip_prune(
    s: Node<'_>,
    x: &mut Value,
    path: &mut String,
    out: &mut Vec<String>,
    embedded: bool,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let len = path.len();
    match x {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let cs = match (s.property(k), s.additional()) {
                    (Some(p), _) => Some(p),
                    (None, Additional::Schema(a)) => Some(a),
                    (None, Additional::Any) => None,
                    (None, Additional::Absent) => continue,
                };
                push_key(path, k);
                prune(
                    cs,
                    v,
                    path,
                    out,
                    cs.is_some_and(|c| c.embedded()),
                    depth + 1,
                );
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s.items() else {
                return;
            };
            for (i, v) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                skip_prune(item_schema, v, path, out, item_schema.embedded(), depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn child_schema<'a>(s: Option<Node<'a>>, key: &str) -> Option<Node<'a>> {
    let s = s?;
    s.property(key).or_else(|| s.additional_schema())
}

/// `PruneNonNullableNullsWithoutDefaults`.
fn prune_nulls(s: Option<Node<'_>>, x: &mut Value, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let cs = child_schema(s, k);
                let drop =
                    v.is_null() && cs.is_some_and(|c| !c.nullable() && c.default().is_none());
                !drop
            });
            for (k, v) in map.iter_mut() {
                prune_nulls(child_schema(s, k), v, depth + 1);
            }
        }
        Value::Array(items) => {
            let is = s.and_then(|s| s.items());
            for v in items {
                prune_nulls(is, v, depth + 1);
            }
        }
        _ => {}
    }
}

/// `objectmeta.Coerce` for embedded resources below the root: TypeMeta must be strings and
/// `metadata` is reduced to ObjectMeta, with dropped keys reported as unknown fields.
fn coerce(
    s: Node<'_>,
    x: &mut Value,
    pth: &FieldPath,
    unknown: &mut Vec<String>,
    depth: usize,
) -> Result<(), FieldError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Ok(());
    }
    match x {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if s.embedded() && depth > 0 {
                    match k.as_str() {
                        "apiVersion" | "kind" => {
                            if let Some(v) = map.get(&k)
                                && !v.is_string()
                            {
                                return Err(FieldError::invalid(
                                    pth.child(&k).as_str(),
                                    render::bad_value(v),
                                    "must be a string",
                                ));
                            }
                        }
                        "metadata" => {
                            if let Some(meta) = map.get_mut("metadata") {
                                coerce_object_meta(meta, pth, unknown)?;
                            }
                        }
                        _ => {}
                    }
                }
                let (cs, cp) = match (s.property(&k), s.additional_schema()) {
                    (Some(p), _) => (p, pth.child(&k)),
                    (None, Some(a)) => (a, pth.key(&k)),
                    (None, None) => continue,
                };
                if let Some(v) = map.get_mut(&k) {
                    coerce(cs, v, &cp, unknown, depth + 1)?;
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = s.items() else {
                return Ok(());
            };
            for (i, v) in items.iter_mut().enumerate() {
                coerce(is, v, &pth.index(i), unknown, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `defaulting.Default`: absent properties and non-nullable nulls get a copy of the default.
fn default(s: Node<'_>, x: &mut Value, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            if let Some(props) = s.properties() {
                for (k, ps) in props {
                    let ps = Node::new(ps);
                    let Some(d) = ps.default() else {
                        continue;
                    };
                    let needs = match map.get(k) {
                        None => true,
                        Some(v) => v.is_null() && !ps.nullable(),
                    };
                    if needs {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(ps) = s.property(k) {
                    default(ps, v, depth + 1);
                } else if let Some(ap) = s.additional_schema() {
                    if v.is_null()
                        && !ap.nullable()
                        && let Some(d) = ap.default()
                    {
                        *v = d.clone();
                    }
                    default(ap, v, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = s.items() else {
                return;
            };
            for v in items.iter_mut() {
                if v.is_null()
                    && !is.nullable()
                    && let Some(d) = is.default()
                {
                    *v = d.clone();
                }
                default(is, v, depth + 1);
            }
        }
        _ => {}
    }
}
