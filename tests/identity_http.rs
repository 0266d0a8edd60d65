//! The identity endpoints through real listeners: HTTP/1.1 on the plain listener and h2 over TLS
//! (trusting the development CA) on the https listener, with a hand-built table published into
//! a `LiveTable`, an injected clock, and the listener limits; and the admin listener's
//! `/metrics` counting what they answered.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Validation;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

use portcullis::devapi::tls::DevCa;
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::service::{Clock, IdentityConfig, IdentityService};
use portcullis::identity::token::{
    ACCESS_TOKEN_TYP, CredentialRecord, Credentials, MAX_TOKEN_REQUEST_BYTES, PreviousSecret,
    digest,
};
use portcullis::metrics::{self, Metrics};
use portcullis::proxy::listener::{self, ListenerLimits, Transport};
use portcullis::proxy::tls::{certified_key, dev_certificate_names, server_config};
use portcullis::proxy::workers::{self, Workers};
use portcullis::proxy::{Proxy, ProxyConfig};
use portcullis::routing::live::LiveTable;
use portcullis::routing::route::Table;

const NOW: i64 = 1_767_225_600;
const SECRET: &str = "pcs_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd";
const OLD_SECRET: &str = "pcs_previousPreviousPreviousPreviousPrevio";
const CLIENT: &str = "team-a.billing-bot";
const AUDIENCE: &str = "portcullis";

// ---- fixtures ---------------------------------------------------------------------------------

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
            expires: NOW + 300,
        }),
        scopes: vec!["route:billing-api".into(), "route:team-b/ledger".into()],
        access_token_ttl: Duration::from_secs(900),
        claims,
    }
}

fn table(keys: Option<Arc<KeySet>>) -> Table {
    let mut credentials = Credentials::default();
    credentials.insert(record());
    Table {
        credentials,
        keys,
        ..Table::default()
    }
}

/// Which issuer the identity service gets.
#[derive(Clone, Copy, PartialEq)]
enum Issuer {
    /// `http://localhost:<http port>`, as `portcullis dev` without authenticateURL.
    DevHttp,
    /// `https://localhost:<https port>`.
    Https,
}

struct Server {
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    issuer: String,
    live: LiveTable,
    keys: Arc<KeySet>,
    now: Arc<AtomicI64>,
    ca_pem: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start(issuer: Issuer) -> Server {
    start_with(issuer, ListenerLimits::default()).await
}

async fn start_with(issuer: Issuer, limits: ListenerLimits) -> Server {
    common::crypto();
    let http_socket = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let https_socket = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = http_socket.local_addr().unwrap();
    let https = https_socket.local_addr().unwrap();
    let issuer = match issuer {
        Issuer::DevHttp => format!("http://localhost:{}", http.port()),
        Issuer::Https => format!("https://localhost:{}", https.port()),
    };

    let keys = Arc::new(KeySet::generate(Algorithm::Es256, NOW - 60).unwrap());
    let live = LiveTable::new();
    live.publish(table(Some(Arc::clone(&keys))));

    let now = Arc::new(AtomicI64::new(NOW));
    let clock = {
        let now = Arc::clone(&now);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let metrics = Arc::new(Metrics::new());
    let identity = IdentityService::new(
        IdentityConfig {
            issuer: url::Url::parse(&issuer).unwrap(),
            access_token_audience: AUDIENCE.into(),
            signing_algorithm: Algorithm::Es256,
            body_read_timeout: Duration::from_secs(2),
            clock,
        },
        Arc::clone(&metrics),
    );
    let admin_socket = portcullis::admin::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let admin = admin_socket.local_addr().unwrap();
    let proxy = Arc::new(Proxy::new(
        live.clone(),
        Some(Arc::new(identity)),
        ProxyConfig {
            metrics: Arc::clone(&metrics),
            ..ProxyConfig::default()
        },
    ));

    let ca = DevCa::ephemeral().unwrap();
    let names = dev_certificate_names(Some("localhost"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (chain, key) = ca.issue(&names).unwrap();
    let tls = server_config(
        live.clone(),
        Some(certified_key(chain, key).unwrap()),
        None,
        false,
    )
    .unwrap();

    let (shutdown, rx) = watch::channel(false);
    let (_, ready) = watch::channel(true);
    let (workers, workers_stopped) = Workers::start(workers::count()).unwrap();
    let tasks = vec![
        tokio::spawn(portcullis::admin::serve(
            admin_socket,
            ready,
            metrics,
            rx.clone(),
        )),
        tokio::spawn(listener::serve(
            "http",
            http_socket,
            Transport::Plain,
            Arc::clone(&proxy),
            workers.clone(),
            limits,
            rx.clone(),
        )),
        tokio::spawn(listener::serve(
            "https",
            https_socket,
            Transport::Tls(tokio_rustls::TlsAcceptor::from(tls)),
            proxy,
            workers,
            limits,
            rx,
        )),
        // Last: the workers end once both listeners have drained.
        tokio::spawn(workers_stopped.wait()),
    ];
    Server {
        http,
        https,
        admin,
        issuer,
        live,
        keys,
        now,
        ca_pem: ca.cert_pem().to_owned(),
        shutdown,
        tasks,
    }
}

/// How a request reaches the server.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    /// HTTP/1.1 on the plain listener.
    H1,
    /// h2 over TLS (ALPN) on the https listener.
    H2,
    /// HTTP/1.1 over TLS on the https listener.
    H1Tls,
    /// HTTP/1.1 on the admin listener.
    Admin,
}

const BOTH: [Wire; 2] = [Wire::H1, Wire::H2];

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    version: Version,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// An RFC 6749 §5.2 error: exactly `error` and `error_description`, JSON, no-store.
    fn assert_oauth_error(&self, status: u16, code: &str, wire: Wire) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{wire:?}: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        let map = body.as_object().unwrap();
        assert_eq!(map["error"], code, "{wire:?}: {body}");
        assert!(
            map["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        assert_eq!(map.len(), 2, "{body}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("pragma"), Some("no-cache"));
    }
}

impl Server {
    fn addr(&self, wire: Wire) -> SocketAddr {
        match wire {
            Wire::H1 => self.http,
            Wire::H2 | Wire::H1Tls => self.https,
            Wire::Admin => self.admin,
        }
    }

    fn tls_connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let der =
            rustls::pki_types::pem::PemObject::from_pem_slice(self.ca_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Sends one request for `host` (port taken from the listener) and reads the whole reply.
    async fn send<B>(&self, wire: Wire, host: &str, request: Request<B>) -> Reply
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = self.addr(wire);
        let authority = format!("{host}:{}", addr.port());
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let response = match wire {
            Wire::H1 | Wire::H1Tls | Wire::Admin => {
                parts.uri = path.parse().unwrap();
                parts
                    .headers
                    .insert(header::HOST, authority.parse().unwrap());
                let request = Request::from_parts(parts, body);
                if wire != Wire::H1Tls {
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    sender.send_request(request).await.unwrap()
                } else {
                    let tls = self.tls(tcp, &sni(host), b"http/1.1").await;
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tls))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    sender.send_request(request).await.unwrap()
                }
            }
            Wire::H2 => {
                parts.uri = format!("https://{authority}{path}").parse().unwrap();
                parts.version = Version::HTTP_2;
                let request = Request::from_parts(parts, body);
                let tls = self.tls(tcp, &sni(host), b"h2").await;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            }
        };
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
            version: parts.version,
        }
    }

    async fn tls(
        &self,
        tcp: TcpStream,
        sni: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        self.tls_connector(alpn).connect(name, tcp).await.unwrap()
    }

    async fn get(&self, wire: Wire, host: &str, path: &str) -> Reply {
        let request = Request::get(path).body(Full::new(Bytes::new())).unwrap();
        self.send(wire, host, request).await
    }

    async fn token(&self, wire: Wire, authorization: Option<&str>, form: &str) -> Reply {
        self.send(wire, "localhost", token_request(authorization, form))
            .await
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation
    }

    fn verify(&self, token: &str) -> Value {
        self.keys
            .verify(
                token,
                ACCESS_TOKEN_TYP,
                self.now.load(Ordering::SeqCst),
                &self.validation(),
            )
            .expect("the issued token verifies")
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("listeners drain and stop")
                .unwrap();
        }
    }
}

/// The TLS server name used for `host`: IP addresses as they are, names as `localhost`. The
/// dev certificate also lists `*.localhost`, but WebPKI (like OpenSSL) does not match a
/// wildcard over a single label, so `app.localhost` is reached with SNI `localhost` and its own
/// Host / `:authority`, which is what dispatch reads.
fn sni(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        host.to_owned()
    } else {
        "localhost".to_owned()
    }
}

fn token_request(authorization: Option<&str>, form: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    basic_raw(&format!("{id}:{secret}"))
}

fn basic_raw(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

const CC: &str = "grant_type=client_credentials";

// ---- metadata and JWKS ------------------------------------------------------------------------

#[tokio::test]
async fn metadata_over_http1_and_h2() {
    let server = start(Issuer::DevHttp).await;
    let issuer = server.issuer.clone();
    for wire in BOTH {
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let reply = server.get(wire, "localhost", path).await;
            assert_eq!(reply.status, StatusCode::OK, "{wire:?} {path}");
            let expected = if wire == Wire::H2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            assert_eq!(reply.version, expected);
            assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
            let doc = reply.json();
            assert_eq!(doc["issuer"], issuer.as_str());
            assert_eq!(doc["token_endpoint"], format!("{issuer}/oauth2/token"));
            assert_eq!(doc["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
            assert_eq!(
                doc["grant_types_supported"],
                serde_json::json!(["client_credentials"])
            );
            assert_eq!(
                doc["token_endpoint_auth_methods_supported"],
                serde_json::json!(["client_secret_basic", "client_secret_post"])
            );
            assert_eq!(
                doc["id_token_signing_alg_values_supported"],
                serde_json::json!(["ES256"])
            );
        }
        // HEAD: the same headers, no body.
        let head = Request::head("/.well-known/openid-configuration")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = server.send(wire, "localhost", head).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.is_empty(), "{wire:?}");
        let len: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert!(len > 100, "{wire:?}: content-length {len}");
    }
    server.stop().await;
}

#[tokio::test]
async fn jwks_publishes_public_members_only() {
    let server = start(Issuer::DevHttp).await;
    for wire in BOTH {
        let reply = server
            .get(wire, "localhost", "/.well-known/jwks.json")
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
        let doc = reply.json();
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0].as_object().unwrap();
        assert_eq!(key["kid"], server.keys.current().kid());
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["alg"], "ES256");
        assert!(key.contains_key("x") && key.contains_key("y"));
        assert!(!key.contains_key("d"), "private member published: {doc}");
    }
    server.stop().await;
}

// ---- tokens -----------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_by_basic_post_and_authentik_verify() {
    let server = start(Issuer::DevHttp).await;
    let forms = [
        (Some(basic(CLIENT, SECRET)), CC.to_owned()),
        (
            None,
            format!("{CC}&client_id={CLIENT}&client_secret={SECRET}"),
        ),
        (
            None,
            format!("{CC}&client_id={CLIENT}&username={CLIENT}&password={SECRET}"),
        ),
    ];
    let mut jtis = Vec::new();
    for wire in [Wire::H1, Wire::H2, Wire::H1Tls] {
        for (authorization, form) in &forms {
            let reply = server.token(wire, authorization.as_deref(), form).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{wire:?} {form}: {:?}",
                reply.body
            );
            assert_eq!(reply.header("cache-control"), Some("no-store"));
            assert_eq!(reply.header("pragma"), Some("no-cache"));
            let body = reply.json();
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 900);
            assert_eq!(
                body["scope"],
                "route:team-a/billing-api route:team-b/ledger"
            );
            let token = body["access_token"].as_str().unwrap();
            let header = jsonwebtoken::decode_header(token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(server.keys.current().kid()));
            let claims = server.verify(token);
            assert_eq!(claims["iss"], server.issuer.as_str());
            assert_eq!(claims["aud"], AUDIENCE);
            assert_eq!(claims["sub"], "serviceaccount:team-a/billing-bot");
            assert_eq!(claims["client_id"], CLIENT);
            assert_eq!(
                claims["scope"],
                "route:team-a/billing-api route:team-b/ledger"
            );
            assert_eq!(claims["team"], "payments");
            assert_eq!(claims["iat"], NOW);
            assert_eq!(claims["exp"], NOW + 900);
            jtis.push(claims["jti"].as_str().unwrap().to_owned());
        }
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 9, "every token has its own jti");

    // A narrowed request gets exactly the requested scope.
    let reply = server
        .token(
            Wire::H2,
            Some(&basic(CLIENT, SECRET)),
            &format!("{CC}&scope=route%3Abilling-api"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let claims = server.verify(reply.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "route:team-a/billing-api");

    // The token's audience is exact: another audience refuses it.
    let mut other = server.validation();
    other.set_audience(&["someone-else"]);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    assert!(
        server
            .keys
            .verify(&token, ACCESS_TOKEN_TYP, NOW, &other)
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_token_requests_are_refused_with_rfc_errors() {
    let server = start(Issuer::DevHttp).await;
    let cases: Vec<(&str, Option<String>, String, u16, &str)> = vec![
        (
            "Basic without colon",
            Some(basic_raw(CLIENT)),
            CC.into(),
            401,
            "invalid_client",
        ),
        (
            "Basic bad base64",
            Some("Basic %%%%".into()),
            CC.into(),
            401,
            "invalid_client",
        ),
        (
            "Basic empty secret",
            Some(basic(CLIENT, "")),
            CC.into(),
            401,
            "invalid_client",
        ),
        (
            "post empty secret",
            None,
            format!("{CC}&client_id={CLIENT}&client_secret="),
            401,
            "invalid_client",
        ),
        (
            "wrong secret",
            Some(basic(CLIENT, "pcs_wrong")),
            CC.into(),
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            Some(basic("nobody", SECRET)),
            CC.into(),
            401,
            "invalid_client",
        ),
        (
            "two methods",
            Some(basic(CLIENT, SECRET)),
            format!("{CC}&client_id={CLIENT}&client_secret={SECRET}"),
            400,
            "invalid_request",
        ),
        (
            "repeated parameter",
            None,
            format!("{CC}&client_id={CLIENT}&client_secret={SECRET}&client_id={CLIENT}"),
            400,
            "invalid_request",
        ),
        (
            "authentik username of another client",
            None,
            format!("{CC}&client_id={CLIENT}&username=team-a.other&password={SECRET}"),
            401,
            "invalid_client",
        ),
        (
            "scope outside the credential's",
            Some(basic(CLIENT, SECRET)),
            format!("{CC}&scope=route%3Ateam-c%2Fadmin"),
            400,
            "invalid_scope",
        ),
        (
            "missing grant_type",
            Some(basic(CLIENT, SECRET)),
            "scope=route%3Abilling-api".into(),
            400,
            "invalid_request",
        ),
        (
            "wrong grant_type",
            Some(basic(CLIENT, SECRET)),
            "grant_type=password&username=a&password=b".into(),
            400,
            "unsupported_grant_type",
        ),
        (
            "unsupported grant_type",
            Some(basic(CLIENT, SECRET)),
            "grant_type=authorization_code&code=x".into(),
            400,
            "unsupported_grant_type",
        ),
        (
            "client assertion",
            None,
            format!(
                "{CC}&client_id={CLIENT}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c"
            ),
            401,
            "invalid_client",
        ),
        (
            "no client authentication",
            None,
            CC.into(),
            401,
            "invalid_client",
        ),
    ];
    for wire in BOTH {
        for (what, authorization, form, status, code) in &cases {
            let reply = server.token(wire, authorization.as_deref(), form).await;
            reply.assert_oauth_error(*status, code, wire);
            if *status == 401 {
                assert_eq!(
                    reply.header("www-authenticate"),
                    Some(r#"Basic realm="portcullis""#),
                    "{what}"
                );
            } else {
                assert_eq!(reply.header("www-authenticate"), None, "{what}");
            }
        }
        // A wrong secret and an unknown client cannot be told apart.
        let wrong = server
            .token(wire, Some(&basic(CLIENT, "pcs_wrong")), CC)
            .await;
        let unknown = server.token(wire, Some(&basic("nobody", SECRET)), CC).await;
        assert_eq!(wrong.status, unknown.status);
        assert_eq!(wrong.body, unknown.body);
        assert_eq!(
            wrong.json()["error_description"],
            "client authentication failed"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn wrong_method_media_type_and_size() {
    let server = start(Issuer::DevHttp).await;
    for wire in BOTH {
        let reply = server.get(wire, "localhost", "/oauth2/token").await;
        reply.assert_oauth_error(405, "invalid_request", wire);
        assert_eq!(reply.header("allow"), Some("POST"));

        let json = Request::post("/oauth2/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(
                b"{\"grant_type\":\"client_credentials\"}",
            )))
            .unwrap();
        server
            .send(wire, "localhost", json)
            .await
            .assert_oauth_error(415, "invalid_request", wire);

        // Declared length over the limit.
        let big = format!("{CC}&pad={}", "a".repeat(MAX_TOKEN_REQUEST_BYTES));
        let reply = server.token(wire, Some(&basic(CLIENT, SECRET)), &big).await;
        reply.assert_oauth_error(413, "invalid_request", wire);

        // No declared length (chunked / DATA frames): refused while streaming.
        let chunks = (0..MAX_TOKEN_REQUEST_BYTES / 1024 + 2)
            .map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'a'; 1024]))));
        let streamed = Request::post("/oauth2/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, basic(CLIENT, SECRET))
            .body(StreamBody::new(futures::stream::iter(chunks)))
            .unwrap();
        let reply = server.send(wire, "localhost", streamed).await;
        reply.assert_oauth_error(413, "invalid_request", wire);

        // Just under the limit is fine (unknown parameters are ignored).
        let pad = MAX_TOKEN_REQUEST_BYTES - CC.len() - "&pad=".len();
        let fits = format!("{CC}&pad={}", "a".repeat(pad));
        assert_eq!(fits.len(), MAX_TOKEN_REQUEST_BYTES);
        let reply = server
            .token(wire, Some(&basic(CLIENT, SECRET)), &fits)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{wire:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn no_keys_means_503_and_each_request_uses_one_table() {
    let server = start(Issuer::DevHttp).await;
    server.live.publish(table(None));
    for wire in BOTH {
        let reply = server.token(wire, Some(&basic(CLIENT, SECRET)), CC).await;
        reply.assert_oauth_error(503, "temporarily_unavailable", wire);
        assert_eq!(reply.header("retry-after"), Some("5"));
        server
            .get(wire, "localhost", "/.well-known/jwks.json")
            .await
            .assert_oauth_error(503, "temporarily_unavailable", wire);
    }
    // Keys arrive with the next generation and are used at once.
    server.live.publish(table(Some(Arc::clone(&server.keys))));
    let reply = server
        .token(Wire::H2, Some(&basic(CLIENT, SECRET)), CC)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn the_previous_secret_is_refused_after_it_expires() {
    let server = start(Issuer::DevHttp).await;
    for wire in BOTH {
        server.now.store(NOW, Ordering::SeqCst);
        let reply = server
            .token(wire, Some(&basic(CLIENT, OLD_SECRET)), CC)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{wire:?}");
        server.now.store(NOW + 300, Ordering::SeqCst);
        let reply = server
            .token(wire, Some(&basic(CLIENT, OLD_SECRET)), CC)
            .await;
        reply.assert_oauth_error(401, "invalid_client", wire);
        let reply = server.token(wire, Some(&basic(CLIENT, SECRET)), CC).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            server.verify(reply.json()["access_token"].as_str().unwrap())["iat"],
            NOW + 300
        );
    }
    server.stop().await;
}

// ---- hosts and schemes ------------------------------------------------------------------------

#[tokio::test]
async fn other_hosts_and_unknown_identity_paths_are_404() {
    let server = start(Issuer::DevHttp).await;
    for wire in BOTH {
        for host in ["app.localhost", "127.0.0.1"] {
            let reply = server.token(wire, Some(&basic(CLIENT, SECRET)), CC).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "sanity: localhost serves tokens"
            );
            let reply = server
                .send(wire, host, token_request(Some(&basic(CLIENT, SECRET)), CC))
                .await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{wire:?} {host}");
            let body = reply.json();
            assert_eq!(body["error"], "route_not_found");
            assert!(body["error_description"].is_string());
            assert_eq!(reply.header("cache-control"), Some("no-store"));
            assert!(!String::from_utf8_lossy(&reply.body).contains("access_token"));
        }
        // Case, trailing dot and port do not change the host.
        let reply = server
            .get(wire, "LocalHost.", "/.well-known/openid-configuration")
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{wire:?}");
        let reply = server.get(wire, "localhost", "/oauth2/revoke").await;
        reply.assert_oauth_error(404, "invalid_request", wire);
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_token_requests_and_are_served_on_the_admin_listener_only() {
    let server = start(Issuer::DevHttp).await;
    let issued = server
        .token(Wire::H2, Some(&basic(CLIENT, SECRET)), CC)
        .await;
    assert_eq!(issued.status, StatusCode::OK);
    let refused = server
        .token(Wire::H1, Some(&basic(CLIENT, "pcs_wrong")), CC)
        .await;
    refused.assert_oauth_error(401, "invalid_client", Wire::H1);

    let reply = server.get(Wire::Admin, "127.0.0.1", "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some(metrics::CONTENT_TYPE));
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for line in [
        r#"portcullis_tokens_issued_total{grant="client_credentials"} 1"#,
        r#"portcullis_token_requests_total{outcome="issued"} 1"#,
        r#"portcullis_token_requests_total{outcome="invalid_client"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
    for secret in [CLIENT, SECRET, "pcs_wrong"] {
        assert!(!text.contains(secret), "{secret} is no label value");
    }

    // The route listeners never serve it: not on the authenticate host, not on any other.
    for wire in [Wire::H1, Wire::H2, Wire::H1Tls] {
        for host in ["localhost", "app.localhost"] {
            let reply = server.get(wire, host, "/metrics").await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{wire:?} {host}");
            assert!(!String::from_utf8_lossy(&reply.body).contains("portcullis_"));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn an_https_issuer_is_never_served_over_plain_http() {
    let server = start(Issuer::Https).await;
    let reply = server
        .get(
            Wire::H1,
            "localhost",
            "/.well-known/openid-configuration?x=1",
        )
        .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/.well-known/openid-configuration?x=1", server.issuer).as_str())
    );
    let reply = server
        .token(Wire::H1, Some(&basic(CLIENT, SECRET)), CC)
        .await;
    reply.assert_oauth_error(400, "invalid_request", Wire::H1);
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("https")
    );
    // The https listener serves the same request.
    for wire in [Wire::H2, Wire::H1Tls] {
        let reply = server.token(wire, Some(&basic(CLIENT, SECRET)), CC).await;
        assert_eq!(reply.status, StatusCode::OK, "{wire:?}");
        let claims = server.verify(reply.json()["access_token"].as_str().unwrap());
        assert_eq!(claims["iss"], server.issuer.as_str());
        assert!(server.issuer.starts_with("https://localhost:"));
    }
    server.stop().await;
}

// ---- listener limits --------------------------------------------------------------------------

/// Writes raw bytes and reads what comes back until the server closes or 5 s pass.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversize_heads_and_ambiguous_hosts_are_refused() {
    let server = start(Issuer::DevHttp).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let reply = raw(server.http, big.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let reply = raw(server.http, many.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    let two_hosts =
        b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let reply = raw(server.http, two_hosts).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("invalid_host"), "{reply}");

    let no_host = b"GET /.well-known/jwks.json HTTP/1.0\r\n\r\n";
    let reply = raw(server.http, no_host).await;
    assert!(
        reply.starts_with("HTTP/1.0 400") || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );

    let connect =
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n";
    let reply = raw(server.http, connect).await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");

    let both_lengths = b"POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef";
    let reply = raw(server.http, both_lengths).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed() {
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let server = start_with(Issuer::DevHttp, limits).await;

    // A head that never completes: the connection is closed after the header timeout.
    let started = tokio::time::Instant::now();
    let mut tcp = TcpStream::connect(server.http).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: loc").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .expect("the server closes a slow head")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await;

    // hyper's head timer also runs while an HTTP/1.1 connection waits for its next request, so
    // the idle timeout is tested with a long header timeout: only the idle timeout can act.
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let server = start_with(Issuer::DevHttp, limits).await;

    // A kept-alive connection with nothing to do is closed after the idle timeout. The client
    // keeps its sender (so it would keep the connection open forever); only the server's idle
    // timeout can end it.
    for wire in [Wire::H1, Wire::H2] {
        let tcp = TcpStream::connect(server.addr(wire)).await.unwrap();
        let (sender, closed): (Box<dyn std::any::Any + Send>, _) = match wire {
            Wire::H2 => {
                let tls = server.tls(tcp, "localhost", b"h2").await;
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                let conn = tokio::spawn(conn);
                let request = Request::get("https://localhost/.well-known/jwks.json")
                    .version(Version::HTTP_2)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
                (Box::new(sender), conn)
            }
            _ => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .unwrap();
                let conn = tokio::spawn(conn);
                let request = Request::get("/.well-known/jwks.json")
                    .header(header::HOST, "localhost")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
                (Box::new(sender), conn)
            }
        };
        let idle_since = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .unwrap_or_else(|_| panic!("{wire:?}: the idle connection is closed"))
            .unwrap()
            .ok();
        assert!(
            idle_since.elapsed() >= Duration::from_millis(200),
            "{wire:?}: closed before the idle timeout"
        );
        drop(sender);
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_the_listeners() {
    let server = start(Issuer::DevHttp).await;
    let http = server.http;
    assert_eq!(
        server
            .get(Wire::H1, "localhost", "/.well-known/jwks.json")
            .await
            .status,
        StatusCode::OK
    );
    server.stop().await;
    let refused = TcpStream::connect(http).await;
    assert!(
        refused.is_err(),
        "the listener socket is closed after shutdown"
    );
}

// ---- logs -------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One access-log line per request with listener, host, path, endpoint, client_id and status;
/// no secret and no token in any log line, even at trace level.
#[tokio::test]
async fn access_log_lines_name_the_client_and_never_a_secret() {
    let captured = Captured::default();
    // Trace level, with the filter `main` adds for the HTTP and TLS libraries.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace,hyper=warn,h2=warn,rustls=warn,kube=warn,tower=warn")
        .json()
        .with_writer(captured.clone())
        .finish();
    // The listeners' tasks run on the test's thread and the proxy workers log to the subscriber
    // current where they were started, so everything logs here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start(Issuer::DevHttp).await;
    let ok = server
        .token(Wire::H2, Some(&basic(CLIENT, SECRET)), CC)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let token = ok.json()["access_token"].as_str().unwrap().to_owned();
    let wrong = server
        .token(
            Wire::H1,
            None,
            &format!("{CC}&client_id={CLIENT}&client_secret=pcs_guessedSecretValue"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    server.stop().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let access: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "portcullis::access")
        .collect();
    assert_eq!(access.len(), 2, "{text}");
    let fields = |i: usize| access[i]["fields"].clone();
    assert_eq!(fields(0)["listener"], "https");
    assert_eq!(fields(0)["host"], "localhost");
    assert_eq!(fields(0)["path"], "/oauth2/token");
    assert_eq!(fields(0)["endpoint"], "token");
    assert_eq!(fields(0)["client_id"], CLIENT);
    assert_eq!(fields(0)["status"], 200);
    assert!(fields(0)["latency_us"].is_u64());
    assert_eq!(fields(1)["listener"], "http");
    assert_eq!(fields(1)["status"], 401);
    assert_eq!(fields(1)["client_id"], CLIENT);
    for secret in [SECRET, "pcs_guessedSecretValue", token.as_str()] {
        assert!(!text.contains(secret), "a secret or token reached the logs");
    }
    let encoded = basic(CLIENT, SECRET);
    assert!(!text.contains(encoded.trim_start_matches("Basic ")));
}

/// A body of `chunks` 1 KiB chunks, one every 20 ms, counting how many the client sent.
fn slow_body(
    chunks: usize,
    sent: Arc<std::sync::atomic::AtomicUsize>,
) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin> {
    let stream = futures::stream::unfold(0, move |i| {
        let sent = Arc::clone(&sent);
        async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            sent.fetch_add(1, Ordering::SeqCst);
            Some((Ok(Frame::data(Bytes::from(vec![b'a'; 1024]))), i + 1))
        }
    });
    StreamBody::new(Box::pin(stream))
}

#[tokio::test]
async fn early_answers_read_a_small_body_first_so_every_client_sees_them() {
    // Answering before the body arrives resets an HTTP/2 stream; curl and Node then report a
    // stream error instead of the answer. Bodies up to the discard limit are read first.
    let server = start(Issuer::DevHttp).await;
    let chunks = MAX_TOKEN_REQUEST_BYTES / 1024 + 1;
    let cases = [
        ("localhost", "/oauth2/token", 413),
        ("localhost", "/oauth2/unknown", 404),
        ("localhost", "/.well-known/jwks.json", 405),
        ("billing.localhost", "/api", 404),
    ];
    for wire in BOTH {
        for (host, path, status) in cases {
            let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let request = Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::CONTENT_LENGTH, chunks * 1024)
                .body(slow_body(chunks, Arc::clone(&sent)))
                .unwrap();
            let reply = server.send(wire, host, request).await;
            assert_eq!(reply.status.as_u16(), status, "{wire:?} {host}{path}");
            assert_eq!(
                sent.load(Ordering::SeqCst),
                chunks,
                "{wire:?} {host}{path}: the answer came before the body was read"
            );
        }
    }
    server.stop().await;
}
