//! What one compile keeps for the next: per-object results that depend only on objects that did
//! not change since. `compile` stays pure: the [`Cache`] comes in as an argument and the new one
//! goes out in [`super::Compiled::cache`]; the publisher carries it from one compile to the next.
//!
//! * A Route's parsed `from` and checked options and policy, by uid, valid while its
//!   `generation` stays (status writes do not move it), and the unit it compiled to (its
//!   problems and its `Arc<Route>`), valid while the Service resolutions it used are too. An
//!   unchanged Route keeps the same `Arc<Route>` from one table to the next.
//! * A Service port's resolution into targets, by namespace, name and port, valid while the
//!   Service and its EndpointSlices are the same objects (the same `Arc`, or the same uid and
//!   `resourceVersion`).
//!
//! An entry is only ever reused when a fresh compile would produce exactly it; a compile with a
//! different address policy or `allowExternalNameServices` starts from an empty cache. Entries
//! of objects that were not in the last snapshot are dropped (Service entries at the next
//! compile where a Service or EndpointSlice changed: until then they are current and not looked
//! up).

use std::fmt;
use std::sync::Arc;

use foldhash::{HashMap, HashSet, HashSetExt};

use super::CompileContext;
use super::backends::{
    BackendError, Identity, ResolvedService, ServicePort, ServiceRecord, SliceRecord,
};
use super::route::{Spec, Unit};
use super::table::Claims;
use crate::controller::snapshot::{Snapshot, StoredRoute};
use crate::policy::ParsedExpressions;
use crate::routing::upstream::AddressPolicy;

/// A Route whose spec [`Cache::check_specs`] checked: its place in the snapshot, itself and its
/// spec.
pub(super) type Checked = (usize, Arc<StoredRoute>, Arc<Spec>);

/// A Service port resolved into targets, or why it cannot be.
pub(super) type Resolution = Result<ResolvedService, BackendError>;

/// The settings cached results depend on: the address policy, `allowExternalNameServices`,
/// why people cannot sign in, whether an idp is configured, the authenticate host (reserved).
type Settings = (AddressPolicy, bool, Option<String>, bool, Option<String>);

/// Per-object compile results carried from one compile to the next. Start with
/// `Cache::default()`; pass the previous [`super::Compiled::cache`] to [`super::compile_with`].
#[derive(Default)]
pub struct Cache {
    /// The settings the entries were compiled under.
    context: Option<Settings>,
    /// Counts compiles; an entry used by the current one carries its number.
    serial: u64,
    /// By Route uid.
    routes: HashMap<Arc<str>, RouteMemo>,
    /// Service ports' resolutions.
    services: ServiceMemos,
    /// The Services and EndpointSlices of the last snapshot, in its order.
    backends: (Vec<Arc<ServiceRecord>>, Vec<Arc<SliceRecord>>),
    /// Every object's contribution to the table and reports, and where its claims stand.
    claims: Claims,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("routes", &self.routes.len())
            .field(
                "services",
                &self
                    .services
                    .by_namespace
                    .values()
                    .map(HashMap::len)
                    .sum::<usize>(),
            )
            .finish()
    }
}

struct RouteMemo {
    /// The version the entry was made from (or a later one of the same generation).
    object: Arc<StoredRoute>,
    spec: Arc<Spec>,
    unit: Option<Arc<Unit>>,
    used: u64,
    /// The compile that made `unit`.
    made: u64,
}

/// The resolutions of Service ports, and what a lookup needs to know of the compile it is
/// made for.
#[derive(Default)]
pub(super) struct ServiceMemos {
    /// By namespace, then Service name; one entry per port asked for.
    by_namespace: HashMap<String, HashMap<String, Vec<ServiceMemo>>>,
    /// The compile in progress ([`Cache::serial`]).
    serial: u64,
    /// Whether this compile's Services and EndpointSlices are exactly the last one's: then
    /// every entry is current without looking at the objects.
    unchanged: bool,
}

struct ServiceMemo {
    port: ServicePort,
    service: Option<Arc<ServiceRecord>>,
    slices: Vec<Arc<SliceRecord>>,
    resolution: Arc<Resolution>,
    used: u64,
}

impl Cache {
    /// This cache for a compile of `snap` under `ctx`: empty when the settings differ from
    /// last time.
    pub(super) fn begin(self, ctx: &CompileContext, snap: &Snapshot) -> Cache {
        let context = (
            ctx.address_policy.clone(),
            ctx.allow_external_name,
            ctx.sign_in_unavailable.clone(),
            ctx.idp_configured,
            ctx.authenticate_host.clone(),
        );
        let mut cache = if self.context.as_ref() == Some(&context) {
            self
        } else {
            Cache {
                context: Some(context),
                ..Cache::default()
            }
        };
        cache.serial += 1;
        let (services, slices) = &cache.backends;
        let unchanged =
            same_objects(services, &snap.services) && same_objects(slices, &snap.endpoint_slices);
        cache.services.unchanged = unchanged;
        cache.services.serial = cache.serial;
        cache
    }

    /// Drops the entries the compile of `snap` that just ended did not use (objects that are
    /// gone).
    pub(super) fn end(mut self, snap: &Snapshot) -> Cache {
        let serial = self.serial;
        if self.services.unchanged {
            // Not looked up (see `ServiceMemos::unchanged`), and still made from the current
            // objects.
            return self;
        }
        self.backends = (snap.services.clone(), snap.endpoint_slices.clone());
        self.services.by_namespace.retain(|_, by_name| {
            by_name.retain(|_, ports| {
                ports.retain(|m| m.used == serial);
                !ports.is_empty()
            });
            !by_name.is_empty()
        });
        self
    }

    /// Drops the entries of Routes that left the snapshot (`uids`), unless a Route with the same
    /// uid used its entry in this compile.
    pub(super) fn forget_routes(&mut self, uids: &[Arc<str>]) {
        for uid in uids {
            if self.routes.get(uid).is_some_and(|m| m.used != self.serial) {
                self.routes.remove(uid);
            }
        }
    }

    /// The claims of the last compile (empty for the first, or after the settings changed).
    pub(super) fn take_claims(&mut self) -> Claims {
        std::mem::take(&mut self.claims)
    }

    /// Keeps the claims of this compile for the next.
    pub(super) fn keep_claims(&mut self, claims: Claims) {
        self.claims = claims;
    }

    /// The number of this compile.
    pub(super) fn serial(&self) -> u64 {
        self.serial
    }

    /// Whether the Services and EndpointSlices are the very objects of the last compile. Then
    /// every unit in the cache is current: the last compile checked it against these objects.
    pub(super) fn backends_unchanged(&self) -> bool {
        self.services.unchanged
    }

    /// The Service port entries.
    pub(super) fn services(&mut self) -> &mut ServiceMemos {
        &mut self.services
    }

    /// The spec results and unit of a Route, when its spec is the one they were made from. The
    /// flag says whether this compile made the unit: then it is current (the Services it names
    /// resolved to what it used).
    pub(super) fn route(
        &mut self,
        obj: &Arc<StoredRoute>,
    ) -> Option<(Arc<Spec>, Option<Arc<Unit>>, bool)> {
        let uid = obj.meta.id.uid.as_deref()?;
        let memo = self.routes.get_mut(uid)?;
        if !same_spec(&memo.object, obj) {
            return None;
        }
        memo.object = Arc::clone(obj);
        memo.used = self.serial;
        Some((
            Arc::clone(&memo.spec),
            memo.unit.clone(),
            memo.made == self.serial,
        ))
    }

    /// Checks the specs of the Routes in `routes` that have no entry for their current spec, on
    /// several threads when there are many (the compile from nothing: every Route); the caller
    /// makes their units and keeps them ([`Cache::keep_route`]) before [`Cache::route`] is
    /// asked. Each uid is checked once, for its first Route, as a compile without this step
    /// would (a later Route with that uid reuses the entry).
    ///
    /// `parallel_from` is the fewest such Routes worth the threads ([`PARALLEL_SPECS`]); with
    /// fewer, nothing is done here. Returns the Routes checked, with their place in `routes`
    /// and their specs.
    ///
    /// While the specs are checked, `meanwhile` runs on a thread of its own with the Service
    /// entries (what comes next does not wait on the specs); its result comes back with the
    /// Routes, `None` when it did not run (nothing to check, or no thread to be had).
    pub(super) fn check_specs<R: Send>(
        &mut self,
        routes: &[Arc<StoredRoute>],
        parallel_from: usize,
        cel: &ParsedExpressions,
        meanwhile: impl FnOnce(&mut ServiceMemos) -> R + Send,
    ) -> (Vec<Checked>, Option<R>) {
        if routes.len().saturating_sub(self.routes.len()) < parallel_from {
            // Most Routes have an entry (a compile after a change): not worth a look at each.
            return (Vec::new(), None);
        }
        let mut uids = HashSet::with_capacity(routes.len());
        let todo: Vec<(usize, &str, &Arc<StoredRoute>)> = routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let uid = r.meta.id.uid.as_deref()?;
                let current = self
                    .routes
                    .get(uid)
                    .is_some_and(|m| same_spec(&m.object, r));
                (uids.insert(uid) && !current).then_some((i, uid, r))
            })
            .collect();
        if todo.len() < parallel_from {
            // Not worth a thread: the compile checks them as it meets them.
            return (Vec::new(), None);
        }
        let services = &mut self.services;
        let (specs, also) = std::thread::scope(|scope| {
            let other = std::thread::Builder::new()
                .name("compile".into())
                .spawn_scoped(scope, move || meanwhile(services));
            let specs = super::parallel_map(&todo, parallel_from / 2, |(_, _, r)| {
                Arc::new(Spec::of(&r.spec, cel))
            });
            let also = match other.map(|t| t.join()) {
                Ok(Ok(also)) => Some(also),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => None,
            };
            (specs, also)
        });
        let checked = todo
            .into_iter()
            .zip(specs)
            .map(|((i, _, r), spec)| (i, Arc::clone(r), spec))
            .collect();
        (checked, also)
    }

    /// Room for `n` more Routes' entries.
    pub(super) fn reserve_routes(&mut self, n: usize) {
        self.routes.reserve(n);
    }

    /// Remembers what a Route compiled to (nothing for an object without a uid).
    pub(super) fn keep_route(&mut self, obj: &Arc<StoredRoute>, spec: Arc<Spec>, unit: Arc<Unit>) {
        let Some(uid) = &obj.meta.id.uid else {
            return;
        };
        let memo = RouteMemo {
            object: Arc::clone(obj),
            spec,
            unit: Some(unit),
            used: self.serial,
            made: self.serial,
        };
        // One lookup: nearly every Route kept here is new to the memo.
        self.routes.insert(Arc::clone(uid), memo);
    }
}

impl ServiceMemos {
    /// Whether no Service port's resolution is kept.
    pub(super) fn is_empty(&self) -> bool {
        self.by_namespace.is_empty()
    }

    /// Whether this compile's Services and EndpointSlices are exactly the last one's.
    pub(super) fn unchanged(&self) -> bool {
        self.unchanged
    }

    /// The resolution of a Service port, when no Service or EndpointSlice changed since the last
    /// compile.
    pub(super) fn unchanged_service(
        &mut self,
        namespace: &str,
        name: &str,
        port: &ServicePort,
    ) -> Option<Arc<Resolution>> {
        if !self.unchanged {
            return None;
        }
        let serial = self.serial;
        let memo = self
            .by_namespace
            .get_mut(namespace)?
            .get_mut(name)?
            .iter_mut()
            .find(|m| m.port == *port)?;
        memo.used = serial;
        Some(Arc::clone(&memo.resolution))
    }

    /// The resolution of a Service port, when the Service and its slices are the ones it was
    /// made from.
    pub(super) fn service(
        &mut self,
        namespace: &str,
        name: &str,
        port: &ServicePort,
        service: Option<&Arc<ServiceRecord>>,
        slices: &[&Arc<SliceRecord>],
    ) -> Option<Arc<Resolution>> {
        let serial = self.serial;
        let memo = self
            .by_namespace
            .get_mut(namespace)?
            .get_mut(name)?
            .iter_mut()
            .find(|m| m.port == *port)?;
        let same_service = match (&memo.service, service) {
            (None, None) => true,
            (Some(a), Some(b)) => same_version(a, b),
            _ => false,
        };
        let same_slices = memo.slices.len() == slices.len()
            && memo
                .slices
                .iter()
                .zip(slices)
                .all(|(a, b)| same_version(a, b));
        if !(same_service && same_slices) {
            return None;
        }
        // Hold the current versions, not the ones they replaced.
        memo.service = service.cloned();
        memo.slices.clear();
        memo.slices.extend(slices.iter().map(|s| Arc::clone(s)));
        memo.used = serial;
        Some(Arc::clone(&memo.resolution))
    }

    /// Room for an entry for each of `services` (namespace and name) not kept yet: growing the
    /// maps one by one moved every entry kept so far, each time.
    pub(super) fn reserve<'k>(&mut self, services: impl IntoIterator<Item = (&'k str, &'k str)>) {
        let mut by_namespace: HashMap<&str, usize> = HashMap::default();
        for (namespace, _) in services {
            *by_namespace.entry(namespace).or_default() += 1;
        }
        for (namespace, n) in by_namespace {
            let by_name = match self.by_namespace.get_mut(namespace) {
                Some(m) => m,
                None => self.by_namespace.entry(namespace.to_owned()).or_default(),
            };
            by_name.reserve(n);
        }
    }

    /// Remembers a Service port's resolution and the objects it was made from.
    pub(super) fn keep_service(
        &mut self,
        namespace: &str,
        name: &str,
        port: &ServicePort,
        service: Option<&Arc<ServiceRecord>>,
        slices: &[&Arc<SliceRecord>],
        resolution: Arc<Resolution>,
    ) {
        let memo = ServiceMemo {
            port: port.clone(),
            service: service.cloned(),
            slices: slices.iter().map(|s| Arc::clone(s)).collect(),
            resolution,
            used: self.serial,
        };
        let by_name = match self.by_namespace.get_mut(namespace) {
            Some(m) => m,
            None => self.by_namespace.entry(namespace.to_owned()).or_default(),
        };
        let ports = match by_name.get_mut(name) {
            Some(p) => p,
            // Nearly every Service is asked for one port.
            None => by_name
                .entry(name.to_owned())
                .or_insert_with(|| Vec::with_capacity(1)),
        };
        match ports.iter_mut().find(|m| m.port == *port) {
            Some(m) => *m = memo,
            None => ports.push(memo),
        }
    }
}

/// The fewest Routes whose specs [`Cache::check_specs`] checks on several threads: below, the
/// threads cost more than they save.
pub(super) const PARALLEL_SPECS: usize = 256;

/// Whether two lists hold the very same objects in the same order.
fn same_objects<K>(a: &[Arc<K>], b: &[Arc<K>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
}

/// Whether two Route versions have the same spec: the same object, or the same uid and
/// `generation` (which the API server moves on every spec change).
fn same_spec(a: &Arc<StoredRoute>, b: &Arc<StoredRoute>) -> bool {
    Arc::ptr_eq(a, b) || {
        let (a, b) = (&a.meta, &b.meta);
        a.id.uid.is_some()
            && a.id.uid == b.id.uid
            && a.generation.is_some()
            && a.generation == b.generation
    }
}

/// Whether two versions of an object are the same: the same `Arc`, or the same uid and
/// `resourceVersion` (which the API server moves on every change).
fn same_version<K: AsRef<Identity>>(a: &Arc<K>, b: &Arc<K>) -> bool {
    Arc::ptr_eq(a, b) || {
        let (a, b): (&Identity, &Identity) = ((**a).as_ref(), (**b).as_ref());
        a.uid.is_some()
            && a.uid == b.uid
            && a.resource_version.is_some()
            && a.resource_version == b.resource_version
    }
}
