//! kube-rs against the embedded API: typed CRUD, optimistic concurrency, selectors, paging,
//! watchers (legacy and watch-list), reflectors, a `Controller` writing status, the event
//! `Recorder`, expired versions, and concurrent writers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use common::{client, eventually, start_api, start_api_with};
use portcullis::devapi::store::StoreOptions;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn typed_crud_and_conflicts() {
    let api = start_api().await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    let rv1 = created.resource_version().expect("rv");

    let err = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .expect_err("exists");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("k".into(), "w".into())]));
    let replaced = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_ne!(replaced.resource_version().expect("rv"), rv1);
    // The same stale object again: 409 Conflict.
    let err = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect_err("stale");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );

    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|d| d.get("x"))
            .map(String::as_str),
        Some("1")
    );
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/data/x"}]))
                    .expect("patch"),
            ),
        )
        .await
        .expect("json patch");
    assert!(patched.data.as_ref().is_some_and(|d| !d.contains_key("x")));

    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let err = cms.get("a").await.expect_err("gone");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let err = cms
        .delete("a", &DeleteParams::default())
        .await
        .expect_err("gone");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    // Objects in a namespace that does not exist are refused.
    let other: Api<ConfigMap> = Api::namespaced(c.clone(), "missing");
    let err = other
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .expect_err("no ns");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    api.shutdown().await;
}

#[tokio::test]
async fn selectors_and_paging() {
    let api = start_api().await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..25 {
        let mut o = cm(&format!("p{i:02}"), &[]);
        o.metadata.labels = Some(BTreeMap::from([(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        )]));
        cms.create(&PostParams::default(), &o)
            .await
            .expect("create");
    }
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .expect("list");
    assert_eq!(even.items.len(), 13);
    let one = cms
        .list(&ListParams::default().fields("metadata.name=p07"))
        .await
        .expect("list");
    assert_eq!(one.items.len(), 1);
    let err = cms
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .expect_err("unsupported field");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.expect("page");
        pages += 1;
        names.extend(page.items.iter().map(|o| o.name_any()));
        // Writes between pages must not show up in later pages of the same list.
        cms.create(
            &PostParams::default(),
            &cm(&format!("zz-late-{pages}"), &[]),
        )
        .await
        .expect("create");
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert!(names.iter().all(|n| n.starts_with('p')));
    api.shutdown().await;
}

#[tokio::test]
async fn watchers_see_changes_in_order() {
    let api = start_api().await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("before", &[]))
        .await
        .expect("create");

    for streaming in [false, true] {
        let cfg = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let mut stream = watcher(cms.clone(), cfg).boxed();
        // The initial state arrives first.
        let mut seen_before = false;
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("initial events")
            .expect("watch ok")
        {
            match ev {
                watcher::Event::InitApply(o) if o.name_any() == "before" => seen_before = true,
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert!(seen_before, "initial list (streaming={streaming})");
        let name = format!("live-{streaming}");
        cms.create(&PostParams::default(), &cm(&name, &[]))
            .await
            .expect("create");
        cms.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await
        .expect("patch");
        cms.delete(&name, &DeleteParams::default())
            .await
            .expect("delete");
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
                .await
                .expect("live event")
                .expect("watch ok")
                .expect("stream open");
            match ev {
                watcher::Event::Apply(o) if o.name_any() == name => {
                    kinds.push(if o.data.as_ref().is_some_and(|d| !d.is_empty()) {
                        "modified"
                    } else {
                        "added"
                    })
                }
                watcher::Event::Delete(o) if o.name_any() == name => kinds.push("deleted"),
                _ => {}
            }
        }
        assert_eq!(
            kinds,
            ["added", "modified", "deleted"],
            "streaming={streaming}"
        );
    }
    api.shutdown().await;
}

#[tokio::test]
async fn reflector_tracks_state_and_label_transitions() {
    let api = start_api().await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().labels("team=a");
    let task = tokio::spawn(
        watcher(cms.clone(), cfg)
            .reflect(writer)
            .applied_objects()
            .for_each(|_| async {}),
    );
    let mut o = cm("x", &[]);
    o.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
    cms.create(&PostParams::default(), &o)
        .await
        .expect("create");
    eventually(10, "reflector sees x", || {
        let r = reader.clone();
        async move { (r.state().len() == 1).then_some(()) }
    })
    .await;
    // Moving the object out of the selector is a deletion for this watcher.
    cms.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})),
    )
    .await
    .expect("relabel");
    eventually(10, "reflector drops x", || {
        let r = reader.clone();
        async move { r.state().is_empty().then_some(()) }
    })
    .await;
    task.abort();
    api.shutdown().await;
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Gizmo",
    namespaced,
    status = "GizmoStatus"
)]
pub struct GizmoSpec {
    size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct GizmoStatus {
    doubled: i64,
    observed_generation: Option<i64>,
}

struct Ctx {
    gizmos: Api<Gizmo>,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

async fn reconcile(g: Arc<Gizmo>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let status = json!({"status": {"doubled": g.spec.size * 2, "observed_generation": g.metadata.generation}});
    ctx.gizmos
        .patch_status(
            &g.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await?;
    ctx.recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some(format!("size {}", g.spec.size)),
                action: "Reconcile".into(),
                secondary: None,
            },
            &g.object_ref(&()),
        )
        .await?;
    Ok(Action::await_change())
}

#[tokio::test]
async fn controller_writes_status_and_events() {
    let api = start_api().await;
    let c = client(&api).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    crds.create(&PostParams::default(), &Gizmo::crd())
        .await
        .expect("crd");
    // The kind is served as soon as the CRD write is acknowledged.
    let gizmos: Api<Gizmo> = Api::namespaced(c.clone(), "default");
    gizmos
        .create(
            &PostParams::default(),
            &Gizmo::new("g", GizmoSpec { size: 3 }),
        )
        .await
        .expect("create gizmo");
    let crd = crds.get("gizmos.example.com").await.expect("crd");
    let conds = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let ctx = Arc::new(Ctx {
        gizmos: gizmos.clone(),
        recorder: Recorder::new(
            c.clone(),
            Reporter {
                controller: "gizmo-controller".into(),
                instance: None,
            },
        ),
    });
    let controller = tokio::spawn(
        Controller::new(gizmos.clone(), watcher::Config::default())
            .run(
                reconcile,
                |_, _: &ReconcileError, _| Action::requeue(Duration::from_secs(1)),
                ctx,
            )
            .for_each(|_| async {}),
    );
    eventually(15, "status written by the controller", || {
        let g = gizmos.clone();
        async move {
            let o = g.get("g").await.ok()?;
            (o.status.as_ref()?.doubled == 6).then_some(())
        }
    })
    .await;
    // A spec change bumps generation and is reconciled again; the status write did not.
    let before = gizmos.get("g").await.expect("get").metadata.generation;
    assert_eq!(before, Some(1));
    gizmos
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .expect("patch");
    eventually(15, "second reconcile", || {
        let g = gizmos.clone();
        async move {
            let o = g.get("g").await.ok()?;
            let s = o.status.as_ref()?;
            (s.doubled == 10 && s.observed_generation == Some(2)).then_some(())
        }
    })
    .await;
    let events: Api<KubeEvent> = Api::namespaced(c.clone(), "default");
    let evs = eventually(10, "events recorded", || {
        let e = events.clone();
        async move {
            let l = e.list(&ListParams::default()).await.ok()?;
            (!l.items.is_empty()).then_some(l.items)
        }
    })
    .await;
    assert!(evs.iter().any(|e| e.reason.as_deref() == Some("Reconciled")
        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("g")));
    // The same events, read as core/v1 with the field selector `kubectl describe` uses.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), "default");
    let described = core
        .list(&ListParams::default().fields("involvedObject.name=g,involvedObject.kind=Gizmo"))
        .await
        .expect("core events");
    assert!(
        described
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Reconciled")
                && e.message.as_deref() == Some("size 3")
                && e.involved_object.name.as_deref() == Some("g")),
        "{:?}",
        described.items
    );
    controller.abort();

    // Deleting the CRD removes the kind and its objects.
    crds.delete("gizmos.example.com", &DeleteParams::default())
        .await
        .expect("delete crd");
    let err = gizmos
        .list(&ListParams::default())
        .await
        .expect_err("kind gone");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    api.shutdown().await;
}

#[tokio::test]
async fn expired_versions_make_watchers_relist() {
    let api = start_api_with(StoreOptions {
        history: 8,
        ..StoreOptions::default()
    })
    .await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("e", &[]))
        .await
        .expect("create");
    let old_rv = first.resource_version().expect("rv");
    for i in 0..20 {
        cms.patch(
            "e",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .expect("patch");
    }
    // A raw watch from the old version gets an in-stream 410.
    let mut raw = cms
        .watch(&kube::api::WatchParams::default(), &old_rv)
        .await
        .expect("watch starts")
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), raw.next())
        .await
        .expect("event")
        .expect("some");
    match ev {
        Ok(kube::api::WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    // A list at an expired exact version is refused the same way.
    let err = cms
        .list(
            &ListParams::default()
                .at(&old_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .expect_err("expired");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410),
        "{err:?}"
    );
    api.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_never_lose_updates() {
    let api = start_api().await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("counter", &[("n", "0")]))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                loop {
                    let mut o = cms.get("counter").await.expect("get");
                    let n: i64 = o
                        .data
                        .as_ref()
                        .and_then(|d| d.get("n"))
                        .and_then(|s| s.parse().ok())
                        .expect("n");
                    o.data = Some(BTreeMap::from([("n".into(), (n + 1).to_string())]));
                    match cms.replace("counter", &PostParams::default(), &o).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let o = cms.get("counter").await.expect("get");
    assert_eq!(
        o.data.and_then(|d| d.get("n").cloned()).as_deref(),
        Some("80")
    );
    api.shutdown().await;
}

#[tokio::test]
async fn namespaces_and_finalizers() {
    let api = start_api().await;
    let c = client(&api).await;
    let nss: Api<Namespace> = Api::all(c.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("team-a".into());
    let created = nss.create(&PostParams::default(), &ns).await.expect("ns");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "team-a");
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.expect("cm");
    cms.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let o = cms.get("held").await.expect("still there");
    assert!(o.metadata.deletion_timestamp.is_some());
    nss.delete("team-a", &DeleteParams::default())
        .await
        .expect("delete ns");
    let n = nss.get("team-a").await.expect("terminating");
    assert_eq!(
        n.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually(10, "namespace gone", || {
        let nss = nss.clone();
        async move {
            nss.get_opt("team-a")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    api.shutdown().await;
}

#[tokio::test]
async fn token_requests_verify_against_the_published_jwks() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;

    let api = start_api().await;
    let c = client(&api).await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("bot".into());
    let sa = sas.create(&PostParams::default(), &sa).await.expect("sa");
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["portcullis".into()],
            expiration_seconds: Some(1200),
            ..Default::default()
        },
        ..Default::default()
    };
    let tr = sas
        .create_token_request("bot", &PostParams::default(), &req)
        .await
        .expect("token request");
    let status = tr.status.expect("status");
    // Discovery and keys are what a verifier (Portcullis federation, later) fetches.
    let disco: serde_json::Value = c
        .request(
            http::Request::get("/.well-known/openid-configuration")
                .body(Vec::new())
                .expect("req"),
        )
        .await
        .expect("discovery");
    assert_eq!(disco["issuer"], api.url());
    let jwks: JwkSet = c
        .request(
            http::Request::get("/openid/v1/jwks")
                .body(Vec::new())
                .expect("req"),
        )
        .await
        .expect("jwks");
    let key = DecodingKey::from_jwk(&jwks.keys[0]).expect("key");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["portcullis"]);
    v.set_issuer(&[api.url()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&status.token, &key, &v)
        .expect("token verifies")
        .claims;
    assert_eq!(claims["sub"], "system:serviceaccount:default:bot");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        json!(sa.metadata.uid)
    );

    let err = sas
        .create_token_request("missing", &PostParams::default(), &req)
        .await
        .expect_err("no such service account");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    api.shutdown().await;
}
