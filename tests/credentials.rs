//! ServiceAccountCredentials against the embedded API: the generated Secret, the digests the
//! table verifies against, rotation on demand and after tampering, conflicts, revocation on
//! delete, and the signing-key Secret.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use common::fixture::Fixture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use portcullis::api::ServiceAccountCredential;
use portcullis::controller::credentials::signing::{self, SigningConfig};
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::token::{ClientSecret, verify_secret};
use serde_json::json;

const OWN: &str = "portcullis-system";

fn entry(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8(v.0.clone()).unwrap())
}

async fn credential(f: &Fixture, name: &str, spec: serde_json::Value) -> ServiceAccountCredential {
    f.apply(
        "team-a",
        json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "ServiceAccountCredential",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": spec,
        }),
    )
    .await
}

/// Waits until Secret `team-a/<name>` exists and satisfies `ok`.
async fn secret_where(f: &Fixture, name: &str, ok: impl Fn(&Secret) -> bool) -> Secret {
    let secrets: Api<Secret> = Api::namespaced(f.client.clone(), "team-a");
    eventually(10, &format!("Secret team-a/{name}"), || {
        let secrets = secrets.clone();
        let ok = &ok;
        async move { secrets.get_opt(name).await.ok().flatten().filter(|s| ok(s)) }
    })
    .await
}

/// Waits until the live table accepts (or, with `false`, refuses) `secret` for `client_id`.
async fn table_accepts(f: &Fixture, client_id: &str, secret: &str, accepted: bool) {
    let what = format!(
        "the table to {} a secret",
        if accepted { "accept" } else { "refuse" }
    );
    eventually(10, &what, || async {
        let table = f.live.load();
        let now = jiff::Timestamp::now().as_second();
        let ok = table
            .credentials
            .get(client_id)
            .is_some_and(|r| verify_secret(r, &ClientSecret::new(secret), now));
        (ok == accepted).then_some(())
    })
    .await;
}

async fn event_reasons(f: &Fixture, name: &str) -> Vec<String> {
    f.events_for("team-a", name)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

async fn wait_event(f: &Fixture, name: &str, reason: &str) {
    eventually(10, &format!("Event {reason} on {name}"), || async {
        event_reasons(f, name)
            .await
            .iter()
            .any(|r| r == reason)
            .then_some(())
    })
    .await;
}

/// A log sink for the whole test process, at trace level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_credential_gets_its_secret_rotates_and_is_revoked_with_no_secret_in_any_log() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish(),
    )
    .expect("the only subscriber of this test process");

    let f = Fixture::start().await;
    let sac = credential(
        &f,
        "bot",
        json!({"scopes": ["route:billing"], "claims": {"team": "payments"}, "rotation": {"every": "720h", "overlap": "1h"}}),
    )
    .await;
    let uid = sac.metadata.uid.clone().unwrap();

    // The generated Secret: owned, labelled, with everything a client needs.
    let first = secret_where(&f, "bot-oauth", |s| entry(s, "client_secret").is_some()).await;
    let secret1 = entry(&first, "client_secret").unwrap();
    assert!(
        secret1.starts_with("pcs_") && secret1.len() == 47,
        "{}",
        secret1.len()
    );
    assert_eq!(entry(&first, "client_id").as_deref(), Some(uid.as_str()));
    assert_eq!(
        entry(&first, "token_url").as_deref(),
        Some("http://auth.localhost/oauth2/token")
    );
    assert_eq!(
        entry(&first, "issuer").as_deref(),
        Some("http://auth.localhost")
    );
    assert_eq!(first.type_.as_deref(), Some("Opaque"));
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        (uid.as_str(), Some(true))
    );
    assert_eq!(
        first
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("portcullis.dev/credential")
            .map(String::as_str),
        Some("bot")
    );
    table_accepts(&f, &uid, &secret1, true).await;
    table_accepts(&f, &uid, "pcs_wrong", false).await;
    let table = f.live.load();
    let record = table.credentials.get(&uid).unwrap();
    assert_eq!(record.subject(), "serviceaccount:team-a/bot");
    assert_eq!(record.scopes, vec!["route:billing".to_owned()]);
    assert_eq!(record.claims.get("team"), Some(&json!("payments")));
    assert!(table.keys.is_some(), "the signing keys are in the table");

    // Status.
    let sacs: Api<ServiceAccountCredential> = Api::namespaced(f.client.clone(), "team-a");
    let status = eventually(10, "credential status", || async {
        let s = sacs.get("bot").await.ok()?.status?;
        s.conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(s)
    })
    .await;
    assert_eq!(status.client_id.as_deref(), Some(uid.as_str()));
    assert_eq!(status.secret_name.as_deref(), Some("bot-oauth"));
    assert!(status.current_secret_created.is_some());
    wait_event(&f, "bot", "SecretIssued").await;

    // The digests in the own namespace hold no secret.
    let own: Api<Secret> = Api::namespaced(f.client.clone(), OWN);
    let stored = own
        .get(&format!("credential-{uid}"))
        .await
        .expect("digest Secret");
    for (k, v) in stored.data.as_ref().unwrap() {
        assert!(
            !String::from_utf8_lossy(&v.0).contains(&secret1),
            "{k} holds the secret"
        );
    }

    // Rotation on demand: the old secret keeps working for the overlap, as client_secret_previous.
    f.apply::<ServiceAccountCredential>(
        "team-a",
        json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "ServiceAccountCredential",
            "metadata": {"name": "bot", "namespace": "team-a", "annotations": {"portcullis.dev/rotate": "1"}},
            "spec": {"scopes": ["route:billing"], "claims": {"team": "payments"}, "rotation": {"every": "720h", "overlap": "1h"}},
        }),
    )
    .await;
    let second = secret_where(&f, "bot-oauth", |s| {
        entry(s, "client_secret").is_some_and(|v| v != secret1)
    })
    .await;
    let secret2 = entry(&second, "client_secret").unwrap();
    assert_eq!(
        entry(&second, "client_secret_previous"),
        Some(secret1.clone())
    );
    assert!(entry(&second, "client_secret_previous_expires").is_some());
    table_accepts(&f, &uid, &secret2, true).await;
    table_accepts(&f, &uid, &secret1, true).await;
    wait_event(&f, "bot", "SecretRotated").await;
    let status = eventually(10, "previousSecretExpires", || async {
        sacs.get("bot").await.ok()?.status?.previous_secret_expires
    })
    .await;
    let in_an_hour = jiff::Timestamp::now().as_second() + 3600;
    assert!((status.0.as_second() - in_an_hour).abs() < 60);

    // An edited Secret is not trusted: a fresh secret replaces it, and a Warning says why.
    let secrets: Api<Secret> = Api::namespaced(f.client.clone(), "team-a");
    secrets
        .patch(
            "bot-oauth",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"client_secret": "pcs_chosen_by_someone_else"}})),
        )
        .await
        .expect("edit");
    let third = secret_where(&f, "bot-oauth", |s| {
        entry(s, "client_secret").is_some_and(|v| v != secret2 && v != "pcs_chosen_by_someone_else")
    })
    .await;
    let secret3 = entry(&third, "client_secret").unwrap();
    table_accepts(&f, &uid, &secret3, true).await;
    table_accepts(&f, &uid, "pcs_chosen_by_someone_else", false).await;
    wait_event(&f, "bot", "SecretModified").await;

    // A deleted Secret comes back with a fresh secret.
    secrets
        .delete("bot-oauth", &DeleteParams::default())
        .await
        .expect("delete");
    let fourth = secret_where(&f, "bot-oauth", |s| {
        entry(s, "client_secret").is_some_and(|v| v != secret3)
    })
    .await;
    table_accepts(&f, &uid, &entry(&fourth, "client_secret").unwrap(), true).await;
    wait_event(&f, "bot", "SecretDeleted").await;

    // Deleting the credential revokes it: no client in the table, no digests.
    sacs.delete("bot", &DeleteParams::default())
        .await
        .expect("delete credential");
    eventually(10, "the client to be revoked", || async {
        f.live.load().credentials.get(&uid).is_none().then_some(())
    })
    .await;
    eventually(10, "the digests to be deleted", || async {
        own.get_opt(&format!("credential-{uid}"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    f.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("TRACE"), "trace-level logging was captured");
    for (i, s) in [&secret1, &secret2, &secret3].into_iter().enumerate() {
        assert!(!text.contains(s.as_str()), "secret {i} appears in the logs");
    }
    assert!(
        !text.contains("pcs_"),
        "a client secret appears in the logs"
    );
}

#[tokio::test]
async fn a_secret_the_credential_does_not_own_is_never_overwritten() {
    let f = Fixture::start().await;
    let secrets: Api<Secret> = Api::namespaced(f.client.clone(), "team-a");
    let mine: Secret = serde_json::from_value(json!({
        "metadata": {"name": "precious", "namespace": "team-a"},
        "stringData": {"client_secret": "mine"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &mine)
        .await
        .expect("create");
    credential(&f, "thief", json!({"secretName": "precious"})).await;
    let sacs: Api<ServiceAccountCredential> = Api::namespaced(f.client.clone(), "team-a");
    let reason = eventually(10, "Ready=False", || async {
        let c = sacs.get("thief").await.ok()?.status?.conditions?;
        c.into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .map(|c| c.reason)
    })
    .await;
    assert_eq!(reason, "SecretConflict");
    wait_event(&f, "thief", "SecretConflict").await;
    let after = secrets.get("precious").await.unwrap();
    assert_eq!(entry(&after, "client_secret").as_deref(), Some("mine"));
    assert_eq!(after.metadata.owner_references, None);
    assert!(f.live.load().credentials.is_empty());
    // The Event is recorded once, not on every pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    credential(&f, "other", json!({})).await;
    secret_where(&f, "other-oauth", |_| true).await;
    let conflicts = event_reasons(&f, "thief")
        .await
        .into_iter()
        .filter(|r| r == "SecretConflict")
        .count();
    assert_eq!(conflicts, 1);
    f.stop().await;
}

#[tokio::test]
async fn reserved_claims_are_refused_by_the_api() {
    let f = Fixture::start().await;
    let sacs: Api<ServiceAccountCredential> = Api::namespaced(f.client.clone(), "team-a");
    let doc = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "ServiceAccountCredential",
        "metadata": {"name": "impostor", "namespace": "team-a"},
        "spec": {"claims": {"email": "ceo@example.com"}},
    });
    let err = sacs
        .patch("impostor", &PatchParams::apply("test"), &Patch::Apply(doc))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("email")),
        "{err:?}"
    );
    f.stop().await;
}

#[tokio::test]
async fn two_creators_make_one_signing_key_secret_and_rotation_keeps_the_old_key() {
    let f = Fixture::start().await;
    let cfg = SigningConfig {
        secret_name: "race-keys".into(),
        algorithm: Algorithm::Es256,
        rotate_every: Duration::from_secs(3600),
        max_token_lifetime: Duration::from_secs(7200),
    };
    let now = jiff::Timestamp::now().as_second();
    let (a, b) = tokio::join!(
        signing::ensure(&f.client, OWN, &cfg, now),
        signing::ensure(&f.client, OWN, &cfg, now)
    );
    a.expect("first");
    b.expect("second");
    let secrets: Api<Secret> = Api::namespaced(f.client.clone(), OWN);
    let list = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items
            .iter()
            .filter(|s| s.metadata.name.as_deref() == Some("race-keys"))
            .count(),
        1
    );
    let read = |s: &Secret| {
        let data = s
            .data
            .iter()
            .flatten()
            .map(|(k, ByteString(v))| (k.clone(), v.clone()))
            .collect();
        KeySet::from_secret_data(&data).unwrap()
    };
    let before = read(&secrets.get("race-keys").await.unwrap());
    // Not due: nothing changes.
    signing::ensure(&f.client, OWN, &cfg, now + 10)
        .await
        .unwrap();
    assert_eq!(
        read(&secrets.get("race-keys").await.unwrap())
            .current()
            .kid(),
        before.current().kid()
    );
    // Due: a new current key, the old one published until its tokens expire.
    let due = signing::ensure(&f.client, OWN, &cfg, now + 3600)
        .await
        .unwrap();
    let after = read(&secrets.get("race-keys").await.unwrap());
    assert_ne!(after.current().kid(), before.current().kid());
    assert_eq!(after.previous()[0].key().kid(), before.current().kid());
    assert_eq!(after.previous()[0].retire_at(), now + 3600 + 7200);
    assert_eq!(due, now + 7200);
    // A Secret that does not parse is left for a person to look at.
    let mut broken = secrets.get("race-keys").await.unwrap();
    broken.data = Some([("keys.json".to_owned(), ByteString(b"{".to_vec()))].into());
    secrets
        .replace("race-keys", &PostParams::default(), &broken)
        .await
        .unwrap();
    assert!(
        signing::ensure(&f.client, OWN, &cfg, now + 7200)
            .await
            .is_err()
    );
    assert_eq!(
        entry(&secrets.get("race-keys").await.unwrap(), "keys.json").as_deref(),
        Some("{")
    );
    // The controller created the configured key Secret and the table carries it.
    let keys = eventually(10, "signing keys in the table", || async {
        f.live.load().keys.clone()
    })
    .await;
    let stored = read(&secrets.get("portcullis-signing-keys").await.unwrap());
    assert_eq!(keys.current().kid(), stored.current().kid());
    f.stop().await;
}
