//! Two `portcullis run` processes against one API: both compile and report ready, only the Lease
//! holder writes status and Events, and a replica that shuts down hands over at once.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{client, eventually, start_api};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use portcullis::api::Route;
use serde_json::json;

struct Replica {
    child: Child,
    admin: u16,
}

impl Replica {
    fn start(name: &str, kubeconfig: &std::path::Path) -> Replica {
        let admin = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("POD_NAME", name)
            .env("PORTCULLIS_LISTEN_ADMIN", format!("127.0.0.1:{admin}"))
            // Two replicas share this machine: each binds its own proxy ports.
            .env("PORTCULLIS_LISTEN_HTTP", "127.0.0.1:0")
            .env("PORTCULLIS_LISTEN_HTTPS", "127.0.0.1:0")
            .env("PORTCULLIS_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("portcullis run starts");
        Replica { child, admin }
    }

    async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .await;
        out.is_ok_and(|o| o.stdout == b"200")
    }

    /// SIGTERM, then wait for the exit without blocking the runtime the API runs on.
    async fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        eventually(20, "the replica exits", || {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            async move { exited.then_some(()) }
        })
        .await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("portcullis-leader")
        .await
        .ok()?
        .spec?
        .holder_identity
}

/// The replicas that reported Events about `route`.
async fn reporters(events: &Api<Event>, route: &str) -> Vec<String> {
    let list = events.list(&ListParams::default()).await.unwrap();
    let mut out: Vec<String> = list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(route))
        .filter_map(|e| e.reporting_instance)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn only_the_lease_holder_writes_and_a_leaving_leader_hands_over() {
    let api = start_api().await;
    let c = client(&api).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    for crd in portcullis::api::all_crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "portcullis-system"}})).unwrap(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml()).unwrap();
    let leases: Api<Lease> = Api::namespaced(c.clone(), "portcullis-system");
    let routes: Api<Route> = Api::namespaced(c.clone(), "default");
    let events: Api<Event> = Api::namespaced(c.clone(), "default");

    let mut a = Replica::start("replica-a", &kubeconfig);
    eventually(30, "replica-a holds the lease", || async {
        (holder(&leases).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = Replica::start("replica-b", &kubeconfig);
    // Every replica compiles and serves, leader or not.
    eventually(30, "both replicas ready", || async {
        (a.ready().await && b.ready().await).then_some(())
    })
    .await;

    let bad = |name: &str| {
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"from": format!("http://{name}.localhost"), "to": [{"url": "http://169.254.169.254/"}],
                        "allowAnyAuthenticatedUser": true}})
    };
    let apply = |name: &str| {
        let routes = routes.clone();
        let doc = bad(name);
        let name = name.to_owned();
        async move {
            routes
                .patch(&name, &PatchParams::apply("test"), &Patch::Apply(doc))
                .await
                .unwrap()
        }
    };
    apply("first").await;
    eventually(30, "status of the first route", || async {
        let r = routes.get("first").await.ok()?;
        r.status?.conditions.filter(|c| !c.is_empty())
    })
    .await;
    let by = eventually(30, "an Event on the first route", || async {
        let r = reporters(&events, "first").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(by, ["replica-a"], "only the leader records Events");

    a.terminate().await;
    eventually(10, "replica-b takes the released lease", || async {
        (holder(&leases).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    apply("second").await;
    let by = eventually(30, "an Event on the second route", || async {
        let r = reporters(&events, "second").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(by, ["replica-b"]);
    assert_eq!(reporters(&events, "first").await, ["replica-a"]);
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.shutdown().await;
}
