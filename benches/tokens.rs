//! Token endpoint benchmarks (DESIGN.md §7: at least 20k `client_credentials` tokens per second
//! per core).
//!
//! * `cargo bench --bench tokens`: criterion, in-process, no sockets: one request through
//!   `IdentityService::handle` (form parsing, Basic decoding, digest check, scopes, claims, ES256
//!   signature, JSON response) with 1 and 10 000 credentials in the table, and the ES256
//!   signature alone. Criterion runs on one thread, so elements/s is tokens per second per core.
//!
//! The load run over sockets joins when the listeners are served (see docs/benchmarks.md).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::service::{Clock, IdentityConfig, IdentityService};
use portcullis::identity::token::{CredentialRecord, Credentials, digest};
use portcullis::metrics::Metrics;
use portcullis::routing::Scheme;
use portcullis::routing::route::Table;

const SECRET: &str = "pcs_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
const NOW: i64 = 1_800_000_000;

fn record(i: usize) -> CredentialRecord {
    CredentialRecord {
        namespace: "team-a".into(),
        name: format!("bot-{i}"),
        client_id: format!("client-{i}"),
        current: digest(SECRET),
        pending: None,
        previous: None,
        scopes: vec![],
        access_token_ttl: Duration::from_secs(3600),
        claims: [("team".to_owned(), serde_json::json!("payments"))]
            .into_iter()
            .collect(),
    }
}

fn table(credentials: usize) -> Table {
    let mut creds = Credentials::default();
    for i in 0..credentials {
        creds.insert(record(i));
    }
    Table {
        credentials: creds,
        keys: Some(Arc::new(KeySet::generate(Algorithm::Es256, NOW).unwrap())),
        ..Table::default()
    }
}

fn service(clock: Clock) -> IdentityService {
    IdentityService::new(
        IdentityConfig {
            issuer: "http://localhost:8080".parse().unwrap(),
            access_token_audience: "portcullis".into(),
            signing_algorithm: Algorithm::Es256,
            body_read_timeout: Duration::from_secs(10),
            clock,
        },
        Arc::new(Metrics::new()),
    )
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("client-0:{SECRET}"))
    )
}

fn request(authority: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{authority}/oauth2/token"))
        .header(header::HOST, authority)
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap()
}

fn criterion_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let svc = service(Clock::from_fn(|| NOW));
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut g = c.benchmark_group("token_endpoint");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 10_000] {
        let t = table(n);
        g.bench_function(format!("client_credentials/{n}_credentials"), |b| {
            b.to_async(&rt).iter(|| async {
                let handled = svc
                    .handle(&t, request("localhost:8080"), peer, Scheme::Http)
                    .await;
                assert_eq!(handled.response.status(), StatusCode::OK);
            })
        });
    }
    let keys = KeySet::generate(Algorithm::Es256, NOW).unwrap();
    let claims = serde_json::json!({"iss": "http://localhost:8080", "sub": "serviceaccount:team-a/bot-0", "aud": "portcullis", "exp": NOW + 3600, "iat": NOW, "jti": "7d8e6c6a-4a9e-4a53-9a55-1f0a2c3b4d5e", "client_id": "client-0", "team": "payments"});
    g.bench_function("es256_signature_only", |b| {
        b.iter(|| keys.sign("at+jwt", &claims).unwrap())
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
