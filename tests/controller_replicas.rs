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
        Self::start_with(
            name,
            kubeconfig,
            &[("PORTCULLIS_LISTEN_HTTP", "127.0.0.1:0")],
        )
    }

    /// A replica with extra settings in its environment.
    fn start_with(name: &str, kubeconfig: &std::path::Path, env: &[(&str, &str)]) -> Replica {
        let admin = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("POD_NAME", name)
            .env("PORTCULLIS_LISTEN_ADMIN", format!("127.0.0.1:{admin}"))
            // Two replicas share this machine: each binds its own proxy ports.
            .env("PORTCULLIS_LISTEN_HTTPS", "127.0.0.1:0")
            .env("PORTCULLIS_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("portcullis run starts");
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

/// One GET through a replica's plain-HTTP listener; the status, or None when nothing answered.
async fn get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-H",
            &format!("Host: {host}"),
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    // curl reports 000 when nothing answered.
    let code: u16 = code.parse().ok().filter(|c| *c != 0)?;
    Some((code, body.to_owned()))
}

#[tokio::test]
async fn a_killed_leader_is_replaced_while_every_replica_keeps_serving() {
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
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(portcullis::echo::serve(echo, stop_rx));

    // Both start at once: they race to create the signing keys.
    let ports = [free_port(), free_port()];
    let mut replicas: Vec<Option<Replica>> = ["replica-a", "replica-b"]
        .iter()
        .zip(ports)
        .map(|(name, port)| {
            let http = format!("127.0.0.1:{port}");
            Some(Replica::start_with(
                name,
                &kubeconfig,
                &[
                    ("PORTCULLIS_LISTEN_HTTP", http.as_str()),
                    ("PORTCULLIS_AUTHENTICATE_URL", "http://auth.ha.localhost"),
                    ("PORTCULLIS_ALLOW_LOOPBACK_UPSTREAMS", "true"),
                ],
            ))
        })
        .collect();
    eventually(60, "both replicas ready", || async {
        let mut all = true;
        for r in replicas.iter().flatten() {
            all &= r.ready().await;
        }
        all.then_some(())
    })
    .await;
    // Exactly one key set: both replicas publish the same keys, and they stay the same.
    let jwks = |port: u16| async move {
        let (code, body) = get(port, "auth.ha.localhost", "/.well-known/jwks.json").await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && !v["keys"].as_array()?.is_empty()).then_some(v)
    };
    let first = eventually(30, "keys on replica-a", || jwks(ports[0])).await;
    let agreed = eventually(30, "the same keys on replica-b", || async {
        jwks(ports[1]).await.filter(|k| *k == first)
    })
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(c.clone(), "portcullis-system");
    let created = secrets.get("portcullis-signing-keys").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = secrets.get("portcullis-signing-keys").await.unwrap();
    assert_eq!(
        created.metadata.resource_version, later.metadata.resource_version,
        "the signing keys were rewritten after both replicas started"
    );
    assert_eq!(jwks(ports[0]).await, Some(agreed));

    routes
        .patch(
            "web",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"from": "http://web.ha.localhost", "to": [{"url": format!("http://{echo_addr}")}],
                         "allowPublicUnauthenticatedAccess": true},
            })),
        )
        .await
        .unwrap();
    for port in ports {
        eventually(30, "the route served by every replica", || async {
            (get(port, "web.ha.localhost", "/").await?.0 == 200).then_some(())
        })
        .await;
    }

    // Kill the leader outright (no lease release); the other keeps serving throughout.
    let leader = eventually(30, "a lease holder", || holder(&leases)).await;
    let (dead, alive) = if leader == "replica-a" {
        (0, 1)
    } else {
        (1, 0)
    };
    let survivor = ["replica-a", "replica-b"][alive];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let done = std::sync::Arc::clone(&done);
        let port = ports[alive];
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                match get(port, "web.ha.localhost", "/").await {
                    Some((200, _)) => ok += 1,
                    other => failed.push(other.map(|(code, _)| code)),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    drop(replicas[dead].take());
    // The lease lasts 15 s and is retried every 2 s: the survivor must hold it well within 30 s.
    eventually(30, "the survivor takes the expired lease", || async {
        (holder(&leases).await.as_deref() == Some(survivor)).then_some(())
    })
    .await;
    // Leader duties resume: a new route gets its status from the survivor.
    routes
        .patch(
            "after",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "after", "namespace": "default"},
                "spec": {"from": "http://after.ha.localhost", "to": [{"url": format!("http://{echo_addr}")}],
                         "allowPublicUnauthenticatedAccess": true},
            })),
        )
        .await
        .unwrap();
    eventually(30, "status written by the new leader", || async {
        let r = routes.get("after").await.ok()?;
        r.status?.conditions.filter(|c| !c.is_empty())
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = hammer.await.unwrap();
    assert!(ok > 10, "only {ok} requests were answered");
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
    drop(replicas);
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.shutdown().await;
}

#[tokio::test]
async fn sigterm_under_load_finishes_the_requests_in_flight_then_exits() {
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
    // An upstream that takes a second per answer, so requests are in flight at the SIGTERM.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"slow")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let mut replica = Replica::start_with(
        "replica-a",
        &kubeconfig,
        &[
            ("PORTCULLIS_LISTEN_HTTP", http.as_str()),
            ("PORTCULLIS_ALLOW_LOOPBACK_UPSTREAMS", "true"),
        ],
    );
    let routes: Api<Route> = Api::namespaced(c.clone(), "default");
    routes
        .patch(
            "slow",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "slow", "namespace": "default"},
                "spec": {"from": "http://slow.localhost", "to": [{"url": format!("http://{upstream_addr}")}],
                         "allowPublicUnauthenticatedAccess": true},
            })),
        )
        .await
        .unwrap();
    eventually(60, "the slow route served", || async {
        (get(port, "slow.localhost", "/").await?.0 == 200).then_some(())
    })
    .await;

    let in_flight: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(port, "slow.localhost", "/").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &replica.child.id().to_string()])
        .status();
    for request in in_flight {
        let answer = request.await.unwrap();
        assert_eq!(
            answer.as_ref().map(|(code, body)| (*code, body.as_str())),
            Some((200, "slow")),
            "a request in flight at SIGTERM was cut off"
        );
    }
    // The listeners drain for at most 5 s; the process is gone well within a pod's grace period.
    let status = eventually(20, "the replica exits after draining", || {
        let status = replica.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    assert!(
        get(port, "slow.localhost", "/").await.is_none(),
        "still accepting"
    );
    api.shutdown().await;
}
