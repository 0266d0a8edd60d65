//! The kinds the embedded API serves: a static table of built-in Kubernetes kinds plus the kinds
//! that installed CustomResourceDefinitions add at run time.
//!
//! Objects are stored generically (as JSON) under a version-independent key, so one table row is
//! all a built-in kind needs. The server and discovery read the [`Registry`]; the CRD handler
//! writes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::table::{Column, builtin_columns};

/// How object names of a kind are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces, services).
    Label,
    /// Any path segment (RBAC kinds: `system:controller`).
    PathSegment,
}

/// One served resource (a group/version/plural) and what the server needs to know about it.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group, empty for the core group.
    pub group: String,
    /// The version this definition is served at.
    pub version: String,
    /// Kind (`Route`).
    pub kind: String,
    /// Lower-case plural (`routes`).
    pub plural: String,
    /// Lower-case singular (`route`).
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// `kubectl` short names.
    pub short_names: Vec<String>,
    /// Categories (`all`, `portcullis`).
    pub categories: Vec<String>,
    /// Whether a `status` subresource exists (status is then written only through it).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is tracked (bumped on spec changes).
    pub generation: bool,
    /// Name validation.
    pub name_rule: NameRule,
    /// The version objects are stored in (for CRDs, the storage version).
    pub storage_version: String,
    /// For custom resources: the CRD name and the version's `openAPIV3Schema`.
    pub custom: Option<CustomInfo>,
    /// Verbs listed in discovery.
    pub verbs: &'static [&'static str],
    /// Columns of server-side `Table` output (`kubectl get`).
    pub columns: Arc<Vec<Column>>,
}

/// What a CRD adds to a resource definition.
#[derive(Debug, Clone)]
pub struct CustomInfo {
    /// `routes.portcullis.dev`.
    pub crd_name: String,
    /// The version's `openAPIV3Schema`, if any.
    pub schema: Option<Arc<Value>>,
}

/// Verbs of namespaces (kube-apiserver serves no `deletecollection` for them).
pub const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// Verbs of an ordinary read-write resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceDef {
    /// `group/version` as used in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix of this resource (shared by all its versions, and by core/v1 and
    /// events.k8s.io/v1 Events, which are one kind served twice).
    pub fn key_prefix(&self) -> String {
        let group = match self.group.as_str() {
            "" if self.plural == "events" => "events.k8s.io",
            "" => "core",
            g => g,
        };
        format!("{group}/{}/", self.plural)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        format!("{}{namespace}/{name}", self.key_prefix())
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    generation: bool,
    name_rule: NameRule,
    in_all: bool,
}

#[allow(clippy::too_many_arguments)] // a table row constructor
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    generation: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        status,
        generation,
        name_rule: NameRule::Subdomain,
        in_all: false,
    }
}

const fn all(mut x: Builtin) -> Builtin {
    x.in_all = true;
    x
}

const fn named(mut x: Builtin, rule: NameRule) -> Builtin {
    x.name_rule = rule;
    x
}

/// Built-in kinds a chart or a controller may create. Status subresources and generation
/// tracking follow kube-apiserver's registry strategies for each kind.
const BUILTINS: &[Builtin] = &[
    named(
        b(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            true,
            false,
        ),
        NameRule::Label,
    ),
    b(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        false,
        false,
    ),
    b("", "v1", "Secret", "secrets", true, &[], false, false),
    all(named(
        b("", "v1", "Service", "services", true, &["svc"], true, false),
        NameRule::Label,
    )),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
    ),
    b(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
        false,
    ),
    all(b("", "v1", "Pod", "pods", true, &["po"], true, false)),
    b(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        true,
        &[],
        false,
        false,
    ),
    all(b(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
        true,
        true,
    )),
    b("", "v1", "Event", "events", true, &["ev"], false, false),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
        false,
    ),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
        false,
    ),
    b(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        false,
        false,
    ),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        true,
        false,
    ),
    b("", "v1", "Node", "nodes", false, &["no"], true, false),
    all(b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        true,
    )),
    all(b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
        true,
    )),
    all(b(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        true,
    )),
    all(b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        true,
    )),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
        false,
    ),
    all(b("batch", "v1", "Job", "jobs", true, &[], true, true)),
    all(b(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        true,
        true,
    )),
    all(b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        true,
        true,
    )),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        true,
        true,
    ),
    named(
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            &[],
            false,
            false,
        ),
        NameRule::PathSegment,
    ),
    named(
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
            false,
        ),
        NameRule::PathSegment,
    ),
    named(
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
            false,
        ),
        NameRule::PathSegment,
    ),
    named(
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
            false,
        ),
        NameRule::PathSegment,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        true,
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        false,
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        false,
        true,
    ),
    b(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
        false,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
        false,
    ),
    b(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        false,
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        false,
        false,
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
        true,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
        false,
        true,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
        false,
        true,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
        true,
    ),
];

/// All served resources, indexed for URL lookup and discovery.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// (group, version, plural) → definition.
    by_path: BTreeMap<(String, String, String), Arc<ResourceDef>>,
    /// Group → its versions, preferred first.
    group_versions: BTreeMap<String, Vec<String>>,
}

impl Registry {
    /// The registry with only the built-in kinds.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        for x in BUILTINS {
            let mut categories = Vec::new();
            if x.in_all {
                categories.push("all".to_string());
            }
            r.insert(ResourceDef {
                group: x.group.into(),
                version: x.version.into(),
                kind: x.kind.into(),
                plural: x.plural.into(),
                singular: x.kind.to_ascii_lowercase(),
                namespaced: x.namespaced,
                short_names: x.short.iter().map(|s| s.to_string()).collect(),
                categories,
                status_subresource: x.status,
                generation: x.generation,
                name_rule: x.name_rule,
                storage_version: x.version.into(),
                custom: None,
                verbs: if x.plural == "namespaces" {
                    NAMESPACE_VERBS
                } else {
                    ALL_VERBS
                },
                columns: Arc::new(builtin_columns(x.group, x.kind)),
            });
        }
        r
    }

    /// Add or replace one served resource.
    pub fn insert(&mut self, def: ResourceDef) {
        let versions = self.group_versions.entry(def.group.clone()).or_default();
        if !versions.contains(&def.version) {
            versions.push(def.version.clone());
        }
        self.by_path.insert(
            (def.group.clone(), def.version.clone(), def.plural.clone()),
            Arc::new(def),
        );
    }

    /// Remove every version of the resources a CRD defined.
    pub fn remove_crd(&mut self, crd_name: &str) {
        self.by_path
            .retain(|_, d| d.custom.as_ref().map(|c| c.crd_name.as_str()) != Some(crd_name));
        self.rebuild_versions();
    }

    /// Set the preferred-first version order of a group (CRDs order by version priority).
    pub fn set_version_order(&mut self, group: &str, versions: Vec<String>) {
        self.group_versions.insert(group.to_string(), versions);
        self.rebuild_versions();
    }

    fn rebuild_versions(&mut self) {
        let present: std::collections::BTreeSet<(String, String)> = self
            .by_path
            .keys()
            .map(|(g, v, _)| (g.clone(), v.clone()))
            .collect();
        for (g, versions) in self.group_versions.iter_mut() {
            versions.retain(|v| present.contains(&(g.clone(), v.clone())));
        }
        for (g, v) in &present {
            let versions = self.group_versions.entry(g.clone()).or_default();
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
        self.group_versions.retain(|_, v| !v.is_empty());
    }

    /// Look up a resource by URL parts.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Find the definition for an `apiVersion` + `kind` (used for manifests).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.by_path
            .values()
            .find(|d| d.group == group && d.version == version && d.kind == kind)
            .cloned()
    }

    /// Whether the group/version is served.
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.group_versions
            .get(group)
            .is_some_and(|v| v.iter().any(|x| x == version))
    }

    /// Groups with their versions, preferred version first; the core group is `""`.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.group_versions.iter()
    }

    /// Resources served at one group/version, sorted by plural.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.by_path
            .iter()
            .filter(|((g, v, _), _)| g == group && v == version)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_lookup_and_keys() {
        let r = Registry::builtin();
        let cm = r.get("", "v1", "configmaps").expect("configmaps");
        assert_eq!(cm.kind, "ConfigMap");
        assert_eq!(cm.key("default", "x"), "core/configmaps/default/x");
        assert!(r.by_kind("apps/v1", "Deployment").is_some());
        assert!(r.by_kind("v1", "Secret").is_some());
        assert!(r.has_group_version("events.k8s.io", "v1"));
        assert!(!r.has_group_version("apps", "v2"));
    }

    #[test]
    fn crd_versions_come_and_go() {
        let mut r = Registry::builtin();
        for v in ["v1", "v1beta1"] {
            r.insert(ResourceDef {
                group: "example.com".into(),
                version: v.into(),
                kind: "Widget".into(),
                plural: "widgets".into(),
                singular: "widget".into(),
                namespaced: true,
                short_names: vec![],
                categories: vec![],
                status_subresource: true,
                generation: true,
                name_rule: NameRule::Subdomain,
                storage_version: "v1".into(),
                custom: Some(CustomInfo {
                    crd_name: "widgets.example.com".into(),
                    schema: None,
                }),
                verbs: ALL_VERBS,
                columns: Arc::new(Vec::new()),
            });
        }
        assert!(r.has_group_version("example.com", "v1beta1"));
        r.remove_crd("widgets.example.com");
        assert!(!r.has_group_version("example.com", "v1"));
        assert!(r.groups().all(|(g, _)| g != "example.com"));
    }
}
