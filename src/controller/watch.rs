//! The watchers: one kube-runtime reflector per watched kind (and per namespace when
//! `watchNamespaces` is set), each feeding a store and waking the publisher on every change.
//!
//! Watched: Routes, ServiceAccountCredentials, Ingresses, IngressClasses, Services,
//! EndpointSlices, Secrets of type `kubernetes.io/tls`, and Secrets labelled as ours
//! (`portcullis.dev/credential`, and everything in Portcullis's own namespace). Objects are
//! trimmed before they reach a store ([`Project`]): `managedFields` and kubectl's last-applied
//! annotation always; Routes and Ingresses keep only the annotations compile reads; Services and
//! EndpointSlices keep only what resolving a backend reads. With 10k Routes and as many Services
//! the stores are most of the controller's memory.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::compile::LEGACY_CLASS_ANNOTATION;
use super::compile::backends::{slim_service, slim_slice};
use super::compile::options::ANNOTATION_PREFIX;
use super::snapshot::Snapshot;
use crate::api::{Route, ServiceAccountCredential};

/// The annotation `kubectl apply` keeps a full copy of the object in; compile never reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a store keeps of an object of this kind: what compile, status and credentials read.
pub trait Project {
    /// Trims the object in place. Every kind loses `managedFields` and kubectl's last-applied
    /// annotation.
    fn project(&mut self);
}

fn drop_bulky_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// Keeps the `portcullis.dev/` annotations and those `also` names.
fn keep_our_annotations(meta: &mut kube::api::ObjectMeta, also: &[&str]) {
    drop_bulky_meta(meta);
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(ANNOTATION_PREFIX) || also.contains(&k.as_str()));
    }
}

impl Project for Route {
    fn project(&mut self) {
        keep_our_annotations(&mut self.metadata, &[]);
    }
}

impl Project for Ingress {
    fn project(&mut self) {
        keep_our_annotations(&mut self.metadata, &[LEGACY_CLASS_ANNOTATION]);
    }
}

impl Project for Service {
    fn project(&mut self) {
        slim_service(self);
    }
}

impl Project for EndpointSlice {
    fn project(&mut self) {
        slim_slice(self);
    }
}

// Secrets (their labels and annotations drive credentials), IngressClasses (the default-class
// annotation) and credentials are few; they only lose the bulky metadata.
impl Project for Secret {
    fn project(&mut self) {
        drop_bulky_meta(&mut self.metadata);
    }
}

impl Project for IngressClass {
    fn project(&mut self) {
        drop_bulky_meta(&mut self.metadata);
    }
}

impl Project for ServiceAccountCredential {
    fn project(&mut self) {
        drop_bulky_meta(&mut self.metadata);
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

/// The stores of one kind (one per watched namespace, or one for all).
pub struct Stores<K: Resource + 'static>
where
    K::DynamicType: Hash + Eq + Clone,
{
    stores: Vec<Store<K>>,
}

impl<K> Stores<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Hash + Eq + Clone,
{
    fn state(&self) -> Vec<Arc<K>> {
        let mut out = Vec::new();
        for s in &self.stores {
            out.extend(s.state());
        }
        out
    }

    async fn wait_until_ready(&self) -> bool {
        for s in &self.stores {
            if s.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Every store compile reads, and the tasks that fill them.
pub struct Watchers {
    routes: Stores<Route>,
    credentials: Stores<ServiceAccountCredential>,
    ingresses: Stores<Ingress>,
    ingress_classes: Stores<IngressClass>,
    tls_secrets: Stores<Secret>,
    own_secrets: Stores<Secret>,
    services: Stores<Service>,
    endpoint_slices: Stores<EndpointSlice>,
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
                Api::namespaced(client.clone(), own_namespace),
                watcher::Config::default()
                    .fields("type!=kubernetes.io/tls")
                    .labels(&format!("!{}", crate::store::kubernetes::STORE_LABEL)),
            ),
        );
        let ingress_classes = Stores {
            stores: vec![ctx.one(Api::all(client.clone()), watcher::Config::default())],
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
    pub fn route(&self, namespace: &str, name: &str) -> Option<Arc<Route>> {
        let key = reflector::ObjectRef::new(name).within(namespace);
        self.routes.stores.iter().find_map(|s| s.get(&key))
    }

    /// The current Ingress object, as the store has it.
    pub fn ingress(&self, namespace: &str, name: &str) -> Option<Arc<Ingress>> {
        let key = reflector::ObjectRef::new(name).within(namespace);
        self.ingresses.stores.iter().find_map(|s| s.get(&key))
    }

    /// Every ServiceAccountCredential in the store.
    pub fn credentials(&self) -> Vec<Arc<ServiceAccountCredential>> {
        self.credentials.state()
    }

    /// A Secret from the store of Secrets labelled as ours and Portcullis's own Secrets.
    pub fn own_secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let key = reflector::ObjectRef::new(name).within(namespace);
        self.own_secrets.stores.iter().find_map(|s| s.get(&key))
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

/// Kinds whose status Portcullis writes and whose `generation` moves with every change compile
/// reads (their spec).
const STATUS_KINDS: &[&str] = &["Route", "Ingress", "ServiceAccountCredential"];

/// Skips the events compile cannot care about: for [`STATUS_KINDS`], a write to `status` (our
/// own status writes) leaves uid, generation, labels, annotations and deletion unchanged. For
/// other kinds every event counts (a Secret or an EndpointSlice has no spec/status split), and
/// so does every delete.
struct Relevance {
    skip_status_only: bool,
    last: std::collections::HashMap<(Option<String>, Option<String>), u64>,
}

impl Relevance {
    fn matters<K: Resource>(&mut self, ev: &watcher::Event<K>) -> bool {
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let meta = o.meta();
                if !self.skip_status_only || meta.generation.is_none() {
                    return true;
                }
                let key = (meta.namespace.clone(), meta.name.clone());
                let print = fingerprint(meta);
                self.last.insert(key, print) != Some(print)
            }
            watcher::Event::Delete(o) => {
                let meta = o.meta();
                self.last
                    .remove(&(meta.namespace.clone(), meta.name.clone()));
                true
            }
            watcher::Event::Init => {
                self.last.clear();
                true
            }
            watcher::Event::InitDone => true,
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
    fn kind<K>(&mut self, cfg: watcher::Config) -> Stores<K>
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

    fn one<K>(&mut self, api: Api<K>, cfg: watcher::Config) -> Store<K>
    where
        K: Resource + Project + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Hash + Eq + Clone,
    {
        let (reader, writer) = reflector::store();
        let changed = Arc::clone(self.changed);
        let mut shutdown = self.shutdown.clone();
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let stream = watcher(api, cfg)
            .default_backoff()
            .modify(Project::project)
            .reflect(writer);
        let mut seen = Relevance {
            skip_status_only: STATUS_KINDS.contains(&kind.as_str()),
            last: Default::default(),
        };
        self.tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break,
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => if seen.matters(&ev) {
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
