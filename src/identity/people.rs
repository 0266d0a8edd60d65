//! People signing in with a browser: the handlers of the sign-in flow on the authenticate host
//! and on route hosts, and silent refresh (DESIGN.md §4, SECURITY.md "Redirects and login").
//!
//! ```text
//! route host, browser without credential ─302─► auth /.portcullis/sign_in?return_to=<original URL>
//!   auth: return_to must be a URL some route serves (or the authenticate host itself)
//!   auth: valid session cookie?  yes ──────────────────────────────────┐
//!         no: state, nonce, PKCE verifier in a signed cookie ─302─► IdP │
//! IdP ─302─► auth /oauth2/callback?code&state                          │
//!   auth: cookie state = state, single use; code + verifier → id_token │
//!   auth: new session (store), session cookie on the auth host ────────┤
//!                                                                      ▼
//!   auth ─302─► <route origin>/.portcullis/callback?handoff=<signed, 60 s, single use, aud = origin>
//!   route host: session cookie set, ─302─► the exact original URL
//! sign_out (POST + CSRF): session revoked and deleted on every replica, cookie cleared,
//!   ─302─► IdP end-session (when it has one) ─► auth /.portcullis/signed_out
//! ```
//!
//! URLs are built from the configured authenticate URL and the request's own validated
//! `Host` (the one the route matched), never from `X-Forwarded-Host`. Every refusal is a page
//! with a fixed message and a 4xx status; nothing here answers 500.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use url::Url;

use super::endpoints::{self, CALLBACK, ROUTE_PREFIX};
use super::login::{Idp, IdpError, IdpState, IdpTokenRejection, LoginSecrets};
use super::programmatic;
use super::service::Clock;
use super::session::{
    self, LOGIN_COOKIE, LOGIN_LIFETIME_SECS, LoginState, SESSION_COOKIE, SESSION_TYP, SessionToken,
};
use crate::routing::Scheme;
use crate::routing::route::Table;
use crate::store::{Session, Store};
use crate::web;

/// Path of the sign-in start on the authenticate host.
pub const AUTH_SIGN_IN: &str = "/.portcullis/sign_in";
/// Path of the signed-out page on the authenticate host (the IdP's post-logout redirect).
pub const AUTH_SIGNED_OUT: &str = "/.portcullis/signed_out";
/// Path of sign-out on the authenticate host.
pub const AUTH_SIGN_OUT: &str = "/.portcullis/sign_out";
/// How long to wait before asking the provider again after a refresh failed without the
/// provider refusing it (unreachable, an id_token that did not verify).
pub const REFRESH_RETRY_SECS: i64 = 60;
/// Largest sign-out form accepted.
pub const MAX_FORM_BYTES: usize = 4096;
/// How often the person's claims are refreshed at the IdP when it does not say when its
/// tokens expire.
pub const DEFAULT_REFRESH_SECS: i64 = 3600;

/// The sign-in service of one process.
pub struct People {
    issuer: Url,
    issuer_id: String,
    auth_origin: String,
    idp: Idp,
    store: Arc<dyn Store>,
    clock: Clock,
    session_lifetime: i64,
    redirect_domains: Vec<String>,
    /// Sessions not to refresh before a time: `i64::MAX` while a refresh runs, a minute
    /// after one that failed without the provider refusing it (so an unreachable provider is
    /// not asked again on every request).
    refreshing: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("People")
            .field("issuer", &self.issuer_id)
            .finish_non_exhaustive()
    }
}

/// The `scheme://host[:port]` of a URL.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A value of the request's `Cookie` headers by name (the first).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age.max(0)
    );
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn redirect(location: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for (n, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if n == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

/// The end of a programmatic login: the script's redirect URI with the session token
/// (`no-store`, `no-referrer`, as every redirect here).
fn deliver(redirect_uri: &Url, token: &str) -> Response<Bytes> {
    redirect(programmatic::redirect_with_token(redirect_uri, token).as_str())
}

/// A refused login API request: `400` with an OAuth-style JSON body.
fn login_api_error(error: programmatic::ProgrammaticError) -> Response<Bytes> {
    super::error::json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": "invalid_request", "error_description": error.to_string()}),
    )
}

/// The `programmaticRedirectDomains` of the route serving `origin`'s host (`Some(None)`: the
/// route does not narrow the list); `None` when no route serves the host any more.
pub fn route_redirect_domains(table: &Table, origin: &str) -> Option<Option<Vec<String>>> {
    let origin = Url::parse(origin).ok()?;
    let host = crate::routing::canonical_host_name(origin.host_str()?).ok()?;
    let route = table.route_for_host(&host)?;
    Some(route.options.programmatic_redirect_domains.clone())
}

fn refused(message: &str) -> Response<Bytes> {
    web::sign_in_error(StatusCode::BAD_REQUEST, message)
}

fn unavailable(message: &str) -> Response<Bytes> {
    web::sign_in_error(StatusCode::SERVICE_UNAVAILABLE, message)
}

fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session id of a session exchanged for `id_token` of the provider `idp_issuer`: a
/// digest, so the same id_token always names the same session.
fn exchanged_session_id(idp_issuer: &str, id_token: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new()
        .chain_update(b"portcullis token exchange\0")
        .chain_update(idp_issuer.as_bytes())
        .chain_update(b"\0")
        .chain_update(id_token.as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// A session token issued by token exchange.
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// The session token.
    pub token: String,
    /// Its `exp` (unix seconds).
    pub expires: i64,
}

/// Why a token exchange issued nothing. Texts are for the caller: fixed, no token content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeRefusal {
    /// The id_token is not one we accept.
    SubjectToken(IdpTokenRejection),
    /// The session of this id_token was signed out.
    SignedOut,
    /// The provider, the keys or the store are not ready.
    Unavailable(&'static str),
    /// Signing failed (logged).
    ServerError,
}

impl ExchangeRefusal {
    /// What the caller is told.
    pub fn description(self) -> &'static str {
        match self {
            Self::SubjectToken(rejection) => rejection.description(),
            Self::SignedOut => {
                "the session of this id_token was signed out; sign in again for a fresh id_token"
            }
            Self::Unavailable(text) => text,
            Self::ServerError => "the server could not complete the request",
        }
    }
}

/// A session established from a cookie, as the proxy hands it to the who-am-I page and
/// sign-out.
#[derive(Debug, Clone)]
pub struct CookieSession {
    /// The cookie's value (the session token).
    pub token: String,
    /// What it says.
    pub verified: SessionToken,
}

/// The outcome of a refresh attempt.
#[derive(Debug)]
pub enum Refresh {
    /// Nothing to do now (not due, no refresh token here, already refreshing, IdP unreachable):
    /// the current token stays good until it expires.
    Keep,
    /// A new session token with fresh claims.
    Renewed {
        /// The new token.
        token: String,
        /// What it says.
        verified: Box<SessionToken>,
    },
    /// The IdP refused the refresh token: the session has ended.
    Ended,
}

impl People {
    /// The service for the authenticate URL `issuer`.
    pub fn new(
        issuer: Url,
        idp: Idp,
        store: Arc<dyn Store>,
        clock: Clock,
        session_lifetime: std::time::Duration,
    ) -> Self {
        Self {
            issuer_id: endpoints::issuer_identifier(&issuer),
            auth_origin: origin_of(&issuer),
            issuer,
            idp,
            store,
            clock,
            session_lifetime: i64::try_from(session_lifetime.as_secs()).unwrap_or(i64::MAX),
            redirect_domains: Vec::new(),
            refreshing: Mutex::new(HashMap::new()),
        }
    }

    /// Hosts besides loopback that programmatic logins may redirect to
    /// (`programmaticRedirectDomains`).
    pub fn with_redirect_domains(mut self, domains: Vec<String>) -> Self {
        self.redirect_domains = domains;
        self
    }

    /// `GET <route>/.portcullis/api/v1/login?redirect_uri=` (or `pomerium_redirect_uri`): the
    /// signed sign-in URL as `text/plain`, for the route at `origin` with these options.
    pub fn login_api(
        &self,
        table: &Table,
        origin: &str,
        route_domains: Option<&[String]>,
        query: Option<&str>,
    ) -> Response<Bytes> {
        let mut found = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if name == "redirect_uri" || name == "pomerium_redirect_uri" {
                if found.is_some() {
                    return login_api_error(programmatic::ProgrammaticError::MissingRedirect);
                }
                found = Some(value.into_owned());
            }
        }
        let Some(redirect) = found else {
            return login_api_error(programmatic::ProgrammaticError::MissingRedirect);
        };
        let redirect = match programmatic::check_redirect_uri(
            &redirect,
            &self.redirect_domains,
            route_domains,
        ) {
            Ok(url) => url,
            Err(error) => return login_api_error(error),
        };
        let Some(keys) = table.keys.as_deref() else {
            return unavailable("Sign-in is unavailable: signing keys are not loaded yet.");
        };
        let mut sign_in = self.issuer.clone();
        sign_in.set_path(AUTH_SIGN_IN);
        let url =
            programmatic::signed_login_url(keys, &sign_in, &redirect, origin, self.clock.now());
        let mut response = Response::new(Bytes::from(url.to_string()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// A signed programmatic sign-in: checked again against the current table (the route
    /// still serves, the redirect is still allowed for it), then sign-in as usual with the
    /// token delivered to the script's redirect URI.
    async fn start_programmatic(
        &self,
        table: &Table,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response<Bytes> {
        let now = self.clock.now();
        let request = match programmatic::verify_login_query(table.keys.as_deref(), query, now) {
            Ok(request) => request,
            Err(error) => return refused(&format!("This sign-in link cannot be used: {error}.")),
        };
        let Some(route_domains) = route_redirect_domains(table, &request.route) else {
            return refused("This sign-in link names a route Portcullis no longer serves.");
        };
        if programmatic::check_redirect_uri(
            request.redirect_uri.as_str(),
            &self.redirect_domains,
            route_domains.as_deref(),
        )
        .is_err()
        {
            return refused("This sign-in link's redirect is no longer allowed.");
        }
        if let Some(token) = cookie(headers, SESSION_COOKIE)
            && self.verify_session(table, token).is_ok()
        {
            return deliver(&request.redirect_uri, token);
        }
        self.to_provider(table, request.redirect_uri.as_str(), true, now)
    }

    /// The identity provider handle.
    pub fn idp(&self) -> &Idp {
        &self.idp
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn auth_secure(&self) -> bool {
        self.issuer.scheme() == "https"
    }

    /// Whether this authenticate-host path is one of ours.
    pub fn serves_auth_path(path: &str) -> bool {
        path == CALLBACK || path == AUTH_SIGN_IN || path == AUTH_SIGNED_OUT || path == AUTH_SIGN_OUT
    }

    /// The redirect that starts a browser sign-in and comes back to `return_to` (absolute).
    pub fn sign_in_redirect(&self, return_to: &str) -> Response<Bytes> {
        let mut url = self.issuer.clone();
        url.set_path(AUTH_SIGN_IN);
        url.set_fragment(None);
        url.query_pairs_mut()
            .clear()
            .append_pair("return_to", return_to);
        redirect(url.as_str())
    }

    /// Verifies a session token and checks it was not revoked.
    pub fn verify_session(
        &self,
        table: &Table,
        token: &str,
    ) -> Result<SessionToken, super::access::AccessRejection> {
        let verified = session::verify_session_token(
            table.keys.as_deref(),
            token,
            &self.issuer_id,
            self.clock.now(),
        )?;
        if self.is_revoked(&verified.sid) {
            return Err(super::access::AccessRejection::SessionEnded);
        }
        Ok(verified)
    }

    /// Whether session `sid` was ended.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.store.is_revoked(&session::session_revocation_id(sid))
    }

    /// Answers a request to one of the authenticate host's sign-in paths.
    pub async fn handle_auth(
        &self,
        table: &Table,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        match (path, method) {
            (AUTH_SIGN_IN, &http::Method::GET) => self.start(table, query, headers).await,
            (CALLBACK, &http::Method::GET) => self.callback(table, query, headers).await,
            (AUTH_SIGNED_OUT, &http::Method::GET) => {
                let mut response = web::signed_out();
                response.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(SESSION_COOKIE, "", "/", 0, self.auth_secure()),
                );
                response
            }
            (AUTH_SIGN_OUT, &http::Method::POST) => {
                self.sign_out(table, headers, &body, &self.auth_origin, self.auth_secure())
                    .await
            }
            // Not even HEAD: a callback's state is single use.
            _ => web::method_not_allowed(if path == AUTH_SIGN_OUT { "POST" } else { "GET" }),
        }
    }

    /// Checks a `return_to`: an absolute http(s) URL without credentials whose host is the
    /// authenticate host or a host and path some route of `table` serves.
    fn check_return_to(&self, table: &Table, text: &str) -> Option<Url> {
        let url = Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        if origin_of(&url) == self.auth_origin {
            return Some(url);
        }
        let host = crate::routing::canonical_host_name(url.host_str()?).ok()?;
        let path = crate::routing::canonical_path(url.path()).ok()?;
        table.find(&host, &path)?;
        Some(url)
    }

    async fn start(
        &self,
        table: &Table,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response<Bytes> {
        if programmatic::is_signed_query(query) {
            return self.start_programmatic(table, query, headers).await;
        }
        let Ok(Some(return_to)) = query_param(query, "return_to") else {
            return refused("The sign-in link is missing where to go afterwards.");
        };
        let Some(return_to) = self.check_return_to(table, &return_to) else {
            return refused("The sign-in link names a page Portcullis does not serve.");
        };
        let now = self.clock.now();
        if let Some(token) = cookie(headers, SESSION_COOKIE)
            && let Ok(verified) = self.verify_session(table, token)
        {
            return self.hand_off(table, &return_to, token, &verified, now);
        }
        self.to_provider(table, return_to.as_str(), false, now)
    }

    /// The redirect to the identity provider, with the sign-in state cookie.
    fn to_provider(
        &self,
        table: &Table,
        return_to: &str,
        programmatic: bool,
        now: i64,
    ) -> Response<Bytes> {
        let client = match &*self.idp.state() {
            IdpState::Ready(client) => Arc::clone(client),
            IdpState::NotConfigured => {
                return unavailable("Sign-in is not configured: no identity provider is set.");
            }
            IdpState::Unavailable(_) => {
                return unavailable(
                    "Sign-in is unavailable: the identity provider is not ready. Try again shortly.",
                );
            }
        };
        let Some(keys) = table.keys.as_deref() else {
            return unavailable("Sign-in is unavailable: signing keys are not loaded yet.");
        };
        let secrets = LoginSecrets::random();
        let state = LoginState {
            state: secrets.state.clone(),
            nonce: secrets.nonce.clone(),
            verifier: secrets.verifier.clone(),
            return_to: return_to.to_owned(),
            programmatic,
            expires: now + LOGIN_LIFETIME_SECS,
        };
        let cookie_value = match session::sign_login_state(keys, &self.issuer_id, &state) {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, "signing the sign-in state failed");
                return unavailable("Sign-in is unavailable right now.");
            }
        };
        let mut response = redirect(client.authorize_url(&secrets).as_str());
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(
                LOGIN_COOKIE,
                &cookie_value,
                CALLBACK,
                LOGIN_LIFETIME_SECS,
                self.auth_secure(),
            ),
        );
        response
    }

    async fn callback(
        &self,
        table: &Table,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response<Bytes> {
        let param = |name| query_param(query, name);
        let (Ok(error), Ok(state), Ok(code)) = (param("error"), param("state"), param("code"))
        else {
            return refused("The sign-in answer repeats a parameter.");
        };
        if let Some(error) = error {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_lowercase() || *c == '_')
                .take(40)
                .collect();
            tracing::info!(error = %code, "the identity provider refused a sign-in");
            return refused(&format!(
                "The identity provider did not sign you in ({code})."
            ));
        }
        let (Some(state), Some(code)) = (state, code) else {
            return refused("The sign-in answer is missing its state or code.");
        };
        let now = self.clock.now();
        let Some(login) = cookie(headers, LOGIN_COOKIE).and_then(|c| {
            session::verify_login_state(table.keys.as_deref(), c, &self.issuer_id, now).ok()
        }) else {
            return refused("No sign-in is in progress in this browser, or it took too long.");
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            login.state.as_bytes(),
            state.as_bytes(),
        )) {
            return refused("The sign-in answer does not belong to this browser's sign-in.");
        }
        match self
            .store
            .revoke(&format!("login:{}", login.state), login.expires)
            .await
        {
            Ok(true) => {}
            Ok(false) => return refused("This sign-in was already completed."),
            Err(error) => {
                tracing::error!(%error, "recording a sign-in as used failed");
                return unavailable("Sign-in is unavailable right now.");
            }
        }
        let Some(client) = self.idp.client() else {
            return unavailable("Sign-in is unavailable: the identity provider is not ready.");
        };
        let tokens = match client
            .exchange_code(&code, &login.verifier, &login.nonce, now)
            .await
        {
            Ok(tokens) => tokens,
            Err(error @ IdpError::Http(_)) => {
                tracing::warn!(%error, "redeeming a sign-in code failed");
                return web::sign_in_error(
                    StatusCode::BAD_GATEWAY,
                    "The identity provider could not be reached to complete the sign-in.",
                );
            }
            Err(error) => {
                tracing::warn!(reason = error.label(), %error, "a sign-in was refused");
                return refused("The sign-in could not be completed.");
            }
        };
        let Some(subject) = tokens
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
        else {
            return refused("The identity provider did not say who you are.");
        };
        let expires = now.saturating_add(self.session_lifetime);
        let refresh_after = match (&tokens.refresh_token, tokens.access_expires_at) {
            (None, _) => expires,
            (Some(_), Some(at)) => at.max(now + 30),
            (Some(_), None) => now + DEFAULT_REFRESH_SECS,
        };
        let record = Session {
            id: random_id(),
            subject,
            issuer: client.issuer().to_owned(),
            created_at: now,
            expires_at: expires,
            refreshed_at: now,
            claims: tokens.claims.clone(),
            idp_refresh_token: tokens.refresh_token.clone(),
            idp_id_token: tokens.id_token.clone(),
        };
        if let Err(error) = self.store.put_session(&record).await {
            tracing::error!(%error, "storing a new session failed");
            return unavailable("Sign-in is unavailable right now.");
        }
        let Some(keys) = table.keys.as_deref() else {
            return unavailable("Sign-in is unavailable: signing keys are not loaded yet.");
        };
        let Some((token, verified)) = self.sign_session(keys, &record, refresh_after, now) else {
            return unavailable("Sign-in is unavailable right now.");
        };
        tracing::info!(subject = %verified.identity.subject, "signed in");
        let Ok(return_to) = Url::parse(&login.return_to) else {
            return refused("The sign-in state is damaged.");
        };
        let mut response = if login.programmatic {
            deliver(&return_to, &token)
        } else {
            self.hand_off(table, &return_to, &token, &verified, now)
        };
        let headers = response.headers_mut();
        headers.append(
            header::SET_COOKIE,
            set_cookie(
                SESSION_COOKIE,
                &token,
                "/",
                expires - now,
                self.auth_secure(),
            ),
        );
        headers.append(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, "", CALLBACK, 0, self.auth_secure()),
        );
        response
    }

    /// Sends the browser on to `return_to` with the session: directly on the authenticate
    /// host, else through a hand-off to the route host.
    fn hand_off(
        &self,
        table: &Table,
        return_to: &Url,
        token: &str,
        verified: &SessionToken,
        now: i64,
    ) -> Response<Bytes> {
        let origin = origin_of(return_to);
        if origin == self.auth_origin {
            return redirect(return_to.as_str());
        }
        let Some(keys) = table.keys.as_deref() else {
            return unavailable("Sign-in is unavailable: signing keys are not loaded yet.");
        };
        let jti = random_id();
        let _ = verified;
        match session::sign_handoff(
            keys,
            &self.issuer_id,
            &origin,
            token,
            return_to.as_str(),
            &jti,
            now,
        ) {
            Ok(handoff) => {
                let mut target = return_to.clone();
                target.set_path(&format!("{ROUTE_PREFIX}callback"));
                target.set_fragment(None);
                target
                    .query_pairs_mut()
                    .clear()
                    .append_pair("handoff", &handoff);
                redirect(target.as_str())
            }
            Err(error) => {
                tracing::error!(%error, "signing a hand-off failed");
                unavailable("Sign-in is unavailable right now.")
            }
        }
    }

    /// `<route>/.portcullis/callback?handoff=`: sets the session cookie on the route host and
    /// returns to the original URL. `origin` is this request's own (`scheme://Host`).
    pub async fn route_callback(
        &self,
        table: &Table,
        origin: &str,
        scheme: Scheme,
        query: Option<&str>,
    ) -> Response<Bytes> {
        let Ok(Some(handoff)) = query_param(query, "handoff") else {
            return refused("The sign-in hand-off is missing.");
        };
        let now = self.clock.now();
        let Ok(handoff) = session::verify_handoff(
            table.keys.as_deref(),
            &handoff,
            &self.issuer_id,
            origin,
            now,
        ) else {
            return refused("The sign-in hand-off is not valid here, or it expired.");
        };
        let Ok(verified) = self.verify_session(table, &handoff.session) else {
            return refused("The session in the hand-off is not valid.");
        };
        let return_to = match Url::parse(&handoff.return_to) {
            Ok(url) if origin_of(&url) == origin => url,
            _ => return refused("The sign-in hand-off names another site."),
        };
        match self
            .store
            .revoke(&format!("handoff:{}", handoff.jti), handoff.expires)
            .await
        {
            Ok(true) => {}
            Ok(false) => return refused("This sign-in link was already used."),
            Err(error) => {
                tracing::error!(%error, "recording a hand-off as used failed");
                return unavailable("Sign-in is unavailable right now.");
            }
        }
        let mut location = return_to.path().to_owned();
        if let Some(q) = return_to.query() {
            location.push('?');
            location.push_str(q);
        }
        let mut response = redirect(&location);
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(
                SESSION_COOKIE,
                &handoff.session,
                "/",
                verified.expires - now,
                scheme == Scheme::Https,
            ),
        );
        response
    }

    /// `POST sign_out`: checks the CSRF token and the origin, ends the session everywhere,
    /// clears this host's cookie and goes to the IdP's end-session endpoint (or our
    /// signed-out page).
    pub async fn sign_out(
        &self,
        table: &Table,
        headers: &HeaderMap,
        body: &[u8],
        origin: &str,
        secure: bool,
    ) -> Response<Bytes> {
        let forbidden = |message: &str| web::sign_in_error(StatusCode::FORBIDDEN, message);
        if let Some(sent) = headers.get(header::ORIGIN)
            && sent.as_bytes() != origin.as_bytes()
        {
            return forbidden("Sign-out must come from this site's own page.");
        }
        let csrf = url::form_urlencoded::parse(body)
            .find(|(n, _)| n == "csrf")
            .map(|(_, v)| v.into_owned());
        let Some(token) = cookie(headers, SESSION_COOKIE) else {
            let mut response = redirect(&self.signed_out_url());
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, "", "/", 0, secure),
            );
            return response;
        };
        if !csrf.is_some_and(|c| session::csrf_matches(token, &c)) {
            return forbidden(
                "The sign-out form is missing its security token or it does not match.",
            );
        }
        let now = self.clock.now();
        let mut hint = None;
        if let Ok(verified) =
            session::verify_session_token(table.keys.as_deref(), token, &self.issuer_id, now)
        {
            hint = self
                .store
                .load_session(&verified.sid, now)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.idp_id_token.clone());
            let revoked = self
                .store
                .revoke(
                    &session::session_revocation_id(&verified.sid),
                    verified.expires,
                )
                .await;
            if let Err(error) = revoked {
                tracing::error!(%error, "revoking a session at sign-out failed");
                return unavailable("Sign-out could not be completed. Try again.");
            }
            if let Err(error) = self.store.delete_session(&verified.sid).await {
                tracing::warn!(%error, "deleting a signed-out session failed; it stays revoked");
            }
            tracing::info!(subject = %verified.identity.subject, "signed out");
        }
        let location = self
            .idp
            .client()
            .and_then(|c| c.end_session_url(hint.as_ref(), &self.signed_out_url()))
            .map(|u| u.to_string())
            .unwrap_or_else(|| self.signed_out_url());
        let mut response = redirect(&location);
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, "", "/", 0, secure),
        );
        response
    }

    fn signed_out_url(&self) -> String {
        endpoints::endpoint_url(&self.issuer, AUTH_SIGNED_OUT)
    }

    /// Refreshes the person's claims at the IdP when the session token says it is due, at
    /// most once at a time per session.
    pub async fn refresh(&self, table: &Table, current: &SessionToken) -> Refresh {
        let now = self.clock.now();
        if now < current.refresh_after {
            return Refresh::Keep;
        }
        let Ok(Some(record)) = self.store.load_session(&current.sid, now).await else {
            return Refresh::Keep;
        };
        let (Some(refresh_token), Some(client), Some(keys)) = (
            record.idp_refresh_token.clone(),
            self.idp.client(),
            table.keys.as_deref(),
        ) else {
            return Refresh::Keep;
        };
        {
            let mut busy = self
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if busy
                .get(&current.sid)
                .is_some_and(|&not_before| now < not_before)
            {
                return Refresh::Keep;
            }
            busy.retain(|_, not_before| now < *not_before);
            busy.insert(current.sid.clone(), i64::MAX);
        }
        let outcome = client.refresh(&refresh_token, &record.claims, now).await;
        {
            let mut busy = self
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &outcome {
                Err(error) if !matches!(error, IdpError::Refused(_)) => {
                    busy.insert(current.sid.clone(), now + REFRESH_RETRY_SECS);
                }
                _ => {
                    busy.remove(&current.sid);
                }
            }
        }
        let tokens = match outcome {
            Ok(tokens) => tokens,
            Err(IdpError::Refused(code)) => {
                tracing::info!(%code, "the identity provider ended a session at refresh");
                let _ = self
                    .store
                    .revoke(
                        &session::session_revocation_id(&current.sid),
                        current.expires,
                    )
                    .await;
                let _ = self.store.delete_session(&current.sid).await;
                return Refresh::Ended;
            }
            Err(error) => {
                tracing::warn!(reason = error.label(), %error, "refreshing a session failed; it stays as it is and is tried again in a minute");
                return Refresh::Keep;
            }
        };
        let refresh_after = tokens
            .access_expires_at
            .map_or(now + DEFAULT_REFRESH_SECS, |at| at.max(now + 30));
        let mut updated = (*record).clone();
        updated.claims = tokens.claims;
        updated.refreshed_at = now;
        updated.idp_refresh_token = tokens.refresh_token;
        if tokens.id_token.is_some() {
            updated.idp_id_token = tokens.id_token;
        }
        if let Err(error) = self.store.put_session(&updated).await {
            tracing::warn!(%error, "storing a refreshed session failed");
            return Refresh::Keep;
        }
        match self.sign_session(keys, &updated, refresh_after, now) {
            Some((token, verified)) => Refresh::Renewed {
                token,
                verified: Box::new(verified),
            },
            None => Refresh::Keep,
        }
    }

    /// Token exchange (RFC 8693 at `/oauth2/token`, and Pomerium's `POST /api/v1/token`): a
    /// session for the person an id_token of the identity provider names, as if they had
    /// signed in with a browser: the same claims (the id_token's), stored and revocable like
    /// any session. Never wider than the id_token: it ends when the id_token expires, and
    /// within `sessionLifetime`; a fresher id_token gives a later end. The session id is
    /// derived from the id_token, so exchanging one id_token twice gives one session, and one
    /// that was signed out stays signed out.
    pub async fn exchange_id_token(
        &self,
        table: &Table,
        id_token: &str,
    ) -> Result<Exchanged, ExchangeRefusal> {
        let client = self.idp.client().ok_or(ExchangeRefusal::Unavailable(
            "the identity provider is not available yet; retry shortly",
        ))?;
        let keys = table.keys.as_deref().ok_or(ExchangeRefusal::Unavailable(
            "signing keys are not loaded yet; retry shortly",
        ))?;
        let now = self.clock.now();
        let presented = client
            .verify_presented_id_token(id_token, now)
            .map_err(ExchangeRefusal::SubjectToken)?;
        let expires = presented
            .expires
            .min(now.saturating_add(self.session_lifetime));
        if expires <= now {
            return Err(ExchangeRefusal::SubjectToken(IdpTokenRejection::Expired));
        }
        let sid = exchanged_session_id(client.issuer(), id_token);
        if self.store.is_revoked(&session::session_revocation_id(&sid)) {
            return Err(ExchangeRefusal::SignedOut);
        }
        let record = Session {
            id: sid,
            subject: presented.subject,
            issuer: client.issuer().to_owned(),
            created_at: now,
            expires_at: expires,
            refreshed_at: now,
            claims: presented.claims,
            idp_refresh_token: None,
            // The end-session hint goes with our client id: another client's id_token would
            // make the provider refuse the sign-out.
            idp_id_token: presented
                .issued_to_us
                .then(|| crate::store::Secret::new(id_token.to_owned())),
        };
        if let Err(error) = self.store.put_session(&record).await {
            tracing::error!(%error, "storing an exchanged session failed");
            return Err(ExchangeRefusal::Unavailable(
                "the session could not be stored; retry shortly",
            ));
        }
        let (token, verified) = self
            .sign_session(keys, &record, expires, now)
            .ok_or(ExchangeRefusal::ServerError)?;
        tracing::info!(subject = %verified.identity.subject, "exchanged an id_token for a session");
        Ok(Exchanged {
            token,
            expires: verified.expires,
        })
    }

    /// Signs the session token of `record`, with claims due for a refresh at
    /// `refresh_after`, and reads it back as requests will. `None` (logged) when signing fails.
    fn sign_session(
        &self,
        keys: &crate::identity::keys::KeySet,
        record: &Session,
        refresh_after: i64,
        now: i64,
    ) -> Option<(String, SessionToken)> {
        let claims = session::session_claims(
            &self.issuer_id,
            &record.issuer,
            &record.id,
            &record.claims,
            now,
            record.expires_at,
            refresh_after,
        );
        let token = keys
            .sign(SESSION_TYP, &claims)
            .inspect_err(|error| tracing::error!(%error, "signing a session failed"))
            .ok()?;
        let verified = session::verify_session_token(Some(keys), &token, &self.issuer_id, now)
            .inspect_err(|error| tracing::error!(%error, "a session just signed does not verify"))
            .ok()?;
        Some((token, verified))
    }

    /// The `Set-Cookie` of a renewed session token on a route host.
    pub fn session_cookie(&self, token: &str, expires: i64, secure: bool) -> HeaderValue {
        set_cookie(
            SESSION_COOKIE,
            token,
            "/",
            expires - self.clock.now(),
            secure,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; _portcullis_login=x"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("_portcullis=tok; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), Some("x"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn cookies_carry_the_flags_sessions_need() {
        let c = set_cookie(SESSION_COOKIE, "v", "/", 10, true);
        assert_eq!(
            c,
            "_portcullis=v; Path=/; Max-Age=10; HttpOnly; SameSite=Lax; Secure"
        );
        let c = set_cookie(SESSION_COOKIE, "", "/", -5, false);
        assert_eq!(c, "_portcullis=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn repeated_query_parameters_are_refused() {
        assert_eq!(query_param(Some("a=1&b=2"), "a"), Ok(Some("1".into())));
        assert_eq!(query_param(Some("a=1&a=2"), "a"), Err(()));
        assert_eq!(query_param(None, "a"), Ok(None));
    }
}
