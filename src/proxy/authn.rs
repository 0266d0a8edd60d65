//! Authentication of route requests: which credential the request carries (DESIGN.md §4, first
//! match wins) and who it proves the caller is.
//!
//! ```text
//! headers ─► presented_credential ─► Authenticator::authenticate ─► Arc<Authenticated>
//!                                      ├─ cache hit (SHA-256 of the token): still_valid(now, table)
//!                                      └─ miss: identity::access::verify_access_token, then cache
//! ```
//!
//! The cache holds verified tokens only (a refused token is never cached, so garbage cannot fill
//! it) and re-checks on every hit what may change while the token does not: expiry, the
//! credential (deleting it revokes its tokens at the next request) and the signing key. Each
//! entry also keeps the upstream assertions signed for it, per route and key (see
//! [`Authenticated::assertion`]), so the hot path signs nothing.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::identity::access::{AccessRejection, AccessToken, verify_access_token};
use crate::identity::keys::KeySet;
use crate::identity::login::{IdpClient, IdpTokenRejection, PresentedIdpToken};
use crate::identity::service::Clock;
use crate::identity::session::{
    SESSION_COOKIE, SESSION_TYP, session_revocation_id, verify_session_token,
};
use crate::routing::route::Table;
use crate::store::Store;

/// `X-Portcullis-Authorization`: a token meant for Portcullis; `Authorization` then belongs to
/// the upstream.
pub const PORTCULLIS_AUTHORIZATION: HeaderName =
    HeaderName::from_static("x-portcullis-authorization");
/// `X-Pomerium-Authorization`, for clients written for Pomerium.
pub const POMERIUM_AUTHORIZATION: HeaderName = HeaderName::from_static("x-pomerium-authorization");

/// Most verified tokens kept. A token is ~1 KB with its identity, so this bounds the cache at
/// tens of megabytes whatever clients send.
const CACHE_CAPACITY: usize = 20_000;
/// How long an identity-provider access token its provider refused stays refused without
/// asking the provider again.
pub const IDP_REFUSAL_CACHE_SECS: i64 = 60;
/// Upstream assertions kept per token (one per route and key); more routes replace the oldest.
const ASSERTIONS_PER_TOKEN: usize = 16;

/// Where the request carried its credential. Decides what is removed before forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `X-Portcullis-Authorization` (the upstream's own `Authorization` passes untouched).
    PortcullisHeader,
    /// `Authorization: Bearer <token>`: what a route with `bearerTokenFormat:
    /// idp_identity_token` or `idp_access_token` reads as the identity provider's token.
    Bearer,
    /// `Authorization: Pomerium`, `Authorization: Bearer Pomerium-…`.
    Authorization,
    /// `X-Pomerium-Authorization`.
    PomeriumHeader,
    /// `Authorization: Basic` with the token as the password.
    Basic,
    /// The `_portcullis` session cookie (a browser).
    Cookie,
}

/// A credential found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The token text (owned only when it had to be decoded, from `Basic`).
    pub token: Cow<'a, str>,
    /// Where it came from.
    pub source: CredentialSource,
}

/// Why no identity could be established. Each is a `401` with RFC 6750 `invalid_token` (or a
/// `400 invalid_request` for an ambiguous request); nothing from the token is quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No credential at all.
    #[error("no access token was sent")]
    Missing,
    /// A credential header that cannot be read (empty, not text, a scheme we do not accept).
    #[error("the credential is malformed")]
    Malformed,
    /// The same credential header more than once: which one counts would be a guess.
    #[error("more than one credential header of one kind")]
    Repeated,
    /// The token was read but refused.
    #[error(transparent)]
    Rejected(#[from] AccessRejection),
    /// The route accepts a kind of bearer token this version cannot verify yet.
    #[error("the route's bearer token format is not supported")]
    UnsupportedFormat,
}

impl AuthnError {
    /// A short fixed label for the access log and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthnError::Missing => "missing",
            AuthnError::Malformed => "malformed",
            AuthnError::Repeated => "repeated",
            AuthnError::Rejected(rejection) => rejection.label(),
            AuthnError::UnsupportedFormat => "unsupported_format",
        }
    }

    /// The `error_description` for the client.
    pub fn description(&self) -> &'static str {
        match self {
            AuthnError::Missing => "no access token was sent",
            AuthnError::Malformed => "the credential is malformed",
            AuthnError::Repeated => "the request carries a credential header more than once",
            AuthnError::Rejected(rejection) => rejection.description(),
            AuthnError::UnsupportedFormat => {
                "this route's bearer token format is not supported by this version"
            }
        }
    }
}

/// The credential a request carries, in DESIGN.md §4 order: `X-Portcullis-Authorization`,
/// `Authorization` (`Bearer`, `Pomerium`, `Bearer Pomerium-`), `X-Pomerium-Authorization`,
/// `Authorization: Basic` with the token as password. `Ok(None)`: none of them.
///
/// A header that is present but unreadable is an error rather than skipped, so a client never
/// gets a different identity than the header it meant; a repeated header is refused.
pub fn presented_credential(headers: &HeaderMap) -> Result<Option<Presented<'_>>, AuthnError> {
    if let Some(value) = single(headers, &PORTCULLIS_AUTHORIZATION)? {
        let token = strip_scheme(value, &["Bearer", "Pomerium"]).unwrap_or(value);
        return token_of(token, CredentialSource::PortcullisHeader).map(Some);
    }
    let authorization = single(headers, &header::AUTHORIZATION)?;
    if let Some(value) = authorization {
        if let Some(token) = strip_scheme(value, &["Bearer"]) {
            return match token.strip_prefix("Pomerium-") {
                Some(token) => token_of(token, CredentialSource::Authorization).map(Some),
                None => token_of(token, CredentialSource::Bearer).map(Some),
            };
        }
        if let Some(token) = strip_scheme(value, &["Pomerium"]) {
            return token_of(token, CredentialSource::Authorization).map(Some);
        }
    }
    if let Some(value) = single(headers, &POMERIUM_AUTHORIZATION)? {
        let token = strip_scheme(value, &["Bearer", "Pomerium"]).unwrap_or(value);
        return token_of(token, CredentialSource::PomeriumHeader).map(Some);
    }
    if let Some(value) = authorization {
        if let Some(encoded) = strip_scheme(value, &["Basic"]) {
            return basic_password(encoded).map(Some);
        }
        return Err(AuthnError::Malformed);
    }
    if let Some(value) = crate::identity::people::cookie(headers, SESSION_COOKIE)
        && well_formed(value)
    {
        return Ok(Some(Presented {
            token: Cow::Borrowed(value),
            source: CredentialSource::Cookie,
        }));
    }
    Ok(None)
}

/// The value of a header that may appear at most once, as text.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, AuthnError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthnError::Repeated);
    }
    first.to_str().map(Some).map_err(|_| AuthnError::Malformed)
}

/// `value` without a leading `<scheme> ` (scheme case-insensitive, RFC 9110 §11.1).
fn strip_scheme<'v>(value: &'v str, schemes: &[&str]) -> Option<&'v str> {
    schemes.iter().find_map(|scheme| {
        let head = value.get(..scheme.len())?;
        let rest = value.get(scheme.len()..)?;
        (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| rest.trim_start())
    })
}

fn token_of(token: &str, source: CredentialSource) -> Result<Presented<'_>, AuthnError> {
    let token = token.trim();
    if !well_formed(token) {
        return Err(AuthnError::Malformed);
    }
    Ok(Presented {
        token: Cow::Borrowed(token),
        source,
    })
}

fn well_formed(token: &str) -> bool {
    !token.is_empty() && !token.contains(' ')
}

/// The password of `Basic` credentials (the user name is ignored), for clients that can only
/// send Basic.
fn basic_password(encoded: &str) -> Result<Presented<'static>, AuthnError> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthnError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| AuthnError::Malformed)?;
    let (_, password) = text.split_once(':').ok_or(AuthnError::Malformed)?;
    let password = password.trim();
    if !well_formed(password) {
        return Err(AuthnError::Malformed);
    }
    Ok(Presented {
        token: Cow::Owned(password.to_owned()),
        source: CredentialSource::Basic,
    })
}

/// A verified caller: the token and what is cached with it.
#[derive(Debug)]
pub struct Authenticated {
    /// The verified access token (identity, scopes, expiry).
    pub token: AccessToken,
    assertions: Mutex<Vec<CachedAssertion>>,
}

#[derive(Debug)]
struct CachedAssertion {
    route_url: Arc<str>,
    kid: String,
    /// Kept as the header value it is sent as, so a hit copies and validates nothing.
    jwt: HeaderValue,
    refresh_at: i64,
}

/// Lifetime of an upstream identity assertion (DESIGN.md §4: at most 5 minutes).
pub const ASSERTION_LIFETIME_SECS: i64 = 300;
/// An assertion is re-signed when less than this is left of it.
const ASSERTION_REFRESH_MARGIN_SECS: i64 = 60;

impl Authenticated {
    /// The `X-Portcullis-Jwt-Assertion` for `route_url`: signed with the current key (`typ:
    /// JWT`, `aud` = the route URL, `iss`, `sub`, `iat`, `exp` ≤ 5 minutes and never past the
    /// token's own, plus the token's other claims), reused until a minute before it expires or
    /// until the key changes.
    pub fn assertion(
        &self,
        keys: &KeySet,
        issuer: &str,
        route_url: &str,
        now: i64,
    ) -> Option<HeaderValue> {
        let kid = keys.current().kid();
        let mut cache = self
            .assertions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = cache
            .iter()
            .find(|a| &*a.route_url == route_url && a.kid == kid && now < a.refresh_at)
        {
            return Some(hit.jwt.clone());
        }
        let expires = (now + ASSERTION_LIFETIME_SECS).min(self.token.expires);
        let claims = assertion_claims(&self.token.identity.claims, issuer, route_url, now, expires);
        let jwt = match keys.sign("JWT", &claims).map(HeaderValue::try_from) {
            Ok(Ok(jwt)) => jwt,
            Ok(Err(error)) => {
                tracing::error!(%error, "a signed upstream assertion is not a header value");
                return None;
            }
            Err(error) => {
                tracing::error!(%error, "signing an upstream assertion failed");
                return None;
            }
        };
        cache.retain(|a| &*a.route_url != route_url && now < a.refresh_at);
        if cache.len() >= ASSERTIONS_PER_TOKEN {
            cache.remove(0);
        }
        cache.push(CachedAssertion {
            route_url: route_url.into(),
            kid: kid.to_owned(),
            jwt: jwt.clone(),
            refresh_at: expires - ASSERTION_REFRESH_MARGIN_SECS,
        });
        Some(jwt)
    }
}

/// The assertion's claims: the identity's claims (`sub`, `client_id`, `scope`, the credential's
/// own claims), then `iss`, `aud`, `iat`, `exp` of the assertion itself.
fn assertion_claims(
    identity_claims: &Map<String, Value>,
    issuer: &str,
    audience: &str,
    now: i64,
    expires: i64,
) -> Value {
    let mut claims = identity_claims.clone();
    claims.insert("iss".into(), issuer.into());
    claims.insert("aud".into(), audience.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), expires.into());
    Value::Object(claims)
}

/// Verifies access tokens for route requests, with a cache of verified tokens.
pub struct Authenticator {
    issuer: String,
    audience: String,
    clock: Clock,
    store: Option<Arc<dyn Store>>,
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Authenticated>>,
    /// Identity-provider access tokens the provider refused, and until when that stands.
    idp_refusals: quick_cache::sync::Cache<[u8; 32], (IdpTokenRejection, i64)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Authenticator {
    /// Accepts access tokens issued by `issuer` for `audience`, judged at `clock`'s time.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, clock: Clock) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            clock,
            store: None,
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
            idp_refusals: quick_cache::sync::Cache::new(CACHE_CAPACITY),
        }
    }

    /// Also accepts people's session tokens, checking their revocation in `store`.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    fn session_revoked(&self, sid: &str) -> bool {
        self.store
            .as_ref()
            .is_some_and(|store| store.is_revoked(&session_revocation_id(sid)))
    }

    /// The issuer identifier (`iss` of assertions).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current time of the clock tokens are judged by.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Verifies `token` as an id_token of the identity provider `client` (a route with
    /// `bearerTokenFormat: idp_identity_token`). Cached apart from our own tokens, so a token
    /// accepted here is never taken for one of ours on another route.
    pub fn authenticate_idp_id_token(
        &self,
        client: &IdpClient,
        token: &str,
    ) -> Result<Arc<Authenticated>, AuthnError> {
        let now = self.clock.now();
        let key = idp_cache_key("idp_identity_token", token);
        if let Some(hit) = self.idp_cached(&key, now) {
            return Ok(hit);
        }
        let presented = client
            .verify_presented_id_token(token, now)
            .map_err(AccessRejection::IdpToken)?;
        Ok(self.remember_idp(key, client, presented))
    }

    /// Verifies `token` as an access token of the identity provider `client` at its
    /// introspection endpoint (a route with `bearerTokenFormat: idp_access_token`). Accepted
    /// tokens are cached like id_tokens (at most
    /// [`crate::identity::login::INTROSPECTION_CACHE_SECS`]); refused ones
    /// for [`IDP_REFUSAL_CACHE_SECS`], so repeating a bad token does not make the provider
    /// answer again.
    pub async fn authenticate_idp_access_token(
        &self,
        client: &IdpClient,
        token: &str,
    ) -> Result<Arc<Authenticated>, AuthnError> {
        let now = self.clock.now();
        let key = idp_cache_key("idp_access_token", token);
        if let Some(hit) = self.idp_cached(&key, now) {
            return Ok(hit);
        }
        if let Some((rejection, until)) = self.idp_refusals.get(&key) {
            if now < until {
                return Err(AccessRejection::IdpToken(rejection).into());
            }
            self.idp_refusals.remove(&key);
        }
        match client.verify_presented_access_token(token, now).await {
            Ok(presented) => Ok(self.remember_idp(key, client, presented)),
            Err(rejection) => {
                if rejection != IdpTokenRejection::Unreachable {
                    self.idp_refusals
                        .insert(key, (rejection, now + IDP_REFUSAL_CACHE_SECS));
                }
                Err(AccessRejection::IdpToken(rejection).into())
            }
        }
    }

    /// A cached identity-provider token still within its `exp` (all that can change without
    /// the token changing, until the provider is asked again).
    fn idp_cached(&self, key: &[u8; 32], now: i64) -> Option<Arc<Authenticated>> {
        let hit = self.cache.get(key)?;
        if now < hit.token.expires {
            return Some(hit);
        }
        self.cache.remove(key);
        None
    }

    fn remember_idp(
        &self,
        key: [u8; 32],
        client: &IdpClient,
        presented: PresentedIdpToken,
    ) -> Arc<Authenticated> {
        let verified = AccessToken::from_idp(
            presented.subject,
            client.issuer(),
            &presented.claims,
            presented.expires,
        );
        self.remember(key, verified)
    }

    fn remember(&self, key: [u8; 32], token: AccessToken) -> Arc<Authenticated> {
        let authenticated = Arc::new(Authenticated {
            token,
            assertions: Mutex::new(Vec::new()),
        });
        self.cache.insert(key, Arc::clone(&authenticated));
        authenticated
    }

    /// Verifies `token` against `table` (keys and credentials of this generation).
    pub fn authenticate(
        &self,
        table: &Table,
        token: &str,
    ) -> Result<Arc<Authenticated>, AuthnError> {
        let now = self.clock.now();
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&key) {
            let revoked = |sid: &str| self.session_revoked(sid);
            return match hit.token.still_valid(
                table.keys.as_deref(),
                &table.credentials,
                &revoked,
                now,
            ) {
                Ok(()) => Ok(hit),
                Err(rejection) => {
                    self.cache.remove(&key);
                    Err(rejection.into())
                }
            };
        }
        let is_session = self.store.is_some()
            && jsonwebtoken::decode_header(token)
                .ok()
                .and_then(|h| h.typ)
                .is_some_and(|typ| typ == SESSION_TYP);
        let verified = if is_session {
            let session = verify_session_token(table.keys.as_deref(), token, &self.issuer, now)?;
            if self.session_revoked(&session.sid) {
                return Err(AccessRejection::SessionEnded.into());
            }
            AccessToken::from_session(session)
        } else {
            verify_access_token(
                table.keys.as_deref(),
                &table.credentials,
                token,
                &self.issuer,
                &self.audience,
                now,
            )?
        };
        Ok(self.remember(key, verified))
    }
}

/// The cache key of an identity provider's token accepted as `format`: a digest apart from
/// the plain SHA-256 our own tokens are cached under.
fn idp_cache_key(format: &str, token: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(format.as_bytes())
        .chain_update([0])
        .chain_update(token.as_bytes())
        .finalize()
        .into()
}
