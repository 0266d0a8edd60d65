//! Criterion benches of the proxy's per-request hot functions (issue #7): reading the
//! credential from the headers, authentication with a cache hit and with a miss (the full
//! signature check), policy evaluation, and the upstream assertion (cached, and signed afresh).
//! Route lookup is in `benches/controller.rs`, token issuance in `benches/tokens.rs`.
//!
//! `cargo bench --bench hot_path`; one thread, so the figures are per core.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, black_box};
use http::{HeaderMap, HeaderValue, header};
use portcullis::identity::access::verify_access_token;
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::service::Clock;
use portcullis::identity::token::{
    ACCESS_TOKEN_TYP, CredentialRecord, Credentials, access_token_claims, digest,
};
use portcullis::policy::{Policy, Request};
use portcullis::proxy::authn::{Authenticator, presented_credential};
use portcullis::routing::route::Table;
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
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
