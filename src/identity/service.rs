//! The identity endpoints on the authenticate host (DESIGN.md §4): the discovery documents, the
//! JWKS and the token endpoint (`client_credentials`).
//!
//! ```text
//! proxy ── Host = authenticate host ──► IdentityService::handle(table, request, peer, scheme)
//!    GET  /.well-known/{oauth-authorization-server,openid-configuration} ── endpoints::metadata
//!    GET  /.well-known/jwks.json ── KeySet::jwks(now)
//!    POST /oauth2/token ── read body (limit, timeout) ── parse_token_request ── authenticate
//!                       ── grant_scopes ── access_token_claims ── KeySet::sign ── token_response
//! ```
//!
//! Called by the proxy's request dispatch with the one table generation the request uses. The
//! request logic lives in the pure functions of [`super::token`], [`super::endpoints`] and
//! [`super::keys`]; this module reads the body, supplies the clock, the peer address and the
//! [`FailureLimiter`], and turns every refusal into a response through
//! [`OAuthError::into_response`], the only place errors become responses.
//!
//! Decisions:
//! - When the issuer is `https`, nothing on the authenticate host is served over plain HTTP:
//!   `GET`/`HEAD` are redirected (`308`) to the same path on the issuer, other methods get
//!   `400 invalid_request` without their body being read, so a secret sent over http is never
//!   processed (and a client learns to fix its URL rather than having it silently work).
//! - The source address for rate limiting is the TCP peer; `X-Forwarded-For` is never read.
//! - Token requests are counted by outcome (`issued` or the OAuth error code) in [`Metrics`];
//!   the client id is never a label value.
//! - Discovery documents and the JWKS are public and may be cached for
//!   [`DISCOVERY_MAX_AGE_SECS`]; token responses and errors are `no-store`.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Body;
use url::Url;

use super::endpoints::{self, Capabilities, IdentityEndpoint};
use super::error::{OAuthError, json_response};
use super::keys::{Algorithm, KeySet};
use super::people::{ExchangeRefusal, People};
use super::token::{
    ACCESS_TOKEN_TYP, ExchangeRequest, FailureLimiter, Grant, GrantType, MAX_TOKEN_REQUEST_BYTES,
    access_token_claims, authenticate, grant_scopes, new_jti, parse_token_request,
    single_form_field, token_response,
};
use crate::metrics::Metrics;
use crate::routing::Scheme;
use crate::routing::route::Table;

/// How long browsers and clients may cache the discovery documents and the JWKS. Short, so a
/// rotated key is fetched soon; verifiers also refetch on an unknown `kid`.
pub const DISCOVERY_MAX_AGE_SECS: u64 = 300;

/// How long a token request body may take to arrive once the headers are in.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The time source of the identity endpoints, in Unix seconds. Injected so tests can move it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| jiff::Timestamp::now().as_second()))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time, Unix seconds.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// What the identity endpoints are built from.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The authenticate URL: `iss` of every token, `issuer` of the discovery documents, and the
    /// host the endpoints are served on.
    pub issuer: Url,
    /// `aud` of access tokens (`accessTokenAudience`).
    pub access_token_audience: String,
    /// The configured signing algorithm, advertised until the signing keys are loaded.
    pub signing_algorithm: Algorithm,
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// The time source.
    pub clock: Clock,
}

/// The identity endpoints of one process: the issuer, the clock, the failure limiter and the
/// metrics shared by every request. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct IdentityService {
    issuer: Url,
    issuer_id: String,
    host: Option<String>,
    audience: String,
    signing_algorithm: Algorithm,
    body_read_timeout: Duration,
    clock: Clock,
    limiter: FailureLimiter,
    metrics: Arc<Metrics>,
    /// People's sign-in, when an identity provider is configured: token exchange.
    people: Option<Arc<People>>,
}

/// The outcome of one request, with what the access log may show about it.
#[derive(Debug)]
pub struct Handled {
    /// The response.
    pub response: Response<Bytes>,
    /// Which endpoint answered: `metadata`, `jwks`, `token` or `unknown`.
    pub endpoint: &'static str,
    /// The client id the request named, when it named one in a well-formed request (never a
    /// secret).
    pub client_id: Option<String>,
}

impl IdentityService {
    /// The service for `config`, with a fresh [`FailureLimiter`]; token requests are counted in
    /// `metrics`.
    pub fn new(config: IdentityConfig, metrics: Arc<Metrics>) -> Self {
        let host = config
            .issuer
            .host_str()
            .and_then(|h| crate::routing::canonical_host_name(h).ok());
        Self {
            issuer_id: endpoints::issuer_identifier(&config.issuer),
            issuer: config.issuer,
            host,
            audience: config.access_token_audience,
            signing_algorithm: config.signing_algorithm,
            body_read_timeout: config.body_read_timeout,
            clock: config.clock,
            limiter: FailureLimiter::default(),
            metrics,
            people: None,
        }
    }

    /// Also exchanges id_tokens of `people`'s identity provider for session tokens: the token
    /// exchange grant of `/oauth2/token` and Pomerium's `POST /api/v1/token`.
    pub fn with_people(mut self, people: Arc<People>) -> Self {
        self.people = Some(people);
        self
    }

    /// The authenticate URL.
    pub fn issuer(&self) -> &Url {
        &self.issuer
    }

    /// The issuer identifier (`iss` of tokens, `issuer` of the metadata).
    pub fn issuer_identifier(&self) -> &str {
        &self.issuer_id
    }

    /// The canonical name of the authenticate host (no port), as requests are matched against
    /// it. `None` only for an issuer URL without a usable host.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Answers one request to the authenticate host, which arrived on a listener of `scheme`
    /// from `peer`, using `table` throughout.
    pub async fn handle<B>(
        &self,
        table: &Table,
        request: Request<B>,
        peer: IpAddr,
        scheme: Scheme,
    ) -> Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let endpoint = endpoints::identity_endpoint(request.uri().path());
        let label = match endpoint {
            Some(IdentityEndpoint::Metadata) => "metadata",
            Some(IdentityEndpoint::Jwks) => "jwks",
            Some(IdentityEndpoint::Token) => "token",
            Some(IdentityEndpoint::ApiV1Token) if self.people.is_some() => "api_v1_token",
            _ => "unknown",
        };
        let handled = |response| Handled {
            response,
            endpoint: label,
            client_id: None,
        };
        let (parts, body) = request.into_parts();
        if scheme == Scheme::Http && self.issuer.scheme() == "https" {
            discard_body(body).await;
            return handled(self.https_only(&parts));
        }
        match endpoint {
            Some(IdentityEndpoint::Token) => {
                let (response, client_id) = match self.token(table, parts, body, peer).await {
                    Ok((response, client_id)) => (response, client_id),
                    Err((error, client_id)) => {
                        self.metrics.token_refused(error.code());
                        (error.into_response(), client_id)
                    }
                };
                Handled {
                    response,
                    endpoint: label,
                    client_id,
                }
            }
            Some(IdentityEndpoint::ApiV1Token) if self.people.is_some() => {
                let response = match self.api_v1_token(table, parts, body).await {
                    Ok(response) => response,
                    Err(error) => {
                        self.metrics.token_refused(error.code());
                        error.into_response()
                    }
                };
                handled(response)
            }
            Some(IdentityEndpoint::Metadata) => {
                discard_body(body).await;
                handled(self.metadata(table, &parts.method))
            }
            Some(IdentityEndpoint::Jwks) => {
                discard_body(body).await;
                handled(self.jwks(table, &parts.method))
            }
            _ => {
                discard_body(body).await;
                handled(OAuthError::NotFound.into_response())
            }
        }
    }

    /// The answer on plain HTTP when the issuer is https: a redirect for reads, a refusal for
    /// anything else (the body is never read).
    fn https_only(&self, request: &http::request::Parts) -> Response<Bytes> {
        if !matches!(request.method, Method::GET | Method::HEAD) {
            return OAuthError::InvalidRequest(
                "the identity endpoints are served over https only; use https",
            )
            .into_response();
        }
        let mut target = self.issuer.clone();
        target.set_path(request.uri.path());
        target.set_query(request.uri.query());
        target.set_fragment(None);
        match HeaderValue::from_str(target.as_str()) {
            Ok(location) => {
                let mut response = Response::new(Bytes::new());
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Err(_) => OAuthError::InvalidRequest(
                "the identity endpoints are served over https only; use https",
            )
            .into_response(),
        }
    }

    fn metadata(&self, table: &Table, method: &Method) -> Response<Bytes> {
        if let Err(error) = read_only(method) {
            return error.into_response();
        }
        let algs = signing_algs(
            table.keys.as_deref(),
            self.signing_algorithm,
            self.clock.now(),
        );
        let grant_types: &[GrantType] = if self.people.is_some() {
            &[GrantType::ClientCredentials, GrantType::TokenExchange]
        } else {
            &[GrantType::ClientCredentials]
        };
        let capabilities = Capabilities {
            grant_types,
            signing_algs: &algs,
            ..Capabilities::default()
        };
        public_json(&endpoints::metadata(&self.issuer, &capabilities))
    }

    fn jwks(&self, table: &Table, method: &Method) -> Response<Bytes> {
        if let Err(error) = read_only(method) {
            return error.into_response();
        }
        match &table.keys {
            Some(keys) => public_json(&keys.jwks(self.clock.now())),
            None => no_keys().into_response(),
        }
    }

    /// `POST /oauth2/token`. Returns the response and the authenticated client id (none for a
    /// token exchange), or the error and the client id the request named.
    async fn token<B>(
        &self,
        table: &Table,
        parts: http::request::Parts,
        body: B,
        peer: IpAddr,
    ) -> Result<(Response<Bytes>, Option<String>), (OAuthError, Option<String>)>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        if parts.method != Method::POST {
            discard_body(body).await;
            return Err((OAuthError::MethodNotAllowed { allow: "POST" }, None));
        }
        let body = read_body(
            &parts.headers,
            body,
            MAX_TOKEN_REQUEST_BYTES,
            self.body_read_timeout,
        )
        .await
        .map_err(|e| (e, None))?;
        let request =
            parse_token_request(&parts.method, &parts.headers, &body, self.people.is_some())
                .map_err(|e| (e, None))?;
        let named = request.client.client_id().map(str::to_owned);
        let fail = |error: OAuthError| (error, named.clone());
        if let Grant::TokenExchange(exchange) = &request.grant {
            let response = self.token_exchange(table, exchange).await.map_err(fail)?;
            return Ok((response, None));
        }
        let grant = GrantType::ClientCredentials;
        let keys = table.keys.as_deref().ok_or_else(|| fail(no_keys()))?;
        let now = self.clock.now();
        let record = authenticate(
            &request.client,
            |id| table.credentials.get(id).map(|record| &**record),
            &self.limiter,
            peer,
            now,
        )
        .map_err(fail)?;
        let scopes = grant_scopes(record, &request.scopes).map_err(fail)?;
        let claims = access_token_claims(
            record,
            &scopes,
            &self.issuer_id,
            &self.audience,
            now,
            &new_jti(),
        );
        let token = keys.sign(ACCESS_TOKEN_TYP, &claims).map_err(|error| {
            tracing::error!(
                client_id = %record.client_id,
                error = %crate::error_chain(&error),
                "signing an access token failed"
            );
            fail(OAuthError::ServerError)
        })?;
        let body = token_response(&token, record.access_token_ttl.as_secs(), &scopes);
        self.metrics.token_issued(grant.as_str());
        Ok((
            json_response(StatusCode::OK, &body),
            Some(record.client_id.clone()),
        ))
    }

    /// The token exchange grant (RFC 8693): an id_token of the identity provider for a session
    /// token, answered with `issued_token_type`. Only the authenticate URL may be named as
    /// `audience` or `resource`: a session token is for this server and every route on it.
    async fn token_exchange(
        &self,
        table: &Table,
        exchange: &ExchangeRequest,
    ) -> Result<Response<Bytes>, OAuthError> {
        let people = self
            .people
            .as_ref()
            .ok_or(OAuthError::UnsupportedGrantType)?;
        if exchange.targets.iter().any(|t| !self.is_own_target(t)) {
            return Err(OAuthError::InvalidTarget(
                "a token exchange issues session tokens for this server only: audience and resource may only name the authenticate URL",
            ));
        }
        let exchanged = people
            .exchange_id_token(table, exchange.subject_token.expose())
            .await
            // RFC 8693 §2.2.2: an unacceptable subject token is `invalid_request`.
            .map_err(|refusal| exchange_error(refusal, OAuthError::InvalidRequest))?;
        let body = serde_json::json!({
            "access_token": exchanged.token,
            "issued_token_type": exchange.issued_token_type,
            "token_type": "Bearer",
            "expires_in": (exchanged.expires - self.clock.now()).max(0),
        });
        self.metrics.token_issued(GrantType::TokenExchange.as_str());
        Ok(json_response(StatusCode::OK, &body))
    }

    /// Whether an `audience` or `resource` names this server: the issuer identifier or the
    /// authenticate URL, with or without its trailing slash.
    fn is_own_target(&self, target: &str) -> bool {
        let trimmed = target.trim_end_matches('/');
        trimmed == self.issuer_id.trim_end_matches('/')
            || trimmed == self.issuer.as_str().trim_end_matches('/')
    }

    /// `POST /api/v1/token` (Pomerium 2019): form field `id_token` → `{"Token", "Expiry"}`,
    /// `Expiry` in RFC 3339. Refusals are RFC 6750-shaped: `invalid_request` (400) for a
    /// malformed request, `invalid_token` (401 with a `Bearer` challenge) for an id_token that
    /// is not accepted.
    async fn api_v1_token<B>(
        &self,
        table: &Table,
        parts: http::request::Parts,
        body: B,
    ) -> Result<Response<Bytes>, OAuthError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Some(people) = &self.people else {
            discard_body(body).await;
            return Err(OAuthError::NotFound);
        };
        if parts.method != Method::POST {
            discard_body(body).await;
            return Err(OAuthError::MethodNotAllowed { allow: "POST" });
        }
        let body = read_body(
            &parts.headers,
            body,
            MAX_TOKEN_REQUEST_BYTES,
            self.body_read_timeout,
        )
        .await?;
        let id_token = single_form_field(&parts.headers, &body, "id_token")?;
        let exchanged = people
            .exchange_id_token(table, &id_token)
            .await
            .map_err(|refusal| exchange_error(refusal, OAuthError::InvalidToken))?;
        let expiry = jiff::Timestamp::from_second(exchanged.expires)
            .map(|t| t.to_string())
            .map_err(|_| OAuthError::ServerError)?;
        self.metrics.token_issued("pomerium_id_token");
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"Token": exchanged.token, "Expiry": expiry}),
        ))
    }
}

/// The answer to a refused exchange: `unacceptable` with the reason when the subject token is
/// to blame, 503 or 500 when the server is.
fn exchange_error(
    refusal: ExchangeRefusal,
    unacceptable: fn(&'static str) -> OAuthError,
) -> OAuthError {
    match refusal {
        ExchangeRefusal::Unavailable(text) => OAuthError::TemporarilyUnavailable(text),
        ExchangeRefusal::ServerError => OAuthError::ServerError,
        other => unacceptable(other.description()),
    }
}

fn no_keys() -> OAuthError {
    OAuthError::TemporarilyUnavailable("the signing keys are not loaded yet; retry shortly")
}

fn read_only(method: &Method) -> Result<(), OAuthError> {
    match *method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(OAuthError::MethodNotAllowed { allow: "GET, HEAD" }),
    }
}

/// The `alg` values to advertise: those of the keys accepted at `now` (current first), or the
/// configured algorithm before any key is loaded.
fn signing_algs(keys: Option<&KeySet>, configured: Algorithm, now: i64) -> Vec<&'static str> {
    let Some(keys) = keys else {
        return vec![configured.as_str()];
    };
    let mut algs = vec![keys.current().alg().as_str()];
    for previous in keys.previous() {
        let alg = previous.key().alg().as_str();
        if now < previous.retire_at() && !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    algs
}

/// A public, briefly cacheable JSON document.
fn public_json(body: &serde_json::Value) -> Response<Bytes> {
    let mut response = json_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.remove(header::PRAGMA);
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={DISCOVERY_MAX_AGE_SECS}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Reads a request body of at most `limit` bytes within `timeout`: a declared `Content-Length`
/// (or size hint) above the limit is refused before reading, and a body that grows past it
/// while streaming is refused at that point (`413`). A body that does not arrive in time is
/// `408`; one that breaks off is `400`.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, OAuthError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let too_large = OAuthError::PayloadTooLarge { limit };
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let declared = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .filter_map(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .max();
    if declared.is_some_and(|len| len > limit_u64) || body.size_hint().lower() > limit_u64 {
        discard_body(body).await;
        return Err(too_large);
    }
    let mut body = std::pin::pin!(body);
    let collect = async {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|_| OAuthError::InvalidRequest("the request body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                if buf.len().saturating_add(data.len()) > limit {
                    return Err(too_large.clone());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    let read = tokio::time::timeout(timeout, collect)
        .await
        .unwrap_or(Err(OAuthError::RequestTimeout));
    if matches!(read, Err(OAuthError::PayloadTooLarge { .. })) {
        drain(body.as_mut()).await;
    }
    read
}

/// Most bytes of a request body read and thrown away before an early answer (a refusal that
/// does not need the body). HTTP/2 clients such as curl and Node report a stream reset as a
/// failure instead of showing the answer, so bodies up to this size are consumed first; a
/// larger body gets the answer and a reset (RFC 9113 §8.1).
pub const DISCARD_LIMIT: usize = 64 * 1024;

/// How long an early answer waits for a body it throws away.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads and drops up to [`DISCARD_LIMIT`] bytes of `body` (for at most a second), so an answer
/// sent without the body reaches HTTP/2 clients intact. Returns at once for empty bodies.
pub async fn discard_body<B>(body: B)
where
    B: Body<Data = Bytes>,
{
    let body = std::pin::pin!(body);
    drain(body).await;
}

async fn drain<B>(mut body: std::pin::Pin<&mut B>)
where
    B: Body<Data = Bytes>,
{
    if body.is_end_stream() {
        return;
    }
    let read = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len());
                if seen > DISCARD_LIMIT {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, read).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicI64, Ordering};

    use base64::Engine as _;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;
    use jsonwebtoken::Validation;
    use serde_json::Value;

    use super::*;
    use crate::identity::token::{CredentialRecord, Credentials, PreviousSecret, digest};

    const NOW: i64 = 1_767_225_600;
    const SECRET: &str = "pcs_current-secret-0123456789abcdefghijklmnopqrstu";
    const OLD_SECRET: &str = "pcs_previous-secret-0123456789abcdefghijklmnopqrs";
    const CLIENT: &str = "team-a.billing-bot";
    const ISSUER: &str = "https://auth.example.com";

    struct Fixture {
        service: IdentityService,
        table: Table,
        now: Arc<AtomicI64>,
        metrics: Arc<Metrics>,
    }

    fn record() -> CredentialRecord {
        let mut claims = serde_json::Map::new();
        claims.insert("team".into(), "payments".into());
        CredentialRecord {
            namespace: "team-a".into(),
            name: "billing-bot".into(),
            client_id: CLIENT.into(),
            current: digest(SECRET),
            pending: None,
            previous: Some(PreviousSecret {
                digest: digest(OLD_SECRET),
                expires: NOW + 60,
            }),
            scopes: vec!["route:billing-api".into(), "route:team-b/ledger".into()],
            access_token_ttl: Duration::from_secs(600),
            claims,
        }
    }

    fn fixture_with(issuer: &str, keys: bool) -> Fixture {
        let now = Arc::new(AtomicI64::new(NOW));
        let clock = {
            let now = Arc::clone(&now);
            Clock::from_fn(move || now.load(Ordering::SeqCst))
        };
        let metrics = Arc::new(Metrics::new());
        let service = IdentityService::new(
            IdentityConfig {
                issuer: Url::parse(issuer).unwrap(),
                access_token_audience: "portcullis".into(),
                signing_algorithm: Algorithm::EdDsa,
                // Short, so the stalled-body test is quick; no other test stalls.
                body_read_timeout: Duration::from_millis(200),
                clock,
            },
            Arc::clone(&metrics),
        );
        let mut credentials = Credentials::default();
        credentials.insert(record());
        let table = Table {
            credentials,
            keys: keys.then(|| Arc::new(KeySet::generate(Algorithm::Es256, NOW - 10).unwrap())),
            ..Table::default()
        };
        Fixture {
            service,
            table,
            now,
            metrics,
        }
    }

    fn fixture() -> Fixture {
        fixture_with(ISSUER, true)
    }

    fn peer() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    }

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    }

    fn token_request(auth: Option<&str>, body: &str) -> Request<Full<Bytes>> {
        let mut builder = Request::post(endpoints::TOKEN)
            .header(header::HOST, "auth.example.com")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    fn get(path: &str) -> Request<Full<Bytes>> {
        Request::get(path).body(Full::new(Bytes::new())).unwrap()
    }

    impl Fixture {
        async fn send<B>(&self, request: Request<B>) -> Handled
        where
            B: Body<Data = Bytes>,
            B::Error: Into<Box<dyn StdError + Send + Sync>>,
        {
            self.service
                .handle(&self.table, request, peer(), Scheme::Https)
                .await
        }

        fn verify(&self, token: &str) -> Value {
            let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
            validation.set_issuer(&[ISSUER]);
            validation.set_audience(&["portcullis"]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            self.table
                .keys
                .as_ref()
                .unwrap()
                .verify(
                    token,
                    ACCESS_TOKEN_TYP,
                    self.now.load(Ordering::SeqCst),
                    &validation,
                )
                .unwrap()
        }
    }

    fn json(handled: &Handled) -> Value {
        serde_json::from_slice(handled.response.body()).unwrap()
    }

    fn header_of<'a>(handled: &'a Handled, name: &str) -> Option<&'a str> {
        handled
            .response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
    }

    /// Every error is RFC 6749 JSON, no-store, with exactly `error` and `error_description`.
    fn assert_error(handled: &Handled, status: u16, code: &str) {
        assert_eq!(
            handled.response.status().as_u16(),
            status,
            "{:?}",
            json(handled)
        );
        let body = json(handled);
        let map = body.as_object().unwrap();
        assert_eq!(map["error"], code, "{body}");
        assert!(
            map["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert_eq!(map.len(), 2);
        assert_eq!(header_of(handled, "cache-control"), Some("no-store"));
        assert_eq!(header_of(handled, "pragma"), Some("no-cache"));
    }

    #[tokio::test]
    async fn client_credentials_by_basic_issues_a_verifiable_token() {
        let f = fixture();
        let handled = f
            .send(token_request(
                Some(&basic(CLIENT, SECRET)),
                "grant_type=client_credentials",
            ))
            .await;
        assert_eq!(handled.response.status(), StatusCode::OK);
        assert_eq!(handled.endpoint, "token");
        assert_eq!(handled.client_id.as_deref(), Some(CLIENT));
        assert_eq!(header_of(&handled, "cache-control"), Some("no-store"));
        assert_eq!(header_of(&handled, "pragma"), Some("no-cache"));
        let body = json(&handled);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 600);
        assert_eq!(
            body["scope"],
            "route:team-a/billing-api route:team-b/ledger"
        );
        let claims = f.verify(body["access_token"].as_str().unwrap());
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], "portcullis");
        assert_eq!(claims["sub"], "serviceaccount:team-a/billing-bot");
        assert_eq!(claims["client_id"], CLIENT);
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 600);
        assert_eq!(claims["team"], "payments");
        assert_eq!(
            claims["scope"],
            "route:team-a/billing-api route:team-b/ledger"
        );
    }

    #[tokio::test]
    async fn post_and_authentik_forms_and_narrowed_scope() {
        let f = fixture();
        let post = f
            .send(token_request(
                None,
                &format!(
                    "grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}&scope=route%3Abilling-api"
                ),
            ))
            .await;
        assert_eq!(post.response.status(), StatusCode::OK);
        let body = json(&post);
        assert_eq!(body["scope"], "route:team-a/billing-api");
        assert_eq!(
            f.verify(body["access_token"].as_str().unwrap())["scope"],
            "route:team-a/billing-api"
        );

        let authentik = f
            .send(token_request(
                None,
                &format!(
                    "grant_type=client_credentials&client_id={CLIENT}&username={CLIENT}&password={SECRET}"
                ),
            ))
            .await;
        assert_eq!(authentik.response.status(), StatusCode::OK);
        let claims = f.verify(json(&authentik)["access_token"].as_str().unwrap());
        assert_eq!(claims["client_id"], CLIENT);
        // Two tokens never share a jti.
        let first = f.verify(body["access_token"].as_str().unwrap());
        assert_ne!(first["jti"], claims["jti"]);
    }

    #[tokio::test]
    async fn wrong_and_unknown_clients_get_one_answer() {
        let f = fixture();
        let wrong = f
            .send(token_request(
                Some(&basic(CLIENT, "pcs_wrong")),
                "grant_type=client_credentials",
            ))
            .await;
        let unknown = f
            .send(token_request(
                Some(&basic("nobody", SECRET)),
                "grant_type=client_credentials",
            ))
            .await;
        for handled in [&wrong, &unknown] {
            assert_error(handled, 401, "invalid_client");
            assert_eq!(
                header_of(handled, "www-authenticate"),
                Some(r#"Basic realm="portcullis""#)
            );
        }
        assert_eq!(wrong.response.body(), unknown.response.body());
        assert_eq!(wrong.client_id.as_deref(), Some(CLIENT));
        assert_eq!(unknown.client_id.as_deref(), Some("nobody"));
    }

    #[tokio::test]
    async fn token_requests_are_counted_by_outcome_never_by_client() {
        let f = fixture();
        let ok = token_request(
            Some(&basic(CLIENT, SECRET)),
            "grant_type=client_credentials",
        );
        assert_eq!(f.send(ok).await.response.status(), StatusCode::OK);
        let wrong = token_request(
            Some(&basic(CLIENT, "pcs_wrong")),
            "grant_type=client_credentials",
        );
        assert_error(&f.send(wrong).await, 401, "invalid_client");
        let text = f.metrics.encode();
        for line in [
            r#"portcullis_tokens_issued_total{grant="client_credentials"} 1"#,
            r#"portcullis_token_requests_total{outcome="issued"} 1"#,
            r#"portcullis_token_requests_total{outcome="invalid_client"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        for secret in [CLIENT, SECRET, "pcs_wrong"] {
            assert!(!text.contains(secret), "{secret} is no label value");
        }
    }

    #[tokio::test]
    async fn the_previous_secret_works_until_it_expires() {
        let f = fixture();
        let request = || {
            token_request(
                Some(&basic(CLIENT, OLD_SECRET)),
                "grant_type=client_credentials",
            )
        };
        assert_eq!(f.send(request()).await.response.status(), StatusCode::OK);
        f.now.store(NOW + 60, Ordering::SeqCst);
        assert_error(&f.send(request()).await, 401, "invalid_client");
        // The current secret still works at that time.
        let current = f
            .send(token_request(
                Some(&basic(CLIENT, SECRET)),
                "grant_type=client_credentials",
            ))
            .await;
        assert_eq!(current.response.status(), StatusCode::OK);
        assert_eq!(
            f.verify(json(&current)["access_token"].as_str().unwrap())["iat"],
            NOW + 60
        );
    }

    #[tokio::test]
    async fn malformed_requests_get_the_oauth_errors() {
        let f = fixture();
        let cases: Vec<(Option<String>, String, u16, &str)> = vec![
            // Basic without a colon, with bad base64, with an empty secret.
            (
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(CLIENT)
                )),
                "grant_type=client_credentials".into(),
                401,
                "invalid_client",
            ),
            (
                Some("Basic !!!not-base64!!!".into()),
                "grant_type=client_credentials".into(),
                401,
                "invalid_client",
            ),
            (
                Some(basic(CLIENT, "")),
                "grant_type=client_credentials".into(),
                401,
                "invalid_client",
            ),
            // Two authentication methods.
            (
                Some(basic(CLIENT, SECRET)),
                format!("grant_type=client_credentials&client_secret={SECRET}&client_id={CLIENT}"),
                400,
                "invalid_request",
            ),
            // A repeated parameter.
            (
                Some(basic(CLIENT, SECRET)),
                "grant_type=client_credentials&grant_type=client_credentials".into(),
                400,
                "invalid_request",
            ),
            // Authentik form whose username names another client.
            (
                None,
                format!(
                    "grant_type=client_credentials&client_id={CLIENT}&username=other&password={SECRET}"
                ),
                401,
                "invalid_client",
            ),
            // A scope outside the credential's.
            (
                Some(basic(CLIENT, SECRET)),
                "grant_type=client_credentials&scope=route%3Aother".into(),
                400,
                "invalid_scope",
            ),
            // Grant types not served.
            (
                Some(basic(CLIENT, SECRET)),
                "grant_type=password".into(),
                400,
                "unsupported_grant_type",
            ),
            (
                Some(basic(CLIENT, SECRET)),
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange".into(),
                400,
                "unsupported_grant_type",
            ),
            (
                Some(basic(CLIENT, SECRET)),
                String::new(),
                400,
                "invalid_request",
            ),
            // An assertion is not accepted until federation is served.
            (
                None,
                format!(
                    "grant_type=client_credentials&client_id={CLIENT}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c"
                ),
                401,
                "invalid_client",
            ),
        ];
        for (auth, body, status, code) in cases {
            let handled = f.send(token_request(auth.as_deref(), &body)).await;
            assert_error(&handled, status, code);
        }
    }

    #[tokio::test]
    async fn wrong_media_type_and_method() {
        let f = fixture();
        let request = Request::post(endpoints::TOKEN)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, basic(CLIENT, SECRET))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        assert_error(&f.send(request).await, 415, "invalid_request");
        let handled = f.send(get(endpoints::TOKEN)).await;
        assert_error(&handled, 405, "invalid_request");
        assert_eq!(header_of(&handled, "allow"), Some("POST"));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_streamed() {
        let f = fixture();
        let big = format!(
            "grant_type=client_credentials&pad={}",
            "a".repeat(MAX_TOKEN_REQUEST_BYTES)
        );
        assert_error(
            &f.send(token_request(Some(&basic(CLIENT, SECRET)), &big))
                .await,
            413,
            "invalid_request",
        );

        // No length announced: the limit is enforced while reading.
        let chunks =
            (0..20).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'a'; 1024]))));
        let request = Request::post(endpoints::TOKEN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic(CLIENT, SECRET))
            .body(StreamBody::new(futures::stream::iter(chunks)))
            .unwrap();
        assert_error(&f.send(request).await, 413, "invalid_request");

        // A Content-Length above the limit is refused before any byte is read.
        let request = Request::post(endpoints::TOKEN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CONTENT_LENGTH, "1000000")
            .body(StreamBody::new(futures::stream::pending::<
                Result<Frame<Bytes>, std::io::Error>,
            >()))
            .unwrap();
        assert_error(&f.send(request).await, 413, "invalid_request");
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_times_out() {
        let f = fixture();
        let request = Request::post(endpoints::TOKEN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(StreamBody::new(futures::stream::pending::<
                Result<Frame<Bytes>, std::io::Error>,
            >()))
            .unwrap();
        let handled = f.send(request).await;
        assert_error(&handled, 408, "invalid_request");
        assert_eq!(header_of(&handled, "connection"), Some("close"));
    }

    #[tokio::test]
    async fn without_keys_tokens_and_jwks_are_unavailable() {
        let f = fixture_with(ISSUER, false);
        let handled = f
            .send(token_request(
                Some(&basic(CLIENT, SECRET)),
                "grant_type=client_credentials",
            ))
            .await;
        assert_error(&handled, 503, "temporarily_unavailable");
        assert_eq!(header_of(&handled, "retry-after"), Some("5"));
        assert_error(
            &f.send(get(endpoints::JWKS)).await,
            503,
            "temporarily_unavailable",
        );
        // The metadata still answers, advertising the configured algorithm.
        let metadata = f.send(get(endpoints::OPENID_CONFIGURATION)).await;
        assert_eq!(metadata.response.status(), StatusCode::OK);
        assert_eq!(
            json(&metadata)["id_token_signing_alg_values_supported"],
            serde_json::json!(["EdDSA"])
        );
    }

    #[tokio::test]
    async fn metadata_and_jwks() {
        let f = fixture();
        for path in [
            endpoints::OAUTH_AUTHORIZATION_SERVER,
            endpoints::OPENID_CONFIGURATION,
        ] {
            let handled = f.send(get(path)).await;
            assert_eq!(handled.response.status(), StatusCode::OK);
            assert_eq!(handled.endpoint, "metadata");
            assert_eq!(
                header_of(&handled, "cache-control"),
                Some("public, max-age=300")
            );
            let doc = json(&handled);
            assert_eq!(doc["issuer"], ISSUER);
            assert_eq!(
                doc["token_endpoint"],
                "https://auth.example.com/oauth2/token"
            );
            assert_eq!(
                doc["jwks_uri"],
                "https://auth.example.com/.well-known/jwks.json"
            );
            assert_eq!(
                doc["id_token_signing_alg_values_supported"],
                serde_json::json!(["ES256"])
            );
        }
        let jwks = f.send(get(endpoints::JWKS)).await;
        assert_eq!(jwks.response.status(), StatusCode::OK);
        let doc = json(&jwks);
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0]["kid"],
            f.table.keys.as_ref().unwrap().current().kid()
        );
        assert!(keys[0].get("d").is_none());

        let post = Request::post(endpoints::JWKS)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let handled = f.send(post).await;
        assert_error(&handled, 405, "invalid_request");
        assert_eq!(header_of(&handled, "allow"), Some("GET, HEAD"));
    }

    #[tokio::test]
    async fn unknown_and_unserved_identity_paths_are_404() {
        let f = fixture();
        for path in [
            "/",
            "/oauth2/token/",
            "/oauth2/revoke",
            "/api/v1/token",
            "/.portcullis/jwt",
        ] {
            let handled = f.send(get(path)).await;
            assert_error(&handled, 404, "invalid_request");
            assert_eq!(handled.endpoint, "unknown");
        }
    }

    #[tokio::test]
    async fn plain_http_never_serves_an_https_issuer() {
        let f = fixture();
        let redirect = f
            .service
            .handle(
                &f.table,
                get("/.well-known/openid-configuration?x=1"),
                peer(),
                Scheme::Http,
            )
            .await;
        assert_eq!(redirect.response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            header_of(&redirect, "location"),
            Some("https://auth.example.com/.well-known/openid-configuration?x=1")
        );
        // A token request over http is refused without reading (or judging) its secret.
        let refused = f
            .service
            .handle(
                &f.table,
                token_request(
                    Some(&basic(CLIENT, SECRET)),
                    "grant_type=client_credentials",
                ),
                peer(),
                Scheme::Http,
            )
            .await;
        assert_error(&refused, 400, "invalid_request");
        assert!(
            json(&refused)["error_description"]
                .as_str()
                .unwrap()
                .contains("https")
        );
        assert_eq!(refused.client_id, None);

        // An http issuer (dev) is served on both listeners.
        let dev = fixture_with("http://localhost:8080", true);
        let handled = dev
            .service
            .handle(
                &dev.table,
                token_request(
                    Some(&basic(CLIENT, SECRET)),
                    "grant_type=client_credentials",
                ),
                peer(),
                Scheme::Http,
            )
            .await;
        assert_eq!(handled.response.status(), StatusCode::OK);
        assert_eq!(dev.service.issuer_identifier(), "http://localhost:8080");
        assert_eq!(dev.service.host(), Some("localhost"));
    }

    #[tokio::test]
    async fn repeated_failures_are_throttled_per_source() {
        let f = fixture();
        let wrong = || {
            token_request(
                Some(&basic(CLIENT, "pcs_guess")),
                "grant_type=client_credentials",
            )
        };
        for _ in 0..10 {
            assert_error(&f.send(wrong()).await, 401, "invalid_client");
        }
        let throttled = f.send(wrong()).await;
        assert_error(&throttled, 429, "temporarily_unavailable");
        assert!(header_of(&throttled, "retry-after").is_some());
        // Another source with the right secret is unaffected.
        let elsewhere = f
            .service
            .handle(
                &f.table,
                token_request(
                    Some(&basic(CLIENT, SECRET)),
                    "grant_type=client_credentials",
                ),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                Scheme::Https,
            )
            .await;
        assert_eq!(elsewhere.response.status(), StatusCode::OK);
    }

    #[test]
    fn advertised_algorithms_follow_the_keys() {
        let keys = KeySet::generate(Algorithm::Es256, NOW).unwrap();
        assert_eq!(signing_algs(Some(&keys), Algorithm::Rs256, NOW), ["ES256"]);
        assert_eq!(signing_algs(None, Algorithm::Rs256, NOW), ["RS256"]);
    }
}
