//! The proxy data plane in process: the embedded API and the controller (common fixture), the
//! token endpoint and the proxy on a real plain-HTTP listener, and real upstreams (the echo
//! server, a slow one, a WebSocket one, a closed port). Requests go over TCP with a hyper client.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::eventually;
use common::fixture::Fixture;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Validation;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;
use portcullis::identity::keys::Algorithm;
use portcullis::identity::service::{Clock, IdentityConfig, IdentityService};
use portcullis::metrics::Metrics;
use portcullis::proxy::listener::{self, ListenerLimits, Transport};
use portcullis::proxy::workers::{self, Workers};
use portcullis::proxy::{Proxy, ProxyConfig};
use portcullis::routing::upstream::AddressPolicy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const ISSUER: &str = "http://auth.localhost";

struct Harness {
    f: Fixture,
    metrics: Arc<Metrics>,
    proxy_addr: SocketAddr,
    echo_addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    _stop: watch::Sender<bool>,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Harness {
    async fn start() -> Self {
        common::crypto();
        let f = Fixture::start().await;
        let (stop, stop_rx) = watch::channel(false);
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(portcullis::echo::serve(echo, stop_rx.clone()));
        let metrics = Arc::new(Metrics::new());
        let identity = IdentityService::new(
            IdentityConfig {
                issuer: ISSUER.parse().unwrap(),
                access_token_audience: "portcullis".into(),
                signing_algorithm: Algorithm::Es256,
                body_read_timeout: Duration::from_secs(5),
                clock: Clock::system(),
            },
            Arc::clone(&metrics),
        );
        let proxy = Arc::new(Proxy::new(
            f.live.clone(),
            Some(Arc::new(identity)),
            ProxyConfig {
                address_policy: Arc::new(AddressPolicy {
                    allow_loopback: true,
                    ..AddressPolicy::default()
                }),
                metrics: Arc::clone(&metrics),
                ..ProxyConfig::default()
            },
        ));
        let socket = listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let proxy_addr = socket.local_addr().unwrap();
        let (workers, _) = Workers::start(workers::count()).unwrap();
        tokio::spawn(listener::serve(
            "http",
            socket,
            Transport::Plain,
            proxy,
            workers,
            ListenerLimits::default(),
            stop_rx,
        ));
        Harness {
            f,
            metrics,
            proxy_addr,
            echo_addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _stop: stop,
        }
    }

    async fn send(
        &self,
        method: &str,
        host: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{target}", self.proxy_addr))
            .header(header::HOST, host);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let response = self
            .client
            .request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(&self, host: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", host, target, headers).await
    }

    async fn credential(&self, name: &str, spec: Value) -> (String, String) {
        let _: portcullis::api::ServiceAccountCredential = self
            .f
            .apply(
                "team-a",
                json!({
                    "apiVersion": "portcullis.dev/v1alpha1", "kind": "ServiceAccountCredential",
                    "metadata": {"name": name, "namespace": "team-a"},
                    "spec": spec,
                }),
            )
            .await;
        let secrets: Api<Secret> = Api::namespaced(self.f.client.clone(), "team-a");
        let secret = eventually(10, "the generated Secret", || {
            let secrets = secrets.clone();
            async move {
                secrets
                    .get_opt(&format!("{name}-oauth"))
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        let data = secret.data.unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        let (id, secret) = (text("client_id"), text("client_secret"));
        // The table learns the digest a moment after the Secret is written.
        eventually(10, "the credential in the table", || async {
            self.f.live.load().credentials.get(&id).map(|_| ())
        })
        .await;
        (id, secret)
    }

    async fn token(&self, id: &str, secret: &str, scope: Option<&str>) -> String {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let mut form = "grant_type=client_credentials".to_owned();
        if let Some(scope) = scope {
            form.push_str("&scope=");
            form.push_str(&scope.replace(':', "%3A").replace('/', "%2F"));
        }
        let request = Request::post(format!("http://{}/oauth2/token", self.proxy_addr))
            .header(header::HOST, "auth.localhost")
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn route(&self, name: &str, spec: Value, host: &str) {
        self.f.route("team-a", name, spec).await;
        self.f
            .served(host, "/", Some(&format!("Route team-a/{name}")))
            .await;
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_credential_token_reaches_its_route_with_a_verifiable_identity() {
    let h = Harness::start().await;
    let (id, secret) = h
        .credential(
            "bot",
            json!({"scopes": ["route:web"], "claims": {"team": "payments"}}),
        )
        .await;
    let (other_id, other_secret) = h.credential("other", json!({})).await;
    h.route(
        "web",
        json!({
            "from": "http://web.localhost",
            "to": [{"url": format!("http://{}/base", h.echo_addr)}],
            "policy": {"allow": {"or": [{"serviceAccount": {"is": "team-a/bot"}}]}},
            "jwtClaimHeaders": {"X-Team": "team"},
            "setRequestHeaders": {"X-Route": "web"},
        }),
        "web.localhost",
    )
    .await;
    let token = h.token(&id, &secret, None).await;

    let r = h
        .get(
            "web.localhost",
            "/hello//world?x=1&y=%2F",
            &[
                ("authorization", &bearer(&token)),
                ("x-forwarded-user", "root"),
                ("x_portcullis_jwt_assertion", "forged"),
                ("x-team", "spoofed"),
                ("connection", "x-route"),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let echo = r.json();
    assert_eq!(echo["path"], "/base/hello/world");
    assert_eq!(echo["query"], "x=1&y=%2F");
    let headers = &echo["headers"];
    assert!(
        headers.get("authorization").is_none(),
        "our token reached the upstream"
    );
    assert!(headers.get("x-forwarded-user").is_none());
    assert!(headers.get("x_portcullis_jwt_assertion").is_none());
    assert_eq!(headers["x-team"], "payments");
    assert_eq!(headers["x-route"], "web");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "web.localhost");
    assert_eq!(headers["host"], h.echo_addr.to_string());

    // The assertion verifies against the published keys, for this route only.
    let assertion = headers["x-portcullis-jwt-assertion"].as_str().unwrap();
    let table = h.f.live.load();
    let keys = table.keys.as_ref().unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&["http://web.localhost"]);
    let now = jiff::Timestamp::now().as_second();
    let claims = keys.verify(assertion, "JWT", now, &validation).unwrap();
    assert_eq!(claims["sub"], "serviceaccount:team-a/bot");
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["team"], "payments");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=300).contains(&lifetime), "{lifetime}");
    assert!(keys.verify(assertion, "at+jwt", now, &validation).is_err());
    // The same caller on the same route gets the cached assertion.
    let again = h
        .get("web.localhost", "/", &[("authorization", &bearer(&token))])
        .await
        .json();
    assert_eq!(again["headers"]["x-portcullis-jwt-assertion"], assertion);

    // The other accepted spellings of the credential.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"));
    for (name, value) in [
        ("authorization", format!("Pomerium {token}")),
        ("authorization", format!("Bearer Pomerium-{token}")),
        ("x-pomerium-authorization", token.clone()),
        ("authorization", format!("Basic {basic}")),
    ] {
        let r = h.get("web.localhost", "/", &[(name, &value)]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {value:.20}");
    }
    // X-Portcullis-Authorization leaves the upstream's own Authorization alone.
    let r = h
        .get(
            "web.localhost",
            "/",
            &[
                ("x-portcullis-authorization", &token),
                ("authorization", "Basic dXBzdHJlYW06cGFzcw=="),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["headers"]["authorization"],
        "Basic dXBzdHJlYW06cGFzcw=="
    );

    // No, bad and foreign credentials.
    let r = h.get("web.localhost", "/", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer realm=\"web.localhost\", error=\"invalid_token\""));
    assert_eq!(r.json()["error"], "invalid_token");
    for value in [
        "Bearer not-a-jwt".to_owned(),
        format!("Bearer {token}x"),
        "Digest abc".to_owned(),
        format!("Bearer {}", &token[..token.len() - 4]),
    ] {
        let r = h
            .get("web.localhost", "/", &[("authorization", &value)])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{value:.30}");
        assert_eq!(r.json()["error"], "invalid_token");
        assert!(!String::from_utf8_lossy(&r.body).contains(&token[..20]));
    }
    let r = h
        .get(
            "web.localhost",
            "/",
            &[
                ("authorization", &bearer(&token)),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let other = h.token(&other_id, &other_secret, None).await;
    let r = h
        .get("web.localhost", "/", &[("authorization", &bearer(&other))])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "access_denied");

    // Scopes: the policy of `admin` allows the bot, but its token names `web` only.
    h.route(
        "admin",
        json!({
            "from": "http://admin.localhost",
            "to": [{"url": format!("http://{}", h.echo_addr)}],
            "policy": {"allow": {"or": [{"serviceAccount": {"is": "team-a/bot"}}]}},
        }),
        "admin.localhost",
    )
    .await;
    let r = h
        .get(
            "admin.localhost",
            "/",
            &[("authorization", &bearer(&token))],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );

    // Paths are judged in canonical form; ambiguous ones are refused before anything else.
    for bad in ["/a/../b", "/a/%2e%2e/b", "/a%2Fb", "/a;b", "/a%00"] {
        let r = h
            .get("web.localhost", bad, &[("authorization", &bearer(&token))])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json()["error"], "invalid_request");
    }
    let r = h.get("nothing.localhost", "/", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Every answer above is counted, by route and status, and the refusals by reason.
    let text = h.metrics.encode();
    for line in [
        r#"portcullis_http_requests_total{route="team-a/web",status="200"}"#,
        r#"portcullis_http_requests_total{route="team-a/web",status="401"}"#,
        r#"portcullis_http_requests_total{route="team-a/admin",status="403"}"#,
        r#"portcullis_http_requests_total{route="-",status="404"}"#,
        r#"portcullis_http_requests_total{route="identity",status="200"}"#,
        r#"portcullis_authentication_failures_total{reason="missing"}"#,
        r#"portcullis_authentication_failures_total{reason="malformed"}"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(!text.contains(&token[..20]));

    // Deleting the credential revokes its tokens, cached or not.
    let sacs: Api<portcullis::api::ServiceAccountCredential> =
        Api::namespaced(h.f.client.clone(), "team-a");
    sacs.delete("bot", &DeleteParams::default()).await.unwrap();
    eventually(
        10,
        "the deleted credential's token to be refused",
        || async {
            let r = h
                .get("web.localhost", "/", &[("authorization", &bearer(&token))])
                .await;
            (r.status == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
    h.f.stop().await;
}

/// An upstream that answers after `delay`.
async fn slow_upstream(delay: Duration) -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = socket.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
                    .await;
            });
        }
    });
    addr
}

/// An upstream that switches to a byte echo after `101`, or answers `400` without an upgrade.
async fn upgrade_upstream() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = socket.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(buf[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !head.contains("upgrade: websocket") {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\n\r\nno upgrade",
                        )
                        .await;
                    return;
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_failures_public_routes_and_websockets() {
    let h = Harness::start().await;
    let closed = {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        socket.local_addr().unwrap()
    };
    let slow = slow_upstream(Duration::from_secs(3)).await;
    let ws = upgrade_upstream().await;
    let public = |to: String| {
        json!({
            "from": "http://x.localhost",
            "to": [{"url": to}],
            "allowPublicUnauthenticatedAccess": true,
        })
    };
    let mut spec = public(format!("http://{}", h.echo_addr));
    spec["from"] = json!("http://public.localhost");
    h.route("public", spec, "public.localhost").await;
    let r = h.get("public.localhost", "/p", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.json()["headers"]
            .get("x-portcullis-jwt-assertion")
            .is_none()
    );

    let mut spec = public(format!("http://{closed}"));
    spec["from"] = json!("http://closed.localhost");
    h.route("closed", spec, "closed.localhost").await;
    let r = h.get("closed.localhost", "/", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(!String::from_utf8_lossy(&r.body).contains("127.0.0.1"));

    let mut spec = public(format!("http://{slow}"));
    spec["from"] = json!("http://slow.localhost");
    spec["timeout"] = json!("1s");
    h.route("slow", spec, "slow.localhost").await;
    let r = h.get("slow.localhost", "/", &[]).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    // The other routes are untouched by the failing ones.
    assert_eq!(
        h.get("public.localhost", "/", &[]).await.status,
        StatusCode::OK
    );

    for (name, allowed) in [("ws", true), ("nows", false)] {
        let mut spec = public(format!("http://{ws}"));
        spec["from"] = json!(format!("http://{name}.localhost"));
        spec["allowWebsockets"] = json!(allowed);
        h.route(name, spec, &format!("{name}.localhost")).await;
        let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "GET /chat HTTP/1.1\r\nhost: {name}.localhost\r\nconnection: Upgrade\r\n\
                     upgrade: websocket\r\nsec-websocket-version: 13\r\n\
                     sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        if allowed {
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            stream.write_all(b"ping").await.unwrap();
            let mut echoed = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&echoed, b"ping");
        } else {
            assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        }
    }
    h.f.stop().await;
}

/// A client CA (PEM) and a client certificate chain + key it issued.
fn client_pki() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["workload".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        ca_pem,
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

#[tokio::test]
async fn downstream_mtls_lets_in_only_certificates_of_the_configured_ca() {
    use portcullis::config::{DownstreamMtls, Settings};
    use portcullis::devapi::tls::DevCa;
    use portcullis::routing::client_ca::ClientAuth;
    common::crypto();
    let f = Fixture::with_settings(Settings {
        allow_loopback_upstreams: true,
        downstream_mtls: DownstreamMtls {
            ca_secret: "client-ca".into(),
        },
        ..Settings::default()
    })
    .await;
    let server_ca = DevCa::ephemeral().unwrap();
    let (chain, key) = server_ca.issue(&["localhost"]).unwrap();
    let fallback = portcullis::proxy::tls::certified_key(chain, key).unwrap();
    let tls =
        portcullis::proxy::tls::server_config(f.live.clone(), Some(fallback), None, true).unwrap();
    let proxy = Arc::new(Proxy::new(f.live.clone(), None, ProxyConfig::default()));
    let socket = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    let (workers, _) = Workers::start(workers::count()).unwrap();
    tokio::spawn(listener::serve(
        "https",
        socket,
        Transport::Tls(tokio_rustls::TlsAcceptor::from(tls)),
        proxy,
        workers,
        ListenerLimits::default(),
        stop_rx,
    ));

    // One request over TLS, presenting `identity`; the status, or None when TLS refused it.
    let call = |identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>| {
        let server_ca = server_ca.cert_pem().to_owned();
        async move {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(
                    rustls::pki_types::pem::PemObject::from_pem_slice(server_ca.as_bytes())
                        .unwrap(),
                )
                .unwrap();
            let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
            let config = match identity {
                Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
                None => builder.with_no_client_auth(),
            };
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let stream = connector.connect(name, tcp).await.ok()?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .ok()?;
            tokio::spawn(conn);
            let request = Request::get("/")
                .header(header::HOST, "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap();
            Some(sender.send_request(request).await.ok()?.status())
        }
    };
    let (ca_pem, chain, key) = client_pki();
    let (_, other_chain, other_key) = client_pki();

    // Configured but the Secret does not exist yet: nobody gets in.
    assert!(matches!(f.live.load().client_auth, ClientAuth::Unusable));
    assert_eq!(call(Some((chain.clone(), key.clone_key()))).await, None);

    let secrets: Api<Secret> = Api::namespaced(f.client.clone(), "portcullis-system");
    secrets
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "client-ca"},
                "stringData": {"ca.crt": ca_pem},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    eventually(10, "the client CA in the table", || async {
        matches!(f.live.load().client_auth, ClientAuth::Verify(_)).then_some(())
    })
    .await;
    assert_eq!(
        call(Some((chain, key))).await,
        Some(StatusCode::NOT_FOUND),
        "a certificate of the CA passes TLS (and no route serves localhost)"
    );
    assert_eq!(call(None).await, None, "no certificate");
    assert_eq!(
        call(Some((other_chain, other_key))).await,
        None,
        "a certificate of another CA"
    );
    f.stop().await;
}

/// A log sink for the whole test process (nextest runs each test in its own process).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn rewrites_preflight_redirects_and_an_access_log_without_tokens() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish(),
    )
    .expect("the only subscriber of this test process");
    let h = Harness::start().await;
    let (id, secret) = h.credential("bot", json!({})).await;
    h.f.route(
        "team-a",
        "api",
        json!({
            "from": "http://rw.localhost/api",
            "to": [{"url": format!("http://{}", h.echo_addr)}],
            "policy": {"allow": {"or": [{"serviceAccount": {"is": "team-a/bot"}}]}},
            "prefixRewrite": "/v2",
            "corsAllowPreflight": true,
        }),
    )
    .await;
    h.f.served("rw.localhost", "/api", Some("Route team-a/api"))
        .await;
    let token = h.token(&id, &secret, None).await;
    let auth = bearer(&token);

    let r = h
        .get(
            "rw.localhost",
            "/api/items/7?q=1",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["path"], "/v2/items/7");
    assert_eq!(r.json()["query"], "q=1");
    let r = h
        .get("rw.localhost", "/api", &[("authorization", &auth)])
        .await;
    assert_eq!(r.json()["path"], "/v2");
    // A prefix ends at a segment boundary.
    let r = h
        .get("rw.localhost", "/apiadmin", &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A CORS preflight passes without a token; any other OPTIONS does not.
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let r = h
        .send("OPTIONS", "rw.localhost", "/api/items", &preflight)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["method"], "OPTIONS");
    let r = h
        .send("OPTIONS", "rw.localhost", "/api/items", &preflight[..1])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A plain-HTTP request for an https:// route is redirected, path and query kept, no token
    // needed and none forwarded.
    h.route(
        "secure",
        json!({
            "from": "https://secure.localhost:8443",
            "to": [{"url": format!("http://{}", h.echo_addr)}],
            "allowAnyAuthenticatedUser": true,
        }),
        "secure.localhost",
    )
    .await;
    let r = h.get("secure.localhost", "/a/b?c=d", &[]).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.headers["location"],
        "https://secure.localhost:8443/a/b?c=d"
    );

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("portcullis::access"), "no access log line");
    assert!(text.contains("route=team-a/api"));
    assert!(text.contains("identity=\"serviceaccount:team-a/bot\""));
    for (what, secret) in [
        ("token", &token[..]),
        ("token tail", &token[token.len() - 30..]),
        ("client secret", &secret[..]),
    ] {
        assert!(!text.contains(secret), "the {what} appears in the logs");
    }
    h.f.stop().await;
}

/// Sends raw bytes, reads until the server closes or 5 s pass; returns what came back and
/// whether the connection was closed.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test]
async fn ambiguous_framing_and_overlong_targets_are_refused() {
    let h = Harness::start().await;
    h.route(
        "frame",
        json!({
            "from": "http://frame.localhost",
            "to": [{"url": format!("http://{}", h.echo_addr)}],
            "allowPublicUnauthenticatedAccess": true,
        }),
        "frame.localhost",
    )
    .await;
    for (what, request) in [
        (
            "Content-Length with Transfer-Encoding",
            "POST / HTTP/1.1\r\nhost: frame.localhost\r\ncontent-length: 5\r\n\
             transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two equal Content-Lengths",
            "POST / HTTP/1.1\r\nhost: frame.localhost\r\ncontent-length: 5\r\n\
             content-length: 5\r\n\r\nhello",
        ),
        ("bare LF", "GET / HTTP/1.1\nhost: frame.localhost\n\n"),
        (
            "bare LF in a second request",
            "GET / HTTP/1.1\r\nhost: frame.localhost\r\n\r\n\
             GET / HTTP/1.1\r\nhost: frame.localhost\nx: 1\r\n\r\n",
        ),
    ] {
        let (answer, closed) = raw_exchange(h.proxy_addr, request.as_bytes()).await;
        let last = answer.rfind("HTTP/1.1 ").map_or("", |i| &answer[i..]);
        assert!(last.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(closed, "{what}: the connection stayed open");
        assert_eq!(
            answer.matches("\"method\"").count(),
            usize::from(what.contains("second")),
            "{what}: the refused request reached the upstream"
        );
    }
    let long = format!("/{}", "a".repeat(9000));
    let r = h.get("frame.localhost", &long, &[]).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(r.json()["error"], "uri_too_long");
    assert_eq!(
        h.get("frame.localhost", "/", &[]).await.status,
        StatusCode::OK
    );
    h.f.stop().await;
}
