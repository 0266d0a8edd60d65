//! The Kubernetes store against the embedded API: the conformance suite with two stores (two
//! replicas) on one API, then what only this backend has: the Secrets' shape, garbage Secrets,
//! and a new store instance finding what an earlier one wrote.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, start_api};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use portcullis::devapi::DevApi;
use portcullis::store::conformance::{self, NOW, PATIENCE, binding, session};
use portcullis::store::kubernetes::{KubernetesStore, STORE_LABEL, secret_name};
use portcullis::store::{Store, StoreEvent};
use serde_json::json;

const NS: &str = "portcullis-system";

async fn api_with_namespace() -> (DevApi, Client) {
    let api = start_api().await;
    let client = client(&api).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .expect("namespace");
    (api, client)
}

async fn ready(store: &dyn Store) {
    tokio::time::timeout(PATIENCE, store.ready())
        .await
        .expect("the store lists its Secrets");
}

/// Two replicas' stores on one API (each with its own client, as two processes would have).
async fn pair() -> (DevApi, Arc<dyn Store>, Arc<dyn Store>) {
    let (api, client_a) = api_with_namespace().await;
    let client_b = client(&api).await;
    let a: Arc<dyn Store> = KubernetesStore::start(client_a, NS).expect("store a");
    let b: Arc<dyn Store> = KubernetesStore::start(client_b, NS).expect("store b");
    ready(&*a).await;
    ready(&*b).await;
    (api, a, b)
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_api, a, b) = pair().await;
                conformance::$name(&*a, &*b).await.unwrap();
            }
        )*

        #[test]
        fn every_conformance_check_runs() {
            assert_eq!(&[$(stringify!($name)),*], conformance::CHECKS);
        }
    };
}

conformance_tests!(
    sessions_put_get_replace_delete,
    bindings_put_get_replace_delete,
    expiry_hides_and_garbage_collection_removes,
    listings_filter_and_order,
    deleting_a_session_deletes_its_bindings,
    revoke_is_single_use,
    revocation_reaches_the_other_handle,
    writes_and_deletions_reach_the_other_handle,
    events_reach_subscribers,
    ready_resolves,
    debug_shows_no_secret,
);

fn store_secrets(client: &Client) -> Api<KubeSecret> {
    Api::namespaced(client.clone(), NS)
}

#[tokio::test]
async fn entries_are_labelled_secrets_named_by_a_hash() {
    let (_api, client) = api_with_namespace().await;
    let store = KubernetesStore::start(client.clone(), NS).unwrap();
    ready(&*store).await;
    let s = session("alice", NOW, NOW + 3600);
    store.put_session(&s).await.unwrap();
    let bd = binding(&s, NOW, NOW + 600);
    store.put_binding(&bd).await.unwrap();
    store
        .revoke(&format!("session:{}", s.id), NOW + 3600)
        .await
        .unwrap();

    let list = store_secrets(&client)
        .list(&ListParams::default().labels(STORE_LABEL))
        .await
        .unwrap();
    let mut kinds: Vec<(String, String)> = list
        .items
        .iter()
        .map(|o| {
            (
                o.metadata.labels.as_ref().unwrap()[STORE_LABEL].clone(),
                o.type_.clone().unwrap(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("binding".into(), "portcullis.dev/binding".into()),
            ("revocation".into(), "portcullis.dev/revocation".into()),
            ("session".into(), "portcullis.dev/session".into()),
        ]
    );
    for o in &list.items {
        let meta = serde_json::to_string(&o.metadata).unwrap();
        assert!(!meta.contains(&s.id), "the session id is in {meta}");
        assert!(
            o.metadata.annotations.as_ref().unwrap()["portcullis.dev/expires-at"]
                .starts_with("2023-11-1")
        );
    }
    let session_secret = store_secrets(&client)
        .get(&secret_name("session", &s.id))
        .await
        .unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&session_secret.data.unwrap()["entry"].0).unwrap();
    assert_eq!(stored["id"], json!(s.id));
    assert_eq!(stored["expiresAt"], json!(NOW + 3600));
    assert_eq!(
        stored["idpRefreshToken"],
        json!(s.idp_refresh_token.as_ref().unwrap().expose())
    );
}

#[tokio::test]
async fn garbage_secrets_with_the_store_label_are_skipped() {
    let (_api, client) = api_with_namespace().await;
    let secrets = store_secrets(&client);
    let garbage = |name: &str, kind: &str, ty: &str, data: &[u8]| -> KubeSecret {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {STORE_LABEL: kind}},
            "type": ty,
            "data": {"entry": ByteString(data.to_vec())},
        }))
        .unwrap()
    };
    // Present before the store starts: the first list must not stop at it.
    for g in [
        garbage("junk-1", "session", "portcullis.dev/session", b"{not json"),
        garbage("junk-2", "revocation", "Opaque", b"{}"),
        garbage("junk-3", "widget", "portcullis.dev/widget", b"{}"),
        garbage(
            "junk-4",
            "revocation",
            "portcullis.dev/revocation",
            br#"{"id": "jti:forged", "expiresAt": 1}"#,
        ),
    ] {
        secrets.create(&PostParams::default(), &g).await.unwrap();
    }
    let store = KubernetesStore::start(client.clone(), NS).unwrap();
    ready(&*store).await;
    assert!(
        !store.is_revoked("jti:forged"),
        "a revocation under another name is not taken"
    );
    // Arriving through the watch: skipped too, and the store keeps working.
    secrets
        .create(
            &PostParams::default(),
            &garbage("junk-5", "binding", "portcullis.dev/binding", b"[1, 2"),
        )
        .await
        .unwrap();
    let id = "jti:after-garbage";
    assert!(store.revoke(id, NOW + 60).await.unwrap());
    let other = KubernetesStore::start(client.clone(), NS).unwrap();
    ready(&*other).await;
    assert!(other.is_revoked(id));
    assert!(!other.is_revoked("jti:forged"));
    let dbg = format!("{other:?}");
    assert!(dbg.contains("revocations: 1"), "{dbg}");
}

#[tokio::test]
async fn a_new_store_finds_what_an_earlier_one_wrote() {
    let (_api, client) = api_with_namespace().await;
    let first = KubernetesStore::start(client.clone(), NS).unwrap();
    ready(&*first).await;
    let s = session("alice", NOW, NOW + 3600);
    let bd = binding(&s, NOW, NOW + 600);
    first.put_session(&s).await.unwrap();
    first.put_binding(&bd).await.unwrap();
    assert!(first.revoke("jti:used", NOW + 60).await.unwrap());
    drop(first);

    let second = KubernetesStore::start(client.clone(), NS).unwrap();
    ready(&*second).await;
    assert_eq!(second.session(&s.id, NOW).as_deref(), Some(&s));
    assert_eq!(second.binding(&bd.id, NOW).as_deref(), Some(&bd));
    assert!(second.is_revoked("jti:used"));
    assert!(!second.revoke("jti:used", NOW + 60).await.unwrap());
    // It can delete what the first one wrote, bindings included.
    let mut rx = second.subscribe();
    assert!(second.delete_session(&s.id).await.unwrap());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(seen.contains(&StoreEvent::BindingDeleted {
        id: bd.id.clone(),
        session_id: s.id.clone()
    }));
    let left = store_secrets(&client)
        .list(&ListParams::default().labels(&format!("{STORE_LABEL}=binding")))
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "the session's binding Secret is gone"
    );
}

#[tokio::test]
async fn a_binding_written_elsewhere_is_deleted_with_its_session() {
    // The session's replica has not seen the binding yet (its watch is stopped): deleting the
    // session still finds it through the API.
    let (api, client) = api_with_namespace().await;
    let a = KubernetesStore::start(client.clone(), NS).unwrap();
    let b = KubernetesStore::start(common::client(&api).await, NS).unwrap();
    ready(&*a).await;
    ready(&*b).await;
    let s = session("alice", NOW, NOW + 3600);
    a.put_session(&s).await.unwrap();
    a.stop();
    tokio::time::timeout(PATIENCE, async {
        while b.session(&s.id, NOW).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b sees the session");
    let bd = binding(&s, NOW, NOW + 600);
    b.put_binding(&bd).await.unwrap();
    assert!(a.binding(&bd.id, NOW).is_none());
    assert!(a.delete_session(&s.id).await.unwrap());
    let left = store_secrets(&client)
        .list(&ListParams::default().labels(STORE_LABEL))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items.len());
}

#[tokio::test]
async fn a_session_from_another_replica_loads_before_the_watch_brings_it() {
    let (api, client) = api_with_namespace().await;
    let a = KubernetesStore::start(client.clone(), NS).unwrap();
    let b = KubernetesStore::start(common::client(&api).await, NS).unwrap();
    ready(&*a).await;
    ready(&*b).await;
    b.stop();
    let s = session("alice", NOW, NOW + 3600);
    a.put_session(&s).await.unwrap();
    assert!(b.session(&s.id, NOW).is_none());
    assert_eq!(
        b.load_session(&s.id, NOW).await.unwrap().as_deref(),
        Some(&s)
    );
    assert_eq!(b.session(&s.id, NOW).as_deref(), Some(&s), "and keeps it");
    assert!(b.load_session(&s.id, NOW + 3600).await.unwrap().is_none());
}

#[tokio::test]
async fn the_controller_does_not_watch_the_store_secrets() {
    let f = common::fixture::Fixture::start().await;
    let store = KubernetesStore::start(f.client.clone(), NS).unwrap();
    ready(&*store).await;
    let s = session("alice", NOW, NOW + 3600);
    store.put_session(&s).await.unwrap();
    store.revoke("jti:x", NOW + 60).await.unwrap();
    // An ordinary Secret written after them: once the controller has it, it has seen the
    // store's Secrets go by too.
    let marker: KubeSecret =
        serde_json::from_value(json!({"metadata": {"name": "marker"}, "type": "Opaque"})).unwrap();
    store_secrets(&f.client)
        .create(&PostParams::default(), &marker)
        .await
        .unwrap();
    let watchers = Arc::clone(&f.controller.as_ref().unwrap().watchers);
    common::eventually(10, "the controller sees the marker", || {
        let found = watchers.own_secret(NS, "marker").is_some();
        async move { found.then_some(()) }
    })
    .await;
    let names: Vec<String> = watchers
        .own_secrets()
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("portcullis-session-")
                && !n.starts_with("portcullis-revocation-")),
        "{names:?}"
    );
    drop(store);
    f.stop().await;
}
