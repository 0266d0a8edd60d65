//! The OpenID Connect relying party (`identity::login::IdpClient`) and the people's sign-in
//! handlers (`identity::people::People`) against a fake OpenID provider served in-process on
//! 127.0.0.1: discovery, JWKS, an authorization endpoint that issues codes, a token endpoint
//! that checks `client_secret_basic` and the PKCE S256 challenge, and userinfo. Its id_tokens
//! are signed with a key the test holds, and each case can make them wrong in one way. Time is
//! the injected clock, shared by the provider and Portcullis.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use url::Url;

use portcullis::identity::access::AccessRejection;
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::login::{
    Idp, IdpClient, IdpError, IdpSettings, IdpState, IdpTokenRejection, IdpTokens, LoginSecrets,
    REQUEST_TIMEOUT,
};
use portcullis::identity::people::{ExchangeRefusal, People, Refresh};
use portcullis::identity::service::{Clock, IdentityConfig, IdentityService};
use portcullis::identity::session::{self, LOGIN_COOKIE, LoginState, SESSION_COOKIE};
use portcullis::policy::Policy;
use portcullis::proxy::authn::{Authenticator, AuthnError};
use portcullis::routing::route::{Protocol, Route, RouteId, SourceKind, Table};
use portcullis::routing::{Entry, HostPattern, PathMatch, RouteTable};
use portcullis::store::memory::MemoryStore;
use portcullis::store::{Secret, Session, Store};

const NOW: i64 = 1_767_225_600;
const CLIENT_ID: &str = "portcullis";
/// Characters that RFC 6749 §2.3.1 form-encodes inside Basic credentials.
const CLIENT_SECRET: &str = "s3cr3t+with/special:chars&=%";
const OTHER_CLIENT: &str = "another-client";
const AUTH: &str = "https://auth.example.com";
const REDIRECT: &str = "https://auth.example.com/oauth2/callback";
const APP: &str = "https://app.example.com";
const RETURN_TO: &str = "https://app.example.com/reports?x=1";
const ACCESS_LIFETIME: i64 = 300;
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

fn crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

// ---- the fake OpenID provider -----------------------------------------------------------------

/// One way a case makes the provider's id_token wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    Nonce,
    Audience,
    AudienceOtherCase,
    Issuer,
    IssuerTrailingSlash,
    AlgNone,
    /// HS256 with the client secret as the MAC key, the published `kid` in the header.
    Hs256ClientSecret,
    /// Signed by a key the provider does not publish, under its own `kid`.
    UnknownKey,
    /// Signed by a key the provider does not publish, under the published `kid`.
    UnknownKeyPublishedKid,
    Expired,
    /// `aud` = [us, another client], `azp` = the other client.
    ForeignAzpAmongAudiences,
    /// `aud` = us, `azp` = another client.
    ForeignAzp,
    /// `"exp": "never"`.
    StringExp,
    /// `"alg": "nOnE"`, unsigned.
    AlgNoneMixedCase,
    /// No `alg` at all, unsigned.
    AlgMissing,
    /// Header and payload, no signature part.
    TwoSegments,
    /// The refreshed id_token names another person.
    OtherSubject,
}

impl Tamper {
    /// Every way of making the id_token wrong.
    const ALL: [Tamper; 16] = [
        Tamper::Nonce,
        Tamper::Audience,
        Tamper::AudienceOtherCase,
        Tamper::Issuer,
        Tamper::IssuerTrailingSlash,
        Tamper::AlgNone,
        Tamper::Hs256ClientSecret,
        Tamper::UnknownKey,
        Tamper::UnknownKeyPublishedKid,
        Tamper::Expired,
        Tamper::ForeignAzpAmongAudiences,
        Tamper::ForeignAzp,
        Tamper::StringExp,
        Tamper::AlgNoneMixedCase,
        Tamper::AlgMissing,
        Tamper::TwoSegments,
    ];

    /// What the refusal says, so that a case cannot pass by failing for another reason.
    fn reason(self) -> &'static str {
        match self {
            Tamper::None => "",
            Tamper::OtherSubject => "names another subject",
            Tamper::Nonce => "nonce mismatch",
            Tamper::Audience | Tamper::AudienceOtherCase => "must contain `portcullis`",
            Tamper::Issuer | Tamper::IssuerTrailingSlash => "Invalid issuer",
            Tamper::AlgNone => "No signature found",
            Tamper::Hs256ClientSecret => "`HS256` is not one of",
            Tamper::UnknownKey => "No matching key",
            Tamper::UnknownKeyPublishedKid => "Signature was wrong",
            Tamper::Expired => "expired",
            Tamper::ForeignAzpAmongAudiences => "`another-client` is not a trusted audience",
            Tamper::ForeignAzp => "azp names another client",
            Tamper::StringExp
            | Tamper::AlgNoneMixedCase
            | Tamper::AlgMissing
            | Tamper::TwoSegments => "the id_token is malformed",
        }
    }
}

/// How the token endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenMode {
    Normal,
    /// `500` with the JSON error body oidc-provider sends on an internal error.
    ServerErrorJson,
    /// `500` with an HTML page, as a broken proxy in front of the provider would.
    ServerErrorHtml,
    /// Reads the request and never answers.
    Hang,
}

/// What the provider remembers about an issued code.
#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    challenge: String,
    nonce: String,
    redirect_uri: String,
    subject: String,
}

#[derive(Debug, Clone)]
struct Options {
    end_session: bool,
    id_token_algs: Vec<&'static str>,
    /// Advertise this token endpoint instead of the provider's own.
    token_endpoint: Option<String>,
    /// Advertise and serve an introspection endpoint (RFC 7662).
    introspection: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            end_session: true,
            id_token_algs: vec!["ES256"],
            token_endpoint: None,
            introspection: true,
        }
    }
}

struct OpState {
    options: Options,
    codes: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, String>,
    access_tokens: HashMap<String, String>,
    /// What introspection answers per access token (absent: `{"active": false}`).
    introspection: HashMap<String, Value>,
    introspection_requests: usize,
    /// Per subject: (id_token claims, userinfo-only claims).
    users: HashMap<String, (Value, Value)>,
    tamper: Tamper,
    token_mode: TokenMode,
    token_requests: usize,
}

struct Fake {
    issuer: String,
    keys: KeySet,
    /// A key the provider never publishes.
    stranger: KeySet,
    stranger_pem: String,
    clock: Arc<AtomicI64>,
    state: Mutex<OpState>,
}

/// A running fake provider; dropping it stops the listener and every connection.
struct FakeOp {
    op: Arc<Fake>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Reply = Response<Full<Bytes>>;

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn oauth_error(status: StatusCode, code: &str) -> Reply {
    json_reply(status, &json!({ "error": code }))
}

fn form(body: &[u8]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

/// RFC 6749 §2.3.1: the Basic credentials are form-encoded before base64.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unform = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unform(id)?, unform(secret)?))
}

impl Fake {
    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn discovery(&self, base: &str) -> Value {
        let st = self.state.lock().unwrap();
        let mut doc = json!({
            "issuer": self.issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": st.options.token_endpoint.clone()
                .unwrap_or_else(|| format!("{base}/token")),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": st.options.id_token_algs,
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile", "offline_access"],
        });
        if st.options.end_session {
            doc["end_session_endpoint"] = format!("{base}/end_session").into();
        }
        if st.options.introspection {
            doc["introspection_endpoint"] = format!("{base}/introspect").into();
        }
        doc
    }

    /// `GET /authorize`: checks the request like a provider would, signs the person in as
    /// `login_hint` (default `alice`) and redirects back with a code.
    fn authorize(&self, query: &str) -> Reply {
        let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let ok = q.get("response_type").map(String::as_str) == Some("code")
            && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && q.get("redirect_uri").map(String::as_str) == Some(REDIRECT)
            && q.get("code_challenge_method").map(String::as_str) == Some("S256")
            && q.get("scope")
                .is_some_and(|s| s.split(' ').any(|s| s == "openid"));
        let (Some(challenge), Some(nonce), Some(state), true) =
            (q.get("code_challenge"), q.get("nonce"), q.get("state"), ok)
        else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let code = self.issue_code(Grant {
            client_id: CLIENT_ID.into(),
            challenge: challenge.clone(),
            nonce: nonce.clone(),
            redirect_uri: REDIRECT.into(),
            subject: q
                .get("login_hint")
                .cloned()
                .unwrap_or_else(|| "alice".into()),
        });
        let mut back = Url::parse(REDIRECT).unwrap();
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", state);
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, back.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    fn issue_code(&self, grant: Grant) -> String {
        let code = random_token();
        self.state.lock().unwrap().codes.insert(code.clone(), grant);
        code
    }

    /// `POST /token`: `client_secret_basic`, then the code grant with PKCE S256 or the refresh
    /// grant (refresh tokens rotate).
    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        let params = form(body);
        let one = |name: &str| match params.get(name).map(Vec::as_slice) {
            Some([value]) if !value.is_empty() => Some(value.clone()),
            _ => None,
        };
        let client = basic_credentials(headers);
        if client != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
            || params.contains_key("client_secret")
        {
            let mut reply = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
            reply.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fake\""),
            );
            return reply;
        }
        let mut st = self.state.lock().unwrap();
        let now = self.now();
        match one("grant_type").as_deref() {
            Some("authorization_code") => {
                // A code is single use whatever happens next.
                let Some(grant) = one("code").and_then(|c| st.codes.remove(&c)) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                let verifier_ok = one("code_verifier").is_some_and(|v| s256(&v) == grant.challenge);
                if !verifier_ok
                    || grant.client_id != CLIENT_ID
                    || one("redirect_uri").as_deref() != Some(grant.redirect_uri.as_str())
                {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                let id_token = self.id_token(&st, &grant.subject, Some(&grant.nonce), now);
                self.tokens(&mut st, &grant.subject, id_token)
            }
            Some("refresh_token") => {
                let Some(subject) = one("refresh_token").and_then(|t| st.refresh_tokens.remove(&t))
                else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                let id_token = self.id_token(&st, &subject, None, now);
                self.tokens(&mut st, &subject, id_token)
            }
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    }

    fn tokens(&self, st: &mut OpState, subject: &str, id_token: String) -> Reply {
        let (access, refresh) = (random_token(), random_token());
        st.access_tokens.insert(access.clone(), subject.to_owned());
        let now = self.now();
        st.introspection.insert(
            access.clone(),
            json!({"active": true, "sub": subject, "client_id": CLIENT_ID, "iss": self.issuer,
                   "token_type": "Bearer", "iat": now, "exp": now + ACCESS_LIFETIME}),
        );
        st.refresh_tokens
            .insert(refresh.clone(), subject.to_owned());
        json_reply(
            StatusCode::OK,
            &json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": ACCESS_LIFETIME,
                "refresh_token": refresh,
                "id_token": id_token,
                "scope": "openid email profile",
            }),
        )
    }

    fn id_token(&self, st: &OpState, subject: &str, nonce: Option<&str>, now: i64) -> String {
        let mut claims = json!({
            "iss": self.issuer, "sub": subject, "aud": CLIENT_ID,
            "iat": now, "exp": now + ACCESS_LIFETIME, "auth_time": now,
        });
        if let Some((id_claims, _)) = st.users.get(subject) {
            for (k, v) in id_claims.as_object().unwrap() {
                claims[k] = v.clone();
            }
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        match st.tamper {
            Tamper::Nonce => claims["nonce"] = "a-nonce-from-another-sign-in".into(),
            Tamper::Audience => claims["aud"] = OTHER_CLIENT.into(),
            Tamper::AudienceOtherCase => claims["aud"] = CLIENT_ID.to_uppercase().into(),
            Tamper::Issuer => claims["iss"] = "https://idp.evil.example".into(),
            Tamper::IssuerTrailingSlash => claims["iss"] = format!("{}/", self.issuer).into(),
            Tamper::Expired => {
                claims["iat"] = (now - 360).into();
                claims["exp"] = (now - 60).into();
            }
            Tamper::ForeignAzpAmongAudiences => {
                claims["aud"] = json!([CLIENT_ID, OTHER_CLIENT]);
                claims["azp"] = OTHER_CLIENT.into();
            }
            Tamper::ForeignAzp => claims["azp"] = OTHER_CLIENT.into(),
            Tamper::StringExp => claims["exp"] = "never".into(),
            Tamper::OtherSubject => claims["sub"] = "mallory".into(),
            _ => {}
        }
        let kid = self.keys.current().kid().to_owned();
        let unsigned = |header: &str| {
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        match st.tamper {
            Tamper::AlgNone => unsigned(r#"{"alg":"none","typ":"JWT"}"#) + ".",
            Tamper::AlgNoneMixedCase => unsigned(r#"{"alg":"nOnE","typ":"JWT"}"#) + ".",
            Tamper::AlgMissing => unsigned(r#"{"typ":"JWT"}"#) + ".",
            Tamper::TwoSegments => unsigned(&format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#)),
            Tamper::Hs256ClientSecret => {
                let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                head.kid = Some(kid);
                jsonwebtoken::encode(
                    &head,
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
                )
                .unwrap()
            }
            Tamper::UnknownKey => self.stranger.sign("JWT", &claims).unwrap(),
            Tamper::UnknownKeyPublishedKid => {
                let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                head.kid = Some(kid);
                let key =
                    jsonwebtoken::EncodingKey::from_ec_pem(self.stranger_pem.as_bytes()).unwrap();
                jsonwebtoken::encode(&head, &claims, &key).unwrap()
            }
            _ => self.keys.sign("JWT", &claims).unwrap(),
        }
    }

    /// `POST /introspect` (RFC 7662), for our client only.
    fn introspect(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        if basic_credentials(headers) != Some((CLIENT_ID.into(), CLIENT_SECRET.into())) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        let form = form(body);
        let mut st = self.state.lock().unwrap();
        st.introspection_requests += 1;
        let token = form
            .get("token")
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default();
        let answer = st
            .introspection
            .get(&token)
            .cloned()
            .unwrap_or(json!({"active": false}));
        json_reply(StatusCode::OK, &answer)
    }

    fn userinfo(&self, headers: &HeaderMap) -> Reply {
        let st = self.state.lock().unwrap();
        let subject = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| st.access_tokens.get(t));
        let Some(subject) = subject else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
        };
        let mut body = json!({ "sub": subject });
        if let Some((id_claims, extra)) = st.users.get(subject) {
            for (k, v) in id_claims
                .as_object()
                .unwrap()
                .iter()
                .chain(extra.as_object().unwrap())
            {
                body[k] = v.clone();
            }
        }
        json_reply(StatusCode::OK, &body)
    }

    async fn serve(self: Arc<Self>, base: String, req: Request<Incoming>) -> Reply {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let query = parts.uri.query().unwrap_or("");
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/.well-known/openid-configuration") => {
                json_reply(StatusCode::OK, &self.discovery(&base))
            }
            (&Method::GET, "/jwks") => json_reply(StatusCode::OK, &self.keys.jwks(self.now())),
            (&Method::GET, "/authorize") => self.authorize(query),
            (&Method::POST, "/token") => {
                let mode = {
                    let mut st = self.state.lock().unwrap();
                    st.token_requests += 1;
                    st.token_mode
                };
                match mode {
                    TokenMode::Normal => self.token(&parts.headers, &body),
                    TokenMode::ServerErrorJson => json_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": "server_error",
                                "error_description": "oops! something went wrong"}),
                    ),
                    TokenMode::ServerErrorHtml => Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .header(header::CONTENT_TYPE, "text/html")
                        .body(Full::new(Bytes::from_static(
                            b"<h1>Internal Server Error</h1>",
                        )))
                        .unwrap(),
                    TokenMode::Hang => std::future::pending::<Reply>().await,
                }
            }
            (&Method::GET, "/userinfo") => self.userinfo(&parts.headers),
            (&Method::POST, "/introspect") => self.introspect(&parts.headers, &body),
            _ => oauth_error(StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl FakeOp {
    async fn start(options: Options, clock: Arc<AtomicI64>) -> FakeOp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let stranger_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let users = HashMap::from([(
            "alice".to_owned(),
            (
                json!({"email": "alice@example.com", "email_verified": true, "name": "Alice"}),
                json!({"groups": ["payments", "staff"]}),
            ),
        )]);
        let op = Arc::new(Fake {
            issuer: base.clone(),
            keys: KeySet::generate(Algorithm::Es256, NOW - 3600).unwrap(),
            stranger: KeySet::generate(Algorithm::Es256, NOW - 3600).unwrap(),
            stranger_pem: stranger_pair.serialize_pem(),
            clock,
            state: Mutex::new(OpState {
                options,
                codes: HashMap::new(),
                refresh_tokens: HashMap::new(),
                access_tokens: HashMap::new(),
                introspection: HashMap::new(),
                introspection_requests: 0,
                users,
                tamper: Tamper::None,
                token_mode: TokenMode::Normal,
                token_requests: 0,
            }),
        });
        let server = {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                // Dropping the set (when this task is aborted) aborts every connection.
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let op = Arc::clone(&op);
                    let base = base.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let op = Arc::clone(&op);
                            let base = base.clone();
                            async move { Ok::<_, Infallible>(op.serve(base, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    while connections.try_join_next().is_some() {}
                }
            })
        };
        FakeOp { op, addr, server }
    }

    fn issuer(&self) -> &str {
        &self.op.issuer
    }

    fn set_tamper(&self, tamper: Tamper) {
        self.op.state.lock().unwrap().tamper = tamper;
    }

    fn set_token_mode(&self, mode: TokenMode) {
        self.op.state.lock().unwrap().token_mode = mode;
    }

    fn token_requests(&self) -> usize {
        self.op.state.lock().unwrap().token_requests
    }

    fn set_groups(&self, subject: &str, groups: Value) {
        let mut st = self.op.state.lock().unwrap();
        st.users.get_mut(subject).unwrap().1["groups"] = groups;
    }

    /// The provider forgets every refresh token it issued (the person was removed, or an
    /// administrator ended their sessions).
    fn revoke_refresh_tokens(&self) {
        self.op.state.lock().unwrap().refresh_tokens.clear();
    }

    fn issue_code(&self, grant: Grant) -> String {
        self.op.issue_code(grant)
    }

    /// What a browser does at the authorization URL: follows it to the provider and reads the
    /// redirect back to Portcullis. Returns the callback's query.
    async fn authorize(&self, authorize_url: &Url) -> String {
        assert_eq!(
            authorize_url.origin().ascii_serialization(),
            format!("http://{}", self.addr),
            "the authorization URL points at the provider"
        );
        let response = send(Method::GET, authorize_url.as_str(), HeaderMap::new(), "").await;
        assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
        let location = Url::parse(location(&response)).unwrap();
        assert_eq!(&location[..url::Position::AfterPath], REDIRECT);
        location.query().unwrap().to_owned()
    }
}

async fn send(method: Method, url: &str, headers: HeaderMap, body: &str) -> Response<Bytes> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    *request.headers_mut() = headers;
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

// ---- Portcullis's side ------------------------------------------------------------------------

fn settings(issuer: &str) -> IdpSettings {
    IdpSettings {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.into(),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        auth_params: BTreeMap::from([("login_hint".to_owned(), "alice".to_owned())]),
        redirect_url: REDIRECT.into(),
        allowed_audiences: Vec::new(),
    }
}

async fn discover(op: &FakeOp) -> IdpClient {
    crypto();
    IdpClient::discover(settings(op.issuer()), &Secret::new(CLIENT_SECRET))
        .await
        .expect("the fake provider is discovered")
}

/// A route for `https://app.example.com/` so that `return_to` there is accepted.
fn table(keys: Arc<KeySet>) -> Table {
    let route = Route {
        id: RouteId {
            kind: SourceKind::Route,
            namespace: "team-a".into(),
            name: "app".into(),
        },
        url: APP.into(),
        protocol: Protocol::Https,
        backends: Vec::new(),
        policy: Policy::deny_all(),
        options: Default::default(),
    };
    let mut builder = RouteTable::<Route>::builder();
    builder.add(
        Entry {
            host: HostPattern::Exact("app.example.com".into()),
            path: PathMatch::Prefix("/".into()),
            route: Arc::new(route),
            id: "Route team-a/app".into(),
        },
        (0, "team-a/app".into()),
    );
    let (routes, refused) = builder.build();
    assert!(refused.is_empty(), "{refused:?}");
    Table {
        routes,
        keys: Some(keys),
        ..Table::default()
    }
}

/// The fake provider, a discovered client, and the sign-in service over a memory store, all on
/// one injected clock.
struct Harness {
    op: FakeOp,
    now: Arc<AtomicI64>,
    client: Arc<IdpClient>,
    people: Arc<People>,
    store: Arc<MemoryStore>,
    table: Arc<Table>,
}

impl Harness {
    async fn start() -> Harness {
        Self::with(Options::default()).await
    }

    async fn with(options: Options) -> Harness {
        let now = Arc::new(AtomicI64::new(NOW));
        let op = FakeOp::start(options, Arc::clone(&now)).await;
        let client = Arc::new(discover(&op).await);
        let store = Arc::new(MemoryStore::new());
        let clock = {
            let now = Arc::clone(&now);
            Clock::from_fn(move || now.load(Ordering::SeqCst))
        };
        let people = Arc::new(People::new(
            Url::parse(AUTH).unwrap(),
            Idp::fixed(IdpState::Ready(Arc::clone(&client))),
            Arc::clone(&store) as Arc<dyn Store>,
            clock,
            SESSION_LIFETIME,
        ));
        let keys = Arc::new(KeySet::generate(Algorithm::Es256, NOW - 60).unwrap());
        Harness {
            op,
            now,
            client,
            people,
            store,
            table: Arc::new(table(keys)),
        }
    }

    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    /// A clock reading the harness's time.
    fn clock(&self) -> Clock {
        let now = Arc::clone(&self.now);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    }

    fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    fn sessions(&self) -> Vec<Arc<Session>> {
        self.store.sessions_of("alice", self.now())
    }

    /// `GET <auth>/.portcullis/sign_in?return_to=RETURN_TO`: the login cookie's value and the
    /// authorization URL.
    async fn sign_in(&self) -> (String, Url) {
        let query = format!(
            "return_to={}",
            url::form_urlencoded::byte_serialize(RETURN_TO.as_bytes()).collect::<String>()
        );
        let response = self
            .people
            .handle_auth(
                &self.table,
                &Method::GET,
                "/.portcullis/sign_in",
                Some(&query),
                &HeaderMap::new(),
                Bytes::new(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
        let cookie = set_cookie(&response, LOGIN_COOKIE).expect("a login cookie");
        assert!(!cookie.is_empty());
        (cookie, Url::parse(location(&response)).unwrap())
    }

    /// `GET <auth>/oauth2/callback?<query>` with the login cookie, if any.
    async fn callback(&self, query: &str, login_cookie: Option<&str>) -> Response<Bytes> {
        let mut headers = HeaderMap::new();
        if let Some(value) = login_cookie {
            headers.insert(
                header::COOKIE,
                HeaderValue::try_from(format!("{LOGIN_COOKIE}={value}")).unwrap(),
            );
        }
        self.people
            .handle_auth(
                &self.table,
                &Method::GET,
                "/oauth2/callback",
                Some(query),
                &headers,
                Bytes::new(),
            )
            .await
    }

    /// A sign-in through the handlers up to the provider's redirect back: the login cookie and
    /// the callback query.
    async fn to_callback(&self) -> (String, String) {
        let (cookie, url) = self.sign_in().await;
        let query = self.op.authorize(&url).await;
        (cookie, query)
    }

    /// A whole sign-in that must succeed; the session cookie's value.
    async fn signed_in(&self) -> String {
        let (cookie, query) = self.to_callback().await;
        let response = self.callback(&query, Some(&cookie)).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
        set_cookie(&response, SESSION_COOKIE).expect("a session cookie")
    }

    /// Asserts a refused callback: the status, a sign-in error page, no session anywhere, and
    /// no session cookie.
    fn assert_refused(&self, response: &Response<Bytes>, status: StatusCode, case: &str) {
        assert_eq!(response.status(), status, "{case}: {response:?}");
        let body = String::from_utf8_lossy(response.body());
        assert!(body.contains("Sign-in failed"), "{case}: {body}");
        assert!(
            set_cookie(response, SESSION_COOKIE).is_none(),
            "{case}: no session cookie"
        );
        assert!(self.sessions().is_empty(), "{case}: no session stored");
    }
}

fn location(response: &Response<impl std::fmt::Debug>) -> &str {
    response
        .headers()
        .get(header::LOCATION)
        .expect("a Location")
        .to_str()
        .unwrap()
}

/// The value `Set-Cookie` gives `name`, if the response sets it.
fn set_cookie(response: &Response<Bytes>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

fn query_of(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// One sign-in at the provider driven through `IdpClient` alone: the secrets and the code.
async fn login(h: &Harness) -> (LoginSecrets, String) {
    let secrets = LoginSecrets::random();
    let url = h.client.authorize_url(&secrets);
    let params = query_of(&url);
    assert_eq!(params["code_challenge"], s256(&secrets.verifier));
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["state"], secrets.state);
    assert_eq!(params["nonce"], secrets.nonce);
    let back: HashMap<String, String> =
        url::form_urlencoded::parse(h.op.authorize(&url).await.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(back["state"], secrets.state);
    (secrets, back["code"].clone())
}

// ---- the fake itself --------------------------------------------------------------------------

/// The cases below only mean something if the fake refuses what a real provider refuses.
#[tokio::test]
async fn the_fake_provider_enforces_client_authentication_and_pkce() {
    let now = Arc::new(AtomicI64::new(NOW));
    let op = FakeOp::start(Options::default(), now).await;
    let token_url = format!("{}/token", op.issuer());
    let verifier = "a-verifier-of-sufficient-length-0123456789abcdef";
    let code = |op: &FakeOp| {
        op.issue_code(Grant {
            client_id: CLIENT_ID.into(),
            challenge: s256(verifier),
            nonce: "n".into(),
            redirect_uri: REDIRECT.into(),
            subject: "alice".into(),
        })
    };
    let basic = |id: &str, secret: &str| {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::try_from(format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
            ))
            .unwrap(),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    };
    let grant = |code: &str, verifier: Option<&str>| {
        let mut body = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}",
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
        );
        if let Some(v) = verifier {
            body.push_str(&format!("&code_verifier={v}"));
        }
        body
    };
    let error = |r: &Response<Bytes>| -> String {
        serde_json::from_slice::<Value>(r.body()).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let c = code(&op);
    let r = send(
        Method::POST,
        &token_url,
        basic(CLIENT_ID, "wrong"),
        &grant(&c, Some(verifier)),
    )
    .await;
    assert_eq!(
        (r.status(), error(&r).as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    for missing_or_wrong in [
        None,
        Some(""),
        Some("another-verifier-0123456789abcdef0123456789"),
    ] {
        let c = code(&op);
        let r = send(
            Method::POST,
            &token_url,
            basic(CLIENT_ID, CLIENT_SECRET),
            &grant(&c, missing_or_wrong),
        )
        .await;
        assert_eq!(
            (r.status(), error(&r).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_grant"),
            "{missing_or_wrong:?}"
        );
    }

    let c = code(&op);
    let r = send(
        Method::POST,
        &token_url,
        basic(CLIENT_ID, CLIENT_SECRET),
        &grant(&c, Some(verifier)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{r:?}");
    let again = send(
        Method::POST,
        &token_url,
        basic(CLIENT_ID, CLIENT_SECRET),
        &grant(&c, Some(verifier)),
    )
    .await;
    assert_eq!(error(&again), "invalid_grant", "a code is single use");
}

// ---- IdpClient --------------------------------------------------------------------------------

#[tokio::test]
async fn a_code_is_redeemed_with_pkce_into_verified_claims_and_userinfo() {
    let h = Harness::start().await;
    assert_eq!(h.client.issuer(), h.op.issuer());
    let (secrets, code) = login(&h).await;
    let url = h.client.authorize_url(&secrets);
    let params = query_of(&url);
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], REDIRECT);
    assert_eq!(params["response_type"], "code");
    let mut scopes: Vec<&str> = params["scope"].split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["email", "openid", "profile"]);
    assert_eq!(params["login_hint"], "alice", "authParams are carried");

    let tokens = h
        .client
        .exchange_code(&code, &secrets.verifier, &secrets.nonce, NOW)
        .await
        .expect("the code is redeemed");
    let c = &tokens.claims;
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["name"], "Alice");
    assert_eq!(
        c["groups"],
        json!(["payments", "staff"]),
        "userinfo is merged"
    );
    for housekeeping in ["iss", "aud", "exp", "iat", "nonce", "auth_time"] {
        assert!(
            !c.contains_key(housekeeping),
            "{housekeeping} is not a person's claim"
        );
    }
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.id_token.is_some());
    assert_eq!(tokens.access_expires_at, Some(NOW + ACCESS_LIFETIME));
    assert_eq!(h.op.token_requests(), 1);
}

#[tokio::test]
async fn id_tokens_that_fail_verification_are_refused() {
    let h = Harness::start().await;
    for tamper in Tamper::ALL {
        h.op.set_tamper(tamper);
        let (secrets, code) = login(&h).await;
        let outcome = h
            .client
            .exchange_code(&code, &secrets.verifier, &secrets.nonce, NOW)
            .await;
        assert_invalid_id_token(&outcome, tamper);
    }
}

fn assert_invalid_id_token(outcome: &Result<IdpTokens, IdpError>, tamper: Tamper) {
    match outcome {
        Err(IdpError::InvalidIdToken(why)) => {
            assert!(why.contains(tamper.reason()), "{tamper:?}: {why}");
        }
        other => panic!("{tamper:?}: {other:?}"),
    }
}

/// Providers such as Keycloak and Auth0 list `HS256` (and some `none`) among their id_token
/// algorithms; the id_token must still be signed by a key of the provider's JWKS.
#[tokio::test]
async fn symmetric_and_unsigned_id_tokens_are_refused_even_when_the_provider_lists_them() {
    let h = Harness::with(Options {
        id_token_algs: vec!["ES256", "HS256", "none"],
        ..Options::default()
    })
    .await;
    for tamper in [Tamper::Hs256ClientSecret, Tamper::AlgNone] {
        h.op.set_tamper(tamper);
        let (secrets, code) = login(&h).await;
        let outcome = h
            .client
            .exchange_code(&code, &secrets.verifier, &secrets.nonce, NOW)
            .await;
        assert_invalid_id_token(&outcome, tamper);
    }
    h.op.set_tamper(Tamper::None);
    let (secrets, code) = login(&h).await;
    h.client
        .exchange_code(&code, &secrets.verifier, &secrets.nonce, NOW)
        .await
        .expect("an ES256 id_token still passes");
}

#[tokio::test]
async fn id_token_expiry_is_judged_at_the_given_time() {
    let h = Harness::start().await;
    // Issued at NOW, valid for ACCESS_LIFETIME: fine just before, refused at expiry.
    let (secrets, code) = login(&h).await;
    h.client
        .exchange_code(
            &code,
            &secrets.verifier,
            &secrets.nonce,
            NOW + ACCESS_LIFETIME - 1,
        )
        .await
        .expect("valid until exp");
    let (secrets, code) = login(&h).await;
    let late = h
        .client
        .exchange_code(
            &code,
            &secrets.verifier,
            &secrets.nonce,
            NOW + ACCESS_LIFETIME,
        )
        .await;
    assert_invalid_id_token(&late, Tamper::Expired);
}

#[tokio::test]
async fn a_missing_or_wrong_pkce_verifier_is_refused_by_the_provider() {
    let h = Harness::start().await;
    let (secrets, code) = login(&h).await;
    let missing = h.client.exchange_code(&code, "", &secrets.nonce, NOW).await;
    assert!(
        matches!(&missing, Err(IdpError::Refused(code)) if code == "invalid_grant"),
        "{missing:?}"
    );
    let (secrets, code) = login(&h).await;
    let other = LoginSecrets::random();
    let wrong = h
        .client
        .exchange_code(&code, &other.verifier, &secrets.nonce, NOW)
        .await;
    assert!(
        matches!(&wrong, Err(IdpError::Refused(code)) if code == "invalid_grant"),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn refresh_returns_new_claims_and_an_unknown_token_is_refused() {
    let h = Harness::start().await;
    let (secrets, code) = login(&h).await;
    let first = h
        .client
        .exchange_code(&code, &secrets.verifier, &secrets.nonce, NOW)
        .await
        .unwrap();
    h.op.set_groups("alice", json!(["payments", "admins"]));
    let later = NOW + 600;
    h.now.store(later, Ordering::SeqCst);
    let refreshed = h
        .client
        .refresh(first.refresh_token.as_ref().unwrap(), &first.claims, later)
        .await
        .expect("the refresh token is good");
    assert_eq!(refreshed.claims["sub"], "alice");
    assert_eq!(refreshed.claims["groups"], json!(["payments", "admins"]));
    assert_eq!(refreshed.access_expires_at, Some(later + ACCESS_LIFETIME));
    let rotated = refreshed.refresh_token.as_ref().unwrap();
    assert_ne!(
        rotated.expose(),
        first.refresh_token.as_ref().unwrap().expose()
    );

    let unknown = h
        .client
        .refresh(&Secret::new("not-a-refresh-token"), &first.claims, later)
        .await;
    assert!(
        matches!(&unknown, Err(IdpError::Refused(code)) if code == "invalid_grant"),
        "{unknown:?}"
    );

    // A refreshed id_token for someone else is refused.
    h.op.set_tamper(Tamper::OtherSubject);
    let other = h.client.refresh(rotated, &first.claims, later).await;
    assert_invalid_id_token(&other, Tamper::OtherSubject);
}

#[tokio::test]
async fn end_session_url_carries_the_hint_the_return_and_the_client() {
    let h = Harness::start().await;
    assert!(h.client.has_end_session());
    let url = h
        .client
        .end_session_url(
            Some(&Secret::new("the-id-token")),
            "https://auth.example.com/.portcullis/signed_out",
        )
        .expect("the provider has an end-session endpoint");
    assert_eq!(
        &url[..url::Position::AfterPath],
        format!("{}/end_session", h.op.issuer())
    );
    let params = query_of(&url);
    assert_eq!(params["id_token_hint"], "the-id-token");
    assert_eq!(
        params["post_logout_redirect_uri"],
        "https://auth.example.com/.portcullis/signed_out"
    );
    assert_eq!(params["client_id"], CLIENT_ID);

    let without = Harness::with(Options {
        end_session: false,
        ..Options::default()
    })
    .await;
    assert!(!without.client.has_end_session());
    assert!(
        without
            .client
            .end_session_url(Some(&Secret::new("t")), "https://auth.example.com/x")
            .is_none()
    );
}

// ---- the handlers -----------------------------------------------------------------------------

#[tokio::test]
async fn a_sign_in_through_the_handlers_creates_a_session_and_hands_it_off() {
    let h = Harness::start().await;
    let (cookie, url) = h.sign_in().await;
    let params = query_of(&url);
    let login = session::verify_login_state(
        h.table.keys.as_deref(),
        &cookie,
        "https://auth.example.com",
        NOW,
    )
    .expect("the login cookie is a signed login state");
    assert_eq!(params["state"], login.state);
    assert_eq!(params["nonce"], login.nonce);
    assert_eq!(params["code_challenge"], s256(&login.verifier));
    assert_eq!(login.return_to, RETURN_TO);

    let query = h.op.authorize(&url).await;
    let response = h.callback(&query, Some(&cookie)).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
    let token = set_cookie(&response, SESSION_COOKIE).expect("Set-Cookie: _portcullis=");
    assert_eq!(
        set_cookie(&response, LOGIN_COOKIE).as_deref(),
        Some(""),
        "login cookie cleared"
    );
    let handoff = Url::parse(location(&response)).unwrap();
    assert_eq!(
        &handoff[..url::Position::AfterPath],
        "https://app.example.com/.portcullis/callback"
    );
    assert!(query_of(&handoff).contains_key("handoff"));

    let sessions = h.sessions();
    assert_eq!(sessions.len(), 1);
    let stored = &sessions[0];
    assert_eq!(stored.subject, "alice");
    assert_eq!(stored.issuer, h.op.issuer());
    assert_eq!(stored.expires_at, NOW + SESSION_LIFETIME.as_secs() as i64);
    assert_eq!(stored.claims["groups"], json!(["payments", "staff"]));
    assert!(stored.idp_refresh_token.is_some());
    assert!(stored.idp_id_token.is_some());

    let verified = h.people.verify_session(&h.table, &token).unwrap();
    assert_eq!(verified.sid, stored.id);
    assert_eq!(verified.identity.subject, "alice");
    assert_eq!(
        verified.identity.email.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(verified.identity.groups, ["payments", "staff"]);
    assert_eq!(verified.refresh_after, NOW + ACCESS_LIFETIME);

    // The route host completes the hand-off and returns to the exact original URL.
    let done = h
        .people
        .route_callback(
            &h.table,
            APP,
            portcullis::routing::Scheme::Https,
            handoff.query(),
        )
        .await;
    assert_eq!(done.status(), StatusCode::FOUND, "{done:?}");
    assert_eq!(location(&done), "/reports?x=1");
    assert_eq!(set_cookie(&done, SESSION_COOKIE), Some(token));
}

#[tokio::test]
async fn a_callback_with_a_bad_id_token_is_400_and_creates_no_session() {
    let h = Harness::start().await;
    for tamper in Tamper::ALL {
        h.op.set_tamper(tamper);
        let (cookie, query) = h.to_callback().await;
        let response = h.callback(&query, Some(&cookie)).await;
        h.assert_refused(&response, StatusCode::BAD_REQUEST, &format!("{tamper:?}"));
    }
}

#[tokio::test]
async fn a_callback_whose_code_fails_pkce_is_400() {
    let h = Harness::start().await;
    // The provider bound the code to a challenge that this browser's verifier does not match.
    let (cookie, url) = h.sign_in().await;
    let params = query_of(&url);
    let code = h.op.issue_code(Grant {
        client_id: CLIENT_ID.into(),
        challenge: s256(&LoginSecrets::random().verifier),
        nonce: params["nonce"].clone(),
        redirect_uri: REDIRECT.into(),
        subject: "alice".into(),
    });
    let query = format!("code={code}&state={}", params["state"]);
    let response = h.callback(&query, Some(&cookie)).await;
    h.assert_refused(&response, StatusCode::BAD_REQUEST, "wrong verifier");
    assert_eq!(h.op.token_requests(), 1);

    // Not even a login state signed with our own key is redeemed without a verifier.
    let (_, url) = h.sign_in().await;
    let params = query_of(&url);
    let keys = h.table.keys.as_deref().unwrap();
    let forged = session::sign_login_state(
        keys,
        "https://auth.example.com",
        &LoginState {
            state: params["state"].clone(),
            nonce: params["nonce"].clone(),
            verifier: String::new(),
            return_to: RETURN_TO.into(),
            programmatic: false,
            expires: NOW + 600,
        },
    )
    .unwrap();
    let query = h.op.authorize(&url).await;
    let response = h.callback(&query, Some(&forged)).await;
    h.assert_refused(&response, StatusCode::BAD_REQUEST, "no verifier");
    assert_eq!(h.op.token_requests(), 1, "nothing was sent to the provider");
}

#[tokio::test]
async fn an_injected_code_is_refused() {
    let h = Harness::start().await;
    // The attacker's own sign-in: a code bound to the attacker's challenge and nonce.
    let (_, attacker_url) = h.sign_in().await;
    let attacker_query = h.op.authorize(&attacker_url).await;
    let attacker_code = url::form_urlencoded::parse(attacker_query.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    // The victim's browser, with its own login cookie and state, is made to deliver it.
    let (cookie, url) = h.sign_in().await;
    let state = query_of(&url)["state"].clone();
    let response = h
        .callback(
            &format!("code={attacker_code}&state={state}"),
            Some(&cookie),
        )
        .await;
    h.assert_refused(&response, StatusCode::BAD_REQUEST, "PKCE stops it");

    // At a provider that did not bind the code to the challenge, the nonce still stops it.
    let (cookie, url) = h.sign_in().await;
    let params = query_of(&url);
    let code = h.op.issue_code(Grant {
        client_id: CLIENT_ID.into(),
        challenge: params["code_challenge"].clone(),
        nonce: query_of(&attacker_url)["nonce"].clone(),
        redirect_uri: REDIRECT.into(),
        subject: "alice".into(),
    });
    let response = h
        .callback(
            &format!("code={code}&state={}", params["state"]),
            Some(&cookie),
        )
        .await;
    h.assert_refused(&response, StatusCode::BAD_REQUEST, "the nonce stops it");
    assert_eq!(h.op.token_requests(), 2);
}

#[tokio::test]
async fn a_callback_with_missing_foreign_or_replayed_state_is_400() {
    let h = Harness::start().await;
    let (cookie, query) = h.to_callback().await;
    let code = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    let missing = h.callback(&format!("code={code}"), Some(&cookie)).await;
    h.assert_refused(&missing, StatusCode::BAD_REQUEST, "missing state");

    let (_, other_url) = h.sign_in().await;
    let foreign_state = query_of(&other_url)["state"].clone();
    let foreign = h
        .callback(&format!("code={code}&state={foreign_state}"), Some(&cookie))
        .await;
    h.assert_refused(&foreign, StatusCode::BAD_REQUEST, "foreign state");

    let no_cookie = h.callback(&query, None).await;
    h.assert_refused(&no_cookie, StatusCode::BAD_REQUEST, "no login cookie");

    let repeated = h.callback(&format!("{query}&state=x"), Some(&cookie)).await;
    h.assert_refused(&repeated, StatusCode::BAD_REQUEST, "repeated state");
    assert_eq!(
        h.op.token_requests(),
        0,
        "none of these reached the provider"
    );

    let first = h.callback(&query, Some(&cookie)).await;
    assert_eq!(first.status(), StatusCode::FOUND, "{first:?}");
    assert_eq!(h.sessions().len(), 1);
    let replayed = h.callback(&query, Some(&cookie)).await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST, "{replayed:?}");
    assert!(set_cookie(&replayed, SESSION_COOKIE).is_none());
    assert_eq!(
        h.sessions().len(),
        1,
        "the replay created no second session"
    );
    assert_eq!(
        h.op.token_requests(),
        1,
        "the replay never reached the provider"
    );
}

#[tokio::test]
async fn a_token_endpoint_that_fails_is_502_and_creates_no_session() {
    let h = Harness::start().await;
    for mode in [TokenMode::ServerErrorJson, TokenMode::ServerErrorHtml] {
        h.op.set_token_mode(mode);
        let (cookie, query) = h.to_callback().await;
        let response = h.callback(&query, Some(&cookie)).await;
        h.assert_refused(&response, StatusCode::BAD_GATEWAY, &format!("{mode:?}"));
    }
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_502_and_creates_no_session() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let h = Harness::with(Options {
        token_endpoint: Some(dead),
        ..Options::default()
    })
    .await;
    let (secrets, code) = login(&h).await;
    let direct = h
        .client
        .exchange_code(&code, &secrets.verifier, &secrets.nonce, NOW)
        .await;
    assert!(matches!(direct, Err(IdpError::Http(_))), "{direct:?}");

    let (cookie, query) = h.to_callback().await;
    let response = h.callback(&query, Some(&cookie)).await;
    h.assert_refused(&response, StatusCode::BAD_GATEWAY, "unreachable");
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_times_out_into_502() {
    let h = Harness::start().await;
    h.op.set_token_mode(TokenMode::Hang);
    let (cookie, query) = h.to_callback().await;
    let started = tokio::time::Instant::now();
    let pending = {
        let (people, table) = (Arc::clone(&h.people), Arc::clone(&h.table));
        tokio::spawn(async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::COOKIE,
                HeaderValue::try_from(format!("{LOGIN_COOKIE}={cookie}")).unwrap(),
            );
            people
                .handle_auth(
                    &table,
                    &Method::GET,
                    "/oauth2/callback",
                    Some(&query),
                    &headers,
                    Bytes::new(),
                )
                .await
        })
    };
    // Once the provider holds the request, let the test clock run to the request timeout.
    for _ in 0..500 {
        if h.op.token_requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.op.token_requests(), 1);
    tokio::time::pause();
    let response = pending.await.unwrap();
    assert!(
        started.elapsed() >= REQUEST_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    h.assert_refused(&response, StatusCode::BAD_GATEWAY, "timeout");
}

// ---- silent refresh through the handlers ------------------------------------------------------

#[tokio::test]
async fn a_due_session_is_renewed_with_new_claims_and_ended_when_the_provider_refuses() {
    let h = Harness::start().await;
    let token = h.signed_in().await;
    let current = h.people.verify_session(&h.table, &token).unwrap();
    assert!(
        matches!(h.people.refresh(&h.table, &current).await, Refresh::Keep),
        "not due yet"
    );
    assert_eq!(h.op.token_requests(), 1);

    h.op.set_groups("alice", json!(["payments", "admins"]));
    h.advance(ACCESS_LIFETIME + 1);
    let Refresh::Renewed {
        token: renewed,
        verified,
    } = h.people.refresh(&h.table, &current).await
    else {
        panic!("the session is renewed");
    };
    assert_eq!(verified.sid, current.sid, "same session");
    assert_eq!(
        verified.expires, current.expires,
        "a refresh does not extend the session"
    );
    assert_eq!(verified.identity.groups, ["payments", "admins"]);
    assert_eq!(verified.refresh_after, h.now() + ACCESS_LIFETIME);
    assert_ne!(renewed, token);
    let stored = h.store.session(&current.sid, h.now()).unwrap();
    assert_eq!(stored.claims["groups"], json!(["payments", "admins"]));
    assert_eq!(stored.refreshed_at, h.now());

    h.op.revoke_refresh_tokens();
    h.advance(ACCESS_LIFETIME + 1);
    let ended = h.people.refresh(&h.table, &verified).await;
    assert!(matches!(ended, Refresh::Ended), "{ended:?}");
    assert!(h.store.is_revoked(&format!("session:{}", current.sid)));
    assert!(h.store.session(&current.sid, h.now()).is_none());
    assert!(h.people.verify_session(&h.table, &renewed).is_err());
}

#[tokio::test]
async fn a_provider_failing_at_refresh_leaves_the_session_as_it_is() {
    let h = Harness::start().await;
    let token = h.signed_in().await;
    let current = h.people.verify_session(&h.table, &token).unwrap();
    h.advance(ACCESS_LIFETIME + 1);
    for mode in [TokenMode::ServerErrorJson, TokenMode::ServerErrorHtml] {
        h.op.set_token_mode(mode);
        let outcome = h.people.refresh(&h.table, &current).await;
        assert!(matches!(outcome, Refresh::Keep), "{mode:?}: {outcome:?}");
        assert!(
            !h.store.is_revoked(&format!("session:{}", current.sid)),
            "{mode:?}"
        );
        assert!(h.store.session(&current.sid, h.now()).is_some(), "{mode:?}");
        // The provider is not asked again for a minute, even once it works again.
        h.op.set_token_mode(TokenMode::Normal);
        assert!(matches!(
            h.people.refresh(&h.table, &current).await,
            Refresh::Keep
        ));
        h.advance(portcullis::identity::people::REFRESH_RETRY_SECS + 1);
    }
    assert!(matches!(
        h.people.refresh(&h.table, &current).await,
        Refresh::Renewed { .. }
    ));
}

// ---- token exchange and the provider's own tokens on routes -----------------------------------

impl FakeOp {
    /// An id_token as the provider issues it now (no nonce), made wrong by `tamper`.
    fn mint_id_token(&self, subject: &str, tamper: Tamper) -> String {
        let mut st = self.op.state.lock().unwrap();
        let before = std::mem::replace(&mut st.tamper, tamper);
        let token = self.op.id_token(&st, subject, None, self.op.now());
        st.tamper = before;
        token
    }

    /// A JWT signed by the provider's key with `claims` and header `typ`.
    fn mint_signed(&self, typ: &str, claims: &Value) -> String {
        self.op.keys.sign(typ, claims).unwrap()
    }
}

impl Harness {
    /// The sign-in service over the same provider, store and clock, with another client
    /// configuration and session lifetime.
    async fn people_with(&self, settings: IdpSettings, lifetime: Duration) -> Arc<People> {
        let client = IdpClient::discover(settings, &Secret::new(CLIENT_SECRET))
            .await
            .unwrap();
        Arc::new(People::new(
            Url::parse(AUTH).unwrap(),
            Idp::fixed(IdpState::Ready(Arc::new(client))),
            Arc::clone(&self.store) as Arc<dyn Store>,
            self.clock(),
            lifetime,
        ))
    }

    /// The identity endpoints of `AUTH` exchanging through `people`.
    fn identity_service(&self, people: &Arc<People>) -> IdentityService {
        bare_identity_service(self.clock()).with_people(Arc::clone(people))
    }
}

#[tokio::test]
async fn an_id_token_is_exchanged_for_a_session_that_never_outlives_it() {
    let h = Harness::start().await;
    let id_token = h.op.mint_id_token("alice", Tamper::None);
    let exchanged = h
        .people
        .exchange_id_token(&h.table, &id_token)
        .await
        .unwrap();
    let session = h.people.verify_session(&h.table, &exchanged.token).unwrap();
    assert_eq!(session.identity.subject, "alice");
    assert_eq!(session.identity.email.as_deref(), Some("alice@example.com"));
    assert!(session.identity.email_verified);
    assert_eq!(
        exchanged.expires,
        NOW + ACCESS_LIFETIME,
        "the session ends with the id_token"
    );
    assert_eq!(session.expires, exchanged.expires);
    let stored = h.store.session(&session.sid, h.now()).unwrap();
    assert_eq!(stored.subject, "alice");
    assert!(
        stored.idp_refresh_token.is_none(),
        "nothing to refresh with"
    );

    // The same id_token again: the same session, not a second one.
    let again = h
        .people
        .exchange_id_token(&h.table, &id_token)
        .await
        .unwrap();
    let again = h.people.verify_session(&h.table, &again.token).unwrap();
    assert_eq!(again.sid, session.sid);
    assert_eq!(h.sessions().len(), 1);

    // A fresher id_token gives a later end.
    h.advance(100);
    let fresh = h.op.mint_id_token("alice", Tamper::None);
    let renewed = h.people.exchange_id_token(&h.table, &fresh).await.unwrap();
    assert_eq!(renewed.expires, NOW + 100 + ACCESS_LIFETIME);

    // Signed out: the id_token of that session is not exchanged again.
    h.store
        .revoke(&format!("session:{}", session.sid), session.expires)
        .await
        .unwrap();
    assert_eq!(
        h.people
            .exchange_id_token(&h.table, &id_token)
            .await
            .unwrap_err(),
        ExchangeRefusal::SignedOut
    );

    // Never longer than sessionLifetime.
    let short = h
        .people_with(settings(h.op.issuer()), Duration::from_secs(60))
        .await;
    let capped = short
        .exchange_id_token(&h.table, &h.op.mint_id_token("alice", Tamper::None))
        .await
        .unwrap();
    assert_eq!(capped.expires, h.now() + 60);
}

#[tokio::test]
async fn bad_id_tokens_are_not_exchanged_and_create_no_session() {
    let h = Harness::start().await;
    for tamper in Tamper::ALL {
        let id_token = h.op.mint_id_token("alice", tamper);
        let outcome = h.people.exchange_id_token(&h.table, &id_token).await;
        if tamper == Tamper::Nonce {
            // An exchanged id_token was not obtained for us: its nonce is not ours to check.
            assert!(outcome.is_ok(), "{tamper:?}: {outcome:?}");
            continue;
        }
        let Err(ExchangeRefusal::SubjectToken(rejection)) = outcome else {
            panic!("{tamper:?}: {outcome:?}");
        };
        let expected = match tamper {
            Tamper::Audience | Tamper::AudienceOtherCase => Some(IdpTokenRejection::Audience),
            Tamper::ForeignAzp | Tamper::ForeignAzpAmongAudiences => {
                Some(IdpTokenRejection::Audience)
            }
            Tamper::Issuer | Tamper::IssuerTrailingSlash => Some(IdpTokenRejection::Issuer),
            Tamper::Expired => Some(IdpTokenRejection::Expired),
            Tamper::UnknownKeyPublishedKid => Some(IdpTokenRejection::Signature),
            Tamper::StringExp | Tamper::TwoSegments => Some(IdpTokenRejection::Malformed),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(rejection, expected, "{tamper:?}");
        }
    }
    assert_eq!(h.sessions().len(), 1, "only the nonce case made a session");

    // Another kind of token of the same provider, with an id_token's claims.
    let claims = json!({"iss": h.op.issuer(), "sub": "alice", "aud": CLIENT_ID,
        "iat": h.now(), "exp": h.now() + 60});
    for typ in ["at+jwt", "application/at+jwt", "logout+jwt"] {
        let token = h.op.mint_signed(typ, &claims);
        assert_eq!(
            h.people
                .exchange_id_token(&h.table, &token)
                .await
                .unwrap_err(),
            ExchangeRefusal::SubjectToken(IdpTokenRejection::NotAnIdToken),
            "{typ}"
        );
    }
    // Our own session token is not the provider's id_token.
    let ours = h.signed_in().await;
    assert!(matches!(
        h.people.exchange_id_token(&h.table, &ours).await,
        Err(ExchangeRefusal::SubjectToken(_))
    ));
    for junk in ["", "a.b.c", "not a token", &"x".repeat(10_000)] {
        assert!(matches!(
            h.people.exchange_id_token(&h.table, junk).await,
            Err(ExchangeRefusal::SubjectToken(IdpTokenRejection::Malformed))
        ));
    }
}

#[tokio::test]
async fn allowed_audiences_add_exactly_the_listed_audiences() {
    let h = Harness::start().await;
    let mut widened = settings(h.op.issuer());
    widened.allowed_audiences = vec![OTHER_CLIENT.into()];
    let people = h.people_with(widened, SESSION_LIFETIME).await;
    for tamper in [
        Tamper::Audience,
        Tamper::ForeignAzp,
        Tamper::ForeignAzpAmongAudiences,
    ] {
        let id_token = h.op.mint_id_token("alice", tamper);
        assert!(
            h.people
                .exchange_id_token(&h.table, &id_token)
                .await
                .is_err(),
            "{tamper:?} without allowedAudiences"
        );
        let exchanged = people
            .exchange_id_token(&h.table, &id_token)
            .await
            .unwrap_or_else(|e| panic!("{tamper:?} with allowedAudiences: {e:?}"));
        // Another client's id_token is no end-session hint for our client.
        let sid = people
            .verify_session(&h.table, &exchanged.token)
            .unwrap()
            .sid;
        let stored = h.store.session(&sid, h.now()).unwrap();
        assert!(stored.idp_id_token.is_none(), "{tamper:?}");
    }
    let ours = h.op.mint_id_token("alice", Tamper::None);
    let exchanged = people.exchange_id_token(&h.table, &ours).await.unwrap();
    let sid = people
        .verify_session(&h.table, &exchanged.token)
        .unwrap()
        .sid;
    assert!(
        h.store
            .session(&sid, h.now())
            .unwrap()
            .idp_id_token
            .is_some()
    );
    // Several audiences and no azp: whom it was issued to is not said, so it is refused.
    let claims = json!({"iss": h.op.issuer(), "sub": "alice", "aud": [CLIENT_ID, OTHER_CLIENT],
        "iat": h.now(), "exp": h.now() + 60});
    assert_eq!(
        people
            .exchange_id_token(&h.table, &h.op.mint_signed("JWT", &claims))
            .await
            .unwrap_err(),
        ExchangeRefusal::SubjectToken(IdpTokenRejection::Audience)
    );
}

/// The identity endpoints of `AUTH`, without people's sign-in.
fn bare_identity_service(clock: Clock) -> IdentityService {
    IdentityService::new(
        IdentityConfig {
            issuer: Url::parse(AUTH).unwrap(),
            access_token_audience: "portcullis".into(),
            signing_algorithm: Algorithm::Es256,
            body_read_timeout: Duration::from_secs(5),
            clock,
        },
        Arc::new(portcullis::metrics::Metrics::new()),
    )
}

async fn call(
    service: &IdentityService,
    table: &Table,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: String,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{AUTH}{path}"))
        .header(header::HOST, "auth.example.com");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let handled = service
        .handle(
            table,
            request,
            "127.0.0.1".parse().unwrap(),
            portcullis::routing::Scheme::Https,
        )
        .await;
    let (parts, body) = handled.response.into_parts();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const EXCHANGE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token";

#[tokio::test]
async fn the_token_endpoint_exchanges_id_tokens_as_rfc_8693_says() {
    let h = Harness::start().await;
    let service = h.identity_service(&h.people);
    let id_token = h.op.mint_id_token("alice", Tamper::None);
    let token = |extra: &str| format!("{EXCHANGE}&subject_token={id_token}{extra}");

    let (status, headers, body) = call(
        &service,
        &h.table,
        Method::POST,
        "/oauth2/token",
        FORM,
        token(""),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], ACCESS_LIFETIME);
    assert!(body.get("refresh_token").is_none() && body.get("scope").is_none());
    let session = h
        .people
        .verify_session(&h.table, body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(session.identity.subject, "alice");

    let jwt = token(
        "&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=https%3A%2F%2Fauth.example.com%2F&resource=https%3A%2F%2Fauth.example.com",
    );
    let (status, _, body) =
        call(&service, &h.table, Method::POST, "/oauth2/token", FORM, jwt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    let (_, _, body) = call(
        &service,
        &h.table,
        Method::GET,
        "/.well-known/openid-configuration",
        None,
        String::new(),
    )
    .await;
    assert_eq!(
        body["grant_types_supported"],
        json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );

    let expired = h.op.mint_id_token("alice", Tamper::Expired);
    let foreign = h.op.mint_id_token("alice", Tamper::Audience);
    let basic = {
        let mut r = token("");
        r.push_str("&client_id=x&client_secret=y");
        r
    };
    for (body, status, code) in [
        (
            format!("{EXCHANGE}&subject_token={expired}"),
            400,
            "invalid_request",
        ),
        (
            format!("{EXCHANGE}&subject_token={foreign}"),
            400,
            "invalid_request",
        ),
        (
            format!("{EXCHANGE}&subject_token=a.b.c"),
            400,
            "invalid_request",
        ),
        (EXCHANGE.to_owned(), 400, "invalid_request"),
        (basic, 400, "invalid_request"),
        (token("&scope=route%3Aadmin"), 400, "invalid_scope"),
        (
            token("&audience=https%3A%2F%2Fother.example.com"),
            400,
            "invalid_target",
        ),
        (
            token("&resource=https%3A%2F%2Fapp.example.com%2F"),
            400,
            "invalid_target",
        ),
        (
            token("&actor_token=x&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"),
            400,
            "invalid_request",
        ),
        (
            token("&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Arefresh_token"),
            400,
            "invalid_request",
        ),
        (
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={id_token}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
            ),
            400,
            "invalid_request",
        ),
        (
            token(&format!("&subject_token={id_token}")),
            400,
            "invalid_request",
        ),
    ] {
        let (got, _, answer) = call(
            &service,
            &h.table,
            Method::POST,
            "/oauth2/token",
            FORM,
            body.clone(),
        )
        .await;
        assert_eq!(
            (got.as_u16(), answer["error"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        let description = answer["error_description"].as_str().unwrap();
        assert!(!description.contains(&id_token[..20]), "{description}");
    }
    assert_eq!(h.sessions().len(), 1, "refused exchanges stored nothing");
}

#[tokio::test]
async fn pomerium_api_v1_token_answers_token_and_expiry() {
    let h = Harness::start().await;
    let service = h.identity_service(&h.people);
    let id_token = h.op.mint_id_token("alice", Tamper::None);
    let (status, headers, body) = call(
        &service,
        &h.table,
        Method::POST,
        "/api/v1/token",
        FORM,
        format!("id_token={id_token}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let session = h
        .people
        .verify_session(&h.table, body["Token"].as_str().unwrap())
        .unwrap();
    assert_eq!(session.identity.subject, "alice");
    let expiry = body["Expiry"].as_str().unwrap();
    assert_eq!(
        expiry.parse::<jiff::Timestamp>().unwrap().as_second(),
        NOW + ACCESS_LIFETIME,
        "{expiry}"
    );

    let expired = h.op.mint_id_token("alice", Tamper::Expired);
    let (status, headers, body) = call(
        &service,
        &h.table,
        Method::POST,
        "/api/v1/token",
        FORM,
        format!("id_token={expired}"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    assert_eq!(body["error_description"], "the token has expired");
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );

    for (method, content_type, form, status, code) in [
        (Method::POST, FORM, String::new(), 400, "invalid_request"),
        (
            Method::POST,
            FORM,
            format!("id_token={id_token}&id_token={id_token}"),
            400,
            "invalid_request",
        ),
        // Encodings the token endpoint refuses are refused here too (a lenient parser would
        // take `%zz` literally and `%ff` as U+FFFD).
        (
            Method::POST,
            FORM,
            format!("id_token={id_token}&x=%zz"),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            FORM,
            format!("id_token={id_token}%ff"),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            Some("application/json"),
            format!("{{\"id_token\":\"{id_token}\"}}"),
            415,
            "invalid_request",
        ),
        (Method::GET, None, String::new(), 405, "invalid_request"),
    ] {
        let (got, _, answer) = call(
            &service,
            &h.table,
            method.clone(),
            "/api/v1/token",
            content_type,
            form,
        )
        .await;
        assert_eq!(
            (got.as_u16(), answer["error"].as_str()),
            (status, Some(code)),
            "{method} {answer}"
        );
    }

    // Without people's sign-in there is no such endpoint.
    let bare = bare_identity_service(h.clock());
    let (status, _, _) = call(
        &bare,
        &h.table,
        Method::POST,
        "/api/v1/token",
        FORM,
        format!("id_token={id_token}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, answer) = call(
        &bare,
        &h.table,
        Method::POST,
        "/oauth2/token",
        FORM,
        format!("{EXCHANGE}&subject_token={id_token}"),
    )
    .await;
    assert_eq!(answer["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn routes_taking_the_providers_id_tokens_verify_and_cache_them_apart() {
    let h = Harness::start().await;
    let authn = Authenticator::new(AUTH, "portcullis", h.clock());
    let id_token = h.op.mint_id_token("alice", Tamper::None);
    let caller = authn
        .authenticate_idp_id_token(&h.client, &id_token)
        .unwrap();
    assert_eq!(caller.token.identity.subject, "alice");
    assert_eq!(
        caller.token.identity.email.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(caller.token.identity.issuer.as_deref(), Some(h.op.issuer()));
    assert!(caller.token.from_idp);
    let again = authn
        .authenticate_idp_id_token(&h.client, &id_token)
        .unwrap();
    assert!(Arc::ptr_eq(&caller, &again), "a cache hit");
    // Accepted as the provider's token is not accepted as one of ours.
    assert!(authn.authenticate(&h.table, &id_token).is_err());
    for tamper in [
        Tamper::Audience,
        Tamper::Expired,
        Tamper::UnknownKey,
        Tamper::AlgNone,
    ] {
        let bad = h.op.mint_id_token("alice", tamper);
        let error = authn
            .authenticate_idp_id_token(&h.client, &bad)
            .unwrap_err();
        assert!(
            error.label() == "invalid_idp_token" || error.label() == "expired",
            "{tamper:?}: {error:?}"
        );
    }
    h.advance(ACCESS_LIFETIME);
    let error = authn
        .authenticate_idp_id_token(&h.client, &id_token)
        .unwrap_err();
    assert_eq!(error.description(), "the token has expired");
}

impl FakeOp {
    /// An access token the provider introspects as `answer` (userinfo knows it as `subject`).
    fn register_access_token(&self, subject: &str, answer: Value) -> String {
        let token = random_token();
        let mut st = self.op.state.lock().unwrap();
        st.access_tokens.insert(token.clone(), subject.to_owned());
        st.introspection.insert(token.clone(), answer);
        token
    }

    fn introspection_requests(&self) -> usize {
        self.op.state.lock().unwrap().introspection_requests
    }
}

#[tokio::test]
async fn routes_taking_the_providers_access_tokens_ask_its_introspection_endpoint() {
    let h = Harness::start().await;
    let authn = Authenticator::new(AUTH, "portcullis", h.clock());
    let issuer = h.op.issuer().to_owned();
    let good = |extra: Value| {
        let mut answer = json!({"active": true, "sub": "alice", "client_id": CLIENT_ID,
            "iss": issuer, "token_type": "Bearer", "exp": NOW + ACCESS_LIFETIME});
        for (k, v) in extra.as_object().unwrap() {
            answer[k] = v.clone();
        }
        answer
    };

    let token = h.op.register_access_token("alice", good(json!({})));
    let caller = authn
        .authenticate_idp_access_token(&h.client, &token)
        .await
        .unwrap();
    assert_eq!(caller.token.identity.subject, "alice");
    assert_eq!(
        caller.token.identity.email.as_deref(),
        Some("alice@example.com"),
        "claims from userinfo"
    );
    assert_eq!(caller.token.identity.groups, ["payments", "staff"]);
    assert_eq!(
        caller.token.expires,
        NOW + portcullis::identity::login::INTROSPECTION_CACHE_SECS,
        "asked again within a minute"
    );
    let asked = h.op.introspection_requests();
    authn
        .authenticate_idp_access_token(&h.client, &token)
        .await
        .unwrap();
    assert_eq!(h.op.introspection_requests(), asked, "a cache hit");
    assert!(
        authn.authenticate_idp_id_token(&h.client, &token).is_err(),
        "not an id_token"
    );
    assert!(authn.authenticate(&h.table, &token).is_err(), "not ours");

    // Revoked at the provider: refused once the minute is over.
    h.op.op
        .state
        .lock()
        .unwrap()
        .introspection
        .insert(token.clone(), json!({"active": false}));
    h.advance(portcullis::identity::login::INTROSPECTION_CACHE_SECS);
    let error = authn
        .authenticate_idp_access_token(&h.client, &token)
        .await
        .unwrap_err();
    assert_eq!(error.label(), "invalid_idp_token");

    for (answer, rejection) in [
        (json!({"active": false}), IdpTokenRejection::Inactive),
        (
            good(json!({"token_type": "refresh_token"})),
            IdpTokenRejection::Inactive,
        ),
        (
            good(json!({"aud": [OTHER_CLIENT]})),
            IdpTokenRejection::Audience,
        ),
        (
            good(json!({"client_id": OTHER_CLIENT})),
            IdpTokenRejection::Audience,
        ),
        (
            good(json!({"iss": "https://idp.evil.example"})),
            IdpTokenRejection::Issuer,
        ),
        (good(json!({"exp": NOW - 1})), IdpTokenRejection::Expired),
    ] {
        let token = h.op.register_access_token("alice", answer.clone());
        let error = authn
            .authenticate_idp_access_token(&h.client, &token)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            AuthnError::Rejected(AccessRejection::IdpToken(rejection)),
            "{answer}"
        );
        // Refused answers are remembered: the provider is not asked again at once.
        let asked = h.op.introspection_requests();
        assert!(
            authn
                .authenticate_idp_access_token(&h.client, &token)
                .await
                .is_err()
        );
        assert_eq!(h.op.introspection_requests(), asked, "{answer}");
    }
    // Active at introspection but refused by userinfo (a refresh token, whose introspection
    // answer carries no token_type): not an access token.
    let refresh_like = random_token();
    let mut answer = good(json!({}));
    answer.as_object_mut().unwrap().remove("token_type");
    h.op.op
        .state
        .lock()
        .unwrap()
        .introspection
        .insert(refresh_like.clone(), answer);
    assert_eq!(
        authn
            .authenticate_idp_access_token(&h.client, &refresh_like)
            .await
            .unwrap_err(),
        AuthnError::Rejected(AccessRejection::IdpToken(IdpTokenRejection::Inactive))
    );

    // allowedAudiences widen what `aud` may name.
    let mut widened = settings(h.op.issuer());
    widened.allowed_audiences = vec![OTHER_CLIENT.into()];
    let client = IdpClient::discover(widened, &Secret::new(CLIENT_SECRET))
        .await
        .unwrap();
    let token =
        h.op.register_access_token("alice", good(json!({"aud": [OTHER_CLIENT]})));
    assert!(
        authn
            .authenticate_idp_access_token(&client, &token)
            .await
            .is_ok()
    );

    // A provider without an introspection endpoint: its access tokens cannot be verified.
    let bare = FakeOp::start(
        Options {
            introspection: false,
            ..Options::default()
        },
        Arc::clone(&h.now),
    )
    .await;
    let client = discover(&bare).await;
    let error = authn
        .authenticate_idp_access_token(&client, "some-access-token")
        .await
        .unwrap_err();
    assert_eq!(error.label(), "idp_unavailable");
}
