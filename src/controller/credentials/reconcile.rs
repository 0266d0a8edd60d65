//! The credential reconciler (leader only): for every ServiceAccountCredential, carries out
//! what [`plan`] decides — issue, rotate, promote, expire, refresh — writes its status and
//! Events, and deletes the digests of credentials that are gone (which revokes them: the next
//! table has no such client). Also keeps the signing-key Secret ([`super::signing`]).
//!
//! Decisions are first made on the watch stores; an object that needs work is read again from
//! the API and planned again before any write, so a store that lags behind our own writes
//! never causes a second rotation. Every write is conditional (create, or a resourceVersion
//! precondition), so a replica that lost the lease without knowing cannot undo a newer state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::watch;
use url::Url;

use super::plan::{self, Action, Observed, Refusal, Why, entry, owned_by, rotate_request};
use super::signing::{self, SigningConfig};
use super::spec::{self, CredentialSpec, SpecProblem};
use super::stored::{DIGEST_LABEL, StoredCredential, StoredError, digest_secret_name};
use crate::api::{ServiceAccountCredential, ServiceAccountCredentialStatus};
use crate::controller::leader::Leadership;
use crate::controller::publisher::Published;
use crate::controller::status::{MANAGER, condition, conditions_key};
use crate::controller::watch::{CREDENTIAL_LABEL, Watchers};
use crate::identity::endpoints::{TOKEN, endpoint_url, issuer_identifier};
use crate::identity::token::{ClientSecret, PreviousSecret, digest, generate_secret};
use crate::metrics::{self, Metrics};

/// Longest wait between passes when nothing is due (also the retry delay after an error).
const IDLE: Duration = Duration::from_secs(60);

/// Errors of one step. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Leadership was lost before a write.
    #[error("no longer the leader")]
    NotLeader,
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// What the reconciler needs besides the client.
#[derive(Debug, Clone)]
pub struct CredentialContext {
    /// Portcullis's own namespace (digest and signing-key Secrets).
    pub namespace: String,
    /// The issuer (authenticateURL); without one, no secrets are issued.
    pub issuer: Option<Url>,
    /// The signing keys to keep.
    pub signing: SigningConfig,
    /// Where failed passes and writes are counted.
    pub metrics: Arc<Metrics>,
}

/// Runs until `shutdown`: a pass after each published table, on gaining leadership, and when
/// the earliest rotation or expiry comes due.
pub async fn run(
    client: Client,
    watchers: Arc<Watchers>,
    mut published: watch::Receiver<Arc<Published>>,
    leadership: Leadership,
    ctx: CredentialContext,
    mut shutdown: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(leadership.identity().to_owned()).filter(|i| !i.is_empty()),
        },
    );
    let mut reconciler = Reconciler {
        client,
        recorder,
        leadership: leadership.clone(),
        ctx,
        refused: HashMap::new(),
    };
    let mut leader_rx = leadership.subscribe();
    let mut wait = IDLE;
    loop {
        tokio::select! {
            r = published.changed() => if r.is_err() { return },
            r = leader_rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {},
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !leadership.is_leader() || published.borrow().generation == 0 {
            reconciler.refused.clear();
            wait = IDLE;
            continue;
        }
        let now = jiff::Timestamp::now().as_second();
        let next = reconciler.pass(&watchers, now).await;
        wait = Duration::from_secs(u64::try_from(next.saturating_sub(now)).unwrap_or(0))
            .clamp(Duration::from_secs(1), IDLE);
    }
}

struct Reconciler {
    client: Client,
    recorder: Recorder,
    leadership: Leadership,
    ctx: CredentialContext,
    /// The refusal last reported per credential uid, so its Event is recorded once.
    refused: HashMap<String, (&'static str, String)>,
}

/// One credential's objects, read from the stores or the API.
struct State {
    workload: Option<Secret>,
    stored_secret: Option<Secret>,
    stored: Option<Result<StoredCredential, StoredError>>,
}

impl Reconciler {
    /// One pass over the signing keys and every credential; returns when the next pass is due.
    async fn pass(&mut self, watchers: &Watchers, now: i64) -> i64 {
        let mut next = now.saturating_add(IDLE.as_secs() as i64);
        let cached = watchers.own_secret(&self.ctx.namespace, &self.ctx.signing.secret_name);
        let keys = match signing::settled(cached.as_deref(), &self.ctx.signing, now) {
            Some(due) => Ok(due),
            None => {
                signing::ensure(&self.client, &self.ctx.namespace, &self.ctx.signing, now).await
            }
        };
        match keys {
            Ok(due) => next = next.min(due),
            Err(e) => {
                self.ctx.metrics.reconcile_error(metrics::SIGNING_KEYS);
                tracing::error!(error = %crate::error_chain(&e), "signing keys");
            }
        }
        let credentials = watchers.credentials();
        let mut live_uids = HashSet::new();
        for sac in &credentials {
            let Some(uid) = sac.metadata.uid.clone() else {
                continue;
            };
            live_uids.insert(uid);
            if sac.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match self.credential(watchers, sac, now).await {
                Ok(due) => next = next.min(due),
                Err(e) => {
                    self.ctx.metrics.reconcile_error(metrics::CREDENTIALS);
                    tracing::warn!(
                        credential = %format!("{}/{}", sac.metadata.namespace.as_deref().unwrap_or_default(), sac.metadata.name.as_deref().unwrap_or_default()),
                        error = %crate::error_chain(&e),
                        "reconciling a credential failed; retrying"
                    );
                    next = next.min(now + 5);
                }
            }
        }
        self.collect_garbage(watchers, &live_uids).await;
        next
    }

    fn state_from_stores(
        &self,
        watchers: &Watchers,
        namespace: &str,
        secret_name: &str,
        uid: &str,
    ) -> State {
        let stored_secret = watchers
            .own_secret(&self.ctx.namespace, &digest_secret_name(uid))
            .map(|s| (*s).clone());
        State {
            workload: watchers
                .own_secret(namespace, secret_name)
                .map(|s| (*s).clone()),
            stored: stored_secret.as_ref().map(StoredCredential::from_secret),
            stored_secret,
        }
    }

    async fn state_from_api(
        &self,
        namespace: &str,
        secret_name: &str,
        uid: &str,
    ) -> Result<State, Error> {
        let workload = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(secret_name)
            .await
            .map_err(api_error(format!(
                "reading Secret {namespace}/{secret_name}"
            )))?;
        let name = digest_secret_name(uid);
        let stored_secret = Api::<Secret>::namespaced(self.client.clone(), &self.ctx.namespace)
            .get_opt(&name)
            .await
            .map_err(api_error(format!(
                "reading Secret {}/{name}",
                self.ctx.namespace
            )))?;
        Ok(State {
            workload,
            stored: stored_secret.as_ref().map(StoredCredential::from_secret),
            stored_secret,
        })
    }

    fn plan(
        &self,
        sac: &ServiceAccountCredential,
        spec: &Result<CredentialSpec, SpecProblem>,
        state: &State,
        now: i64,
    ) -> Action {
        plan::plan(
            &Observed {
                sac,
                spec,
                workload: state.workload.as_ref(),
                stored: state.stored.as_ref(),
                has_issuer: self.ctx.issuer.is_some(),
                now,
            },
            |w| match (spec, state.stored.as_ref()) {
                (Ok(_), Some(Ok(stored))) => self.is_fresh(sac, stored, w),
                _ => true,
            },
        )
    }

    /// Reconciles one credential; returns when it is next due.
    async fn credential(
        &mut self,
        watchers: &Watchers,
        sac: &ServiceAccountCredential,
        now: i64,
    ) -> Result<i64, Error> {
        let namespace = sac.metadata.namespace.clone().unwrap_or_default();
        let uid = sac.metadata.uid.clone().unwrap_or_default();
        let spec = spec::check(sac);
        let secret_name = match &spec {
            Ok(s) => s.secret_name.clone(),
            Err(_) => spec_secret_name(sac),
        };
        let mut state = self.state_from_stores(watchers, &namespace, &secret_name, &uid);
        let mut action = self.plan(sac, &spec, &state, now);
        // A foreign Secret is not in our (label-selected) store: without one there, ask the API
        // before creating anything. Anything else that needs work is confirmed the same way.
        let store_settled = match &action {
            Action::Nothing => state.workload.is_some(),
            Action::Refuse(Refusal::Spec(_) | Refusal::NoIssuer) => true,
            _ => false,
        };
        if !store_settled {
            state = self.state_from_api(&namespace, &secret_name, &uid).await?;
            action = self.plan(sac, &spec, &state, now);
        }
        let spec_ok = spec.as_ref().ok();
        let mut refusal = None;
        match (&action, spec_ok) {
            (Action::Nothing, _) => {}
            (Action::Refuse(r), _) => refusal = Some(r.clone()),
            (_, Some(spec)) => {
                if let Some(stored) = self.act(sac, spec, &state, &action, now).await? {
                    state.stored = Some(Ok(stored));
                }
            }
            (_, None) => {}
        }
        let stored = state.stored.as_ref().and_then(|s| s.as_ref().ok());
        self.report(sac, &spec, &secret_name, refusal.as_ref(), stored, now)
            .await;
        Ok(match (spec_ok, stored) {
            (Some(spec), Some(stored)) if refusal.is_none() => plan::next_deadline(spec, stored),
            _ => now.saturating_add(IDLE.as_secs() as i64),
        })
    }

    fn ensure_leader(&self) -> Result<(), Error> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Carries out `action`; returns the stored state after it.
    async fn act(
        &self,
        sac: &ServiceAccountCredential,
        spec: &CredentialSpec,
        state: &State,
        action: &Action,
        now: i64,
    ) -> Result<Option<StoredCredential>, Error> {
        let uid = sac.metadata.uid.clone().unwrap_or_default();
        let stored = state.stored.as_ref().and_then(|s| s.as_ref().ok());
        let overlap = i64::try_from(spec.overlap.as_secs()).unwrap_or(i64::MAX);
        match action {
            Action::Rotate(why) => {
                let new = generate_secret();
                let new_digest = digest(new.expose());
                // Step 1: the pending digest (a fresh record when there is nothing to keep).
                let mut next = match (why, stored) {
                    (Why::Issue | Why::StoredLost, _) | (_, None) => StoredCredential {
                        namespace: sac.metadata.namespace.clone().unwrap_or_default(),
                        name: sac.metadata.name.clone().unwrap_or_default(),
                        uid: uid.clone(),
                        client_id: uid.clone(),
                        current: new_digest,
                        current_created: now,
                        pending: Some(new_digest),
                        previous: None,
                        rotate_request: rotate_request(sac).map(str::to_owned),
                    },
                    (_, Some(s)) => StoredCredential {
                        pending: Some(new_digest),
                        rotate_request: rotate_request(sac)
                            .map(str::to_owned)
                            .or_else(|| s.rotate_request.clone()),
                        ..s.clone()
                    },
                };
                let rv = self
                    .write_stored(&next, state.stored_secret.as_ref())
                    .await?;
                // Step 2: the workload Secret, carrying the old secret while it still works.
                let carried = match (stored, &state.workload) {
                    (Some(s), Some(w)) if overlap > 0 && next.current != new_digest => {
                        entry(w, "client_secret")
                            .filter(|old| digest(old) == s.current)
                            .map(|old| (ClientSecret::new(old), now.saturating_add(overlap)))
                    }
                    _ => None,
                };
                self.apply_workload(sac, spec, &next, &new, carried.as_ref(), state)
                    .await?;
                // Step 3: promote.
                next = promote(next, now, overlap);
                self.replace_stored(&next, rv).await?;
                let (warning, reason, note) = why.event(&spec.secret_name);
                self.event(sac, warning, reason, note).await;
                Ok(Some(next))
            }
            Action::Promote => {
                // The plan promotes only a stored state with a pending digest.
                let Some(stored) = stored.cloned() else {
                    return Ok(None);
                };
                let next = promote(stored, now, overlap);
                let rv = resource_version(state.stored_secret.as_ref());
                self.replace_stored(&next, rv).await?;
                Ok(Some(next))
            }
            Action::ExpirePrevious | Action::Refresh => {
                // The plan expires and refreshes only with both Secrets present.
                let (Some(stored), Some(workload)) = (stored, &state.workload) else {
                    return Ok(stored.cloned());
                };
                let mut next = stored.clone();
                if *action == Action::ExpirePrevious {
                    next.previous = None;
                    let rv = resource_version(state.stored_secret.as_ref());
                    self.replace_stored(&next, rv).await?;
                }
                let current =
                    ClientSecret::new(entry(workload, "client_secret").unwrap_or_default());
                let carried = next.previous.and_then(|p| {
                    entry(workload, "client_secret_previous")
                        .filter(|old| digest(old) == p.digest)
                        .map(|old| (ClientSecret::new(old), p.expires))
                });
                self.apply_workload(sac, spec, &next, &current, carried.as_ref(), state)
                    .await?;
                Ok(Some(next))
            }
            Action::Nothing | Action::Refuse(_) => Ok(stored.cloned()),
        }
    }

    /// Creates the digest Secret, or replaces it when `existing` is given; returns the new
    /// resourceVersion.
    async fn write_stored(
        &self,
        stored: &StoredCredential,
        existing: Option<&Secret>,
    ) -> Result<Option<String>, Error> {
        match existing {
            Some(s) => self.replace_stored(stored, resource_version(Some(s))).await,
            None => {
                self.ensure_leader()?;
                let secret = self.stored_secret(stored, None);
                let name = digest_secret_name(&stored.uid);
                let created = Api::<Secret>::namespaced(self.client.clone(), &self.ctx.namespace)
                    .create(&post_params(), &secret)
                    .await
                    .map_err(api_error(format!(
                        "creating Secret {}/{name}",
                        self.ctx.namespace
                    )))?;
                Ok(created.metadata.resource_version)
            }
        }
    }

    async fn replace_stored(
        &self,
        stored: &StoredCredential,
        rv: Option<String>,
    ) -> Result<Option<String>, Error> {
        self.ensure_leader()?;
        let name = digest_secret_name(&stored.uid);
        let secret = self.stored_secret(stored, rv);
        let replaced = Api::<Secret>::namespaced(self.client.clone(), &self.ctx.namespace)
            .replace(&name, &post_params(), &secret)
            .await
            .map_err(api_error(format!(
                "updating Secret {}/{name}",
                self.ctx.namespace
            )))?;
        Ok(replaced.metadata.resource_version)
    }

    fn stored_secret(&self, stored: &StoredCredential, rv: Option<String>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(digest_secret_name(&stored.uid)),
                namespace: Some(self.ctx.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (DIGEST_LABEL.to_owned(), "true".to_owned()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "portcullis".to_owned(),
                    ),
                ])),
                annotations: Some(BTreeMap::from([(
                    "portcullis.dev/credential".to_owned(),
                    format!("{}/{}", stored.namespace, stored.name),
                )])),
                resource_version: rv,
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(stored.to_data()),
            ..Default::default()
        }
    }

    /// The workload Secret's entries other than the secrets.
    fn public_entries(&self, stored: &StoredCredential) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert("client_id".to_owned(), stored.client_id.clone());
        if let Some(issuer) = &self.ctx.issuer {
            out.insert("token_url".to_owned(), endpoint_url(issuer, TOKEN));
            out.insert("issuer".to_owned(), issuer_identifier(issuer));
        }
        out
    }

    /// Whether the workload Secret already says what [`apply_workload`](Self::apply_workload)
    /// would write, secrets aside.
    fn is_fresh(
        &self,
        sac: &ServiceAccountCredential,
        stored: &StoredCredential,
        w: &Secret,
    ) -> bool {
        let name = sac.metadata.name.as_deref().unwrap_or_default();
        let labelled = w
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CREDENTIAL_LABEL))
            .is_some_and(|v| v == label_value(name));
        let entries_ok = self
            .public_entries(stored)
            .iter()
            .all(|(k, v)| entry(w, k) == Some(v.as_str()));
        let previous_ok = match (stored.previous, entry(w, "client_secret_previous")) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(_), None) => entry(w, "client_secret_previous_expires").is_none(),
            (Some(p), Some(old)) => {
                digest(old) == p.digest
                    && entry(w, "client_secret_previous_expires") == Some(&rfc3339(p.expires))
            }
        };
        labelled && entries_ok && previous_ok && w.type_.as_deref() == Some("Opaque")
    }

    /// Writes the workload Secret with server-side apply: created when missing (without
    /// `force`, so a Secret someone else created meanwhile conflicts instead of being taken
    /// over), otherwise updated with a resourceVersion precondition.
    async fn apply_workload(
        &self,
        sac: &ServiceAccountCredential,
        spec: &CredentialSpec,
        stored: &StoredCredential,
        secret: &ClientSecret,
        previous: Option<&(ClientSecret, i64)>,
        state: &State,
    ) -> Result<(), Error> {
        self.ensure_leader()?;
        let namespace = sac.metadata.namespace.clone().unwrap_or_default();
        let name = sac.metadata.name.clone().unwrap_or_default();
        let mut data = BTreeMap::new();
        for (k, v) in self.public_entries(stored) {
            data.insert(k, ByteString(v.into_bytes()));
        }
        data.insert(
            "client_secret".to_owned(),
            ByteString(secret.expose().as_bytes().to_vec()),
        );
        if let Some((old, expires)) = previous {
            data.insert(
                "client_secret_previous".to_owned(),
                ByteString(old.expose().as_bytes().to_vec()),
            );
            data.insert(
                "client_secret_previous_expires".to_owned(),
                ByteString(rfc3339(*expires).into_bytes()),
            );
        }
        let mut metadata = json!({
            "name": spec.secret_name,
            "namespace": namespace,
            "labels": {
                CREDENTIAL_LABEL: label_value(&name),
                "app.kubernetes.io/managed-by": "portcullis",
            },
            "ownerReferences": [sac.controller_owner_ref(&())],
        });
        let existing = state.workload.as_ref().filter(|w| owned_by(w, &stored.uid));
        if let Some(rv) = existing.and_then(|w| w.metadata.resource_version.clone()) {
            metadata["resourceVersion"] = json!(rv);
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": data,
        });
        let mut params = PatchParams::apply(MANAGER);
        params.force = existing.is_some();
        Api::<Secret>::namespaced(self.client.clone(), &namespace)
            .patch(&spec.secret_name, &params, &Patch::Apply(body))
            .await
            .map_err(api_error(format!(
                "writing Secret {namespace}/{}",
                spec.secret_name
            )))?;
        Ok(())
    }

    /// Status and refusal Events.
    async fn report(
        &mut self,
        sac: &ServiceAccountCredential,
        spec: &Result<CredentialSpec, SpecProblem>,
        secret_name: &str,
        refusal: Option<&Refusal>,
        stored: Option<&StoredCredential>,
        now: i64,
    ) {
        let uid = sac.metadata.uid.clone().unwrap_or_default();
        let reason = refusal.map(|r| r.reason(secret_name));
        match &reason {
            Some((r, message)) => {
                if self.refused.get(&uid) != Some(&(*r, message.clone())) {
                    self.event(sac, true, r, message.clone()).await;
                    self.refused.insert(uid.clone(), (r, message.clone()));
                }
            }
            None => {
                self.refused.remove(&uid);
            }
        }
        let desired = desired_status(
            sac,
            spec.as_ref().err(),
            reason.as_ref(),
            secret_name,
            stored,
            &Time(jiff::Timestamp::from_second(now).unwrap_or_default()),
        );
        if !status_differs(sac.status.as_ref(), &desired) || self.ensure_leader().is_err() {
            return;
        }
        let namespace = sac.metadata.namespace.clone().unwrap_or_default();
        let name = sac.metadata.name.clone().unwrap_or_default();
        let patch = Patch::Merge(json!({ "status": desired }));
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        if let Err(e) = Api::<ServiceAccountCredential>::namespaced(self.client.clone(), &namespace)
            .patch_status(&name, &params, &patch)
            .await
        {
            self.ctx.metrics.reconcile_error(metrics::CREDENTIALS);
            tracing::warn!(credential = %format!("{namespace}/{name}"), error = %crate::error_chain(&e), "writing status failed");
        }
    }

    async fn event(
        &self,
        sac: &ServiceAccountCredential,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        if self.ensure_leader().is_err() {
            return;
        }
        let credential = format!(
            "{}/{}",
            sac.metadata.namespace.as_deref().unwrap_or_default(),
            sac.metadata.name.as_deref().unwrap_or_default()
        );
        if warning {
            tracing::warn!(credential, reason, message = %note, "credential");
        } else {
            tracing::info!(credential, reason, message = %note, "credential");
        }
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &sac.object_ref(&())).await {
            self.ctx.metrics.reconcile_error(metrics::CREDENTIALS);
            tracing::warn!(error = %crate::error_chain(&e), "recording an Event failed");
        }
    }

    /// Deletes the digests of credentials that no longer exist: their clients stop working
    /// with the next table.
    async fn collect_garbage(&self, watchers: &Watchers, live: &HashSet<String>) {
        for secret in watchers.own_secrets() {
            let ours = secret.metadata.namespace.as_deref() == Some(self.ctx.namespace.as_str())
                && secret
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(DIGEST_LABEL));
            if !ours {
                continue;
            }
            let uid = StoredCredential::from_secret(&secret).map(|s| s.uid).ok();
            if uid.as_ref().is_some_and(|u| live.contains(u)) || self.ensure_leader().is_err() {
                continue;
            }
            let name = secret.metadata.name.clone().unwrap_or_default();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret.metadata.uid.clone(),
                    resource_version: secret.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match Api::<Secret>::namespaced(self.client.clone(), &self.ctx.namespace)
                .delete(&name, &params)
                .await
            {
                Ok(_) => tracing::info!(
                    secret = %format!("{}/{name}", self.ctx.namespace),
                    "credential deleted; its client is revoked"
                ),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    self.ctx.metrics.reconcile_error(metrics::CREDENTIALS);
                    tracing::warn!(error = %crate::error_chain(&e), "deleting the digests of a deleted credential failed")
                }
            }
        }
    }
}

/// The stored state once the workload Secret holds the pending secret.
fn promote(mut s: StoredCredential, now: i64, overlap: i64) -> StoredCredential {
    if let Some(pending) = s.pending.take()
        && pending != s.current
    {
        s.previous = (overlap > 0).then(|| PreviousSecret {
            digest: s.current,
            expires: now.saturating_add(overlap),
        });
        s.current = pending;
        s.current_created = now;
    }
    s
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

fn resource_version(s: Option<&Secret>) -> Option<String> {
    s.and_then(|s| s.metadata.resource_version.clone())
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The `portcullis.dev/credential` label value: the credential's name when it fits a label
/// value (63 characters), else empty (the label's presence is what the watcher selects on).
fn label_value(name: &str) -> &str {
    if name.len() <= 63 { name } else { "" }
}

/// `spec.secretName` or its default, for messages about a credential whose spec is refused.
fn spec_secret_name(sac: &ServiceAccountCredential) -> String {
    sac.spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-oauth", sac.metadata.name.as_deref().unwrap_or_default()))
}

/// The status a credential should have. Pure.
pub fn desired_status(
    sac: &ServiceAccountCredential,
    spec_problem: Option<&SpecProblem>,
    refusal: Option<&(&'static str, String)>,
    secret_name: &str,
    stored: Option<&StoredCredential>,
    now: &Time,
) -> ServiceAccountCredentialStatus {
    let generation = sac.metadata.generation;
    let prior = sac
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let accepted = match spec_problem {
        None => condition(
            prior,
            "Accepted",
            true,
            "Accepted",
            "the credential is valid".into(),
            generation,
            now,
        ),
        Some(p) => condition(
            prior,
            "Accepted",
            false,
            p.reason,
            p.message.clone(),
            generation,
            now,
        ),
    };
    let issued = stored.filter(|s| s.pending.is_none());
    let ready = match (refusal, issued) {
        (Some((reason, message)), _) => condition(
            prior,
            "Ready",
            false,
            reason,
            message.clone(),
            generation,
            now,
        ),
        (None, Some(_)) => condition(
            prior,
            "Ready",
            true,
            "SecretIssued",
            format!("client credentials are in Secret {secret_name}"),
            generation,
            now,
        ),
        (None, None) => condition(
            prior,
            "Ready",
            false,
            "Pending",
            "the client secret is being issued".into(),
            generation,
            now,
        ),
    };
    let issued = issued.filter(|_| refusal.is_none());
    let time = |unix: i64| jiff::Timestamp::from_second(unix).ok().map(Time);
    ServiceAccountCredentialStatus {
        client_id: issued.map(|s| s.client_id.clone()),
        secret_name: Some(secret_name.to_owned()),
        current_secret_created: issued.and_then(|s| time(s.current_created)),
        previous_secret_expires: issued
            .and_then(|s| s.previous)
            .and_then(|p| time(p.expires)),
        observed_generation: generation,
        conditions: Some(vec![accepted, ready]),
    }
}

/// Whether two credential statuses differ in anything but condition timestamps.
pub fn status_differs(
    a: Option<&ServiceAccountCredentialStatus>,
    b: &ServiceAccountCredentialStatus,
) -> bool {
    let Some(a) = a else { return true };
    let strip = |s: &ServiceAccountCredentialStatus| {
        (
            s.client_id.clone(),
            s.secret_name.clone(),
            s.current_secret_created.clone(),
            s.previous_secret_expires.clone(),
            s.observed_generation,
            conditions_key(s.conditions.as_ref()),
        )
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_keeps_the_old_secret_for_the_overlap_only() {
        let base = StoredCredential {
            namespace: "a".into(),
            name: "b".into(),
            uid: "u".into(),
            client_id: "u".into(),
            current: digest("pcs_old"),
            current_created: 10,
            pending: Some(digest("pcs_new")),
            previous: None,
            rotate_request: None,
        };
        let p = promote(base.clone(), 100, 50);
        assert_eq!(p.current, digest("pcs_new"));
        assert_eq!(p.current_created, 100);
        assert_eq!(p.pending, None);
        assert_eq!(
            p.previous,
            Some(PreviousSecret {
                digest: digest("pcs_old"),
                expires: 150
            })
        );
        assert_eq!(promote(base.clone(), 100, 0).previous, None);
        // A first issue (pending == current) has nothing to keep.
        let first = StoredCredential {
            pending: Some(base.current),
            ..base
        };
        let p = promote(first, 100, 50);
        assert_eq!((p.pending, p.previous, p.current_created), (None, None, 10));
    }

    #[test]
    fn status_reports_the_client_and_why_it_is_not_ready() {
        let mut sac = ServiceAccountCredential::new("bot", Default::default());
        sac.metadata.generation = Some(2);
        let now = Time(jiff::Timestamp::from_second(1000).unwrap());
        let stored = StoredCredential {
            namespace: "a".into(),
            name: "bot".into(),
            uid: "u".into(),
            client_id: "u".into(),
            current: digest("pcs_x"),
            current_created: 900,
            pending: None,
            previous: Some(PreviousSecret {
                digest: digest("pcs_w"),
                expires: 2000,
            }),
            rotate_request: None,
        };
        let s = desired_status(&sac, None, None, "bot-oauth", Some(&stored), &now);
        assert_eq!(s.client_id.as_deref(), Some("u"));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            s.previous_secret_expires,
            Some(Time(jiff::Timestamp::from_second(2000).unwrap()))
        );
        let ready = &s.conditions.as_ref().unwrap()[1];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        let refusal = Refusal::SecretConflict.reason("bot-oauth");
        let s = desired_status(&sac, None, Some(&refusal), "bot-oauth", None, &now);
        let ready = &s.conditions.as_ref().unwrap()[1];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "SecretConflict")
        );
        assert_eq!(s.client_id, None);
        sac.status = Some(s.clone());
        assert!(!status_differs(sac.status.as_ref(), &s));
        let later = Time(jiff::Timestamp::from_second(5000).unwrap());
        let again = desired_status(&sac, None, Some(&refusal), "bot-oauth", None, &later);
        assert!(!status_differs(sac.status.as_ref(), &again));
        assert_eq!(
            again.conditions.as_ref().unwrap()[1].last_transition_time,
            now
        );
    }
}
