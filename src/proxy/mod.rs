//! The data plane's front door: the plain-HTTP and HTTPS listeners and the dispatch of each
//! request.
//!
//! ```text
//! TCP ─► listener.rs (accept; then on one of the workers.rs threads: TLS via tls.rs,
//!        hyper HTTP/1.1 + h2, limits, idle, drain)
//!          └─► Proxy::handle: one table generation (LiveTable::load) for the whole request
//!                ├─ Host = authenticate host ─► identity::service::IdentityService::handle
//!                └─ any other host ──────────► serve_route (today: 404 route_not_found)
//!          └─► one access-log line per request
//! ```
//!
//! Hosts are compared in the routing crate's canonical form with the port ignored, as route
//! hosts are: `Auth.Example.COM.:8443` is the authenticate host `auth.example.com` on either
//! listener. The proxy's own refusals become responses in [`respond`] only; the identity
//! endpoints answer through [`crate::identity::error::OAuthError`].

pub mod access_log;
pub mod authn;
pub mod framing;
pub mod listener;
pub mod pool;
pub mod respond;
pub mod tls;
pub mod upstream;
pub mod workers;

use std::borrow::Cow;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Body;

use crate::identity::access::AccessRejection;
use crate::identity::endpoints::{RouteEndpoint, route_endpoint};
use crate::identity::people::{People, Refresh};
use crate::identity::service::{Clock, IdentityService, discard_body, read_body};
use crate::metrics::Metrics;
use crate::policy::Decision;
use crate::routing::live::LiveTable;
use crate::routing::route::{Route, Table};
use crate::routing::upstream::{AddressPolicy, UpstreamScheme};
use crate::routing::{Scheme, canonical_host_name, canonical_path, rewrite_prefix};
use access_log::AccessLog;
use authn::{Authenticated, Authenticator, AuthnError, CredentialSource};
use respond::ProxyError;
use upstream::{BoxError, Forwarding, UpstreamBody, Upstreams};

/// The body of every answer: our own (a complete `Bytes`) or the upstream's, streamed.
pub type ProxyBody = Either<Full<Bytes>, pool::ResponseBody>;

/// Where a connection came from and which listener took it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The listener's name in logs: `http` or `https`.
    pub listener: &'static str,
    /// The scheme the listener serves.
    pub scheme: Scheme,
    /// The TCP peer (never a forwarded-for header).
    pub peer: SocketAddr,
    /// The TLS server name (SNI) the client asked for, canonical; `None` on plain HTTP or when
    /// the client sent none.
    pub sni: Option<Arc<str>>,
}

/// How the proxy reaches upstreams and judges tokens; one per process.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Which upstream addresses may be connected to (checked again after name resolution).
    pub address_policy: Arc<AddressPolicy>,
    /// `aud` of the access tokens routes accept (setting `accessTokenAudience`).
    pub access_token_audience: String,
    /// Answer every plain-HTTP route request with a redirect to https (setting `httpRedirect`).
    pub http_redirect: bool,
    /// The public port of the https listener, for redirects of `http://` routes (left out when
    /// 443; `https://` routes redirect to the port of their own URL).
    pub https_port: u16,
    /// Require client certificates on the https listener (`downstreamMTLS.caSecret` is set).
    pub client_certificates: bool,
    /// The time tokens are judged at.
    pub clock: Clock,
    /// Where requests and authentication failures are counted.
    pub metrics: Arc<Metrics>,
    /// Where the access log goes (default: `tracing` events).
    pub access_log: AccessLog,
    /// How many proxy workers serve its connections, one upstream pool each (default:
    /// [`workers::count`]).
    pub workers: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            address_policy: Arc::new(AddressPolicy::default()),
            access_token_audience: "portcullis".into(),
            http_redirect: false,
            https_port: 443,
            client_certificates: false,
            clock: Clock::system(),
            metrics: Arc::new(Metrics::new()),
            access_log: AccessLog::default(),
            workers: workers::count(),
        }
    }
}

/// What every listener of a process shares: the live table, the identity endpoints, the token
/// verifier with its cache, and the pooled upstream clients (a pool per worker).
pub struct Proxy {
    live: LiveTable,
    identity: Option<Arc<IdentityService>>,
    people: Option<Arc<People>>,
    authn: Authenticator,
    upstreams: Upstreams,
    config: ProxyConfig,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("generation", &self.live.generation())
            .field("identity", &self.identity)
            .field("authn", &self.authn)
            .finish_non_exhaustive()
    }
}

/// What the access log records about one request besides status and latency.
struct Outcome {
    response: Response<ProxyBody>,
    endpoint: &'static str,
    client_id: Option<String>,
    route: Option<Arc<Route>>,
    /// The authenticated caller (its subject and `client_id` are logged, never copied).
    caller: Option<Arc<Authenticated>>,
    decision: &'static str,
    reason: Cow<'static, str>,
}

impl Outcome {
    fn new(response: Response<ProxyBody>, endpoint: &'static str) -> Self {
        Self {
            response,
            endpoint,
            client_id: None,
            route: None,
            caller: None,
            decision: "-",
            reason: Cow::Borrowed("-"),
        }
    }
}

impl Proxy {
    /// A proxy over `live`; `identity` serves the authenticate host (none: every host is a
    /// route host, and no token verifies).
    pub fn new(
        live: LiveTable,
        identity: Option<Arc<IdentityService>>,
        config: ProxyConfig,
    ) -> Self {
        let issuer = identity
            .as_ref()
            .map(|i| i.issuer_identifier().to_owned())
            .unwrap_or_default();
        Self {
            authn: Authenticator::new(
                issuer,
                config.access_token_audience.clone(),
                config.clock.clone(),
            ),
            upstreams: Upstreams::new(Arc::clone(&config.address_policy), config.workers),
            live,
            identity,
            people: None,
            config,
        }
    }

    /// Signs people in through `people` (browser redirects, session cookies and tokens, the
    /// sign-in pages on the authenticate host and every route host).
    pub fn with_people(mut self, people: Arc<People>) -> Self {
        self.authn = self.authn.with_store(Arc::clone(people.store()));
        self.people = Some(people);
        self
    }

    /// The live table.
    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    /// Answers one request: loads the table once, dispatches on the host, writes the access
    /// log line, and drops the body of our own answers to `HEAD` (keeping their
    /// `Content-Length`).
    pub async fn handle<B>(&self, request: Request<B>, conn: &ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let started = std::time::Instant::now();
        let table = self.live.load();
        let method = request.method().clone();
        let version = request.version();
        // For the log line: a clone shares the request's bytes instead of copying the path.
        let uri = request.uri().clone();
        let host = request_host(&request);
        let outcome = match &host {
            _ if request
                .uri()
                .path_and_query()
                .is_some_and(|t| t.as_str().len() > respond::MAX_REQUEST_TARGET) =>
            {
                discard_body(request.into_body()).await;
                refusal(ProxyError::UriTooLong, "uri_too_long")
            }
            Err(error) => {
                discard_body(request.into_body()).await;
                refusal(error.clone(), "invalid_host")
            }
            Ok(_) if method == Method::CONNECT => {
                discard_body(request.into_body()).await;
                refusal(ProxyError::ConnectNotAllowed, "connect")
            }
            Ok(host) if misdirected(&table, conn, host) => {
                discard_body(request.into_body()).await;
                refusal(ProxyError::Misdirected, "misdirected")
            }
            Ok(host) => match &self.identity {
                Some(identity)
                    if identity.host() == Some(host.as_str())
                        && self.people.is_some()
                        && People::serves_auth_path(request.uri().path()) =>
                {
                    self.people_auth_host(&table, request).await
                }
                Some(identity) if identity.host() == Some(host.as_str()) => {
                    let handled = identity
                        .handle(&table, request, conn.peer.ip(), conn.scheme)
                        .await;
                    let mut outcome = Outcome::new(handled.response.map(full), handled.endpoint);
                    outcome.client_id = handled.client_id;
                    outcome
                }
                _ => self.serve_route(&table, host, request, conn).await,
            },
        };
        let mut response = outcome.response;
        let caller = outcome.caller.as_deref();
        self.config.access_log.record(&access_log::Entry {
            listener: conn.listener,
            peer: conn.peer.ip(),
            version,
            method: &method,
            host: host.as_deref().unwrap_or("-"),
            path: uri.path(),
            endpoint: outcome.endpoint,
            route: outcome
                .route
                .as_deref()
                .map(|r| (&*r.id.namespace, &*r.id.name)),
            identity: caller.map_or("-", |c| c.token.identity.subject.as_str()),
            client_id: outcome
                .client_id
                .as_deref()
                .or(caller
                    .map(|c| c.token.client_id.as_str())
                    .filter(|id| !id.is_empty()))
                .unwrap_or("-"),
            decision: outcome.decision,
            reason: &outcome.reason,
            status: response.status().as_u16(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            generation: table.generation,
        });
        let latency = started.elapsed();
        let status = response.status().as_u16();
        match (&outcome.route, outcome.endpoint) {
            (Some(route), _) => self
                .config
                .metrics
                .http_route_request(&route.id, status, latency),
            (None, endpoint) if is_identity_endpoint(endpoint) => {
                self.config
                    .metrics
                    .http_request(crate::metrics::IDENTITY_ROUTE, status, latency)
            }
            (None, _) => {
                self.config
                    .metrics
                    .http_request(crate::metrics::NO_ROUTE, status, latency)
            }
        }
        if method == Method::HEAD
            && let Either::Left(body) = response.body()
        {
            let len = body.size_hint().exact().unwrap_or(0);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            *response.body_mut() = full(Bytes::new());
        }
        response
    }

    /// Serves a request for a route host: canonical path, route match, scheme, authentication,
    /// authorization, upstream. Every refusal is a [`ProxyError`].
    async fn serve_route<B>(
        &self,
        table: &Arc<Table>,
        host: &str,
        request: Request<B>,
        conn: &ConnInfo,
    ) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let path = match canonical_path(request.uri().path()) {
            Ok(path) => path,
            Err(problem) => {
                discard_body(request.into_body()).await;
                return refusal(ProxyError::BadPath(problem), "route");
            }
        };
        if table.routes.reserved_prefix(&path).is_some() {
            return self.route_endpoint(table, host, &path, request, conn).await;
        }
        let Some((matched, route)) = table.find(host, &path) else {
            discard_body(request.into_body()).await;
            return refusal(ProxyError::RouteNotFound, "route");
        };
        let route = Arc::clone(route);
        let mut outcome = self
            .route_request(
                table,
                host,
                &path,
                matched.matched_prefix,
                &route,
                request,
                conn,
            )
            .await;
        outcome.route = Some(route);
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn route_request<B>(
        &self,
        table: &Arc<Table>,
        host: &str,
        path: &str,
        matched_prefix: &str,
        route: &Arc<Route>,
        request: Request<B>,
        conn: &ConnInfo,
    ) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        if conn.scheme == Scheme::Http
            && (self.config.http_redirect
                || route.protocol == crate::routing::route::Protocol::Https)
        {
            let location = self.https_location(route, host, path, request.uri().query());
            discard_body(request.into_body()).await;
            return Outcome::new(redirect(&location), "redirect");
        }
        let options = &route.options;
        let preflight = options.cors_allow_preflight && is_cors_preflight(&request);
        let mut authenticated: Option<(Arc<Authenticated>, CredentialSource)> = None;
        let mut renewed_cookie = None;
        if !options.allow_public_unauthenticated_access && !preflight {
            let mut found = self.authenticate(table, route, request.headers()).await;
            if let Ok((caller, CredentialSource::Cookie)) = &found
                && let (Some(people), Some(session)) = (&self.people, &caller.token.session)
                && self.authn.now() >= session.refresh_after
            {
                let current = crate::identity::session::SessionToken {
                    sid: session.sid.clone(),
                    kid: caller.token.kid.clone(),
                    expires: caller.token.expires,
                    refresh_after: session.refresh_after,
                    identity: caller.token.identity.clone(),
                };
                match people.refresh(table, &current).await {
                    Refresh::Keep => {}
                    Refresh::Ended => {
                        found = Err(AuthnError::Rejected(
                            crate::identity::access::AccessRejection::SessionEnded,
                        ));
                    }
                    Refresh::Renewed { token, verified } => {
                        if let Ok(caller) = self.authn.authenticate(table, &token) {
                            renewed_cookie = Some(people.session_cookie(
                                &token,
                                verified.expires,
                                conn.scheme == Scheme::Https,
                            ));
                            found = Ok((caller, CredentialSource::Cookie));
                        }
                    }
                }
            }
            match found {
                Ok(found) => authenticated = Some(found),
                Err(error) => {
                    if let Some(redirect) = self.browser_sign_in(&request, &error, conn) {
                        discard_body(request.into_body()).await;
                        let mut outcome = Outcome::new(redirect, "sign_in");
                        outcome.decision = "deny";
                        outcome.reason = Cow::Borrowed(error.label());
                        return outcome;
                    }
                    discard_body(request.into_body()).await;
                    self.config.metrics.authentication_failure(error.label());
                    let mut outcome = refusal(
                        ProxyError::Unauthenticated {
                            error: error.clone(),
                            realm: host.to_owned(),
                        },
                        "route",
                    );
                    outcome.decision = "deny";
                    outcome.reason = Cow::Borrowed(error.label());
                    return outcome;
                }
            }
        }
        let logged_caller = authenticated.as_ref().map(|(a, _)| Arc::clone(a));
        if let Some((caller, _)) = &authenticated {
            let denied = self.authorize(route, caller, host, path, &request);
            if let Some((error, reason)) = denied {
                let html = wants_html(request.headers());
                discard_body(request.into_body()).await;
                let mut outcome = match error {
                    ProxyError::AccessDenied if caller.token.session.is_some() && html => {
                        let who = caller
                            .token
                            .identity
                            .email
                            .as_deref()
                            .unwrap_or(&caller.token.identity.subject);
                        Outcome::new(crate::web::access_denied(Some(who)).map(full), "route")
                    }
                    error => refusal(error, "route"),
                };
                outcome.caller = logged_caller;
                outcome.decision = "deny";
                outcome.reason = reason;
                return outcome;
            }
        }
        let reason = match (&authenticated, preflight) {
            (Some(_), _) => "policy",
            (None, true) => "cors_preflight",
            (None, false) => "public",
        };
        let mut outcome = self
            .forward(
                table,
                host,
                path,
                matched_prefix,
                route,
                authenticated,
                request,
                conn,
            )
            .await;
        outcome.caller = logged_caller;
        if outcome.decision == "-" {
            outcome.decision = "allow";
            outcome.reason = Cow::Borrowed(reason);
        }
        if let Some(cookie) = renewed_cookie {
            outcome
                .response
                .headers_mut()
                .append(header::SET_COOKIE, cookie);
        }
        outcome
    }

    /// For a browser (`Accept: text/html`, a `GET`/`HEAD`) that sent no credential or only a
    /// session cookie that no longer holds: the redirect to sign in, coming back to the exact
    /// URL it asked for. `None` for API clients and for tokens sent in headers.
    fn browser_sign_in<B>(
        &self,
        request: &Request<B>,
        error: &AuthnError,
        conn: &ConnInfo,
    ) -> Option<Response<ProxyBody>> {
        let people = self.people.as_ref()?;
        if !matches!(*request.method(), Method::GET | Method::HEAD)
            || !wants_html(request.headers())
        {
            return None;
        }
        let cookie_only = match error {
            AuthnError::Missing => true,
            AuthnError::Rejected(_) => matches!(
                authn::presented_credential(request.headers()),
                Ok(Some(authn::Presented {
                    source: CredentialSource::Cookie,
                    ..
                }))
            ),
            _ => false,
        };
        if !cookie_only {
            return None;
        }
        let origin = request_origin(request, conn)?;
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        Some(
            people
                .sign_in_redirect(&format!("{origin}{target}"))
                .map(full),
        )
    }

    /// The sign-in paths of the authenticate host.
    async fn people_auth_host<B>(&self, table: &Arc<Table>, request: Request<B>) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Some(people) = &self.people else {
            discard_body(request.into_body()).await;
            return refusal(ProxyError::EndpointNotAvailable, "sign_in");
        };
        let (parts, body) = request.into_parts();
        let body = if parts.method == Method::POST {
            match read_form(&parts.headers, body).await {
                Ok(body) => body,
                Err(error) => {
                    return Outcome::new(error.into_response().map(full), "sign_in");
                }
            }
        } else {
            discard_body(body).await;
            Bytes::new()
        };
        let response = people
            .handle_auth(
                table,
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                body,
            )
            .await;
        Outcome::new(response.map(full), "sign_in")
    }

    /// A path under `/.portcullis/` or `/.pomerium/` on a route host.
    async fn route_endpoint<B>(
        &self,
        table: &Arc<Table>,
        host: &str,
        path: &str,
        request: Request<B>,
        conn: &ConnInfo,
    ) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let (Some(people), Some(endpoint), Some(origin)) = (
            &self.people,
            route_endpoint(path),
            request_origin(&request, conn),
        ) else {
            discard_body(request.into_body()).await;
            return refusal(ProxyError::EndpointNotAvailable, "route_endpoint");
        };
        // A route host's own pages exist only where a route serves the host.
        let Some(host_route) = table.route_for_host(host).map(Arc::clone) else {
            discard_body(request.into_body()).await;
            return refusal(ProxyError::RouteNotFound, "route_endpoint");
        };
        let method = request.method().clone();
        let secure = conn.scheme == Scheme::Https;
        match (endpoint, method) {
            (RouteEndpoint::Callback, Method::GET | Method::HEAD) => {
                let query = request.uri().query().map(str::to_owned);
                discard_body(request.into_body()).await;
                let response = people
                    .route_callback(table, &origin, conn.scheme, query.as_deref())
                    .await;
                Outcome::new(response.map(full), "callback")
            }
            (RouteEndpoint::SignIn, Method::GET | Method::HEAD) => {
                let target =
                    url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                        .find(|(n, _)| n == "redirect_uri" || n == "pomerium_redirect_uri")
                        .map(|(_, v)| v.into_owned())
                        .filter(|v| v.starts_with('/') && !v.starts_with("//") && !v.contains('\\'))
                        .unwrap_or_else(|| "/".to_owned());
                discard_body(request.into_body()).await;
                Outcome::new(
                    people
                        .sign_in_redirect(&format!("{origin}{target}"))
                        .map(full),
                    "sign_in",
                )
            }
            (RouteEndpoint::Login, Method::GET | Method::HEAD) => {
                let query = request.uri().query().map(str::to_owned);
                discard_body(request.into_body()).await;
                let response = people.login_api(
                    table,
                    &origin,
                    host_route.options.programmatic_redirect_domains.as_deref(),
                    query.as_deref(),
                );
                let mut outcome = Outcome::new(response.map(full), "login_api");
                outcome.route = Some(host_route);
                outcome
            }
            (RouteEndpoint::SignOut, Method::POST) => {
                let (parts, body) = request.into_parts();
                let body = match read_form(&parts.headers, body).await {
                    Ok(body) => body,
                    Err(error) => return Outcome::new(error.into_response().map(full), "sign_out"),
                };
                let response = people
                    .sign_out(table, &parts.headers, &body, &origin, secure)
                    .await;
                Outcome::new(response.map(full), "sign_out")
            }
            (RouteEndpoint::WhoAmI, Method::GET | Method::HEAD) => {
                let found = authn::presented_credential(request.headers())
                    .and_then(|p| p.ok_or(AuthnError::Missing))
                    .and_then(|p| {
                        let source = p.source;
                        let token = p.token.into_owned();
                        self.authn
                            .authenticate(table, &token)
                            .map(|c| (c, source, token))
                    });
                let (caller, source, token) = match found {
                    Ok(found) => found,
                    Err(error) => {
                        if let Some(redirect) = self.browser_sign_in(&request, &error, conn) {
                            discard_body(request.into_body()).await;
                            return Outcome::new(redirect, "who_am_i");
                        }
                        discard_body(request.into_body()).await;
                        return refusal(
                            ProxyError::Unauthenticated {
                                error,
                                realm: host.to_owned(),
                            },
                            "who_am_i",
                        );
                    }
                };
                let html = wants_html(request.headers());
                discard_body(request.into_body()).await;
                let identity = &caller.token.identity;
                let response = if html {
                    let csrf = crate::identity::session::csrf_token(&token);
                    let action = format!("{}sign_out", crate::identity::endpoints::ROUTE_PREFIX);
                    crate::web::who_am_i(&crate::web::WhoAmI {
                        subject: &identity.subject,
                        email: identity.email.as_deref(),
                        issuer: identity.issuer.as_deref(),
                        claims: &identity.claims,
                        session_expires: caller
                            .token
                            .session
                            .as_ref()
                            .map(|_| caller.token.expires),
                        sign_out: (source == CredentialSource::Cookie)
                            .then_some((action.as_str(), csrf.as_str())),
                    })
                } else {
                    let body = serde_json::json!({
                        "subject": identity.subject,
                        "email": identity.email,
                        "emailVerified": identity.email_verified,
                        "groups": identity.groups,
                        "issuer": identity.issuer,
                        "claims": identity.claims,
                        "expires": caller.token.expires,
                    });
                    crate::identity::error::json_response(StatusCode::OK, &body)
                };
                let mut outcome = Outcome::new(response.map(full), "who_am_i");
                outcome.caller = Some(caller);
                outcome.decision = "allow";
                outcome
            }
            (
                endpoint @ (RouteEndpoint::Callback
                | RouteEndpoint::SignIn
                | RouteEndpoint::WhoAmI
                | RouteEndpoint::Login
                | RouteEndpoint::SignOut),
                _,
            ) => {
                discard_body(request.into_body()).await;
                let allow = if endpoint == RouteEndpoint::SignOut {
                    "POST"
                } else {
                    "GET, HEAD"
                };
                let response = crate::web::method_not_allowed(allow);
                Outcome::new(response.map(full), "route_endpoint")
            }
            _ => {
                discard_body(request.into_body()).await;
                refusal(ProxyError::EndpointNotAvailable, "route_endpoint")
            }
        }
    }

    /// The caller behind the request's credential, for a route that needs one.
    async fn authenticate(
        &self,
        table: &Table,
        route: &Route,
        headers: &http::HeaderMap,
    ) -> Result<(Arc<Authenticated>, CredentialSource), AuthnError> {
        use crate::routing::options::BearerTokenFormat;
        let presented = authn::presented_credential(headers)?.ok_or(AuthnError::Missing)?;
        let idp_client = || {
            self.people
                .as_ref()
                .and_then(|people| people.idp().client())
                .ok_or(AccessRejection::IdpUnavailable)
        };
        let caller = match (route.options.bearer_token_format, presented.source) {
            (BearerTokenFormat::Default, _) => self.authn.authenticate(table, &presented.token)?,
            // `Authorization: Bearer` carries the provider's id_token here; the Pomerium forms,
            // our own header and the cookie keep carrying our tokens.
            (BearerTokenFormat::IdpIdentityToken, CredentialSource::Bearer) => self
                .authn
                .authenticate_idp_id_token(&*idp_client()?, &presented.token)?,
            (BearerTokenFormat::IdpAccessToken, CredentialSource::Bearer) => {
                self.authn
                    .authenticate_idp_access_token(&*idp_client()?, &presented.token)
                    .await?
            }
            (BearerTokenFormat::IdpIdentityToken | BearerTokenFormat::IdpAccessToken, _) => {
                self.authn.authenticate(table, &presented.token)?
            }
            (BearerTokenFormat::Jwt, _) => return Err(AuthnError::UnsupportedFormat),
        };
        Ok((caller, presented.source))
    }

    /// `None` when `caller` may make this request on `route`; else the refusal and the reason
    /// for the access log.
    fn authorize<B>(
        &self,
        route: &Route,
        caller: &Authenticated,
        host: &str,
        path: &str,
        request: &Request<B>,
    ) -> Option<(ProxyError, Cow<'static, str>)> {
        if !route.options.allow_any_authenticated_user {
            let headers: Vec<(String, String)> = if route.policy.reads_headers() {
                request
                    .headers()
                    .iter()
                    .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                    .collect()
            } else {
                Vec::new()
            };
            let decision = route.policy.evaluate(
                Some(&caller.token.identity),
                &crate::policy::Request {
                    method: request.method().as_str(),
                    path,
                    host,
                    headers: &headers,
                },
            );
            if let Decision::Deny { reason } = decision {
                if let crate::policy::DenyReason::EvaluationError { rule, error } = &reason {
                    tracing::warn!(route = %route.id, %rule, %error, "a policy expression failed; the request is denied");
                }
                return Some((ProxyError::AccessDenied, Cow::Owned(reason.to_string())));
            }
        }
        if !caller
            .token
            .allows_route(&route.id.namespace, &route.id.name)
        {
            return Some((
                ProxyError::InsufficientScope {
                    realm: host.to_owned(),
                    scope: format!("route:{}/{}", route.id.namespace, route.id.name),
                },
                Cow::Borrowed("insufficient_scope"),
            ));
        }
        None
    }

    /// Sends the request to one of the route's upstreams and streams its answer back.
    #[allow(clippy::too_many_arguments)]
    async fn forward<B>(
        &self,
        table: &Arc<Table>,
        host: &str,
        path: &str,
        matched_prefix: &str,
        route: &Arc<Route>,
        authenticated: Option<(Arc<Authenticated>, CredentialSource)>,
        mut request: Request<B>,
        conn: &ConnInfo,
    ) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Some(target) = upstream::pick(route) else {
            discard_body(request.into_body()).await;
            return refusal(ProxyError::NoUpstream, "route");
        };
        let options = &route.options;
        let websocket = options.allow_websockets
            && target.scheme != UpstreamScheme::H2c
            && request.version() == Version::HTTP_11
            && upstream::wants_websocket(request.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let forward_path = match &options.prefix_rewrite {
            Some(replacement) => rewrite_prefix(path, matched_prefix, replacement)
                .map_or(Cow::Borrowed(path), Cow::Owned),
            None => Cow::Borrowed(path),
        };
        let (mut parts, body) = request.into_parts();
        let uri = match upstream::upstream_uri(target, &forward_path, parts.uri.query()) {
            Ok(uri) => uri,
            Err(error) => {
                tracing::error!(route = %route.id, %error, "building the upstream URI failed");
                return refusal(ProxyError::UpstreamUnreachable, "route");
            }
        };
        let client_host = client_host(&parts, host);
        let now = self.authn.now();
        let assertion = match (&authenticated, &table.keys) {
            (Some((caller, _)), Some(keys)) if options.pass_identity_headers => {
                caller.assertion(keys, self.authn.issuer(), &route.url, now)
            }
            _ => None,
        };
        upstream::prepare_request(
            &mut parts,
            &Forwarding {
                route,
                upstream: target,
                client_host,
                proto: match conn.scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                },
                peer: conn.peer.ip(),
                credential: authenticated.as_ref().map(|(_, source)| *source),
                assertion,
                claims: authenticated
                    .as_ref()
                    .map(|(a, _)| &a.token.identity.claims),
                websocket,
            },
        );
        parts.uri = uri;
        parts.version = match target.scheme {
            UpstreamScheme::H2c => Version::HTTP_2,
            _ => Version::HTTP_11,
        };
        let body: UpstreamBody = if websocket {
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else {
            body.map_err(Into::<BoxError>::into).boxed_unsync()
        };
        let sent = self
            .upstreams
            .send(target.scheme, Request::from_parts(parts, body));
        let mut response = match tokio::time::timeout(options.timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(route = %route.id, upstream = %target.target, error = %error_chain(&error), "the upstream request failed");
                return refusal(ProxyError::UpstreamUnreachable, "route");
            }
            Err(_) => {
                tracing::warn!(route = %route.id, upstream = %target.target, timeout = ?options.timeout, "the upstream did not answer in time");
                return refusal(ProxyError::UpstreamTimeout, "route");
            }
        };
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let route_id = route.id.to_string();
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = hyper_util::rt::TokioIo::new(client);
                        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(error) => {
                        tracing::debug!(route = %route_id, %error, "a WebSocket upgrade did not complete");
                    }
                }
            });
        } else if switching {
            // A 101 we did not ask for: never switch the client's connection to it.
            tracing::warn!(route = %route.id, "the upstream switched protocols without an allowed upgrade");
            return refusal(ProxyError::UpstreamUnreachable, "route");
        }
        upstream::clean_response(response.headers_mut(), switching);
        Outcome::new(response.map(Either::Right), "route")
    }

    /// `https://<host>[:port]<path>[?query]` for a redirect from the plain listener: the port
    /// of the route's own URL for an `https://` route, else [`ProxyConfig::https_port`].
    fn https_location(&self, route: &Route, host: &str, path: &str, query: Option<&str>) -> String {
        let port = match url::Url::parse(&route.url) {
            Ok(url) if url.scheme() == "https" => url.port().unwrap_or(443),
            _ => self.config.https_port,
        };
        let mut location = match port {
            443 => format!("https://{host}{path}"),
            port => format!("https://{host}:{port}{path}"),
        };
        if let Some(query) = query {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// `namespace/name` of a route in log lines, `-` for none.
/// Whether an access-log endpoint name is one of the identity endpoints'.
fn is_identity_endpoint(endpoint: &str) -> bool {
    !matches!(
        endpoint,
        "invalid_host"
            | "connect"
            | "misdirected"
            | "route"
            | "route_endpoint"
            | "redirect"
            | "uri_too_long"
    )
}

/// The body of a sign-in form (sign-out), at most [`crate::identity::people::MAX_FORM_BYTES`].
async fn read_form<B>(
    headers: &http::HeaderMap,
    body: B,
) -> Result<Bytes, crate::identity::error::OAuthError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    read_body(
        headers,
        body,
        crate::identity::people::MAX_FORM_BYTES,
        std::time::Duration::from_secs(10),
    )
    .await
}

/// Whether the client asked for a page (`Accept` names `text/html`).
fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// `scheme://host[:port]` of the request as the client addressed it: the listener's scheme
/// and the validated `Host` (or `:authority`), normalized like [`url::Url`] origins.
fn request_origin<B>(request: &Request<B>, conn: &ConnInfo) -> Option<String> {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })?;
    let scheme = match conn.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let url = url::Url::parse(&format!("{scheme}://{authority}/")).ok()?;
    if !url.username().is_empty() || url.path() != "/" {
        return None;
    }
    Some(crate::identity::people::origin_of(&url))
}

fn full(bytes: Bytes) -> ProxyBody {
    Either::Left(Full::new(bytes))
}

fn refusal(error: ProxyError, endpoint: &'static str) -> Outcome {
    Outcome::new(error.into_response().map(full), endpoint)
}

fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Whether `request` is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
fn is_cors_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether a TLS request names a host its connection's certificate was not chosen for: the
/// client asked for `sni` in the handshake, and `host` would have been served another
/// certificate (RFC 9110 §15.5.20: 421). Plain HTTP and handshakes without SNI never are.
fn misdirected(table: &Table, conn: &ConnInfo, host: &str) -> bool {
    let Some(sni) = conn.sni.as_deref() else {
        return false;
    };
    if sni == host {
        return false;
    }
    let by_sni = table.certs.find(Some(sni));
    let by_host = table.certs.find(Some(host));
    match (by_sni, by_host) {
        (Some(a), Some(b)) => !std::ptr::eq(a, b),
        (None, None) => false,
        _ => true,
    }
}

/// The host as the client wrote it (with its port), for `X-Forwarded-Host`: the
/// request-target's authority, else `Host` (shared, not copied), else the canonical `host`.
fn client_host(parts: &http::request::Parts, host: &str) -> Option<HeaderValue> {
    let raw = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts
            .headers
            .get(header::HOST)
            .filter(|v| v.to_str().is_ok())
            .cloned(),
    };
    raw.or_else(|| HeaderValue::from_str(host).ok())
}

/// An error and its sources on one line, for logs.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The canonical name (no port) of the host a request is for.
///
/// HTTP/2 names it in `:authority` (a `Host` header, if also sent, must name the same host);
/// HTTP/1.1 in `Host`, unless the request target is in absolute form, whose authority wins
/// (RFC 9112 §3.2.2). More than one `Host` header, or none at all, is refused.
pub fn request_host<B>(request: &Request<B>) -> Result<String, ProxyError> {
    let mut values = request.headers().get_all(header::HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(ProxyError::ConflictingHost);
    }
    let header = header
        .map(|v| {
            v.to_str()
                .map_err(|_| ProxyError::InvalidHost(crate::routing::HostError::InvalidCharacter))
        })
        .transpose()?;
    let canonical = |raw: &str| canonical_host_name(raw).map_err(ProxyError::InvalidHost);
    match (request.uri().authority(), header) {
        (Some(authority), Some(header)) if request.version() == Version::HTTP_2 => {
            let name = canonical(authority.as_str())?;
            if canonical(header)? != name {
                return Err(ProxyError::ConflictingHost);
            }
            Ok(name)
        }
        (Some(authority), _) => canonical(authority.as_str()),
        (None, Some(header)) => canonical(header),
        (None, None) => Err(ProxyError::MissingHost),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::get(uri).version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn hosts_are_canonical_names_without_port() {
        let h1 = |hosts: &[&str]| request_host(&request(Version::HTTP_11, "/x", hosts));
        assert_eq!(h1(&["Auth.Example.COM.:8443"]).unwrap(), "auth.example.com");
        assert_eq!(h1(&["localhost:80"]).unwrap(), "localhost");
        assert_eq!(h1(&["[0:0::1]:8080"]).unwrap(), "[::1]");
        assert_eq!(h1(&[]), Err(ProxyError::MissingHost));
        assert_eq!(
            h1(&["a.example", "b.example"]),
            Err(ProxyError::ConflictingHost)
        );
        assert!(matches!(
            h1(&["user@auth.example.com"]),
            Err(ProxyError::InvalidHost(_))
        ));
        assert!(matches!(h1(&["a b"]), Err(ProxyError::InvalidHost(_))));
        // Absolute form: the target's authority wins over Host.
        let absolute = request(
            Version::HTTP_11,
            "http://auth.example.com/oauth2/token",
            &["other.example"],
        );
        assert_eq!(request_host(&absolute).unwrap(), "auth.example.com");
    }

    #[test]
    fn h2_authority_and_host_must_agree() {
        let agree = request(
            Version::HTTP_2,
            "https://auth.example.com/",
            &["AUTH.example.com"],
        );
        assert_eq!(request_host(&agree).unwrap(), "auth.example.com");
        let differ = request(
            Version::HTTP_2,
            "https://auth.example.com/",
            &["evil.example"],
        );
        assert_eq!(request_host(&differ), Err(ProxyError::ConflictingHost));
        let only = request(Version::HTTP_2, "https://auth.example.com:8443/", &[]);
        assert_eq!(request_host(&only).unwrap(), "auth.example.com");
    }

    #[tokio::test]
    async fn other_hosts_get_route_not_found_and_head_has_no_body() {
        let proxy = Proxy::new(LiveTable::new(), None, ProxyConfig::default());
        let conn = ConnInfo {
            listener: "http",
            scheme: Scheme::Http,
            peer: "127.0.0.1:5000".parse().unwrap(),
            sni: None,
        };
        let get = Request::get("/")
            .header(header::HOST, "app.example.com")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.handle(get, &conn).await;
        assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"], "route_not_found");
        let full_len = bytes.len();

        let head = Request::head("/")
            .header(header::HOST, "app.example.com")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.handle(head, &conn).await;
        assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            full_len.to_string().as_str()
        );
        assert!(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );

        let connect = Request::connect("app.example.com:443")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            proxy.handle(connect, &conn).await.status(),
            http::StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
