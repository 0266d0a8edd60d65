//! The embedded cluster: object lifecycle rules on top of the [`Store`] and the [`Registry`].
//!
//! This is where kube-apiserver's registry strategies live in miniature: server-set metadata
//! (`uid`, `creationTimestamp`, `generation`, `resourceVersion`), optimistic concurrency, the
//! `status` subresource split, finalizers and `deletionTimestamp`, namespace existence and
//! termination, Secret `stringData`, schema validation of custom resources, and CRD
//! registration. The HTTP layer (`server.rs`) and the manifest loader call it; neither touches
//! the store directly for writes.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use serde_json::{Map, Value, json};

use super::crd;
use super::error::{ApiError, Cause, Result};
use super::meta::{self, finalizers, is_deleting, meta_mut, meta_str};
use super::resources::{Registry, ResourceDef};
use super::schema;
use super::ssa;
use super::store::{Change, Store, key_namespace};

/// How unknown fields in a request are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the server default).
    #[default]
    Warn,
    /// Refuse the request.
    Strict,
}

impl FieldValidation {
    /// Parse the query parameter value.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            "Strict" => Ok(Self::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: \"{other}\", expected one of: Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Options shared by every write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// The field manager recorded in `managedFields` (`fieldManager`, else derived from the
    /// client's User-Agent; empty for Portcullis's own writes, recorded as `portcullis`).
    pub manager: String,
}

impl WriteOptions {
    fn manager(&self) -> &str {
        if self.manager.is_empty() {
            "portcullis"
        } else {
            &self.manager
        }
    }
}

/// Schema access for server-side apply: CRD schemas are self-contained.
struct CrdSchema;

impl ssa::SchemaLookup for CrdSchema {
    fn child<'a>(&'a self, node: &'a Value, field: Option<&str>) -> Option<&'a Value> {
        match field {
            Some(name) => node
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| node.get("additionalProperties").filter(|v| v.is_object())),
            None => node.get("items").filter(|v| v.is_object()),
        }
    }
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        node
    }
}

impl ssa::SchemaLookup for super::builtin_schema::Definitions {
    fn child<'a>(&'a self, node: &'a Value, field: Option<&str>) -> Option<&'a Value> {
        super::builtin_schema::Definitions::child(self, node, field)
    }
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        super::builtin_schema::Definitions::resolve(self, node)
    }
}

/// The schema of a kind, for managedFields: the CRD schema or the upstream definition.
/// Shared, not copied: this runs on every write (managedFields bookkeeping).
fn kind_schema(def: &ResourceDef) -> Option<(&'static dyn ssa::SchemaLookup, Arc<Value>)> {
    if let Some(c) = &def.custom {
        return c
            .schema
            .clone()
            .map(|s| (&CrdSchema as &dyn ssa::SchemaLookup, s));
    }
    let defs = super::builtin_schema::definitions().ok()?;
    let name = defs.for_kind(&def.group, &def.version, &def.kind)?;
    Some((
        defs as &dyn ssa::SchemaLookup,
        Arc::new(json!({"$ref": name})),
    ))
}

fn ssa_error(def: &ResourceDef, name: &str, e: ssa::SsaError) -> ApiError {
    match e {
        ssa::SsaError::Conflicts(conflicts) => {
            let mut err = ApiError::conflict(&def.group, &def.plural, name);
            err.message = ssa::conflicts_message(&conflicts);
            err.causes = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.message(),
                    field: c.field.clone(),
                })
                .collect();
            err
        }
        ssa::SsaError::Invalid(m) => ApiError::bad_request(m),
    }
}

/// Record a non-apply write in `managedFields`.
fn record_update(
    def: &ResourceDef,
    name: &str,
    old: Option<&Value>,
    new: &mut Value,
    status: bool,
    opts: &WriteOptions,
) -> Result<()> {
    let Some((schema, root)) = kind_schema(def) else {
        return Ok(());
    };
    let now = meta::now();
    let api_version = def.api_version();
    let req = ssa::ApplyRequest {
        schema,
        root: &root,
        api_version: &api_version,
        manager: opts.manager(),
        force: false,
        subresource: status.then_some("status"),
        now: &now,
        status_subresource: def.status_subresource,
    };
    ssa::record_update(&req, old, new).map_err(|e| ssa_error(def, name, e))
}

/// `DeleteOptions` (body and query).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// What happens to objects this one owns (`propagationPolicy`).
    pub propagation: Propagation,
}

/// `propagationPolicy`: what happens to dependents (objects whose `ownerReferences` name the
/// deleted object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete the owner now and its dependents after it (the default).
    #[default]
    Background,
    /// Delete the dependents first; the owner waits with the `foregroundDeletion` finalizer.
    Foreground,
    /// Keep the dependents and remove their references to the owner.
    Orphan,
}

impl Propagation {
    /// Parse the `propagationPolicy` value.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            "Orphan" => Ok(Self::Orphan),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Background\", \"Foreground\", \"Orphan\""
            ))),
        }
    }
}

const FOREGROUND: &str = "foregroundDeletion";

/// Namespaces kube-apiserver never lets anyone delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A patch body.
#[derive(Debug, Clone)]
pub enum PatchBody {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(json_patch::Patch),
    /// Kubernetes strategic merge patch (built-in kinds only).
    Strategic(Value),
    /// Server-side apply (`application/apply-patch+yaml`): the applied configuration.
    Apply {
        /// The applied configuration.
        config: Value,
        /// `force`: take over fields other managers own.
        force: bool,
    },
}

/// A successful write.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Arc<Value>,
    /// `Warning` headers (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
    /// Whether the object was created.
    pub created: bool,
}

/// The embedded cluster state.
pub struct Cluster {
    /// Objects of every kind.
    pub store: Store,
    registry: RwLock<Registry>,
}

/// Where an object lives.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its resource.
    pub def: Arc<ResourceDef>,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Target {
    fn key(&self) -> String {
        self.def.key(&self.namespace, &self.name)
    }
}

fn obj_mut(v: &mut Value) -> Result<&mut Map<String, Value>> {
    v.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))
}

/// Top-level fields that are not part of the object's "spec" for generation tracking.
fn spec_view(v: &Value, ignore_status: bool) -> Map<String, Value> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !(matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
                        || (ignore_status && k.as_str() == "status"))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub use super::convert::served;

impl Cluster {
    /// A cluster over `store`, with the kinds of the CRDs already stored registered.
    pub fn new(store: Store) -> Self {
        let mut registry = Registry::builtin();
        let crds = registry
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .map(|d| store.scan(&d.key_prefix()))
            .unwrap_or_default();
        for (_, c) in crds {
            if let Err(e) = crd::register(&mut registry, &c) {
                tracing::warn!(crd = meta_str(&c, "name").unwrap_or(""), error = %e, "stored CRD could not be served");
            }
        }
        Self {
            store,
            registry: RwLock::new(registry),
        }
    }

    /// The registry of served kinds.
    pub fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Look up one resource.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.registry().get(group, version, plural)
    }

    /// Read one object.
    pub fn get(&self, t: &Target) -> Result<Arc<Value>> {
        self.store
            .get(&t.key())
            .map(|o| served(&t.def, &o))
            .ok_or_else(|| ApiError::not_found(&t.def.group, &t.def.plural, &t.name))
    }

    fn check_namespace(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        creating: bool,
    ) -> Result<()> {
        if !def.namespaced {
            return Ok(());
        }
        let key = format!("core/namespaces//{ns}");
        match self.store.get(&key) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if creating && is_deleting_namespace(&n) => Err(ApiError::forbidden(
                &def.group,
                &def.plural,
                name,
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Kind-specific normalisation and validation shared by create and update. Returns warnings.
    fn admit(
        &self,
        t: &Target,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> Result<Vec<String>> {
        let def = &t.def;
        // Go's omitempty: empty metadata maps and lists are not stored.
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                let empty = m.get(f).is_some_and(|v| {
                    v.is_null()
                        || v.as_object().is_some_and(|o| o.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty())
                });
                if empty {
                    m.remove(f);
                }
            }
        }
        let mut causes = Vec::new();
        if let Some(m) = meta::meta(obj) {
            for (field, validate_values) in [("labels", true), ("annotations", false)] {
                let Some(map) = m.get(field) else { continue };
                let Some(map) = map.as_object() else {
                    causes.push(Cause {
                        reason: "FieldValueTypeInvalid".into(),
                        message: "Invalid value: must be a map of strings".to_string(),
                        field: format!("metadata.{field}"),
                    });
                    continue;
                };
                for (k, v) in map {
                    if let Err(e) = meta::validate_qualified_name(k) {
                        causes.push(Cause {
                            reason: "FieldValueInvalid".into(),
                            message: format!("Invalid value: \"{k}\": {e}"),
                            field: format!("metadata.{field}"),
                        });
                    }
                    match v.as_str() {
                        Some(s) if validate_values => {
                            if let Err(e) = meta::validate_label_value(s) {
                                causes.push(Cause {
                                    reason: "FieldValueInvalid".into(),
                                    message: format!("Invalid value: \"{s}\": {e}"),
                                    field: format!("metadata.{field}"),
                                });
                            }
                        }
                        Some(_) => {}
                        None => causes.push(Cause {
                            reason: "FieldValueTypeInvalid".into(),
                            message: "Invalid value: must be a string".to_string(),
                            field: format!("metadata.{field}.{k}"),
                        }),
                    }
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&def.group, &def.kind, &t.name, causes));
        }
        let mut warnings = Vec::new();
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "secrets") => normalise_secret(t, obj)?,
            ("", "namespaces") => {
                let m = obj_mut(obj)?;
                let phase = old
                    .and_then(|o| o.pointer("/status/phase").cloned())
                    .unwrap_or_else(|| json!("Active"));
                m.insert("status".into(), json!({"phase": phase}));
                if !m.contains_key("spec") {
                    m.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
                }
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                crd::admit(obj, old, &self.registry(), &t.name)?;
            }
            _ => {}
        }
        if let Some(custom) = &def.custom
            && let Some(schema) = &custom.schema
        {
            let outcome = schema::validate(schema, obj, old);
            unknown_fields(&outcome.unknown_fields, opts, &mut warnings)?;
            if !outcome.errors.is_empty() {
                let causes = outcome
                    .errors
                    .iter()
                    .map(|e| Cause {
                        reason: e.kind.reason().into(),
                        message: e.body(),
                        field: e.field.clone(),
                    })
                    .collect();
                return Err(ApiError::invalid(&def.group, &def.kind, &t.name, causes));
            }
        }
        if def.custom.is_none()
            && let Ok(defs) = super::builtin_schema::definitions()
            && let Some(root) = defs
                .for_kind(&def.group, &def.version, &def.kind)
                .and_then(|n| defs.get(n))
        {
            if let Some(e) = defs.type_error(root, obj, &def.kind) {
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
                    kind = def.kind,
                    version = def.version
                )));
            }
            let unknown = defs.prune_unknown(root, obj);
            unknown_fields(&unknown, opts, &mut warnings)?;
        }
        Ok(warnings)
    }

    /// Create an object (`POST` to a collection).
    pub async fn create(
        &self,
        def: Arc<ResourceDef>,
        url_ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        self.create_inner(def, url_ns, body, opts, true).await
    }

    async fn create_inner(
        &self,
        def: Arc<ResourceDef>,
        url_ns: &str,
        mut body: Value,
        opts: &WriteOptions,
        record: bool,
    ) -> Result<Written> {
        check_type(&def, &mut body)?;
        let m = meta_mut(&mut body)
            .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match m.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    name = format!("{g}{}", meta::random_suffix());
                    m.insert("name".into(), Value::String(name.clone()));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &def.group,
                        &def.kind,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ));
                }
            }
        }
        let namespace = resolve_namespace(&def, m, url_ns)?;
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if let Err(msg) = meta::validate_name(&name, def.name_rule) {
            return Err(ApiError::invalid_field(
                &def.group,
                &def.kind,
                &name,
                "metadata.name",
                format!("Invalid value: \"{name}\": {msg}"),
            ));
        }
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "uid",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("creationTimestamp".into(), Value::String(meta::now()));
        m.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        if def.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        let t = Target {
            def: def.clone(),
            namespace,
            name,
        };
        self.check_namespace(&def, &t.namespace, &t.name, true)?;
        // Create cannot set status where a status subresource exists (admit fills in the
        // server-owned status of namespaces and CRDs).
        if def.status_subresource {
            obj_mut(&mut body)?.remove("status");
        }
        let warnings = self.admit(&t, &mut body, None, opts)?;
        if record {
            record_update(&def, &t.name, None, &mut body, false, opts)?;
        }
        set_storage_version(&def, &mut body);
        let commit = self.store.mutate(&t.key(), opts.dry_run, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(&def.group, &def.plural, &t.name));
            }
            Ok(Change::Put(body))
        })?;
        let commit = commit.durable().await?;
        let object = commit
            .object
            .ok_or_else(|| ApiError::internal("create stored nothing"))?;
        if !opts.dry_run {
            self.after_write(&def, Some(&object));
        }
        Ok(Written {
            object: served(&def, &object),
            warnings,
            created: true,
        })
    }

    /// Replace an object (`PUT`), or its status with `status = true`.
    pub async fn update(
        &self,
        t: &Target,
        body: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written> {
        self.replace(t, status, opts, true, |_| Ok(body)).await
    }

    /// Server-side apply: merge `config` into the object (creating it when missing), tracking
    /// field ownership per manager; conflicts with other managers are 409 unless `force`.
    pub async fn apply(
        &self,
        t: &Target,
        config: &Value,
        force: bool,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let def = t.def.clone();
        let mut config = config.clone();
        check_type(&def, &mut config).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid object type: {}, Kind={}",
                config
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                config.get("kind").and_then(Value::as_str).unwrap_or("")
            ))
        })?;
        if self.store.get(&t.key()).is_none() {
            if status {
                return Err(ApiError::not_found(&def.group, &def.plural, &t.name));
            }
            let created = self.apply_one(&def, &t.name, None, &config, force, false, opts)?;
            return match self
                .create_inner(def.clone(), &t.namespace, created, opts, false)
                .await
            {
                // Someone created it meanwhile: apply onto theirs.
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {
                    self.apply_existing(t, &config, force, status, opts).await
                }
                other => other,
            };
        }
        self.apply_existing(t, &config, force, status, opts).await
    }

    async fn apply_existing(
        &self,
        t: &Target,
        config: &Value,
        force: bool,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let def = t.def.clone();
        self.replace(t, status, opts, false, |cur| {
            if let Some(rv) = meta_str(config, "resourceVersion")
                && !rv.is_empty()
                && Some(rv) != meta_str(cur, "resourceVersion")
            {
                return Err(ApiError::conflict(&def.group, &def.plural, &t.name));
            }
            let live = served(&def, cur);
            self.apply_one(&def, &t.name, Some(&live), config, force, status, opts)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_one(
        &self,
        def: &ResourceDef,
        name: &str,
        live: Option<&Value>,
        config: &Value,
        force: bool,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let (schema, root) = kind_schema(def).ok_or_else(|| {
            ApiError::unsupported_media(
                "application/apply-patch+yaml",
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                ],
            )
        })?;
        let now = meta::now();
        let api_version = def.api_version();
        let req = ssa::ApplyRequest {
            schema,
            root: &root,
            api_version: &api_version,
            manager: opts.manager(),
            force,
            subresource: status.then_some("status"),
            now: &now,
            status_subresource: def.status_subresource,
        };
        ssa::apply(&req, live, config).map_err(|e| ssa_error(def, name, e))
    }

    /// Patch an object or its status.
    pub async fn patch(
        &self,
        t: &Target,
        patch: &PatchBody,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Written> {
        if let PatchBody::Apply { config, force } = patch {
            return self.apply(t, config, *force, status, opts).await;
        }
        let def = t.def.clone();
        self.replace(t, status, opts, true, |cur| {
            let mut doc = (*served(&def, cur)).clone();
            match patch {
                PatchBody::Merge(p) => {
                    if !p.is_object() {
                        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                    }
                    json_patch::merge(&mut doc, p);
                }
                // No details: kubectl then prints "The request is invalid: <why>".
                PatchBody::Json(p) => json_patch::patch(&mut doc, p).map_err(|e| {
                    let mut err = ApiError::invalid(&def.group, &def.kind, &t.name, vec![]);
                    err.details = None;
                    err.message = e.to_string();
                    err
                })?,
                PatchBody::Strategic(p) => doc = strategic_merge(&def, &doc, p)?,
                PatchBody::Apply { .. } => {
                    return Err(ApiError::internal("apply reached the patch path"));
                }
            }
            Ok(doc)
        })
        .await
    }

    /// The shared read-modify-write of update and patch, atomic under the store lock.
    async fn replace<F>(
        &self,
        t: &Target,
        status: bool,
        opts: &WriteOptions,
        record: bool,
        make: F,
    ) -> Result<Written>
    where
        F: FnOnce(&Arc<Value>) -> Result<Value>,
    {
        let def = t.def.clone();
        let mut warnings = Vec::new();
        let commit = self.store.mutate(&t.key(), opts.dry_run, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name))?;
            let mut body = make(cur)?;
            check_type(&def, &mut body)?;
            let m = meta_mut(&mut body)
                .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
            let body_name = m.get("name").and_then(Value::as_str).unwrap_or("");
            if body_name.is_empty() {
                m.insert("name".into(), Value::String(t.name.clone()));
            } else if body_name != t.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({})",
                    t.name
                )));
            }
            resolve_namespace(&def, m, &t.namespace)?;
            if let Some(rv) = m.get("resourceVersion").and_then(Value::as_str)
                && !rv.is_empty()
                && Some(rv) != meta_str(cur, "resourceVersion")
            {
                return Err(ApiError::conflict(&def.group, &def.plural, &t.name));
            }
            let cur_meta = meta::meta(cur).cloned().unwrap_or_default();
            let mut new = if status {
                // Through /status only the status stanza changes.
                let mut n = (**cur).clone();
                let st = body.get("status").cloned();
                if let Some(o) = n.as_object_mut() {
                    match st {
                        Some(s) => o.insert("status".into(), s),
                        None => o.remove("status"),
                    };
                }
                n
            } else {
                let mut n = body;
                if def.status_subresource
                    && let Some(o) = n.as_object_mut()
                {
                    match cur.get("status") {
                        Some(s) => o.insert("status".into(), s.clone()),
                        None => o.remove("status"),
                    };
                }
                n
            };
            let nm = meta_mut(&mut new)
                .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match cur_meta.get(f) {
                    Some(v) => nm.insert(f.into(), v.clone()),
                    None => nm.remove(f),
                };
            }
            nm.remove("resourceVersion");
            if is_deleting(cur) {
                let old: std::collections::BTreeSet<String> = finalizers(cur).into_iter().collect();
                let added: Vec<String> = finalizers(&new)
                    .into_iter()
                    .filter(|f| !old.contains(f))
                    .collect();
                if !added.is_empty() {
                    return Err(ApiError::invalid(
                        &def.group,
                        &def.kind,
                        &t.name,
                        vec![Cause {
                            reason: "FieldValueForbidden".into(),
                            message: format!(
                                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                            ),
                            field: "metadata.finalizers".into(),
                        }],
                    ));
                }
            }
            warnings = self.admit(t, &mut new, Some(cur), opts)?;
            if record {
                record_update(&def, &t.name, Some(&served(&def, cur)), &mut new, status, opts)?;
            }
            set_storage_version(&def, &mut new);
            if def.generation && spec_view(cur, def.status_subresource) != spec_view(&new, def.status_subresource) {
                let g = cur.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                if let Some(nm) = meta_mut(&mut new) {
                    nm.insert("generation".into(), json!(g + 1));
                }
            }
            let mut same = new.clone();
            if let Some(m) = meta_mut(&mut same) {
                m.insert(
                    "resourceVersion".into(),
                    cur.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
                );
            }
            if same == **cur {
                return Ok(Change::Unchanged);
            }
            if is_deleting(&new) && finalizers(&new).is_empty() {
                return Ok(Change::Delete);
            }
            Ok(Change::Put(new))
        })?;
        let commit = commit.durable().await?;
        let object = match (&commit.object, &commit.prev) {
            (Some(o), _) => o.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => return Err(ApiError::not_found(&def.group, &def.plural, &t.name)),
        };
        if !opts.dry_run && commit.event.is_some() {
            self.after_write(&def, commit.object.as_ref());
            if commit.object.is_none() {
                self.after_delete(t, &object).await;
            }
        }
        Ok(Written {
            object: served(&def, &object),
            warnings,
            created: false,
        })
    }

    /// Delete an object: immediately, or by setting `deletionTimestamp` while finalizers remain.
    pub async fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<Arc<Value>> {
        let def = t.def.clone();
        let is_namespace = def.group.is_empty() && def.plural == "namespaces";
        if is_namespace && PROTECTED_NAMESPACES.contains(&t.name.as_str()) {
            return Err(ApiError::forbidden(
                "",
                "namespaces",
                &t.name,
                "this namespace may not be deleted",
            ));
        }
        let uid = self
            .store
            .get(&t.key())
            .and_then(|o| meta_str(&o, "uid").map(String::from))
            .unwrap_or_default();
        let dependents = if uid.is_empty() {
            Vec::new()
        } else {
            self.dependents(&uid)
        };
        if opts.propagation == Propagation::Orphan && !opts.dry_run {
            self.orphan(&uid, &dependents).await?;
        }
        let foreground = opts.propagation == Propagation::Foreground && !dependents.is_empty();
        let commit = self.store.mutate(&t.key(), opts.dry_run, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name))?;
            if let Some(uid) = &opts.uid
                && Some(uid.as_str()) != meta_str(cur, "uid")
            {
                return Err(ApiError::conflict(&def.group, &def.plural, &t.name));
            }
            if let Some(rv) = &opts.resource_version
                && Some(rv.as_str()) != meta_str(cur, "resourceVersion")
            {
                return Err(ApiError::conflict(&def.group, &def.plural, &t.name));
            }
            if is_deleting(cur) {
                return Ok(Change::Unchanged);
            }
            if finalizers(cur).is_empty() && !is_namespace && !foreground {
                return Ok(Change::Delete);
            }
            let mut n = (**cur).clone();
            if let Some(m) = meta_mut(&mut n) {
                m.insert("deletionTimestamp".into(), Value::String(meta::now()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                if foreground {
                    let mut f = finalizers(cur);
                    f.push(FOREGROUND.into());
                    m.insert("finalizers".into(), json!(f));
                }
            }
            if is_namespace && let Some(o) = n.as_object_mut() {
                o.insert("status".into(), json!({"phase": "Terminating"}));
            }
            Ok(Change::Put(n))
        })?;
        let commit = commit.durable().await?;
        let object = commit
            .object
            .clone()
            .or(commit.prev.clone())
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &t.name))?;
        if !opts.dry_run {
            if commit.object.is_none() && commit.event.is_some() {
                self.after_write(&def, None);
                self.after_delete(t, &object).await;
            } else if is_namespace {
                Box::pin(self.terminate_namespace(&t.name)).await;
            } else if foreground {
                self.delete_dependents(&uid, Propagation::Foreground).await;
                self.release_foreground(&uid).await;
            }
        }
        Ok(served(&def, &object))
    }

    /// Objects whose `ownerReferences` name `uid`.
    fn dependents(&self, uid: &str) -> Vec<Arc<Value>> {
        self.store.dependents(uid)
    }

    fn target_of(&self, obj: &Value) -> Option<Target> {
        let av = obj.get("apiVersion").and_then(Value::as_str)?;
        let kind = obj.get("kind").and_then(Value::as_str)?;
        let def = self.registry().by_kind(av, kind)?;
        Some(Target {
            namespace: if def.namespaced {
                meta_str(obj, "namespace").unwrap_or("").to_string()
            } else {
                String::new()
            },
            name: meta_str(obj, "name").unwrap_or("").to_string(),
            def,
        })
    }

    /// Remove the references to `uid` from its dependents (`propagationPolicy: Orphan`).
    async fn orphan(&self, uid: &str, dependents: &[Arc<Value>]) -> Result<()> {
        for d in dependents {
            let Some(t) = self.target_of(d) else { continue };
            let refs: Vec<Value> = d
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let patch = json!({"metadata": {"ownerReferences": if refs.is_empty() { Value::Null } else { Value::Array(refs) }}});
            match self
                .patch(
                    &t,
                    &PatchBody::Merge(patch),
                    false,
                    &WriteOptions::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Delete every dependent of `uid` (the garbage collector's cascade).
    async fn delete_dependents(&self, uid: &str, propagation: Propagation) {
        for d in self.dependents(uid) {
            let Some(t) = self.target_of(&d) else {
                continue;
            };
            let opts = DeleteOptions {
                propagation,
                ..DeleteOptions::default()
            };
            if let Err(e) = Box::pin(self.delete(&t, &opts)).await
                && e.code != 404
            {
                tracing::warn!(owner = uid, dependent = %t.key(), error = %e, "garbage collection failed");
            }
        }
    }

    /// Finish a foreground deletion once the owner has no dependents left.
    async fn release_foreground(&self, uid: &str) {
        if uid.is_empty() || !self.dependents(uid).is_empty() {
            return;
        }
        let Some(owner) = self.store.by_uid(uid) else {
            return;
        };
        if !is_deleting(&owner) || !finalizers(&owner).iter().any(|f| f == FOREGROUND) {
            return;
        }
        let Some(t) = self.target_of(&owner) else {
            return;
        };
        let rest: Vec<String> = finalizers(&owner)
            .into_iter()
            .filter(|f| f != FOREGROUND)
            .collect();
        let patch = json!({"metadata": {"finalizers": rest}});
        if let Err(e) = Box::pin(self.patch(
            &t,
            &PatchBody::Merge(patch),
            false,
            &WriteOptions::default(),
        ))
        .await
            && e.code != 404
        {
            tracing::warn!(owner = uid, error = %e, "finishing a foreground deletion failed");
        }
    }

    /// Registry upkeep after a CRD write or delete.
    fn after_write(&self, def: &ResourceDef, object: Option<&Arc<Value>>) {
        if def.group != "apiextensions.k8s.io" || def.plural != "customresourcedefinitions" {
            return;
        }
        let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = object
            && let Err(e) = crd::register(&mut reg, o)
        {
            tracing::warn!(error = %e, "CRD could not be served");
        }
    }

    async fn after_delete(&self, t: &Target, last: &Value) {
        let def = &t.def;
        if def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions" {
            let prefix = crd::storage_prefix(last);
            {
                let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
                reg.remove_crd(&t.name);
            }
            if let Some(prefix) = prefix {
                for (key, _) in self.store.scan(&prefix) {
                    if let Ok(c) = self.store.mutate(&key, false, |_| Ok(Change::Delete)) {
                        let _ = c.durable().await;
                    }
                }
            }
        }
        // The garbage collector: dependents of a deleted owner go too, and an owner waiting in
        // foreground deletion goes once its last dependent is gone.
        if let Some(uid) = meta_str(last, "uid") {
            Box::pin(self.delete_dependents(uid, Propagation::Background)).await;
        }
        for owner in owner_uids(last) {
            Box::pin(self.release_foreground(&owner)).await;
        }
        if def.namespaced {
            self.finish_namespace_if_empty(&t.namespace).await;
        }
    }

    /// Delete everything in a terminating namespace, then the namespace once it is empty.
    async fn terminate_namespace(&self, ns: &str) {
        let registry = self.registry().clone();
        for (key, obj) in self.store.scan("") {
            if key_namespace(&key) != Some(ns) {
                continue;
            }
            let (Some(av), Some(kind)) = (
                obj.get("apiVersion").and_then(Value::as_str),
                obj.get("kind").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Some(def) = registry.by_kind(av, kind) else {
                continue;
            };
            let t = Target {
                def,
                namespace: ns.to_string(),
                name: meta_str(&obj, "name").unwrap_or("").to_string(),
            };
            if let Err(e) = Box::pin(self.delete(&t, &DeleteOptions::default())).await
                && e.code != 404
            {
                tracing::warn!(namespace = ns, key, error = %e, "deleting namespace content failed");
            }
        }
        self.finish_namespace_if_empty(ns).await;
    }

    async fn finish_namespace_if_empty(&self, ns: &str) {
        let key = format!("core/namespaces//{ns}");
        let Some(n) = self.store.get(&key) else {
            return;
        };
        if !is_deleting_namespace(&n) || !finalizers(&n).is_empty() {
            return;
        }
        if self.store.namespace_len(ns) > 0 {
            return;
        }
        if let Ok(c) = self.store.mutate(&key, false, |cur| {
            Ok(if cur.is_some_and(|c| is_deleting_namespace(c)) {
                Change::Delete
            } else {
                Change::Unchanged
            })
        }) {
            let _ = c.durable().await;
        }
    }
}

fn is_deleting_namespace(n: &Value) -> bool {
    is_deleting(n) || n.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
}

/// Unknown (pruned) fields under `fieldValidation`: Strict refuses them (400, before any other
/// validation error, as kube-apiserver does), Warn answers with `Warning` headers, Ignore drops them.
fn unknown_fields(
    unknown: &[String],
    opts: &WriteOptions,
    warnings: &mut Vec<String>,
) -> Result<()> {
    match opts.field_validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let list = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ApiError::bad_request(format!(
                "strict decoding error: {list}"
            )))
        }
        FieldValidation::Warn => {
            warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Apply a strategic merge patch to a built-in object, with the list-merge metadata of the
/// upstream OpenAPI definitions.
fn strategic_merge(def: &ResourceDef, doc: &Value, patch: &Value) -> Result<Value> {
    let media = "application/strategic-merge-patch+json";
    let defs = super::builtin_schema::definitions()
        .map_err(|e| ApiError::internal(format!("built-in schemas unavailable: {e}")))?;
    let root = defs
        .for_kind(&def.group, &def.version, &def.kind)
        .and_then(|n| defs.get(n))
        .filter(|_| def.custom.is_none())
        .ok_or_else(|| {
            ApiError::unsupported_media(
                media,
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ],
            )
        })?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    }
    super::smp::apply(defs, root, doc, patch).map_err(|e| match e.status_code() {
        400 => ApiError::bad_request(e.to_string()),
        422 => {
            let mut err = ApiError::invalid(&def.group, &def.kind, "", vec![]);
            err.message = e.to_string();
            err
        }
        _ => ApiError::internal(e.to_string()),
    })
}

/// Check (and fill in) `apiVersion` and `kind` of a request body.
fn check_type(def: &ResourceDef, body: &mut Value) -> Result<()> {
    let m = obj_mut(body)?;
    let want_av = def.api_version();
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), Value::String(want_av));
        }
        Some(av) if av == want_av => {}
        Some(av) => {
            // Another served version of the same group is fine (stored at the storage version).
            let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            if group != def.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), Value::String(def.kind.clone()));
        }
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
    }
    Ok(())
}

fn set_storage_version(def: &ResourceDef, obj: &mut Value) {
    super::convert::to_storage(def, obj);
}

fn resolve_namespace(
    def: &ResourceDef,
    m: &mut Map<String, Value>,
    url_ns: &str,
) -> Result<String> {
    if !def.namespaced {
        m.remove("namespace");
        return Ok(String::new());
    }
    let body_ns = m
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ns = match (body_ns.as_str(), url_ns) {
        ("", "") => {
            return Err(ApiError::bad_request(
                "the namespace of the object is missing",
            ));
        }
        ("", u) => u.to_string(),
        (b, "") => b.to_string(),
        (b, u) if b == u => b.to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    };
    m.insert("namespace".into(), Value::String(ns.clone()));
    Ok(ns)
}

/// Secrets: fold `stringData` into `data`, default the type, check base64.
fn normalise_secret(t: &Target, obj: &mut Value) -> Result<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let m = obj_mut(obj)?;
    if let Some(sd) = m.remove("stringData") {
        let sd = sd.as_object().cloned().unwrap_or_default();
        let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        if let Some(d) = data.as_object_mut() {
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default();
                d.insert(k, Value::String(b64.encode(s)));
            }
        }
    }
    if let Some(d) = m.get("data").and_then(Value::as_object) {
        for (k, v) in d {
            let ok = v.as_str().is_some_and(|s| b64.decode(s).is_ok());
            if !ok {
                // Never echo the value: it is secret material.
                return Err(ApiError::invalid_field(
                    "",
                    "Secret",
                    &t.name,
                    &format!("data[{k}]"),
                    "Invalid value: <secret contents redacted>: must be base64-encoded",
                ));
            }
        }
    }
    if m.get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert("type".into(), json!("Opaque"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devapi::store::StoreOptions;

    async fn cluster() -> Cluster {
        let c = Cluster::new(Store::in_memory(StoreOptions::default()));
        let ns = c.resolve("", "v1", "namespaces").expect("namespaces");
        c.create(
            ns,
            "",
            json!({"metadata": {"name": "default"}}),
            &WriteOptions::default(),
        )
        .await
        .expect("namespace");
        c
    }

    fn cm_target(c: &Cluster, name: &str) -> Target {
        Target {
            def: c.resolve("", "v1", "configmaps").expect("cm"),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn create_sets_server_fields_and_refuses_duplicates() {
        let c = cluster().await;
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        let w = c
            .create(
                def.clone(),
                "default",
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                &WriteOptions::default(),
            )
            .await
            .expect("create");
        assert!(w.object.pointer("/metadata/uid").is_some());
        assert!(w.object.pointer("/metadata/creationTimestamp").is_some());
        assert_eq!(w.object["kind"], "ConfigMap");
        let err = c
            .create(
                def,
                "default",
                json!({"metadata": {"name": "a"}}),
                &WriteOptions::default(),
            )
            .await
            .expect_err("duplicate");
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "AlreadyExists");
    }

    #[tokio::test]
    async fn create_in_missing_namespace_is_not_found() {
        let c = cluster().await;
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        let err = c
            .create(
                def,
                "nope",
                json!({"metadata": {"name": "a"}}),
                &WriteOptions::default(),
            )
            .await
            .expect_err("missing ns");
        assert_eq!(err.code, 404);
        assert_eq!(err.message, "namespaces \"nope\" not found");
    }

    #[tokio::test]
    async fn namespace_mismatch_and_bad_names_are_refused() {
        let c = cluster().await;
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        let err = c
            .create(
                def.clone(),
                "default",
                json!({"metadata": {"name": "a", "namespace": "other"}}),
                &WriteOptions::default(),
            )
            .await
            .expect_err("mismatch");
        assert_eq!(err.code, 400);
        let err = c
            .create(
                def,
                "default",
                json!({"metadata": {"name": "Not_Valid"}}),
                &WriteOptions::default(),
            )
            .await
            .expect_err("name");
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .contains("metadata.name: Invalid value: \"Not_Valid\""),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn stale_resource_version_conflicts() {
        let c = cluster().await;
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        let w = c
            .create(
                def,
                "default",
                json!({"metadata": {"name": "a"}}),
                &WriteOptions::default(),
            )
            .await
            .expect("create");
        let mut stale = (*w.object).clone();
        stale["data"] = json!({"x": "1"});
        let t = cm_target(&c, "a");
        c.update(&t, stale.clone(), false, &WriteOptions::default())
            .await
            .expect("first update");
        stale["data"] = json!({"x": "2"});
        let err = c
            .update(&t, stale, false, &WriteOptions::default())
            .await
            .expect_err("stale");
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "Conflict");
    }

    #[tokio::test]
    async fn finalizers_hold_deletion_until_removed() {
        let c = cluster().await;
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        c.create(
            def,
            "default",
            json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
            &WriteOptions::default(),
        )
        .await
        .expect("create");
        let t = cm_target(&c, "f");
        let o = c
            .delete(&t, &DeleteOptions::default())
            .await
            .expect("delete");
        assert!(o.pointer("/metadata/deletionTimestamp").is_some());
        assert!(c.get(&t).is_ok());
        let err = c
            .patch(
                &t,
                &PatchBody::Merge(
                    json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}),
                ),
                false,
                &WriteOptions::default(),
            )
            .await
            .expect_err("new finalizer");
        assert_eq!(err.code, 422);
        c.patch(
            &t,
            &PatchBody::Merge(json!({"metadata": {"finalizers": null}})),
            false,
            &WriteOptions::default(),
        )
        .await
        .expect("remove finalizer");
        assert_eq!(c.get(&t).expect_err("gone").code, 404);
    }

    #[tokio::test]
    async fn unchanged_update_keeps_version_and_generation_tracks_spec() {
        let c = cluster().await;
        let def = c.resolve("apps", "v1", "deployments").expect("deploy");
        let w = c
            .create(
                def.clone(),
                "default",
                json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}}),
                &WriteOptions::default(),
            )
            .await
            .expect("create");
        let t = Target {
            def,
            namespace: "default".into(),
            name: "d".into(),
        };
        let same = c
            .patch(
                &t,
                &PatchBody::Merge(json!({"spec": {"replicas": 1}})),
                false,
                &WriteOptions::default(),
            )
            .await
            .expect("noop");
        assert_eq!(
            same.object["metadata"]["resourceVersion"],
            w.object["metadata"]["resourceVersion"]
        );
        let l = c
            .patch(
                &t,
                &PatchBody::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
                false,
                &WriteOptions::default(),
            )
            .await
            .expect("label");
        assert_eq!(l.object["metadata"]["generation"], 1);
        let s = c
            .patch(
                &t,
                &PatchBody::Merge(json!({"spec": {"replicas": 2}})),
                false,
                &WriteOptions::default(),
            )
            .await
            .expect("spec");
        assert_eq!(s.object["metadata"]["generation"], 2);
        let st = c
            .patch(
                &t,
                &PatchBody::Merge(json!({"status": {"replicas": 2}})),
                true,
                &WriteOptions::default(),
            )
            .await
            .expect("status");
        assert_eq!(st.object["metadata"]["generation"], 2);
        assert_eq!(st.object["status"]["replicas"], 2);
        // Status written through the main resource is ignored.
        let m = c
            .patch(
                &t,
                &PatchBody::Merge(json!({"status": {"replicas": 9}})),
                false,
                &WriteOptions::default(),
            )
            .await
            .expect("main");
        assert_eq!(m.object["status"]["replicas"], 2);
    }

    #[tokio::test]
    async fn secrets_fold_string_data_and_refuse_bad_base64_without_echo() {
        let c = cluster().await;
        let def = c.resolve("", "v1", "secrets").expect("secrets");
        let w = c
            .create(
                def.clone(),
                "default",
                json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
                &WriteOptions::default(),
            )
            .await
            .expect("create");
        assert_eq!(w.object["data"]["k"], "dg==");
        assert_eq!(w.object["type"], "Opaque");
        assert!(w.object.get("stringData").is_none());
        let err = c
            .create(
                def,
                "default",
                json!({"metadata": {"name": "t"}, "data": {"k": "not base64 hunter2!"}}),
                &WriteOptions::default(),
            )
            .await
            .expect_err("bad base64");
        assert_eq!(err.code, 422);
        assert!(!err.message.contains("hunter2"));
    }

    #[tokio::test]
    async fn namespace_deletion_terminates_and_removes_content() {
        let c = cluster().await;
        let ns = c.resolve("", "v1", "namespaces").expect("ns");
        c.create(
            ns.clone(),
            "",
            json!({"metadata": {"name": "gone"}}),
            &WriteOptions::default(),
        )
        .await
        .expect("ns");
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        c.create(
            def.clone(),
            "gone",
            json!({"metadata": {"name": "a"}}),
            &WriteOptions::default(),
        )
        .await
        .expect("cm");
        c.create(
            def.clone(),
            "gone",
            json!({"metadata": {"name": "held", "finalizers": ["x.io/y"]}}),
            &WriteOptions::default(),
        )
        .await
        .expect("cm");
        let nst = Target {
            def: ns,
            namespace: String::new(),
            name: "gone".into(),
        };
        let o = c
            .delete(&nst, &DeleteOptions::default())
            .await
            .expect("delete ns");
        assert_eq!(o["status"]["phase"], "Terminating");
        let err = c
            .create(
                def.clone(),
                "gone",
                json!({"metadata": {"name": "b"}}),
                &WriteOptions::default(),
            )
            .await
            .expect_err("terminating");
        assert_eq!(err.code, 403);
        assert!(c.get(&nst).is_ok(), "held object keeps the namespace");
        let held = Target {
            def,
            namespace: "gone".into(),
            name: "held".into(),
        };
        c.patch(
            &held,
            &PatchBody::Merge(json!({"metadata": {"finalizers": []}})),
            false,
            &WriteOptions::default(),
        )
        .await
        .expect("release");
        assert_eq!(c.get(&nst).expect_err("namespace gone").code, 404);
    }

    async fn owner_and_child(c: &Cluster, child_finalizer: bool) -> (Target, Target) {
        let def = c.resolve("", "v1", "configmaps").expect("cm");
        let owner = c
            .create(
                def.clone(),
                "default",
                json!({"metadata": {"name": "owner"}}),
                &WriteOptions::default(),
            )
            .await
            .expect("owner");
        let uid = owner.object["metadata"]["uid"].clone();
        let mut meta = json!({"name": "child", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]});
        if child_finalizer {
            meta["finalizers"] = json!(["example.com/hold"]);
        }
        c.create(
            def.clone(),
            "default",
            json!({"metadata": meta}),
            &WriteOptions::default(),
        )
        .await
        .expect("child");
        (cm_target(c, "owner"), cm_target(c, "child"))
    }

    #[tokio::test]
    async fn background_deletion_collects_dependents() {
        let c = cluster().await;
        let (owner, child) = owner_and_child(&c, false).await;
        c.delete(&owner, &DeleteOptions::default())
            .await
            .expect("delete");
        assert_eq!(c.get(&owner).expect_err("owner gone").code, 404);
        assert_eq!(c.get(&child).expect_err("child collected").code, 404);
    }

    #[tokio::test]
    async fn foreground_deletion_waits_for_dependents() {
        let c = cluster().await;
        let (owner, child) = owner_and_child(&c, true).await;
        let opts = DeleteOptions {
            propagation: Propagation::Foreground,
            ..DeleteOptions::default()
        };
        let o = c.delete(&owner, &opts).await.expect("delete");
        assert!(finalizers(&o).contains(&"foregroundDeletion".to_string()));
        assert!(c.get(&owner).is_ok(), "owner waits for its held dependent");
        assert!(is_deleting(&c.get(&child).expect("child still held")));
        c.patch(
            &child,
            &PatchBody::Merge(json!({"metadata": {"finalizers": null}})),
            false,
            &WriteOptions::default(),
        )
        .await
        .expect("release child");
        assert_eq!(c.get(&child).expect_err("child gone").code, 404);
        assert_eq!(c.get(&owner).expect_err("owner follows").code, 404);
    }

    #[tokio::test]
    async fn orphan_deletion_keeps_dependents_without_the_reference() {
        let c = cluster().await;
        let (owner, child) = owner_and_child(&c, false).await;
        let opts = DeleteOptions {
            propagation: Propagation::Orphan,
            ..DeleteOptions::default()
        };
        c.delete(&owner, &opts).await.expect("delete");
        assert_eq!(c.get(&owner).expect_err("owner gone").code, 404);
        let kid = c.get(&child).expect("child kept");
        assert!(kid.pointer("/metadata/ownerReferences").is_none());
    }
}
