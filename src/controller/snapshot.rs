//! The input of `compile`: every watched object, as the watch stores hold them at one moment.
//! Plain data, so compile tests build snapshots by hand (`mk_*` builders) and never touch an API.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::compile::backends::{ServiceRecord, SliceRecord};
use super::status::SeenStatus;
use crate::api::{Route, ServiceAccountCredential};

/// A Route as the stores keep it: the object without its `status`, which compile never reads,
/// and of the status only what the status writer compares ([`SeenStatus`]). Reads as the Route
/// it holds, whose `status` is therefore always `None`: what is known of the status is
/// [`StoredRoute::seen`].
#[derive(Debug, Clone)]
pub struct StoredRoute {
    route: Route,
    /// What the status writer needs of `status`; `None` when the Route has none.
    pub seen: Option<SeenStatus>,
}

impl From<Route> for StoredRoute {
    fn from(mut route: Route) -> Self {
        let seen = route.status.take().map(|s| SeenStatus::of(&s));
        StoredRoute { route, seen }
    }
}

impl std::ops::Deref for StoredRoute {
    type Target = Route;

    fn deref(&self) -> &Route {
        &self.route
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
