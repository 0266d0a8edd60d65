//! The client side of the programmatic login API, for `portcullis login`: ask a route for a
//! signed sign-in URL whose redirect is a one-shot callback server on `127.0.0.1`, let a person
//! sign in with a browser, take the session token from the callback, and keep it in a per-route
//! cache (mode 0600) until a minute before it expires. `main` calls [`login`]; the server side is
//! `identity::programmatic`.
//!
//! ```text
//! login ── GET <route origin>/.portcullis/api/v1/login?redirect_uri=http://127.0.0.1:<port>/callback/<state>
//!   ◄─ 200 text/plain  <sign-in URL>         (printed to stderr, opened in a browser)
//! browser ── sign-in ──► 302 http://127.0.0.1:<port>/callback/<state>?portcullis_jwt=<T>&pomerium_jwt=<T>
//! callback server ── "You are signed in" page, then stops ──► T on stdout and in the cache
//! ```
//!
//! The token is never logged and never part of an error; [`SessionToken`] prints `[redacted]`.

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use url::Url;

use crate::client::ClientError;
use crate::identity::endpoints::{ROUTE_LOGIN, ROUTE_PREFIX};

/// A cached token is used only while it has at least this long left, in seconds.
pub const EXPIRY_MARGIN_SECS: i64 = 60;
/// How long the sign-in may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Largest login API answer read.
const MAX_SIGN_IN_URL_BYTES: usize = 16 * 1024;
/// Largest token accepted from the callback or the cache.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest cache file read.
const MAX_CACHE_FILE_BYTES: u64 = 64 * 1024;
/// How long the login API may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of `portcullis login`. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The route URL is unusable.
    #[error(
        "route URL {0:?} must be an absolute http or https URL with a host and no user info, such as https://api.example.com"
    )]
    RouteUrl(String),
    /// The callback server could not listen.
    #[error("starting the callback server on 127.0.0.1")]
    Callback(#[source] std::io::Error),
    /// The TLS settings could not be built (a bad `--ca-file`).
    #[error(transparent)]
    Tls(#[from] ClientError),
    /// The login API could not be reached.
    #[error("asking {url} for a sign-in URL")]
    Http {
        /// The login API, without its query.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The login API answered with another status than 200.
    #[error("the login API {url} answered {status}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The login API, without its query.
        url: String,
        /// The status.
        status: StatusCode,
        /// The `error_description` or `error` of a JSON answer, or where a redirect points.
        detail: Option<String>,
    },
    /// The login API answered 200 with something else than text.
    #[error(
        "the login API {url} answered {content_type:?} instead of text/plain (is this a Portcullis route?)"
    )]
    NotText {
        /// The login API, without its query.
        url: String,
        /// The `Content-Type` it sent.
        content_type: String,
    },
    /// The login API's text is not an absolute http(s) URL.
    #[error("the login API {url} did not answer with an absolute http or https sign-in URL")]
    BadSignInUrl {
        /// The login API, without its query.
        url: String,
    },
    /// Nobody completed the sign-in in time.
    #[error("no sign-in arrived within {}", crate::config::format_go_duration(*.0))]
    Timeout(Duration),
    /// The session cache could not be written.
    #[error("writing the session cache {path}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A route, reduced to its origin (`https://api.example.com`, default port left out): the login
/// API and the cache key only depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUrl {
    origin: Url,
}

impl RouteUrl {
    /// Parses a route URL: http or https, a host, no user info. Path, query and fragment are
    /// ignored.
    pub fn parse(text: &str) -> Result<Self, LoginError> {
        let refuse = || LoginError::RouteUrl(text.to_owned());
        let url = Url::parse(text.trim()).map_err(|_| refuse())?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none_or(str::is_empty)
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(refuse());
        }
        let origin = Url::parse(&url.origin().ascii_serialization()).map_err(|_| refuse())?;
        Ok(Self { origin })
    }

    /// The origin as text, without a trailing slash: `https://api.example.com`.
    pub fn origin(&self) -> String {
        self.origin.origin().ascii_serialization()
    }

    /// The login API of this route, asking for a redirect to `redirect_uri`.
    pub fn login_api(&self, redirect_uri: &Url) -> Url {
        let mut url = self.origin.clone();
        url.set_path(&format!("{ROUTE_PREFIX}{ROUTE_LOGIN}"));
        url.query_pairs_mut()
            .append_pair("redirect_uri", redirect_uri.as_str());
        url
    }
}

/// A session token as received: a compact JWT whose `exp` was read without verifying it (the
/// route verifies it; the client only needs to know when to sign in again). Prints
/// `[redacted]`.
#[derive(Clone)]
pub struct SessionToken {
    value: String,
    exp: i64,
}

impl SessionToken {
    /// Reads a compact JWT (three base64url parts) with a numeric `exp`; anything else is not a
    /// session token.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let parts: Vec<&str> = value.split('.').collect();
        let base64url = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if parts.len() != 3 || !parts.iter().all(base64url) {
            return None;
        }
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
        let exp = claims.get("exp")?;
        let exp = exp
            .as_i64()
            .or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
        Some(Self {
            value: value.to_owned(),
            exp,
        })
    }

    /// The token itself, for stdout and the cache; never for logs.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `exp`, in unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.exp
    }

    /// Whether the token still has more than [`EXPIRY_MARGIN_SECS`] left at `now`.
    pub fn fresh_at(&self, now: i64) -> bool {
        self.exp > now.saturating_add(EXPIRY_MARGIN_SECS)
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a cache file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    origin: String,
    token: String,
}

/// Session tokens per route origin: one file per origin, named by the SHA-256 of the origin,
/// mode 0600 in a 0700 directory, replaced atomically.
#[derive(Debug, Clone)]
pub struct SessionCache {
    dir: PathBuf,
}

impl SessionCache {
    /// A cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `portcullis/sessions` in the user's configuration directory: `$XDG_CONFIG_HOME` when it
    /// is an absolute path (the XDG rule: relative values are ignored), else `$HOME/.config`.
    /// `None` when neither is usable.
    pub fn default_dir(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
        let base = match xdg_config_home.map(Path::new).filter(|p| p.is_absolute()) {
            Some(dir) => dir.to_path_buf(),
            None => Path::new(home?).join(".config"),
        };
        if !base.is_absolute() {
            return None;
        }
        Some(base.join("portcullis").join("sessions"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `origin`.
    pub fn path(&self, origin: &str) -> PathBuf {
        let digest = Sha256::digest(origin.as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(name)
    }

    /// The cached token of `origin` if it is still fresh at `now`. A missing, unreadable,
    /// corrupt or foreign file, or an expiring token, is `None`: sign in again.
    pub fn load(&self, origin: &str, now: i64) -> Option<SessionToken> {
        let file = std::fs::File::open(self.path(origin)).ok()?;
        let mut text = Vec::new();
        file.take(MAX_CACHE_FILE_BYTES)
            .read_to_end(&mut text)
            .ok()?;
        let entry: CacheEntry = serde_json::from_slice(&text).ok()?;
        if entry.origin != origin {
            return None;
        }
        SessionToken::parse(&entry.token).filter(|t| t.fresh_at(now))
    }

    /// Stores `token` for `origin`: a new 0600 file in the 0700 directory (created, or narrowed
    /// to 0700), renamed over the old one so a reader never sees half a file.
    pub fn store(&self, origin: &str, token: &SessionToken) -> Result<PathBuf, LoginError> {
        let at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LoginError::Cache { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(at(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(at(&self.dir))?;
        let path = self.path(origin);
        let suffix: u64 = rand::random();
        let tmp = self.dir.join(format!(".tmp-{suffix:016x}"));
        let entry = CacheEntry {
            origin: origin.to_owned(),
            token: token.expose().to_owned(),
        };
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            at(&path)(e)
        })?;
        Ok(path)
    }
}

/// The one-shot callback server: listens on `127.0.0.1:<random port>` and accepts exactly one
/// `GET /callback/<state>?portcullis_jwt=<token>`, where `state` is 256 random bits.
pub struct CallbackServer {
    listener: TcpListener,
    path: String,
    redirect_uri: Url,
}

/// What every connection of the callback server shares.
struct CallbackShared {
    path: String,
    taken: AtomicBool,
}

impl CallbackServer {
    /// Binds the listener.
    pub async fn bind() -> Result<Self, LoginError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(LoginError::Callback)?;
        let port = listener.local_addr().map_err(LoginError::Callback)?.port();
        let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let path = format!("/callback/{state}");
        let redirect_uri = Url::parse(&format!("http://127.0.0.1:{port}{path}"))
            .map_err(|e| LoginError::Callback(std::io::Error::other(e)))?;
        Ok(Self {
            listener,
            path,
            redirect_uri,
        })
    }

    /// Where the sign-in should send the browser.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// Serves until one callback carried a token (returned once its page was sent), or
    /// `timeout` passed. Anything else is answered 404 (another path) or 400 (the callback
    /// path without exactly one well-formed token, another method, or a second callback).
    pub async fn wait(self, timeout: Duration) -> Result<SessionToken, LoginError> {
        let shared = Arc::new(CallbackShared {
            path: self.path,
            taken: AtomicBool::new(false),
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<SessionToken>(1);
        let mut conns = JoinSet::new();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (shared, tx) = (shared.clone(), tx.clone());
                    conns.spawn(async move {
                        // The token leaves this task only after its page was written, so the
                        // browser sees it before the process exits.
                        let received = Arc::new(OnceLock::new());
                        let slot = received.clone();
                        let service = hyper::service::service_fn(move |request| {
                            let response = callback_answer(&shared, &slot, &request);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Some(token) = received.get() {
                            let _ = tx.send(token.clone()).await;
                        }
                    });
                }
                Some(token) = rx.recv() => {
                    conns.abort_all();
                    return Ok(token);
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                () = &mut deadline => {
                    conns.abort_all();
                    return Err(LoginError::Timeout(timeout));
                }
            }
        }
    }
}

fn callback_answer(
    shared: &CallbackShared,
    slot: &OnceLock<SessionToken>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let on_path: bool = request
        .uri()
        .path()
        .as_bytes()
        .ct_eq(shared.path.as_bytes())
        .into();
    if !on_path {
        return callback_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This is the sign-in callback of <code>portcullis login</code>.",
        );
    }
    let refused = |why: &str| callback_page(StatusCode::BAD_REQUEST, "Sign-in not completed", why);
    if request.method() != Method::GET {
        return refused("The sign-in callback takes GET requests only.");
    }
    let query = request.uri().query().unwrap_or_default();
    let mut tokens = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "portcullis_jwt")
        .map(|(_, v)| v);
    let token = match (tokens.next(), tokens.next()) {
        (Some(t), None) => SessionToken::parse(&t),
        _ => None,
    };
    let Some(token) = token else {
        return refused("The sign-in did not send a session token. Run the command again.");
    };
    if shared.taken.swap(true, Ordering::SeqCst) {
        return refused("This sign-in was already completed.");
    }
    let _ = slot.set(token);
    callback_page(
        StatusCode::OK,
        "You are signed in",
        "You are signed in; you can close this window and return to the terminal.",
    )
}

/// A page of the callback server: the common page headers, and no referrer at all, since the
/// URL that led here carried the token.
fn callback_page(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let mut response = crate::web::page(status, title, &format!("<p>{body}</p>"));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response.map(Full::new)
}

/// Asks the route's login API for a sign-in URL that ends at `redirect_uri`. Verifies TLS with
/// the system's roots (or `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus `extra_ca`; follows no redirect.
pub async fn fetch_sign_in_url(
    route: &RouteUrl,
    redirect_uri: &Url,
    extra_ca: Option<&Path>,
) -> Result<Url, LoginError> {
    let api = route.login_api(redirect_uri);
    let mut shown = api.clone();
    shown.set_query(None);
    let shown = shown.to_string();
    let http_err = |source: Box<dyn std::error::Error + Send + Sync>| LoginError::Http {
        url: shown.clone(),
        source,
    };
    let client = crate::client::https_client::<Empty<Bytes>>(extra_ca)?;
    let request = Request::get(api.as_str())
        .header(header::ACCEPT, "text/plain")
        .body(Empty::new())
        .map_err(|e| http_err(Box::new(e)))?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|e| http_err(Box::new(e)))?
        .map_err(|e| http_err(Box::new(e)))?;
    let (parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(
        REQUEST_TIMEOUT,
        Limited::new(body, MAX_SIGN_IN_URL_BYTES).collect(),
    )
    .await
    .map_err(|e| http_err(Box::new(e)))?
    .map_err(http_err)?
    .to_bytes();
    if parts.status != StatusCode::OK {
        return Err(LoginError::Refused {
            url: shown,
            status: parts.status,
            detail: refusal_detail(&parts.headers, &bytes),
        });
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("text/plain") {
        return Err(LoginError::NotText {
            url: shown,
            content_type,
        });
    }
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| Url::parse(text.trim()).ok())
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.username().is_empty()
                && u.password().is_none()
        })
        .ok_or(LoginError::BadSignInUrl { url: shown })
}

/// A short reason for a refusal: where a redirect points, or the RFC 6749-style `error`
/// (`error_description` preferred) of a JSON body; control characters dropped, at most 200
/// characters.
fn refusal_detail(headers: &http::HeaderMap, body: &[u8]) -> Option<String> {
    let detail = if let Some(location) = headers.get(header::LOCATION) {
        format!(
            "redirected to {}",
            String::from_utf8_lossy(location.as_bytes())
        )
    } else {
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        let field = |k: &str| json.get(k).and_then(serde_json::Value::as_str);
        field("error_description").or(field("error"))?.to_owned()
    };
    let clean: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// The commands that may open `url` in a browser, in order: each entry of `$BROWSER` (split on
/// `:`, each split into words; `%s` is replaced by the URL, else the URL is added last), else
/// `open` on macOS and `xdg-open` elsewhere.
pub fn browser_commands(url: &Url, browser_env: Option<&str>) -> Vec<(String, Vec<String>)> {
    let from_env: Vec<(String, Vec<String>)> = browser_env
        .unwrap_or_default()
        .split(':')
        .filter_map(|entry| {
            let mut words = entry.split_whitespace().map(str::to_owned);
            let program = words.next()?;
            let mut args: Vec<String> = words.collect();
            if args.iter().any(|a| a.contains("%s")) {
                for a in &mut args {
                    *a = a.replace("%s", url.as_str());
                }
            } else {
                args.push(url.to_string());
            }
            Some((program, args))
        })
        .collect();
    if !from_env.is_empty() {
        return from_env;
    }
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    vec![(program.to_owned(), vec![url.to_string()])]
}

/// Starts a browser on `url` with the first of [`browser_commands`] that can be started. Its
/// output goes nowhere (stdout is for the token); it is not waited for.
pub fn open_browser(url: &Url, browser_env: Option<&str>) -> Result<(), String> {
    let mut last = String::from("no browser command");
    for (program, args) in browser_commands(url, browser_env) {
        let started = std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match started {
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            Err(e) => last = format!("{program}: {e}"),
        }
    }
    Err(last)
}

/// Signs in once, without the cache: binds the callback server, fetches the sign-in URL, hands
/// it to `show` (print it, open a browser), and waits up to `timeout` for the token.
pub async fn sign_in(
    route: &RouteUrl,
    extra_ca: Option<&Path>,
    timeout: Duration,
    show: impl FnOnce(&Url),
) -> Result<SessionToken, LoginError> {
    let callback = CallbackServer::bind().await?;
    let url = fetch_sign_in_url(route, callback.redirect_uri(), extra_ca).await?;
    show(&url);
    callback.wait(timeout).await
}

/// How `portcullis login` runs.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// Where session tokens are cached; `None`: no cache.
    pub cache: Option<SessionCache>,
    /// Whether a cached token may be used (`--no-cache` turns this off; the new token is still
    /// cached).
    pub read_cache: bool,
    /// An extra CA certificate (PEM) to trust for the route.
    pub extra_ca: Option<PathBuf>,
    /// How long to wait for the sign-in.
    pub timeout: Duration,
}

/// A session token for `route`: the cached one while it is fresh at `now`, else a new sign-in
/// (see [`sign_in`]) whose token is then cached. A cache that cannot be written is a warning on
/// stderr, not a failure: the person already signed in.
pub async fn login(
    route: &RouteUrl,
    options: &LoginOptions,
    now: i64,
    show: impl FnOnce(&Url),
) -> Result<SessionToken, LoginError> {
    let origin = route.origin();
    if options.read_cache
        && let Some(token) = options.cache.as_ref().and_then(|c| c.load(&origin, now))
    {
        return Ok(token);
    }
    let token = sign_in(route, options.extra_ca.as_deref(), options.timeout, show).await?;
    if let Some(cache) = &options.cache
        && let Err(e) = cache.store(&origin, &token)
    {
        eprintln!(
            "portcullis: warning: the session is not cached: {}",
            crate::error_chain(&e)
        );
    }
    Ok(token)
}

/// Tells the person where to sign in (stderr), and opens a browser there unless `no_browser`.
/// A browser that cannot be started is only mentioned.
pub fn announce(url: &Url, no_browser: bool, browser_env: Option<&str>) {
    // The URL is printed as the parser serialized it: no control characters reach the terminal.
    eprintln!("Open this URL to sign in: {url}");
    if !no_browser && let Err(e) = open_browser(url, browser_env) {
        eprintln!("(could not open a browser: {e})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    fn jwt(claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"portcullis-session+jwt"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.c2lnbmF0dXJl")
    }

    fn token(exp: i64) -> SessionToken {
        SessionToken::parse(&jwt(serde_json::json!({"sub": "alice", "exp": exp}))).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// What a browser saw at the end: status, headers, body.
    type Page = (StatusCode, http::HeaderMap, String);

    type Answer = dyn Fn(&Request<Incoming>, u16) -> Response<Full<Bytes>> + Send + Sync;

    /// A stand-in for a route host: answers with `answer` and counts requests.
    struct FakeRoute {
        url: String,
        requests: Arc<AtomicUsize>,
        redirect_uris: Arc<Mutex<Vec<String>>>,
    }

    async fn fake_route(answer: Arc<Answer>) -> FakeRoute {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let redirect_uris = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (requests.clone(), redirect_uris.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (answer, count, seen) = (answer.clone(), count.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        if let Some((_, v)) = url::form_urlencoded::parse(
                            request.uri().query().unwrap_or_default().as_bytes(),
                        )
                        .find(|(k, _)| k == "redirect_uri")
                        {
                            seen.lock().unwrap().push(v.into_owned());
                        }
                        let response = answer(&request, port);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeRoute {
            url: format!("http://127.0.0.1:{port}/some/page"),
            requests,
            redirect_uris,
        }
    }

    /// The login API and a sign-in page that sends the browser straight back with `token`.
    fn signs_in_as(token: String) -> Arc<Answer> {
        Arc::new(move |request, port| {
            let query = request.uri().query().unwrap_or_default();
            let redirect = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "redirect_uri")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            match request.uri().path() {
                "/.portcullis/api/v1/login" => {
                    let mut sign_in =
                        Url::parse(&format!("http://127.0.0.1:{port}/sign_in")).unwrap();
                    sign_in
                        .query_pairs_mut()
                        .append_pair("redirect_uri", &redirect);
                    plain(
                        StatusCode::OK,
                        "text/plain; charset=utf-8",
                        sign_in.as_str(),
                    )
                }
                "/sign_in" => {
                    let mut back = Url::parse(&redirect).unwrap();
                    back.query_pairs_mut()
                        .append_pair("portcullis_jwt", &token)
                        .append_pair("pomerium_jwt", &token);
                    Response::builder()
                        .status(StatusCode::FOUND)
                        .header(header::LOCATION, back.as_str())
                        .body(Full::default())
                        .unwrap()
                }
                _ => plain(StatusCode::NOT_FOUND, "text/plain", "not found"),
            }
        })
    }

    fn plain(status: StatusCode, content_type: &str, body: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    /// One request as a browser would send it: status, headers, body.
    async fn fetch(method: Method, url: &str) -> Page {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
        let request = Request::builder()
            .method(method)
            .uri(url)
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// A browser that opens `url` and follows redirects.
    async fn browse(url: Url) -> Page {
        let mut url = url.to_string();
        for _ in 0..5 {
            let (status, headers, body) = fetch(Method::GET, &url).await;
            match headers.get(header::LOCATION) {
                Some(next) if status.is_redirection() => url = next.to_str().unwrap().to_owned(),
                _ => return (status, headers, body),
            }
        }
        panic!("too many redirects");
    }

    /// `show` for tests: a browser that signs in as soon as the URL is shown.
    fn browser() -> (impl FnOnce(&Url), tokio::sync::oneshot::Receiver<Page>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let show = move |url: &Url| {
            let url = url.clone();
            tokio::spawn(async move {
                let _ = tx.send(browse(url).await);
            });
        };
        (show, rx)
    }

    #[test]
    fn route_urls_need_http_a_host_and_no_user_info() {
        for (text, origin) in [
            ("https://api.example.com", "https://api.example.com"),
            (
                "https://API.example.com:443/x/y?z=1#f",
                "https://api.example.com",
            ),
            ("http://echo.localhost:8080/", "http://echo.localhost:8080"),
            (" http://127.0.0.1:9 ", "http://127.0.0.1:9"),
            ("https://[::1]:8443", "https://[::1]:8443"),
        ] {
            assert_eq!(RouteUrl::parse(text).unwrap().origin(), origin, "{text}");
        }
        for bad in [
            "api.example.com",
            "//api.example.com",
            "ftp://api.example.com",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user@api.example.com",
            "https://user:pw@api.example.com",
            "https://:pw@api.example.com",
            "http://",
            "",
        ] {
            let e = RouteUrl::parse(bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("must be an absolute http or https URL"),
                "{bad}: {e}"
            );
        }
        let route = RouteUrl::parse("https://api.example.com/ignored?q=1").unwrap();
        let api = route.login_api(&Url::parse("http://127.0.0.1:5000/callback/s?x=1&y").unwrap());
        assert_eq!(
            api.as_str(),
            "https://api.example.com/.portcullis/api/v1/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback%2Fs%3Fx%3D1%26y"
        );
    }

    #[test]
    fn session_tokens_are_jwts_with_an_exp_and_print_redacted() {
        let t = token(2_000_000_000);
        assert_eq!(t.expires_at(), 2_000_000_000);
        assert_eq!(format!("{t:?}"), "[redacted]");
        let float = SessionToken::parse(&jwt(serde_json::json!({"exp": 1.5e9}))).unwrap();
        assert_eq!(float.expires_at(), 1_500_000_000);
        let good = jwt(serde_json::json!({"exp": 5}));
        for bad in [
            jwt(serde_json::json!({"sub": "alice"})),
            jwt(serde_json::json!({"exp": "5"})),
            jwt(serde_json::json!([1])),
            good.replace('.', ".."),
            format!("{good}.x"),
            format!("{good}\r\nX-Injected: 1"),
            good.replacen('.', "=.", 1),
            "a.b".into(),
            "".into(),
            "not a token".into(),
            format!("a.{}.c", "A".repeat(MAX_TOKEN_BYTES)),
        ] {
            assert!(SessionToken::parse(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn cached_tokens_are_used_until_a_minute_before_exp() {
        let now = 1_700_000_000;
        assert!(token(now + 61).fresh_at(now));
        assert!(!token(now + 60).fresh_at(now));
        assert!(!token(now - 1).fresh_at(now));
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::new(dir.path().join("sessions"));
        let origin = "https://api.example.com";
        assert!(cache.load(origin, now).is_none());
        cache.store(origin, &token(now + 61)).unwrap();
        assert_eq!(
            cache.load(origin, now).unwrap().expose(),
            token(now + 61).expose()
        );
        assert!(cache.load(origin, now + 1).is_none(), "inside the margin");
        assert!(cache.load("https://other.example.com", now).is_none());
    }

    #[test]
    fn cache_files_are_0600_in_a_0700_directory_named_by_the_origin_digest() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = dir.path().join("config/portcullis/sessions");
        let cache = SessionCache::new(&sessions);
        let origin = "https://api.example.com";
        let path = cache.store(origin, &token(2_000_000_000)).unwrap();
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            // sha256("https://api.example.com")
            format!("{:x}", Sha256::digest(origin.as_bytes()))
        );
        assert_eq!(path.file_name().unwrap().len(), 64);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&sessions), 0o700);
        assert_eq!(mode(sessions.parent().unwrap()), 0o700, "created dirs too");
        // A directory someone left open is narrowed, a file replaced whole.
        std::fs::set_permissions(&sessions, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        cache.store(origin, &token(2_000_000_001)).unwrap();
        assert_eq!(mode(&sessions), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(cache.load(origin, 0).unwrap().expires_at(), 2_000_000_001);
        let names: Vec<_> = std::fs::read_dir(&sessions).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn corrupt_or_foreign_cache_files_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::new(dir.path());
        let origin = "https://api.example.com";
        let path = cache.path(origin);
        for junk in [
            "garbage".to_owned(),
            String::new(),
            r#"{"origin":"https://api.example.com","token":"not.a.jwt"}"#.to_owned(),
            format!(
                r#"{{"origin":"https://other.example.com","token":"{}"}}"#,
                token(2_000_000_000).expose()
            ),
            format!(
                r#"{{"origin":"https://api.example.com","token":"{}"}}"#,
                jwt(serde_json::json!({"sub": "alice"}))
            ),
        ] {
            std::fs::write(&path, junk.as_bytes()).unwrap();
            assert!(cache.load(origin, 0).is_none(), "{junk}");
        }
    }

    #[test]
    fn the_cache_lives_in_the_xdg_config_directory() {
        let dir = |x, h| SessionCache::default_dir(x, h).map(|p| p.display().to_string());
        assert_eq!(
            dir(Some("/xdg"), Some("/home/a")).as_deref(),
            Some("/xdg/portcullis/sessions")
        );
        assert_eq!(
            dir(Some("relative"), Some("/home/a")).as_deref(),
            Some("/home/a/.config/portcullis/sessions")
        );
        assert_eq!(
            dir(None, Some("/home/a")).as_deref(),
            Some("/home/a/.config/portcullis/sessions")
        );
        assert_eq!(dir(Some(""), Some("relative")), None);
        assert_eq!(dir(None, None), None);
    }

    #[test]
    fn browser_commands_follow_the_browser_variable() {
        let url = Url::parse("https://auth.example.com/sign_in?a=1&b=2").unwrap();
        let u = url.to_string();
        let cmds = browser_commands(&url, Some("firefox --new-window:lynx %s -dump"));
        assert_eq!(
            cmds,
            vec![
                (
                    "firefox".to_owned(),
                    vec!["--new-window".to_owned(), u.clone()]
                ),
                ("lynx".to_owned(), vec![u.clone(), "-dump".to_owned()]),
            ]
        );
        for unset in [None, Some(""), Some(" : ")] {
            let cmds = browser_commands(&url, unset);
            assert_eq!(cmds.len(), 1);
            assert!(["xdg-open", "open"].contains(&cmds[0].0.as_str()));
            assert_eq!(cmds[0].1, vec![u.clone()]);
        }
        assert!(open_browser(&url, Some("/nonexistent/browser")).is_err());
    }

    #[tokio::test]
    async fn the_callback_accepts_one_token_and_refuses_everything_else() {
        let server = CallbackServer::bind().await.unwrap();
        let redirect = server.redirect_uri().clone();
        assert_eq!(redirect.host_str(), Some("127.0.0.1"));
        assert!(redirect.path().starts_with("/callback/"));
        assert!(
            redirect.path().len() > "/callback/".len() + 40,
            "a random state"
        );
        let waiting = tokio::spawn(server.wait(Duration::from_secs(30)));
        let base = format!("http://127.0.0.1:{}", redirect.port().unwrap());
        let good = jwt(serde_json::json!({"sub": "alice", "exp": 2_000_000_000}));
        let at = |q: &str| format!("{redirect}?{q}");
        for (method, url, status) in [
            (Method::GET, format!("{base}/"), 404),
            (
                Method::GET,
                format!("{base}/callback?portcullis_jwt={good}"),
                404,
            ),
            (
                Method::GET,
                format!("{base}/callback/wrong?portcullis_jwt={good}"),
                404,
            ),
            (
                Method::GET,
                format!("{redirect}x?portcullis_jwt={good}"),
                404,
            ),
            (Method::POST, at(&format!("portcullis_jwt={good}")), 400),
            (Method::GET, redirect.to_string(), 400),
            (Method::GET, at(&format!("pomerium_jwt={good}")), 400),
            (Method::GET, at("portcullis_jwt="), 400),
            (Method::GET, at("portcullis_jwt=not-a-token"), 400),
            (
                Method::GET,
                at(&format!("portcullis_jwt={good}&portcullis_jwt={good}")),
                400,
            ),
        ] {
            let (got, headers, _) = fetch(method.clone(), &url).await;
            assert_eq!(got.as_u16(), status, "{method} {url}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        }
        assert!(!waiting.is_finished());
        let (status, headers, body) = fetch(
            Method::GET,
            &at(&format!("portcullis_jwt={good}&pomerium_jwt={good}")),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains("You are signed in"), "{body}");
        assert!(!body.contains(&good), "the page does not repeat the token");
        let received = waiting.await.unwrap().unwrap();
        assert_eq!(received.expose(), good);
        // One-shot: nothing listens any more.
        assert!(
            tokio::net::TcpStream::connect(redirect.socket_addrs(|| None).unwrap()[0])
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_callback_gives_up_after_the_timeout() {
        let server = CallbackServer::bind().await.unwrap();
        let e = server.wait(Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(e, LoginError::Timeout(_)));
        assert_eq!(
            LoginError::Timeout(DEFAULT_TIMEOUT).to_string(),
            "no sign-in arrived within 5m"
        );
    }

    #[tokio::test]
    async fn login_asks_the_route_and_takes_the_token_from_the_callback() {
        let t = jwt(serde_json::json!({"sub": "alice", "exp": 2_000_000_000}));
        let fake = fake_route(signs_in_as(t.clone())).await;
        let route = RouteUrl::parse(&fake.url).unwrap();
        let (show, browsed) = browser();
        let token = sign_in(&route, None, Duration::from_secs(30), show)
            .await
            .unwrap();
        assert_eq!(token.expose(), t);
        let (status, headers, _) = browsed.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        let redirect = fake.redirect_uris.lock().unwrap()[0].clone();
        let redirect = Url::parse(&redirect).unwrap();
        assert_eq!(redirect.scheme(), "http");
        assert_eq!(redirect.host_str(), Some("127.0.0.1"));
        assert!(redirect.path().starts_with("/callback/"));
    }

    #[tokio::test]
    async fn a_fresh_cached_token_skips_the_sign_in_and_a_corrupt_one_does_not() {
        let now = 1_700_000_000;
        let t = jwt(serde_json::json!({"sub": "alice", "exp": now + 3600}));
        let fake = fake_route(signs_in_as(t.clone())).await;
        let route = RouteUrl::parse(&fake.url).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::new(dir.path().join("sessions"));
        std::fs::create_dir_all(cache.dir()).unwrap();
        std::fs::write(cache.path(&route.origin()), "{corrupt").unwrap();
        let mut options = LoginOptions {
            cache: Some(cache.clone()),
            read_cache: true,
            extra_ca: None,
            timeout: Duration::from_secs(30),
        };
        let (show, _browsed) = browser();
        let first = login(&route, &options, now, show).await.unwrap();
        assert_eq!(first.expose(), t);
        let signed_in = fake.requests.load(Ordering::SeqCst);
        assert_eq!(signed_in, 2, "the login API and the sign-in page");
        assert_eq!(cache.load(&route.origin(), now).unwrap().expose(), t);

        let cached = login(&route, &options, now, |_: &Url| panic!("no sign-in"))
            .await
            .unwrap();
        assert_eq!(cached.expose(), t);
        assert_eq!(
            fake.requests.load(Ordering::SeqCst),
            signed_in,
            "no request"
        );

        // Within a minute of `exp`, and with --no-cache, the person signs in again.
        for (now, read_cache) in [(now + 3540, true), (now, false)] {
            options.read_cache = read_cache;
            let before = fake.requests.load(Ordering::SeqCst);
            let (show, _browsed) = browser();
            login(&route, &options, now, show).await.unwrap();
            assert_eq!(fake.requests.load(Ordering::SeqCst), before + 2);
        }
    }

    #[tokio::test]
    async fn login_api_answers_that_are_not_a_sign_in_url_are_refused() {
        let cases: Vec<(Response<Full<Bytes>>, &str)> = vec![
            (
                plain(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    r#"{"error":"invalid_request","error_description":"redirect_uri must be on a loopback host\u0007"}"#,
                ),
                "answered 400 Bad Request (redirect_uri must be on a loopback host)",
            ),
            (
                plain(StatusCode::NOT_FOUND, "text/html", "<h1>nope</h1>"),
                "answered 404 Not Found",
            ),
            (
                Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, "https://api.example.com/")
                    .body(Full::default())
                    .unwrap(),
                "answered 301 Moved Permanently (redirected to https://api.example.com/)",
            ),
            (
                plain(
                    StatusCode::OK,
                    "text/html",
                    "https://auth.example.com/sign_in",
                ),
                "answered \"text/html\" instead of text/plain",
            ),
            (
                plain(StatusCode::OK, "text/plain", "sign in at auth.example.com"),
                "did not answer with an absolute http or https sign-in URL",
            ),
            (
                plain(StatusCode::OK, "text/plain", "javascript:alert(1)"),
                "did not answer with an absolute http or https sign-in URL",
            ),
            (
                plain(
                    StatusCode::OK,
                    "text/plain",
                    "https://u:p@auth.example.com/",
                ),
                "did not answer with an absolute http or https sign-in URL",
            ),
        ];
        for (response, expected) in cases {
            let response = Mutex::new(Some(response));
            let fake = fake_route(Arc::new(move |_, _| {
                response.lock().unwrap().take().unwrap_or_default()
            }))
            .await;
            let route = RouteUrl::parse(&fake.url).unwrap();
            let e = sign_in(&route, None, Duration::from_secs(5), |_: &Url| {
                panic!("shown")
            })
            .await
            .unwrap_err();
            let message = e.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("/.portcullis/api/v1/login"), "{message}");
            assert!(
                !message.contains("callback"),
                "no state in errors: {message}"
            );
        }
        let e = sign_in(
            &RouteUrl::parse("http://127.0.0.1:9").unwrap(),
            None,
            Duration::from_secs(5),
            |_: &Url| panic!("shown"),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("asking http://127.0.0.1:9/.portcullis/api/v1/login"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        let route = RouteUrl::parse("https://127.0.0.1:9").unwrap();
        let e = sign_in(&route, Some(&ca), Duration::from_secs(5), |_: &Url| {})
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("CA file "), "{e}");
    }
}
