//! Objects marked `x-kubernetes-embedded-resource` (a Pod template inside a spec, say): their
//! `metadata` is coerced to ObjectMeta while decoding (`objectmeta.Coerce`) and their TypeMeta and
//! ObjectMeta are validated afterwards (`objectmeta.Validate`), below the resource root only.

use crate::devapi::validation::*;
use serde_json::{Map, Value};

use super::node::Node;
use super::{FieldError, FieldErrorKind, FieldPath, MAX_SCHEMA_DEPTH, render};

/// ObjectMeta's JSON fields in Go struct order, with the Go type used in decoding errors.
const OBJECT_META: [(&str, MetaType); 15] = [
    ("name", MetaType::Str),
    ("generateName", MetaType::Str),
    ("namespace", MetaType::Str),
    ("selfLink", MetaType::Str),
    ("uid", MetaType::Str),
    ("resourceVersion", MetaType::Str),
    ("generation", MetaType::Int),
    ("creationTimestamp", MetaType::Time),
    ("deletionTimestamp", MetaType::Time),
    ("deletionGracePeriodSeconds", MetaType::IntPtr),
    ("labels", MetaType::StrMap),
    ("annotations", MetaType::StrMap),
    ("ownerReferences", MetaType::ObjList("[]v1.OwnerReference")),
    ("finalizers", MetaType::StrList),
    (
        "managedFields",
        MetaType::ObjList("[]v1.ManagedFieldsEntry"),
    ),
];

#[derive(Clone, Copy)]
enum MetaType {
    Str,
    Int,
    IntPtr,
    Time,
    StrMap,
    StrList,
    ObjList(&'static str),
}

impl MetaType {
    fn go_type(self) -> &'static str {
        match self {
            Self::Str => "string",
            Self::Int | Self::IntPtr => "int64",
            Self::Time => "v1.Time",
            Self::StrMap => "map[string]string",
            Self::StrList => "[]string",
            Self::ObjList(t) => t,
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unmarshal_error(v: &Value, field: &str, ty: &str) -> String {
    let what = match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => format!("number {}", render::number_v(n)),
        _ => json_kind(v).to_string(),
    };
    format!("json: cannot unmarshal {what} into Go struct field ObjectMeta.{field} of type {ty}")
}

/// Checks one ObjectMeta field the way `json.Unmarshal` into the typed struct would.
fn check_meta_field(name: &str, ty: MetaType, v: &Value) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let ok = match ty {
        MetaType::Str => v.is_string(),
        MetaType::Int | MetaType::IntPtr => v.is_i64(),
        MetaType::Time => match v.as_str() {
            Some(s) => {
                if !is_rfc3339(s) {
                    return Err(format!(
                        "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse {} as \"2006\"",
                        render::quote(s),
                        render::quote(s)
                    ));
                }
                true
            }
            None => false,
        },
        MetaType::StrMap => match v.as_object() {
            Some(m) => {
                if let Some(bad) = m.values().find(|x| !x.is_string() && !x.is_null()) {
                    return Err(unmarshal_error(bad, name, "string"));
                }
                true
            }
            None => false,
        },
        MetaType::StrList => match v.as_array() {
            Some(a) => {
                if let Some(bad) = a.iter().find(|x| !x.is_string() && !x.is_null()) {
                    return Err(unmarshal_error(bad, name, "string"));
                }
                true
            }
            None => false,
        },
        MetaType::ObjList(_) => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.is_object() || x.is_null())),
    };
    if ok {
        Ok(())
    } else {
        Err(unmarshal_error(v, name, ty.go_type()))
    }
}

/// RFC 3339 as Go's `time.Parse(time.RFC3339, s)` accepts it.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !super::formats::is_date(&s[..10]) || !(b[10] == b'T' || b[10] == b't') {
        return false;
    }
    let two = |i: usize| -> Option<u32> {
        let (x, y) = (*b.get(i)?, *b.get(i + 1)?);
        (x.is_ascii_digit() && y.is_ascii_digit())
            .then(|| u32::from(x - b'0') * 10 + u32::from(y - b'0'))
    };
    let (Some(h), Some(m), Some(sec)) = (two(11), two(14), two(17)) else {
        return false;
    };
    if b[13] != b':' || b[16] != b':' || h > 23 || m > 59 || sec > 59 {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &s[i..] {
        "Z" | "z" => true,
        tz => {
            let t = tz.as_bytes();
            t.len() == 6
                && (t[0] == b'+' || t[0] == b'-')
                && t[3] == b':'
                && [1, 2, 4, 5].iter().all(|&j| t[j].is_ascii_digit())
        }
    }
}

/// Reduces an embedded `metadata` to ObjectMeta: unknown keys are dropped and reported, empty
/// values are dropped as Go's `omitempty` would, and a badly typed field fails the decode.
pub(super) fn coerce_object_meta(
    meta: &mut Value,
    pth: &FieldPath,
    unknown: &mut Vec<String>,
) -> Result<(), FieldError> {
    let meta_path = pth.child("metadata");
    let Some(map) = meta.as_object() else {
        let what = json_kind(meta);
        return Err(FieldError::invalid(
            meta_path.as_str(),
            render::bad_value(meta),
            format!("json: cannot unmarshal {what} into Go value of type v1.ObjectMeta"),
        ));
    };
    for (name, ty) in OBJECT_META {
        if let Some(v) = map.get(name)
            && let Err(msg) = check_meta_field(name, ty, v)
        {
            return Err(FieldError::invalid(
                meta_path.as_str(),
                render::bad_value(meta),
                msg,
            ));
        }
    }
    let prefix = if meta_path.as_str().is_empty() {
        "<nil>"
    } else {
        meta_path.as_str()
    };
    let mut out = Map::new();
    for k in map.keys() {
        if !OBJECT_META.iter().any(|(n, _)| n == k) {
            unknown.push(format!("{prefix}.{k}"));
        }
    }
    for (name, ty) in OBJECT_META {
        let Some(v) = map.get(name) else {
            continue;
        };
        let keep = match (ty, v) {
            (_, Value::Null) => false,
            (MetaType::Str, Value::String(s)) => !s.is_empty(),
            (MetaType::Int, Value::Number(n)) => n.as_i64() != Some(0),
            (MetaType::StrMap, Value::Object(m)) => !m.is_empty(),
            (MetaType::StrList | MetaType::ObjList(_), Value::Array(a)) => !a.is_empty(),
            _ => true,
        };
        if keep {
            out.insert(name.to_string(), v.clone());
        }
    }
    *meta = Value::Object(out);
    Ok(())
}

/// `objectmeta.Validate(nil, obj, schema, false)`: checks every embedded resource below the root.
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
        Value::Object(map) => {
            if s.embedded() && depth > 0 {
                validate_embedded(pth, map, errs);
            }
            for (k, v) in map {
                if let Some(p) = s.property(k) {
                    walk(p, v, &pth.child(k), errs, depth + 1);
                } else if let Some(a) = s.additional_schema() {
                    walk(a, v, &pth.key(k), errs, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.items() {
                for (i, v) in items.iter().enumerate() {
                    walk(is, v, &pth.index(i), errs, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn validate_embedded(pth: &FieldPath, x: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    if !x.contains_key("apiVersion") {
        errs.push(FieldError::required(
            pth.child("apiVersion").as_str(),
            "must not be empty",
        ));
    }
    if !x.contains_key("kind") {
        errs.push(FieldError::required(
            pth.child("kind").as_str(),
            "must not be empty",
        ));
    }
    for (k, v) in x {
        match k.as_str() {
            "apiVersion" => {
                let p = pth.child("apiVersion");
                match v.as_str() {
                    None => errs.push(FieldError::invalid(
                        p.as_str(),
                        render::bad_value(v),
                        "must be a string",
                    )),
                    Some("") => errs.push(FieldError::invalid(
                        p.as_str(),
                        render::quote(""),
                        "must not be empty",
                    )),
                    Some(gv) if gv.matches('/').count() > 1 && gv != "/" => {
                        errs.push(FieldError::invalid(
                            p.as_str(),
                            render::quote(gv),
                            format!("unexpected GroupVersion string: {gv}"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            "kind" => {
                let p = pth.child("kind");
                match v.as_str() {
                    None => errs.push(FieldError::invalid(
                        p.as_str(),
                        render::bad_value(v),
                        "must be a string",
                    )),
                    Some("") => errs.push(FieldError::invalid(
                        p.as_str(),
                        render::quote(""),
                        "must not be empty",
                    )),
                    Some(kind) => {
                        let msgs = dns1035_label(&kind.to_lowercase());
                        if !msgs.is_empty() {
                            errs.push(FieldError::invalid(
                                p.as_str(),
                                render::quote(kind),
                                format!(
                                    "may have mixed case, but should otherwise match: {}",
                                    msgs.join(",")
                                ),
                            ));
                        }
                    }
                }
            }
            "metadata" => validate_object_meta(&pth.child("metadata"), v, errs),
            _ => {}
        }
    }
}

fn validate_object_meta(p: &FieldPath, meta: &Value, errs: &mut Vec<FieldError>) {
    let Some(m) = meta.as_object() else {
        errs.push(FieldError::invalid(
            p.as_str(),
            render::bad_value(meta),
            "json: cannot unmarshal into Go value of type v1.ObjectMeta",
        ));
        return;
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let generate_name = text("generateName");
    if !generate_name.is_empty() {
        for msg in path_segment(generate_name, true) {
            errs.push(FieldError::invalid(
                p.child("generateName").as_str(),
                render::quote(generate_name),
                msg,
            ));
        }
    }
    // The apiserver substitutes "fakename" for an empty embedded name before validating.
    let name = match text("name") {
        "" => "fakename",
        n => n,
    };
    for msg in path_segment(name, false) {
        errs.push(FieldError::invalid(
            p.child("name").as_str(),
            render::quote(name),
            msg,
        ));
    }
    let namespace = text("namespace");
    if !namespace.is_empty() {
        for msg in dns1123_label(namespace) {
            errs.push(FieldError::invalid(
                p.child("namespace").as_str(),
                render::quote(namespace),
                msg,
            ));
        }
    }
    if let Some(g) = m.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid(
            p.child("generation").as_str(),
            g.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(labels) = m.get("labels").and_then(Value::as_object) {
        let lp = p.child("labels");
        for (k, v) in labels {
            for msg in qualified_name(k) {
                errs.push(FieldError::invalid(lp.as_str(), render::quote(k), msg));
            }
            let v = v.as_str().unwrap_or("");
            for msg in label_value(v) {
                errs.push(FieldError::invalid(lp.as_str(), render::quote(v), msg));
            }
        }
    }
    if let Some(annotations) = m.get("annotations").and_then(Value::as_object) {
        let ap = p.child("annotations");
        let mut size = 0usize;
        for (k, v) in annotations {
            for msg in qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid(ap.as_str(), render::quote(k), msg));
            }
            size += k.len() + v.as_str().map_or(0, str::len);
        }
        if size > 256 * 1024 {
            errs.push(FieldError::new(
                ap.as_str(),
                FieldErrorKind::TooLong,
                None,
                "may not be more than 262144 bytes".to_string(),
            ));
        }
    }
}
