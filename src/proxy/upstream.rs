//! The way to upstreams: choosing one, the pooled client that reaches it, and the header hygiene
//! of what is forwarded and what comes back.
//!
//! * [`pick`]: a backend by weight, then one of its ready upstreams by weight.
//! * [`Upstreams`]: the pooled keep-alive connections to upstreams, one pool per proxy worker
//!   ([`super::workers`]), so a request's upstream connection lives on the thread it runs on;
//!   off the workers (tests calling `Proxy::handle`) a shared pool serves. HTTP/1.1 to
//!   `http`/`https` upstreams through [`super::pool`] (`hyper::client::conn::http1` senders),
//!   prior-knowledge HTTP/2 to `h2c` ones through hyper-util's client. Both connect with
//!   [`Connector`], which resolves names itself and refuses every resolved address the
//!   [`AddressPolicy`] forbids (link-local, metadata, the API server, our own listeners,
//!   loopback outside dev), so a Service DNS name cannot be pointed at what a URL backend may
//!   not name.
//! * [`prepare_request`]: hop-by-hop headers and the headers `Connection` names are dropped
//!   *before* ours are added, so `Connection:` cannot remove them; client copies of identity
//!   headers (`X-Portcullis-*`, `X-Pomerium-*`, `X-Forwarded-User`, `Remote-User`, ... in dash
//!   and underscore spellings) and of forwarding headers are dropped; our credential and our
//!   cookie never reach the upstream.
//! * [`clean_response`]: hop-by-hop headers of the upstream's answer are dropped.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Uri, request};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::authn::CredentialSource;
use super::pool::{Pool, ResponseBody, SendError};
use crate::routing::route::{Backend, Route};
use crate::routing::upstream::{AddressPolicy, Forbidden, Upstream, UpstreamScheme};

/// The error type of bodies on the way to an upstream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body on its way upstream.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// `X-Portcullis-Jwt-Assertion`: the signed identity for the upstream.
pub const JWT_ASSERTION: HeaderName = HeaderName::from_static("x-portcullis-jwt-assertion");
/// Cookies Portcullis sets on route hosts (sessions); never forwarded.
pub const OUR_COOKIES: [&str; 3] = ["_portcullis", "_portcullis_login", "_pomerium"];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// How long a TCP connect to one upstream address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle pooled connections per upstream.
const POOL_MAX_IDLE_PER_HOST: usize = 512;

/// Picks the upstream for one request: a backend with ready upstreams by weight, then one of its
/// upstreams by weight. `None` when no backend has a ready upstream with weight (the proxy answers
/// 503).
pub fn pick(route: &Route) -> Option<&Upstream> {
    let live = |b: &&Backend| b.weight > 0 && b.upstreams.iter().any(|u| u.weight > 0);
    let backend = weighted(route.backends.iter().filter(live), |b| b.weight)?;
    weighted(backend.upstreams.iter().filter(|u| u.weight > 0), |u| {
        u.weight
    })
}

fn weighted<'a, T>(
    items: impl Iterator<Item = &'a T> + Clone,
    weight: impl Fn(&T) -> u32,
) -> Option<&'a T> {
    let total: u64 = items.clone().map(|i| u64::from(weight(i))).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rand::random_range(0..total);
    for item in items {
        let w = u64::from(weight(item));
        if ticket < w {
            return Some(item);
        }
        ticket -= w;
    }
    None
}

/// Why an upstream could not be reached (logged; the client sees only 502).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The request URI has no host.
    #[error("upstream URI has no host")]
    NoHost,
    /// Name resolution failed.
    #[error("resolving the upstream name failed")]
    Resolve(#[source] std::io::Error),
    /// Every resolved address is one upstreams may not use.
    #[error("every address of the upstream is forbidden: {0}")]
    Forbidden(Forbidden),
    /// Connecting failed (refused, unreachable) for every address.
    #[error("connecting to the upstream failed")]
    Connect(#[source] std::io::Error),
    /// Connecting took longer than the connect timeout.
    #[error("connecting to the upstream timed out")]
    Timeout,
}

/// Resolves and connects to upstreams, checking every address against the [`AddressPolicy`].
#[derive(Clone, Debug)]
pub struct Connector {
    policy: Arc<AddressPolicy>,
}

impl Connector {
    /// A connector refusing what `policy` refuses.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = uri.host().ok_or(ConnectError::NoHost)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host, port))
                    .await
                    .map_err(ConnectError::Resolve)?
                    .collect(),
            };
            let mut last = ConnectError::Resolve(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            ));
            for addr in addrs {
                if let Err(forbidden) = policy.check_addr(addr) {
                    last = ConnectError::Forbidden(forbidden);
                    continue;
                }
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(error)) => last = ConnectError::Connect(error),
                    Err(_) => last = ConnectError::Timeout,
                }
            }
            Err(last)
        })
    }
}

type HttpsConnector = hyper_rustls::HttpsConnector<Connector>;

/// The pooled clients to upstreams: one pool per proxy worker, and one for requests handled
/// off the workers.
pub struct Upstreams {
    /// Opens `http` and `https` connections (TLS with the system's roots, HTTP/1.1).
    https: HttpsConnector,
    per_worker: Box<[Clients]>,
    shared: Clients,
}

/// One worker's pools: HTTP/1.1 connections of `http`/`https` upstreams, and hyper-util's
/// client for prior-knowledge HTTP/2 (`h2c`) upstreams, which multiplexes one connection.
struct Clients {
    http: Pool,
    h2c: Client<Connector, UpstreamBody>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Clients for `workers` proxy workers (and the shared pair) that refuse what `policy`
    /// refuses and verify `https` upstreams against the system's trust roots.
    pub fn new(policy: Arc<AddressPolicy>, workers: usize) -> Self {
        let connector = Connector::new(policy);
        let tls = native_roots_client_config();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector.clone());
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .http2_only(true);
        let clients = || Clients {
            http: Pool::new(POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST),
            h2c: builder.build(connector.clone()),
        };
        Self {
            https,
            per_worker: (0..workers).map(|_| clients()).collect(),
            shared: clients(),
        }
    }

    /// Sends `request` (already prepared, absolute URI) to the upstream with this thread's
    /// pool.
    pub async fn send(
        &self,
        scheme: UpstreamScheme,
        request: http::Request<UpstreamBody>,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        let clients = super::workers::current()
            .and_then(|index| self.per_worker.get(index))
            .unwrap_or(&self.shared);
        match scheme {
            UpstreamScheme::H2c => clients
                .h2c
                .request(request)
                .await
                .map(|response| response.map(ResponseBody::unpooled))
                .map_err(SendError::Http2),
            _ => clients.http.send(&self.https, request).await,
        }
    }
}

/// A TLS client configuration that trusts the system's root certificates (upstreams and the
/// identity provider).
pub fn native_roots_client_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The URI a request is sent to: the upstream's scheme and socket, its base path, the
/// (canonical, rewritten) `path` and the client's query.
pub fn upstream_uri(
    upstream: &Upstream,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, http::Error> {
    let scheme = match upstream.scheme {
        UpstreamScheme::Https => Scheme::HTTPS,
        _ => Scheme::HTTP,
    };
    let mut text = String::with_capacity(
        upstream.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
    );
    text.push_str(&upstream.base_path);
    if upstream.base_path.is_empty() || path != "/" {
        text.push_str(path);
    }
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = upstream.authority().cloned();
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(text))?);
    Ok(Uri::from_parts(parts)?)
}

/// Everything [`prepare_request`] adds besides what the route's options say.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// The route's options and identity-header settings.
    pub route: &'a Route,
    /// The upstream chosen by [`pick`].
    pub upstream: &'a Upstream,
    /// The `Host` the client sent (with its port, if any), already validated; `None` when it
    /// cannot be a header value (then no `X-Forwarded-Host` is sent).
    pub client_host: Option<HeaderValue>,
    /// `http` or `https`: the listener's scheme.
    pub proto: &'static str,
    /// The TCP peer.
    pub peer: IpAddr,
    /// Where our credential came from, to remove it.
    pub credential: Option<CredentialSource>,
    /// The signed identity assertion, when the route passes identity headers.
    pub assertion: Option<HeaderValue>,
    /// Verified claims, for `jwtClaimHeaders`.
    pub claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// Forward a WebSocket upgrade (the route allows it and the request asks for it).
    pub websocket: bool,
}

/// Whether a request asks for a WebSocket upgrade (`Connection: upgrade` + `Upgrade: websocket`).
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Rewrites the headers of a client request into those of the upstream request (see the module
/// documentation for the order and what is dropped).
pub fn prepare_request(parts: &mut request::Parts, fwd: &Forwarding<'_>) {
    let headers = &mut parts.headers;
    let upgrade = fwd
        .websocket
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    let mut drop = connection_tokens(headers);
    for name in headers.keys() {
        let spelled = name.as_str();
        if is_hop_by_hop(spelled)
            || is_identity_header(spelled)
            || matches!(
                fwd.credential,
                Some(
                    CredentialSource::Bearer
                        | CredentialSource::Authorization
                        | CredentialSource::Basic
                )
            ) && name == header::AUTHORIZATION
        {
            drop.push(name.clone());
        }
    }
    let options = &fwd.route.options;
    drop.extend(options.remove_request_headers.iter().cloned());
    drop.extend(
        options
            .jwt_claim_headers
            .iter()
            .map(|(name, _)| name.clone()),
    );
    for name in &drop {
        headers.remove(name);
    }
    strip_our_cookies(headers);

    headers.insert(X_FORWARDED_FOR, ip_header_value(fwd.peer));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(fwd.proto));
    if let Some(host) = fwd.client_host.clone() {
        headers.insert(X_FORWARDED_HOST, host.clone());
        if options.preserve_host_header {
            headers.insert(header::HOST, host);
        }
    }
    if !options.preserve_host_header
        && let Some(host) = fwd.upstream.host_header()
    {
        headers.insert(header::HOST, host.clone());
    }
    if let Some(assertion) = &fwd.assertion
        && options.pass_identity_headers
    {
        headers.insert(JWT_ASSERTION, assertion.clone());
    }
    if let Some(claims) = fwd.claims {
        for (name, path) in &options.jwt_claim_headers {
            if let Some(value) = claim_header_value(claims, path) {
                headers.insert(name.clone(), value);
            }
        }
    }
    for (name, value) in &options.set_request_headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
}

/// An IP address as a header value, formatted without an intermediate `String`.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write as _;
    // The longest IPv6 text (an IPv4-mapped address with a full prefix) is 45 bytes.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = write!(cursor, "{ip}").map(|()| cursor.position());
    written
        .ok()
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| HeaderValue::from_bytes(&buf[..len]).ok())
        .unwrap_or(HeaderValue::from_static(""))
}

/// The value of a claim for an upstream header: a string, number or boolean as text, a list of
/// those joined by `,`. `None` for anything else, or when the text is not a valid header value
/// (CR, LF, NUL and other control characters never reach a header).
pub fn claim_header_value(
    claims: &serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<HeaderValue> {
    let value = crate::policy::lookup_claim(claims, path)?;
    let text = match value {
        serde_json::Value::Array(items) => {
            let parts: Option<Vec<_>> = items.iter().map(crate::policy::scalar_text).collect();
            parts?.join(",")
        }
        other => crate::policy::scalar_text(other)?.into_owned(),
    };
    HeaderValue::from_bytes(text.as_bytes()).ok()
}

/// Drops the hop-by-hop headers of an upstream response (and those its `Connection` names);
/// `101 Switching Protocols` keeps `Connection` and `Upgrade`, which make the switch.
pub fn clean_response(headers: &mut HeaderMap, switching: bool) {
    let mut drop = if switching {
        HeaderNames::new()
    } else {
        connection_tokens(headers)
    };
    for name in headers.keys() {
        let spelled = name.as_str();
        let keep = switching && (name == header::CONNECTION || name == header::UPGRADE);
        if is_hop_by_hop(spelled) && !keep {
            drop.push(name.clone());
        }
    }
    for name in &drop {
        headers.remove(name);
    }
}

/// The header names listed in `Connection` (RFC 9110 §7.6.1), which are hop-by-hop too.
///
/// Only the names of headers that are present are returned (a token naming no header, such as
/// `close` or `keep-alive` without a `Keep-Alive` header, has nothing to remove), so the usual
/// `Connection: keep-alive` costs no allocation.
fn connection_tokens(headers: &HeaderMap) -> HeaderNames {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| headers.contains_key(*t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// Header names to remove; a few fit without an allocation.
type HeaderNames = smallvec::SmallVec<[HeaderName; 4]>;

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "http2-settings"
    )
}

/// Identity and forwarding headers a client must not be able to set, compared with `_` read as
/// `-` (servers such as Apache and many frameworks treat both alike).
fn is_identity_header(name: &str) -> bool {
    const PREFIXES: [&str; 3] = ["x-portcullis-", "x-pomerium-", "x-auth-request-"];
    const NAMES: [&str; 16] = [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-forwarded-access-token",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "remote-user",
        "remote-email",
        "remote-groups",
        "x-remote-user",
    ];
    let same = |a: &str, b: &str| {
        a.len() == b.len()
            && a.bytes()
                .zip(b.bytes())
                .all(|(x, y)| x == y || (x == b'_' && y == b'-'))
    };
    PREFIXES
        .iter()
        .any(|p| name.len() >= p.len() && same(&name[..p.len()], p))
        || NAMES.iter().any(|n| same(name, n))
}

/// Removes our session cookies from `Cookie`, keeping the others in order.
fn strip_our_cookies(headers: &mut HeaderMap) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty() && {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                !OUR_COOKIES.contains(&name)
            }
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::routing::options::RouteOptions;
    use crate::routing::route::{Protocol, RouteId, SourceKind};
    use crate::routing::upstream::Target;

    fn route(options: RouteOptions, backends: Vec<Backend>) -> Route {
        let options = options.into();
        Route {
            id: RouteId {
                kind: SourceKind::Route,
                namespace: "team-a".into(),
                name: "web".into(),
            },
            url: "https://web.example.com".into(),
            protocol: Protocol::Https,
            backends,
            policy: Policy::deny_all(),
            options,
        }
    }

    fn upstream(addr: &str, weight: u32) -> Upstream {
        Upstream::new(
            UpstreamScheme::Http,
            Target::Addr(addr.parse().unwrap()),
            weight,
            String::new(),
        )
    }

    fn parts(headers: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::get("/x");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn forwarding<'a>(route: &'a Route, upstream: &'a Upstream) -> Forwarding<'a> {
        Forwarding {
            route,
            upstream,
            client_host: Some(HeaderValue::from_static("web.example.com")),
            proto: "https",
            peer: "192.0.2.7".parse().unwrap(),
            credential: Some(CredentialSource::Authorization),
            assertion: Some(HeaderValue::from_static("a.b.c")),
            claims: None,
            websocket: false,
        }
    }

    #[test]
    fn forwarded_for_is_the_peer_address_as_text() {
        for ip in [
            "127.0.0.1",
            "203.0.113.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn weights_decide_and_zero_or_empty_backends_get_nothing() {
        let r = route(
            RouteOptions::default(),
            vec![
                Backend {
                    weight: 3,
                    upstreams: vec![upstream("10.0.0.1:80", 1), upstream("10.0.0.2:80", 0)],
                },
                Backend {
                    weight: 1,
                    upstreams: vec![upstream("10.0.0.3:80", 1)],
                },
                Backend {
                    weight: 5,
                    upstreams: vec![],
                },
                Backend {
                    weight: 0,
                    upstreams: vec![upstream("10.0.0.4:80", 1)],
                },
            ],
        );
        let mut counts = std::collections::HashMap::new();
        for _ in 0..4000 {
            *counts
                .entry(pick(&r).unwrap().target.to_string())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 2, "{counts:?}");
        let first = counts["10.0.0.1:80"];
        assert!((2700..3300).contains(&first), "{counts:?}");
        let none = route(RouteOptions::default(), vec![]);
        assert!(pick(&none).is_none());
    }

    #[test]
    fn spoofed_identity_and_hop_by_hop_headers_never_reach_the_upstream() {
        let r = route(RouteOptions::default(), vec![]);
        let u = upstream("10.0.0.1:8080", 1);
        let mut p = parts(&[
            ("authorization", "Bearer ours"),
            ("x-portcullis-jwt-assertion", "forged"),
            ("x_portcullis_jwt_assertion", "forged"),
            ("X-Pomerium-Claim-Email", "forged"),
            ("x-forwarded-user", "root"),
            ("X_Forwarded_Email", "root@example.com"),
            ("remote-user", "root"),
            ("remote_user", "root"),
            ("x-forwarded-for", "1.2.3.4"),
            ("connection", "keep-alive, x-keep-me-not"),
            ("x-keep-me-not", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("cookie", "_portcullis=session; theme=dark; _pomerium=x"),
            ("x-app", "kept"),
        ]);
        prepare_request(&mut p, &forwarding(&r, &u));
        let h = &p.headers;
        assert_eq!(h["x-portcullis-jwt-assertion"], "a.b.c");
        assert_eq!(h.get_all("x-portcullis-jwt-assertion").iter().count(), 1);
        for gone in [
            "authorization",
            "x_portcullis_jwt_assertion",
            "x-pomerium-claim-email",
            "x-forwarded-user",
            "x_forwarded_email",
            "remote-user",
            "remote_user",
            "connection",
            "x-keep-me-not",
            "keep-alive",
            "upgrade",
            "te",
            "proxy-authorization",
        ] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "web.example.com");
        assert_eq!(h["host"], "10.0.0.1:8080");
        assert_eq!(h["cookie"], "theme=dark");
        assert_eq!(h["x-app"], "kept");
    }

    #[test]
    fn connection_cannot_remove_the_headers_we_add() {
        let r = route(RouteOptions::default(), vec![]);
        let u = upstream("10.0.0.1:80", 1);
        let mut p = parts(&[(
            "connection",
            "x-portcullis-jwt-assertion, x-forwarded-for, host",
        )]);
        prepare_request(&mut p, &forwarding(&r, &u));
        assert_eq!(p.headers["x-portcullis-jwt-assertion"], "a.b.c");
        assert_eq!(p.headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(p.headers["host"], "10.0.0.1");
    }

    #[test]
    fn the_upstreams_own_authorization_passes_when_our_token_came_in_our_header() {
        let r = route(RouteOptions::default(), vec![]);
        let u = upstream("10.0.0.1:80", 1);
        let mut p = parts(&[
            ("x-portcullis-authorization", "ours"),
            ("authorization", "Basic dXBzdHJlYW06cGFzcw=="),
        ]);
        let mut fwd = forwarding(&r, &u);
        fwd.credential = Some(CredentialSource::PortcullisHeader);
        prepare_request(&mut p, &fwd);
        assert_eq!(p.headers["authorization"], "Basic dXBzdHJlYW06cGFzcw==");
        assert!(!p.headers.contains_key("x-portcullis-authorization"));
    }

    #[test]
    fn route_header_options_apply_after_the_client_headers() {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).unwrap();
        let options = RouteOptions {
            set_request_headers: vec![(name("x-team"), HeaderValue::from_static("a"))],
            remove_request_headers: vec![name("x-debug")],
            jwt_claim_headers: vec![
                (name("x-email"), "email".into()),
                (name("x-groups"), "groups".into()),
                (name("x-evil"), "evil".into()),
                (name("x-ns"), "kubernetes.io.namespace".into()),
            ],
            preserve_host_header: true,
            ..RouteOptions::default()
        };
        let r = route(options, vec![]);
        let u = upstream("10.0.0.1:80", 1);
        let mut p = parts(&[
            ("x-team", "spoofed"),
            ("x-debug", "1"),
            ("x-email", "spoofed@example.com"),
            ("x-evil", "spoofed"),
        ]);
        let claims = serde_json::json!({
            "email": "bot@example.com",
            "groups": ["a", "b"],
            "evil": "x\r\nx-injected: 1",
            "kubernetes.io": {"namespace": "team-a"},
        });
        let mut fwd = forwarding(&r, &u);
        fwd.claims = claims.as_object();
        fwd.client_host = Some(HeaderValue::from_static("web.example.com:8443"));
        prepare_request(&mut p, &fwd);
        let h = &p.headers;
        assert_eq!(h["x-team"], "a");
        assert!(!h.contains_key("x-debug"));
        assert_eq!(h["x-email"], "bot@example.com");
        assert_eq!(h["x-groups"], "a,b");
        assert_eq!(h["x-ns"], "team-a");
        assert!(
            !h.contains_key("x-evil"),
            "a claim with CR/LF became a header"
        );
        assert!(!h.contains_key("x-injected"));
        assert_eq!(h["host"], "web.example.com:8443");
    }

    #[test]
    fn websocket_upgrades_are_forwarded_only_when_allowed() {
        let r = route(RouteOptions::default(), vec![]);
        let u = upstream("10.0.0.1:80", 1);
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        let mut p = parts(&ws);
        assert!(wants_websocket(&p.headers));
        let mut fwd = forwarding(&r, &u);
        fwd.websocket = true;
        prepare_request(&mut p, &fwd);
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");
        let mut p = parts(&ws);
        prepare_request(&mut p, &forwarding(&r, &u));
        assert!(!p.headers.contains_key("upgrade"));
        assert!(!wants_websocket(
            &parts(&[("upgrade", "websocket")]).headers
        ));
    }

    #[test]
    fn upstream_uris_join_base_path_path_and_query() {
        let mut u = upstream("10.0.0.1:80", 1);
        assert_eq!(
            upstream_uri(&u, "/a/b", Some("x=1")).unwrap(),
            "http://10.0.0.1/a/b?x=1"
        );
        assert_eq!(u.host_header().unwrap(), "10.0.0.1");
        u.base_path = "/base".into();
        assert_eq!(
            upstream_uri(&u, "/a", None).unwrap(),
            "http://10.0.0.1/base/a"
        );
        assert_eq!(upstream_uri(&u, "/", None).unwrap(), "http://10.0.0.1/base");
        let name = Target::Name {
            host: "web.team-a.svc.cluster.local".into(),
            port: 8080,
        };
        let u = Upstream::new(UpstreamScheme::Https, name, 1, "/base".into());
        assert_eq!(
            upstream_uri(&u, "/", None).unwrap(),
            "https://web.team-a.svc.cluster.local:8080/base"
        );
        assert_eq!(
            u.host_header().unwrap(),
            "web.team-a.svc.cluster.local:8080"
        );
        let v6 = Target::Addr("[::1]:443".parse().unwrap());
        let u = Upstream::new(UpstreamScheme::Https, v6, 1, "/base".into());
        assert_eq!(
            upstream_uri(&u, "/x", None).unwrap(),
            "https://[::1]/base/x"
        );
        assert_eq!(u.host_header().unwrap(), "[::1]");
    }

    #[test]
    fn responses_lose_hop_by_hop_headers_except_for_a_switch() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-internal"));
        h.insert("x-internal", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=1"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let mut switching = h.clone();
        clean_response(&mut h, false);
        assert_eq!(h.len(), 1);
        switching.insert("upgrade", HeaderValue::from_static("websocket"));
        clean_response(&mut switching, true);
        assert!(switching.contains_key("upgrade") && switching.contains_key("connection"));
        assert!(!switching.contains_key("keep-alive"));
    }

    #[test]
    fn connection_tokens_match_header_names_in_any_case() {
        let mut h = HeaderMap::new();
        h.append(
            "connection",
            HeaderValue::from_static("Keep-Alive, X-Internal"),
        );
        h.append("connection", HeaderValue::from_static(" X-Other ,close"));
        h.insert("x-internal", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("2"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        clean_response(&mut h, false);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["content-type"]);
    }

    #[tokio::test]
    async fn the_connector_refuses_forbidden_addresses_after_resolution() {
        use tower_service::Service as _;
        let policy = Arc::new(AddressPolicy::default());
        let mut connector = Connector::new(policy);
        for uri in [
            "http://127.0.0.1:9/",
            "http://localhost:9/",
            "http://169.254.169.254/",
        ] {
            let error = connector.call(uri.parse().unwrap()).await.unwrap_err();
            assert!(
                matches!(error, ConnectError::Forbidden(_)),
                "{uri}: {error:?}"
            );
        }
    }
}
