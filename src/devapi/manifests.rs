//! `portcullis dev --manifests DIR`: apply every YAML/JSON manifest under the directories at
//! start and whenever a file changes, and delete what a removed file (or document) had created.
//!
//! Objects applied from a file carry the label [`MANAGED_LABEL`] and the annotation
//! [`FILE_ANNOTATION`] (the file's path), so pruning survives restarts and never touches objects
//! created any other way. A broken file is reported and skipped; its objects are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::cluster::{Cluster, DeleteOptions, Target, WriteOptions};
use super::error::{ApiError, Result};
use super::meta::meta_str;

/// Label on every object applied from a manifest file.
pub const MANAGED_LABEL: &str = "portcullis.dev/dev-manifest";
/// Annotation naming the file an object came from.
pub const FILE_ANNOTATION: &str = "portcullis.dev/manifest-file";
/// The field manager of manifest files: what a file no longer declares is removed by
/// server-side apply, fields other managers own are left alone.
pub const FIELD_MANAGER: &str = "portcullis-dev-manifests";

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist.
    Created,
    /// It changed.
    Configured,
    /// It was already as declared.
    Unchanged,
}

impl Applied {
    /// kubectl's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// Where an object is: `kind`, namespace, name (for messages and pruning).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace, empty when cluster-scoped.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

fn target_of(cluster: &Cluster, doc: &Value, default_ns: &str) -> Result<Target> {
    let av = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request("apiVersion and kind are required"));
    }
    let def = cluster.registry().by_kind(av, kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "no matches for kind \"{kind}\" in version \"{av}\""
        ))
    })?;
    let name = meta_str(doc, "name").unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("metadata.name is required"));
    }
    let namespace = if def.namespaced {
        meta_str(doc, "namespace")
            .filter(|s| !s.is_empty())
            .unwrap_or(default_ns)
            .to_string()
    } else {
        String::new()
    };
    Ok(Target {
        def,
        namespace,
        name,
    })
}

/// Create the object, or merge the declared fields into the existing one.
pub async fn apply(
    cluster: &Cluster,
    mut doc: Value,
    default_ns: &str,
) -> Result<(ObjRef, Applied)> {
    let t = target_of(cluster, &doc, default_ns)?;
    let r = ObjRef {
        api_version: t.def.api_version(),
        kind: t.def.kind.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    };
    if let Some(m) = doc.as_object_mut() {
        m.remove("status");
    }
    let opts = WriteOptions {
        manager: FIELD_MANAGER.into(),
        ..WriteOptions::default()
    };
    let before = cluster.get(&t).ok();
    // A manifest file is the truth for what it declares: take those fields over.
    let after = cluster.apply(&t, &doc, true, false, &opts).await?;
    match before {
        None => Ok((r, Applied::Created)),
        Some(before) => {
            let changed = after.object.pointer("/metadata/resourceVersion")
                != before.pointer("/metadata/resourceVersion");
            Ok((
                r,
                if changed {
                    Applied::Configured
                } else {
                    Applied::Unchanged
                },
            ))
        }
    }
}

fn manifest_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_file() {
            out.push(p.to_path_buf());
            return;
        }
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok();
            (
                f.clone(),
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect()
}

/// Order documents so namespaces and CRDs exist before what uses them.
fn rank(doc: &Value) -> u8 {
    match doc.get("kind").and_then(Value::as_str) {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    }
}

/// Result of one pass over the manifest directories.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Objects applied, with what happened.
    pub applied: Vec<(PathBuf, ObjRef, Applied)>,
    /// Objects deleted because their file or document is gone.
    pub pruned: Vec<ObjRef>,
    /// Files or documents that could not be applied, with the reason.
    pub errors: Vec<(PathBuf, String)>,
}

/// Apply every manifest once and prune what disappeared.
pub async fn sync(cluster: &Cluster, dirs: &[PathBuf]) -> SyncReport {
    let mut report = SyncReport::default();
    let mut docs: Vec<(PathBuf, Value)> = Vec::new();
    for file in manifest_files(dirs) {
        let parsed = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| crate::yaml::documents(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(ds) => {
                docs.extend(ds.into_iter().map(|d| (file.clone(), d)));
            }
            Err(e) => report.errors.push((file, e)),
        }
    }
    docs.sort_by_key(|(_, d)| rank(d));
    let mut declared: BTreeMap<PathBuf, BTreeSet<ObjRef>> = BTreeMap::new();
    for (file, mut doc) in docs {
        if !doc.is_object() {
            report
                .errors
                .push((file, "a manifest document must be a mapping".into()));
            continue;
        }
        let path = file.to_string_lossy().to_string();
        let meta = doc
            .as_object_mut()
            .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
        if let Some(meta) = meta.and_then(Value::as_object_mut) {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert(MANAGED_LABEL.into(), json!("true"));
            }
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                a.insert(FILE_ANNOTATION.into(), json!(path));
            }
        }
        match apply(cluster, doc, "default").await {
            Ok((r, a)) => {
                declared.entry(file.clone()).or_default().insert(r.clone());
                report.applied.push((file, r, a));
            }
            Err(e) => {
                // A document that failed still counts as declared if we can name it, so a
                // transient error never prunes the object it describes.
                report.errors.push((file, e.message));
            }
        }
    }
    let failed: BTreeSet<PathBuf> = report.errors.iter().map(|(f, _)| f.clone()).collect();
    let registry = cluster.registry().clone();
    for (_, obj) in cluster.store.scan("") {
        if obj.pointer(&format!(
            "/metadata/labels/{}",
            MANAGED_LABEL.replace('/', "~1")
        )) != Some(&json!("true"))
        {
            continue;
        }
        let Some(file) = obj
            .pointer(&format!(
                "/metadata/annotations/{}",
                FILE_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .map(PathBuf::from)
        else {
            continue;
        };
        if failed.contains(&file) {
            continue;
        }
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(def) = registry.by_kind(av, kind) else {
            continue;
        };
        let r = ObjRef {
            api_version: def.api_version(),
            kind: kind.to_string(),
            namespace: meta_str(&obj, "namespace").unwrap_or("").to_string(),
            name: meta_str(&obj, "name").unwrap_or("").to_string(),
        };
        let still_declared = declared.get(&file).is_some_and(|s| s.contains(&r));
        let under_dirs = dirs.iter().any(|d| file.starts_with(d));
        if still_declared || !under_dirs {
            continue;
        }
        let t = Target {
            def,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        };
        match cluster.delete(&t, &DeleteOptions::default()).await {
            Ok(_) => report.pruned.push(r),
            Err(e) if e.code == 404 => {}
            Err(e) => report.errors.push((file, e.message)),
        }
    }
    report
}

fn log_report(report: &SyncReport) {
    for (file, r, a) in &report.applied {
        if *a != Applied::Unchanged {
            tracing::info!(file = %file.display(), object = %r, "manifest {}", a.as_str());
        }
    }
    for r in &report.pruned {
        tracing::info!(object = %r, "manifest object deleted (its file or document is gone)");
    }
    for (file, e) in &report.errors {
        tracing::warn!(file = %file.display(), error = %e, "manifest skipped");
    }
}

/// Apply the manifests now, then again whenever a file under `dirs` changes, until `shutdown`.
pub async fn watch_loop(
    cluster: Arc<Cluster>,
    dirs: Vec<PathBuf>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = fingerprint(&manifest_files(&dirs));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = fingerprint(&manifest_files(&dirs));
        if now != last {
            last = now;
            log_report(&sync(&cluster, &dirs).await);
        }
    }
}

/// Apply once and log what happened (used at start-up).
pub async fn initial_sync(cluster: &Cluster, dirs: &[PathBuf]) -> SyncReport {
    let report = sync(cluster, dirs).await;
    log_report(&report);
    report
}
