//! Criterion benches of the proxy's per-request hot functions (issue #7): reading the
//! credential from the headers, authentication with a cache hit and with a miss (the full
//! signature check), policy evaluation, the upstream assertion (cached, and signed afresh), the
//! upstream URI and header rewrite, and the access-log line.
//! Route lookup is in `benches/controller.rs`, token issuance in `benches/tokens.rs`.
//!
//! `cargo bench --bench hot_path`; one thread, so the figures are per core.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, black_box};
use http::{HeaderMap, HeaderValue, header};
use portcullis::identity::access::verify_access_token;
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::service::Clock;
use portcullis::identity::token::{
    ACCESS_TOKEN_TYP, CredentialRecord, Credentials, access_token_claims, digest,
};
use portcullis::policy::{Policy, Request};
use portcullis::proxy::access_log::{AccessLog, Entry, LineFormat};
use portcullis::proxy::authn::CredentialSource;
use portcullis::proxy::authn::{Authenticator, presented_credential};
use portcullis::proxy::upstream::{Forwarding, prepare_request, upstream_uri};
use portcullis::routing::route::{Backend, Protocol, Route, RouteId, SourceKind, Table};
use portcullis::routing::upstream::{AddressPolicy, parse_url_upstream};
use serde_json::json;

const ISSUER: &str = "http://localhost:8080";
const NOW: i64 = 1_800_000_000;

fn record() -> CredentialRecord {
    CredentialRecord {
        namespace: "team-a".into(),
        name: "bot".into(),
        client_id: "client-0".into(),
        current: digest("pcs_x"),
        pending: None,
        previous: None,
        scopes: vec![],
        access_token_ttl: Duration::from_secs(3600),
        claims: [("team".to_owned(), json!("payments"))]
            .into_iter()
            .collect(),
    }
}

fn setup() -> (Table, String) {
    let keys = KeySet::generate(Algorithm::Es256, NOW - 10).unwrap();
    let mut credentials = Credentials::default();
    credentials.insert(record());
    let claims = access_token_claims(&record(), &[], ISSUER, "portcullis", NOW, "jti-1");
    let token = keys.sign(ACCESS_TOKEN_TYP, &claims).unwrap();
    let table = Table {
        credentials,
        keys: Some(Arc::new(keys)),
        ..Table::default()
    };
    (table, token)
}

fn benches(c: &mut Criterion) {
    let (table, token) = setup();
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));

    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("echo.localhost"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    g.bench_function("presented_credential", |b| {
        b.iter(|| presented_credential(black_box(&headers)).unwrap())
    });

    let authn = Authenticator::new(ISSUER, "portcullis", Clock::from_fn(|| NOW));
    authn.authenticate(&table, &token).unwrap();
    g.bench_function("authenticate/cache_hit", |b| {
        b.iter(|| authn.authenticate(&table, black_box(&token)).unwrap())
    });
    g.bench_function("authenticate/cache_miss_verify", |b| {
        b.iter(|| {
            verify_access_token(
                table.keys.as_deref(),
                &table.credentials,
                black_box(&token),
                ISSUER,
                "portcullis",
                NOW,
            )
            .unwrap()
        })
    });

    let caller = authn.authenticate(&table, &token).unwrap();
    let identity = caller.token.identity.clone();
    let policy = Policy::compile(&json!({
        "allow": {"or": [
            {"email": {"is": "alice@example.com"}},
            {"groups": {"has": "payments"}},
            {"and": [{"claim/team": {"is": "payments"}}, {"http_method": {"in": ["GET", "HEAD"]}}]},
            {"serviceAccount": {"is": "team-a/bot"}},
        ]},
        "deny": {"or": [{"http_path": {"starts_with": "/admin"}}]},
    }))
    .unwrap();
    let cel = Policy::compile(&json!({
        "allow": {"or": [{"expression": "request.method == \"GET\" && claims.team == \"payments\""}]},
    }))
    .unwrap();
    let request = Request {
        method: "POST",
        path: "/api/v1/items",
        host: "echo.localhost",
        headers: &[],
    };
    g.bench_function("policy/criteria", |b| {
        b.iter(|| policy.evaluate(Some(black_box(&identity)), &request))
    });
    let get = Request {
        method: "GET",
        ..request
    };
    g.bench_function("policy/cel_expression", |b| {
        b.iter(|| cel.evaluate(Some(black_box(&identity)), &get))
    });

    let keys = table.keys.clone().unwrap();
    let route_url = "http://echo.localhost";
    caller.assertion(&keys, ISSUER, route_url, NOW).unwrap();
    g.bench_function("assertion/cached", |b| {
        b.iter(|| {
            caller
                .assertion(&keys, ISSUER, black_box(route_url), NOW)
                .unwrap()
        })
    });
    let mut claims = identity.claims.clone();
    claims.insert("iss".into(), ISSUER.into());
    claims.insert("aud".into(), route_url.into());
    claims.insert("iat".into(), NOW.into());
    claims.insert("exp".into(), (NOW + 300).into());
    let claims = serde_json::Value::Object(claims);
    g.bench_function("assertion/signed_afresh", |b| {
        b.iter(|| keys.sign("JWT", black_box(&claims)).unwrap())
    });
    g.finish();
    upstream_request(c);
    access_log(c);
}

/// One access-log line on the worker: a `tracing` event through tracing-subscriber's formatter
/// (the write left out: the writer is `io::sink`), and our own line handed to the writer thread.
fn access_log(c: &mut Criterion) {
    let get = http::Method::GET;
    let entry = Entry {
        listener: "http",
        peer: "127.0.0.1".parse().unwrap(),
        version: http::Version::HTTP_11,
        method: &get,
        host: "bench.localhost",
        path: "/",
        endpoint: "route",
        route: Some(("default", "bench")),
        identity: "serviceaccount:default/bench-bot",
        client_id: "pcc_0123456789abcdef",
        decision: "allow",
        reason: "policy",
        status: 200,
        latency_us: 187,
        generation: 3,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::sink)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (lines, _writer) = AccessLog::lines(LineFormat::Text, std::io::sink()).unwrap();
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("access_log/tracing_subscriber", |b| {
        b.iter(|| AccessLog::Events.record(black_box(&entry)))
    });
    g.bench_function("access_log/own_line", |b| {
        b.iter(|| lines.record(black_box(&entry)))
    });
    g.finish();
}

/// What a forwarded request costs besides the network: the upstream URI and the header rewrite.
fn upstream_request(c: &mut Criterion) {
    let policy = AddressPolicy {
        allow_loopback: true,
        ..AddressPolicy::default()
    };
    let upstream = parse_url_upstream("http://127.0.0.1:18180", 1, &policy).unwrap();
    let route = Route {
        id: RouteId {
            kind: SourceKind::Route,
            namespace: "default".into(),
            name: "bench".into(),
        },
        url: "http://bench.localhost".into(),
        protocol: Protocol::Http,
        backends: vec![Backend {
            weight: 1,
            upstreams: vec![upstream.clone()],
        }],
        policy: Policy::deny_all(),
        options: Default::default(),
    };
    let assertion = HeaderValue::from_static("eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("upstream/uri_and_headers", |b| {
        b.iter_batched(
            || {
                http::Request::get("/items/7?page=2")
                    .header(header::HOST, "bench.localhost")
                    .header(header::AUTHORIZATION, "Bearer x.y.z")
                    .header(header::ACCEPT, "*/*")
                    .header(header::USER_AGENT, "wrk")
                    .body(())
                    .unwrap()
                    .into_parts()
                    .0
            },
            |mut parts| {
                let uri = upstream_uri(&upstream, "/items/7", parts.uri.query()).unwrap();
                let client_host = parts.headers.get(header::HOST).cloned();
                prepare_request(
                    &mut parts,
                    &Forwarding {
                        route: &route,
                        upstream: &upstream,
                        client_host,
                        proto: "http",
                        peer: "127.0.0.1".parse().unwrap(),
                        credential: Some(CredentialSource::Authorization),
                        assertion: Some(assertion.clone()),
                        claims: None,
                        websocket: false,
                    },
                );
                parts.uri = uri;
                parts
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
