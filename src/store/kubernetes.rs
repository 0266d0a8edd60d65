//! The Kubernetes backend: every entry is a Secret in Portcullis's namespace, and one
//! kube-runtime watcher (label `portcullis.dev/store`) keeps each replica's local view current.
//! Built by [`super::build`] when `store.backend` is `kubernetes` (the `portcullis run`
//! default).
//!
//! A Secret per entry: type `portcullis.dev/<kind>`, label `portcullis.dev/store: <kind>`, name
//! `portcullis-<kind>-<hash>` where the hash is of the id (ids are secret and may hold any
//! character), the entry as JSON under `data.entry`, its expiry in the annotation
//! `portcullis.dev/expires-at`; a binding also carries the label `portcullis.dev/session:
//! <hash of its session id>`.
//!
//! Consistency: a write goes to the API and, once accepted, into this replica's view (so the
//! writer reads its own writes); the other replicas get it from their watch, typically within
//! milliseconds. Watch events older than what the view holds (by `resourceVersion`), and
//! updates of an entry this replica just deleted, are ignored, so a late event never brings
//! back an old state. A revocation is a `create`: the API lets exactly one creator succeed.
//! Events are sent when the view changes, whichever way the change arrived, so a replica sends
//! each event once. Secrets that do not decode are skipped with a warning naming only a hash.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::view::{Kind, View};
use super::{
    Binding, EVENT_CAPACITY, Result, Session, Store, StoreError, StoreEvent, hex, short_id,
};

/// The label every store Secret carries; its value is the kind of entry.
pub const STORE_LABEL: &str = "portcullis.dev/store";
/// On binding Secrets: the hash of the session id (what `delete_session` selects by).
pub const SESSION_LABEL: &str = "portcullis.dev/session";
/// The entry's expiry (RFC 3339), for people reading the Secret.
pub const EXPIRES_ANNOTATION: &str = "portcullis.dev/expires-at";
/// The key of the entry's JSON in `data`.
pub const DATA_KEY: &str = "entry";

/// How long this replica remembers an entry it deleted, to ignore late updates of it.
const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(300);

/// A revocation as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Revocation {
    id: String,
    expires_at: i64,
}

/// One stored entry.
#[derive(Clone)]
enum Entry {
    Session(Session),
    Binding(Binding),
    Revocation(Revocation),
}

impl Entry {
    fn kind(&self) -> Kind {
        match self {
            Entry::Session(_) => Kind::Session,
            Entry::Binding(_) => Kind::Binding,
            Entry::Revocation(_) => Kind::Revocation,
        }
    }

    fn id(&self) -> &str {
        match self {
            Entry::Session(s) => &s.id,
            Entry::Binding(b) => &b.id,
            Entry::Revocation(r) => &r.id,
        }
    }

    fn expires_at(&self) -> i64 {
        match self {
            Entry::Session(s) => s.expires_at,
            Entry::Binding(b) => b.expires_at,
            Entry::Revocation(r) => r.expires_at,
        }
    }
}

/// The hash that stands for an id in names and labels: 128 bits of SHA-256, hex.
fn id_hash(id: &str) -> String {
    hex(&Sha256::digest(id.as_bytes())[..16])
}

/// The Secret name of an entry.
pub fn secret_name(kind_label: &str, id: &str) -> String {
    format!("portcullis-{kind_label}-{}", id_hash(id))
}

fn name_of(kind: Kind, id: &str) -> String {
    secret_name(kind.as_str(), id)
}

fn secret_type(kind: Kind) -> String {
    format!("portcullis.dev/{}", kind.as_str())
}

fn kind_of(label: &str) -> Option<Kind> {
    match label {
        "session" => Some(Kind::Session),
        "binding" => Some(Kind::Binding),
        "revocation" => Some(Kind::Revocation),
        _ => None,
    }
}

/// How logs name a Secret: `session/1a2b3c4d5e6f` for ours, a hash of the name otherwise.
fn log_name(name: &str) -> String {
    for kind in [Kind::Session, Kind::Binding, Kind::Revocation] {
        if let Some(hash) = name
            .strip_prefix("portcullis-")
            .and_then(|n| n.strip_prefix(kind.as_str()))
            .and_then(|n| n.strip_prefix('-'))
            && hash.len() == 32
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return format!("{}/{}", kind.as_str(), &hash[..12]);
        }
    }
    short_id(name)
}

fn rv_of(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// The Secret that stores `entry`.
fn encode(entry: &Entry) -> Result<KubeSecret> {
    let kind = entry.kind();
    let json = match entry {
        Entry::Session(s) => serde_json::to_vec(s),
        Entry::Binding(b) => serde_json::to_vec(b),
        Entry::Revocation(r) => serde_json::to_vec(r),
    }
    .map_err(|source| StoreError::Encoding {
        kind: kind.as_str(),
        source,
    })?;
    let mut labels =
        std::collections::BTreeMap::from([(STORE_LABEL.to_string(), kind.as_str().to_string())]);
    if let Entry::Binding(b) = entry {
        labels.insert(SESSION_LABEL.to_string(), id_hash(&b.session_id));
    }
    let expires = jiff::Timestamp::from_second(entry.expires_at())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| entry.expires_at().to_string());
    Ok(KubeSecret {
        metadata: ObjectMeta {
            name: Some(name_of(kind, entry.id())),
            labels: Some(labels),
            annotations: Some(std::collections::BTreeMap::from([(
                EXPIRES_ANNOTATION.to_string(),
                expires,
            )])),
            ..ObjectMeta::default()
        },
        type_: Some(secret_type(kind)),
        data: Some(std::collections::BTreeMap::from([(
            DATA_KEY.to_string(),
            ByteString(json),
        )])),
        ..KubeSecret::default()
    })
}

/// The entry a watched Secret stores, or why it is skipped.
fn decode(secret: &KubeSecret) -> std::result::Result<Entry, &'static str> {
    let label = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(STORE_LABEL))
        .ok_or("no store label")?;
    let kind = kind_of(label).ok_or("unknown kind in the store label")?;
    if secret.type_.as_deref() != Some(secret_type(kind).as_str()) {
        return Err("its type does not match its label");
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .ok_or("no entry in data")?;
    let entry = match kind {
        Kind::Session => serde_json::from_slice(&bytes.0).map(Entry::Session),
        Kind::Binding => serde_json::from_slice(&bytes.0).map(Entry::Binding),
        Kind::Revocation => serde_json::from_slice(&bytes.0).map(Entry::Revocation),
    }
    .map_err(|_| "the entry is not valid JSON of its kind")?;
    if secret.metadata.name.as_deref() != Some(name_of(kind, entry.id()).as_str()) {
        return Err("its name is not the one of its id");
    }
    Ok(entry)
}

/// What the view holds under a Secret name.
#[derive(Debug, Clone)]
struct Known {
    kind: Kind,
    id: String,
    rv: Option<u64>,
}

/// A view plus what each Secret name stands for.
#[derive(Default)]
struct Mirror {
    view: View,
    entries: HashMap<String, Known>,
}

impl Mirror {
    /// True when the view already holds a newer version of `name` than `rv`.
    fn is_stale(&self, name: &str, rv: Option<u64>) -> bool {
        match (self.entries.get(name).and_then(|k| k.rv), rv) {
            (Some(known), Some(rv)) => rv < known,
            _ => false,
        }
    }

    fn put(&mut self, name: &str, entry: Entry, rv: Option<u64>) -> Vec<StoreEvent> {
        let mut events = Vec::new();
        if let Some(old) = self.entries.get(name)
            && (old.kind != entry.kind() || old.id != entry.id())
        {
            events.extend(self.view.remove(old.kind, &old.id));
        }
        self.entries.insert(
            name.to_string(),
            Known {
                kind: entry.kind(),
                id: entry.id().to_string(),
                rv,
            },
        );
        match entry {
            Entry::Session(s) => self.view.insert_session(Arc::new(s)),
            Entry::Binding(b) => self.view.insert_binding(Arc::new(b)),
            Entry::Revocation(r) => events.extend(self.view.set_revocation(&r.id, r.expires_at)),
        }
        events
    }

    fn remove(&mut self, name: &str) -> Option<StoreEvent> {
        let old = self.entries.remove(name)?;
        self.view.remove(old.kind, &old.id)
    }
}

/// A list in progress (between the watcher's `Init` and `InitDone`).
#[derive(Default)]
struct Relist {
    mirror: Mirror,
    listed: HashSet<String>,
}

/// The replica's state: the current view, a relist being built, and what it deleted lately.
#[derive(Default)]
struct Local {
    current: Mirror,
    relist: Option<Relist>,
    /// Secret name → the `resourceVersion` it had when this replica deleted it.
    tombstones: HashMap<String, (u64, Instant)>,
}

impl Local {
    fn buried(&self, name: &str, rv: Option<u64>) -> bool {
        match (self.tombstones.get(name), rv) {
            (Some((dead, _)), Some(rv)) => rv <= *dead,
            _ => false,
        }
    }

    /// A write of this replica the API accepted (with the `resourceVersion` it answered).
    fn own_put(&mut self, name: &str, entry: Entry, rv: Option<u64>) -> Vec<StoreEvent> {
        self.tombstones.remove(name);
        if let Some(relist) = self.relist.as_mut()
            && !relist.mirror.is_stale(name, rv)
        {
            relist.mirror.put(name, entry.clone(), rv);
        }
        if self.current.is_stale(name, rv) {
            return Vec::new();
        }
        self.current.put(name, entry, rv)
    }

    /// A deletion of this replica the API accepted, or found already done.
    fn own_delete(&mut self, name: &str, rv: Option<u64>) -> Option<StoreEvent> {
        let now = Instant::now();
        self.tombstones
            .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_LIFETIME);
        let known = self.current.entries.get(name).and_then(|k| k.rv);
        if let Some(dead) = rv.max(known) {
            self.tombstones.insert(name.to_string(), (dead, now));
        }
        if let Some(relist) = self.relist.as_mut() {
            relist.mirror.remove(name);
        }
        self.current.remove(name)
    }

    /// Applies one watcher event; the events for subscribers, and whether a (re)list ended.
    fn on_watch(&mut self, event: watcher::Event<KubeSecret>) -> (Vec<StoreEvent>, bool) {
        match event {
            watcher::Event::Apply(secret) => {
                let Some(name) = secret.metadata.name.clone() else {
                    return (Vec::new(), false);
                };
                let rv = rv_of(&secret.metadata);
                if self.buried(&name, rv) || self.current.is_stale(&name, rv) {
                    return (Vec::new(), false);
                }
                match decode(&secret) {
                    Ok(entry) => (self.current.put(&name, entry, rv), false),
                    Err(reason) => {
                        skipped(&name, reason);
                        (self.current.remove(&name).into_iter().collect(), false)
                    }
                }
            }
            watcher::Event::Delete(secret) => {
                let Some(name) = secret.metadata.name.as_deref() else {
                    return (Vec::new(), false);
                };
                self.tombstones.remove(name);
                (self.current.remove(name).into_iter().collect(), false)
            }
            watcher::Event::Init => {
                self.relist = Some(Relist::default());
                (Vec::new(), false)
            }
            watcher::Event::InitApply(secret) => {
                let Some(name) = secret.metadata.name.clone() else {
                    return (Vec::new(), false);
                };
                let rv = rv_of(&secret.metadata);
                let buried = self.buried(&name, rv);
                let relist = self.relist.get_or_insert_with(Relist::default);
                relist.listed.insert(name.clone());
                if buried || relist.mirror.is_stale(&name, rv) {
                    return (Vec::new(), false);
                }
                match decode(&secret) {
                    Ok(entry) => {
                        relist.mirror.put(&name, entry, rv);
                    }
                    Err(reason) => skipped(&name, reason),
                }
                (Vec::new(), false)
            }
            watcher::Event::InitDone => {
                let Relist { mirror, listed } = self.relist.take().unwrap_or_default();
                let events = self.current.view.diff(&mirror.view);
                self.current = mirror;
                // What the list did not show is gone for good: no late update can follow.
                self.tombstones.retain(|name, _| listed.contains(name));
                (events, true)
            }
        }
    }
}

fn skipped(name: &str, reason: &str) {
    tracing::warn!(
        entry = %log_name(name),
        reason,
        "skipping a store Secret that does not decode"
    );
}

/// What the store and its watch task share.
struct Shared {
    local: RwLock<Local>,
    events: broadcast::Sender<StoreEvent>,
    ready: watch::Sender<bool>,
}

impl Shared {
    // Every change under the lock is a few map operations that leave it consistent, so a
    // poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, Local> {
        self.local.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Local> {
        self.local.write().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, events: impl IntoIterator<Item = StoreEvent>) {
        for e in events {
            // No subscriber is not an error.
            let _ = self.events.send(e);
        }
    }
}

/// Sessions, bindings and revocations as Secrets in one namespace, shared by every replica.
/// Dropping it (or [`stop`](KubernetesStore::stop)) ends its watch.
pub struct KubernetesStore {
    api: Api<KubeSecret>,
    namespace: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl KubernetesStore {
    /// Starts watching the store Secrets of `namespace` and returns at once; [`Store::ready`]
    /// resolves after the first list. Must be called within a Tokio runtime.
    pub fn start(client: Client, namespace: &str) -> Result<Arc<Self>> {
        let api: Api<KubeSecret> = Api::namespaced(client, namespace);
        let shared = Arc::new(Shared {
            local: RwLock::new(Local::default()),
            events: broadcast::channel(EVENT_CAPACITY).0,
            ready: watch::channel(false).0,
        });
        let task = tokio::spawn(watch_loop(api.clone(), Arc::clone(&shared)));
        Ok(Arc::new(KubernetesStore {
            api,
            namespace: namespace.to_string(),
            shared,
            task,
        }))
    }

    /// Ends the watch: the local view stays as it is and no longer follows other replicas.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Writes `entry`: replace when the view knows it, else create; the other on 404 / 409.
    async fn write(&self, entry: Entry, action: &'static str) -> Result<()> {
        let secret = encode(&entry)?;
        let name = name_of(entry.kind(), entry.id());
        let known = self.shared.read().current.entries.contains_key(&name);
        let pp = PostParams::default();
        let api_err = |source| StoreError::Api { action, source };
        let written = if known {
            match self.api.replace(&name, &pp, &secret).await {
                Err(kube::Error::Api(s)) if s.code == 404 => self.api.create(&pp, &secret).await,
                other => other,
            }
        } else {
            match self.api.create(&pp, &secret).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    self.api.replace(&name, &pp, &secret).await
                }
                other => other,
            }
        }
        .map_err(api_err)?;
        let events = self
            .shared
            .write()
            .own_put(&name, entry, rv_of(&written.metadata));
        self.shared.send(events);
        Ok(())
    }

    /// Deletes the Secret `name`; true when this call deleted it.
    async fn delete_named(&self, name: &str, action: &'static str) -> Result<bool> {
        let (deleted, rv) = match self.api.delete(name, &DeleteParams::default()).await {
            Ok(either) => (true, either.left().and_then(|s| rv_of(&s.metadata))),
            Err(kube::Error::Api(s)) if s.code == 404 => (false, None),
            Err(source) => return Err(StoreError::Api { action, source }),
        };
        let event = self.shared.write().own_delete(name, rv);
        self.shared.send(event);
        Ok(deleted)
    }

    /// The Secret names of a session's bindings: those in the view and those the API lists
    /// (written by another replica a moment ago).
    async fn binding_names_of_session(&self, session_id: &str) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .shared
            .read()
            .current
            .view
            .binding_ids_of_session(session_id)
            .iter()
            .map(|id| name_of(Kind::Binding, id))
            .collect();
        let selector = format!(
            "{STORE_LABEL}=binding,{SESSION_LABEL}={}",
            id_hash(session_id)
        );
        match self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => names.extend(list.items.into_iter().filter_map(|s| s.metadata.name)),
            // The session is gone already, which hides its bindings; collection deletes them.
            Err(e) => tracing::warn!(
                error = %crate::error_chain(&e),
                "listing the bindings of a deleted session failed; they are collected later"
            ),
        }
        names
    }
}

impl Drop for KubernetesStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for KubernetesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sessions, bindings, revocations) = self.shared.read().current.view.counts();
        f.debug_struct("KubernetesStore")
            .field("namespace", &self.namespace)
            .field("ready", &*self.shared.ready.borrow())
            .field("sessions", &sessions)
            .field("bindings", &bindings)
            .field("revocations", &revocations)
            .finish()
    }
}

/// The one watch of a replica: applies every event to the local view, then tells subscribers.
async fn watch_loop(api: Api<KubeSecret>, shared: Arc<Shared>) {
    let stream = watcher(api, watcher::Config::default().labels(STORE_LABEL)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let (events, listed) = shared.write().on_watch(event);
                shared.send(events);
                if listed {
                    shared.ready.send_replace(true);
                }
            }
            Err(e) => tracing::warn!(
                error = %crate::error_chain(&e),
                "watching the store Secrets failed; retrying"
            ),
        }
    }
}

#[async_trait::async_trait]
impl Store for KubernetesStore {
    async fn put_session(&self, session: &Session) -> Result<()> {
        self.write(Entry::Session(session.clone()), "writing a session")
            .await
    }

    fn session(&self, id: &str, now: i64) -> Option<Arc<Session>> {
        self.shared.read().current.view.session(id, now)
    }

    async fn load_session(&self, id: &str, now: i64) -> Result<Option<Arc<Session>>> {
        if let Some(s) = self.session(id, now) {
            return Ok(Some(s));
        }
        let name = name_of(Kind::Session, id);
        let found = self
            .api
            .get_opt(&name)
            .await
            .map_err(|source| StoreError::Api {
                action: "reading a session",
                source,
            })?;
        let Some(secret) = found else {
            return Ok(None);
        };
        let entry = match decode(&secret) {
            Ok(entry @ Entry::Session(_)) if entry.id() == id => entry,
            Ok(_) => return Ok(None),
            Err(reason) => {
                skipped(&name, reason);
                return Ok(None);
            }
        };
        let events = {
            let mut local = self.shared.write();
            if local.buried(&name, rv_of(&secret.metadata)) {
                return Ok(None);
            }
            local.own_put(&name, entry, rv_of(&secret.metadata))
        };
        self.shared.send(events);
        Ok(self.session(id, now))
    }

    fn sessions_of(&self, subject: &str, now: i64) -> Vec<Arc<Session>> {
        self.shared.read().current.view.sessions_of(subject, now)
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        let mut deleted = self
            .delete_named(&name_of(Kind::Session, id), "deleting a session")
            .await?;
        for name in self.binding_names_of_session(id).await {
            match self
                .delete_named(&name, "deleting a binding of a session")
                .await
            {
                Ok(gone) => deleted |= gone,
                // The session is gone, which hides the binding; collection deletes it.
                Err(e) => tracing::warn!(
                    entry = %log_name(&name),
                    error = %crate::error_chain(&e),
                    "deleting a binding of a deleted session failed; it is collected later"
                ),
            }
        }
        Ok(deleted)
    }

    async fn put_binding(&self, binding: &Binding) -> Result<()> {
        self.write(Entry::Binding(binding.clone()), "writing a binding")
            .await
    }

    fn binding(&self, id: &str, now: i64) -> Option<Arc<Binding>> {
        self.shared.read().current.view.binding(id, now)
    }

    fn bindings_of(&self, subject: &str, now: i64) -> Vec<Arc<Binding>> {
        self.shared.read().current.view.bindings_of(subject, now)
    }

    fn bindings_of_session(&self, session_id: &str, now: i64) -> Vec<Arc<Binding>> {
        self.shared
            .read()
            .current
            .view
            .bindings_of_session(session_id, now)
    }

    async fn delete_binding(&self, id: &str) -> Result<bool> {
        self.delete_named(&name_of(Kind::Binding, id), "deleting a binding")
            .await
    }

    async fn revoke(&self, id: &str, expires_at: i64) -> Result<bool> {
        let entry = Entry::Revocation(Revocation {
            id: id.to_string(),
            expires_at,
        });
        let secret = encode(&entry)?;
        let created = match self.api.create(&PostParams::default(), &secret).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
            Err(source) => {
                return Err(StoreError::Api {
                    action: "revoking",
                    source,
                });
            }
        };
        let name = name_of(Kind::Revocation, id);
        let events = self
            .shared
            .write()
            .own_put(&name, entry, rv_of(&created.metadata));
        self.shared.send(events);
        Ok(true)
    }

    fn is_revoked(&self, id: &str) -> bool {
        self.shared.read().current.view.is_revoked(id)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.shared.events.subscribe()
    }

    async fn collect_garbage(&self, now: i64) -> Result<usize> {
        let garbage = self.shared.read().current.view.garbage(now);
        let mut count = 0;
        for (kind, id) in garbage {
            if self
                .delete_named(&name_of(kind, &id), "collecting garbage")
                .await?
            {
                count += 1;
            }
        }
        Ok(count)
    }

    async fn ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives as long as `self`, so this only ends once ready.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use crate::store::conformance::{NOW, binding, session};

    fn stored(entry: &Entry, rv: u64) -> KubeSecret {
        let mut s = encode(entry).unwrap();
        s.metadata.resource_version = Some(rv.to_string());
        s
    }

    #[test]
    fn entries_round_trip_and_names_hide_ids() {
        let s = session("alice", NOW, NOW + 60);
        let secret = stored(&Entry::Session(s.clone()), 1);
        let name = secret.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("portcullis-session-") && name.len() == 51,
            "{name}"
        );
        assert!(!name.contains(&s.id));
        assert_eq!(secret.type_.as_deref(), Some("portcullis.dev/session"));
        assert_eq!(
            secret.metadata.annotations.as_ref().unwrap()[EXPIRES_ANNOTATION],
            "2023-11-14T22:14:20Z"
        );
        match decode(&secret) {
            Ok(Entry::Session(back)) => assert_eq!(back, s),
            _ => panic!("a session decodes"),
        }
        let b = binding(&s, NOW, NOW + 60);
        let secret = stored(&Entry::Binding(b.clone()), 2);
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[STORE_LABEL], "binding");
        assert_eq!(labels[SESSION_LABEL], id_hash(&s.id));
        assert!(!format!("{labels:?}").contains(&s.id));
        assert_eq!(log_name(&name), format!("session/{}", &name[19..31]));
        assert!(log_name("whatever-secret").starts_with('#'));
    }

    #[test]
    fn undecodable_secrets_are_refused() {
        let s = session("alice", NOW, NOW + 60);
        let good = stored(&Entry::Session(s), 1);
        let mut wrong_type = good.clone();
        wrong_type.type_ = Some("Opaque".into());
        let mut garbage = good.clone();
        garbage
            .data
            .as_mut()
            .unwrap()
            .insert(DATA_KEY.into(), ByteString(b"{not json".to_vec()));
        let mut renamed = good.clone();
        renamed.metadata.name = Some(secret_name("session", "someone-else"));
        let mut unlabelled = good.clone();
        unlabelled.metadata.labels = None;
        for bad in [wrong_type, garbage, renamed, unlabelled] {
            assert!(decode(&bad).is_err());
        }
    }

    #[test]
    fn late_and_old_events_do_not_bring_back_an_old_state() {
        let mut local = Local::default();
        let s = session("alice", NOW, NOW + 60);
        let mut s2 = s.clone();
        s2.refreshed_at += 1;
        let name = name_of(Kind::Session, &s.id);
        local.own_put(&name, Entry::Session(s.clone()), Some(5));
        local.own_put(&name, Entry::Session(s2.clone()), Some(7));
        // The watch delivers the first write after the second was applied.
        local.on_watch(watcher::Event::Apply(stored(&Entry::Session(s.clone()), 5)));
        assert_eq!(local.current.view.session(&s.id, NOW).as_deref(), Some(&s2));
        // Deleted here (at version 7); a late update must not revive it.
        assert!(local.own_delete(&name, Some(7)).is_some());
        local.on_watch(watcher::Event::Apply(stored(
            &Entry::Session(s2.clone()),
            7,
        )));
        assert!(local.current.view.session(&s.id, NOW).is_none());
        // Its Delete event ends the tombstone; a re-creation (newer version) counts again.
        let (events, _) = local.on_watch(watcher::Event::Delete(stored(&Entry::Session(s2), 7)));
        assert!(events.is_empty(), "the deletion was announced once");
        assert!(local.tombstones.is_empty());
        local.on_watch(watcher::Event::Apply(stored(&Entry::Session(s.clone()), 9)));
        assert!(local.current.view.session(&s.id, NOW).is_some());
    }

    #[test]
    fn a_relist_removes_what_disappeared_and_announces_it() {
        let mut local = Local::default();
        let gone = session("alice", NOW, NOW + 60);
        let kept = session("bob", NOW, NOW + 60);
        let b = binding(&gone, NOW, NOW + 60);
        for (entry, rv) in [
            (Entry::Session(gone.clone()), 1),
            (Entry::Session(kept.clone()), 2),
            (Entry::Binding(b.clone()), 3),
        ] {
            local.on_watch(watcher::Event::Apply(stored(&entry, rv)));
        }
        let revocation = Entry::Revocation(Revocation {
            id: "jti:new".into(),
            expires_at: NOW + 60,
        });
        local.on_watch(watcher::Event::Init);
        local.on_watch(watcher::Event::InitApply(stored(
            &Entry::Session(kept.clone()),
            2,
        )));
        local.on_watch(watcher::Event::InitApply(stored(&revocation, 4)));
        let mut garbage = stored(&Entry::Session(kept.clone()), 5);
        garbage.metadata.name = Some("portcullis-session-garbage".into());
        local.on_watch(watcher::Event::InitApply(garbage));
        // Until the list is complete, the old view serves.
        assert!(local.current.view.session(&gone.id, NOW).is_some());
        let (events, done) = local.on_watch(watcher::Event::InitDone);
        assert!(done);
        assert_eq!(
            events,
            vec![
                StoreEvent::SessionDeleted {
                    id: gone.id.clone()
                },
                StoreEvent::BindingDeleted {
                    id: b.id.clone(),
                    session_id: gone.id.clone()
                },
                StoreEvent::Revoked {
                    id: "jti:new".into()
                },
            ]
        );
        assert!(local.current.view.session(&gone.id, NOW).is_none());
        assert!(local.current.view.session(&kept.id, NOW).is_some());
        assert!(local.current.view.is_revoked("jti:new"));
    }

    #[test]
    fn own_writes_during_a_relist_survive_it() {
        let mut local = Local::default();
        local.on_watch(watcher::Event::Init);
        let s = session("alice", NOW, NOW + 60);
        let name = name_of(Kind::Session, &s.id);
        local.own_put(&name, Entry::Session(s.clone()), Some(10));
        local.on_watch(watcher::Event::InitDone);
        assert!(local.current.view.session(&s.id, NOW).is_some());
    }

    #[test]
    fn a_corrupted_entry_leaves_the_view() {
        let mut local = Local::default();
        let s = session("alice", NOW, NOW + 60);
        local.on_watch(watcher::Event::Apply(stored(&Entry::Session(s.clone()), 1)));
        let mut bad = stored(&Entry::Session(s.clone()), 2);
        bad.data = None;
        let (events, _) = local.on_watch(watcher::Event::Apply(bad));
        assert_eq!(
            events,
            vec![StoreEvent::SessionDeleted { id: s.id.clone() }]
        );
        assert!(local.current.view.session(&s.id, NOW).is_none());
    }
}
