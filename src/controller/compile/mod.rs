//! `compile`: the pure function from a [`Snapshot`] of watched objects to the [`Table`] the proxy
//! serves, plus one [`Report`] per Route and Ingress (what becomes status conditions and Events).
//!
//! ```text
//! Snapshot ──► Index (by namespace/name, slices by Service) ──► route.rs   (Route objects)
//!                                                          └──► ingress.rs (Ingresses of our class)
//!            each object ─► options.rs (spec / annotations ─► RouteOptions + Policy)
//!                        ─► backends.rs + routing::upstream (Services, EndpointSlices, URLs, SSRF)
//!                        ─► routing::certs (TLS Secrets by SNI)
//!            TableBuilder (conflicts oldest-first, reserved host and prefixes) ─► Table + Reports
//! ```
//!
//! No I/O, no clock (`now` comes in the context), no global state; the same snapshot always gives
//! the same table and reports, whatever the order of objects in it. One bad object only ever
//! affects its own routes. [`compile_with`] also takes the [`Cache`] the previous compile
//! returned and reuses per-object results of objects that did not change (`cache.rs`); the
//! result is the same as without it. When many Routes have no cached spec (the compile from
//! nothing), their specs are checked on several threads while another resolves the Services they
//! name, their units are then compiled on several threads, and reports made afresh are made on
//! several threads; the rest runs on one.

pub mod backends;
mod cache;
mod credentials;
mod ingress;
pub mod options;
mod route;
mod table;

#[cfg(test)]
mod tests;

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use self::backends::{ServiceRecord, SliceRecord};
pub use self::cache::Cache;
use self::cache::{Resolution, ServiceMemos};
use self::table::Builder;
use super::snapshot::{RouteMeta, Snapshot, StoredRoute};
use crate::policy::ParsedExpressions;
use crate::routing::HostPattern;
use crate::routing::certs::{Certificate, parse_pem_pair};
use crate::routing::client_ca::{ClientAuth, ClientCaError};
use crate::routing::route::{Backend, Table};
use crate::routing::upstream::{AddressPolicy, Upstream, UpstreamScheme, parse_url_upstream};

/// Path prefixes served by Portcullis itself on every route host; no route can claim them.
pub const RESERVED_PREFIXES: [&str; 2] = crate::identity::endpoints::ROUTE_PREFIXES;

/// The `spec.controller` of IngressClasses that Portcullis serves.
pub const INGRESS_CONTROLLER: &str = "portcullis.dev/ingress-controller";

/// The IngressClass name Portcullis answers to even when no IngressClass object names it.
pub const INGRESS_CLASS: &str = "portcullis";

/// The Ingress annotation naming a class, from before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Most characters of a condition message or Event note; longer ones are cut.
pub const MAX_MESSAGE: usize = 1024;

/// What compile needs besides the objects: settings, and the current time for certificate
/// expiry.
#[derive(Debug, Clone)]
pub struct CompileContext {
    /// The authenticate host (no route may claim it).
    pub authenticate_host: Option<String>,
    /// Which upstream addresses are allowed (SSRF rules).
    pub address_policy: AddressPolicy,
    /// Whether Services of type `ExternalName` may be backends.
    pub allow_external_name: bool,
    /// `tls.defaultCertificateSecret` as (namespace, name).
    pub default_certificate: Option<(String, String)>,
    /// `downstreamMTLS.caSecret` as (namespace, name): the CA client certificates must chain to.
    pub client_ca: Option<(String, String)>,
    /// Portcullis's own namespace (signing keys, credential digests).
    pub namespace: String,
    /// Name of the signing-key Secret in `namespace`.
    pub signing_secret: String,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Why people cannot sign in right now (the identity provider, or its client secret, is
    /// missing or unreachable): Routes that let people in report it. `None` when they can, or
    /// when no identity provider is configured.
    pub sign_in_unavailable: Option<String>,
    /// Whether an identity provider (`idp`) is configured at all: Routes that read its tokens
    /// (`bearerTokenFormat: idp_*`) report it when not.
    pub idp_configured: bool,
}

/// The kinds compile reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `portcullis.dev/v1alpha1` Route.
    Route,
    /// `networking.k8s.io/v1` Ingress.
    Ingress,
}

impl Kind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Route => "Route",
            Kind::Ingress => "Ingress",
        }
    }
}

/// An object compile reports on. Cheap to clone (shared strings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: Arc<str>,
    /// Its name.
    pub name: Arc<str>,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// The status conditions of a Route that a problem can turn false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// The object is valid and its host and path are its own.
    Accepted,
    /// Every reference (Service, Secret, URL backend) resolved and is allowed.
    ResolvedRefs,
}

/// One thing wrong with an object, for a condition and a Warning Event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The condition it makes false.
    pub condition: Condition,
    /// A CamelCase reason (`Conflict`, `BackendNotFound`, ...).
    pub reason: &'static str,
    /// What is wrong, for people; never secret material.
    pub message: String,
}

impl Problem {
    fn new(condition: Condition, reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            condition,
            reason,
            message: truncate(message.into()),
        }
    }

    fn accepted(reason: &'static str, message: impl Into<String>) -> Self {
        Problem::new(Condition::Accepted, reason, message)
    }

    fn refs(reason: &'static str, message: impl Into<String>) -> Self {
        Problem::new(Condition::ResolvedRefs, reason, message)
    }
}

/// What compile concluded about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The object.
    pub key: ObjectKey,
    /// Its uid (Events refer to it).
    pub uid: Option<Arc<str>>,
    /// The `metadata.generation` compiled.
    pub generation: Option<i64>,
    /// The URL it is served at (`status.url`), when accepted.
    pub url: Option<Arc<str>>,
    /// Everything wrong with it, sorted; empty when it is fully served.
    pub problems: Vec<Problem>,
    /// Number of its routes in the table (an Ingress may have many).
    pub served: usize,
    /// Whether some upstream of a served route has no address (no ready endpoint).
    pub no_endpoints: bool,
}

impl Report {
    /// The first problem against `condition`, if any.
    pub fn problem(&self, condition: Condition) -> Option<&Problem> {
        self.problems.iter().find(|p| p.condition == condition)
    }
}

/// The result of one compile.
#[derive(Debug, Default)]
pub struct Compiled {
    /// The table to publish (generation 0 until published).
    pub table: Table,
    /// One report per Route and per Ingress of our class, by object. Reports of objects whose
    /// outcome did not change are the same `Arc`s as in the last compile's.
    pub reports: BTreeMap<ObjectKey, Arc<Report>>,
    /// What the next compile may reuse (see [`compile_with`]).
    pub cache: Cache,
}

/// Compiles a snapshot. Pure and deterministic.
pub fn compile(snap: &Snapshot, ctx: &CompileContext) -> Compiled {
    compile_with(snap, ctx, Cache::default())
}

/// [`compile`], reusing the per-object results in `cache` (the previous compile's
/// [`Compiled::cache`]) for objects that did not change. The result is exactly what [`compile`]
/// gives; routes of unchanged objects are the same `Arc`s as in the table the cache came with.
pub fn compile_with(snap: &Snapshot, ctx: &CompileContext, cache: Cache) -> Compiled {
    compile_inner(snap, ctx, cache, Parallel::DEFAULT)
}

/// The fewest items worth threads, step by step (tests vary them).
#[derive(Debug, Clone, Copy)]
struct Parallel {
    /// Uncached Routes: their specs checked, the Service ports they name resolved and their
    /// units made on several threads.
    specs: usize,
    /// Contributions per thread, when claims are settled from nothing and the reports made.
    settle: usize,
}

impl Parallel {
    const DEFAULT: Parallel = Parallel {
        specs: cache::PARALLEL_SPECS,
        settle: table::PER_THREAD,
    };
}

/// [`compile_with`], with the thresholds of `parallel`.
fn compile_inner(
    snap: &Snapshot,
    ctx: &CompileContext,
    cache: Cache,
    parallel: Parallel,
) -> Compiled {
    let parallel_specs = parallel.specs;
    let mut cache = cache.begin(ctx, snap);
    let cel = ParsedExpressions::default();
    // While the specs are checked: the Services, and every Service port a Route names
    // resolved, which the units made ahead need.
    let (checked, resolved) = cache.check_specs(&snap.routes, parallel_specs, &cel, |memos| {
        let backends = Backends::new(snap);
        let resolved = resolve_ahead(snap, &backends, memos, ctx, parallel_specs);
        (backends, resolved)
    });
    let (backends, resolved) = resolved.unzip();
    let claims = cache.take_claims();
    // Nothing was contributed before (the compile from nothing): the Routes made ahead are
    // contributed ahead too, apart from the builder.
    let drafts = claims.is_empty();
    let serial = cache.serial();
    let backends_unchanged = cache.backends_unchanged();
    let index = Index::new(snap, cache, &cel, backends);
    let (ahead, drafts) = if checked.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let resolved = resolved.unwrap_or_else(|| {
            let backends = index.backends.get_or_init(|| Backends::new(snap));
            let mut memo = index.memo.borrow_mut();
            resolve_ahead(snap, backends, memo.services(), ctx, parallel_specs)
        });
        index.units_ahead(&checked, &resolved, ctx, parallel_specs, drafts)
    };
    let b = Builder::new(ctx, claims, serial, false, backends_unchanged);
    let mut b = contribute(snap, &ahead, drafts, &index, ctx, b);
    if b.duplicate || b.has_twins() {
        // Perhaps two objects with one key: contribute everything again, where they merge.
        b = contribute(snap, &ahead, Vec::new(), &index, ctx, b.into_full(ctx));
    }
    if let Some((ns, name)) = &ctx.default_certificate {
        match index.tls_certificate(ns, name) {
            Ok(cert) => b.default_certificate(cert),
            Err(e) => tracing::warn!(
                secret = %format!("{ns}/{name}"),
                error = %e,
                "default certificate unusable; serving without one"
            ),
        }
    }
    let table::Finished {
        routes,
        certs,
        ssh,
        reports,
        claims,
        gone_uids,
    } = b.finish(parallel.settle);
    let mut table = Table {
        generation: 0,
        routes,
        certs,
        ssh,
        ..Table::default()
    };
    table.credentials = credentials::credentials(snap, &index, ctx);
    table.keys = credentials::signing_keys(&index, ctx);
    if let Some((ns, name)) = &ctx.client_ca {
        table.client_auth = client_auth(&index, ns, name);
    }
    let mut cache = index.memo.into_inner();
    cache.forget_routes(&gone_uids);
    let mut cache = cache.end(snap);
    cache.keep_claims(claims);
    Compiled {
        table,
        reports,
        cache,
    }
}

/// Most threads [`parallel_map`] uses.
const MAX_THREADS: usize = 8;

/// Stack of [`parallel_map`]'s threads: the CEL parser's, so that it runs in place
/// ([`crate::policy::PARSER_STACK_BYTES`]), and room for what calls it. Only touched pages are
/// committed.
const THREAD_STACK_BYTES: usize = crate::policy::PARSER_STACK_BYTES + (2 << 20);

/// How many threads to split `items` items over: as many as the process may run at once (at
/// most [`MAX_THREADS`]), each with at least `per_thread` items; 1 means this thread alone.
fn threads_for(items: usize, per_thread: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS)
        .min(items / per_thread.max(1))
        .max(1)
}

/// `f` of every item, in order, on [`threads_for`] threads.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads_for(items.len(), per_thread);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let parts: Vec<&[T]> = items.chunks(items.len().div_ceil(threads)).collect();
    let done = parallel_parts(parts, |part| part.iter().map(&f).collect::<Vec<R>>());
    let mut out = Vec::with_capacity(items.len());
    done.into_iter().for_each(|part| out.extend(part));
    out
}

/// `f` of every part, in order, each on a thread of its own (one part: on this thread). A
/// part whose thread cannot be started runs on this one; a panic in `f` is raised again here.
fn parallel_parts<P: Send, R: Send>(parts: Vec<P>, f: impl Fn(P) -> R + Sync) -> Vec<R> {
    if parts.len() <= 1 {
        return parts.into_iter().map(f).collect();
    }
    // Each part is taken once: by its thread, or here when that thread did not start.
    let slots: Vec<Mutex<Option<P>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let run = |slot: &Mutex<Option<P>>| {
        let part = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        part.map(&f)
    };
    std::thread::scope(|scope| {
        let started: Vec<_> = slots
            .iter()
            .map(|slot| {
                std::thread::Builder::new()
                    .name("compile".into())
                    .stack_size(THREAD_STACK_BYTES)
                    .spawn_scoped(scope, move || run(slot))
                    .ok()
            })
            .collect();
        slots
            .iter()
            .zip(started)
            .filter_map(|(slot, thread)| match thread {
                Some(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                None => run(slot),
            })
            .collect()
    })
}

/// Every Route and every Ingress of our class, into `b`, in snapshot order (the result does
/// not depend on it: claims are settled by rank). `ahead` holds the units made ahead, by the
/// Routes' place in the snapshot (or nothing), and `drafts` their contributions made ahead
/// ([`route::draft`], only when `b` keeps nothing from before).
fn contribute(
    snap: &Snapshot,
    ahead: &[Option<Arc<route::Unit>>],
    mut drafts: Vec<Option<table::Contribution>>,
    index: &Index<'_>,
    ctx: &CompileContext,
    mut b: Builder,
) -> Builder {
    b.expect(snap.routes.len(), snap.ingresses.len());
    for (i, r) in snap.routes.iter().enumerate() {
        if b.skip(r) {
            continue;
        }
        match drafts.get_mut(i).and_then(Option::take) {
            Some(draft) => {
                b.add(draft);
            }
            None => {
                let made = ahead.get(i).and_then(Option::as_ref);
                route::compile(r, made, index, ctx, &mut b);
            }
        }
    }
    let classes = ingress::Classes::new(&snap.ingress_classes);
    for i in snap.ingresses.iter().filter(|i| classes.is_ours(i)) {
        ingress::compile(i, index, ctx, &mut b);
    }
    b
}

/// The downstream mTLS verifier from the Secret's `ca.crt`; a missing or unusable CA refuses
/// every client (logged), it never turns verification off.
fn client_auth(index: &Index<'_>, ns: &str, name: &str) -> ClientAuth {
    let built = match index.secret(ns, name) {
        None => Err(ClientCaError::NotFound),
        Some(secret) => match secret.data.as_ref().and_then(|d| d.get("ca.crt")) {
            None => Err(ClientCaError::MissingKey),
            Some(pem) => ClientAuth::from_pem(&pem.0),
        },
    };
    built.unwrap_or_else(|error| {
        tracing::warn!(
            secret = %format!("{ns}/{name}"),
            %error,
            "downstreamMTLS.caSecret is unusable; the https listener refuses every client"
        );
        ClientAuth::Unusable
    })
}

/// Conflict rank: creation time, then `namespace/name`, then kind. Lower wins. Shared, since
/// every claim of an object carries it.
pub(crate) type Rank = (i64, Arc<str>);

/// Who an object is to the table: its key, the id its entries carry (`Route team-a/web`) and
/// its conflict rank. Made once per object version and kept with a Route's unit.
pub(crate) struct Who {
    key: ObjectKey,
    id: Arc<str>,
    rank: Rank,
}

impl Who {
    fn new(key: ObjectKey, meta: &impl Meta) -> Who {
        let (kind, namespace, name) = (key.kind.as_str(), &*key.namespace, &*key.name);
        Who {
            // `key.to_string()`, and the rank's text, without the formatting machinery: this
            // runs for every Route on a compile from nothing.
            id: concat(&[kind, " ", namespace, "/", name]),
            rank: (meta.created(), concat(&[namespace, "/", name, " ", kind])),
            key,
        }
    }

    /// Whether this is who `meta` describes (its key and creation time).
    fn is(&self, kind: Kind, meta: &impl Meta) -> bool {
        let (namespace, name) = meta.key();
        self.key.kind == kind
            && *self.key.namespace == *namespace
            && *self.key.name == *name
            && self.rank.0 == meta.created()
    }
}

/// The parts, one after the other.
fn concat(parts: &[&str]) -> Arc<str> {
    let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|p| text.push_str(p));
    text.into()
}

/// What compile reads of an object's metadata: an Ingress's whole `ObjectMeta`, or the
/// [`RouteMeta`] a stored Route keeps.
pub(crate) trait Meta {
    /// `(namespace, name)`, borrowed: sorting 10k objects must not allocate per comparison.
    fn key(&self) -> (&str, &str);
    /// Shared with the object where it keeps it so.
    fn uid(&self) -> Option<Arc<str>>;
    fn generation(&self) -> Option<i64>;
    /// Creation time in Unix seconds; unset ranks last.
    fn created(&self) -> i64;
}

impl Meta for ObjectMeta {
    fn key(&self) -> (&str, &str) {
        (
            self.namespace.as_deref().unwrap_or_default(),
            self.name.as_deref().unwrap_or_default(),
        )
    }

    fn uid(&self) -> Option<Arc<str>> {
        self.uid.as_deref().map(Arc::from)
    }

    fn generation(&self) -> Option<i64> {
        self.generation
    }

    fn created(&self) -> i64 {
        self.creation_timestamp
            .as_ref()
            .map_or(i64::MAX, |t| t.0.as_second())
    }
}

impl Meta for RouteMeta {
    fn key(&self) -> (&str, &str) {
        (&self.id.namespace, &self.id.name)
    }

    fn uid(&self) -> Option<Arc<str>> {
        self.id.uid.clone()
    }

    fn generation(&self) -> Option<i64> {
        self.generation
    }

    fn created(&self) -> i64 {
        self.created.unwrap_or(i64::MAX)
    }
}

/// Lookups by namespace and name over the snapshot, and the memo of the previous compile.
pub(crate) struct Index<'a> {
    snap: &'a Snapshot,
    /// Services and EndpointSlices by namespace and Service name, built on first use: when
    /// they are the very objects of the last compile, the memo answers every lookup.
    backends: OnceCell<Backends<'a>>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Read and refilled as objects compile (compile is single-threaded).
    memo: RefCell<Cache>,
    /// The CEL expressions of this compile's policies, parsed once per source.
    cel: &'a ParsedExpressions,
}

struct Backends<'a> {
    services: HashMap<(&'a str, &'a str), &'a Arc<ServiceRecord>>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a Arc<SliceRecord>>>,
}

impl<'a> Backends<'a> {
    fn new(snap: &'a Snapshot) -> Self {
        Backends {
            services: snap
                .services
                .iter()
                .map(|s| ((&*s.id.namespace, &*s.id.name), s))
                .collect(),
            slices: backends::slices_by_service(&snap.endpoint_slices),
        }
    }

    /// The Service `namespace/name` and its EndpointSlices.
    fn of<'s>(
        &'s self,
        namespace: &'s str,
        name: &'s str,
    ) -> (Option<&'s Arc<ServiceRecord>>, &'s [&'s Arc<SliceRecord>]) {
        let service = self.services.get(&(namespace, name)).copied();
        let slices = self
            .slices
            .get(&(namespace, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        (service, slices)
    }
}

/// Every Service port a Route of `snap` names, resolved: from `memos` when current there, else
/// afresh (on several threads when at least `parallel_from` are) and kept in `memos`.
fn resolve_ahead<'a>(
    snap: &'a Snapshot,
    backends: &Backends<'a>,
    memos: &mut ServiceMemos,
    ctx: &CompileContext,
    parallel_from: usize,
) -> HashMap<(&'a str, &'a str, i32), Arc<Resolution>> {
    if memos.is_empty() {
        return resolve_all(snap, backends, memos, ctx, parallel_from);
    }
    let unchanged = memos.unchanged();
    let mut resolved = HashMap::with_capacity(snap.routes.len());
    let mut todo = Vec::new();
    for r in &snap.routes {
        let namespace = &*r.meta.id.namespace;
        for target in &r.spec.to {
            let Some(svc) = &target.service else {
                continue;
            };
            let key = (namespace, svc.name.as_str(), svc.port);
            if resolved.contains_key(&key) {
                continue;
            }
            let port = backends::ServicePort::Number(svc.port);
            let (service, slices) = backends.of(key.0, key.1);
            let hit = if unchanged {
                memos.unchanged_service(key.0, key.1, &port)
            } else {
                memos.service(key.0, key.1, &port, service, slices)
            };
            match hit {
                Some(hit) => {
                    resolved.insert(key, hit);
                }
                None => todo.push((key, port, service, slices)),
            }
        }
    }
    let fresh = parallel_map(
        &todo,
        parallel_from / 2,
        |((ns, name, _), port, service, slices)| resolve_now(ns, name, port, *service, slices, ctx),
    );
    memos.reserve(
        todo.iter()
            .map(|((namespace, name, _), ..)| (*namespace, *name)),
    );
    for ((key, port, service, slices), resolution) in todo.iter().zip(fresh) {
        memos.keep_service(
            key.0,
            key.1,
            port,
            *service,
            slices,
            Arc::clone(&resolution),
        );
        resolved.insert(*key, resolution);
    }
    resolved
}

/// [`resolve_ahead`] with nothing in `memos` (the compile from nothing): the Routes are split
/// into parts (at least `parallel_from / 2` each), and each part's Service ports looked up and
/// resolved on a thread of its own; a port several parts name is resolved by each, and the
/// first resolution kept.
fn resolve_all<'a>(
    snap: &'a Snapshot,
    backends: &Backends<'a>,
    memos: &mut ServiceMemos,
    ctx: &CompileContext,
    parallel_from: usize,
) -> HashMap<(&'a str, &'a str, i32), Arc<Resolution>> {
    let threads = threads_for(snap.routes.len(), parallel_from / 2);
    let parts: Vec<&[Arc<StoredRoute>]> = snap
        .routes
        .chunks(snap.routes.len().div_ceil(threads).max(1))
        .collect();
    let parts = parallel_parts(parts, |routes| {
        let mut seen = HashSet::with_capacity(routes.len());
        let mut made = Vec::with_capacity(routes.len());
        for r in routes {
            let namespace = &*r.meta.id.namespace;
            for svc in r.spec.to.iter().filter_map(|t| t.service.as_ref()) {
                let key = (namespace, svc.name.as_str(), svc.port);
                if !seen.insert(key) {
                    continue;
                }
                let port = backends::ServicePort::Number(svc.port);
                let (service, slices) = backends.of(key.0, key.1);
                let resolution = resolve_now(key.0, key.1, &port, service, slices, ctx);
                made.push((key, port, service, slices, resolution));
            }
        }
        made
    });
    let mut resolved = HashMap::with_capacity(parts.iter().map(Vec::len).sum());
    memos.reserve(
        parts
            .iter()
            .flatten()
            .map(|((ns, name, _), ..)| (*ns, *name)),
    );
    for (key, port, service, slices, resolution) in parts.into_iter().flatten() {
        if let std::collections::hash_map::Entry::Vacant(slot) = resolved.entry(key) {
            memos.keep_service(
                key.0,
                key.1,
                &port,
                service,
                slices,
                Arc::clone(&resolution),
            );
            slot.insert(resolution);
        }
    }
    resolved
}

/// [`backends::resolve_service`] under the context's address policy and setting.
fn resolve_now(
    namespace: &str,
    name: &str,
    port: &backends::ServicePort,
    service: Option<&Arc<ServiceRecord>>,
    slices: &[&Arc<SliceRecord>],
    ctx: &CompileContext,
) -> Arc<Resolution> {
    Arc::new(backends::resolve_service(
        namespace,
        name,
        port,
        service.map(Arc::as_ref),
        slices,
        &ctx.address_policy,
        ctx.allow_external_name,
    ))
}

/// Why a TLS Secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("Secret {0} not found")]
    NotFound(String),
    #[error("Secret {0} is not of type kubernetes.io/tls")]
    NotTls(String),
    #[error("Secret {0} lacks {1}")]
    MissingKey(String, &'static str),
    #[error("Secret {secret}: {source}")]
    Invalid {
        secret: String,
        #[source]
        source: crate::routing::certs::CertError,
    },
}

impl<'a> Index<'a> {
    /// The index of `snap`, with `backends` when made already.
    fn new(
        snap: &'a Snapshot,
        memo: Cache,
        cel: &'a ParsedExpressions,
        backends: Option<Backends<'a>>,
    ) -> Self {
        let ns_name = |m: &'a ObjectMeta| {
            (
                m.namespace.as_deref().unwrap_or_default(),
                m.name.as_deref().unwrap_or_default(),
            )
        };
        Index {
            snap,
            backends: backends.map_or_else(OnceCell::new, OnceCell::from),
            secrets: snap
                .secrets
                .iter()
                .map(|s| (ns_name(&s.metadata), s.as_ref()))
                .collect(),
            memo: RefCell::new(memo),
            cel,
        }
    }

    /// The Service `namespace/name` and `port` resolved into targets (see
    /// [`backends::resolve_service`]), from the memo when the objects did not change.
    fn resolve(
        &self,
        namespace: &str,
        name: &str,
        port: &backends::ServicePort,
        ctx: &CompileContext,
    ) -> Arc<Resolution> {
        if let Some(hit) = self
            .memo
            .borrow_mut()
            .services()
            .unchanged_service(namespace, name, port)
        {
            return hit;
        }
        let backends = self.backends.get_or_init(|| Backends::new(self.snap));
        let (service, slices) = backends.of(namespace, name);
        let cached = self
            .memo
            .borrow_mut()
            .services()
            .service(namespace, name, port, service, slices);
        if let Some(hit) = cached {
            return hit;
        }
        let resolution = resolve_now(namespace, name, port, service, slices, ctx);
        self.memo.borrow_mut().services().keep_service(
            namespace,
            name,
            port,
            service,
            slices,
            Arc::clone(&resolution),
        );
        resolution
    }

    /// Compiles the units of `routes` (just checked, [`Cache::check_specs`]) on several threads
    /// when there are at least `parallel_from` of them, and keeps them in the memo, with the
    /// Service ports they name `resolved` ahead (others are resolved as [`Index::resolve`]
    /// would, without the memo). Returns the units by the Routes' place in the snapshot and,
    /// with `drafts`, what each contributes when that needs no more lookups ([`route::draft`]).
    fn units_ahead(
        &self,
        routes: &[cache::Checked],
        resolved: &HashMap<(&'a str, &'a str, i32), Arc<Resolution>>,
        ctx: &CompileContext,
        parallel_from: usize,
        drafts: bool,
    ) -> (
        Vec<Option<Arc<route::Unit>>>,
        Vec<Option<table::Contribution>>,
    ) {
        let backends = self.backends.get_or_init(|| Backends::new(self.snap));
        let resolve = |ns: &str, name: &str, port: &backends::ServicePort| {
            let known = match port {
                backends::ServicePort::Number(n) => resolved.get(&(ns, name, *n)).cloned(),
                backends::ServicePort::Name(_) => None,
            };
            known.unwrap_or_else(|| {
                let (service, slices) = backends.of(ns, name);
                resolve_now(ns, name, port, service, slices, ctx)
            })
        };
        let units = parallel_map(routes, parallel_from / 2, |(_, obj, spec)| {
            let unit = Arc::new(route::unit_with(obj, spec, &resolve, ctx));
            let draft = drafts.then(|| route::draft(obj, &unit)).flatten();
            (unit, draft)
        });
        let mut memo = self.memo.borrow_mut();
        memo.reserve_routes(routes.len());
        let mut ahead = vec![None; self.snap.routes.len()];
        let mut made = Vec::new();
        if drafts {
            made.resize_with(self.snap.routes.len(), || None);
        }
        for ((i, obj, spec), (unit, draft)) in routes.iter().zip(units) {
            memo.keep_route(obj, Arc::clone(spec), Arc::clone(&unit));
            if let Some(slot) = ahead.get_mut(*i) {
                *slot = Some(unit);
            }
            if let Some(slot) = made.get_mut(*i) {
                *slot = draft;
            }
        }
        (ahead, made)
    }

    /// The certificate in a TLS Secret of `namespace` (never another namespace's).
    fn secret(&self, namespace: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(&(namespace, name)).copied()
    }

    fn tls_certificate(&self, namespace: &str, name: &str) -> Result<Certificate, SecretError> {
        let id = format!("{namespace}/{name}");
        let secret = self
            .secrets
            .get(&(namespace, name))
            .ok_or_else(|| SecretError::NotFound(id.clone()))?;
        if secret.type_.as_deref() != Some("kubernetes.io/tls") {
            return Err(SecretError::NotTls(id));
        }
        let data = secret.data.as_ref();
        let get = |k: &'static str| {
            data.and_then(|d| d.get(k))
                .map(|b| b.0.as_slice())
                .ok_or_else(|| SecretError::MissingKey(id.clone(), k))
        };
        let (crt, key) = (get("tls.crt")?, get("tls.key")?);
        parse_pem_pair(crt, key).map_err(|source| SecretError::Invalid {
            secret: id.clone(),
            source,
        })
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A resolved Service backend (see [`Index::resolve`]) as a weighted [`Backend`]: its ready
/// endpoints, or its DNS name when it has no EndpointSlices. `scheme` is the route's; a Service
/// port's `appProtocol` may upgrade `http` to `https`.
fn service_backend(
    resolution: &Resolution,
    weight: u32,
    ssh: bool,
) -> Result<(Backend, Vec<String>), Problem> {
    let resolved = resolution.as_ref().map_err(|e| {
        let reason = match e {
            backends::BackendError::ExternalNameNotAllowed { .. }
            | backends::BackendError::Forbidden { .. } => "BackendNotAllowed",
            _ => "BackendNotFound",
        };
        Problem::refs(reason, e.to_string())
    })?;
    let scheme = if ssh {
        UpstreamScheme::Ssh
    } else {
        resolved.scheme_hint.unwrap_or(UpstreamScheme::Http)
    };
    let upstreams = resolved
        .targets
        .iter()
        .map(|target| Upstream::new(scheme, target.clone(), weight, String::new()))
        .collect();
    Ok((Backend { weight, upstreams }, resolved.dropped.clone()))
}

/// A URL backend, after the SSRF rules.
fn url_backend(url: &str, weight: u32, ctx: &CompileContext) -> Result<Backend, Problem> {
    let upstream = parse_url_upstream(url, weight, &ctx.address_policy).map_err(|e| {
        let reason = if e.is_forbidden() {
            "BackendNotAllowed"
        } else {
            "InvalidBackend"
        };
        Problem::refs(reason, e.to_string())
    })?;
    Ok(Backend {
        weight,
        upstreams: vec![upstream],
    })
}

/// A TLS Secret reference of `namespace` as a certificate for `host`, or the problem with it.
/// Names with a `/` are references into another namespace and are refused.
fn certificate_for(
    namespace: &str,
    secret: &str,
    hosts: &[&HostPattern],
    index: &Index<'_>,
    ctx: &CompileContext,
) -> Result<(Certificate, Vec<Problem>), Problem> {
    if secret.contains('/') {
        return Err(Problem::refs(
            "RefNotPermitted",
            format!(
                "TLS Secret {secret:?} is not in namespace {namespace}; references across namespaces are not allowed"
            ),
        ));
    }
    let cert = index.tls_certificate(namespace, secret).map_err(|e| {
        let reason = match e {
            SecretError::NotFound(_) => "SecretNotFound",
            _ => "InvalidCertificate",
        };
        Problem::refs(reason, e.to_string())
    })?;
    let mut warnings = Vec::new();
    if cert.expired_at(ctx.now) {
        warnings.push(Problem::refs(
            "CertificateExpired",
            format!("the certificate in Secret {namespace}/{secret} has expired"),
        ));
    }
    for host in hosts {
        if !cert.covers_pattern(host) {
            warnings.push(Problem::refs(
                "CertificateMismatch",
                format!("the certificate in Secret {namespace}/{secret} does not cover {host}"),
            ));
        }
    }
    Ok((cert, warnings))
}
