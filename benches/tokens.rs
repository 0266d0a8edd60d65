//! Token endpoint benchmarks (DESIGN.md §7: at least 20k `client_credentials` tokens per second
//! per core).
//!
//! * `cargo bench --bench tokens`: criterion, in-process, no sockets: one request through
//!   `IdentityService::handle` (form parsing, Basic decoding, digest check, scopes, claims, ES256
//!   signature, JSON response) with 1 and 10 000 credentials in the table, and the ES256
//!   signature alone. Criterion runs on one thread, so elements/s is tokens per second per core.
//! * `cargo bench --bench tokens -- --live [--seconds S] [--connections C]`: a load run on the
//!   real HTTP listener: the server on a runtime with ONE worker thread (one core), clients on
//!   another, HTTP/1.1 keep-alive, client_secret_basic; prints tokens/s and latency percentiles.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use portcullis::identity::keys::{Algorithm, KeySet};
use portcullis::identity::service::{Clock, IdentityConfig, IdentityService};
use portcullis::identity::token::{CredentialRecord, Credentials, digest};
use portcullis::metrics::Metrics;
use portcullis::proxy::listener::{self, ListenerLimits, Transport};
use portcullis::proxy::workers::Workers;
use portcullis::proxy::{Proxy, ProxyConfig};
use portcullis::routing::Scheme;
use portcullis::routing::live::LiveTable;
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

/// The load run: server on one proxy worker (its accept loop on a one-thread runtime),
/// `connections` HTTP/1.1 keep-alive clients on another runtime, for `seconds`.
fn live(seconds: u64, connections: usize) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let live = LiveTable::new();
    live.publish(table(1));
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let addr: SocketAddr = server_rt.block_on(async {
        let l = listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let svc = Arc::new(service(Clock::system()));
        let config = ProxyConfig {
            workers: 1,
            ..ProxyConfig::default()
        };
        let proxy = Arc::new(Proxy::new(live.clone(), Some(svc), config));
        let (workers, _) = Workers::start(1).unwrap();
        tokio::spawn(listener::serve(
            "http",
            l,
            Transport::Plain,
            proxy,
            workers,
            ListenerLimits::default(),
            shutdown,
        ));
        addr
    });
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = client_rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (done, ok, failed) = (done.clone(), ok.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut send, conn) = hyper::client::conn::http1::handshake(
                    hyper_util::rt::TokioIo::new(stream),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                let authority = format!("localhost:{}", addr.port());
                let mut lat = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let resp = send.send_request(request(&authority)).await.unwrap();
                    let status = resp.status();
                    let _ = resp.into_body().collect().await.unwrap();
                    lat.push(start.elapsed());
                    if status == StatusCode::OK {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            }));
        }
        // Warm up one second, then measure.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (start_ok, start) = (ok.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let measured = ok.load(Ordering::Relaxed) - start_ok;
        let elapsed = start.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        println!(
            "token endpoint, 1 server worker thread, {connections} connections: {:.0} tokens/s ({measured} in {elapsed:.1}s), {} failed",
            measured as f64 / elapsed,
            failed.load(Ordering::Relaxed)
        );
        all
    });
    let mut lat = latencies;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "latency p50 {:?}  p90 {:?}  p99 {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99)
    );
    let _ = shutdown_tx.send(true);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--live") {
        let value = |flag: &str, default: u64| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1)?.parse().ok())
                .unwrap_or(default)
        };
        live(value("--seconds", 10), value("--connections", 32) as usize);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
