//! What the data plane serves: one compiled [`Route`] per accepted Route object or Ingress rule,
//! and the [`Table`] that holds every route, certificate and SSH route of one generation.
//!
//! Built by `controller::compile` (pure), published by `controller::publisher` into
//! [`super::live::LiveTable`], read by the proxy for the lifetime of one request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::RouteTable;
use super::certs::CertStore;
use super::options::RouteOptions;
use super::upstream::Upstream;
use crate::policy::Policy;

/// The kind of object a route was compiled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// A `portcullis.dev/v1alpha1` Route.
    Route,
    /// A `networking.k8s.io/v1` Ingress.
    Ingress,
}

impl SourceKind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Route => "Route",
            SourceKind::Ingress => "Ingress",
        }
    }
}

/// The object a route comes from: `Route team-a/billing`, `Ingress team-a/web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId {
    /// Route or Ingress.
    pub kind: SourceKind,
    /// The object's namespace (shared with the compile's key for the object).
    pub namespace: Arc<str>,
    /// The object's name.
    pub name: Arc<str>,
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// The listener a route is meant for, from the scheme of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `http://`: the plain HTTP listener.
    Http,
    /// `https://`: the TLS listener.
    Https,
    /// `ssh://`: the SSH listener.
    Ssh,
}

/// One served route: where it is reachable, where requests go, who may pass and how requests
/// are rewritten. Immutable; shared by `Arc` between table generations when unchanged.
#[derive(Debug)]
pub struct Route {
    /// The object it was compiled from.
    pub id: RouteId,
    /// The URL it serves (`https://billing.example.com/api`), as written in `status.url`.
    pub url: Arc<str>,
    /// The scheme of [`Route::url`]: which listener the route is meant for.
    pub protocol: Protocol,
    /// Weighted backends (`spec.to`, or the Ingress rule's Service). A request picks a backend
    /// by weight, then one of its upstreams. No upstream at all: the proxy answers 503.
    pub backends: Vec<Backend>,
    /// The compiled authorization policy.
    pub policy: Policy,
    /// Everything else from the spec (or the Ingress annotations); shared with the compile
    /// cache's copy.
    pub options: Arc<RouteOptions>,
}

/// One weighted backend: a Service's endpoints, or one URL.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Relative weight (`spec.to[].weight`, default 1). Weight 0 receives no traffic.
    pub weight: u32,
    /// The addresses (or DNS names) that serve it; empty when none is ready.
    pub upstreams: Vec<Upstream>,
}

/// Everything the data plane reads, for one generation. Built whole by the compiler and swapped
/// in at once: a request sees exactly one `Table`.
#[derive(Debug, Default)]
pub struct Table {
    /// Publication counter (0 for the empty table before the first compile).
    pub generation: u64,
    /// HTTP(S) routes by host and path.
    pub routes: RouteTable<Route>,
    /// TLS certificates by SNI.
    pub certs: CertStore,
    /// SSH routes by name (`ssh://<name>`).
    pub ssh: BTreeMap<String, Arc<Route>>,
    /// OAuth clients (ServiceAccountCredentials with issued secrets) by `client_id`.
    pub credentials: crate::identity::token::Credentials,
    /// The signing keys, once the signing-key Secret exists and parses.
    pub keys: Option<Arc<crate::identity::keys::KeySet>>,
    /// Client-certificate verification of the https listener (`downstreamMTLS`).
    pub client_auth: super::client_ca::ClientAuth,
}

impl Table {
    /// The HTTP route for a request (`host` = `Host`/`:authority`, `path` canonical).
    pub fn find(&self, host: &str, path: &str) -> Option<(super::Match<'_>, &Arc<Route>)> {
        self.routes.find(host, path)
    }

    /// A route serving `host` at some path: the one for `/`, else the first whose own path
    /// matches on this host. For the pages every route host serves (`/.portcullis/`), which
    /// belong to the host rather than to a path. Linear in the routes when `/` is not served.
    pub fn route_for_host(&self, host: &str) -> Option<&Arc<Route>> {
        if let Some((_, route)) = self.find(host, "/") {
            return Some(route);
        }
        // The first entry in (host, path) order whose path matches here, found without sorting.
        self.routes
            .entries_unordered()
            .filter(|e| self.find(host, e.path.as_str()).is_some())
            .min_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)))
            .and_then(|e| self.find(host, e.path.as_str()))
            .map(|(_, route)| route)
    }
}
