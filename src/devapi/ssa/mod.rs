//! Server-side apply and field ownership (`metadata.managedFields`) for the dev API server.
//!
//! Callers: the PATCH handler runs [`apply`] for `application/apply-patch+yaml` bodies; every
//! other write (create, update, JSON/merge/strategic patch, status writes) runs
//! [`record_update`] on the object it is about to store, so kubectl and helm always see
//! valid `managedFields`. Both are pure: objects and schemas in, object (or error) out.
//!
//! ```text
//!  apply(req, live, applied)                      record_update(req, old, new)
//!    check apiVersion, managedFields == nil          managedFields from new, else old
//!    scope to the subresource, strip server meta     (reset with [] or [{}])
//!    no managedFields yet → "before-first-apply"     none and not a create → untracked
//!    merge · prune · conflicts (typed, updater)      compare old/new → owner "current-operation"
//!    strip meta paths, time, last-applied            merge into the manager's entry, time
//!    encode managedFields                            cap update entries, encode
//! ```
//!
//! This is a port of `sigs.k8s.io/structured-merge-diff/v6` (`fieldpath`, `typed`,
//! `merge.Updater`) and of the apiserver's field manager stack in
//! `k8s.io/apimachinery/pkg/util/managedfields/internal` (version check, last-applied
//! updater, skip-non-applied with tracking on create, cap managers, manager identifiers,
//! managed-fields updater, strip meta, structured merge). Deliberate differences, all
//! documented where they live:
//!
//! * one API version: managers that wrote at another version of the same kind are compared
//!   against the current object unchanged (no conversion, no "missing version" pruning);
//! * no `kubectl.kubernetes.io/last-applied-configuration` → server-side migration
//!   (`lastappliedmanager.go`); the annotation is still kept current for manager `kubectl`;
//! * no reconciliation of stored sets after a schema changes a field between atomic and
//!   granular (`ReconcileFieldSetWithSchema`);
//! * the empty object a create is compared against is `{}`, so update entries written on
//!   create carry `.` for struct fields (`f:spec: {.: {}}`) that upstream's typed zero value
//!   already contains; ownership and conflicts are the same;
//! * subresource scope: applying to the main resource drops `.status` (when the kind has a
//!   status subresource); applying to `status` keeps only `.status` and the object's
//!   identity; upstream instead resets those fields in the registry strategy;
//! * the apply configuration is not validated against the schema here (unknown fields,
//!   wrong types): field validation is the server's job before calling [`apply`];
//! * where pruning empties a map or list that someone still owns as a whole, upstream
//!   leaves `null` in the merged object (dropped later by typed decoding or CR null
//!   pruning); [`apply`] drops it itself;
//! * a map-list key field missing from an item takes the schema's `default`; the embedded
//!   built-in OpenAPI data has no defaults, so `protocol` falls back to `"TCP"` as
//!   upstream's data says for container and service ports.

mod fieldpath;
mod fieldsv1;
mod managed;
mod typed;
mod updater;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_real;
#[cfg(test)]
mod tests_smd;

use serde_json::{Map, Value};

use fieldpath::{Path, PathElement, Set, path_string};
use managed::{Managed, manager_id, parse_manager_id};
use typed::{Typed, TypedError, depth_exceeds};
use updater::{UpdateError, Updater, VersionedSet};

/// How deep an object may nest (maps and lists) before it is refused.
pub const MAX_DEPTH: usize = 100;

/// Update entries kept before the oldest are merged into `ancient-changes` buckets
/// (`DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The annotation client-side `kubectl apply` keeps its last configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Read access to the schema of a kind, provided by the server.
///
/// Custom resources pass their CRD's `openAPIV3Schema` (no `$ref`); built-in kinds pass
/// OpenAPI definitions with `$ref`s. List and map semantics are read from the nodes
/// themselves (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
/// `x-kubernetes-patch-strategy`/`-merge-key`, `x-kubernetes-map-type`).
pub trait SchemaLookup {
    /// The schema of property `field` of the object schema `node`, or of the items of the
    /// array schema `node` when `field` is `None`, following `$ref`, single-`$ref` `allOf`
    /// wrappers and, for keys that are not properties, `additionalProperties`. `None` means
    /// unknown: the value is then treated as untyped (maps granular, lists atomic).
    fn child<'a>(&'a self, node: &'a Value, field: Option<&str>) -> Option<&'a Value>;

    /// `node` with `$ref` (and single-`$ref` `allOf` wrappers) followed to the definition;
    /// `node` itself when it is not a reference. Types, properties and
    /// `x-kubernetes-map-type` are read from the resolved node.
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value;
}

/// One server-side apply or ownership update.
pub struct ApplyRequest<'a> {
    /// Schema access for the kind.
    pub schema: &'a dyn SchemaLookup,
    /// The schema of the kind (a `$ref` node or the CRD's `openAPIV3Schema`).
    pub root: &'a Value,
    /// The `apiVersion` of the kind at this endpoint (`apps/v1`, `v1`).
    pub api_version: &'a str,
    /// The field manager (`fieldManager` query parameter, or the user-agent default for
    /// non-apply writes); empty is recorded as `unknown`, as upstream does.
    pub manager: &'a str,
    /// `force=true`: take ownership of conflicting fields instead of failing.
    pub force: bool,
    /// The subresource written (`Some("status")`), `None` for the main resource.
    pub subresource: Option<&'a str>,
    /// The request time, RFC 3339 (`2024-05-01T10:00:00Z`), written to changed entries.
    pub now: &'a str,
    /// Whether the kind has a `status` subresource, which takes `.status` out of the main
    /// resource's scope (and everything but `.status` out of the subresource's).
    pub status_subresource: bool,
}

/// The operation a managed fields entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    /// The wire name (`Apply`, `Update`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// A field the apply configuration sets to a value another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// Whether the other manager applied or updated the field.
    pub operation: Operation,
    /// The API version the other manager wrote at.
    pub api_version: String,
    /// The subresource the other manager wrote through, if any.
    pub subresource: Option<String>,
    /// The field as the apiserver prints it: `.spec.containers[name="a"].image`.
    pub field: String,
}

impl Conflict {
    /// The manager as the apiserver describes it: `"kubectl"`, `"helm" using apps/v1`,
    /// `"ctrl" with subresource "status" using v1`.
    pub fn manager_description(&self) -> String {
        let mut out = fieldpath::go_quote(&self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {}", fieldpath::go_quote(sub)));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    /// The message of this conflict's `StatusCause` (type `FieldManagerConflict`, field
    /// [`Conflict::field`]): `conflict with "kubectl" using v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }

    fn identifier(&self) -> String {
        manager_id(
            &self.manager,
            self.operation,
            &self.api_version,
            self.subresource.as_deref().unwrap_or(""),
        )
    }
}

/// The 409 `Status` message for a failed apply, exactly as the apiserver words it:
/// `Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.key`, or for
/// several, one `conflicts with <manager>:` block per manager listing `- <field>` lines.
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.message(),
            only.field
        );
    }
    let mut by_manager: std::collections::BTreeMap<String, (String, Vec<&str>)> =
        std::collections::BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry(c.identifier())
            .or_insert_with(|| (c.manager_description(), Vec::new()))
            .1
            .push(&c.field);
    }
    let mut lines = Vec::new();
    for (description, fields) in by_manager.values() {
        lines.push(format!("conflicts with {description}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why an apply or update was refused.
#[derive(Debug, thiserror::Error)]
pub enum SsaError {
    /// The apply configuration sets fields other managers own (409 Conflict, reason
    /// `Conflict`, one `FieldManagerConflict` cause per entry).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The request cannot be processed: malformed `managedFields`, an apply configuration
    /// that is not an object or has the wrong version, list items without keys or with
    /// duplicate keys, over-deep input (400/422).
    #[error("{0}")]
    Invalid(String),
}

/// A set of field paths, convertible to and from the `fieldsV1` wire format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(Set);

impl FieldSet {
    /// Reads a `fieldsV1` object (`{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}`).
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, SsaError> {
        fieldsv1::decode(value)
            .map(FieldSet)
            .map_err(|e| SsaError::Invalid(format!("error decoding fieldsV1: {e}")))
    }

    /// Writes the set as a `fieldsV1` object, keys in upstream's order.
    pub fn to_fields_v1(&self) -> Value {
        fieldsv1::encode(&self.0)
    }

    /// The member paths, printed the way conflicts print them (`.spec.replicas`).
    pub fn paths(&self) -> Vec<String> {
        self.0.paths().iter().map(|p| path_string(p)).collect()
    }

    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Server-side apply of `applied` (the PATCH body, already YAML → JSON) onto `live`
/// (`None`: the object is being created).
///
/// Returns the object to store with `metadata.managedFields` updated; when it equals `live`
/// apart from `managedFields`, nothing but ownership changed. Server-set metadata in
/// `applied` (`uid`, `resourceVersion`, `creationTimestamp`, `generation`, `selfLink`) is
/// ignored and the live values kept; a non-null `metadata.managedFields` is refused, as the
/// apiserver refuses it.
pub fn apply(req: &ApplyRequest, live: Option<&Value>, applied: &Value) -> Result<Value, SsaError> {
    if !applied.is_object() {
        return Err(SsaError::Invalid(
            "the apply configuration must be an object".to_owned(),
        ));
    }
    if depth_exceeds(applied, MAX_DEPTH) {
        return Err(too_deep());
    }
    if matches!(
        applied.pointer("/metadata/managedFields"),
        Some(Value::Array(_))
    ) {
        return Err(SsaError::Invalid(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }
    let applied_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if applied_version != req.api_version {
        let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
        return Err(SsaError::Invalid(format!(
            "invalid object type: {}",
            gvk_string(applied_version, kind)
        )));
    }

    let config = scope_config(req, applied);
    let mut live_obj = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let live_fields = take_managed_fields(&mut live_obj);
    if depth_exceeds(&live_obj, MAX_DEPTH) {
        return Err(too_deep());
    }
    let mut managed = managed::decode(live_fields.as_ref())
        .map_err(|e| SsaError::Invalid(format!("failed to decode managed fields: {e}")))?;
    let updater = Updater {
        typed: Typed::new(req.schema, req.root),
        ignored: ignored_fields(req, &[&live_obj, &config]),
        version: req.api_version.to_owned(),
    };

    if managed.fields.is_empty() {
        // Fields set before anyone applied belong to "before-first-apply", so the first
        // applier conflicts with them instead of silently taking them.
        let empty = Value::Object(Map::new());
        run_update(
            req,
            &updater,
            &empty,
            &live_obj,
            &mut managed,
            "before-first-apply",
        )
        .map_err(|e| match e {
            UpdateError::Typed(TypedError::Invalid(msg)) => SsaError::Invalid(format!(
                "failed to create manager for existing fields: {msg}"
            )),
            other => update_error(other),
        })?;
    }

    let id = manager_id(
        manager_name(req.manager),
        Operation::Apply,
        req.api_version,
        req.subresource.unwrap_or(""),
    );
    let merged = updater
        .apply(&live_obj, &config, &mut managed.fields, &id, req.force)
        .map_err(update_error)?;
    strip_meta_fields(&mut managed.fields, &id);
    let mut object = match merged {
        Some(mut new) => {
            managed.times.insert(id, Some(req.now.to_owned()));
            drop_pruned_nulls(&mut new, live, Some(applied));
            new
        }
        None => live_obj,
    };
    if req.manager == "kubectl" {
        refresh_last_applied(&mut object, applied);
    }
    set_managed_fields(&mut object, managed::encode(&managed));
    Ok(object)
}

/// Records a non-apply write by `req.manager`: the fields that changed between `old`
/// (`None`: create) and `new` become owned by the manager with operation `Update` (one entry
/// per manager, API version and subresource) and are taken from everyone else;
/// `new.metadata.managedFields` is rewritten.
///
/// As upstream: managed fields sent in `new` replace the stored ones when they decode and
/// are not empty (`[]` or `[{}]` clears them); for a subresource the stored ones are always
/// used; an object stored without managed fields stays untracked until it is applied to;
/// when the object cannot be walked (a list item without its key), the stored managed fields
/// are kept. `req.force` is ignored.
pub fn record_update(
    req: &ApplyRequest,
    old: Option<&Value>,
    new: &mut Value,
) -> Result<(), SsaError> {
    let live_fields = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    let sent_fields = take_managed_fields(new);
    let mut live = old.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    take_managed_fields(&mut live);
    if depth_exceeds(new, MAX_DEPTH) || depth_exceeds(&live, MAX_DEPTH) {
        set_managed_fields(new, sent_fields);
        return Err(too_deep());
    }
    let stored = || managed::decode(live_fields.as_ref()).unwrap_or_default();
    let mut managed = if req.subresource.is_some() {
        stored()
    } else if is_reset(sent_fields.as_ref()) {
        Managed::default()
    } else {
        match managed::decode(sent_fields.as_ref()) {
            Ok(m) if !m.fields.is_empty() => m,
            _ => stored(),
        }
    };
    if managed.fields.is_empty() {
        let creating = old.is_none_or(|o| {
            o.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        });
        if !creating {
            return Ok(());
        }
    }

    let updater = Updater {
        typed: Typed::new(req.schema, req.root),
        ignored: ignored_fields(req, &[&live, new]),
        version: req.api_version.to_owned(),
    };
    match run_update(req, &updater, &live, new, &mut managed, req.manager) {
        Ok(()) => {
            set_managed_fields(new, managed::encode(&managed));
            Ok(())
        }
        Err(UpdateError::Typed(TypedError::TooDeep)) => Err(too_deep()),
        Err(_) => {
            // UpdateNoErrors: keep what was stored rather than lose ownership.
            set_managed_fields(new, live_fields);
            Ok(())
        }
    }
}

/// The update half of the manager stack: identifier, "current-operation" bookkeeping,
/// meta stripping, structured update, cap.
fn run_update(
    req: &ApplyRequest,
    updater: &Updater,
    live: &Value,
    new: &Value,
    managed: &mut Managed,
    manager: &str,
) -> Result<(), UpdateError> {
    const SELF: &str = "current-operation";
    let id = manager_id(
        manager_name(manager),
        Operation::Update,
        req.api_version,
        req.subresource.unwrap_or(""),
    );
    updater.update(live, new, &mut managed.fields, SELF)?;
    strip_meta_fields(&mut managed.fields, SELF);
    // Only a write that took fields touches the manager's entry and its time.
    if let Some(vs) = managed.fields.remove(SELF) {
        let set = match managed.fields.get(&id) {
            Some(previous) => vs.set.union(&previous.set),
            None => vs.set,
        };
        managed.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version: vs.api_version,
                applied: vs.applied,
            },
        );
        managed.times.insert(id, Some(req.now.to_owned()));
    }
    managed::cap_update_managers(managed, MAX_UPDATE_MANAGERS);
    Ok(())
}

fn manager_name(manager: &str) -> &str {
    if manager.is_empty() {
        "unknown"
    } else {
        manager
    }
}

fn too_deep() -> SsaError {
    SsaError::Invalid(format!(
        "object nests deeper than the maximum depth of {MAX_DEPTH}"
    ))
}

fn update_error(e: UpdateError) -> SsaError {
    match e {
        UpdateError::Typed(TypedError::TooDeep) => too_deep(),
        UpdateError::Typed(TypedError::Invalid(msg)) => SsaError::Invalid(msg),
        UpdateError::Conflicts(list) => SsaError::Conflicts(
            list.into_iter()
                .map(|(id, version, path)| to_conflict(&id, &version, &path))
                .collect(),
        ),
    }
}

fn to_conflict(id: &str, set_version: &str, path: &Path) -> Conflict {
    let (manager, operation, api_version, subresource) = match parse_manager_id(id) {
        Some(m) => {
            let version = if m.api_version.is_empty() {
                set_version.to_owned()
            } else {
                m.api_version
            };
            (m.manager, m.operation, version, m.subresource)
        }
        None => (
            id.to_owned(),
            Operation::Update,
            set_version.to_owned(),
            String::new(),
        ),
    };
    Conflict {
        manager,
        operation,
        api_version,
        subresource: (!subresource.is_empty()).then_some(subresource),
        field: path_string(path),
    }
}

/// `GroupVersionKind.String()`: `apps/v1, Kind=Deployment`, `/v1, Kind=ConfigMap`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    format!("{group}/{version}, Kind={kind}")
}

/// The paths `stripmeta.go` never lets a manager own.
fn strip_set() -> Set {
    let mut set = Set::default();
    let field = |name: &str| PathElement::Field(name.to_owned());
    set.insert(&[field("apiVersion")]);
    set.insert(&[field("kind")]);
    set.insert(&[field("metadata")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[field("metadata"), field(name)]);
    }
    set
}

fn strip_meta_fields(managers: &mut updater::Managers, manager: &str) {
    if let Some(vs) = managers.get_mut(manager) {
        vs.set = vs.set.difference(&strip_set());
        if vs.set.is_empty() {
            managers.remove(manager);
        }
    }
}

/// The fields outside the written scope, which nobody owns through this request (the
/// strategy's reset fields upstream).
fn ignored_fields(req: &ApplyRequest, objects: &[&Value]) -> Set {
    let mut set = Set::default();
    match req.subresource {
        None if req.status_subresource => {
            set.insert(&[PathElement::Field("status".to_owned())]);
        }
        Some("status") => {
            set.insert(&[PathElement::Field("spec".to_owned())]);
            for obj in objects {
                for key in obj.as_object().into_iter().flat_map(Map::keys) {
                    if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
                        set.insert(&[PathElement::Field(key.clone())]);
                    }
                }
            }
        }
        _ => {}
    }
    set
}

/// The apply configuration without server-set metadata and without fields outside the
/// subresource's scope.
fn scope_config(req: &ApplyRequest, applied: &Value) -> Value {
    let mut config = applied.clone();
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "selfLink",
            "managedFields",
        ] {
            meta.remove(key);
        }
    }
    match req.subresource {
        None if req.status_subresource => {
            obj.remove("status");
        }
        Some("status") => {
            obj.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
            }
        }
        _ => {}
    }
    config
}

fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"))
}

fn set_managed_fields(obj: &mut Value, fields: Option<Value>) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match fields {
        Some(fields) => {
            let meta = root
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if !meta.is_object() {
                *meta = Value::Object(Map::new());
            }
            if let Some(m) = meta.as_object_mut() {
                m.insert("managedFields".to_owned(), fields);
            }
        }
        None => {
            if let Some(Value::Object(m)) = root.get_mut("metadata") {
                m.remove("managedFields");
            }
        }
    }
}

/// `isResetManagedFields`: `[]`, or `[{}]` (one entry with every field empty).
fn is_reset(fields: Option<&Value>) -> bool {
    let Some(Value::Array(entries)) = fields else {
        return false;
    };
    match entries.as_slice() {
        [] => true,
        [Value::Object(entry)] => [
            "manager",
            "operation",
            "apiVersion",
            "time",
            "fieldsType",
            "fieldsV1",
            "subresource",
        ]
        .iter()
        .all(|k| match entry.get(*k) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        }),
        _ => false,
    }
}

/// Pruning leaves `null` where it emptied a map or list; the apiserver's typed decoding
/// (built-ins) and null pruning (custom resources) drop those before storing, so they are
/// dropped here too. A `null` the configuration or the live object already had stays.
fn drop_pruned_nulls(value: &mut Value, live: Option<&Value>, applied: Option<&Value>) {
    match value {
        Value::Object(map) => {
            let keep_null = |k: &str| {
                live.and_then(|l| l.get(k)).is_some_and(Value::is_null)
                    || applied.and_then(|a| a.get(k)).is_some_and(Value::is_null)
            };
            map.retain(|k, v| !v.is_null() || keep_null(k));
            for (k, v) in map.iter_mut() {
                drop_pruned_nulls(
                    v,
                    live.and_then(|l| l.get(k)),
                    applied.and_then(|a| a.get(k)),
                );
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                drop_pruned_nulls(
                    item,
                    live.and_then(|l| l.get(i)),
                    applied.and_then(|a| a.get(i)),
                );
            }
        }
        _ => {}
    }
}

/// `lastAppliedUpdater`: when `kubectl` applies server-side to an object that still carries
/// client-side apply's annotation, the annotation is rewritten to this configuration (as
/// Go's JSON encoder writes it) so a later client-side apply computes the right patch.
fn refresh_last_applied(object: &mut Value, applied: &Value) {
    let has = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(annotations)) = config.pointer_mut("/metadata/annotations") {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let mut text = fieldsv1::go_json(&config);
    text.push('\n');
    if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
        annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(text));
    }
}
