//! Validation of custom resources against their CRD version's `openAPIV3Schema`, done the way
//! kube-apiserver (apiextensions-apiserver, 1.35) does it, so the embedded dev API answers real
//! clients with the same 422 causes and the same `unknown field` paths.
//!
//! Owns: defaulting, pruning of unknown fields, OpenAPI value validation (kube-openapi's rules and
//! message texts), CRD validation ratcheting on update, `x-kubernetes-list-type` uniqueness,
//! embedded-resource checks and `x-kubernetes-validations` CEL rules (evaluated with kube-cel).
//! Called by the dev API's custom-resource write path; it is pure (no I/O, no clock) and never
//! panics. The phases run in the apiserver's order:
//!
//! ```text
//! obj ─► prune unknown fields ─► drop non-nullable nulls ─► coerce embedded metadata ─► default
//!      ─► OpenAPI validation (ratcheted against old) ─► embedded TypeMeta/ObjectMeta checks
//!      ─► list-type set/map uniqueness ─► CEL rules (skipped after a blocking error)
//! ```

mod cel;
mod embedded;
mod formats;
mod listtype;
mod node;
mod prepare;
mod render;
mod structural;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// Deepest schema nesting the walkers follow; deeper subtrees are reported, not walked.
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Deepest object nesting accepted at all (serde_json's own parser stops at 128).
const MAX_VALUE_DEPTH: usize = 256;

/// The field path Kubernetes prints for errors about the object root (`field.Path(nil)`).
pub const ROOT_FIELD: &str = "<nil>";

/// One problem with one field, shaped like a Kubernetes `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path as Kubernetes prints it, e.g. `spec.to[0].service.port`; [`ROOT_FIELD`]
    /// (`<nil>`) for the object root, exactly as the apiserver reports it in `causes[].field`.
    pub field: String,
    /// What kind of problem this is; [`FieldErrorKind::reason`] gives the `StatusCause` type.
    pub kind: FieldErrorKind,
    /// The explanation after the value, e.g. `spec.x in body should match '^a'`; may be empty.
    pub detail: String,
    /// The bad value already rendered the way Go prints it (`"text"` quoted, `5`, `null`,
    /// `{"a":1}`), at most a few KiB; `None` when Kubernetes omits it.
    pub value: Option<String>,
}

/// The kind of a [`FieldError`], one per Kubernetes `field.ErrorType` used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// `FieldValueRequired`: a required field is missing.
    Required,
    /// `FieldValueInvalid`: the value breaks a constraint.
    Invalid,
    /// `FieldValueNotSupported`: the value is not one of an enum's values.
    NotSupported,
    /// `FieldValueTooLong`: a string is longer than `maxLength`.
    TooLong,
    /// `FieldValueTooMany`: a list or map has more than `maxItems`/`maxProperties` entries.
    TooMany,
    /// `FieldValueTypeInvalid`: the value has the wrong JSON type or string format.
    TypeInvalid,
    /// `FieldValueForbidden`: a CEL rule with `reason: FieldValueForbidden` failed.
    Forbidden,
    /// `FieldValueDuplicate`: a list-type set/map holds the same element or key twice.
    Duplicate,
}

impl FieldErrorKind {
    /// The `metav1.CauseType` string, e.g. `FieldValueRequired`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
        }
    }

    /// The human text Kubernetes prints for the kind, e.g. `Unsupported value`.
    pub fn text(&self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
        }
    }

    fn from_reason(reason: &str) -> Option<Self> {
        match reason {
            "FieldValueRequired" => Some(Self::Required),
            "FieldValueForbidden" => Some(Self::Forbidden),
            "FieldValueDuplicate" => Some(Self::Duplicate),
            "FieldValueInvalid" => Some(Self::Invalid),
            _ => None,
        }
    }
}

impl FieldError {
    /// The whole message, exactly like `field.Error.Error()`, e.g.
    /// `spec.from: Invalid value: "ftp://x": spec.from in body should match '^https?://'`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// The message without the field, like `field.Error.ErrorBody()`; this is what the
    /// apiserver puts in `Status.details.causes[].message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if let (true, Some(v)) = (shows_value, &self.value) {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    fn new(field: &str, kind: FieldErrorKind, value: Option<String>, detail: String) -> Self {
        let field = if field.is_empty() { ROOT_FIELD } else { field };
        Self {
            field: field.to_string(),
            kind,
            detail,
            value: value.map(render::bound),
        }
    }

    /// `field.Invalid(path, value, detail)` with an already rendered value.
    fn invalid(field: &str, value: String, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid, Some(value), detail.into())
    }

    /// `field.Required(path, detail)`.
    fn required(field: &str, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Required, None, detail.into())
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// What [`validate`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Every validation error, in the apiserver's order; empty when the object is valid.
    pub errors: Vec<FieldError>,
    /// Dotted paths of the fields that were pruned (`spec.foo`, `spec.items[0].bar`,
    /// `spec.template.metadata.baz`), sorted per phase like the apiserver. The caller turns them
    /// into `strict decoding error: unknown field "spec.foo"` (fieldValidation=Strict) or
    /// `Warning` headers (Warn).
    pub unknown_fields: Vec<String>,
}

impl Outcome {
    /// True when there is no validation error (pruned fields are not errors).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Validates `obj` (a whole custom resource: apiVersion, kind, metadata, spec, status...)
/// against the version's `openAPIV3Schema`, in place: prunes unknown fields (recording them),
/// applies `default`s, then checks types and value constraints, then CEL rules. `old` is the
/// stored object on update: it enables transition rules (`oldSelf`) and CRD validation
/// ratcheting (errors in unchanged parts of the object are not reported).
///
/// The root `metadata` is neither pruned nor validated as ObjectMeta here; the caller owns it.
/// CEL rules run on a short-lived thread with a large stack (the CEL interpreter recurses
/// deeply); everything else runs on the caller's thread. Costs are bounded by the schema and
/// object size, except CEL evaluation, which has no runtime cost budget.
pub fn validate(schema: &Value, obj: &mut Value, old: Option<&Value>) -> Outcome {
    let mut outcome = Outcome::default();
    if exceeds_depth(obj, MAX_VALUE_DEPTH) || old.is_some_and(|o| exceeds_depth(o, MAX_VALUE_DEPTH))
    {
        outcome.errors.push(FieldError::invalid(
            ROOT_FIELD,
            render::quote(""),
            format!("object nesting exceeds the maximum depth of {MAX_VALUE_DEPTH}"),
        ));
        return outcome;
    }
    let root = node::Node::new(schema);

    let prepared = prepare::prepare(root, obj);
    outcome.unknown_fields = prepared.unknown_fields;
    if let Some(err) = prepared.error {
        // The apiserver fails decoding here (400); report it as the only problem.
        outcome.errors.push(err);
        return outcome;
    }

    // The stored object is pruned and defaulted again on read, so compare against that view.
    let old = old.map(|o| {
        let mut o = o.clone();
        let _ = prepare::prepare(root, &mut o);
        o
    });
    let old = old.as_ref();

    let mut regexes = structural::RegexCache::default();
    outcome
        .errors
        .extend(structural::validate(root, obj, old, &mut regexes));
    outcome.errors.extend(embedded::validate(root, obj));
    let old_lists_ok = old.is_none_or(|o| listtype::validate(root, o).is_empty());
    if old_lists_ok {
        outcome.errors.extend(listtype::validate(root, obj));
    }

    if cel::has_rules(root, 0) {
        if outcome.errors.iter().any(is_blocking) {
            outcome.errors.push(FieldError::new(
                ROOT_FIELD,
                FieldErrorKind::Invalid,
                Some("null".to_string()),
                "some validation rules were not checked because the object was invalid; \
                 correct the existing errors to complete validation"
                    .to_string(),
            ));
        } else {
            outcome.errors.extend(cel::validate(root, obj, old));
        }
    }
    outcome
}

/// Schema errors after which the apiserver does not run CEL rules (`hasBlockingErr`).
fn is_blocking(e: &FieldError) -> bool {
    matches!(
        e.kind,
        FieldErrorKind::NotSupported
            | FieldErrorKind::Required
            | FieldErrorKind::TooLong
            | FieldErrorKind::TooMany
            | FieldErrorKind::TypeInvalid
    )
}

/// Iterative, so a hostile object cannot overflow the stack while being measured.
fn exceeds_depth(v: &Value, max: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        if d > max {
            return true;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    false
}

/// A Kubernetes `field.Path` under construction; the empty string is the nil (root) path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldPath(String);

impl FieldPath {
    fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}
