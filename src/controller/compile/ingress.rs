//! Ingresses of our class → table entries: one route per rule path (and one for the default
//! backend), `spec.tls` into certificates, `portcullis.dev/` annotations into options and policy.
//!
//! An Ingress is ours when its `ingressClassName` (or the legacy `kubernetes.io/ingress.class`
//! annotation) names an IngressClass whose controller is [`INGRESS_CONTROLLER`], or is
//! [`INGRESS_CLASS`] while no IngressClass of that name belongs to another controller; without a
//! class, when one of our IngressClasses is the cluster default.

use std::collections::BTreeSet;
use std::sync::Arc;

use foldhash::{HashSet, HashSetExt};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use super::backends::ServicePort;
use super::route::url_of;
use super::{
    Builder, CompileContext, INGRESS_CLASS, INGRESS_CONTROLLER, Index, Kind,
    LEGACY_CLASS_ANNOTATION, ObjectKey, Problem, Who, certificate_for, options, service_backend,
};
use crate::routing::route::{Backend, Protocol, Route, RouteId, SourceKind};
use crate::routing::{Entry, HostPattern, PathMatch};

/// Annotation marking the cluster's default IngressClass.
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Which IngressClass names are ours.
pub(super) struct Classes {
    ours: HashSet<String>,
    others: HashSet<String>,
    default_is_ours: bool,
}

impl Classes {
    pub(super) fn new(classes: &[Arc<IngressClass>]) -> Self {
        let mut ours = HashSet::new();
        let mut others = HashSet::new();
        let mut default_is_ours = false;
        for c in classes {
            let name = c.metadata.name.clone().unwrap_or_default();
            let controller = c.spec.as_ref().and_then(|s| s.controller.as_deref());
            if controller == Some(INGRESS_CONTROLLER) {
                let is_default = c
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true");
                default_is_ours |= is_default;
                ours.insert(name);
            } else {
                others.insert(name);
            }
        }
        Classes {
            ours,
            others,
            default_is_ours,
        }
    }

    fn is_our_class(&self, name: &str) -> bool {
        self.ours.contains(name) || (name == INGRESS_CLASS && !self.others.contains(name))
    }

    /// Whether Portcullis serves this Ingress.
    pub(super) fn is_ours(&self, ing: &Ingress) -> bool {
        let class = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| {
                ing.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                    .map(String::as_str)
            });
        match class {
            Some(c) => self.is_our_class(c),
            None => self.default_is_ours,
        }
    }
}

pub(super) fn compile(ing: &Ingress, index: &Index<'_>, ctx: &CompileContext, b: &mut Builder) {
    let meta = &ing.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let key = ObjectKey {
        kind: Kind::Ingress,
        namespace: namespace.as_str().into(),
        name: name.as_str().into(),
    };
    let o = b.open(&key, key.to_string().into(), meta);
    let Some(spec) = ing.spec.as_ref() else {
        return b.problem(o, Problem::accepted("Invalid", "the Ingress has no spec"));
    };
    let empty = Default::default();
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let compiled = match options::ingress_options(annotations, index.cel) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                b.problem(o, Problem::accepted("InvalidAnnotation", p.to_string()));
            }
            return;
        }
    };
    let Who { id: who, rank, .. } = Who::new(key.clone(), meta);

    // TLS: hosts listed under a Secret get its certificate and are served over https.
    let mut tls_hosts = BTreeSet::new();
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let hosts: Vec<HostPattern> = tls
            .hosts
            .iter()
            .flatten()
            .filter_map(|h| match HostPattern::parse(h).canonical() {
                Ok(h) => Some(h),
                Err(e) => {
                    b.problem(
                        o,
                        Problem::accepted(
                            "InvalidHost",
                            format!("spec.tls[{i}].hosts: {h:?}: {e}"),
                        ),
                    );
                    None
                }
            })
            .collect();
        tls_hosts.extend(hosts.iter().cloned());
        // Without a Secret the default certificate serves these hosts.
        let Some(secret) = tls.secret_name.as_deref() else {
            continue;
        };
        let refs: Vec<&HostPattern> = hosts.iter().collect();
        match certificate_for(&namespace, secret, &refs, index, ctx) {
            Ok((cert, warnings)) => {
                for w in warnings {
                    b.problem(o, w);
                }
                for h in hosts {
                    b.add_cert(o, h, cert.clone(), rank.clone());
                }
            }
            Err(p) => b.problem(o, p),
        }
    }

    let id = RouteId {
        kind: SourceKind::Ingress,
        namespace: Arc::clone(&key.namespace),
        name: Arc::clone(&key.name),
    };
    let add = |b: &mut Builder, host: HostPattern, path: PathMatch, backend: Backend| {
        let protocol = if tls_hosts.contains(&host) {
            Protocol::Https
        } else {
            Protocol::Http
        };
        let shown = match &host {
            HostPattern::Any => "*".to_owned(),
            h => h.to_string(),
        };
        let prefix = match &path {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p.clone(),
        };
        let route = Arc::new(Route {
            id: id.clone(),
            url: url_of(protocol, &shown, &prefix),
            protocol,
            backends: vec![backend],
            policy: compiled.policy.clone(),
            options: compiled.options.clone(),
        });
        let entry = Entry {
            host,
            path,
            route,
            id: who.to_string().into(),
        };
        b.add_entry(o, entry, rank.clone());
    };

    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = match rule.host.as_deref() {
            None | Some("") => HostPattern::Any,
            Some(h) => HostPattern::parse(h),
        };
        let Some(http) = rule.http.as_ref() else {
            continue;
        };
        for (j, p) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let raw = p.path.clone().unwrap_or_else(|| "/".to_owned());
            let path = match p.path_type.as_str() {
                "Exact" => PathMatch::Exact(raw.into()),
                "Prefix" | "ImplementationSpecific" => PathMatch::Prefix(raw.into()),
                other => {
                    b.problem(o, Problem::accepted(
                            "Invalid",
                            format!("{at}.pathType {other:?} is not Exact, Prefix or ImplementationSpecific"),
                        ),
                    );
                    continue;
                }
            };
            match backend(&p.backend, &at, &namespace, index, ctx) {
                Ok((backend, dropped)) => {
                    for d in dropped {
                        b.problem(o, Problem::refs("BackendNotAllowed", d));
                    }
                    add(b, host.clone(), path, backend);
                }
                Err(problem) => {
                    if let Some(backend) = unresolved(&problem) {
                        add(b, host.clone(), path, backend);
                    }
                    b.problem(o, problem);
                }
            }
        }
    }
    if let Some(default) = spec.default_backend.as_ref() {
        match backend(default, "spec.defaultBackend", &namespace, index, ctx) {
            Ok((backend, dropped)) => {
                for d in dropped {
                    b.problem(o, Problem::refs("BackendNotAllowed", d));
                }
                add(b, HostPattern::Any, PathMatch::Prefix("/".into()), backend);
            }
            Err(problem) => {
                if let Some(backend) = unresolved(&problem) {
                    add(b, HostPattern::Any, PathMatch::Prefix("/".into()), backend);
                }
                b.problem(o, problem);
            }
        }
    }
}

/// An Ingress backend (a Service of the Ingress's namespace) as a [`Backend`].
fn backend(
    backend: &IngressBackend,
    at: &str,
    namespace: &str,
    index: &Index<'_>,
    ctx: &CompileContext,
) -> Result<(Backend, Vec<String>), Problem> {
    let Some(svc) = backend.service.as_ref() else {
        return Err(Problem::accepted(
            "Invalid",
            format!("{at}: only Service backends are supported"),
        ));
    };
    let port = match svc.port.as_ref() {
        Some(p) => match (p.number, p.name.as_deref()) {
            (Some(n), _) => ServicePort::Number(n),
            (None, Some(name)) => ServicePort::Name(name.to_owned()),
            (None, None) => {
                return Err(Problem::accepted(
                    "Invalid",
                    format!("{at}: the service port needs a number or a name"),
                ));
            }
        },
        None => {
            return Err(Problem::accepted(
                "Invalid",
                format!("{at}: the service port is missing"),
            ));
        }
    };
    service_backend(&index.resolve(namespace, &svc.name, &port, ctx), 1, false)
}

/// What a rule path serves when its backend did not resolve: nothing (503), but the path stays
/// claimed so that a missing Service does not hand it to someone else.
fn unresolved(problem: &Problem) -> Option<Backend> {
    (problem.condition == super::Condition::ResolvedRefs).then(|| Backend {
        weight: 1,
        upstreams: Vec::new(),
    })
}
