//! Route objects → table entries: `spec.from` into host and path prefix (or an SSH name),
//! `spec.to` into backends, `spec.tls` into a certificate, the rest into options and policy.

use std::sync::Arc;

use super::backends::ServicePort;
use super::{
    Builder, CompileContext, Index, Kind, ObjectKey, Problem, certificate_for, options, rank,
    service_backend, url_backend,
};
use crate::api::{self, RouteSpec};
use crate::routing::route::{Protocol, Route, RouteId, SourceKind};
use crate::routing::{Entry, HostPattern, PathMatch};

/// Where a Route is served, from `spec.from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum From {
    /// `http(s)://host[:port][/prefix]`.
    Http {
        protocol: Protocol,
        /// Canonical host name.
        host: String,
        /// `host[:port]` as written.
        authority: String,
        /// Canonical path prefix.
        prefix: String,
    },
    /// `ssh://name`.
    Ssh(String),
}

/// Parses `spec.from`. The CRD schema holds it to [`api::FROM_PATTERN`]; this re-checks the
/// parts compile relies on, for objects that predate the schema.
pub(super) fn parse_from(from: &str) -> Result<From, String> {
    let bad = || {
        format!(
            "spec.from {from:?} must be https://host[:port][/path], http://host[:port][/path] or ssh://name"
        )
    };
    let (scheme, rest) = from.split_once("://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', '?', '#', '*']) {
        return Err(bad());
    }
    let host = crate::routing::split_authority(authority)
        .map_err(|e| format!("spec.from {from:?}: {e}"))?
        .0;
    match scheme {
        "ssh" if path == "/" && !rest.ends_with('/') => Ok(From::Ssh(host)),
        "http" | "https" => {
            let prefix = PathMatch::Prefix(path.to_owned())
                .canonical()
                .map_err(|e| format!("spec.from {from:?}: {e}"))?;
            Ok(From::Http {
                protocol: if scheme == "https" {
                    Protocol::Https
                } else {
                    Protocol::Http
                },
                host,
                authority: authority.to_owned(),
                prefix: prefix.as_str().to_owned(),
            })
        }
        _ => Err(bad()),
    }
}

pub(super) fn compile(obj: &api::Route, index: &Index<'_>, ctx: &CompileContext, b: &mut Builder) {
    let meta = &obj.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let key = ObjectKey {
        kind: Kind::Route,
        namespace: namespace.clone(),
        name: name.clone(),
    };
    b.report(&key, meta);
    let spec = &obj.spec;

    let from = match parse_from(&spec.from) {
        Ok(f) => f,
        Err(message) => return b.problem(&key, meta, Problem::accepted("InvalidFrom", message)),
    };
    let compiled = match options::route_options(spec) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                let reason = if p.field.starts_with("spec.policy") {
                    "InvalidPolicy"
                } else {
                    "Invalid"
                };
                b.problem(&key, meta, Problem::accepted(reason, p.to_string()));
            }
            return;
        }
    };
    let ssh = matches!(from, From::Ssh(_));
    let backends = backends(spec, &namespace, ssh, index, ctx, &mut |p| {
        b.problem(&key, meta, p)
    });
    let backends = match backends {
        Some(backends) => backends,
        None => return,
    };

    let (protocol, url) = match &from {
        From::Http {
            protocol,
            authority,
            prefix,
            ..
        } => (*protocol, url_of(*protocol, authority, prefix)),
        From::Ssh(n) => (Protocol::Ssh, format!("ssh://{n}")),
    };
    let route = Arc::new(Route {
        id: RouteId {
            kind: SourceKind::Route,
            namespace: namespace.clone(),
            name: name.clone(),
        },
        url: url.clone(),
        protocol,
        backends,
        policy: compiled.policy,
        options: compiled.options,
    });
    b.report(&key, meta).url = Some(url);
    let rank = rank(&key, meta);
    match from {
        From::Ssh(n) => b.add_ssh(&key, n, route, rank),
        From::Http { host, prefix, .. } => {
            let host = HostPattern::Exact(host);
            if let Some(tls) = &spec.tls {
                match certificate_for(&namespace, &tls.secret_name, &[&host], index, ctx) {
                    Ok((cert, warnings)) => {
                        for w in warnings {
                            b.problem(&key, meta, w);
                        }
                        if let Ok(h) = host.canonical() {
                            b.certs.add(h, cert, key.to_string(), rank.clone());
                        }
                    }
                    Err(p) => b.problem(&key, meta, p),
                }
            }
            let entry = Entry {
                host,
                path: PathMatch::Prefix(prefix),
                route,
                id: key.to_string(),
            };
            b.add_entry(&key, entry, rank);
        }
    }
}

/// `spec.to` as backends. A target that cannot resolve is reported and left out (the others
/// still serve); `None` when the spec itself is invalid.
fn backends(
    spec: &RouteSpec,
    namespace: &str,
    ssh: bool,
    index: &Index<'_>,
    ctx: &CompileContext,
    report: &mut dyn FnMut(Problem),
) -> Option<Vec<crate::routing::route::Backend>> {
    let mut out = Vec::with_capacity(spec.to.len());
    for (i, target) in spec.to.iter().enumerate() {
        let weight = target.weight_or_default();
        match target.backend() {
            None => {
                report(Problem::accepted(
                    "Invalid",
                    format!("spec.to[{i}] must set exactly one of service or url"),
                ));
                return None;
            }
            Some(api::Backend::Service(svc)) => {
                let port = ServicePort::Number(svc.port);
                match service_backend(namespace, &svc.name, &port, weight, ssh, index, ctx) {
                    Ok((backend, dropped)) => {
                        for d in dropped {
                            report(Problem::refs("BackendNotAllowed", d));
                        }
                        out.push(backend);
                    }
                    Err(p) => report(p),
                }
            }
            Some(api::Backend::Url(url)) => match url_backend(url, weight, ctx) {
                Ok(backend) => out.push(backend),
                Err(p) => report(p),
            },
        }
    }
    Some(out)
}

/// The URL a route serves, as `status.url` shows it.
pub(super) fn url_of(protocol: Protocol, authority: &str, prefix: &str) -> String {
    let scheme = match protocol {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Ssh => "ssh",
    };
    let path = if prefix == "/" { "" } else { prefix };
    format!("{scheme}://{authority}{path}")
}
