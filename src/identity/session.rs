//! People's sessions as signed tokens (DESIGN.md §4), and the short-lived signed values that
//! carry a sign-in from one host to the next. Pure: keys, issuer and `now` are parameters.
//!
//! ```text
//! session token  typ portcullis-session+jwt  aud = authenticate URL   the `_portcullis` cookie, the login API's answer
//! login state    typ portcullis-login+jwt    aud = authenticate URL   cookie on the authenticate host while the IdP is visited
//! hand-off       typ portcullis-handoff+jwt  aud = the route origin   the authenticate host's 302 to `<route>/.portcullis/callback`
//! ```
//!
//! A session token is self-contained (the person's claims are in it), so every replica can
//! verify it without a store lookup; what a store adds is revocation (`session:<sid>`), which
//! sign-out records and every request checks. Each kind has its own `typ` and `aud`, so none
//! can stand in for another or for an access token.

use jsonwebtoken::Validation;
use serde_json::{Map, Value, json};

use super::access::{AccessRejection, LEEWAY_SECS};
use super::keys::{KeyError, KeySet, TokenRejection};
use crate::policy::{Identity, IdentityKind};

/// `typ` of session tokens.
pub const SESSION_TYP: &str = "portcullis-session+jwt";
/// `typ` of the sign-in state kept in a cookie on the authenticate host.
pub const LOGIN_TYP: &str = "portcullis-login+jwt";
/// `typ` of the hand-off from the authenticate host to a route host.
pub const HANDOFF_TYP: &str = "portcullis-handoff+jwt";
/// The session cookie, on the authenticate host and every route host.
pub const SESSION_COOKIE: &str = "_portcullis";
/// The sign-in state cookie on the authenticate host.
pub const LOGIN_COOKIE: &str = "_portcullis_login";
/// How long a sign-in at the identity provider may take.
pub const LOGIN_LIFETIME_SECS: i64 = 600;
/// How long a hand-off URL is good for.
pub const HANDOFF_LIFETIME_SECS: i64 = 60;
/// Claims of a session token that describe the token, not the person.
const SESSION_HOUSEKEEPING: [&str; 9] = [
    "iss", "aud", "exp", "iat", "nbf", "jti", "sid", "rfa", "idp_iss",
];

/// The revocation id of a session (what sign-out records and requests check).
pub fn session_revocation_id(sid: &str) -> String {
    format!("session:{sid}")
}

/// What a session token says, once verified.
#[derive(Debug, Clone)]
pub struct SessionToken {
    /// The session id.
    pub sid: String,
    /// `kid` of the signing key.
    pub kid: String,
    /// `exp` (unix seconds): the end of the session.
    pub expires: i64,
    /// When the person's claims should be refreshed at the identity provider (unix seconds).
    pub refresh_after: i64,
    /// The person.
    pub identity: Identity,
}

/// The claims of a session token for a person with `claims` (the identity provider's, without
/// its token housekeeping) from `idp_issuer`.
pub fn session_claims(
    issuer: &str,
    idp_issuer: &str,
    sid: &str,
    claims: &Map<String, Value>,
    now: i64,
    expires: i64,
    refresh_after: i64,
) -> Value {
    let mut out = Map::new();
    for (name, value) in claims {
        if !SESSION_HOUSEKEEPING.contains(&name.as_str()) {
            out.insert(name.clone(), value.clone());
        }
    }
    out.insert("iss".into(), issuer.into());
    out.insert("aud".into(), issuer.into());
    out.insert("iat".into(), now.into());
    out.insert("exp".into(), expires.into());
    out.insert("sid".into(), sid.into());
    out.insert("rfa".into(), refresh_after.min(expires).into());
    out.insert("idp_iss".into(), idp_issuer.into());
    Value::Object(out)
}

fn verify(
    keys: Option<&KeySet>,
    token: &str,
    typ: &str,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<(Map<String, Value>, String), AccessRejection> {
    let keys = keys.ok_or(AccessRejection::NoKeys)?;
    let mut validation = Validation::new(keys.current().alg().to_jwt());
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = LEEWAY_SECS;
    let claims = match keys.verify(token, typ, now, &validation) {
        Ok(Value::Object(claims)) => claims,
        Ok(_) => return Err(TokenRejection::Malformed.into()),
        Err(KeyError::TokenRejected(rejection)) => return Err(rejection.into()),
        Err(_) => return Err(TokenRejection::Malformed.into()),
    };
    let kid = jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|header| header.kid)
        .ok_or(TokenRejection::MissingKid)?;
    Ok((claims, kid))
}

fn text(claims: &Map<String, Value>, name: &str) -> Result<String, AccessRejection> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(TokenRejection::InvalidClaim { claim: name.into() }.into()),
        None => Err(TokenRejection::MissingClaim { claim: name.into() }.into()),
    }
}

/// Verifies a session token: our key, `typ`, `iss` and `aud` = `issuer`, not expired, with a
/// session id and a subject. Revocation is the caller's to check ([`session_revocation_id`]).
pub fn verify_session_token(
    keys: Option<&KeySet>,
    token: &str,
    issuer: &str,
    now: i64,
) -> Result<SessionToken, AccessRejection> {
    let (claims, kid) = verify(keys, token, SESSION_TYP, issuer, issuer, now)?;
    let sid = text(&claims, "sid")?;
    let subject = text(&claims, "sub")?;
    let expires = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let refresh_after = claims.get("rfa").and_then(Value::as_i64).unwrap_or(expires);
    let idp_issuer = claims
        .get("idp_iss")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let identity = person_identity(subject, idp_issuer, &claims);
    Ok(SessionToken {
        sid,
        kid,
        expires,
        refresh_after,
        identity,
    })
}

/// The policy identity of a person with these claims: `email` counts only as a string,
/// `email_verified` only as `true`, `groups` only as a list of strings.
pub fn person_identity(
    subject: String,
    issuer: Option<String>,
    claims: &Map<String, Value>,
) -> Identity {
    let mut person = Map::new();
    for (name, value) in claims {
        if !SESSION_HOUSEKEEPING.contains(&name.as_str()) {
            person.insert(name.clone(), value.clone());
        }
    }
    Identity {
        kind: IdentityKind::User,
        subject,
        email: person
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned),
        email_verified: person.get("email_verified") == Some(&Value::Bool(true)),
        groups: match person.get("groups") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        claims: person,
        issuer,
    }
}

/// A sign-in in progress, kept in [`LOGIN_COOKIE`] on the authenticate host while the browser
/// visits the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    /// The `state` sent to the provider (also the single-use id of this sign-in).
    pub state: String,
    /// The `nonce` the id_token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// Where the person goes once signed in (an absolute URL on a route host or the
    /// authenticate host), or, for a programmatic login, the script's redirect URI.
    pub return_to: String,
    /// A programmatic login: the session token goes to `return_to` as `portcullis_jwt`.
    pub programmatic: bool,
    /// `exp`.
    pub expires: i64,
}

/// Signs `state` as a [`LOGIN_TYP`] token.
pub fn sign_login_state(
    keys: &KeySet,
    issuer: &str,
    state: &LoginState,
) -> Result<String, KeyError> {
    keys.sign(
        LOGIN_TYP,
        &json!({
            "iss": issuer, "aud": issuer, "exp": state.expires,
            "state": state.state, "nonce": state.nonce, "pkce": state.verifier,
            "return_to": state.return_to, "programmatic": state.programmatic,
        }),
    )
}

/// Verifies a [`LOGIN_COOKIE`] value.
pub fn verify_login_state(
    keys: Option<&KeySet>,
    token: &str,
    issuer: &str,
    now: i64,
) -> Result<LoginState, AccessRejection> {
    let (claims, _) = verify(keys, token, LOGIN_TYP, issuer, issuer, now)?;
    Ok(LoginState {
        state: text(&claims, "state")?,
        nonce: text(&claims, "nonce")?,
        verifier: text(&claims, "pkce")?,
        return_to: text(&claims, "return_to")?,
        programmatic: claims.get("programmatic") == Some(&Value::Bool(true)),
        expires: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
    })
}

/// A verified hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// Single-use id.
    pub jti: String,
    /// The session token to set as the route host's cookie.
    pub session: String,
    /// Where to send the browser (on the hand-off's origin).
    pub return_to: String,
    /// `exp`.
    pub expires: i64,
}

/// Signs a hand-off of `session` to `origin` (`scheme://host[:port]` of the route host).
pub fn sign_handoff(
    keys: &KeySet,
    issuer: &str,
    origin: &str,
    session: &str,
    return_to: &str,
    jti: &str,
    now: i64,
) -> Result<String, KeyError> {
    keys.sign(
        HANDOFF_TYP,
        &json!({
            "iss": issuer, "aud": origin, "iat": now, "exp": now + HANDOFF_LIFETIME_SECS,
            "jti": jti, "session": session, "return_to": return_to,
        }),
    )
}

/// Verifies a hand-off meant for `origin`.
pub fn verify_handoff(
    keys: Option<&KeySet>,
    token: &str,
    issuer: &str,
    origin: &str,
    now: i64,
) -> Result<Handoff, AccessRejection> {
    let (claims, _) = verify(keys, token, HANDOFF_TYP, issuer, origin, now)?;
    Ok(Handoff {
        jti: text(&claims, "jti")?,
        session: text(&claims, "session")?,
        return_to: text(&claims, "return_to")?,
        expires: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
    })
}

/// The CSRF token of forms posted with a session: derived from the session cookie's value,
/// which other sites can neither read nor guess.
pub fn csrf_token(session_token: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"portcullis-csrf\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24])
}

/// Whether `presented` is the CSRF token of `session_token` (constant time).
pub fn csrf_matches(session_token: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let expected = csrf_token(session_token);
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::identity::keys::Algorithm;

    const ISSUER: &str = "https://auth.example.com";
    const NOW: i64 = 1_800_000_000;

    fn keys() -> KeySet {
        KeySet::generate(Algorithm::Es256, NOW - 100).unwrap()
    }

    fn alice() -> Map<String, Value> {
        json!({"sub": "alice", "email": "alice@example.com", "email_verified": true,
               "groups": ["payments", 7], "name": "Alice", "iss": "https://idp", "nonce": "n"})
        .as_object()
        .unwrap()
        .clone()
    }

    fn session(keys: &KeySet, now: i64, expires: i64) -> String {
        let claims = session_claims(
            ISSUER,
            "https://idp",
            "sid-1",
            &alice(),
            now,
            expires,
            now + 60,
        );
        keys.sign(SESSION_TYP, &claims).unwrap()
    }

    #[test]
    fn a_session_token_verifies_into_the_person() {
        let keys = keys();
        let token = session(&keys, NOW, NOW + 3600);
        let verified = verify_session_token(Some(&keys), &token, ISSUER, NOW + 10).unwrap();
        assert_eq!(verified.sid, "sid-1");
        assert_eq!(verified.expires, NOW + 3600);
        assert_eq!(verified.refresh_after, NOW + 60);
        let id = verified.identity;
        assert_eq!(id.kind, IdentityKind::User);
        assert_eq!(id.subject, "alice");
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert!(id.email_verified);
        assert_eq!(id.groups, vec!["payments".to_owned()]);
        assert_eq!(id.issuer.as_deref(), Some("https://idp"));
        assert_eq!(id.claims["name"], "Alice");
        for hidden in ["iss", "aud", "exp", "iat", "sid", "rfa", "idp_iss"] {
            assert!(!id.claims.contains_key(hidden), "{hidden}");
        }
    }

    #[test]
    fn the_idp_issuer_claim_cannot_be_injected_by_the_idp_claims() {
        let keys = keys();
        let mut claims = alice();
        claims.insert("idp_iss".into(), "https://evil".into());
        claims.insert("sid".into(), "other".into());
        let token = keys
            .sign(
                SESSION_TYP,
                &session_claims(
                    ISSUER,
                    "https://idp",
                    "sid-1",
                    &claims,
                    NOW,
                    NOW + 60,
                    NOW + 60,
                ),
            )
            .unwrap();
        let verified = verify_session_token(Some(&keys), &token, ISSUER, NOW).unwrap();
        assert_eq!(verified.sid, "sid-1");
        assert_eq!(verified.identity.issuer.as_deref(), Some("https://idp"));
    }

    #[test]
    fn expired_foreign_and_other_kinds_are_refused() {
        let keys = keys();
        let token = session(&keys, NOW, NOW + 3600);
        let late = verify_session_token(Some(&keys), &token, ISSUER, NOW + 3600 + 31).unwrap_err();
        assert_eq!(late.label(), "expired");
        let other_keys = KeySet::generate(Algorithm::Es256, NOW).unwrap();
        let foreign = verify_session_token(Some(&other_keys), &token, ISSUER, NOW).unwrap_err();
        assert_eq!(foreign.label(), "unknown_key");
        let wrong_iss = verify_session_token(Some(&keys), &token, "https://x", NOW).unwrap_err();
        assert_eq!(wrong_iss.label(), "invalid_claim");
        let handoff = sign_handoff(
            &keys,
            ISSUER,
            "https://app.example.com",
            &token,
            "/",
            "j",
            NOW,
        )
        .unwrap();
        assert_eq!(
            verify_session_token(Some(&keys), &handoff, ISSUER, NOW)
                .unwrap_err()
                .label(),
            "wrong_type"
        );
        let truncated = &token[..token.len() - 5];
        assert!(verify_session_token(Some(&keys), truncated, ISSUER, NOW).is_err());
        assert!(verify_session_token(Some(&keys), "garbage", ISSUER, NOW).is_err());
        assert_eq!(
            verify_session_token(None, &token, ISSUER, NOW).unwrap_err(),
            AccessRejection::NoKeys
        );
    }

    #[test]
    fn a_handoff_is_bound_to_its_origin_and_short_lived() {
        let keys = keys();
        let origin = "http://app.localhost:8080";
        let h = sign_handoff(&keys, ISSUER, origin, "tok", "/x?y=1", "jti-1", NOW).unwrap();
        let ok = verify_handoff(Some(&keys), &h, ISSUER, origin, NOW + 5).unwrap();
        assert_eq!(
            (ok.jti.as_str(), ok.session.as_str(), ok.return_to.as_str()),
            ("jti-1", "tok", "/x?y=1")
        );
        assert!(
            verify_handoff(Some(&keys), &h, ISSUER, "http://evil.localhost:8080", NOW).is_err()
        );
        assert!(
            verify_handoff(
                Some(&keys),
                &h,
                ISSUER,
                origin,
                NOW + HANDOFF_LIFETIME_SECS + 31
            )
            .is_err()
        );
    }

    #[test]
    fn login_state_round_trips_and_is_its_own_kind() {
        let keys = keys();
        let state = LoginState {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            return_to: "https://app.example.com/x".into(),
            programmatic: true,
            expires: NOW + LOGIN_LIFETIME_SECS,
        };
        let token = sign_login_state(&keys, ISSUER, &state).unwrap();
        assert_eq!(
            verify_login_state(Some(&keys), &token, ISSUER, NOW).unwrap(),
            state
        );
        assert!(verify_session_token(Some(&keys), &token, ISSUER, NOW).is_err());
        assert!(
            verify_login_state(Some(&keys), &token, ISSUER, NOW + LOGIN_LIFETIME_SECS + 31)
                .is_err()
        );
    }

    #[test]
    fn csrf_tokens_depend_on_the_session_and_compare_exactly() {
        let a = csrf_token("session-a");
        assert_ne!(a, csrf_token("session-b"));
        assert!(csrf_matches("session-a", &a));
        assert!(!csrf_matches("session-b", &a));
        assert!(!csrf_matches("session-a", ""));
        assert!(!csrf_matches("session-a", &a[..10]));
    }
}
