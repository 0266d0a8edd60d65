//! The plain-HTTP and HTTPS listeners: accept, TLS, hyper, limits, idle connections and drain.
//!
//! Started by `app` for `listen.http` and `listen.https` ([`bind`], then [`serve`] until the
//! shutdown signal). The accept loop runs where `serve` is awaited (the main runtime); each
//! accepted connection is handed, round-robin, to one of the proxy's [`Workers`] and runs there
//! in its own task to the end (TLS, hyper, every request, the upstream connections it uses); each
//! request goes to [`super::Proxy::handle`]. One listening socket per listener, bound before
//! anything serves, so a taken port still fails start-up.
//!
//! Protocols: the plain listener speaks HTTP/1.1 only (no cleartext h2, so no `h2c` upgrade or
//! prior-knowledge surprises); the TLS listener speaks h2 when ALPN chose `h2` and HTTP/1.1
//! otherwise. Because the protocol is known before the first byte, the connections are hyper's
//! own HTTP/1.1 and h2 servers rather than hyper-util's auto-detecting one, whose builder does
//! not expose hyper's `max_header_size`; hyper-util's `GracefulConnection` drives both. Bounds
//! ([`ListenerLimits`]):
//!
//! * HTTP/1.1: the request head (request line and headers) must arrive within
//!   `header_read_timeout` and be at most `max_header_bytes` (else `431`), with at most
//!   `max_headers` header fields (else `431`); hyper's rejection of invalid headers and
//!   ambiguous framing stays on, and [`super::framing`] refuses what hyper would accept but a
//!   proxy must not (bare LF, `Content-Length` with `Transfer-Encoding`, repeated lengths).
//! * h2: `max_concurrent_streams`, `max_header_list_size` = `max_header_bytes`, and bounds on
//!   reset streams (rapid reset, CVE-2023-44487) and locally refused streams; CONTINUATION floods
//!   are bounded by the header list size.
//! * TLS handshakes must finish within `tls_handshake_timeout`.
//! * A connection with no request in progress for `idle_timeout` is closed gracefully. hyper
//!   also runs its head timer while an HTTP/1.1 connection waits for its next request, so an
//!   idle HTTP/1.1 connection is closed after the shorter of the two timeouts.
//! * On shutdown the listener stops accepting, asks every connection to finish its requests
//!   and close (`Connection: close` / `GOAWAY`), and aborts what is left after `drain_timeout`.
//!   The workers stop once both listeners have drained (see [`super::workers`]).
//! * A panic while serving a connection ends that connection's task only (logged here).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::framing::StrictHttp1;
use super::workers::Workers;
use super::{ConnInfo, Proxy};
use crate::routing::Scheme;

/// Limits and timeouts of a listener (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// HTTP/1.1: time to receive a complete request head.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1 read buffer) and h2 header list, in bytes (at least 8192).
    pub max_header_bytes: usize,
    /// HTTP/1.1: most header fields in a request.
    pub max_headers: usize,
    /// h2: most concurrent streams per connection.
    pub max_concurrent_streams: u32,
    /// h2: most streams a client may reset before the server saw them (rapid reset).
    pub max_pending_accept_reset_streams: usize,
    /// h2: most streams the server may reset for protocol errors before closing the connection.
    pub max_local_error_reset_streams: usize,
    /// Time to finish a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// A connection without a request in progress for this long is closed (HTTP/1.1: or after
    /// `header_read_timeout`, if shorter).
    pub idle_timeout: Duration,
    /// On shutdown, how long connections may take to finish their requests.
    pub drain_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_concurrent_streams: 100,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// hyper needs at least this much read buffer.
const MIN_HEADER_BYTES: usize = 8192;

/// What a listener serves on its connections.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP/1.1 (`http`).
    Plain,
    /// TLS with ALPN (`https`).
    Tls(TlsAcceptor),
}

impl Transport {
    fn scheme(&self) -> Scheme {
        match self {
            Transport::Plain => Scheme::Http,
            Transport::Tls(_) => Scheme::Https,
        }
    }
}

/// Binds a listener socket (before anything is served, so a taken port fails start-up).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The hyper builders of one listener: one per protocol, configured once.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ListenerLimits) -> Self {
        let head = limits.max_header_bytes.max(MIN_HEADER_BYTES);
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(head)
            // The read buffer holds a head and the start of a body; twice the head is room for
            // both.
            .max_buf_size(head.saturating_mul(2))
            .max_headers(limits.max_headers)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(limits.max_local_error_reset_streams);
        Self { http1, http2 }
    }
}

/// Serves `listener` with `transport` on `workers` until `shutdown` turns true (or its sender is
/// dropped), then drains (see the module documentation). `name` labels log lines (`http`,
/// `https`). `proxy` should have been built for as many workers as `workers` runs
/// ([`super::ProxyConfig::workers`]), so each worker has its own upstream pool.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    transport: Transport,
    proxy: Arc<Proxy>,
    workers: Workers,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let builders = Arc::new(Builders::new(&limits));
    let conn_shutdown = shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // Off this runtime's reactor: the worker registers the socket with its own.
                Ok((stream, peer)) => match stream.into_std() {
                    Ok(stream) => {
                        let conn = ConnInfo { listener: name, scheme: transport.scheme(), peer, sni: None };
                        conns.spawn_on(
                            connection(
                                stream,
                                conn,
                                transport.clone(),
                                Arc::clone(&proxy),
                                Arc::clone(&builders),
                                limits,
                                conn_shutdown.clone(),
                            ),
                            workers.next(),
                        );
                    }
                    Err(error) => {
                        tracing::debug!(listener = name, %peer, %error, "handing a connection to a worker failed");
                    }
                },
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(joined) = conns.join_next(), if !conns.is_empty() => {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(listener = name, "serving a connection panicked; the connection was closed");
                }
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let open = conns.len();
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            listener = name,
            open,
            left = conns.len(),
            "closing connections that did not finish in time"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Resolves once shutdown is asked for, or the sender is gone (the process is stopping).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn connection(
    stream: std::net::TcpStream,
    conn: ConnInfo,
    transport: Transport,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    limits: ListenerLimits,
    shutdown: watch::Receiver<bool>,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(peer = %conn.peer, %error, "registering a connection with its worker failed");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = conn;
    match transport {
        Transport::Plain => {
            let service = service(proxy, conn.clone());
            let activity = Arc::clone(&service.activity);
            let connection = builders
                .http1
                .serve_connection(TokioIo::new(StrictHttp1::new(stream)), service)
                .with_upgrades();
            drive(connection, &activity, &conn, limits, shutdown).await;
        }
        Transport::Tls(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %conn.peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %conn.peer, "TLS handshake timed out");
                    return;
                }
            };
            let session = tls.get_ref().1;
            let h2 = session.alpn_protocol() == Some(super::tls::ALPN_H2);
            conn.sni = session
                .server_name()
                .and_then(|name| crate::routing::canonical_host_name(name).ok())
                .map(Arc::from);
            let service = service(proxy, conn.clone());
            let activity = Arc::clone(&service.activity);
            if h2 {
                let connection = builders.http2.serve_connection(TokioIo::new(tls), service);
                drive(connection, &activity, &conn, limits, shutdown).await;
            } else {
                let connection = builders
                    .http1
                    .serve_connection(TokioIo::new(StrictHttp1::new(tls)), service)
                    .with_upgrades();
                drive(connection, &activity, &conn, limits, shutdown).await;
            }
        }
    }
}

/// Requests in progress on one connection and when the last one ended.
struct Activity {
    active: AtomicUsize,
    last: Mutex<Instant>,
}

/// Marks a request in progress until dropped.
struct Busy<'a>(&'a Activity);

impl Activity {
    fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn begin(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    fn last(&self) -> Instant {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When to look again: `idle` after the last request ended, or `idle` from now while one is
    /// in progress.
    fn next_check(&self, idle: Duration) -> Instant {
        if self.active.load(Ordering::SeqCst) > 0 {
            Instant::now() + idle
        } else {
            self.last() + idle
        }
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.active.load(Ordering::SeqCst) == 0 && self.last().elapsed() >= idle
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self
            .0
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The per-connection service: hands each request to the proxy and tracks activity.
#[derive(Clone)]
struct ConnService {
    proxy: Arc<Proxy>,
    conn: ConnInfo,
    activity: Arc<Activity>,
}

fn service(proxy: Arc<Proxy>, conn: ConnInfo) -> ConnService {
    ConnService {
        proxy,
        conn,
        activity: Arc::new(Activity::new()),
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = hyper::Response<super::ProxyBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let _busy = this.activity.begin();
            Ok(this.proxy.handle(request, &this.conn).await)
        })
    }
}

/// A served connection that can be asked to finish its requests and close. hyper-util's
/// `GracefulConnection` is sealed and does not cover HTTP/1.1 connections with upgrades.
trait Graceful: std::future::Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, E> Graceful for http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Runs a connection to its end, asking it to finish gracefully on shutdown or once idle.
async fn drive<C: Graceful>(
    connection: C,
    activity: &Activity,
    conn: &ConnInfo,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let check_at = activity.next_check(limits.idle_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(peer = %conn.peer, listener = conn.listener, %error, "connection ended with an error");
                }
                break;
            }
            () = stopped(&mut shutdown), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = tokio::time::sleep_until(check_at), if !draining => {
                if activity.is_idle(limits.idle_timeout) {
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}
