//! Route objects → table entries: `spec.from` into host and path prefix (or an SSH name),
//! `spec.to` into backends, `spec.tls` into a certificate, the rest into options and policy.

use std::sync::Arc;

use super::backends::ServicePort;
use super::cache::Resolution;
use super::options::{CompiledOptions, OptionProblem};
use super::table::Contribution;
use super::{
    Builder, CompileContext, Index, Kind, ObjectKey, Problem, Who, certificate_for, options,
    service_backend, url_backend,
};
use crate::api::{self, RouteSpec, RouteTls};
use crate::controller::snapshot::StoredRoute;
use crate::policy::ParsedExpressions;
use crate::routing::options::BearerTokenFormat;
use crate::routing::route::{Protocol, Route, RouteId, SourceKind};
use crate::routing::{Entry, HostPattern, PathMatch};

/// Where a Route is served, from `spec.from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum From {
    /// `http(s)://host[:port][/prefix]`.
    Http {
        protocol: Protocol,
        /// Canonical host name (shared with the table's entries).
        host: Arc<str>,
        /// `host[:port]` as written.
        authority: String,
        /// Canonical path prefix (shared likewise).
        prefix: Arc<str>,
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
            let prefix = PathMatch::Prefix(path.into())
                .canonical()
                .map_err(|e| format!("spec.from {from:?}: {e}"))?;
            Ok(From::Http {
                protocol: if scheme == "https" {
                    Protocol::Https
                } else {
                    Protocol::Http
                },
                host: host.into(),
                authority: authority.to_owned(),
                prefix: prefix.as_str().into(),
            })
        }
        _ => Err(bad()),
    }
}

/// What a Route's spec alone gives: `from` parsed, options and policy checked. Memoized by
/// uid and generation ([`super::cache`]).
pub(super) enum Spec {
    InvalidFrom(String),
    Invalid(Vec<OptionProblem>),
    Valid(From, CompiledOptions),
}

impl Spec {
    /// Parses and checks `spec`, its CEL expressions through `cel`.
    pub(super) fn of(spec: &RouteSpec, cel: &ParsedExpressions) -> Spec {
        let from = match parse_from(&spec.from) {
            Ok(f) => f,
            Err(message) => return Spec::InvalidFrom(message),
        };
        match options::route_options(spec, cel) {
            Ok(c) => Spec::Valid(from, c),
            Err(problems) => Spec::Invalid(problems),
        }
    }
}

/// What one Route object compiles to on its own, before it meets the others in the table: its
/// problems, and the route it serves and where. Memoized while its spec and the resolutions of
/// the Services it names stay the same ([`super::cache`]).
pub(super) struct Unit {
    /// The object's key, entry id and rank.
    who: Who,
    /// Each Service target's resolution, in `spec.to` order.
    deps: Vec<(String, i32, Arc<Resolution>)>,
    problems: Vec<Problem>,
    served: Option<Served>,
}

struct Served {
    route: Arc<Route>,
    /// An SSH name, or the canonical host and path prefix.
    place: Place,
}

enum Place {
    Ssh(String),
    /// Canonical, as the table keeps them.
    Http {
        host: HostPattern,
        prefix: PathMatch,
    },
}

impl Unit {
    fn refused(who: Who, problems: Vec<Problem>) -> Unit {
        Unit {
            who,
            deps: Vec::new(),
            problems,
            served: None,
        }
    }

    /// Whether every Service it names still resolves to what it used.
    fn is_current(&self, index: &Index<'_>, ctx: &CompileContext) -> bool {
        if index.memo.borrow().backends_unchanged() {
            return true;
        }
        let namespace = &self.who.key.namespace;
        self.deps.iter().all(|(name, port, used)| {
            let now = index.resolve(namespace, name, &ServicePort::Number(*port), ctx);
            Arc::ptr_eq(&now, used)
        })
    }
}

/// Contributes a Route to `b`: its unit (`made_ahead`, when compiled on several threads before
/// the contributions began), its problems and its routes.
pub(super) fn compile(
    obj: &Arc<StoredRoute>,
    made_ahead: Option<&Arc<Unit>>,
    index: &Index<'_>,
    ctx: &CompileContext,
    b: &mut Builder,
) {
    let unit = match made_ahead {
        // Made in this compile from this very object, and kept in the memo.
        Some(unit) => Arc::clone(unit),
        None => unit(obj, index, ctx),
    };
    // Certificates are looked up on every compile: they expire with time. Without one, the
    // Route contributes what it did last time as long as its unit is the same.
    let Some((tls, host)) = certificate(obj, &unit) else {
        if !b.keep(&unit.who.id, &unit, obj) {
            b.add(contribution(obj, &unit, true));
        }
        return;
    };
    let mut c = contribution(obj, &unit, false);
    let namespace = &*obj.meta.id.namespace;
    match certificate_for(namespace, &tls.secret_name, &[host], index, ctx) {
        Ok((cert, warnings)) => {
            c.problems(warnings);
            c.add_cert(host.clone(), cert, unit.who.rank.clone());
        }
        Err(p) => c.problem(p),
    }
    b.add(c);
}

/// What the Route `obj` contributes from `unit`, when it binds no certificate (which is looked
/// up through the [`Index`], on each compile): made apart from the [`Builder`], so that many can
/// be made at once.
pub(super) fn draft(obj: &Arc<StoredRoute>, unit: &Arc<Unit>) -> Option<Contribution> {
    certificate(obj, unit)
        .is_none()
        .then(|| contribution(obj, unit, true))
}

/// The TLS block of a Route served over HTTP(S) that names one, and its host.
fn certificate<'u>(
    obj: &'u StoredRoute,
    unit: &'u Unit,
) -> Option<(&'u RouteTls, &'u HostPattern)> {
    match (&obj.spec.tls, &unit.served) {
        (
            Some(tls),
            Some(Served {
                place: Place::Http { host, .. },
                ..
            }),
        ) => Some((tls, host)),
        _ => None,
    }
}

/// What `unit` contributes for `obj`, its certificate aside; `keep` lets the next compile keep
/// it while the Route compiles to the same unit.
fn contribution(obj: &Arc<StoredRoute>, unit: &Arc<Unit>, keep: bool) -> Contribution {
    let who = &unit.who;
    let mut c = Contribution::new(&who.key, Arc::clone(&who.id), &obj.meta);
    c.set_source(obj, keep.then(|| Arc::clone(unit)));
    c.problems(unit.problems.iter().cloned());
    let Some(served) = &unit.served else {
        return c;
    };
    c.set_url(Arc::clone(&served.route.url));
    let route = Arc::clone(&served.route);
    match &served.place {
        Place::Ssh(n) => c.add_ssh(n.clone(), route, who.rank.clone()),
        Place::Http { host, prefix } => {
            let entry = Entry {
                host: host.clone(),
                path: prefix.clone(),
                route,
                id: Arc::clone(&who.id),
            };
            c.add_entry(entry, who.rank.clone());
        }
    }
    c
}

/// The unit of `obj`: the memo's when current, else compiled now (and kept in the memo).
fn unit(obj: &Arc<StoredRoute>, index: &Index<'_>, ctx: &CompileContext) -> Arc<Unit> {
    let cached = index.memo.borrow_mut().route(obj);
    let (spec, unit, made_now) = match cached {
        Some(hit) => hit,
        None => (Arc::new(Spec::of(&obj.spec, index.cel)), None, false),
    };
    let current = |u: &Arc<Unit>| made_now || u.is_current(index, ctx);
    match unit.filter(|u| u.who.is(Kind::Route, &obj.meta) && current(u)) {
        // `route` above already marked the memo used.
        Some(unit) => unit,
        None => {
            let resolve =
                |ns: &str, name: &str, port: &ServicePort| index.resolve(ns, name, port, ctx);
            let unit = Arc::new(unit_with(obj, &spec, &resolve, ctx));
            index
                .memo
                .borrow_mut()
                .keep_route(obj, spec, Arc::clone(&unit));
            unit
        }
    }
}

/// How a unit learns a Service port's resolution: through the [`Index`] (and its memo), or from
/// resolutions made ahead on several threads.
pub(super) type Resolve<'r> = dyn Fn(&str, &str, &ServicePort) -> Arc<Resolution> + 'r;

/// Compiles one Route on its own, with its checked `spec`: [`Unit`].
pub(super) fn unit_with(
    obj: &StoredRoute,
    spec: &Spec,
    resolve: &Resolve<'_>,
    ctx: &CompileContext,
) -> Unit {
    let meta = &obj.meta;
    let key = ObjectKey {
        kind: Kind::Route,
        namespace: Arc::clone(&meta.id.namespace),
        name: Arc::clone(&meta.id.name),
    };
    let who = Who::new(key, meta);
    let (from, compiled) = match spec {
        Spec::InvalidFrom(message) => {
            return Unit::refused(who, vec![Problem::accepted("InvalidFrom", message.clone())]);
        }
        Spec::Invalid(problems) => {
            let problems = problems
                .iter()
                .map(|p| {
                    let reason = if p.field.starts_with("spec.policy") {
                        "InvalidPolicy"
                    } else {
                        "Invalid"
                    };
                    Problem::accepted(reason, p.to_string())
                })
                .collect();
            return Unit::refused(who, problems);
        }
        Spec::Valid(from, compiled) => (from, compiled),
    };
    let mut unit = Unit::refused(who, Vec::new());
    let ssh = matches!(from, From::Ssh(_));
    let namespace = unit.who.key.namespace.clone();
    let Some(backends) = backends(&obj.spec, &namespace, ssh, resolve, ctx, &mut unit) else {
        return unit;
    };
    let (protocol, url, place) = match from {
        From::Http {
            protocol,
            authority,
            host,
            prefix,
        } => (
            *protocol,
            url_of(*protocol, authority, prefix),
            // `parse_from` made both canonical.
            Place::Http {
                host: HostPattern::Exact(Arc::clone(host)),
                prefix: PathMatch::Prefix(Arc::clone(prefix)),
            },
        ),
        From::Ssh(n) => (
            Protocol::Ssh,
            super::concat(&["ssh://", n]),
            Place::Ssh(n.clone()),
        ),
    };
    let route = Arc::new(Route {
        id: RouteId {
            kind: SourceKind::Route,
            namespace: Arc::clone(&namespace),
            name: Arc::clone(&unit.who.key.name),
        },
        url,
        protocol,
        backends,
        policy: compiled.policy.clone(),
        options: compiled.options.clone(),
    });
    let idp_tokens = matches!(
        route.options.bearer_token_format,
        BearerTokenFormat::IdpIdentityToken | BearerTokenFormat::IdpAccessToken
    );
    if let Some(reason) = &ctx.sign_in_unavailable
        && !route.options.allow_public_unauthenticated_access
        && (route.options.allow_any_authenticated_user
            || route.policy.admits_people()
            || idp_tokens)
    {
        let message = if idp_tokens {
            format!(
                "people cannot sign in to this route and the identity provider's bearer tokens (bearerTokenFormat {}) cannot be verified: {reason}; Portcullis tokens still work",
                route.options.bearer_token_format
            )
        } else {
            format!(
                "people cannot sign in to this route: {reason}; tokens (machine-to-machine access) still work"
            )
        };
        unit.problems
            .push(Problem::refs("IdentityProviderUnavailable", message));
    } else if idp_tokens && !ctx.idp_configured {
        unit.problems.push(Problem::refs(
            "IdentityProviderUnavailable",
            format!(
                "bearerTokenFormat {} reads the identity provider's tokens, but no idp is configured: they are refused; Portcullis tokens still work",
                route.options.bearer_token_format
            ),
        ));
    }
    unit.served = Some(Served { route, place });
    unit
}

/// `spec.to` as backends. A target that cannot resolve is reported and left out (the others
/// still serve); `None` when the spec itself is invalid. Problems and the Services used go into
/// `unit`.
fn backends(
    spec: &RouteSpec,
    namespace: &str,
    ssh: bool,
    resolve: &Resolve<'_>,
    ctx: &CompileContext,
    unit: &mut Unit,
) -> Option<Vec<crate::routing::route::Backend>> {
    let mut out = Vec::with_capacity(spec.to.len());
    unit.deps
        .reserve_exact(spec.to.iter().filter(|t| t.service.is_some()).count());
    for (i, target) in spec.to.iter().enumerate() {
        let weight = target.weight_or_default();
        match target.backend() {
            None => {
                unit.problems.push(Problem::accepted(
                    "Invalid",
                    format!("spec.to[{i}] must set exactly one of service or url"),
                ));
                return None;
            }
            Some(api::Backend::Service(svc)) => {
                let port = ServicePort::Number(svc.port);
                let resolution = resolve(namespace, &svc.name, &port);
                match service_backend(&resolution, weight, ssh) {
                    Ok((backend, dropped)) => {
                        for d in dropped {
                            unit.problems.push(Problem::refs("BackendNotAllowed", d));
                        }
                        out.push(backend);
                    }
                    Err(p) => unit.problems.push(p),
                }
                unit.deps.push((svc.name.clone(), svc.port, resolution));
            }
            Some(api::Backend::Url(url)) => match url_backend(url, weight, ctx) {
                Ok(backend) => out.push(backend),
                Err(p) => unit.problems.push(p),
            },
        }
    }
    Some(out)
}

/// The URL a route serves, as `status.url` shows it.
pub(super) fn url_of(protocol: Protocol, authority: &str, prefix: &str) -> Arc<str> {
    let scheme = match protocol {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Ssh => "ssh",
    };
    let path = if prefix == "/" { "" } else { prefix };
    super::concat(&[scheme, "://", authority, path])
}
