//! The object store of the embedded API: every object of every kind under one monotonic
//! `resourceVersion` counter, a bounded history of changes for watches and point-in-time lists,
//! and a broadcast channel that fans changes out to watchers.
//!
//! All mutation happens in [`Store::mutate`] under one `std::sync::Mutex` (never held across an
//! `.await`): the closure sees the current object and decides the change, the store assigns the
//! next version, records history, notifies watchers and hands the record to [`Persistence`] in
//! version order. Callers await [`Commit::durable`] before answering the client, so an
//! acknowledged write is on disk.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use super::error::{ApiError, Result};
use super::persist::{Op, PersistError, PersistOptions, Persistence, Record};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct WatchEvent {
    /// The resource version the change created.
    pub rv: u64,
    /// Storage key of the object.
    pub key: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletions: its last state, carrying the deletion's version).
    pub object: Arc<Value>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<Value>>,
}

/// What a mutation closure decides.
pub enum Change {
    /// Store this object (its `metadata.resourceVersion` is set by the store).
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave everything as it is.
    Unchanged,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum WatchFrom {
    /// At the current version; `initial` sends the current objects first as `ADDED` events.
    Now {
        /// Send synthetic `ADDED` events for the current objects.
        initial: bool,
    },
    /// Every change after this version (410 when it is older than the retained history).
    After(u64),
}

/// The start of a watch: initial events, the version they are consistent at, and the live feed.
pub struct WatchStart {
    /// Events to send before live ones (synthetic `ADDED`s or replayed history).
    pub initial: Vec<Arc<WatchEvent>>,
    /// Version of the state the initial events describe.
    pub rv: u64,
    /// Live events; those with `rv` not above [`WatchStart::rv`] are to be skipped.
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
}

/// One page of a list.
pub struct ListPage {
    /// Matching objects in key order.
    pub items: Vec<Arc<Value>>,
    /// The version the page is consistent at.
    pub rv: u64,
    /// Key of the last examined object when more may follow.
    pub continue_after: Option<String>,
    /// Objects left after this page (only when no filter was applied).
    pub remaining: Option<u64>,
}

/// A committed (or dry-run) write; [`Commit::durable`] resolves once it is on disk.
pub struct Commit {
    /// The object after the write (`None` after a deletion).
    pub object: Option<Arc<Value>>,
    /// The object before the write.
    pub prev: Option<Arc<Value>>,
    /// What happened, `None` when nothing changed.
    pub event: Option<EventType>,
    ack: Option<oneshot::Receiver<std::result::Result<(), PersistError>>>,
}

impl Commit {
    /// Wait until the write is durable.
    pub async fn durable(mut self) -> Result<Self> {
        if let Some(ack) = self.ack.take() {
            match ack.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %crate::error_chain(&e), "persisting a write failed");
                    return Err(ApiError::internal("the write could not be persisted"));
                }
                Err(_) => return Err(ApiError::internal("the storage writer stopped")),
            }
        }
        Ok(self)
    }
}

struct State {
    rv: u64,
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Every change with a version above `floor` is in `history`.
    floor: u64,
    index: Index,
}

/// Lookups the lifecycle rules need without scanning every object: who owns whom (garbage
/// collection), which key has a uid, and how many objects each namespace holds (namespace
/// termination).
#[derive(Default)]
struct Index {
    dependents: HashMap<String, BTreeSet<String>>,
    uids: HashMap<String, String>,
    per_namespace: HashMap<String, usize>,
}

fn uid_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/uid").and_then(Value::as_str)
}

fn owner_uids(v: &Value) -> impl Iterator<Item = &str> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

/// The namespace segment of a storage key (`group/plural/namespace/name`), if namespaced.
pub fn key_namespace(key: &str) -> Option<&str> {
    let mut parts = key.splitn(4, '/');
    let _group = parts.next()?;
    let _plural = parts.next()?;
    let ns = parts.next()?;
    (!ns.is_empty()).then_some(ns)
}

impl Index {
    fn remove(&mut self, key: &str, v: &Value) {
        if let Some(uid) = uid_of(v)
            && self.uids.get(uid).is_some_and(|k| k == key)
        {
            self.uids.remove(uid);
        }
        for owner in owner_uids(v) {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
        if let Some(ns) = key_namespace(key)
            && let Some(n) = self.per_namespace.get_mut(ns)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_namespace.remove(ns);
            }
        }
    }

    fn add(&mut self, key: &str, v: &Value) {
        if let Some(uid) = uid_of(v) {
            self.uids.insert(uid.to_string(), key.to_string());
        }
        for owner in owner_uids(v) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(key.to_string());
        }
        if let Some(ns) = key_namespace(key) {
            *self.per_namespace.entry(ns.to_string()).or_default() += 1;
        }
    }

    fn build(objects: &BTreeMap<String, Arc<Value>>) -> Self {
        let mut i = Index::default();
        for (k, v) in objects {
            i.add(k, v);
        }
        i
    }
}

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many changes are kept for watches and consistent paging.
    pub history: usize,
    /// Capacity of the live fan-out; a watcher that falls further behind is closed and re-watches.
    pub fanout: usize,
    /// Persistence tunables.
    pub persist: PersistOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            history: 20_000,
            fanout: 8_192,
            persist: PersistOptions::default(),
        }
    }
}

/// The object store.
pub struct Store {
    state: Arc<Mutex<State>>,
    persist: Option<Persistence>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    history_limit: usize,
}

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be read or is corrupt.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    /// A store kept only in memory (tests, benchmarks).
    pub fn in_memory(opts: StoreOptions) -> Self {
        let (tx, _) = broadcast::channel(opts.fanout);
        Self {
            state: Arc::new(Mutex::new(State {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                floor: 1,
                index: Index::default(),
            })),
            persist: None,
            tx,
            history_limit: opts.history,
        }
    }

    /// Open the durable store in `dir`, replaying what is there. Returns replay warnings.
    pub fn open(
        dir: &Path,
        opts: StoreOptions,
    ) -> std::result::Result<(Self, Vec<String>), StoreError> {
        let (mut persist, loaded) = Persistence::open(dir)?;
        let rv = loaded.resource_version.max(1);
        let objects = loaded
            .objects
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let index = Index::build(&objects);
        let state = Arc::new(Mutex::new(State {
            rv,
            objects,
            history: VecDeque::new(),
            floor: rv,
            index,
        }));
        let snap_state = state.clone();
        persist.start(
            Box::new(move || {
                let st = lock(&snap_state);
                (
                    st.rv,
                    st.objects
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }),
            opts.persist.clone(),
        )?;
        let (tx, _) = broadcast::channel(opts.fanout);
        Ok((
            Self {
                state,
                persist: Some(persist),
                tx,
                history_limit: opts.history,
            },
            loaded.warnings,
        ))
    }

    /// Flush pending writes and stop the persistence writer.
    pub fn close(mut self) -> std::result::Result<(), StoreError> {
        if let Some(p) = self.persist.take() {
            p.close()?;
        }
        Ok(())
    }

    /// The newest resource version.
    pub fn current_rv(&self) -> u64 {
        lock(&self.state).rv
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        lock(&self.state).objects.get(key).cloned()
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &str) -> Vec<(String, Arc<Value>)> {
        let st = lock(&self.state);
        range(&st.objects, prefix, None)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Objects whose `ownerReferences` name `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<Arc<Value>> {
        let st = lock(&self.state);
        st.index
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| st.objects.get(k).cloned())
            .collect()
    }

    /// The object with this `metadata.uid`.
    pub fn by_uid(&self, uid: &str) -> Option<Arc<Value>> {
        let st = lock(&self.state);
        st.index
            .uids
            .get(uid)
            .and_then(|k| st.objects.get(k).cloned())
    }

    /// How many objects live in namespace `ns`.
    pub fn namespace_len(&self, ns: &str) -> usize {
        lock(&self.state)
            .index
            .per_namespace
            .get(ns)
            .copied()
            .unwrap_or(0)
    }

    /// Change one object atomically. `f` sees the current object and decides; with `dry_run` the
    /// decision is returned but nothing is stored.
    pub fn mutate<F>(&self, key: &str, dry_run: bool, f: F) -> Result<Commit>
    where
        F: FnOnce(Option<&Arc<Value>>) -> Result<Change>,
    {
        let mut st = lock(&self.state);
        let prev = st.objects.get(key).cloned();
        let change = f(prev.as_ref())?;
        if dry_run {
            return Ok(match change {
                Change::Put(mut v) => Commit {
                    event: Some(if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    }),
                    object: Some({
                        // A dry-run update answers with the live version, as kube-apiserver does.
                        if let Some(p) = &prev {
                            set_resource_version(&mut v, object_rv(p));
                        }
                        Arc::new(v)
                    }),
                    prev,
                    ack: None,
                },
                Change::Delete => Commit {
                    object: None,
                    event: prev.as_ref().map(|_| EventType::Deleted),
                    prev,
                    ack: None,
                },
                Change::Unchanged => Commit {
                    object: prev.clone(),
                    prev,
                    event: None,
                    ack: None,
                },
            });
        }
        let (kind, object, op) = match change {
            Change::Unchanged => {
                return Ok(Commit {
                    object: prev.clone(),
                    prev,
                    event: None,
                    ack: None,
                });
            }
            Change::Put(mut v) => {
                let rv = st.rv + 1;
                set_resource_version(&mut v, rv);
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                let object = Arc::new(v);
                let op = Op::Put {
                    key: key.to_string(),
                    object: object.clone(),
                };
                (kind, object, op)
            }
            Change::Delete => {
                let Some(p) = prev.clone() else {
                    return Ok(Commit {
                        object: None,
                        prev: None,
                        event: None,
                        ack: None,
                    });
                };
                let mut last = (*p).clone();
                set_resource_version(&mut last, st.rv + 1);
                (
                    EventType::Deleted,
                    Arc::new(last),
                    Op::Delete {
                        key: key.to_string(),
                    },
                )
            }
        };
        st.rv += 1;
        let rv = st.rv;
        match kind {
            EventType::Deleted => {
                st.objects.remove(key);
                if let Some(p) = &prev {
                    st.index.remove(key, p);
                }
            }
            _ => {
                st.objects.insert(key.to_string(), object.clone());
                if let Some(p) = &prev {
                    st.index.remove(key, p);
                }
                st.index.add(key, &object);
            }
        }
        let event = Arc::new(WatchEvent {
            rv,
            key: key.to_string(),
            kind,
            object: object.clone(),
            prev: prev.clone(),
        });
        st.history.push_back(event.clone());
        while st.history.len() > self.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.floor = old.rv;
            }
        }
        // Sent under the lock so watchers see changes in version order.
        let _ = self.tx.send(event);
        let ack = self.persist.as_ref().map(|p| p.submit(Record { rv, op }));
        Ok(Commit {
            object: (kind != EventType::Deleted).then_some(object),
            prev,
            event: Some(kind),
            ack,
        })
    }

    /// List objects under `prefix` after key `start_after`, at version `at` (the current state
    /// when `None`), up to `limit` matches of `filter`.
    pub fn list(
        &self,
        prefix: &str,
        at: Option<u64>,
        start_after: Option<&str>,
        limit: Option<usize>,
        filter: &dyn Fn(&Arc<Value>) -> bool,
        filtered: bool,
    ) -> Result<ListPage> {
        let st = lock(&self.state);
        let rv = at.unwrap_or(st.rv);
        if rv > st.rv {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {rv}, current: {}",
                st.rv
            )));
        }
        if rv < st.floor {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                st.floor
            )));
        }
        // Start from the current objects and undo every later change in the range.
        let mut view: BTreeMap<&str, Arc<Value>> = range(&st.objects, prefix, start_after)
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if rv < st.rv {
            for ev in st.history.iter().rev().take_while(|e| e.rv > rv) {
                if !ev.key.starts_with(prefix) || start_after.is_some_and(|s| ev.key.as_str() <= s)
                {
                    continue;
                }
                match &ev.prev {
                    Some(p) => view.insert(ev.key.as_str(), p.clone()),
                    None => view.remove(ev.key.as_str()),
                };
            }
        }
        let mut items = Vec::new();
        let mut continue_after = None;
        let mut examined = 0u64;
        let mut last_key: Option<&str> = None;
        let total = view.len() as u64;
        for (k, v) in &view {
            if limit.is_some_and(|l| items.len() >= l) {
                continue_after = last_key.map(str::to_string);
                break;
            }
            examined += 1;
            last_key = Some(k);
            if filter(v) {
                items.push(v.clone());
            }
        }
        let remaining = continue_after
            .as_ref()
            .filter(|_| !filtered)
            .map(|_| total - examined);
        Ok(ListPage {
            items,
            rv,
            continue_after,
            remaining,
        })
    }

    /// Start a watch of the keys under `prefix`.
    pub fn watch(&self, prefix: &str, from: WatchFrom) -> Result<WatchStart> {
        let st = lock(&self.state);
        let live = self.tx.subscribe();
        match from {
            WatchFrom::Now { initial } => {
                let initial = if initial {
                    range(&st.objects, prefix, None)
                        .map(|(k, v)| {
                            Arc::new(WatchEvent {
                                rv: object_rv(v),
                                key: k.clone(),
                                kind: EventType::Added,
                                object: v.clone(),
                                prev: None,
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(WatchStart {
                    initial,
                    rv: st.rv,
                    live,
                })
            }
            WatchFrom::After(rv) => {
                if rv < st.floor {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.floor
                    )));
                }
                // A version this store never reached (the client saw writes a crash lost before
                // they were acknowledged): 410 as well, so the client re-lists.
                if rv > st.rv {
                    return Err(ApiError::expired(format!(
                        "Too large resource version: {rv}, current: {}",
                        st.rv
                    )));
                }
                let initial = st
                    .history
                    .iter()
                    .skip_while(|e| e.rv <= rv)
                    .filter(|e| e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                Ok(WatchStart {
                    initial,
                    rv: st.rv,
                    live,
                })
            }
        }
    }
}

fn range<'a>(
    objects: &'a BTreeMap<String, Arc<Value>>,
    prefix: &'a str,
    start_after: Option<&str>,
) -> impl Iterator<Item = (&'a String, &'a Arc<Value>)> + 'a {
    let lower = match start_after {
        Some(s) if s > prefix => Bound::Excluded(s.to_string()),
        _ => Bound::Included(prefix.to_string()),
    };
    objects
        .range::<String, _>((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// The `metadata.resourceVersion` of a stored object as a number.
pub fn object_rv(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // more than stopping the whole API, so keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, v: i64) -> Value {
        json!({"metadata": {"name": name}, "data": {"v": v}})
    }

    fn put(s: &Store, key: &str, v: Value) -> u64 {
        let c = s.mutate(key, false, |_| Ok(Change::Put(v))).expect("put");
        object_rv(c.object.as_ref().expect("object"))
    }

    fn small() -> Store {
        Store::in_memory(StoreOptions {
            history: 5,
            fanout: 16,
            persist: PersistOptions::default(),
        })
    }

    #[test]
    fn versions_rise_and_unchanged_writes_do_not_bump() {
        let s = small();
        let a = put(&s, "core/configmaps/ns/a", obj("a", 1));
        let b = put(&s, "core/configmaps/ns/b", obj("b", 1));
        assert!(b > a);
        let c = s
            .mutate("core/configmaps/ns/a", false, |_| Ok(Change::Unchanged))
            .expect("noop");
        assert!(c.event.is_none());
        assert_eq!(s.current_rv(), b);
    }

    #[test]
    fn dry_run_stores_nothing() {
        let s = small();
        let before = s.current_rv();
        let c = s
            .mutate("k", true, |_| Ok(Change::Put(obj("k", 1))))
            .expect("dry");
        assert!(c.object.is_some());
        assert!(s.get("k").is_none());
        assert_eq!(s.current_rv(), before);
    }

    #[test]
    fn list_pages_are_consistent_at_their_version() {
        let s = small();
        for n in ["a", "b", "c"] {
            put(&s, &format!("p/{n}"), obj(n, 1));
        }
        let page = s
            .list("p/", None, None, Some(2), &|_| true, false)
            .expect("page");
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.remaining, Some(1));
        let after = page.continue_after.clone().expect("continue");
        // Change c and add d after the first page: the second page still shows the old state.
        put(&s, "p/c", obj("c", 2));
        put(&s, "p/d", obj("d", 1));
        let page2 = s
            .list("p/", Some(page.rv), Some(&after), Some(2), &|_| true, false)
            .expect("page2");
        assert_eq!(page2.items.len(), 1);
        assert_eq!(page2.items[0]["data"]["v"], 1);
        assert!(page2.continue_after.is_none());
    }

    #[test]
    fn old_versions_expire_with_history() {
        let s = small();
        let first = put(&s, "p/a", obj("a", 0));
        for i in 1..10 {
            put(&s, "p/a", obj("a", i));
        }
        let err = s
            .list("p/", Some(first), None, None, &|_| true, false)
            .err()
            .expect("expired");
        assert_eq!(err.code, 410);
        let err = s
            .watch("p/", WatchFrom::After(first))
            .err()
            .expect("expired");
        assert_eq!(err.code, 410);
        assert!(s.watch("p/", WatchFrom::After(s.current_rv())).is_ok());
    }

    #[test]
    fn watch_replays_history_then_goes_live() {
        let s = small();
        let start = s.current_rv();
        put(&s, "p/a", obj("a", 1));
        put(&s, "q/a", obj("a", 1));
        let mut w = s.watch("p/", WatchFrom::After(start)).expect("watch");
        assert_eq!(w.initial.len(), 1);
        s.mutate("p/a", false, |_| Ok(Change::Delete))
            .expect("delete");
        let ev = w.live.try_recv().expect("live event");
        assert_eq!(ev.kind, EventType::Deleted);
        assert_eq!(object_rv(&ev.object), ev.rv);
    }

    #[test]
    fn initial_watch_sends_current_objects() {
        let s = small();
        put(&s, "p/a", obj("a", 1));
        put(&s, "p/b", obj("b", 1));
        let w = s
            .watch("p/", WatchFrom::Now { initial: true })
            .expect("watch");
        assert_eq!(w.initial.len(), 2);
        assert!(w.initial.iter().all(|e| e.kind == EventType::Added));
    }

    #[test]
    fn indexes_follow_owners_uids_and_namespaces() {
        let s = small();
        let owned = |uid: &str, owner: Option<&str>| {
            let mut v = json!({"metadata": {"name": "x", "uid": uid}});
            if let Some(o) = owner {
                v["metadata"]["ownerReferences"] = json!([{"uid": o}]);
            }
            v
        };
        put(&s, "core/configmaps/a/owner", owned("u-owner", None));
        put(&s, "core/configmaps/a/kid", owned("u-kid", Some("u-owner")));
        put(&s, "core/namespaces//a", owned("u-ns", None));
        assert_eq!(s.dependents("u-owner").len(), 1);
        assert!(s.by_uid("u-kid").is_some());
        assert_eq!(
            s.namespace_len("a"),
            2,
            "cluster-scoped objects do not count"
        );
        // Re-owning and deleting keep the indexes exact.
        put(&s, "core/configmaps/a/kid", owned("u-kid", None));
        assert!(s.dependents("u-owner").is_empty());
        s.mutate("core/configmaps/a/kid", false, |_| Ok(Change::Delete))
            .expect("delete");
        assert!(s.by_uid("u-kid").is_none());
        assert_eq!(s.namespace_len("a"), 1);
    }

    #[test]
    fn versions_from_the_future_are_expired_too() {
        let s = small();
        let err = s
            .watch("p/", WatchFrom::After(s.current_rv() + 5))
            .err()
            .expect("future version");
        assert_eq!(err.code, 410);
        assert!(
            err.message.starts_with("Too large resource version"),
            "{}",
            err.message
        );
    }
}
