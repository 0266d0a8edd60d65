//! OpenAPI value validation as kube-openapi's `SchemaValidator` does it for CRDs, including the
//! exact error texts and their mapping to `field.Error` (`kubeOpenAPIResultToFieldErrors`), and
//! CRD validation ratcheting: on update, a subtree equal to its correlated old value reports
//! nothing. Old values correlate through object keys and `x-kubernetes-list-type: map` keys only.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::node::{Additional, Node};
use super::{FieldError, FieldErrorKind, MAX_SCHEMA_DEPTH, formats, render};

/// Compiled `pattern`s for one validation call; invalid or oversized patterns keep their error.
#[derive(Default)]
pub(super) struct RegexCache(HashMap<String, Result<Regex, String>>);

/// Bound on one compiled pattern, so a hostile schema cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl RegexCache {
    fn get(&mut self, pattern: &str) -> &Result<Regex, String> {
        self.0.entry(pattern.to_string()).or_insert_with(|| {
            RegexBuilder::new(&go_to_rust_regex(pattern))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    let text = e.to_string();
                    text.lines()
                        .last()
                        .unwrap_or("invalid pattern")
                        .trim()
                        .to_string()
                })
        })
    }
}

/// Go's RE2 Perl classes and word boundaries are ASCII-only; Rust's are Unicode by default.
pub(super) fn go_to_rust_regex(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 16);
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('s') => out.push_str(r"[\t\n\f\r ]"),
            Some('S') => out.push_str(r"[^\t\n\f\r ]"),
            Some('b') => out.push_str(r"(?-u:\b)"),
            Some('B') => out.push_str(r"(?-u:\B)"),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Validates the whole object; `old` enables ratcheting.
pub(super) fn validate(
    root: Node<'_>,
    obj: &Value,
    old: Option<&Value>,
    rx: &mut RegexCache,
) -> Vec<FieldError> {
    Walker { rx }.node(root, obj, "", old, true, 0)
}

struct Walker<'r> {
    rx: &'r mut RegexCache,
}

/// The field path kube-apiserver derives from an OpenAPI error name.
fn field_of(name: &str) -> &str {
    if name == "." {
        ""
    } else {
        name.strip_prefix('.').unwrap_or(name)
    }
}

fn invalid(name: &str, value: String, detail: String) -> FieldError {
    FieldError::new(field_of(name), FieldErrorKind::Invalid, Some(value), detail)
}

fn type_invalid(name: &str, type_name: &str, value: &str) -> FieldError {
    FieldError::new(
        field_of(name),
        FieldErrorKind::TypeInvalid,
        Some(render::quote(value)),
        format!(
            "{name} in body must be of type {type_name}: {}",
            render::quote(value)
        ),
    )
}

/// Composite (`allOf`/`anyOf`/`oneOf`/`not`) failures are plain errors in kube-openapi, which the
/// apiserver reports on the root path with an empty value.
fn composite(detail: String) -> FieldError {
    FieldError::new("", FieldErrorKind::Invalid, Some(render::quote("")), detail)
}

fn too_many(name: &str, actual: usize, max: u64) -> FieldError {
    let unit = if max == 1 { "item" } else { "items" };
    FieldError::new(
        field_of(name),
        FieldErrorKind::TooMany,
        Some(actual.to_string()),
        format!("must have at most {max} {unit}"),
    )
}

/// The JSON number as the apiserver decodes it: int64 when it fits, float64 otherwise.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn num(n: &serde_json::Number) -> Num {
    match n.as_i64() {
        Some(i) => Num::Int(i),
        None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// go-openapi `swag.IsFloat64AJSONInteger`.
pub(super) fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let g = f.trunc();
    if f == g {
        return true;
    }
    let diff = (f - g).abs();
    diff / (f.abs() + g.abs()).min(f64::MAX) < 1e-9
}

/// The JSON type name and Go number format kube-openapi infers for a value.
fn type_info(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) => match num(n) {
            Num::Int(_) => ("integer", "int64"),
            Num::Float(_) => ("number", "float64"),
        },
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

fn types_of(s: Node<'_>) -> Vec<&str> {
    if s.int_or_string() {
        vec!["integer", "string"]
    } else {
        match s.type_name() {
            "" => Vec::new(),
            t => vec![t],
        }
    }
}

/// The format after the apiserver strips formats it does not support for the type.
fn effective_format<'a>(s: Node<'a>, types: &[&str]) -> &'a str {
    let f = s.str("format").unwrap_or("");
    if f.is_empty() {
        return "";
    }
    let single = if types.len() == 1 { types[0] } else { "" };
    let keep = match single {
        "" | "string" => formats::is_supported(&formats::normalize(f)),
        "integer" => f == "int32" || f == "int64",
        "number" => f == "float" || f == "double",
        _ => false,
    };
    if keep { f } else { "" }
}

/// Old-item lookup for `x-kubernetes-list-type: map` lists (`MakeMapList`).
pub(super) fn correlate_item<'o>(
    s: Node<'_>,
    old: Option<&'o Value>,
    item: &Value,
) -> Option<&'o Value> {
    let old_items = old?.as_array()?;
    if s.type_name() != "array" || s.list_type() != Some("map") {
        return None;
    }
    let keys = s.list_map_keys();
    if keys.is_empty() {
        return None;
    }
    let key_of = |v: &Value| -> Option<Vec<Value>> {
        let m = v.as_object()?;
        keys.iter()
            .map(|k| {
                m.get(*k)
                    .filter(|x| matches!(x, Value::Bool(_) | Value::Number(_) | Value::String(_)))
                    .cloned()
            })
            .collect()
    };
    let want = key_of(item)?;
    old_items.iter().find(|o| key_of(o).as_ref() == Some(&want))
}

impl Walker<'_> {
    fn node(
        &mut self,
        s: Node<'_>,
        v: &Value,
        name: &str,
        old: Option<&Value>,
        root: bool,
        depth: usize,
    ) -> Vec<FieldError> {
        if old.is_some_and(|o| o == v) {
            return Vec::new();
        }
        if depth > MAX_SCHEMA_DEPTH {
            return vec![invalid(
                name,
                render::quote(""),
                format!("{name} exceeds the maximum supported schema depth of {MAX_SCHEMA_DEPTH}"),
            )];
        }
        let types = types_of(s);
        let format = effective_format(s, &types);
        let mut out = Vec::new();
        out.extend(type_check(s, &types, format, v, name));
        if v.is_null() {
            out.extend(enum_check(s, v, name));
            return out;
        }
        out.extend(self.schema_props(s, v, name, old, depth));
        match v {
            Value::String(text) => {
                out.extend(self.string_check(s, text, name));
                let normalized = formats::normalize(format);
                if formats::is_supported(&normalized) && !formats::check(&normalized, text) {
                    out.push(type_invalid(name, format, text));
                }
            }
            Value::Number(n) => out.extend(number_check(s, num(n), name)),
            Value::Array(items) => out.extend(self.slice_check(s, items, name, old, depth)),
            _ => {}
        }
        out.extend(enum_check(s, v, name));
        if let Value::Object(m) = v {
            out.extend(self.object_check(s, m, name, old, root, depth));
        }
        out
    }

    fn schema_props(
        &mut self,
        s: Node<'_>,
        v: &Value,
        name: &str,
        old: Option<&Value>,
        depth: usize,
    ) -> Vec<FieldError> {
        let mut out = Vec::new();
        let q = render::quote(name);

        let any_of = s.branches("anyOf");
        if !any_of.is_empty() {
            let mut best: Option<Vec<FieldError>> = None;
            let mut succeeded = false;
            for b in any_of {
                let r = self.node(b, v, name, old, false, depth + 1);
                if r.is_empty() {
                    succeeded = true;
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|x| r.len() < x.len()) {
                    best = Some(r);
                }
            }
            if !succeeded {
                out.push(composite(format!(
                    "{q} must validate at least one schema (anyOf)"
                )));
            }
            out.extend(best.unwrap_or_default());
        }

        let one_of = s.branches("oneOf");
        if !one_of.is_empty() {
            let mut best: Option<Vec<FieldError>> = None;
            let mut valid = 0usize;
            for b in one_of {
                let r = self.node(b, v, name, old, false, depth + 1);
                if r.is_empty() {
                    valid += 1;
                    best = None;
                    continue;
                }
                if valid == 0 && best.as_ref().is_none_or(|x| r.len() < x.len()) {
                    best = Some(r);
                }
            }
            if valid != 1 {
                let more = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                out.push(composite(format!(
                    "{q} must validate one and only one schema (oneOf). {more}"
                )));
                out.extend(best.unwrap_or_default());
            }
        }

        let all_of = s.branches("allOf");
        if !all_of.is_empty() {
            let mut valid = 0usize;
            let total = all_of.len();
            for b in all_of {
                let r = self.node(b, v, name, old, false, depth + 1);
                if r.is_empty() {
                    valid += 1;
                }
                out.extend(r);
            }
            if valid != total {
                let more = if valid == 0 { ". None validated" } else { "" };
                out.push(composite(format!(
                    "{q} must validate all the schemas (allOf){more}"
                )));
            }
        }

        if let Some(not) = s.raw("not").filter(|n| n.is_object())
            && self
                .node(Node::new(not), v, name, old, false, depth + 1)
                .is_empty()
        {
            out.push(composite(format!("{q} must not validate the schema (not)")));
        }
        out
    }

    fn string_check(&mut self, s: Node<'_>, text: &str, name: &str) -> Option<FieldError> {
        let len = text.chars().count() as u64;
        if let Some(max) = s.count("maxLength")
            && len > max
        {
            let unit = if max == 1 { "byte" } else { "bytes" };
            return Some(FieldError::new(
                field_of(name),
                FieldErrorKind::TooLong,
                None,
                format!("may not be more than {max} {unit}"),
            ));
        }
        if let Some(min) = s.count("minLength")
            && len < min
        {
            return Some(invalid(
                name,
                render::quote(text),
                format!("{name} in body should be at least {min} chars long"),
            ));
        }
        let pattern = s.str("pattern").filter(|p| !p.is_empty())?;
        match self.rx.get(pattern) {
            Err(e) => Some(invalid(
                name,
                render::quote(text),
                format!("{name} in body should match '{pattern}, but pattern is invalid: {e}'"),
            )),
            Ok(r) if !r.is_match(text) => Some(invalid(
                name,
                render::quote(text),
                format!("{name} in body should match '{pattern}'"),
            )),
            Ok(_) => None,
        }
    }

    fn slice_check(
        &mut self,
        s: Node<'_>,
        items: &[Value],
        name: &str,
        old: Option<&Value>,
        depth: usize,
    ) -> Vec<FieldError> {
        let mut out = Vec::new();
        if let Some(is) = s.items() {
            for (i, item) in items.iter().enumerate() {
                let old_item = correlate_item(s, old, item);
                out.extend(self.node(
                    is,
                    item,
                    &format!("{name}[{i}]"),
                    old_item,
                    false,
                    depth + 1,
                ));
            }
        }
        let size = items.len();
        if let Some(min) = s.count("minItems")
            && (size as u64) < min
        {
            out.push(invalid(
                name,
                size.to_string(),
                format!("{name} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = s.count("maxItems")
            && size as u64 > max
        {
            out.push(too_many(name, size, max));
        }
        if s.raw("uniqueItems").and_then(Value::as_bool) == Some(true)
            && items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].contains(a))
        {
            out.push(invalid(
                name,
                render::quote(""),
                format!("{name} in body shouldn't contain duplicates"),
            ));
        }
        out
    }

    fn object_check(
        &mut self,
        s: Node<'_>,
        m: &Map<String, Value>,
        name: &str,
        old: Option<&Value>,
        root: bool,
        depth: usize,
    ) -> Vec<FieldError> {
        let mut out = Vec::new();
        let n = m.len();
        if let Some(min) = s.count("minProperties")
            && (n as u64) < min
        {
            out.push(invalid(
                name,
                n.to_string(),
                format!("{name} in body should have at least {min} properties"),
            ));
        }
        if let Some(max) = s.count("maxProperties")
            && n as u64 > max
        {
            out.push(too_many(name, n, max));
        }
        let props = s.properties();
        let is_prop = |k: &str| props.is_some_and(|p| p.contains_key(k));
        let old_map = old.and_then(Value::as_object);
        match (s.raw("additionalProperties"), s.additional()) {
            (Some(Value::Bool(false)), _) => {
                for k in m.keys().filter(|k| !is_prop(k)) {
                    out.push(invalid(
                        name,
                        render::quote(k),
                        format!("{name}.{k} in body is a forbidden property"),
                    ));
                }
            }
            (_, Additional::Schema(ap)) => {
                for (k, val) in m.iter().filter(|(k, _)| !is_prop(k)) {
                    let child_old = old_map.and_then(|o| o.get(k));
                    out.extend(self.node(
                        ap,
                        val,
                        &format!("{name}.{k}"),
                        child_old,
                        false,
                        depth + 1,
                    ));
                }
            }
            _ => {}
        }
        for (p_name, ps) in props.into_iter().flatten() {
            let Some(val) = m.get(p_name) else {
                continue;
            };
            let child_name = if name.is_empty() {
                p_name.clone()
            } else {
                format!("{name}.{p_name}")
            };
            // TypeMeta at the root is never ratcheted: old and new are converted to one version.
            let child_old = if root && (p_name == "apiVersion" || p_name == "kind") {
                None
            } else {
                old_map.and_then(|o| o.get(p_name))
            };
            out.extend(self.node(Node::new(ps), val, &child_name, child_old, false, depth + 1));
        }
        if let Some(required) = s.raw("required").and_then(Value::as_array) {
            for k in required.iter().filter_map(Value::as_str) {
                if !m.contains_key(k) {
                    out.push(FieldError::required(field_of(&format!("{name}.{k}")), ""));
                }
            }
        }
        out
    }
}

/// kube-openapi's `typeValidator`.
fn type_check(
    s: Node<'_>,
    types: &[&str],
    format: &str,
    v: &Value,
    name: &str,
) -> Option<FieldError> {
    if types.is_empty() && format.is_empty() {
        return None;
    }
    let joined = types.join(",");
    if v.is_null() {
        let allowed = types.is_empty() || types.contains(&"null") || s.nullable();
        return (!allowed).then(|| type_invalid(name, &joined, "null"));
    }
    let (sch_type, data_format) = type_info(v);
    let is_float_int = matches!(v, Value::Number(n) if matches!(num(n), Num::Float(f) if is_json_integer(f)))
        && types.contains(&"integer");
    let is_int_float = sch_type == "integer" && types.contains(&"number");
    let string_or_array = v.is_string() || v.is_array();
    let matches = types.contains(&sch_type) || is_float_int || is_int_float;
    let numeric = types.contains(&"number") || types.contains(&"integer");
    let has_format = !format.is_empty();
    if has_format && !string_or_array && !matches && data_format != format {
        return Some(type_invalid(name, format, data_format));
    }
    if has_format && string_or_array && !numeric {
        return None;
    }
    (!matches).then(|| type_invalid(name, &joined, sch_type))
}

fn enum_matches(v: &Value, e: &Value) -> bool {
    match (v, e) {
        // kube-openapi never matches a null value, even against a null enum entry.
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(a), Value::Number(b)) => match (num(a), num(b)) {
            (Num::Int(x), Num::Int(y)) => x == y,
            (Num::Int(x), Num::Float(y)) => x as f64 == y,
            // A float converted to the enum's int64 type truncates, as Go's reflect.Convert does.
            (Num::Float(x), Num::Int(y)) => x.is_finite() && x.trunc() as i64 == y,
            (Num::Float(x), Num::Float(y)) => x == y,
        },
        _ => v == e,
    }
}

fn enum_check(s: Node<'_>, v: &Value, name: &str) -> Option<FieldError> {
    let values = s
        .raw("enum")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())?;
    if values.iter().any(|e| enum_matches(v, e)) {
        return None;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|e| match e {
            Value::String(s) => render::quote(s),
            other => render::quote(&render::json(other)),
        })
        .collect();
    Some(FieldError::new(
        field_of(name),
        FieldErrorKind::NotSupported,
        Some(render::bad_value(v)),
        format!("supported values: {}", supported.join(", ")),
    ))
}

/// kube-openapi's `numberValidator`: integers compare against truncated int64 bounds.
fn number_check(s: Node<'_>, n: Num, name: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    let shown = match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => render::go_float_v(f),
    };
    if let Some(factor) = s.number("multipleOf") {
        match n {
            Num::Int(d) => {
                let f = factor as i64;
                if f <= 0 {
                    out.push(invalid(
                        name,
                        f.to_string(),
                        format!("factor MultipleOf declared for {name} must be positive: {f}"),
                    ));
                } else if d.checked_rem(f).is_some_and(|r| r != 0) {
                    out.push(invalid(
                        name,
                        shown.clone(),
                        format!("{name} in body should be a multiple of {f}"),
                    ));
                }
            }
            Num::Float(d) => {
                let fs = render::go_float_v(factor);
                if factor <= 0.0 {
                    out.push(invalid(
                        name,
                        fs.clone(),
                        format!("factor MultipleOf declared for {name} must be positive: {fs}"),
                    ));
                } else {
                    let mult = if factor < 1.0 {
                        1.0 / factor * d
                    } else {
                        d / factor
                    };
                    if !is_json_integer(mult) {
                        out.push(invalid(
                            name,
                            shown.clone(),
                            format!("{name} in body should be a multiple of {fs}"),
                        ));
                    }
                }
            }
        }
    }
    let exclusive = |k: &str| s.raw(k).and_then(Value::as_bool) == Some(true);
    if let Some(min) = s.number("minimum") {
        let excl = exclusive("exclusiveMinimum");
        let (fails, bound) = match n {
            Num::Int(d) => {
                let m = min as i64;
                (if excl { d <= m } else { d < m }, m.to_string())
            }
            Num::Float(d) => (
                if excl { d <= min } else { d < min },
                render::go_float_v(min),
            ),
        };
        if fails {
            let op = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(invalid(
                name,
                shown.clone(),
                format!("{name} in body should be {op} {bound}"),
            ));
        }
    }
    if let Some(max) = s.number("maximum") {
        let excl = exclusive("exclusiveMaximum");
        let (fails, bound) = match n {
            Num::Int(d) => {
                let m = max as i64;
                (if excl { d >= m } else { d > m }, m.to_string())
            }
            Num::Float(d) => (
                if excl { d >= max } else { d > max },
                render::go_float_v(max),
            ),
        };
        if fails {
            let op = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(invalid(
                name,
                shown,
                format!("{name} in body should be {op} {bound}"),
            ));
        }
    }
    out
}
