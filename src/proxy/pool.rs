//! Pooled keep-alive HTTP/1.1 connections to `http` and `https` upstreams, one pool per proxy
//! worker, used by [`super::upstream::Upstreams`].
//!
//! A request takes an idle connection of its upstream (the most recently used one, so idle
//! connections beyond what the load needs age out) or opens one through the [`Connector`]
//! (which resolves and checks every address against the `AddressPolicy`), and sends on it with
//! `hyper::client::conn::http1`. The connection goes back to the pool only when its response
//! body has been read to the end ([`ResponseBody`]); a response dropped half-read, a failed
//! body or a `101` leave it out, so hyper closes it or hands it to the upgrade. A connection idle
//! for the idle timeout is not used again and is closed within half a timeout more; at most
//! `max_idle` are kept per upstream. A request that a reused connection could not even start
//! sending (the upstream had just closed it) is sent once more on a new connection, as
//! hyper-util's client does.
//!
//! Each worker's pool is used from its own thread only, so its `Mutex` is never contended; a
//! `Mutex` rather than a thread-local lets the same type serve requests handled off the workers.
//!
//! [`Connector`]: super::upstream::Connector

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use tower_service::Service;

use super::upstream::{BoxError, UpstreamBody};

type Sender = SendRequest<UpstreamBody>;

/// What reaches one upstream: `https` or not, and its `host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    https: bool,
    authority: Authority,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Why a request could not be sent to, or answered by, the upstream (logged; the client sees
/// 502).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request URI has no scheme or host.
    #[error("upstream URI has no host")]
    NoHost,
    /// Resolving, connecting or the TLS handshake failed.
    #[error("connecting to the upstream failed")]
    Connect(#[source] BoxError),
    /// The HTTP/1.1 handshake on a new connection failed.
    #[error("the HTTP/1.1 handshake with the upstream failed")]
    Handshake(#[source] hyper::Error),
    /// Sending the request or reading the response head failed.
    #[error("the upstream request failed")]
    Request(#[source] hyper::Error),
    /// The request to an `h2c` upstream failed (connecting included).
    #[error("the HTTP/2 upstream request failed")]
    Http2(#[source] hyper_util::client::legacy::Error),
}

/// One worker's idle connections, by upstream.
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Idles>,
    idle_timeout: Duration,
    max_idle: usize,
}

#[derive(Default)]
struct Idles {
    by_key: HashMap<Key, Vec<Idle>, foldhash::fast::RandomState>,
    /// Whether a task closing expired connections runs.
    sweeping: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// An empty pool closing connections idle for `idle_timeout`, keeping at most `max_idle`
    /// per upstream.
    pub fn new(idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(Idles::default()),
                idle_timeout,
                max_idle,
            }),
        }
    }

    /// Sends `request` (absolute URI, headers prepared) on a pooled or new connection opened
    /// with `connector`, and returns the response head with a body that gives the connection
    /// back once it has been read to the end.
    pub async fn send<C>(
        &self,
        connector: &C,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendError>
    where
        C: Service<Uri> + Clone + Send + 'static,
        C::Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        C::Error: Into<BoxError>,
        C::Future: Send,
    {
        let uri = request.uri().clone();
        let key = Key {
            https: uri.scheme() == Some(&http::uri::Scheme::HTTPS),
            authority: uri.authority().ok_or(SendError::NoHost)?.clone(),
        };
        if !request.headers().contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(key.authority.as_str())
        {
            request.headers_mut().insert(header::HOST, host);
        }
        *request.uri_mut() = origin_form(&uri);

        let (mut sender, mut reused) = match self.checkout(&key).await {
            Some(sender) => (sender, true),
            None => (connect(connector, uri.clone()).await?, false),
        };
        let response = loop {
            match sender.try_send_request(request).await {
                Ok(response) => break response,
                Err(mut error) => match error.take_message() {
                    // Not written at all: the reused connection was closing. Once more, new.
                    Some(unsent) if reused => {
                        request = unsent;
                        sender = connect(connector, uri.clone()).await?;
                        reused = false;
                    }
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        };
        let keep = (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Checkin {
            pool: Arc::downgrade(&self.inner),
            key,
            sender,
        });
        Ok(response.map(|body| ResponseBody::pooled(body, keep)))
    }

    /// The most recently idle connection to `key` that is still open and ready.
    async fn checkout(&self, key: &Key) -> Option<Sender> {
        loop {
            let idle = {
                let mut idles = self
                    .inner
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let list = idles.by_key.get_mut(key)?;
                let idle = list.pop();
                if list.is_empty() {
                    idles.by_key.remove(key);
                }
                idle?
            };
            if idle.sender.is_closed() || idle.since.elapsed() >= self.inner.idle_timeout {
                continue;
            }
            let mut sender = idle.sender;
            // Ready once the connection has finished the previous exchange; an error means it
            // closed meanwhile.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }
}

impl Inner {
    fn checkin(self: &Arc<Self>, key: Key, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        // Off a runtime (a body dropped elsewhere) no sweeper can start; the next check-in on
        // one starts it.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let start_sweeper = {
            let mut idles = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let list = idles.by_key.entry(key).or_default();
            if list.len() >= self.max_idle {
                return;
            }
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
            runtime.is_some() && !std::mem::replace(&mut idles.sweeping, true)
        };
        if let Some(runtime) = runtime.filter(|_| start_sweeper) {
            runtime.spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Drops expired and closed connections; `false` once the pool is empty (the sweeper
    /// stops and the next check-in starts another).
    fn sweep(&self) -> bool {
        let mut idles = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = self.idle_timeout;
        idles.by_key.retain(|_, list| {
            list.retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() < timeout);
            !list.is_empty()
        });
        idles.sweeping = !idles.by_key.is_empty();
        idles.sweeping
    }
}

/// Closes the pool's expired connections every half idle timeout while it has any.
async fn sweep(pool: Weak<Inner>) {
    loop {
        let Some(period) = pool.upgrade().map(|p| p.idle_timeout / 2) else {
            return;
        };
        tokio::time::sleep(period).await;
        match pool.upgrade() {
            Some(pool) if pool.sweep() => {}
            _ => return,
        }
    }
}

/// Opens a connection with `connector` and starts its HTTP/1.1 task (with upgrades, for
/// WebSockets) on the current runtime.
async fn connect<C>(connector: &C, uri: Uri) -> Result<Sender, SendError>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
{
    let mut connector = connector.clone();
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| SendError::Connect(e.into()))?;
    let io = connector
        .call(uri)
        .await
        .map_err(|e| SendError::Connect(e.into()))?;
    let (sender, connection) = http1::Builder::new()
        .handshake::<_, UpstreamBody>(io)
        .await
        .map_err(SendError::Handshake)?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "an upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// `path?query` of `uri`, the form an HTTP/1.1 request line to an origin server takes.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .filter(|p| !p.as_str().is_empty())
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// A connection to give back to its pool when the response has been read.
struct Checkin {
    pool: Weak<Inner>,
    key: Key,
    sender: Sender,
}

/// The body of an upstream response. Dropped after its last frame (or when it had none), it
/// returns its connection to the pool; dropped earlier or after an error, it lets hyper close
/// the connection.
pub struct ResponseBody {
    inner: Incoming,
    checkin: Option<Checkin>,
    ended: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pooled", &self.checkin.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    fn pooled(inner: Incoming, checkin: Option<Checkin>) -> Self {
        Self {
            inner,
            checkin,
            ended: false,
        }
    }

    /// A body whose connection is not ours to pool (hyper-util's client pools it).
    pub fn unpooled(inner: Incoming) -> Self {
        Self::pooled(inner, None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.checkin = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(Checkin { pool, key, sender }) = self.checkin.take()
            && (self.ended || self.inner.is_end_stream())
            && let Some(pool) = pool.upgrade()
        {
            pool.checkin(key, sender);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::Future;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt as _;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Connects every URI to the test upstream's address.
    #[derive(Clone)]
    struct To(SocketAddr);

    impl Service<Uri> for To {
        type Response = TokioIo<TcpStream>;
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            let addr = self.0;
            Box::pin(async move { Ok(TokioIo::new(TcpStream::connect(addr).await?)) })
        }
    }

    /// An upstream answering `/` with `hello`, `/long` with a body that never ends, and
    /// closing after each answer when `keep_alive` is off; counts its connections.
    async fn upstream(keep_alive: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = socket.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(|request: Request<Incoming>| async move {
                            let body = if request.uri().path() == "/long" {
                                let chunks =
                                    futures::stream::iter([Ok::<_, std::convert::Infallible>(
                                        Frame::data(Bytes::from_static(b"partial")),
                                    )])
                                    .chain(futures::stream::pending());
                                StreamBody::new(chunks).boxed_unsync()
                            } else {
                                Full::new(Bytes::from_static(b"hello"))
                                    .map_err(|never| match never {})
                                    .boxed_unsync()
                            };
                            Ok::<_, std::convert::Infallible>(Response::new(body))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr, path: &str) -> Request<UpstreamBody> {
        Request::get(format!("http://{addr}{path}"))
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    async fn read(pool: &Pool, addr: SocketAddr) -> Bytes {
        let response = pool.send(&To(addr), get(addr, "/")).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    fn idle_count(pool: &Pool) -> usize {
        let idles = pool.inner.idle.lock().unwrap();
        idles.by_key.values().map(Vec::len).sum()
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused() {
        let (addr, accepted) = upstream(true).await;
        let pool = Pool::new(Duration::from_secs(90), 8);
        for _ in 0..3 {
            assert_eq!(read(&pool, addr).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(idle_count(&pool), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_half_read_does_not_return_its_connection() {
        let (addr, accepted) = upstream(true).await;
        let pool = Pool::new(Duration::from_secs(90), 8);
        let mut body = pool
            .send(&To(addr), get(addr, "/long"))
            .await
            .unwrap()
            .into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "partial");
        drop(body);
        assert_eq!(idle_count(&pool), 0);
        assert_eq!(read(&pool, addr).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_expire_and_closed_ones_are_not_used() {
        let (addr, accepted) = upstream(true).await;
        let pool = Pool::new(Duration::from_millis(50), 8);
        assert_eq!(read(&pool, addr).await, "hello");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(read(&pool, addr).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // The upstream closes after every answer: each request gets a new connection.
        let (addr, accepted) = upstream(false).await;
        let pool = Pool::new(Duration::from_secs(90), 8);
        for _ in 0..3 {
            assert_eq!(read(&pool, addr).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn at_most_max_idle_connections_are_kept_per_upstream() {
        let (addr, accepted) = upstream(true).await;
        let pool = Pool::new(Duration::from_secs(90), 2);
        let to = To(addr);
        let sent = futures::future::join_all((0..4).map(|_| pool.send(&to, get(addr, "/")))).await;
        for response in sent {
            let body = response.unwrap().into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert_eq!(idle_count(&pool), 2);
    }

    #[test]
    fn a_connection_returned_off_the_runtime_is_swept_once_one_returns_on_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (addr, accepted) = rt.block_on(upstream(true));
        let pool = Pool::new(Duration::from_secs(90), 8);
        let sweeping = |pool: &Pool| pool.inner.idle.lock().unwrap().sweeping;

        // Read to the end on the runtime, dropped off it: pooled, but no sweeper.
        let mut body = rt
            .block_on(pool.send(&To(addr), get(addr, "/")))
            .unwrap()
            .into_body();
        while rt.block_on(body.frame()).is_some() {}
        drop(body);
        assert_eq!(idle_count(&pool), 1);
        assert!(!sweeping(&pool));

        // The next connection returned on the runtime starts it.
        assert_eq!(rt.block_on(read(&pool, addr)), "hello");
        assert!(sweeping(&pool));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn requests_go_out_in_origin_form() {
        let uri: Uri = "http://up.example:8080/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let bare: Uri = "http://up.example".parse().unwrap();
        assert_eq!(origin_form(&bare), "/");
    }
}
