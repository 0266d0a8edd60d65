//! The watchers: one kube-runtime watcher per watched kind (and per namespace when
//! `watchNamespaces` is set), each feeding a [`Store`] and waking the publisher on every change.
//!
//! Watched: Routes, ServiceAccountCredentials, Ingresses, IngressClasses, Services,
//! EndpointSlices, Secrets of type `kubernetes.io/tls`, and Secrets labelled as ours
//! (`portcullis.dev/credential`, and everything in Portcullis's own namespace). Objects are
//! trimmed before they reach a store ([`Project`]): `managedFields` and kubectl's last-applied
//! annotation always; Routes and Ingresses keep only the annotations compile reads; Services and
//! EndpointSlices keep only what resolving a backend reads; lists keep no spare room (a Route's
//! policy is compact JSON text already, [`crate::api::RoutePolicy`]). With 10k Routes and as many Services the stores are most of the
//! controller's memory, so each object is stored once, as the watch decoded and trimmed it
//! (kube-runtime's reflector store keeps a clone of every object, keyed by a reference that
//! copies its name, namespace, uid and `resourceVersion`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::compile::LEGACY_CLASS_ANNOTATION;
use super::compile::backends::{ServiceRecord, SliceRecord};
use super::compile::options::ANNOTATION_PREFIX;
use super::snapshot::{Snapshot, StoredRoute};
use crate::api::{Route, ServiceAccountCredential};

/// The annotation `kubectl apply` keeps a full copy of the object in; compile never reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a store keeps of an object of this kind: what compile, status and credentials read.
pub trait Project: Sized {
    /// The form the store keeps: the object itself, trimmed, or a record of what compile reads.
    type Stored: Send + Sync + 'static;

    /// The object as the store keeps it. Every kind loses `managedFields` and kubectl's
    /// last-applied annotation.
    fn project(self) -> Self::Stored;

    /// Whether `new` replacing `old` leaves everything compile reads as it was. Only the kinds
    /// whose status Portcullis writes tell (their own status writes come back as updates):
    /// a change to anything compile reads matters (an Ingress's uid, generation, labels,
    /// annotations and deletion; what a Route's record keeps but its `resourceVersion`), and
    /// so does every change of an object without a `generation`.
    fn same_for_compile(_old: &Self::Stored, _new: &Self::Stored) -> bool {
        false
    }
}

/// [`Project::same_for_compile`] of a kind with a spec/status split.
fn same_but_status(old: &kube::api::ObjectMeta, new: &kube::api::ObjectMeta) -> bool {
    new.generation.is_some() && fingerprint(old) == fingerprint(new)
}

fn drop_bulky_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    drop_if_empty(&mut meta.annotations);
}

/// An emptied map still holds its node; none is the same to every reader.
fn drop_if_empty<T>(map: &mut Option<std::collections::BTreeMap<String, T>>) {
    if map.as_ref().is_some_and(|m| m.is_empty()) {
        *map = None;
    }
}

/// Keeps the `portcullis.dev/` annotations and those `also` names.
fn keep_our_annotations(meta: &mut kube::api::ObjectMeta, also: &[&str]) {
    drop_bulky_meta(meta);
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(ANNOTATION_PREFIX) || also.contains(&k.as_str()));
    }
    drop_if_empty(&mut meta.annotations);
}

// Decoding grows lists as it goes (to 4 entries for 1 to 3) and trimming keeps their
// allocation: the stored objects keep only the room they use.
impl Project for Route {
    type Stored = StoredRoute;

    fn project(mut self) -> StoredRoute {
        self.spec.to.shrink_to_fit();
        self.into()
    }

    fn same_for_compile(old: &StoredRoute, new: &StoredRoute) -> bool {
        // Compile reads no more of a Route's metadata than the record keeps, and a status
        // write changes neither its generation nor its spec.
        new.meta.generation.is_some()
            && old.meta.generation == new.meta.generation
            && old.meta.id.uid == new.meta.id.uid
            && old.meta.created == new.meta.created
    }
}

impl Project for Ingress {
    type Stored = Ingress;

    fn project(mut self) -> Ingress {
        keep_our_annotations(&mut self.metadata, &[LEGACY_CLASS_ANNOTATION]);
        self
    }

    fn same_for_compile(old: &Ingress, new: &Ingress) -> bool {
        same_but_status(&old.metadata, &new.metadata)
    }
}

// Services and EndpointSlices are most of what a cluster holds: only what resolving a backend
// reads is kept.
impl Project for Service {
    type Stored = ServiceRecord;

    fn project(self) -> ServiceRecord {
        self.into()
    }
}

impl Project for EndpointSlice {
    type Stored = SliceRecord;

    fn project(self) -> SliceRecord {
        self.into()
    }
}

// Secrets (their labels and annotations drive credentials), IngressClasses (the default-class
// annotation) and credentials are few; they only lose the bulky metadata.
impl Project for Secret {
    type Stored = Secret;

    fn project(mut self) -> Secret {
        drop_bulky_meta(&mut self.metadata);
        self
    }
}

impl Project for IngressClass {
    type Stored = IngressClass;

    fn project(mut self) -> IngressClass {
        drop_bulky_meta(&mut self.metadata);
        self
    }
}

impl Project for ServiceAccountCredential {
    type Stored = ServiceAccountCredential;

    fn project(mut self) -> ServiceAccountCredential {
        drop_bulky_meta(&mut self.metadata);
        self
    }

    fn same_for_compile(old: &Self, new: &Self) -> bool {
        same_but_status(&old.metadata, &new.metadata)
    }
}

/// Label on the Secrets generated for credentials.
pub const CREDENTIAL_LABEL: &str = "portcullis.dev/credential";

/// Which namespaces to watch: all, or a list (`watchNamespaces`).
#[derive(Debug, Clone)]
pub enum Namespaces {
    /// Every namespace.
    All,
    /// Only these.
    Some(Vec<String>),
}

impl Namespaces {
    /// From the `watchNamespaces` setting (empty = all).
    pub fn from_setting(list: &[String]) -> Self {
        if list.is_empty() {
            Namespaces::All
        } else {
            let mut v = list.to_vec();
            v.sort();
            v.dedup();
            Namespaces::Some(v)
        }
    }

    /// Whether objects in `namespace` are watched.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Some(v) => v.iter().any(|n| n == namespace),
        }
    }
}

/// The objects of one watch as its last events left them, by namespace and name. Each object is
/// held once, behind the `Arc` snapshots share.
pub struct Store<K> {
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    /// True once the first full list is in; the sender goes when the watch task ends.
    ready: watch::Receiver<bool>,
}

impl<K> Store<K> {
    fn state(&self) -> Vec<Arc<K>> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects.values().cloned().collect()
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects.get(&store_key(Some(namespace), name)).cloned()
    }

    async fn wait_until_ready(&self) -> bool {
        self.ready.clone().wait_for(|r| *r).await.is_ok()
    }
}

/// `namespace/name`, or `name` for a cluster-scoped object (names hold no `/`).
fn store_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Applies watch events to a [`Store`]: a list (or relist) fills a new map that replaces the
/// store's when it is complete, as kube-runtime's reflector does.
struct StoreWriter<K: Project> {
    objects: Arc<RwLock<HashMap<String, Arc<K::Stored>>>>,
    ready: watch::Sender<bool>,
    /// The objects of a list in progress.
    listing: Option<HashMap<String, Arc<K::Stored>>>,
}

impl<K: Resource + Project> StoreWriter<K> {
    fn new() -> (Store<K::Stored>, StoreWriter<K>) {
        let objects = Arc::new(RwLock::new(HashMap::new()));
        let (ready, ready_rx) = watch::channel(false);
        let store = Store {
            objects: Arc::clone(&objects),
            ready: ready_rx,
        };
        let writer = StoreWriter {
            objects,
            ready,
            listing: None,
        };
        (store, writer)
    }

    /// Applies one event (trimming the object first) and says whether compile can care: every
    /// change but those [`Project::same_for_compile`] tells apart, every delete and every step
    /// of a list.
    fn apply(&mut self, event: watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashMap::new());
                true
            }
            watcher::Event::InitApply(obj) => {
                let key = key_of(&obj);
                self.listing
                    .get_or_insert_with(HashMap::new)
                    .insert(key, Arc::new(obj.project()));
                true
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                *self.objects.write().unwrap_or_else(PoisonError::into_inner) = listed;
                self.ready.send_replace(true);
                true
            }
            watcher::Event::Apply(obj) => {
                let key = key_of(&obj);
                let obj = obj.project();
                let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
                let matters = objects
                    .get(&key)
                    .is_none_or(|was| !K::same_for_compile(was, &obj));
                objects.insert(key, Arc::new(obj));
                matters
            }
            watcher::Event::Delete(obj) => {
                let key = key_of(&obj);
                self.objects
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
                true
            }
        }
    }
}

fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    store_key(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The stores of one kind (one per watched namespace, or one for all).
pub struct Stores<K> {
    stores: Vec<Store<K>>,
}

impl<K> Stores<K> {
    fn state(&self) -> Vec<Arc<K>> {
        let mut out = Vec::new();
        for s in &self.stores {
            out.extend(s.state());
        }
        out
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.stores.iter().find_map(|s| s.get(namespace, name))
    }

    async fn wait_until_ready(&self) -> bool {
        for s in &self.stores {
            if !s.wait_until_ready().await {
                return false;
            }
        }
        true
    }
}

/// Every store compile reads, and the tasks that fill them.
pub struct Watchers {
    routes: Stores<StoredRoute>,
    credentials: Stores<ServiceAccountCredential>,
    ingresses: Stores<Ingress>,
    ingress_classes: Stores<IngressClass>,
    tls_secrets: Stores<Secret>,
    own_secrets: Stores<Secret>,
    services: Stores<ServiceRecord>,
    endpoint_slices: Stores<SliceRecord>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watchers {
    /// Starts every reflector. `changed` is notified on every event of every watcher.
    pub fn start(
        client: &Client,
        namespaces: &Namespaces,
        own_namespace: &str,
        changed: Arc<Notify>,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let mut tasks = Vec::new();
        let mut ctx = Spawner {
            client,
            namespaces,
            changed: &changed,
            shutdown,
            tasks: &mut tasks,
        };
        let routes = ctx.kind::<Route>(watcher::Config::default());
        let credentials = ctx.kind::<ServiceAccountCredential>(watcher::Config::default());
        let ingresses = ctx.kind::<Ingress>(watcher::Config::default());
        let services = ctx.kind::<Service>(watcher::Config::default());
        let endpoint_slices = ctx.kind::<EndpointSlice>(watcher::Config::default());
        let tls_secrets =
            ctx.kind::<Secret>(watcher::Config::default().fields("type=kubernetes.io/tls"));
        let mut own_secrets =
            ctx.kind::<Secret>(watcher::Config::default().labels(CREDENTIAL_LABEL));
        // Portcullis's own namespace is always watched for its own Secrets (signing keys,
        // digests), whatever `watchNamespaces` says. The store's Secrets (sessions, bindings,
        // revocations) are left to the store: compile never reads them, and keeping them here
        // would hold every session twice and wake the publisher on every sign-in.
        own_secrets.stores.push(
            ctx.one(
                Api::<Secret>::namespaced(client.clone(), own_namespace),
                watcher::Config::default()
                    .fields("type!=kubernetes.io/tls")
                    .labels(&format!("!{}", crate::store::kubernetes::STORE_LABEL)),
            ),
        );
        let ingress_classes = Stores {
            stores: vec![ctx.one(
                Api::<IngressClass>::all(client.clone()),
                watcher::Config::default(),
            )],
        };
        Watchers {
            routes,
            credentials,
            ingresses,
            ingress_classes,
            tls_secrets,
            own_secrets,
            services,
            endpoint_slices,
            tasks,
        }
    }

    /// Waits until every store has seen its first full list. False when a watcher is gone.
    pub async fn ready(&self) -> bool {
        self.routes.wait_until_ready().await
            && self.credentials.wait_until_ready().await
            && self.ingresses.wait_until_ready().await
            && self.ingress_classes.wait_until_ready().await
            && self.tls_secrets.wait_until_ready().await
            && self.own_secrets.wait_until_ready().await
            && self.services.wait_until_ready().await
            && self.endpoint_slices.wait_until_ready().await
    }

    /// What the stores hold now.
    pub fn snapshot(&self) -> Snapshot {
        let mut secrets = self.tls_secrets.state();
        secrets.extend(self.own_secrets.state());
        Snapshot {
            routes: self.routes.state(),
            credentials: self.credentials.state(),
            ingresses: self.ingresses.state(),
            ingress_classes: self.ingress_classes.state(),
            secrets,
            services: self.services.state(),
            endpoint_slices: self.endpoint_slices.state(),
        }
    }

    /// The current Route object, as the store has it (for status diffs).
    pub fn route(&self, namespace: &str, name: &str) -> Option<Arc<StoredRoute>> {
        self.routes.get(namespace, name)
    }

    /// The current Ingress object, as the store has it.
    pub fn ingress(&self, namespace: &str, name: &str) -> Option<Arc<Ingress>> {
        self.ingresses.get(namespace, name)
    }

    /// Every ServiceAccountCredential in the store.
    pub fn credentials(&self) -> Vec<Arc<ServiceAccountCredential>> {
        self.credentials.state()
    }

    /// A Secret from the store of Secrets labelled as ours and Portcullis's own Secrets.
    pub fn own_secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.own_secrets.get(namespace, name)
    }

    /// Every Secret of that store (digest Secrets are picked by label by the caller).
    pub fn own_secrets(&self) -> Vec<Arc<Secret>> {
        self.own_secrets.state()
    }

    /// Waits for every watcher task to end (after shutdown).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn fingerprint(meta: &kube::api::ObjectMeta) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    h.finish()
}

struct Spawner<'a> {
    client: &'a Client,
    namespaces: &'a Namespaces,
    changed: &'a Arc<Notify>,
    shutdown: &'a watch::Receiver<bool>,
    tasks: &'a mut Vec<JoinHandle<()>>,
}

impl Spawner<'_> {
    /// One reflector per watched namespace (or one over all namespaces).
    fn kind<K>(&mut self, cfg: watcher::Config) -> Stores<K::Stored>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Project
            + Clone
            + Debug
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default + Hash + Eq + Clone,
    {
        let apis: Vec<Api<K>> = match self.namespaces {
            Namespaces::All => vec![Api::all(self.client.clone())],
            Namespaces::Some(list) => list
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect(),
        };
        let stores = apis
            .into_iter()
            .map(|api| self.one(api, cfg.clone()))
            .collect();
        Stores { stores }
    }

    fn one<K>(&mut self, api: Api<K>, cfg: watcher::Config) -> Store<K::Stored>
    where
        K: Resource + Project + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Hash + Eq + Clone,
    {
        let changed = Arc::clone(self.changed);
        let mut shutdown = self.shutdown.clone();
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let (reader, mut writer) = StoreWriter::<K>::new();
        let stream = watcher(api, cfg).default_backoff();
        self.tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break,
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => if writer.apply(ev) {
                            changed.notify_one();
                        },
                        Some(Err(e)) => {
                            tracing::warn!(kind = %kind, error = %crate::error_chain(&e), "watch failed; retrying");
                        }
                        None => break,
                    }
                }
            }
        }));
        reader
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::api::RouteSpec;
    use crate::controller::compile::backends::Identity;
    use crate::controller::snapshot::RouteMeta;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    impl Project for ConfigMap {
        type Stored = ConfigMap;

        fn project(mut self) -> ConfigMap {
            drop_bulky_meta(&mut self.metadata);
            self
        }
    }

    fn route(name: &str, generation: i64, policy: Value) -> Route {
        let mut r = Route::new(
            name,
            RouteSpec {
                from: format!("https://{name}.example.com"),
                policy: Some(serde_json::from_value(policy).unwrap()),
                ..RouteSpec::default()
            },
        );
        r.metadata.namespace = Some("ns".into());
        r.metadata.uid = Some(format!("uid-{name}"));
        r.metadata.generation = Some(generation);
        r
    }

    fn names(s: &Store<StoredRoute>) -> Vec<String> {
        let mut v: Vec<_> = s
            .state()
            .iter()
            .map(|o| store_key(Some(&o.meta.id.namespace), &o.meta.id.name))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_list_replaces_the_store_when_it_is_complete() {
        let (store, mut w) = StoreWriter::<Route>::new();
        let p = json!({"allow": {"or": [{"email": {"is": "a@example.com"}}]}});
        assert!(w.apply(watcher::Event::Init));
        assert!(w.apply(watcher::Event::InitApply(route("a", 1, p.clone()))));
        assert!(w.apply(watcher::Event::InitApply(route("b", 1, p.clone()))));
        // Not ready, and empty, until the list is done.
        assert!(names(&store).is_empty());
        assert!(!*store.ready.borrow());
        assert!(w.apply(watcher::Event::InitDone));
        assert!(store.wait_until_ready().await);
        assert_eq!(names(&store), ["ns/a", "ns/b"]);

        // A relist: objects gone from the new list go from the store, at its end.
        assert!(w.apply(watcher::Event::Init));
        assert!(w.apply(watcher::Event::InitApply(route("b", 2, p.clone()))));
        assert_eq!(names(&store), ["ns/a", "ns/b"]);
        assert!(w.apply(watcher::Event::InitDone));
        assert_eq!(names(&store), ["ns/b"]);
        assert_eq!(store.get("ns", "b").unwrap().meta.generation, Some(2));
        assert!(store.get("ns", "a").is_none());
        assert!(store.get("other", "b").is_none());
    }

    #[test]
    fn status_only_changes_of_status_kinds_do_not_matter() {
        let p = json!({"allow": {"or": [{"email": {"is": "a@example.com"}}]}});
        let (store, mut w) = StoreWriter::<Route>::new();
        assert!(w.apply(watcher::Event::Apply(route("a", 1, p.clone()))));
        let mut written = route("a", 1, p.clone());
        written.status = Some(crate::api::RouteStatus {
            url: Some("https://a.example.com".into()),
            ..Default::default()
        });
        assert!(!w.apply(watcher::Event::Apply(written)));
        // The store holds the newest version all the same (the status writer compares it).
        assert!(store.get("ns", "a").unwrap().seen.is_some());
        assert!(w.apply(watcher::Event::Apply(route("a", 2, p.clone()))));
        // Compile reads none of a Route's annotations.
        let mut annotated = route("a", 2, p.clone());
        annotated.metadata.annotations =
            Some([("portcullis.dev/timeout".to_owned(), "5s".to_owned())].into());
        assert!(!w.apply(watcher::Event::Apply(annotated)));
        assert!(w.apply(watcher::Event::Delete(route("a", 2, p.clone()))));
        assert!(store.get("ns", "a").is_none());
        // A new object with that name matters even when its generation is the same.
        assert!(w.apply(watcher::Event::Apply(route("a", 2, p))));

        // An Ingress's `portcullis.dev/` annotations are compiled; kubectl's copy of the
        // object is trimmed away before the comparison: not a change compile can see.
        let ingress = |generation: i64, annotations: Value| -> Ingress {
            serde_json::from_value(json!({
                "metadata": {"name": "i", "namespace": "ns", "uid": "uid-i",
                    "generation": generation, "annotations": annotations},
            }))
            .unwrap()
        };
        let (_, mut w) = StoreWriter::<Ingress>::new();
        assert!(w.apply(watcher::Event::Apply(ingress(1, json!({})))));
        let timeout = json!({"portcullis.dev/timeout": "5s"});
        assert!(w.apply(watcher::Event::Apply(ingress(1, timeout))));
        let applied = json!({"portcullis.dev/timeout": "5s", LAST_APPLIED: "{}"});
        assert!(!w.apply(watcher::Event::Apply(ingress(1, applied))));
        assert!(w.apply(watcher::Event::Apply(ingress(
            2,
            json!({"portcullis.dev/timeout": "5s"})
        ))));

        // Kinds without a spec/status split: every change matters.
        let (_, mut w) = StoreWriter::<ConfigMap>::new();
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("c".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(w.apply(watcher::Event::Apply(cm.clone())));
        assert!(w.apply(watcher::Event::Apply(cm)));
    }

    #[test]
    fn stored_lists_keep_no_spare_room() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s-x", "namespace": "ns",
                "labels": {"kubernetes.io/service-name": "s", "app": "x"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1", "10.0.0.9"], "conditions": {"ready": true}, "nodeName": "n"},
                {"addresses": ["10.0.0.2"]},
                {"addresses": ["10.0.0.3"]},
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .unwrap();
        // Services and slices are kept as records of what resolving reads (see
        // `backends::records_keep_what_resolving_reads`).
        let slim = slice.project();
        assert_eq!(slim.endpoints.len(), 3);
        assert_eq!(slim.service.as_deref(), Some("s"));
        assert_eq!(slim.ports.len(), 1);

        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns", "labels": {"app": "x"},
                "annotations": {LAST_APPLIED: "{}"}},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "x"}},
        }))
        .unwrap();
        let service = service.project();
        assert_eq!((&*service.id.namespace, &*service.id.name), ("ns", "s"));
        assert_eq!(service.ports.len(), 1);

        // A Route keeps of its metadata only the record compile and the status writer read.
        let mut r = route("a", 1, json!({}));
        r.metadata.annotations = Some([(LAST_APPLIED.to_owned(), "{}".to_owned())].into());
        r.metadata.resource_version = Some("7".into());
        r.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(1000).unwrap()));
        r.spec.to.reserve(8);
        let r = r.project();
        assert_eq!(
            r.meta,
            RouteMeta {
                id: Identity {
                    namespace: "ns".into(),
                    name: "a".into(),
                    uid: Some("uid-a".into()),
                    resource_version: Some("7".into()),
                },
                generation: Some(1),
                created: Some(1000),
            }
        );
        assert_eq!(r.spec.to.capacity(), r.spec.to.len());
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<RouteMeta>(), 96, "an ObjectMeta is 360");
        let reference = r.object_ref();
        assert_eq!(
            (reference.kind.as_deref(), reference.api_version.as_deref()),
            (Some("Route"), Some("portcullis.dev/v1alpha1"))
        );
        assert_eq!(
            (
                reference.namespace.as_deref(),
                reference.name.as_deref(),
                reference.uid.as_deref()
            ),
            (Some("ns"), Some("a"), Some("uid-a"))
        );
    }
}
