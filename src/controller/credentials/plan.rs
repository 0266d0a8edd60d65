//! What to do next for one ServiceAccountCredential, decided from what is observed (the
//! credential, its workload Secret, its stored digests) at `now`. Pure: the reconciler reads
//! the objects, calls [`plan`], carries the action out, and plans again on the next change.
//!
//! A rotation is three writes, each safe to interrupt:
//!
//! ```text
//! 1. stored.pending = digest(new)         (new is accepted from here on)
//! 2. workload Secret ← new                (client_secret; the old one as client_secret_previous)
//! 3. promote: previous = current until now + overlap, current = pending, pending = none
//! ```
//!
//! Interrupted after 1, the next plan sees a pending digest that the workload Secret does not
//! hold and starts over with a fresh secret (the lost one was never delivered); after 2, it sees
//! the workload Secret holding the pending secret and only promotes.

use k8s_openapi::api::core::v1::Secret;

use super::spec::{CredentialSpec, SpecProblem};
use super::stored::{StoredCredential, StoredError};
use crate::api::ServiceAccountCredential;
use crate::identity::token::digest;

/// The annotation whose every new value asks for a rotation.
pub const ROTATE_ANNOTATION: &str = "portcullis.dev/rotate";

/// Why a new secret is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The credential has never had one (or the first issue was interrupted).
    Issue,
    /// `rotation.every` has passed.
    Scheduled,
    /// `portcullis.dev/rotate` changed.
    Requested,
    /// A rotation was interrupted before the workload Secret was written.
    Resume,
    /// The workload Secret is gone.
    SecretDeleted,
    /// The workload Secret's `client_secret` is not the one issued.
    SecretModified,
    /// The stored digests are gone or unreadable, so no secret can be verified.
    StoredLost,
}

impl Why {
    /// Event type, reason and note for this rotation (never a secret).
    pub fn event(self, secret_name: &str) -> (bool, &'static str, String) {
        match self {
            Why::Issue => (
                false,
                "SecretIssued",
                format!("client credentials issued to Secret {secret_name}"),
            ),
            Why::Scheduled => (
                false,
                "SecretRotated",
                format!("scheduled rotation: a new client secret is in Secret {secret_name}"),
            ),
            Why::Requested => (
                false,
                "SecretRotated",
                format!(
                    "rotation requested with {ROTATE_ANNOTATION}: a new client secret is in Secret {secret_name}"
                ),
            ),
            Why::Resume => (
                false,
                "SecretRotated",
                format!("an interrupted rotation was completed: Secret {secret_name}"),
            ),
            Why::SecretDeleted => (
                true,
                "SecretDeleted",
                format!("Secret {secret_name} was deleted; a new client secret was issued"),
            ),
            Why::SecretModified => (
                true,
                "SecretModified",
                format!(
                    "Secret {secret_name} was changed outside Portcullis and is not trusted; a new client secret was issued"
                ),
            ),
            Why::StoredLost => (
                true,
                "SecretReissued",
                format!(
                    "the stored digests of this credential were missing or unreadable; a new client secret was issued to Secret {secret_name}"
                ),
            ),
        }
    }
}

/// Why a credential gets no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The spec is invalid.
    Spec(SpecProblem),
    /// The workload Secret exists and is not ours.
    SecretConflict,
    /// No issuer (`authenticateURL`) is known, so the Secret could not say where tokens come from.
    NoIssuer,
}

impl Refusal {
    /// Condition reason and message.
    pub fn reason(&self, secret_name: &str) -> (&'static str, String) {
        match self {
            Refusal::Spec(p) => (p.reason, p.message.clone()),
            Refusal::SecretConflict => (
                "SecretConflict",
                format!(
                    "Secret {secret_name} exists and is not owned by this credential; it is left untouched (choose another spec.secretName or delete that Secret)"
                ),
            ),
            Refusal::NoIssuer => (
                "NoAuthenticateURL",
                "authenticateURL is not set, so no token endpoint is served".to_owned(),
            ),
        }
    }
}

/// The next step for one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Everything is as it should be.
    Nothing,
    /// No secret can be issued; report why.
    Refuse(Refusal),
    /// Issue a new secret (all three steps).
    Rotate(Why),
    /// The workload Secret holds the pending secret: finish the rotation (step 3).
    Promote,
    /// The previous secret has expired: forget its digest and drop it from the workload Secret.
    ExpirePrevious,
    /// The workload Secret's other entries or metadata differ from what they should be:
    /// write them again with the same secret.
    Refresh,
}

/// What the reconciler observed about one credential.
pub struct Observed<'a> {
    /// The credential.
    pub sac: &'a ServiceAccountCredential,
    /// Its checked spec.
    pub spec: &'a Result<CredentialSpec, SpecProblem>,
    /// The Secret named `spec.secretName`, if any.
    pub workload: Option<&'a Secret>,
    /// The digest Secret, read (`None`: there is none).
    pub stored: Option<&'a Result<StoredCredential, StoredError>>,
    /// Whether an issuer is known.
    pub has_issuer: bool,
    /// Unix seconds.
    pub now: i64,
}

/// Whether `secret` is owned (as controller) by the credential with `uid`.
pub fn owned_by(secret: &Secret, uid: &str) -> bool {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.kind == "ServiceAccountCredential")
}

/// A text entry of a Secret's data.
pub fn entry<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| std::str::from_utf8(&v.0).ok())
}

/// The current `portcullis.dev/rotate` value, when set and not empty.
pub fn rotate_request(sac: &ServiceAccountCredential) -> Option<&str> {
    sac.metadata
        .annotations
        .as_ref()?
        .get(ROTATE_ANNOTATION)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The next step. `fresh` = whether the workload Secret's non-secret content matches what
/// [`super::reconcile`] would write (computed there, where the desired Secret is built).
pub fn plan(o: &Observed<'_>, fresh: impl FnOnce(&Secret) -> bool) -> Action {
    let uid = o.sac.metadata.uid.as_deref().unwrap_or_default();
    let spec = match o.spec {
        Ok(spec) => spec,
        Err(p) => return Action::Refuse(Refusal::Spec(p.clone())),
    };
    if let Some(w) = o.workload
        && !owned_by(w, uid)
    {
        return Action::Refuse(Refusal::SecretConflict);
    }
    if !o.has_issuer {
        return Action::Refuse(Refusal::NoIssuer);
    }
    let stored = match o.stored {
        None if o.workload.is_some() => return Action::Rotate(Why::StoredLost),
        None => return Action::Rotate(Why::Issue),
        Some(Err(_)) => return Action::Rotate(Why::StoredLost),
        Some(Ok(s)) => s,
    };
    let held = o
        .workload
        .and_then(|w| entry(w, "client_secret"))
        .map(digest);
    if let Some(pending) = stored.pending {
        return if held == Some(pending) {
            Action::Promote
        } else if pending == stored.current {
            Action::Rotate(Why::Issue)
        } else {
            Action::Rotate(Why::Resume)
        };
    }
    let Some(workload) = o.workload else {
        return Action::Rotate(Why::SecretDeleted);
    };
    if held != Some(stored.current) || entry(workload, "client_id") != Some(&stored.client_id) {
        return Action::Rotate(Why::SecretModified);
    }
    if let Some(requested) = rotate_request(o.sac)
        && stored.rotate_request.as_deref() != Some(requested)
    {
        return Action::Rotate(Why::Requested);
    }
    let every = i64::try_from(spec.rotate_every.as_secs()).unwrap_or(i64::MAX);
    if o.now >= stored.current_created.saturating_add(every) {
        return Action::Rotate(Why::Scheduled);
    }
    if stored.previous.is_some_and(|p| o.now >= p.expires) {
        return Action::ExpirePrevious;
    }
    if !fresh(workload) {
        return Action::Refresh;
    }
    Action::Nothing
}

/// When this credential next needs attention without any change (unix seconds): its
/// scheduled rotation or the expiry of its previous secret.
pub fn next_deadline(spec: &CredentialSpec, stored: &StoredCredential) -> i64 {
    let every = i64::try_from(spec.rotate_every.as_secs()).unwrap_or(i64::MAX);
    let rotation = stored.current_created.saturating_add(every);
    stored
        .previous
        .map_or(rotation, |p| rotation.min(p.expires))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::api::ServiceAccountCredentialSpec;
    use crate::controller::credentials::spec::check;
    use crate::identity::token::PreviousSecret;

    const UID: &str = "6d1f0c9e";

    fn sac(annotation: Option<&str>) -> ServiceAccountCredential {
        let mut s = ServiceAccountCredential::new("bot", ServiceAccountCredentialSpec::default());
        s.metadata.namespace = Some("team-a".into());
        s.metadata.uid = Some(UID.into());
        if let Some(a) = annotation {
            s.metadata.annotations = Some([(ROTATE_ANNOTATION.to_owned(), a.to_owned())].into());
        }
        s
    }

    fn workload(secret: &str, owner: &str) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("client_id".into(), ByteString(UID.as_bytes().to_vec()));
        data.insert(
            "client_secret".into(),
            ByteString(secret.as_bytes().to_vec()),
        );
        let mut s = Secret {
            data: Some(data),
            ..Default::default()
        };
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "portcullis.dev/v1alpha1".into(),
            kind: "ServiceAccountCredential".into(),
            name: "bot".into(),
            uid: owner.into(),
            ..Default::default()
        }]);
        s
    }

    fn stored(current: &str, created: i64) -> StoredCredential {
        StoredCredential {
            namespace: "team-a".into(),
            name: "bot".into(),
            uid: UID.into(),
            client_id: UID.into(),
            current: digest(current),
            current_created: created,
            pending: None,
            previous: None,
            rotate_request: None,
        }
    }

    const HOUR: i64 = 3600;
    const EVERY: i64 = 720 * HOUR;

    fn run(
        sac: &ServiceAccountCredential,
        w: Option<&Secret>,
        s: Option<StoredCredential>,
        now: i64,
    ) -> Action {
        let spec = check(sac);
        let stored = s.map(Ok);
        plan(
            &Observed {
                sac,
                spec: &spec,
                workload: w,
                stored: stored.as_ref(),
                has_issuer: true,
                now,
            },
            |_| true,
        )
    }

    #[test]
    fn a_new_credential_gets_a_secret_and_a_settled_one_nothing() {
        let s = sac(None);
        assert_eq!(run(&s, None, None, 0), Action::Rotate(Why::Issue));
        let w = workload("pcs_a", UID);
        assert_eq!(
            run(&s, Some(&w), Some(stored("pcs_a", 0)), 10),
            Action::Nothing
        );
    }

    #[test]
    fn a_foreign_secret_is_never_touched() {
        let s = sac(None);
        let foreign = workload("pcs_a", "someone-else");
        for st in [None, Some(stored("pcs_a", 0))] {
            assert_eq!(
                run(&s, Some(&foreign), st, 0),
                Action::Refuse(Refusal::SecretConflict)
            );
        }
        let mut unowned = foreign.clone();
        unowned.metadata.owner_references = None;
        assert_eq!(
            run(&s, Some(&unowned), None, 0),
            Action::Refuse(Refusal::SecretConflict)
        );
    }

    #[test]
    fn rotation_happens_exactly_at_the_boundary() {
        let s = sac(None);
        let w = workload("pcs_a", UID);
        assert_eq!(
            run(&s, Some(&w), Some(stored("pcs_a", 1000)), 1000 + EVERY - 1),
            Action::Nothing
        );
        assert_eq!(
            run(&s, Some(&w), Some(stored("pcs_a", 1000)), 1000 + EVERY),
            Action::Rotate(Why::Scheduled)
        );
    }

    #[test]
    fn the_previous_secret_expires_exactly_at_its_expiry() {
        let s = sac(None);
        let w = workload("pcs_b", UID);
        let mut st = stored("pcs_b", 1000);
        st.previous = Some(PreviousSecret {
            digest: digest("pcs_a"),
            expires: 1000 + 24 * HOUR,
        });
        assert_eq!(
            run(&s, Some(&w), Some(st.clone()), 1000 + 24 * HOUR - 1),
            Action::Nothing
        );
        assert_eq!(
            run(&s, Some(&w), Some(st.clone()), 1000 + 24 * HOUR),
            Action::ExpirePrevious
        );
        let spec = check(&s).unwrap();
        assert_eq!(next_deadline(&spec, &st), 1000 + 24 * HOUR);
    }

    #[test]
    fn edited_or_deleted_secrets_are_replaced() {
        let s = sac(None);
        let st = stored("pcs_a", 0);
        assert_eq!(
            run(&s, None, Some(st.clone()), 5),
            Action::Rotate(Why::SecretDeleted)
        );
        let edited = workload("pcs_guessed", UID);
        assert_eq!(
            run(&s, Some(&edited), Some(st.clone()), 5),
            Action::Rotate(Why::SecretModified)
        );
        let mut other_client = workload("pcs_a", UID);
        other_client
            .data
            .as_mut()
            .unwrap()
            .insert("client_id".into(), ByteString(b"someone".to_vec()));
        assert_eq!(
            run(&s, Some(&other_client), Some(st), 5),
            Action::Rotate(Why::SecretModified)
        );
        let w = workload("pcs_a", UID);
        assert_eq!(run(&s, Some(&w), None, 5), Action::Rotate(Why::StoredLost));
    }

    #[test]
    fn the_rotate_annotation_rotates_once_per_value() {
        let w = workload("pcs_a", UID);
        let mut st = stored("pcs_a", 0);
        assert_eq!(
            run(&sac(Some("1")), Some(&w), Some(st.clone()), 5),
            Action::Rotate(Why::Requested)
        );
        st.rotate_request = Some("1".into());
        assert_eq!(
            run(&sac(Some("1")), Some(&w), Some(st.clone()), 5),
            Action::Nothing
        );
        assert_eq!(
            run(&sac(Some("2")), Some(&w), Some(st), 5),
            Action::Rotate(Why::Requested)
        );
    }

    #[test]
    fn interrupted_rotations_resume_or_promote() {
        let s = sac(None);
        let mut st = stored("pcs_a", 0);
        st.pending = Some(digest("pcs_b"));
        // Step 2 done: the workload Secret holds the pending secret.
        let w = workload("pcs_b", UID);
        assert_eq!(run(&s, Some(&w), Some(st.clone()), 5), Action::Promote);
        // Step 2 not done: start over.
        let w = workload("pcs_a", UID);
        assert_eq!(
            run(&s, Some(&w), Some(st.clone()), 5),
            Action::Rotate(Why::Resume)
        );
        // A first issue interrupted before the workload Secret existed.
        let mut first = stored("pcs_a", 0);
        first.pending = Some(first.current);
        assert_eq!(run(&s, None, Some(first), 5), Action::Rotate(Why::Issue));
    }

    #[test]
    fn refusals_come_before_any_write() {
        let mut s = sac(None);
        s.spec.claims = Some([("email".to_owned(), "x".to_owned())].into());
        assert!(matches!(
            run(&s, None, None, 0),
            Action::Refuse(Refusal::Spec(_))
        ));
        let s = sac(None);
        let spec = check(&s);
        let a = plan(
            &Observed {
                sac: &s,
                spec: &spec,
                workload: None,
                stored: None,
                has_issuer: false,
                now: 0,
            },
            |_| true,
        );
        assert_eq!(a, Action::Refuse(Refusal::NoIssuer));
        let w = workload("pcs_a", UID);
        let a = plan(
            &Observed {
                sac: &s,
                spec: &spec,
                workload: Some(&w),
                stored: Some(&Ok(stored("pcs_a", 0))),
                has_issuer: true,
                now: 0,
            },
            |_| false,
        );
        assert_eq!(a, Action::Refresh);
    }
}
