//! From what each object contributes (its problems, its claims on hosts and paths, SSH names and
//! certificates) to the [`Table`] and the [`Report`]s, changing only what a change touches.
//!
//! The [`Claims`] a compile leaves behind (in the [`super::Cache`]) hold every object's
//! contribution, the claimants of each host and path ordered as conflicts are settled (rank, then
//! id, then the order the object listed them), the route table host by host, and the reports.
//! The next compile withdraws the claims of objects that are gone or compiled again, adds the
//! new ones, rebuilds only the hosts whose claimants changed (the other hosts' parts are shared
//! with the last table) and makes again only the reports of objects that changed or share a claim
//! with one that did. Routes that need no per-compile check (no TLS Secret: certificate expiry
//! moves with time) and whose unit is unchanged are not contributed again at all; Ingresses and
//! Routes with TLS are, on every compile. From empty claims, this is the whole compile.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::route::Unit;
use super::{CompileContext, Meta, ObjectKey, Problem, RESERVED_PREFIXES, Rank, Report};
use crate::controller::snapshot::StoredRoute;
use crate::routing::certs::{CertStore, CertStoreBuilder, Certificate};
use crate::routing::route::Route;
use crate::routing::{Entry, HostPattern, PathMatch, RefuseReason, Refused, RouteTable};

/// What the table and the reports are made of, carried from one compile to the next.
#[derive(Default)]
pub(crate) struct Claims {
    /// The route table as of the last compile (its reservations are the compile context's:
    /// the cache is dropped when those change). `None` before the first compile.
    table: Option<RouteTable<Route>>,
    /// Claimants by host, then path, in the order conflicts settle them: the first one wins.
    http: HashMap<HostPattern, Paths>,
    /// Claimants by SSH name, likewise.
    ssh: BTreeMap<String, Vec<Claimant>>,
    /// The SSH winners.
    ssh_table: BTreeMap<String, Arc<Route>>,
    /// Every object's contribution, by id (`Route team-a/web`).
    /// Boxed: the map keeps room for up to twice as many entries as it holds.
    objects: HashMap<Arc<str>, Box<Object>>,
    reports: BTreeMap<ObjectKey, Arc<Report>>,
    /// The Route objects of the last snapshot by address (holding them keeps the address
    /// theirs), with the compile that last saw each: an object seen before compiles as it did
    /// while the Services and EndpointSlices are unchanged, and one not seen again is gone.
    routes: std::collections::HashMap<
        usize,
        (Arc<StoredRoute>, u64),
        BuildHasherDefault<AddressHasher>,
    >,
    /// Objects contributed without a unit (Ingresses, Routes with TLS): contributed again by
    /// every compile they are still in.
    transient: Vec<Arc<str>>,
    /// Two objects had one key: the next compile is done in full.
    had_duplicates: bool,
}

/// Hashes an address (already unique; only its bits need spreading).
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0 ^ u64::from(*b));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        // A folded multiply: every input bit reaches the low bits the table indexes with.
        let m = u128::from(n ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// One claim on a host and path (or an SSH name).
struct Claimant {
    rank: Rank,
    id: Arc<str>,
    /// Its place among its object's claims.
    seq: u32,
    route: Arc<Route>,
}

impl Claimant {
    fn order(&self) -> (&Rank, &str, u32) {
        (&self.rank, &self.id, self.seq)
    }

    fn is(&self, id: &str, seq: u32) -> bool {
        *self.id == *id && self.seq == seq
    }
}

/// The claimants of one host's paths, by path. A sorted list rather than a map: most hosts have
/// one path, and a `BTreeMap` node holds room for eleven (~650 bytes a host).
#[derive(Default)]
struct Paths(Vec<(PathMatch, Vec<Claimant>)>);

impl Paths {
    fn find(&self, path: &PathMatch) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| p.cmp(path))
    }

    fn get(&self, path: &PathMatch) -> Option<&Vec<Claimant>> {
        self.find(path).ok().map(|i| &self.0[i].1)
    }

    /// Removes the claimants `keep` refuses from `path`'s list, and the path once none is left.
    fn retain(&mut self, path: &PathMatch, keep: impl FnMut(&Claimant) -> bool) {
        if let Ok(i) = self.find(path) {
            self.0[i].1.retain(keep);
            if self.0[i].1.is_empty() {
                self.0.remove(i);
            }
        }
    }

    /// Adds a claimant in conflict order.
    fn insert(&mut self, path: &PathMatch, claimant: Claimant) {
        let list = match self.find(path) {
            Ok(i) => &mut self.0[i].1,
            Err(i) => {
                self.0.insert(i, (path.clone(), Vec::with_capacity(1)));
                &mut self.0[i].1
            }
        };
        let at = list.partition_point(|c| c.order() <= claimant.order());
        list.insert(at, claimant);
    }

    /// Adds a claimant anywhere: [`Paths::settle`] must follow before any other call. Claims
    /// from nothing go this way, so a host with many paths is sorted once, not kept sorted.
    fn push(&mut self, path: &PathMatch, claimant: Claimant) {
        self.0.push((path.clone(), vec![claimant]));
    }

    /// Sorts what [`Paths::push`] added: paths in order, one list per path, claimants in
    /// conflict order.
    fn settle(&mut self) {
        self.0.sort_by(|(a, _), (b, _)| a.cmp(b));
        self.0.dedup_by(|(path, later), (kept_path, kept)| {
            let same = path == kept_path;
            if same {
                kept.append(later);
            }
            same
        });
        for (_, list) in &mut self.0 {
            list.sort_by(|a, b| a.order().cmp(&b.order()));
        }
        self.0.shrink_to_fit();
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An object's contribution as kept between compiles.
struct Object {
    key: ObjectKey,
    uid: Option<String>,
    generation: Option<i64>,
    url: Option<String>,
    /// Its own problems, those of its claims that were refused before conflicts included.
    problems: Vec<Problem>,
    /// Its admitted claims, with their `seq`.
    http: Vec<(HostPattern, PathMatch, u32)>,
    ssh: Vec<(String, u32)>,
    /// The unit a Route contributed from, when the next compile may keep the contribution as
    /// long as the unit stays the same.
    unit: Option<Arc<Unit>>,
    /// The address of the Route object it was contributed or last kept from (0 for others).
    source: usize,
    /// The compile that last kept or made it.
    seen: u64,
}

/// What one object contributes in this compile, before it meets the others.
struct Contribution {
    id: Arc<str>,
    object: Object,
    entries: Vec<(Entry<Route>, Rank)>,
    ssh: Vec<(String, Arc<Route>, Rank)>,
    certs: Vec<(HostPattern, Certificate, Rank)>,
}

/// What [`Builder::finish`] gives.
pub(crate) struct Finished {
    pub(super) routes: RouteTable<Route>,
    pub(super) certs: CertStore,
    pub(super) ssh: BTreeMap<String, Arc<Route>>,
    pub(super) reports: BTreeMap<ObjectKey, Arc<Report>>,
    pub(super) claims: Claims,
    /// The uids of Routes that left the snapshot.
    pub(super) gone_uids: Vec<String>,
}

/// An object's contribution in a [`Builder`].
pub(crate) type Obj = usize;

/// Collects the contributions of one compile, then settles them against the [`Claims`] of
/// the last.
pub(crate) struct Builder {
    claims: Claims,
    serial: u64,
    /// Every object is contributed (no [`Builder::keep`] or [`Builder::skip`]).
    full: bool,
    /// No Service or EndpointSlice changed since the last compile.
    backends_unchanged: bool,
    new: Vec<Contribution>,
    by_id: HashMap<Arc<str>, Obj>,
    /// An object key came twice: the compile is done again in full, where they are merged.
    pub(super) duplicate: bool,
    /// Route objects whose contribution another object (of the same key) now makes or keeps:
    /// they must have left the snapshot, else two objects have one key.
    replaced: Vec<usize>,
    default_certificate: Option<Certificate>,
}

impl Builder {
    /// A builder over the claims of the last compile; `full` ignores them and contributes every
    /// object.
    pub(super) fn new(
        ctx: &CompileContext,
        mut claims: Claims,
        serial: u64,
        full: bool,
        backends_unchanged: bool,
    ) -> Self {
        let full = full || claims.had_duplicates;
        if full {
            // What the last snapshot held still tells which objects are gone.
            claims = Claims {
                routes: std::mem::take(&mut claims.routes),
                ..Claims::default()
            };
        }
        if claims.table.is_none() {
            let mut table = RouteTable::builder();
            if let Some(host) = &ctx.authenticate_host {
                table.reserve_host(host);
            }
            for p in RESERVED_PREFIXES {
                table.reserve_prefix(p);
            }
            claims.table = Some(table.build().0);
        }
        Builder {
            claims,
            serial,
            full,
            backends_unchanged,
            new: Vec::new(),
            by_id: HashMap::new(),
            duplicate: false,
            replaced: Vec::new(),
            default_certificate: None,
        }
    }

    /// Room for `routes` Routes and `others` other objects at once, when nothing was
    /// contributed before (the compile from nothing): growing these one by one copied every
    /// contribution made so far, each time.
    pub(super) fn expect(&mut self, routes: usize, others: usize) {
        if self.claims.objects.is_empty() {
            self.new.reserve(routes + others);
            self.by_id.reserve(routes + others);
            self.claims.routes.reserve(routes);
        }
    }

    /// The same builder, to contribute every object again (after [`Builder::duplicate`]).
    pub(super) fn into_full(self, ctx: &CompileContext) -> Self {
        Builder::new(ctx, self.claims, self.serial, true, self.backends_unchanged)
    }

    /// Whether the Route `r` is the very object of the last snapshot and compiles as it did:
    /// then it contributes what it did last time and needs no look at all. Every Route of the
    /// snapshot passes here first.
    pub(super) fn skip(&mut self, r: &Arc<StoredRoute>) -> bool {
        let serial = self.serial;
        match self.claims.routes.entry(Arc::as_ptr(r) as usize) {
            MapEntry::Occupied(mut seen) => {
                let seen = &mut seen.get_mut().1;
                if *seen == serial {
                    // The same object twice in one snapshot.
                    if !self.full {
                        self.duplicate = true;
                    }
                    return false;
                }
                *seen = serial;
                // Certificates are checked on every compile (they expire with time).
                !self.full && self.backends_unchanged && r.spec.tls.is_none()
            }
            MapEntry::Vacant(slot) => {
                slot.insert((Arc::clone(r), serial));
                false
            }
        }
    }

    /// Keeps what the Route with `id` contributed last time, when it was made from `unit`:
    /// true when kept (then nothing else is to be contributed for it).
    pub(super) fn keep(&mut self, id: &str, unit: &Arc<Unit>, source: &Arc<StoredRoute>) -> bool {
        if self.full {
            return false;
        }
        let source = Arc::as_ptr(source) as usize;
        let Some(object) = self.claims.objects.get_mut(id) else {
            return false;
        };
        if !object.unit.as_ref().is_some_and(|u| Arc::ptr_eq(u, unit)) {
            return false;
        }
        if object.seen == self.serial || self.by_id.contains_key(id) {
            self.duplicate = true;
        }
        if object.source != source {
            self.replaced.push(object.source);
            object.source = source;
        }
        object.seen = self.serial;
        true
    }

    /// Whether an object whose contribution another one took over is still in the snapshot
    /// (two objects with one key). Call once every object passed [`Builder::skip`].
    pub(super) fn has_twins(&self) -> bool {
        self.replaced.iter().any(|addr| {
            self.claims
                .routes
                .get(addr)
                .is_some_and(|(_, seen)| *seen == self.serial)
        })
    }

    /// Starts the contribution of an object, `id` being its key as text. A second object with
    /// the same key (only possible in a hand-made snapshot) shares the contribution of the first.
    pub(super) fn open(&mut self, key: &ObjectKey, id: Arc<str>, meta: &impl Meta) -> Obj {
        debug_assert_eq!(*id, *key.to_string());
        if let Some(&o) = self.by_id.get(&id) {
            if self.full {
                self.claims.had_duplicates = true;
            } else {
                self.duplicate = true;
            }
            return o;
        }
        // Kept already, or another object (another uid) with this key: perhaps two objects with
        // one key, which only a compile in full can tell.
        if self
            .claims
            .objects
            .get(&id)
            .is_some_and(|o| o.seen == self.serial || o.uid.as_deref() != meta.uid())
        {
            self.duplicate = true;
        }
        self.new.push(Contribution {
            id: Arc::clone(&id),
            object: Object {
                key: key.clone(),
                uid: meta.uid().map(str::to_owned),
                generation: meta.generation(),
                url: None,
                problems: Vec::new(),
                http: Vec::new(),
                ssh: Vec::new(),
                unit: None,
                source: 0,
                seen: self.serial,
            },
            entries: Vec::new(),
            ssh: Vec::new(),
            certs: Vec::new(),
        });
        self.by_id.insert(id, self.new.len() - 1);
        self.new.len() - 1
    }

    pub(super) fn problem(&mut self, obj: Obj, p: Problem) {
        self.new[obj].object.problems.push(p);
    }

    pub(super) fn problems(&mut self, obj: Obj, p: impl IntoIterator<Item = Problem>) {
        self.new[obj].object.problems.extend(p);
    }

    pub(super) fn set_url(&mut self, obj: Obj, url: String) {
        self.new[obj].object.url = Some(url);
    }

    /// The Route object contributing, and the unit that lets the next compile keep this
    /// contribution while the Route compiles to it again (`None`: contributed again each time).
    pub(super) fn set_source(
        &mut self,
        obj: Obj,
        source: &Arc<StoredRoute>,
        unit: Option<Arc<Unit>>,
    ) {
        let source = Arc::as_ptr(source) as usize;
        let c = &mut self.new[obj];
        if let Some(old) = self.claims.objects.get(&c.id)
            && old.source != 0
            && old.source != source
        {
            self.replaced.push(old.source);
        }
        c.object.source = source;
        c.object.unit = unit;
    }

    pub(super) fn add_entry(&mut self, obj: Obj, entry: Entry<Route>, rank: Rank) {
        self.new[obj].entries.push((entry, rank));
    }

    pub(super) fn add_ssh(&mut self, obj: Obj, name: String, route: Arc<Route>, rank: Rank) {
        self.new[obj].ssh.push((name, route, rank));
    }

    pub(super) fn add_cert(&mut self, obj: Obj, host: HostPattern, cert: Certificate, rank: Rank) {
        self.new[obj].certs.push((host, cert, rank));
    }

    pub(super) fn default_certificate(&mut self, cert: Certificate) {
        self.default_certificate = Some(cert);
    }

    /// Settles this compile's contributions against the last compile's claims: the routes,
    /// certificates and SSH routes to serve, every object's report, and the claims for the next
    /// compile.
    pub(super) fn finish(self) -> Finished {
        let Builder {
            mut claims,
            serial,
            new,
            default_certificate,
            ..
        } = self;
        let Claims {
            table,
            http,
            ssh,
            ssh_table,
            objects,
            reports,
            routes,
            transient,
            had_duplicates: _,
        } = &mut claims;
        let Some(table) = table.as_mut() else {
            unreachable!("Builder::new makes the table");
        };
        // From empty claims (the first compile, or one in full) every host and every object is
        // touched: they are rebuilt from the claims at the end, with no sets to keep.
        let fresh = objects.is_empty() && http.is_empty() && ssh.is_empty();
        let mut touched_http: HashSet<(HostPattern, PathMatch)> = HashSet::new();
        let mut touched_ssh: BTreeSet<String> = BTreeSet::new();
        let mut affected: HashSet<Arc<str>> = HashSet::new();
        if fresh {
            let entries = new.iter().map(|c| c.entries.len()).sum::<usize>();
            http.reserve(entries);
            objects.reserve(new.len());
            reports.clear();
        }

        // Withdraw the claims of objects that are gone or contributed again: those contributed
        // now, those contributed on every compile, and Routes not in this snapshot (unless kept
        // under their id by a newer version of them).
        let mut gone_uids = Vec::new();
        let mut withdraw: Vec<Arc<str>> = std::mem::take(transient);
        withdraw.extend(new.iter().map(|c| Arc::clone(&c.id)));
        for (_, (route, _)) in routes.extract_if(|_, (_, seen)| *seen != serial) {
            let meta = &route.meta.id;
            let id = format!("Route {}/{}", meta.namespace, meta.name);
            if objects.get(id.as_str()).is_none_or(|o| o.seen != serial) {
                withdraw.push(id.into());
            }
            gone_uids.extend(meta.uid.as_deref().map(str::to_owned));
        }
        for id in withdraw {
            let Some(old) = objects.remove(&id) else {
                continue;
            };
            for (host, path, _) in old.http {
                if let Some(paths) = http.get_mut(&host) {
                    paths.retain(&path, |c| c.id != id);
                    if paths.is_empty() {
                        http.remove(&host);
                    }
                }
                touched_http.insert((host, path));
            }
            for (name, _) in old.ssh {
                if let Some(list) = ssh.get_mut(&name) {
                    list.retain(|c| c.id != id);
                    if list.is_empty() {
                        ssh.remove(&name);
                    }
                }
                touched_ssh.insert(name);
            }
            reports.remove(&old.key);
        }

        // Add the new ones.
        let mut certs = CertStoreBuilder::new();
        if let Some(cert) = default_certificate {
            certs.default_certificate(cert);
        }
        // Ids that claimed a host and path (certificate refusals are reported to those only).
        let mut entered: HashSet<Arc<str>> = HashSet::new();
        for c in new {
            let Contribution {
                id,
                mut object,
                entries,
                ssh: ssh_claims,
                certs: cert_claims,
            } = c;
            if !entries.is_empty() {
                entered.insert(Arc::clone(&id));
                object.http.reserve_exact(entries.len());
            }
            for (seq, (entry, rank)) in (0u32..).zip(entries) {
                match table.reserved().admit(entry) {
                    Ok(entry) => {
                        let claimant = Claimant {
                            rank,
                            id: Arc::clone(&id),
                            seq,
                            route: entry.route,
                        };
                        let paths = http.entry(entry.host.clone()).or_default();
                        if fresh {
                            paths.push(&entry.path, claimant);
                        } else {
                            paths.insert(&entry.path, claimant);
                        }
                        object
                            .http
                            .push((entry.host.clone(), entry.path.clone(), seq));
                        if !fresh {
                            touched_http.insert((entry.host, entry.path));
                        }
                    }
                    Err(refused) => object.problems.push(refused_problem(&refused)),
                }
            }
            for (seq, (name, route, rank)) in (0u32..).zip(ssh_claims) {
                let claimant = Claimant {
                    rank,
                    id: Arc::clone(&id),
                    seq,
                    route,
                };
                let list = ssh.entry(name.clone()).or_default();
                let at = list.partition_point(|c| c.order() <= claimant.order());
                list.insert(at, claimant);
                object.ssh.push((name.clone(), seq));
                if !fresh {
                    touched_ssh.insert(name);
                }
            }
            for (host, cert, rank) in cert_claims {
                certs.add(host, cert, id.to_string(), rank);
            }
            if !fresh {
                affected.insert(Arc::clone(&id));
            }
            if object.unit.is_none() {
                transient.push(Arc::clone(&id));
            }
            objects.insert(id, Box::new(object));
        }

        // Rebuild the hosts and SSH names whose claimants changed; everyone claiming them may
        // have won or lost.
        let mut touched_hosts: HashSet<HostPattern> = HashSet::new();
        for (host, path) in touched_http {
            if let Some(list) = http.get(&host).and_then(|paths| paths.get(&path)) {
                affected.extend(list.iter().map(|c| Arc::clone(&c.id)));
            }
            touched_hosts.insert(host);
        }
        if fresh {
            table.reserve_hosts(http.len());
            for (host, paths) in http.iter_mut() {
                paths.settle();
                table.set_host(host.clone(), winners(host, paths));
            }
            touched_ssh.extend(ssh.keys().cloned());
        }
        for host in touched_hosts {
            let entries = http
                .get(&host)
                .map(|paths| winners(&host, paths))
                .unwrap_or_default();
            table.set_host(host, entries);
        }
        for name in touched_ssh {
            match ssh.get(&name).and_then(|list| list.first()) {
                Some(winner) => {
                    ssh_table.insert(name.clone(), Arc::clone(&winner.route));
                }
                None => {
                    ssh_table.remove(&name);
                }
            }
            if let Some(list) = ssh.get(&name) {
                affected.extend(list.iter().map(|c| Arc::clone(&c.id)));
            }
        }

        // Certificates: every object binding one is contributed on each compile.
        let (cert_store, cert_refused) = certs.build();
        let mut cert_problems: HashMap<&str, Vec<Problem>> = HashMap::new();
        for r in &cert_refused {
            if entered.contains(r.owner_id.as_str()) {
                cert_problems
                    .entry(r.owner_id.as_str())
                    .or_default()
                    .push(Problem::refs(
                        "CertificateConflict",
                        format!(
                            "the certificate for {} is already provided by {}, which is older",
                            r.host, r.winner_id
                        ),
                    ));
            }
        }

        if fresh {
            // Every object's report, on several threads when there are many; the map is built
            // from them at once.
            let all: Vec<(&Arc<str>, &Object)> = objects.iter().map(|(id, o)| (id, &**o)).collect();
            let made = super::parallel_map(&all, REPORTS_PER_THREAD, |(id, object)| {
                let extra = cert_problems.get(&***id).cloned().unwrap_or_default();
                Arc::new(report(id, object, http, ssh, extra))
            });
            *reports = all
                .iter()
                .zip(made)
                .map(|((_, object), report)| (object.key.clone(), report))
                .collect();
        } else {
            for id in affected {
                if let Some(object) = objects.get(&id) {
                    let extra = cert_problems.remove(&*id).unwrap_or_default();
                    let report = report(&id, object, http, ssh, extra);
                    reports.insert(object.key.clone(), Arc::new(report));
                }
            }
        }

        let table = table.clone();
        let ssh_table = ssh_table.clone();
        let reports = reports.clone();
        Finished {
            routes: table,
            certs: cert_store,
            ssh: ssh_table,
            reports,
            claims,
            gone_uids,
        }
    }
}

/// The fewest reports worth a thread of their own (each takes a microsecond or two).
pub(super) const REPORTS_PER_THREAD: usize = 2048;

/// The table entries of `host`: the first claimant of each of its paths.
fn winners(host: &HostPattern, paths: &Paths) -> Vec<Entry<Route>> {
    let mut entries = Vec::with_capacity(paths.0.len());
    entries.extend(paths.0.iter().filter_map(|(path, list)| {
        let winner = list.first()?;
        Some(Entry {
            host: host.clone(),
            path: path.clone(),
            route: Arc::clone(&winner.route),
            id: Arc::clone(&winner.id),
        })
    }));
    entries
}

/// The report of object `id`, from its contribution and where its claims stand.
fn report(
    id: &str,
    object: &Object,
    http: &HashMap<HostPattern, Paths>,
    ssh: &BTreeMap<String, Vec<Claimant>>,
    extra: Vec<Problem>,
) -> Report {
    let mut report = Report {
        key: object.key.clone(),
        uid: object.uid.clone(),
        generation: object.generation,
        url: object.url.clone(),
        problems: object.problems.clone(),
        served: 0,
        no_endpoints: false,
    };
    report.problems.extend(extra);
    for (host, path, seq) in &object.http {
        let Some(winner) = http
            .get(host)
            .and_then(|paths| paths.get(path))
            .and_then(|list| list.first())
        else {
            continue;
        };
        if winner.is(id, *seq) {
            report.served += 1;
            if winner.route.backends.iter().all(|b| b.upstreams.is_empty()) {
                report.no_endpoints = true;
            }
        } else if *winner.id == *id {
            report.problems.push(Problem::accepted(
                "Conflict",
                format!("{host} {path} is listed twice; the first one is used"),
            ));
        } else {
            report.problems.push(Problem::accepted(
                "Conflict",
                format!(
                    "{host} {path} is already served by {}, which is older",
                    winner.id
                ),
            ));
        }
    }
    for (name, seq) in &object.ssh {
        let Some(winner) = ssh.get(name).and_then(|list| list.first()) else {
            continue;
        };
        if winner.is(id, *seq) {
            report.served += 1;
        } else {
            report.problems.push(Problem::accepted(
                "Conflict",
                format!(
                    "ssh://{name} is already served by {}, which is older",
                    winner.id
                ),
            ));
        }
    }
    report.problems.sort();
    report.problems.dedup();
    if report.served == 0 {
        report.url = None;
    }
    report
}

/// The problem of a claim the table refused before conflicts (invalid or reserved).
fn refused_problem(r: &Refused) -> Problem {
    let (reason, message) = match &r.reason {
        RefuseReason::Conflict { winner_id } => (
            "Conflict",
            format!(
                "{} {} is already served by {winner_id}, which is older",
                r.host, r.path
            ),
        ),
        RefuseReason::ReservedHost => (
            "ReservedHost",
            format!("{} is Portcullis's authenticate host", r.host),
        ),
        RefuseReason::ReservedPath { prefix } => (
            "ReservedPath",
            format!("{} is reserved for Portcullis on every host", prefix),
        ),
        RefuseReason::InvalidHost(e) => {
            ("InvalidHost", format!("host {:?}: {e}", r.host.to_string()))
        }
        RefuseReason::InvalidPath(e) => ("InvalidPath", format!("path {:?}: {e}", r.path.as_str())),
    };
    Problem::accepted(reason, message)
}
