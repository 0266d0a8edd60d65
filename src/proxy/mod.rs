//! The data plane's front door: the plain-HTTP and HTTPS listeners and the dispatch of each
//! request.
//!
//! ```text
//! TCP ─► listener.rs (accept, TLS via tls.rs, hyper HTTP/1.1 + h2, limits, idle, drain)
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

pub mod listener;
pub mod respond;
pub mod tls;

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Version, header};
use hyper::body::Body;

use crate::identity::service::IdentityService;
use crate::routing::live::LiveTable;
use crate::routing::route::Table;
use crate::routing::{Scheme, canonical_host_name};
use respond::ProxyError;

/// Where a connection came from and which listener took it.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The listener's name in logs: `http` or `https`.
    pub listener: &'static str,
    /// The scheme the listener serves.
    pub scheme: Scheme,
    /// The TCP peer (never a forwarded-for header).
    pub peer: SocketAddr,
}

/// What every listener of a process shares: the live table and the identity endpoints.
pub struct Proxy {
    live: LiveTable,
    identity: Option<Arc<IdentityService>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("generation", &self.live.generation())
            .field("identity", &self.identity)
            .finish()
    }
}

/// What the access log records about one request besides status and latency.
struct Outcome {
    response: Response<Bytes>,
    endpoint: &'static str,
    client_id: Option<String>,
}

impl Proxy {
    /// A proxy over `live`; `identity` serves the authenticate host (none: every host is a
    /// route host).
    pub fn new(live: LiveTable, identity: Option<Arc<IdentityService>>) -> Self {
        Self { live, identity }
    }

    /// The live table.
    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    /// Answers one request: loads the table once, dispatches on the host, writes the access
    /// log line, and drops the body of answers to `HEAD` (keeping their `Content-Length`).
    pub async fn handle<B>(&self, request: Request<B>, conn: &ConnInfo) -> Response<Bytes>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let started = std::time::Instant::now();
        let table = self.live.load();
        let method = request.method().clone();
        let version = request.version();
        let path = request.uri().path().to_owned();
        let host = request_host(&request);
        let outcome = match &host {
            Err(error) => refusal(error.clone(), "invalid_host"),
            Ok(_) if method == Method::CONNECT => refusal(ProxyError::ConnectNotAllowed, "connect"),
            Ok(host) => match &self.identity {
                Some(identity) if identity.host() == Some(host.as_str()) => {
                    let handled = identity
                        .handle(&table, request, conn.peer.ip(), conn.scheme)
                        .await;
                    Outcome {
                        response: handled.response,
                        endpoint: handled.endpoint,
                        client_id: handled.client_id,
                    }
                }
                _ => serve_route(&table, host, request).await,
            },
        };
        let mut response = outcome.response;
        tracing::info!(
            target: "portcullis::access",
            listener = conn.listener,
            peer = %conn.peer.ip(),
            version = ?version,
            method = %method,
            host = host.as_deref().unwrap_or("-"),
            path = %path,
            endpoint = outcome.endpoint,
            client_id = outcome.client_id.as_deref().unwrap_or("-"),
            status = response.status().as_u16(),
            latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            generation = table.generation,
            "request"
        );
        if method == Method::HEAD {
            let len = response.body().len();
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            *response.body_mut() = Bytes::new();
        }
        response
    }
}

fn refusal(error: ProxyError, endpoint: &'static str) -> Outcome {
    Outcome {
        response: error.into_response(),
        endpoint,
        client_id: None,
    }
}

/// Serves a request for a route host. The reverse proxy (route match, authentication,
/// authorization, upstream) replaces this; until then every route host answers
/// `404 route_not_found`.
async fn serve_route<B>(_table: &Table, _host: &str, _request: Request<B>) -> Outcome {
    refusal(ProxyError::RouteNotFound, "route")
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
        let proxy = Proxy::new(LiveTable::new(), None);
        let conn = ConnInfo {
            listener: "http",
            scheme: Scheme::Http,
            peer: "127.0.0.1:5000".parse().unwrap(),
        };
        let get = Request::get("/")
            .header(header::HOST, "app.example.com")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.handle(get, &conn).await;
        assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"], "route_not_found");
        let full_len = response.body().len();

        let head = Request::head("/")
            .header(header::HOST, "app.example.com")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.handle(head, &conn).await;
        assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
        assert!(response.body().is_empty());
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            full_len.to_string().as_str()
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
