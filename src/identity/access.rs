//! Verifying our own access tokens where they are used: on route requests.
//!
//! [`verify_access_token`] is pure (keys, credentials and `now` are parameters): the proxy's
//! authentication step calls it on a cache miss and keeps the [`AccessToken`] it returns; on every
//! later request with the same token it calls [`AccessToken::still_valid`], which re-checks what
//! can change without the token changing: expiry, the credential (deleting it revokes its tokens)
//! and the signing key (a retired key's tokens stop working).

use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use super::keys::{KeySet, TokenRejection};
use super::token::{ACCESS_TOKEN_TYP, Credentials};
use crate::policy::{Identity, IdentityKind};

/// Allowed clock skew when judging `nbf` and `iat`, in seconds (never `exp`: a token does not
/// outlive it).
pub const LEEWAY_SECS: u64 = 30;

/// Why an access token was refused. Labels are fixed strings for logs and metrics; nothing from
/// the token is quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRejection {
    /// No signing keys are loaded yet, so nothing can be verified.
    #[error("no signing keys are loaded")]
    NoKeys,
    /// The token failed signature, header or claim checks.
    #[error(transparent)]
    Token(#[from] TokenRejection),
    /// `client_id` names no current credential: deleted (revoked) or never ours.
    #[error("the token's client no longer exists")]
    Revoked,
    /// `sub` is not the identity of the credential named by `client_id`.
    #[error("the token's subject does not match its client")]
    SubjectMismatch,
    /// `scope` is present but not a string.
    #[error("the token's scope claim is not a string")]
    InvalidScope,
    /// The session was signed out or ended at the identity provider.
    #[error("the session has ended")]
    SessionEnded,
    /// A token of the identity provider (routes with `bearerTokenFormat: idp_identity_token`
    /// or `idp_access_token`) was refused.
    #[error("{0}")]
    IdpToken(super::login::IdpTokenRejection),
    /// The identity provider's tokens cannot be verified now (not discovered yet, or it did
    /// not answer an introspection).
    #[error("the identity provider's tokens cannot be verified right now")]
    IdpUnavailable,
}

impl AccessRejection {
    /// A short fixed label for logs and metrics (`expired`, `bad_signature`, `revoked`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            AccessRejection::NoKeys => "no_keys",
            AccessRejection::Revoked => "revoked",
            AccessRejection::SubjectMismatch => "subject_mismatch",
            AccessRejection::InvalidScope => "invalid_claim",
            AccessRejection::SessionEnded => "session_ended",
            AccessRejection::IdpToken(super::login::IdpTokenRejection::Expired) => "expired",
            AccessRejection::IdpToken(
                super::login::IdpTokenRejection::Unreachable
                | super::login::IdpTokenRejection::NotVerifiable,
            ) => "idp_unavailable",
            AccessRejection::IdpToken(_) => "invalid_idp_token",
            AccessRejection::IdpUnavailable => "idp_unavailable",
            AccessRejection::Token(rejection) => match rejection {
                TokenRejection::TooLarge | TokenRejection::Malformed => "malformed",
                TokenRejection::WrongType { .. } => "wrong_type",
                TokenRejection::CriticalHeader | TokenRejection::EmbeddedKey => "bad_header",
                TokenRejection::MissingKid | TokenRejection::UnknownKey => "unknown_key",
                TokenRejection::AlgorithmMismatch { .. } | TokenRejection::BadSignature => {
                    "bad_signature"
                }
                TokenRejection::MissingClaim { .. }
                | TokenRejection::InvalidClaim { .. }
                | TokenRejection::ClaimMismatch { .. } => "invalid_claim",
                TokenRejection::Expired => "expired",
                TokenRejection::NotYetValid | TokenRejection::IssuedInFuture => "not_yet_valid",
            },
        }
    }

    /// The `error_description` for the client: which class of problem, never the details.
    pub fn description(&self) -> &'static str {
        if let AccessRejection::IdpToken(rejection) = self {
            return rejection.description();
        }
        match self.label() {
            "idp_unavailable" => "the identity provider's tokens cannot be verified right now",
            "expired" => "the access token has expired",
            "revoked" => "the access token's client has been revoked",
            "session_ended" => "the session has ended",
            "no_keys" => "access tokens cannot be verified yet",
            _ => "the access token is not valid",
        }
    }
}

/// A verified token a caller presented on a route: an access token of a
/// ServiceAccountCredential, or a person's session token (then `session` is set and
/// `client_id` is empty).
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// `client_id`: the credential's uid (empty for a session).
    pub client_id: String,
    /// For a session token: its session id and when its claims are due for a refresh.
    pub session: Option<SessionRef>,
    /// `kid` of the key that signed it.
    pub kid: String,
    /// `exp` (unix seconds).
    pub expires: i64,
    /// The granted scopes (`route:<namespace>/<name>`), empty when not narrowed.
    pub scopes: Vec<String>,
    /// Who the token is about, for policies and upstream assertions.
    pub identity: Identity,
    /// A token of the identity provider itself, verified against its keys or by its
    /// introspection endpoint rather than ours: valid until `expires` only.
    pub from_idp: bool,
}

/// The session behind a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    /// The session id.
    pub sid: String,
    /// When the person's claims are due for a refresh (unix seconds).
    pub refresh_after: i64,
}

impl AccessToken {
    /// A verified session token as a caller's token.
    pub fn from_session(session: super::session::SessionToken) -> Self {
        Self {
            client_id: String::new(),
            session: Some(SessionRef {
                sid: session.sid,
                refresh_after: session.refresh_after,
            }),
            kid: session.kid,
            expires: session.expires,
            scopes: Vec::new(),
            identity: session.identity,
            from_idp: false,
        }
    }

    /// A verified token of the identity provider `idp_issuer` about `subject` with `claims`,
    /// good until `expires`.
    pub fn from_idp(
        subject: String,
        idp_issuer: &str,
        claims: &Map<String, Value>,
        expires: i64,
    ) -> Self {
        Self {
            client_id: String::new(),
            session: None,
            kid: String::new(),
            expires,
            scopes: Vec::new(),
            identity: super::session::person_identity(subject, Some(idp_issuer.to_owned()), claims),
            from_idp: true,
        }
    }

    /// Whether the token still holds at `now` against this table's keys and credentials: not
    /// expired, its key not retired, and its credential not deleted (access tokens) or its
    /// session not ended (`revoked` answers for a session id).
    pub fn still_valid(
        &self,
        keys: Option<&KeySet>,
        credentials: &Credentials,
        revoked: &dyn Fn(&str) -> bool,
        now: i64,
    ) -> Result<(), AccessRejection> {
        // No leeway on `exp` (see `KeySet::verify`).
        if now >= self.expires {
            return Err(TokenRejection::Expired.into());
        }
        if self.from_idp {
            return Ok(());
        }
        let keys = keys.ok_or(AccessRejection::NoKeys)?;
        if keys.verifier(&self.kid, now).is_none() {
            return Err(TokenRejection::UnknownKey.into());
        }
        if let Some(session) = &self.session {
            return if revoked(&session.sid) {
                Err(AccessRejection::SessionEnded)
            } else {
                Ok(())
            };
        }
        match credentials.get(&self.client_id) {
            Some(record) if record.has_subject(&self.identity.subject) => Ok(()),
            Some(_) => Err(AccessRejection::SubjectMismatch),
            None => Err(AccessRejection::Revoked),
        }
    }

    /// Whether the token may reach the route `namespace/name`: it was not narrowed, or one of
    /// its scopes names the route.
    pub fn allows_route(&self, namespace: &str, name: &str) -> bool {
        self.scopes.is_empty()
            || self.scopes.iter().any(|scope| {
                scope
                    .strip_prefix("route:")
                    .and_then(|rest| rest.split_once('/'))
                    .is_some_and(|(ns, n)| ns == namespace && n == name)
            })
    }
}

/// Verifies `token` as one of our RFC 9068 access tokens: signature by an accepted key (`kid`,
/// algorithm from the key), `typ: at+jwt`, `iss` = `issuer`, `aud` = `audience`, integer `exp`
/// in the future, `iat` not in the future, a `client_id` naming a current credential whose
/// identity is the token's `sub`.
pub fn verify_access_token(
    keys: Option<&KeySet>,
    credentials: &Credentials,
    token: &str,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<AccessToken, AccessRejection> {
    let keys = keys.ok_or(AccessRejection::NoKeys)?;
    let mut validation = Validation::new(keys.current().alg().to_jwt());
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    let claims = match keys.verify(token, ACCESS_TOKEN_TYP, now, &validation) {
        Ok(claims) => claims,
        Err(super::keys::KeyError::TokenRejected(rejection)) => return Err(rejection.into()),
        Err(_) => return Err(TokenRejection::Malformed.into()),
    };
    // The header parsed in `verify`; reading it again only to keep the kid.
    let kid = jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|header| header.kid)
        .ok_or(TokenRejection::MissingKid)?;
    let Value::Object(claims) = claims else {
        return Err(TokenRejection::Malformed.into());
    };
    let text = |name: &str| -> Result<String, AccessRejection> {
        match claims.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(TokenRejection::InvalidClaim { claim: name.into() }.into()),
            None => Err(TokenRejection::MissingClaim { claim: name.into() }.into()),
        }
    };
    let subject = text("sub")?;
    let client_id = text("client_id")?;
    let expires = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let scopes = match claims.get("scope") {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(_) => return Err(AccessRejection::InvalidScope),
    };
    let record = credentials
        .get(&client_id)
        .ok_or(AccessRejection::Revoked)?;
    if record.subject() != subject {
        return Err(AccessRejection::SubjectMismatch);
    }
    let identity = Identity {
        kind: IdentityKind::ServiceAccount {
            namespace: record.namespace.clone(),
            name: record.name.clone(),
        },
        subject,
        email: None,
        email_verified: false,
        groups: Vec::new(),
        issuer: Some(issuer.to_owned()),
        claims: claims_without_registered(claims),
    };
    Ok(AccessToken {
        client_id,
        session: None,
        kid,
        expires,
        scopes,
        identity,
        from_idp: false,
    })
}

/// The claims policies and assertions see: everything but the JWT bookkeeping (`exp`, `iat`,
/// `nbf`, `jti`), which would make otherwise equal identities differ.
fn claims_without_registered(mut claims: Map<String, Value>) -> Map<String, Value> {
    for name in ["exp", "iat", "nbf", "jti"] {
        claims.remove(name);
    }
    claims
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::identity::keys::Algorithm;
    use crate::identity::token::{CredentialRecord, access_token_claims, digest};

    const ISSUER: &str = "https://auth.example.com";
    const NOW: i64 = 1_800_000_000;

    fn record(name: &str) -> CredentialRecord {
        CredentialRecord {
            namespace: "team-a".into(),
            name: name.into(),
            client_id: format!("uid-{name}"),
            current: digest("pcs_x"),
            pending: None,
            previous: None,
            scopes: vec![],
            access_token_ttl: Duration::from_secs(3600),
            claims: [("team".to_owned(), json!("payments"))]
                .into_iter()
                .collect(),
        }
    }

    fn setup() -> (KeySet, Credentials) {
        let keys = KeySet::generate(Algorithm::Es256, NOW - 100).unwrap();
        let mut credentials = Credentials::default();
        credentials.insert(record("bot"));
        (keys, credentials)
    }

    fn issue(keys: &KeySet, record: &CredentialRecord, scopes: &[String], now: i64) -> String {
        let claims = access_token_claims(record, scopes, ISSUER, "portcullis", now, "jti-1");
        keys.sign(ACCESS_TOKEN_TYP, &claims).unwrap()
    }

    #[test]
    fn a_fresh_token_verifies_into_the_credential_identity() {
        let (keys, credentials) = setup();
        let token = issue(&keys, &record("bot"), &[], NOW);
        let verified =
            verify_access_token(Some(&keys), &credentials, &token, ISSUER, "portcullis", NOW)
                .unwrap();
        assert_eq!(verified.client_id, "uid-bot");
        assert_eq!(verified.identity.subject, "serviceaccount:team-a/bot");
        assert_eq!(
            verified.identity.kind,
            IdentityKind::ServiceAccount {
                namespace: "team-a".into(),
                name: "bot".into()
            }
        );
        assert_eq!(verified.identity.claims["team"], "payments");
        assert!(!verified.identity.claims.contains_key("jti"));
        assert_eq!(verified.expires, NOW + 3600);
        assert_eq!(verified.kid, keys.current().kid());
        assert!(verified.allows_route("anything", "at-all"));
        assert_eq!(
            verified.still_valid(Some(&keys), &credentials, &|_| false, NOW + 10),
            Ok(())
        );
    }

    #[test]
    fn wrong_issuer_audience_or_expiry_is_refused() {
        let (keys, credentials) = setup();
        let token = issue(&keys, &record("bot"), &[], NOW);
        let verify = |issuer: &str, audience: &str, now: i64| {
            verify_access_token(Some(&keys), &credentials, &token, issuer, audience, now)
                .unwrap_err()
                .label()
        };
        assert_eq!(
            verify("https://other.example.com", "portcullis", NOW),
            "invalid_claim"
        );
        assert_eq!(verify(ISSUER, "other", NOW), "invalid_claim");
        assert_eq!(verify(ISSUER, "portcullis", NOW + 3600 + 31), "expired");
        assert_eq!(verify(ISSUER, "portcullis", NOW - 100), "not_yet_valid");
        assert_eq!(
            verify_access_token(None, &credentials, &token, ISSUER, "portcullis", NOW).unwrap_err(),
            AccessRejection::NoKeys
        );
    }

    #[test]
    fn deleted_credentials_and_retired_keys_end_cached_tokens() {
        let (keys, credentials) = setup();
        let token = issue(&keys, &record("bot"), &[], NOW);
        let verified =
            verify_access_token(Some(&keys), &credentials, &token, ISSUER, "portcullis", NOW)
                .unwrap();
        let empty = Credentials::default();
        assert_eq!(
            verified.still_valid(Some(&keys), &empty, &|_| false, NOW),
            Err(AccessRejection::Revoked)
        );
        assert_eq!(
            verify_access_token(Some(&keys), &empty, &token, ISSUER, "portcullis", NOW)
                .unwrap_err(),
            AccessRejection::Revoked
        );
        let other = KeySet::generate(Algorithm::Es256, NOW).unwrap();
        assert_eq!(
            verified
                .still_valid(Some(&other), &credentials, &|_| false, NOW)
                .unwrap_err()
                .label(),
            "unknown_key"
        );
        assert_eq!(
            verified
                .still_valid(Some(&keys), &credentials, &|_| false, NOW + 3600 + 31)
                .unwrap_err()
                .label(),
            "expired"
        );
    }

    #[test]
    fn a_recreated_credential_with_the_same_client_id_but_another_name_is_refused() {
        let (keys, _) = setup();
        let token = issue(&keys, &record("bot"), &[], NOW);
        let mut credentials = Credentials::default();
        let mut impostor = record("other");
        impostor.client_id = "uid-bot".into();
        credentials.insert(impostor);
        assert_eq!(
            verify_access_token(Some(&keys), &credentials, &token, ISSUER, "portcullis", NOW)
                .unwrap_err(),
            AccessRejection::SubjectMismatch
        );
    }

    #[test]
    fn scopes_narrow_to_the_named_routes() {
        let (keys, credentials) = setup();
        let token = issue(
            &keys,
            &record("bot"),
            &["route:team-a/billing".into(), "route:team-b/web".into()],
            NOW,
        );
        let verified =
            verify_access_token(Some(&keys), &credentials, &token, ISSUER, "portcullis", NOW)
                .unwrap();
        assert!(verified.allows_route("team-a", "billing"));
        assert!(verified.allows_route("team-b", "web"));
        assert!(!verified.allows_route("team-a", "web"));
        assert!(!verified.allows_route("team-a", "billing-admin"));
    }

    #[test]
    fn other_token_kinds_are_not_access_tokens() {
        let (keys, credentials) = setup();
        let claims = access_token_claims(&record("bot"), &[], ISSUER, "portcullis", NOW, "j");
        for typ in ["JWT", "portcullis-session+jwt", "AT+JWT"] {
            let token = keys.sign(typ, &claims).unwrap();
            assert_eq!(
                verify_access_token(Some(&keys), &credentials, &token, ISSUER, "portcullis", NOW)
                    .unwrap_err()
                    .label(),
                "wrong_type",
                "{typ}"
            );
        }
    }
}
