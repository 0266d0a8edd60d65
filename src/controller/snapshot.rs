//! The input of `compile`: every watched object, as the watch stores hold them at one moment.
//! Plain data, so compile tests build snapshots by hand (`mk_*` builders) and never touch an API.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Resource;

use super::compile::backends::{Identity, ServiceRecord, SliceRecord};
use super::status::SeenStatus;
use crate::api::{Route, RouteSpec, ServiceAccountCredential};

/// A Route as the stores keep it: of its metadata only what compile and the status writer read
/// ([`RouteMeta`]), its spec, and of its status only what the status writer compares
/// ([`SeenStatus`]). A k8s-openapi `ObjectMeta` is 360 bytes before its strings, nearly all of
/// them fields no reader here looks at (labels, annotations, owners, managed fields).
#[derive(Debug, Clone)]
pub struct StoredRoute {
    /// Its identity, generation and creation time.
    pub meta: RouteMeta,
    /// `spec`, as decoded.
    pub spec: RouteSpec,
    /// What the status writer needs of `status`; `None` when the Route has none.
    pub seen: Option<SeenStatus>,
}

/// What is kept of a Route's `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMeta {
    /// Namespace, name, uid and `resourceVersion`.
    pub id: Identity,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` in Unix seconds.
    pub created: Option<i64>,
}

impl From<Route> for StoredRoute {
    fn from(route: Route) -> Self {
        let Route {
            metadata,
            spec,
            status,
        } = route;
        StoredRoute {
            meta: RouteMeta {
                generation: metadata.generation,
                created: metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
                id: metadata.into(),
            },
            spec,
            seen: status.map(|s| SeenStatus::of(&s)),
        }
    }
}

impl StoredRoute {
    /// A reference to the Route, as Events name the object they are about: what
    /// `kube::Resource::object_ref` gives for the whole object.
    pub fn object_ref(&self) -> ObjectReference {
        let id = &self.meta.id;
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        ObjectReference {
            api_version: Some(Route::api_version(&()).into_owned()),
            kind: Some(Route::kind(&()).into_owned()),
            name: text(&id.name),
            namespace: text(&id.namespace),
            uid: id.uid.as_deref().map(str::to_owned),
            ..ObjectReference::default()
        }
    }
}

/// The watched objects at one moment, in no particular order (compile sorts what it needs).
#[derive(Clone, Default)]
pub struct Snapshot {
    /// `portcullis.dev` Routes (`StoredRoute::from` a `Route`).
    pub routes: Vec<Arc<StoredRoute>>,
    /// `portcullis.dev` ServiceAccountCredentials.
    pub credentials: Vec<Arc<ServiceAccountCredential>>,
    /// All Ingresses in the watched namespaces (compile picks ours by class).
    pub ingresses: Vec<Arc<Ingress>>,
    /// All IngressClasses.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// TLS Secrets and Portcullis's own Secrets.
    pub secrets: Vec<Arc<Secret>>,
    /// Services, as far as backends read them (`ServiceRecord::from` a `Service`).
    pub services: Vec<Arc<ServiceRecord>>,
    /// EndpointSlices, likewise (`SliceRecord::from` an `EndpointSlice`).
    pub endpoint_slices: Vec<Arc<SliceRecord>>,
}

// Secrets hold key material: never print them, only count.
impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("routes", &self.routes.len())
            .field("credentials", &self.credentials.len())
            .field("ingresses", &self.ingresses.len())
            .field("ingress_classes", &self.ingress_classes.len())
            .field("secrets", &self.secrets.len())
            .field("services", &self.services.len())
            .field("endpoint_slices", &self.endpoint_slices.len())
            .finish()
    }
}
