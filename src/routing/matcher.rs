//! The route table: built by the controller ([`TableBuilder`] from nothing, or host by host with
//! [`RouteTable::set_host`]), read by the proxy on every request through the pure lookup
//! [`RouteTable::find`].
//!
//! Lookup is two levels of hash maps, never a scan of the routes:
//!
//! 1. the canonical host name in the map of exact hosts; only when the host has no exact entry,
//!    its suffix after the first label in the map of wildcards; only when neither has it, the
//!    catch-all host (Ingress rules without a host, an Ingress default backend). An exact host never falls back to
//!    a wildcard for paths it does not route (the virtual-host model of nginx and Envoy: whoever
//!    owns `a.example.com` owns all of it);
//! 2. within the host, the whole path in a map of `Exact` paths, then the path cut at each
//!    distinct `Prefix` length this host has, longest first, in a map of prefixes, keeping only
//!    cuts on a segment boundary.
//!
//! Step 2 was chosen over a sorted list scanned longest-first and over a trie: its cost is bounded
//! by the host's configuration (the number of distinct prefix lengths, usually one to three), not
//! by its number of paths nor by the request's depth (a hostile 8 KiB path of 4,000 segments costs
//! one pass over its bytes, not a probe per segment), and it is two `HashMap`s instead of a node
//! structure. Maps use the standard SipHash
//! with random keys, since hosts and paths come from clients.
//!
//! Each host pattern's routes are one shared part ([`HostRoutes`] behind an `Arc`): a new table
//! that differs in a few hosts shares every other host's part with the table before it, so
//! publishing a change costs the changed hosts plus one copy of the host maps' pointers.
//!
//! Ports are not part of routing: route hosts are names, and a request for `a.example.com:8443`
//! is routed as `a.example.com` (every listener serves every route, like nginx `server_name` or
//! Envoy's `strip_any_host_port`). Use [`super::canonical_host`] where the port matters.
//!
//! Building is deterministic: the same set of entries in any order gives the same table and the
//! same, sorted, list of refusals.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::host::{canonical_host_name, host_name};
use super::path::{canonical_path, is_canonical_path, prefix_matches, trim_prefix};
use super::{Entry, HostPattern, Match, PathMatch, RefuseReason, Refused};

/// The default conflict rank: (creation time in Unix seconds, `namespace/name`). Lower wins.
pub type Rank = (i64, Arc<str>);

/// The routing table over route payloads `R`. Immutable once published; `Send + Sync` when `R`
/// is. Cloning it copies the host maps and shares every host's routes.
#[derive(Debug)]
pub struct RouteTable<R> {
    exact_hosts: HashMap<Arc<str>, Arc<HostRoutes<R>>>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: HashMap<Arc<str>, Arc<HostRoutes<R>>>,
    /// [`HostPattern::Any`]: hosts with neither an exact nor a wildcard entry.
    any_host: Option<Arc<HostRoutes<R>>>,
    /// Number of entries over all hosts.
    len: usize,
    reserved: Arc<Reserved>,
}

impl<R> Clone for RouteTable<R> {
    fn clone(&self) -> Self {
        RouteTable {
            exact_hosts: self.exact_hosts.clone(),
            wildcard_hosts: self.wildcard_hosts.clone(),
            any_host: self.any_host.clone(),
            len: self.len,
            reserved: Arc::clone(&self.reserved),
        }
    }
}

/// Hosts with at most this many paths are looked up by a scan of their entries, without maps:
/// nearly every host has one or two, and each map costs two allocations.
const SCAN_AT_MOST: usize = 4;

/// The routes of one host pattern: its entries in path order, and (past [`SCAN_AT_MOST`]
/// entries) their indexes by path.
#[derive(Debug)]
pub struct HostRoutes<R> {
    host: HostPattern,
    entries: Vec<Entry<R>>,
    exact: HashMap<Arc<str>, usize>,
    prefix: HashMap<Arc<str>, usize>,
    /// Distinct lengths of the keys of `prefix`, longest first.
    prefix_lens: Vec<usize>,
}

impl<R> HostRoutes<R> {
    /// Indexes the entries of `host` (canonical, one per path).
    fn new(host: HostPattern, entries: Vec<Entry<R>>) -> Self {
        let maps = entries.len() > SCAN_AT_MOST;
        Self::build(host, entries, maps)
    }

    /// With `maps`, the path maps are built (and used by [`HostRoutes::lookup`]) whatever the
    /// number of entries.
    fn build(host: HostPattern, mut entries: Vec<Entry<R>>, maps: bool) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut routes = HostRoutes {
            host,
            exact: HashMap::new(),
            prefix: HashMap::new(),
            prefix_lens: Vec::new(),
            entries: Vec::new(),
        };
        entries.shrink_to_fit();
        if !maps {
            routes.entries = entries;
            return routes;
        }
        for (index, entry) in entries.iter().enumerate() {
            match &entry.path {
                PathMatch::Exact(p) => {
                    routes.exact.insert(Arc::clone(p), index);
                }
                PathMatch::Prefix(p) => {
                    routes.prefix.insert(Arc::clone(p), index);
                    routes.prefix_lens.push(p.len());
                }
            }
        }
        routes.prefix_lens.sort_unstable_by(|a, b| b.cmp(a));
        routes.prefix_lens.dedup();
        routes.entries = entries;
        routes
    }

    /// The best entry for a canonical path: an exact match, else the longest prefix on a
    /// segment boundary. An exact match is never shorter than a matching prefix, so checking it
    /// first is what makes `Exact` beat `Prefix` for the same path.
    fn lookup(&self, path: &str) -> Option<&Entry<R>> {
        if self.exact.is_empty() && self.prefix.is_empty() {
            return self.scan(path);
        }
        if let Some(&i) = self.exact.get(path) {
            return self.entries.get(i);
        }
        let i = self.prefix_lens.iter().find_map(|&len| {
            let candidate = cut(path, len)?;
            self.prefix.get(candidate).copied()
        })?;
        self.entries.get(i)
    }

    /// [`HostRoutes::lookup`] by looking at every entry: the same answer, for few entries.
    fn scan(&self, path: &str) -> Option<&Entry<R>> {
        let mut best: Option<&Entry<R>> = None;
        for entry in &self.entries {
            match &entry.path {
                PathMatch::Exact(p) if **p == *path => return Some(entry),
                PathMatch::Prefix(p)
                    if cut(path, p.len()) == Some(&**p)
                        && best.is_none_or(|b| b.path.as_str().len() < p.len()) =>
                {
                    best = Some(entry);
                }
                _ => {}
            }
        }
        best
    }
}

/// The first `len` bytes of `path` when they end on a segment boundary (the path ends there or
/// a `/` follows, or they are the root `/`): the key a prefix of that length must equal.
fn cut(path: &str, len: usize) -> Option<&str> {
    let candidate = path.get(..len)?;
    match path.as_bytes().get(len) {
        None | Some(b'/') => Some(candidate),
        Some(_) if candidate == "/" => Some(candidate),
        Some(_) => None,
    }
}

/// The hosts and path prefixes no entry may claim.
#[derive(Debug, Default)]
pub struct Reserved {
    hosts: HashSet<String>,
    /// Sorted, distinct.
    prefixes: Vec<String>,
}

impl Reserved {
    /// Checks an entry as [`TableBuilder::build`] does before settling conflicts: its host and
    /// path made canonical (checked without allocating when they already are), and neither
    /// reserved. The refusal names the entry's id and its claim.
    pub fn admit<R>(&self, entry: Entry<R>) -> Result<Entry<R>, Refused> {
        let Entry {
            host: raw_host,
            path: raw_path,
            route,
            id,
        } = entry;
        let refuse = |id: Arc<str>, host: HostPattern, path: PathMatch, reason| Refused {
            id: id.to_string(),
            host,
            path,
            reason,
        };
        let host = if raw_host.is_canonical() {
            raw_host
        } else {
            match raw_host.canonical() {
                Ok(host) => host,
                Err(e) => return Err(refuse(id, raw_host, raw_path, RefuseReason::InvalidHost(e))),
            }
        };
        let path = if raw_path.is_canonical() {
            raw_path
        } else {
            match raw_path.canonical() {
                Ok(path) => path,
                Err(e) => return Err(refuse(id, host, raw_path, RefuseReason::InvalidPath(e))),
            }
        };
        if let HostPattern::Exact(name) = &host
            && self.hosts.contains(&**name)
        {
            return Err(refuse(id, host, path, RefuseReason::ReservedHost));
        }
        if let Some(prefix) = self
            .prefixes
            .iter()
            .find(|p| prefix_matches(p, path.as_str()))
        {
            let reason = RefuseReason::ReservedPath {
                prefix: prefix.clone(),
            };
            return Err(refuse(id, host, path, reason));
        }
        Ok(Entry {
            host,
            path,
            route,
            id,
        })
    }
}

impl<R> Default for RouteTable<R> {
    /// The empty table (no routes, nothing reserved): what is live before the first compile.
    fn default() -> Self {
        TableBuilder::<R>::new().build().0
    }
}

impl<R> RouteTable<R> {
    /// A builder with the default [`Rank`].
    pub fn builder() -> TableBuilder<R> {
        TableBuilder::new()
    }

    /// Pure lookup: `host` is the raw `Host` header or `:authority` (its port is ignored), `path`
    /// the output of [`super::canonical_path`]. A path that is not canonical, an invalid or
    /// reserved host, finds nothing. Exact hosts beat wildcards; among paths the longest prefix on
    /// a segment boundary wins and `Exact` beats `Prefix` for the same path.
    pub fn find(&self, host: &str, path: &str) -> Option<(Match<'_>, &Arc<R>)> {
        let name = host_name(host).ok()?;
        let name = name.as_ref();
        if self.reserved.hosts.contains(name) || !is_canonical_path(path) {
            return None;
        }
        let routes = match self.exact_hosts.get(name) {
            Some(routes) => routes,
            None => name
                .split_once('.')
                .and_then(|(_, suffix)| self.wildcard_hosts.get(suffix))
                .or(self.any_host.as_ref())?,
        };
        let entry = routes.lookup(path)?;
        let matched = Match {
            entry_id: &entry.id,
            matched_prefix: trim_prefix(entry.path.as_str()),
        };
        Some((matched, &entry.route))
    }

    /// Number of accepted entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry was accepted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host parts in host order (exact names, then wildcards, then the catch-all). Sorts
    /// the hosts on each call: for status and rare fallbacks, not for lookups.
    fn sorted_hosts(&self) -> Vec<&HostRoutes<R>> {
        let mut hosts: Vec<&HostRoutes<R>> = self
            .exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .chain(self.any_host.as_ref())
            .map(Arc::as_ref)
            .collect();
        hosts.sort_unstable_by(|a, b| a.host.cmp(&b.host));
        hosts
    }

    /// Every host with at least one entry, canonical, sorted: exact names, then `*.suffix`
    /// patterns (for SNI certificate selection and status).
    pub fn hosts(&self) -> impl Iterator<Item = String> {
        self.sorted_hosts().into_iter().map(|h| h.host.to_string())
    }

    /// Accepted entries with canonical host and path, in (host, path) order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<R>> {
        self.sorted_hosts()
            .into_iter()
            .flat_map(|h| h.entries.iter())
    }

    /// Whether `host` (raw, port ignored) is reserved. [`RouteTable::find`] finds nothing there,
    /// not even through a wildcard.
    pub fn is_reserved_host(&self, host: &str) -> bool {
        canonical_host_name(host).is_ok_and(|name| self.reserved.hosts.contains(&name))
    }

    /// The reserved prefix a canonical path lies under, if any: the proxy serves those paths
    /// itself on every host (`/.portcullis/...`) before it forwards anything.
    pub fn reserved_prefix(&self, path: &str) -> Option<&str> {
        self.reserved
            .prefixes
            .iter()
            .find(|p| prefix_matches(p, path))
            .map(String::as_str)
    }

    /// Accepted entries in no particular order (no sorting, for scans).
    pub fn entries_unordered(&self) -> impl Iterator<Item = &Entry<R>> {
        self.exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .chain(self.any_host.as_ref())
            .flat_map(|h| h.entries.iter())
    }

    /// The reservations entries are checked against ([`Reserved::admit`]).
    pub fn reserved(&self) -> &Reserved {
        &self.reserved
    }

    /// Room for `hosts` more exact hosts (a table filled from nothing).
    pub fn reserve_hosts(&mut self, hosts: usize) {
        self.exact_hosts.reserve(hosts);
    }

    /// Replaces every route of `host` with `entries`: the winners of their claims, one per
    /// path, each admitted by [`RouteTable::reserved`] (canonical, not reserved) and claiming
    /// `host`. No entries removes the host. The other hosts' parts are untouched.
    pub fn set_host(&mut self, host: HostPattern, entries: Vec<Entry<R>>) {
        let part = Self::host_part(host.clone(), entries);
        self.set_host_part(&host, part);
    }

    /// What [`RouteTable::set_host`] puts at `host` for `entries` (`None` for none), made
    /// apart from any table so that many hosts' parts can be made at once.
    pub fn host_part(host: HostPattern, entries: Vec<Entry<R>>) -> Option<Arc<HostRoutes<R>>> {
        debug_assert!(
            entries
                .iter()
                .all(|e| e.host == host && e.path.is_canonical())
        );
        (!entries.is_empty()).then(|| Arc::new(HostRoutes::new(host, entries)))
    }

    /// Puts the part [`RouteTable::host_part`] made for `host` (removes the host for `None`).
    pub fn set_host_part(&mut self, host: &HostPattern, part: Option<Arc<HostRoutes<R>>>) {
        debug_assert!(part.as_ref().is_none_or(|p| p.host == *host));
        if let Some(part) = &part {
            self.len += part.entries.len();
        }
        let old = match host {
            HostPattern::Exact(name) => set(&mut self.exact_hosts, name, part),
            HostPattern::Wildcard(suffix) => set(&mut self.wildcard_hosts, suffix, part),
            HostPattern::Any => std::mem::replace(&mut self.any_host, part),
        };
        if let Some(old) = old {
            self.len -= old.entries.len();
        }
    }
}

/// Puts `part` at `key` (removes the key for `None`), returning what was there.
fn set<R>(
    map: &mut HashMap<Arc<str>, Arc<HostRoutes<R>>>,
    key: &Arc<str>,
    part: Option<Arc<HostRoutes<R>>>,
) -> Option<Arc<HostRoutes<R>>> {
    match part {
        None => map.remove(key),
        Some(part) => match map.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, part)),
            None => map.insert(Arc::clone(key), part),
        },
    }
}

/// Collects entries and reservations, then builds a [`RouteTable`] and the list of refusals.
/// `K` is the conflict rank (lower wins); the controller uses [`Rank`].
#[derive(Debug)]
pub struct TableBuilder<R, K = Rank> {
    entries: Vec<(Entry<R>, K)>,
    reserved_hosts: Vec<String>,
    reserved_prefixes: Vec<String>,
}

impl<R, K> Default for TableBuilder<R, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R, K> TableBuilder<R, K> {
    /// An empty builder.
    pub fn new() -> Self {
        TableBuilder {
            entries: Vec::new(),
            reserved_hosts: Vec::new(),
            reserved_prefixes: Vec::new(),
        }
    }

    /// Reserve a host (the authenticate host): entries claiming it exactly are refused and
    /// lookups there find nothing. Its port, if any, is ignored. Meant for validated settings:
    /// a host with no canonical form is kept as given and can match nothing.
    pub fn reserve_host(&mut self, host: &str) {
        let name = canonical_host_name(host).unwrap_or_else(|_| host.to_owned());
        self.reserved_hosts.push(name);
    }

    /// Reserve a path prefix on every host (`/.portcullis/`, `/.pomerium/`): entries whose path
    /// lies under it are refused. A trailing `/` is ignored. Meant for constants: a prefix with
    /// no canonical form is kept as given and can match nothing.
    pub fn reserve_prefix(&mut self, prefix: &str) {
        let canon = canonical_path(prefix).unwrap_or_else(|_| prefix.to_owned());
        self.reserved_prefixes.push(trim_prefix(&canon).to_owned());
    }
}

impl<R, K: Ord> TableBuilder<R, K> {
    /// Add an entry, in any order. When several entries claim the same host pattern and the same
    /// path match, the lowest `rank` wins (then the lowest id); every other one is refused with
    /// [`RefuseReason::Conflict`], never dropped silently. Should one object claim the same host
    /// and path twice (same rank, same id), its first one added wins.
    pub fn add(&mut self, entry: Entry<R>, rank: K) {
        self.entries.push((entry, rank));
    }

    /// Validate, settle conflicts and index. Refusals are sorted (by id, then claim), so the
    /// result does not depend on the order of [`TableBuilder::add`] calls.
    pub fn build(self) -> (RouteTable<R>, Vec<Refused>) {
        let reserved = Reserved {
            hosts: self.reserved_hosts.into_iter().collect(),
            prefixes: self
                .reserved_prefixes
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let mut refused = Vec::new();
        // Canonical claims with their rank, grouped and ordered by one stable sort: by claim,
        // then rank, then id; equal ones keep their order of addition.
        let mut claims: Vec<(K, Entry<R>)> = Vec::with_capacity(self.entries.len());
        for (entry, rank) in self.entries {
            match reserved.admit(entry) {
                Ok(entry) => claims.push((rank, entry)),
                Err(r) => refused.push(r),
            }
        }
        claims.sort_by(|(ra, a), (rb, b)| {
            (&a.host, &a.path)
                .cmp(&(&b.host, &b.path))
                .then_with(|| ra.cmp(rb))
                .then_with(|| a.id.cmp(&b.id))
        });

        let mut table = RouteTable {
            exact_hosts: HashMap::new(),
            wildcard_hosts: HashMap::new(),
            any_host: None,
            len: 0,
            reserved: Arc::new(reserved),
        };
        // Winners of one host, in path order.
        let mut winners: Vec<Entry<R>> = Vec::new();
        for (_, claimant) in claims {
            match winners.last() {
                Some(winner)
                    if (&winner.host, &winner.path) == (&claimant.host, &claimant.path) =>
                {
                    refused.push(Refused {
                        id: claimant.id.to_string(),
                        host: claimant.host,
                        path: claimant.path,
                        reason: RefuseReason::Conflict {
                            winner_id: winner.id.to_string(),
                        },
                    });
                }
                Some(last) if last.host != claimant.host => {
                    let host = last.host.clone();
                    table.set_host(host, std::mem::take(&mut winners));
                    winners.push(claimant);
                }
                _ => winners.push(claimant),
            }
        }
        if let Some(last) = winners.last() {
            let host = last.host.clone();
            table.set_host(host, winners);
        }
        refused.sort();
        (table, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{HostError, PathError};
    use super::*;

    fn mk_entry(host: &str, path: PathMatch, id: &str) -> Entry<String> {
        Entry {
            host: HostPattern::parse(host),
            path,
            route: Arc::new(id.to_owned()),
            id: id.into(),
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.into())
    }

    fn rank(t: i64, name: &str) -> Rank {
        (t, name.into())
    }

    /// A table from (host, path, id) with ranks in listing order (the first is the oldest).
    fn mk_table(entries: &[(&str, PathMatch, &str)]) -> (RouteTable<String>, Vec<Refused>) {
        let mut b = RouteTable::builder();
        for (i, (host, path, id)) in entries.iter().enumerate() {
            b.add(mk_entry(host, path.clone(), id), rank(i as i64, id));
        }
        b.build()
    }

    /// A host's few paths are found by a scan instead of the maps: over every set of these
    /// paths (exact and prefix), both ways give every request path the same entry.
    #[test]
    fn scanning_a_few_entries_finds_what_the_maps_find() {
        const PATHS: &[&str] = &["/", "/a", "/a/b", "/ab", "/a/b/c", "/b"];
        const REQUESTS: &[&str] = &[
            "/", "/a", "/a/", "/a/b", "/a/bc", "/ab", "/abc", "/a/b/c", "/a/b/c/d", "/b", "/b/",
            "/ba", "/c", "/a//b",
        ];
        let specs: Vec<PathMatch> = PATHS.iter().flat_map(|p| [exact(p), prefix(p)]).collect();
        let mut compared = 0;
        for set in 0u32..(1 << specs.len()) {
            let entries: Vec<Entry<String>> = (0..specs.len())
                .filter(|i| set & (1 << i) != 0)
                .map(|i| mk_entry("a.example", specs[i].clone(), &format!("e{i}")))
                .collect();
            let host = HostPattern::parse("a.example");
            let scanned = HostRoutes::build(host.clone(), entries.clone(), false);
            let mapped = HostRoutes::build(host, entries, true);
            for request in REQUESTS {
                assert_eq!(
                    scanned.lookup(request).map(|e| &e.id),
                    mapped.lookup(request).map(|e| &e.id),
                    "{request} in {:?}",
                    mapped.entries.iter().map(|e| &e.path).collect::<Vec<_>>()
                );
                compared += usize::from(mapped.lookup(request).is_some());
            }
        }
        assert!(compared > 10_000, "most lookups find an entry: {compared}");
    }

    #[track_caller]
    fn route(table: &RouteTable<String>, host: &str, path: &str) -> Option<String> {
        table.find(host, path).map(|(m, r)| {
            assert_eq!(m.entry_id, r.as_str(), "the match names its payload");
            m.entry_id.to_owned()
        })
    }

    #[test]
    fn exact_host_beats_wildcard_and_never_falls_back() {
        let (t, refused) = mk_table(&[
            ("*.example.com", prefix("/"), "wild"),
            ("a.example.com", prefix("/api"), "a-api"),
        ]);
        assert!(refused.is_empty());
        assert_eq!(
            route(&t, "a.example.com", "/api/x").as_deref(),
            Some("a-api")
        );
        assert_eq!(route(&t, "a.example.com", "/other"), None);
        assert_eq!(
            route(&t, "b.example.com", "/other").as_deref(),
            Some("wild")
        );
        assert_eq!(
            route(&t, "B.Example.com.:8443", "/").as_deref(),
            Some("wild")
        );
    }

    #[test]
    fn any_host_catches_only_hosts_nobody_else_claims() {
        let mut b = RouteTable::builder();
        b.reserve_host("auth.example.com");
        for (i, (host, path, id)) in [
            (HostPattern::Any, prefix("/"), "default"),
            (
                HostPattern::Exact("a.example.com".into()),
                prefix("/api"),
                "a",
            ),
            (
                HostPattern::Wildcard("example.com".into()),
                prefix("/w"),
                "w",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let e = Entry {
                host,
                path,
                route: Arc::new(id.to_owned()),
                id: id.into(),
            };
            b.add(e, rank(i as i64, id));
        }
        let (t, refused) = b.build();
        assert!(refused.is_empty());
        assert_eq!(route(&t, "other.test", "/x").as_deref(), Some("default"));
        assert_eq!(route(&t, "localhost:8080", "/").as_deref(), Some("default"));
        // Hosts with their own entries never fall back to the catch-all.
        assert_eq!(route(&t, "a.example.com", "/x"), None);
        assert_eq!(route(&t, "b.example.com", "/x"), None);
        assert_eq!(route(&t, "b.example.com", "/w/1").as_deref(), Some("w"));
        // Nor does the reserved host.
        assert_eq!(route(&t, "auth.example.com", "/"), None);
        assert!(t.hosts().any(|h| h == "*"));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let (t, _) = mk_table(&[("*.example.com", prefix("/"), "wild")]);
        assert_eq!(route(&t, "a.example.com", "/").as_deref(), Some("wild"));
        assert_eq!(
            route(&t, "xn--bcher-kva.example.com", "/").as_deref(),
            Some("wild")
        );
        assert_eq!(
            route(&t, "bücher.example.com", "/").as_deref(),
            Some("wild")
        );
        assert_eq!(route(&t, "a.b.example.com", "/"), None);
        assert_eq!(route(&t, "example.com", "/"), None);
        assert_eq!(route(&t, ".example.com", "/"), None);
        assert_eq!(route(&t, "*.example.com", "/"), None);
        assert_eq!(route(&t, "aexample.com", "/"), None);
        assert_eq!(t.hosts().collect::<Vec<_>>(), ["*.example.com"]);
    }

    #[test]
    fn longest_prefix_on_segment_boundary_wins() {
        let (t, _) = mk_table(&[
            ("h.example", prefix("/"), "root"),
            ("h.example", prefix("/api"), "api"),
            ("h.example", prefix("/api/v1/"), "v1"),
            ("h.example", prefix("/api/v1/users"), "users"),
        ]);
        let cases = [
            ("/", "root"),
            ("/x", "root"),
            ("/apiadmin", "root"),
            ("/api", "api"),
            ("/api/", "api"),
            ("/api/v2", "api"),
            ("/api/v1", "v1"),
            ("/api/v1/", "v1"),
            ("/api/v1/usersx", "v1"),
            ("/api/v1/users", "users"),
            ("/api/v1/users/", "users"),
            ("/api/v1/users/7", "users"),
        ];
        for (path, want) in cases {
            assert_eq!(
                route(&t, "h.example", path).as_deref(),
                Some(want),
                "{path}"
            );
        }
        let (m, _) = t.find("h.example", "/api/v1/x").unwrap();
        assert_eq!(m.matched_prefix, "/api/v1");
        let (m, _) = t.find("h.example", "/x").unwrap();
        assert_eq!(m.matched_prefix, "/");
    }

    #[test]
    fn no_root_means_no_match_outside_prefixes() {
        let (t, _) = mk_table(&[("h.example", prefix("/api"), "api")]);
        assert_eq!(route(&t, "h.example", "/apiadmin"), None);
        assert_eq!(route(&t, "h.example", "/"), None);
        assert_eq!(route(&t, "h.example", "/ap"), None);
    }

    #[test]
    fn exact_beats_prefix_for_the_same_path() {
        let (t, refused) = mk_table(&[
            ("h.example", prefix("/api"), "prefix"),
            ("h.example", exact("/api"), "exact"),
            ("h.example", exact("/api/v1/x"), "deep-exact"),
            ("h.example", prefix("/api/v1"), "v1"),
        ]);
        assert!(
            refused.is_empty(),
            "Exact and Prefix on one path do not conflict"
        );
        assert_eq!(route(&t, "h.example", "/api").as_deref(), Some("exact"));
        assert_eq!(route(&t, "h.example", "/api/").as_deref(), Some("prefix"));
        assert_eq!(route(&t, "h.example", "/api/x").as_deref(), Some("prefix"));
        assert_eq!(
            route(&t, "h.example", "/api/v1/x").as_deref(),
            Some("deep-exact")
        );
        assert_eq!(route(&t, "h.example", "/api/v1/x/").as_deref(), Some("v1"));
        assert_eq!(route(&t, "h.example", "/api/v1/y").as_deref(), Some("v1"));
        let (m, _) = t.find("h.example", "/api").unwrap();
        assert_eq!(m.matched_prefix, "/api");
    }

    #[test]
    fn lookup_takes_canonical_paths_only() {
        let (t, _) = mk_table(&[
            ("h.example", prefix("/public"), "public"),
            ("h.example", prefix("/admin"), "admin"),
        ]);
        for raw in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/..;/admin",
            "/public%2Fadmin",
            "/public\\admin",
            "/public/%00",
            "/public/%252e",
            "/public//x",
            "/%70ublic",
            "/public/a%3a",
            "/public?x=1",
            "public",
            "",
        ] {
            assert_eq!(route(&t, "h.example", raw), None, "{raw}");
        }
        let canonical = canonical_path("/%70ublic//x%3a?q=/admin").unwrap();
        assert_eq!(canonical, "/public/x%3A");
        assert_eq!(
            route(&t, "h.example", &canonical).as_deref(),
            Some("public")
        );
        // Query never reaches the matcher.
        let canonical = canonical_path("/public?/admin").unwrap();
        assert_eq!(
            route(&t, "h.example", &canonical).as_deref(),
            Some("public")
        );
    }

    #[test]
    fn host_forms_are_canonicalized_and_ports_ignored() {
        let (t, _) = mk_table(&[
            ("Billing.Example.COM.", prefix("/"), "billing"),
            ("bücher.example", prefix("/"), "idn"),
            ("10.0.0.1", prefix("/"), "ip"),
        ]);
        for host in [
            "billing.example.com",
            "BILLING.example.com",
            "billing.example.com.",
            "billing.example.com:443",
            "billing.example.com:8443",
        ] {
            assert_eq!(route(&t, host, "/").as_deref(), Some("billing"), "{host}");
        }
        assert_eq!(
            route(&t, "xn--bcher-kva.example", "/").as_deref(),
            Some("idn")
        );
        assert_eq!(
            route(&t, "BÜCHER.example:8080", "/").as_deref(),
            Some("idn")
        );
        assert_eq!(route(&t, "10.0.0.1:80", "/").as_deref(), Some("ip"));
        for host in [
            "",
            "user@billing.example.com",
            "billing.example.com:bad",
            "billing .example.com",
            "billing.example.com.evil",
            "evil.billing.example.com",
            "billing.example.co",
            "billing%2eexample.com",
        ] {
            assert_eq!(route(&t, host, "/"), None, "{host:?}");
        }
        assert_eq!(
            t.hosts().collect::<Vec<_>>(),
            ["10.0.0.1", "billing.example.com", "xn--bcher-kva.example"]
        );
    }

    #[test]
    fn oldest_claim_wins_and_losers_are_reported() {
        let mut b = RouteTable::builder();
        b.add(
            mk_entry("h.example", prefix("/api/"), "Route b/new"),
            rank(200, "b/new"),
        );
        b.add(
            mk_entry("h.example", prefix("/api"), "Route a/old"),
            rank(100, "a/old"),
        );
        b.add(
            mk_entry("H.example", prefix("/api"), "Route c/same-time"),
            rank(100, "c/same-time"),
        );
        b.add(
            mk_entry("h.example", exact("/api"), "Route d/exact"),
            rank(300, "d/exact"),
        );
        let (t, refused) = b.build();
        assert_eq!(t.len(), 2);
        assert_eq!(
            route(&t, "h.example", "/api/x").as_deref(),
            Some("Route a/old")
        );
        assert_eq!(
            route(&t, "h.example", "/api").as_deref(),
            Some("Route d/exact")
        );
        let conflict = RefuseReason::Conflict {
            winner_id: "Route a/old".into(),
        };
        assert_eq!(
            refused,
            [
                Refused {
                    id: "Route b/new".into(),
                    host: HostPattern::Exact("h.example".into()),
                    path: prefix("/api"),
                    reason: conflict.clone(),
                },
                Refused {
                    id: "Route c/same-time".into(),
                    host: HostPattern::Exact("h.example".into()),
                    path: prefix("/api"),
                    reason: conflict,
                },
            ]
        );
    }

    #[test]
    fn same_object_claiming_twice_keeps_its_first() {
        let mut b = RouteTable::builder();
        let mut first = mk_entry("h.example", prefix("/"), "Ingress a/web");
        first.route = Arc::new("first".into());
        let mut second = first.clone();
        second.route = Arc::new("second".into());
        b.add(first, rank(1, "a/web"));
        b.add(second, rank(1, "a/web"));
        let (t, refused) = b.build();
        assert_eq!(t.find("h.example", "/").unwrap().1.as_str(), "first");
        assert_eq!(refused.len(), 1);
        assert_eq!(
            refused[0].reason,
            RefuseReason::Conflict {
                winner_id: "Ingress a/web".into()
            }
        );
    }

    #[test]
    fn reserved_hosts_and_prefixes_cannot_be_claimed() {
        let mut b = RouteTable::builder();
        b.reserve_host("Auth.Example.com:443");
        b.reserve_prefix("/.portcullis/");
        b.reserve_prefix("/.pomerium/");
        b.add(
            mk_entry("auth.example.com", prefix("/"), "auth-root"),
            rank(1, "a"),
        );
        b.add(
            mk_entry("auth.example.com.", prefix("/x"), "auth-x"),
            rank(1, "a"),
        );
        b.add(mk_entry("*.example.com", prefix("/"), "wild"), rank(1, "w"));
        b.add(
            mk_entry("*.auth.example.com", prefix("/"), "under-auth"),
            rank(1, "u"),
        );
        b.add(
            mk_entry("h.example", prefix("/.portcullis"), "p1"),
            rank(1, "p1"),
        );
        b.add(
            mk_entry("h.example", exact("/.pomerium/jwt"), "p2"),
            rank(1, "p2"),
        );
        b.add(
            mk_entry("h.example", prefix("/.%70ortcullis/api"), "p3"),
            rank(1, "p3"),
        );
        b.add(
            mk_entry("h.example", prefix("/.portcullisx"), "near"),
            rank(1, "n"),
        );
        b.add(mk_entry("h.example", prefix("/"), "root"), rank(1, "r"));
        let (t, refused) = b.build();
        let reasons: Vec<_> = refused.iter().map(|r| (r.id.as_str(), &r.reason)).collect();
        let reserved = |p: &str| RefuseReason::ReservedPath { prefix: p.into() };
        assert_eq!(
            reasons,
            [
                ("auth-root", &RefuseReason::ReservedHost),
                ("auth-x", &RefuseReason::ReservedHost),
                ("p1", &reserved("/.portcullis")),
                ("p2", &reserved("/.pomerium")),
                ("p3", &reserved("/.portcullis")),
            ]
        );
        // The wildcard is accepted but never serves the reserved host.
        assert_eq!(route(&t, "other.example.com", "/").as_deref(), Some("wild"));
        assert_eq!(route(&t, "auth.example.com", "/"), None);
        assert_eq!(route(&t, "AUTH.example.com:8443", "/x"), None);
        assert_eq!(
            route(&t, "x.auth.example.com", "/").as_deref(),
            Some("under-auth")
        );
        assert!(t.is_reserved_host("auth.example.com."));
        assert!(!t.is_reserved_host("x.auth.example.com"));
        // Reserved paths on a routed host: the root route still matches (the proxy serves the
        // reserved prefix itself, for that route), and the table says the path is reserved.
        assert_eq!(
            route(&t, "h.example", "/.portcullis/jwt").as_deref(),
            Some("root")
        );
        assert_eq!(t.reserved_prefix("/.portcullis/jwt"), Some("/.portcullis"));
        assert_eq!(t.reserved_prefix("/.pomerium"), Some("/.pomerium"));
        assert_eq!(t.reserved_prefix("/.portcullisx"), None);
        assert_eq!(
            route(&t, "h.example", "/.portcullisx/y").as_deref(),
            Some("near")
        );
    }

    #[test]
    fn invalid_entries_are_refused_with_their_reason() {
        let (t, refused) = mk_table(&[
            ("user@h.example", prefix("/"), "a"),
            ("h.example:8443", prefix("/"), "b"),
            ("h.example", prefix("/a/../b"), "c"),
            ("h.example", exact("/a%2Fb"), "d"),
            ("*.*.example", prefix("/"), "e"),
            ("h.example", prefix("relative"), "f"),
            ("h.example", prefix("/ok"), "g"),
        ]);
        assert_eq!(t.len(), 1);
        let reasons: Vec<_> = refused
            .iter()
            .map(|r| (r.id.as_str(), r.reason.clone()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("a", RefuseReason::InvalidHost(HostError::UserInfo)),
                ("b", RefuseReason::InvalidHost(HostError::UnexpectedPort)),
                ("c", RefuseReason::InvalidPath(PathError::DotSegment)),
                ("d", RefuseReason::InvalidPath(PathError::EncodedSlash)),
                ("e", RefuseReason::InvalidHost(HostError::InvalidCharacter)),
                ("f", RefuseReason::InvalidPath(PathError::NotOriginForm)),
            ]
        );
    }

    #[test]
    fn invalid_hosts_at_lookup_find_nothing() {
        let (t, _) = mk_table(&[("*.example", prefix("/"), "wild")]);
        for host in [
            "a.example:0",
            "a.example:",
            "[::1",
            "a..example",
            "a.example\r\n",
        ] {
            assert_eq!(route(&t, host, "/"), None, "{host:?}");
        }
    }

    #[test]
    fn ten_thousand_entries() {
        let mut b = RouteTable::builder();
        let mut n = 0;
        for h in 0..1_900 {
            let host = format!("svc-{h}.team-{}.example.com", h % 50);
            for path in ["/", "/api", "/api/v1", "/static/"] {
                b.add(
                    mk_entry(&host, prefix(path), &format!("{host}{path}")),
                    rank(h, &host),
                );
                n += 1;
            }
            b.add(
                mk_entry(&host, exact("/healthz"), &format!("{host}=healthz")),
                rank(h, &host),
            );
            n += 1;
        }
        for t in 0..50 {
            let host = format!("*.team-{t}.example.com");
            b.add(mk_entry(&host, prefix("/"), &host), rank(0, &host));
            n += 1;
        }
        while n < 10_000 {
            let host = format!("extra-{n}.example.org");
            b.add(mk_entry(&host, prefix("/"), &host), rank(0, &host));
            n += 1;
        }
        let (t, refused) = b.build();
        assert!(refused.is_empty());
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.hosts().count(), 1_900 + 50 + 450);
        for h in (0..1_900).step_by(7) {
            let host = format!("svc-{h}.team-{}.example.com", h % 50);
            let want = |suffix: &str| Some(format!("{host}{suffix}"));
            assert_eq!(route(&t, &host, "/"), want("/"));
            assert_eq!(route(&t, &host, "/apix"), want("/"));
            assert_eq!(route(&t, &host, "/api"), want("/api"));
            assert_eq!(route(&t, &host, "/api/v2"), want("/api"));
            assert_eq!(route(&t, &host, "/api/v1/x"), want("/api/v1"));
            assert_eq!(route(&t, &host, "/static/app.js"), want("/static/"));
            assert_eq!(route(&t, &host, "/healthz"), want("=healthz"));
            assert_eq!(route(&t, &host, "/healthz/"), want("/"));
            let other = format!("other-{h}.team-{}.example.com", h % 50);
            assert_eq!(
                route(&t, &other, "/api"),
                Some(format!("*.team-{}.example.com", h % 50))
            );
        }
        assert_eq!(
            route(&t, "extra-9999.example.org", "/x").as_deref(),
            Some("extra-9999.example.org")
        );
        assert_eq!(route(&t, "a.svc-1.team-1.example.com", "/"), None);
    }

    #[test]
    fn set_host_replaces_one_host_and_shares_the_others() {
        let (mut t, _) = mk_table(&[
            ("a.example", prefix("/"), "a"),
            ("*.example", prefix("/"), "wild"),
            ("b.example", prefix("/x"), "b"),
        ]);
        let before = t.clone();
        t.set_host(
            HostPattern::Exact("b.example".into()),
            vec![mk_entry("b.example", exact("/y"), "b2")],
        );
        assert_eq!(route(&t, "b.example", "/y").as_deref(), Some("b2"));
        assert_eq!(route(&t, "b.example", "/x"), None);
        assert_eq!(route(&before, "b.example", "/x").as_deref(), Some("b"));
        assert!(Arc::ptr_eq(
            &t.exact_hosts["a.example"],
            &before.exact_hosts["a.example"]
        ));
        t.set_host(HostPattern::Wildcard("example".into()), vec![]);
        assert_eq!(route(&t, "c.example", "/"), None);
        assert_eq!(t.len(), 2);
        let mut unordered: Vec<_> = t.entries_unordered().map(|e| &*e.id).collect();
        unordered.sort();
        assert_eq!(unordered, ["a", "b2"]);
        assert_eq!(t.entries().map(|e| &*e.id).collect::<Vec<_>>(), ["a", "b2"]);
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = RouteTable::<String>::default();
        assert!(t.is_empty());
        assert_eq!(t.find("a.example", "/"), None);
        assert_eq!(t.hosts().count(), 0);
    }

    #[test]
    fn table_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RouteTable<String>>();
        assert_send_sync::<TableBuilder<String>>();
        assert_send_sync::<Arc<RouteTable<Vec<u8>>>>();
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const HOSTS: &[&str] = &[
            "a.example",
            "A.example.",
            "b.example",
            "*.example",
            "*.b.example",
            "x.b.example",
            "auth.example",
            "bad host",
            "c.example:8443",
        ];
        const PATHS: &[&str] = &[
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/ab",
            "/a/b/c",
            "/.portcullis/x",
            "/%61",
            "/a/../b",
            "/b",
        ];

        fn entry_specs() -> impl Strategy<Value = Vec<(usize, usize, bool, i64)>> {
            prop::collection::vec(
                (0..HOSTS.len(), 0..PATHS.len(), any::<bool>(), 0i64..4),
                0..40,
            )
        }

        fn build(
            specs: &[(usize, usize, bool, i64)],
            order: &[usize],
        ) -> (RouteTable<String>, Vec<Refused>) {
            let mut b = RouteTable::builder();
            b.reserve_host("auth.example");
            b.reserve_prefix("/.portcullis/");
            for &i in order {
                let (h, p, is_exact, t) = specs[i];
                let path = if is_exact {
                    exact(PATHS[p])
                } else {
                    prefix(PATHS[p])
                };
                let id = format!("Route ns/r{i}");
                b.add(mk_entry(HOSTS[h], path, &id), rank(t, &id));
            }
            b.build()
        }

        type Dump = Vec<(HostPattern, PathMatch, String, String)>;

        fn dump(t: &RouteTable<String>) -> Dump {
            t.entries()
                .map(|e| {
                    (
                        e.host.clone(),
                        e.path.clone(),
                        e.id.to_string(),
                        e.route.to_string(),
                    )
                })
                .collect()
        }

        /// The naive reference: scan every accepted entry.
        fn reference(t: &RouteTable<String>, host: &str, path: &str) -> Option<String> {
            let name = canonical_host_name(host).ok()?;
            if t.is_reserved_host(&name) || !is_canonical_path(path) {
                return None;
            }
            let exact_host = HostPattern::Exact((*name).into());
            let has_exact = t.entries().any(|e| e.host == exact_host);
            t.entries()
                .filter(|e| {
                    if has_exact {
                        e.host == exact_host
                    } else {
                        e.host.matches(&name)
                    }
                })
                .filter(|e| e.path.matches(path))
                .max_by_key(|e| {
                    (
                        trim_prefix(e.path.as_str()).len(),
                        matches!(e.path, PathMatch::Exact(_)),
                    )
                })
                .map(|e| e.id.to_string())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn build_is_independent_of_insertion_order(
                (specs, order) in entry_specs().prop_flat_map(|specs| {
                    let n = specs.len();
                    (Just(specs), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
                })
            ) {
                let forward: Vec<usize> = (0..specs.len()).collect();
                let (t1, r1) = build(&specs, &forward);
                let (t2, r2) = build(&specs, &order);
                prop_assert_eq!(dump(&t1), dump(&t2));
                prop_assert_eq!(t1.hosts().collect::<Vec<_>>(), t2.hosts().collect::<Vec<_>>());
                prop_assert_eq!(&r1, &r2);
                prop_assert_eq!(t1.len() + r1.len(), specs.len(), "every entry is kept or reported");
                // Each winner has the lowest (rank, id) among the claimants of its key.
                for r in &r1 {
                    if let RefuseReason::Conflict { winner_id } = &r.reason {
                        let i: usize = r.id.trim_start_matches("Route ns/r").parse().unwrap();
                        let w: usize = winner_id.trim_start_matches("Route ns/r").parse().unwrap();
                        prop_assert!((specs[w].3, winner_id) < (specs[i].3, &r.id));
                        prop_assert!(t1.entries().any(|e| *e.id == **winner_id
                            && e.host == r.host && e.path == r.path));
                    }
                }
                for host in HOSTS.iter().chain(&["z.example", "a.b.example", "example"]) {
                    for path in PATHS.iter().chain(&["/a/bc", "/.portcullis", "/c"]) {
                        let got = t1.find(host, path).map(|(m, _)| m.entry_id.to_owned());
                        prop_assert_eq!(&got, &t2.find(host, path).map(|(m, _)| m.entry_id.to_owned()));
                        prop_assert_eq!(got, reference(&t1, host, path), "{} {}", host, path);
                    }
                }
            }

            #[test]
            fn find_never_panics(
                specs in entry_specs(),
                host in prop_oneof![any::<String>(), "[a-zA-Z0-9.:*\\[\\]-]{0,20}"],
                path in prop_oneof![any::<String>(), "/[a-z/.%;0-9]{0,20}"],
            ) {
                let order: Vec<usize> = (0..specs.len()).collect();
                let (t, _) = build(&specs, &order);
                let got = t.find(&host, &path).map(|(m, _)| m.entry_id.to_owned());
                prop_assert_eq!(got, reference(&t, &host, &path));
                if let Ok(c) = canonical_path(&path) {
                    let got = t.find(&host, &c).map(|(m, _)| m.entry_id.to_owned());
                    prop_assert_eq!(got, reference(&t, &host, &c));
                }
            }
        }
    }
}
