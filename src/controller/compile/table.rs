//! From what each object contributes (its problems, its claims on hosts and paths, SSH names and
//! certificates) to the [`Table`](crate::routing::route::Table) and the [`Report`]s, changing
//! only what a change touches.
//!
//! The [`Claims`] a compile leaves behind (in the [`super::Cache`]) hold every object's
//! contribution, the claimants of each host and path ordered as conflicts are settled (rank, then
//! id, then the order the object listed them), the route table host by host, and the reports.
//! The next compile withdraws the claims of objects that are gone or compiled again, adds the
//! new ones, rebuilds only the hosts whose claimants changed (the other hosts' parts are shared
//! with the last table) and makes again only the reports of objects that changed or share a claim
//! with one that did. Routes that need no per-compile check (no TLS Secret: certificate expiry
//! moves with time) and whose unit is unchanged are not contributed again at all; Ingresses and
//! Routes with TLS are, on every compile. From empty claims every object is new: its claims are
//! settled host by host on several threads ([`Claims::settle_all`]), as are the reports.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::route::Unit;
use super::{CompileContext, Meta, ObjectKey, Problem, RESERVED_PREFIXES, Rank, Report};
use crate::controller::snapshot::StoredRoute;
use crate::routing::certs::{CertStore, CertStoreBuilder, Certificate};
use crate::routing::matcher::{HostRoutes, Reserved};
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
    fn push(&mut self, path: PathMatch, claimant: Claimant) {
        self.0.push((path, vec![claimant]));
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
    uid: Option<Arc<str>>,
    generation: Option<i64>,
    url: Option<Arc<str>>,
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
pub(crate) struct Contribution {
    id: Arc<str>,
    object: Box<Object>,
    entries: Vec<(Entry<Route>, Rank)>,
    ssh: Vec<(String, Arc<Route>, Rank)>,
    certs: Vec<(HostPattern, Certificate, Rank)>,
}

impl Contribution {
    /// The contribution of an object, `id` being its key as text, with nothing in it yet.
    pub(super) fn new(key: &ObjectKey, id: Arc<str>, meta: &impl Meta) -> Contribution {
        debug_assert_eq!(*id, *key.to_string());
        Contribution {
            id,
            object: Box::new(Object {
                key: key.clone(),
                uid: meta.uid(),
                generation: meta.generation(),
                url: None,
                problems: Vec::new(),
                http: Vec::new(),
                ssh: Vec::new(),
                unit: None,
                source: 0,
                seen: 0,
            }),
            entries: Vec::new(),
            ssh: Vec::new(),
            certs: Vec::new(),
        }
    }

    pub(super) fn problem(&mut self, p: Problem) {
        self.object.problems.push(p);
    }

    pub(super) fn problems(&mut self, p: impl IntoIterator<Item = Problem>) {
        self.object.problems.extend(p);
    }

    pub(super) fn set_url(&mut self, url: Arc<str>) {
        self.object.url = Some(url);
    }

    /// The Route object contributing, and the unit that lets the next compile keep this
    /// contribution while the Route compiles to it again (`None`: contributed again each time).
    pub(super) fn set_source(&mut self, source: &Arc<StoredRoute>, unit: Option<Arc<Unit>>) {
        self.object.source = Arc::as_ptr(source) as usize;
        self.object.unit = unit;
    }

    pub(super) fn add_entry(&mut self, entry: Entry<Route>, rank: Rank) {
        self.entries.push((entry, rank));
    }

    pub(super) fn add_ssh(&mut self, name: String, route: Arc<Route>, rank: Rank) {
        self.ssh.push((name, route, rank));
    }

    pub(super) fn add_cert(&mut self, host: HostPattern, cert: Certificate, rank: Rank) {
        self.certs.push((host, cert, rank));
    }

    /// Adds what `other`, of a second object with the same key, contributes.
    fn merge(&mut self, other: Contribution) {
        let Contribution {
            object,
            entries,
            ssh,
            certs,
            ..
        } = other;
        let Object {
            url,
            problems,
            unit,
            source,
            ..
        } = *object;
        if url.is_some() {
            self.object.url = url;
        }
        if source != 0 {
            self.object.source = source;
            self.object.unit = unit;
        }
        self.object.problems.extend(problems);
        self.entries.extend(entries);
        self.ssh.extend(ssh);
        self.certs.extend(certs);
    }
}

/// What [`Builder::finish`] gives.
pub(crate) struct Finished {
    pub(super) routes: RouteTable<Route>,
    pub(super) certs: CertStore,
    pub(super) ssh: BTreeMap<String, Arc<Route>>,
    pub(super) reports: BTreeMap<ObjectKey, Arc<Report>>,
    pub(super) claims: Claims,
    /// The uids of Routes that left the snapshot.
    pub(super) gone_uids: Vec<Arc<str>>,
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
        self.add(Contribution::new(key, id, meta))
    }

    /// Takes in a contribution made apart ([`Contribution::new`]), as [`Builder::open`] would
    /// start it: one with the key of one already here is added to that one.
    pub(super) fn add(&mut self, mut c: Contribution) -> Obj {
        let old = self.claims.objects.get(&c.id);
        // Kept already, or another object (another uid) with this key: perhaps two objects with
        // one key, which only a compile in full can tell.
        if old.is_some_and(|o| o.seen == self.serial || o.uid != c.object.uid) {
            self.duplicate = true;
        }
        // A Route object contributing what another did last time: that one must be gone.
        if let Some(old) = old
            && old.source != 0
            && c.object.source != 0
            && old.source != c.object.source
        {
            self.replaced.push(old.source);
        }
        if let Some(&o) = self.by_id.get(&c.id) {
            if self.full {
                self.claims.had_duplicates = true;
            } else {
                self.duplicate = true;
            }
            self.new[o].merge(c);
            return o;
        }
        c.object.seen = self.serial;
        self.by_id.insert(Arc::clone(&c.id), self.new.len());
        self.new.push(c);
        self.new.len() - 1
    }

    pub(super) fn problem(&mut self, obj: Obj, p: Problem) {
        self.new[obj].problem(p);
    }

    pub(super) fn add_entry(&mut self, obj: Obj, entry: Entry<Route>, rank: Rank) {
        self.new[obj].add_entry(entry, rank);
    }

    pub(super) fn add_cert(&mut self, obj: Obj, host: HostPattern, cert: Certificate, rank: Rank) {
        self.new[obj].add_cert(host, cert, rank);
    }

    pub(super) fn default_certificate(&mut self, cert: Certificate) {
        self.default_certificate = Some(cert);
    }

    /// Settles this compile's contributions against the last compile's claims: the routes,
    /// certificates and SSH routes to serve, every object's report, and the claims for the next
    /// compile. From nothing, on several threads with at least `per_thread` contributions each.
    pub(super) fn finish(self, per_thread: usize) -> Finished {
        let Builder {
            mut claims,
            serial,
            mut new,
            default_certificate,
            ..
        } = self;

        // Certificates: every object binding one is contributed on each compile. Their refusals
        // are reported to objects that also claimed a host and path.
        let mut certs = CertStoreBuilder::new();
        if let Some(cert) = default_certificate {
            certs.default_certificate(cert);
        }
        let mut entered: HashSet<Arc<str>> = HashSet::new();
        for c in &mut new {
            if !c.entries.is_empty() && !c.certs.is_empty() {
                entered.insert(Arc::clone(&c.id));
            }
            for (host, cert, rank) in c.certs.drain(..) {
                certs.add(host, cert, c.id.to_string(), rank);
            }
        }
        let (cert_store, cert_refused) = certs.build();
        let mut cert_problems: HashMap<&str, Vec<Problem>> = HashMap::new();
        for r in cert_refused
            .iter()
            .filter(|r| entered.contains(r.owner_id.as_str()))
        {
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

        let gone = claims.gone(serial);
        // From empty claims (the first compile, or one in full) every host and every object is
        // new: all are settled at once.
        if claims.objects.is_empty() && claims.http.is_empty() && claims.ssh.is_empty() {
            claims.settle_all(new, &cert_problems, per_thread);
        } else {
            claims.settle_changes(new, gone.ids, cert_problems);
        }
        let Some(table) = &claims.table else {
            unreachable!("Builder::new makes the table");
        };
        Finished {
            routes: table.clone(),
            certs: cert_store,
            ssh: claims.ssh_table.clone(),
            reports: claims.reports.clone(),
            claims,
            gone_uids: gone.uids,
        }
    }
}

/// Routes that left the snapshot ([`Claims::gone`]).
struct Gone {
    /// The ids of their contributions, unless a newer version of them keeps one.
    ids: Vec<Arc<str>>,
    uids: Vec<Arc<str>>,
}

/// A claim on a host and path that the table admitted.
type HttpClaim = (HostPattern, PathMatch, Claimant);

impl Claims {
    /// Whether no object contributed anything: the first compile, or the first after the
    /// settings changed.
    pub(super) fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Forgets the Routes not seen by compile `serial`: they left the snapshot.
    fn gone(&mut self, serial: u64) -> Gone {
        let mut gone = Gone {
            ids: Vec::new(),
            uids: Vec::new(),
        };
        for (_, (route, _)) in self.routes.extract_if(|_, (_, seen)| *seen != serial) {
            let meta = &route.meta.id;
            let id = format!("Route {}/{}", meta.namespace, meta.name);
            if self
                .objects
                .get(id.as_str())
                .is_none_or(|o| o.seen != serial)
            {
                gone.ids.push(id.into());
            }
            gone.uids.extend(meta.uid.clone());
        }
        gone
    }

    /// Settles `new`, every contribution there is, into these empty claims. The contributions
    /// are admitted in parts, their claims sorted into shards by host, and each shard's hosts
    /// settled, one thread per part and per shard; then the reports, likewise.
    fn settle_all(
        &mut self,
        mut new: Vec<Contribution>,
        cert_problems: &HashMap<&str, Vec<Problem>>,
        per_thread: usize,
    ) {
        let Some(table) = self.table.as_mut() else {
            unreachable!("Builder::new makes the table");
        };
        let threads = super::threads_for(new.len(), per_thread);
        let chunk = new.len().div_ceil(threads).max(1);
        let reserved = table.reserved();
        let admitted = super::parallel_parts(new.chunks_mut(chunk).collect(), |part| {
            // Most contributions claim one host and path; hosts spread evenly over shards.
            let room = part.len() / threads + part.len() / 16;
            let mut shards: Vec<Vec<HttpClaim>> =
                (0..threads).map(|_| Vec::with_capacity(room)).collect();
            for c in part {
                admit(c, reserved, |claim| {
                    shards[shard_of(&claim.0, threads)].push(claim);
                });
            }
            shards
        });
        let mut by_shard: Vec<Vec<Vec<HttpClaim>>> = (0..threads).map(|_| Vec::new()).collect();
        for shards in admitted {
            for (shard, claims) in by_shard.iter_mut().zip(shards) {
                shard.push(claims);
            }
        }
        let settled = super::parallel_parts(by_shard, settle_shard);
        let hosts = settled.iter().map(|(http, _)| http.len()).sum();
        self.http.reserve(hosts);
        table.reserve_hosts(hosts);
        for (http, parts) in settled {
            self.http.extend(http);
            for (host, part) in parts {
                table.set_host_part(&host, part);
            }
        }

        for c in &mut new {
            for (seq, (name, route, rank)) in (0u32..).zip(c.ssh.drain(..)) {
                let claimant = Claimant {
                    rank,
                    id: Arc::clone(&c.id),
                    seq,
                    route,
                };
                self.ssh.entry(name.clone()).or_default().push(claimant);
                c.object.ssh.push((name, seq));
            }
        }
        for (name, list) in &mut self.ssh {
            list.sort_by(|a, b| a.order().cmp(&b.order()));
            if let Some(winner) = list.first() {
                self.ssh_table
                    .insert(name.clone(), Arc::clone(&winner.route));
            }
        }

        // Each part's reports sorted on its thread: the map is built from sorted runs.
        let (http, ssh) = (&self.http, &self.ssh);
        let reports = super::parallel_parts(new.chunks(chunk).collect(), |part| {
            let mut made: Vec<(ObjectKey, Arc<Report>)> = part
                .iter()
                .map(|c| {
                    let extra = cert_problems.get(&*c.id).cloned().unwrap_or_default();
                    let report = report(&c.id, &c.object, http, ssh, extra);
                    (c.object.key.clone(), Arc::new(report))
                })
                .collect();
            made.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            made
        });
        let mut all = Vec::with_capacity(new.len());
        reports.into_iter().for_each(|part| all.extend(part));
        self.reports = all.into_iter().collect();

        self.objects.reserve(new.len());
        for c in new {
            if c.object.unit.is_none() {
                self.transient.push(Arc::clone(&c.id));
            }
            self.objects.insert(c.id, c.object);
        }
    }

    /// Settles `new` against the claims of the last compile, withdrawing first those of the
    /// objects contributed again, of those contributed on every compile, and of `gone`: only
    /// the hosts, SSH names and reports these touch are made again.
    fn settle_changes(
        &mut self,
        new: Vec<Contribution>,
        gone: Vec<Arc<str>>,
        mut cert_problems: HashMap<&str, Vec<Problem>>,
    ) {
        let Claims {
            table,
            http,
            ssh,
            ssh_table,
            objects,
            reports,
            transient,
            ..
        } = self;
        let Some(table) = table.as_mut() else {
            unreachable!("Builder::new makes the table");
        };
        let mut touched_http: HashSet<(HostPattern, PathMatch)> = HashSet::new();
        let mut touched_ssh: BTreeSet<String> = BTreeSet::new();
        let mut affected: HashSet<Arc<str>> = HashSet::new();

        let mut withdraw: Vec<Arc<str>> = std::mem::take(transient);
        withdraw.extend(new.iter().map(|c| Arc::clone(&c.id)));
        withdraw.extend(gone);
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

        let reserved = table.reserved();
        for mut c in new {
            admit(&mut c, reserved, |(host, path, claimant)| {
                http.entry(host.clone())
                    .or_default()
                    .insert(&path, claimant);
                touched_http.insert((host, path));
            });
            for (seq, (name, route, rank)) in (0u32..).zip(c.ssh) {
                let claimant = Claimant {
                    rank,
                    id: Arc::clone(&c.id),
                    seq,
                    route,
                };
                let list = ssh.entry(name.clone()).or_default();
                let at = list.partition_point(|c| c.order() <= claimant.order());
                list.insert(at, claimant);
                c.object.ssh.push((name.clone(), seq));
                touched_ssh.insert(name);
            }
            affected.insert(Arc::clone(&c.id));
            if c.object.unit.is_none() {
                transient.push(Arc::clone(&c.id));
            }
            objects.insert(c.id, c.object);
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

        for id in affected {
            if let Some(object) = objects.get(&id) {
                let extra = cert_problems.remove(&*id).unwrap_or_default();
                let report = report(&id, object, http, ssh, extra);
                reports.insert(object.key.clone(), Arc::new(report));
            }
        }
    }
}

/// Admits each host-and-path claim of `c` (its entries are taken) through `reserved`: `claim`
/// gets those admitted, which `c`'s object records; the others become its problems.
fn admit(c: &mut Contribution, reserved: &Reserved, mut claim: impl FnMut(HttpClaim)) {
    let entries = std::mem::take(&mut c.entries);
    c.object.http.reserve_exact(entries.len());
    for (seq, (entry, rank)) in (0u32..).zip(entries) {
        match reserved.admit(entry) {
            Ok(entry) => {
                c.object
                    .http
                    .push((entry.host.clone(), entry.path.clone(), seq));
                let claimant = Claimant {
                    rank,
                    id: Arc::clone(&c.id),
                    seq,
                    route: entry.route,
                };
                claim((entry.host, entry.path, claimant));
            }
            Err(refused) => c.object.problems.push(refused_problem(&refused)),
        }
    }
}

/// The shard of `shards` that settles `host`'s claims.
fn shard_of(host: &HostPattern, shards: usize) -> usize {
    let hash = foldhash::fast::FixedState::default().hash_one(host);
    (hash % shards as u64) as usize
}

/// Each host's part of the route table ([`RouteTable::host_part`]).
type HostParts = Vec<(HostPattern, Option<Arc<HostRoutes<Route>>>)>;

/// One shard's claims (every claim on its hosts) settled: its part of the claims by host, and
/// its hosts' parts of the route table.
fn settle_shard(claims: Vec<Vec<HttpClaim>>) -> (HashMap<HostPattern, Paths>, HostParts) {
    let mut http: HashMap<HostPattern, Paths> =
        HashMap::with_capacity(claims.iter().map(Vec::len).sum());
    for (host, path, claimant) in claims.into_iter().flatten() {
        http.entry(host).or_default().push(path, claimant);
    }
    let parts = http
        .iter_mut()
        .map(|(host, paths)| {
            paths.settle();
            let part = RouteTable::host_part(host.clone(), winners(host, paths));
            (host.clone(), part)
        })
        .collect();
    (http, parts)
}

/// The fewest contributions worth a thread of their own when claims are settled from nothing
/// (each takes a microsecond or two to admit, settle and report on).
pub(super) const PER_THREAD: usize = 2048;

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
