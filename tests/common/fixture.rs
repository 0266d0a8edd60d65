//! The controller against an in-memory embedded API, for the integration tests: CRDs and the
//! namespaces `team-a`, `team-b` and `portcullis-system` installed, a controller that is always
//! the leader, and helpers to apply objects and wait for what comes back.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use portcullis::api::Route;
use portcullis::config::Settings;
use portcullis::controller::Controller;
use portcullis::controller::leader::Leadership;
use portcullis::devapi::DevApi;
use portcullis::metrics::Metrics;
use portcullis::routing::live::LiveTable;
use serde_json::json;
use tokio::sync::watch;

use super::{client, eventually, start_api};

pub struct Fixture {
    pub api: DevApi,
    pub client: Client,
    pub live: LiveTable,
    pub metrics: Arc<Metrics>,
    pub controller: Option<Controller>,
    pub shutdown: watch::Sender<bool>,
    /// Why people cannot sign in, as the identity provider would report it.
    pub sign_in: watch::Sender<Option<String>>,
}

impl Fixture {
    pub async fn start() -> Self {
        Self::with_settings(Settings {
            allow_loopback_upstreams: true,
            publish_status_address: "127.0.0.1".into(),
            ..Settings::default()
        })
        .await
    }

    pub async fn with_settings(settings: Settings) -> Self {
        let api = start_api().await;
        let client = client(&api).await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in portcullis::api::all_crds() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("crd");
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in ["team-a", "team-b", "portcullis-system"] {
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
                )
                .await
                .expect("namespace");
        }
        let live = LiveTable::new();
        let metrics = Arc::new(Metrics::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (sign_in, sign_in_rx) = watch::channel(None);
        let context = portcullis::controller::compile_context(
            &settings,
            &api.url().parse().unwrap(),
            Some("auth.localhost".into()),
            &[api.addr],
        );
        let controller = Controller::start(
            client.clone(),
            &settings,
            context,
            live.clone(),
            Leadership::always(),
            Some("http://auth.localhost".parse().unwrap()),
            Some(sign_in_rx),
            Arc::clone(&metrics),
            shutdown_rx,
        );
        live.wait_for(1, Duration::from_secs(10))
            .await
            .expect("the first table is published");
        Fixture {
            api,
            client,
            live,
            metrics,
            controller: Some(controller),
            shutdown,
            sign_in,
        }
    }

    pub fn routes(&self, ns: &str) -> Api<Route> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn apply<K>(&self, ns: &str, doc: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
        api.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(doc),
        )
        .await
        .expect("apply")
    }

    pub async fn route(&self, ns: &str, name: &str, spec: serde_json::Value) -> Route {
        self.apply(
            ns,
            json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }),
        )
        .await
    }

    /// Waits until `host` + `path` is served by `id` (or by nothing, for `None`).
    pub async fn served(&self, host: &str, path: &str, id: Option<&str>) {
        let what = format!("{host}{path} served by {id:?}");
        eventually(10, &what, || async {
            let table = self.live.load();
            let now = table.find(host, path).map(|(_, r)| r.id.to_string());
            (now.as_deref() == id).then_some(())
        })
        .await;
    }

    /// Waits until a condition of a Route has `status` and returns its reason.
    pub async fn condition(&self, ns: &str, name: &str, type_: &str, status: &str) -> String {
        let routes = self.routes(ns);
        eventually(10, &format!("{ns}/{name} {type_}={status}"), || {
            let routes = routes.clone();
            async move {
                let r = routes.get(name).await.ok()?;
                let c = r
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == type_)?;
                (c.status == status).then_some(c.reason)
            }
        })
        .await
    }

    pub async fn events_for(&self, ns: &str, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect()
    }

    /// Waits until `ns/name` has at least one Event and returns its Events.
    pub async fn wait_events(&self, ns: &str, name: &str) -> Vec<Event> {
        eventually(10, &format!("an Event on {ns}/{name}"), || async {
            let e = self.events_for(ns, name).await;
            (!e.is_empty()).then_some(e)
        })
        .await
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(c) = self.controller.take() {
            c.join().await;
        }
        self.api.shutdown().await;
    }
}
