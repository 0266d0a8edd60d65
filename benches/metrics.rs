//! What recording a request costs the proxy (DESIGN.md §7: added p99 under 1 ms).
//!
//! * `cargo bench --bench metrics`: criterion, one thread: `Metrics::http_request` for a route
//!   and status already seen (the steady state), among 1 and 10 000 routes, and
//!   `Metrics::http_route_request` by `RouteId`; an authentication
//!   failure; and encoding `/metrics` with 1 000 routes recorded.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use criterion::Criterion;
use portcullis::metrics::Metrics;
use portcullis::routing::route::{RouteId, SourceKind};

fn metrics_with(routes: usize) -> (Metrics, Vec<String>) {
    let m = Metrics::new();
    let names: Vec<String> = (0..routes).map(|i| format!("team-a/route-{i}")).collect();
    for name in &names {
        m.http_request(name, 200, Duration::from_micros(250));
    }
    (m, names)
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    for n in [1, 10_000] {
        let (m, names) = metrics_with(n);
        let mut i = 0;
        g.bench_function(format!("http_request/{n}_routes"), |b| {
            b.iter(|| {
                i = (i + 7) % names.len();
                m.http_request(&names[i], 200, Duration::from_micros(250));
            })
        });
    }
    let (m, _) = metrics_with(1);
    let id = RouteId {
        kind: SourceKind::Route,
        namespace: "team-a".into(),
        name: "route-0".into(),
    };
    g.bench_function("http_route_request/1_routes", |b| {
        b.iter(|| m.http_route_request(&id, 200, Duration::from_micros(250)))
    });
    let m = Metrics::new();
    g.bench_function("authentication_failure", |b| {
        b.iter(|| m.authentication_failure("expired"))
    });
    let (m, _) = metrics_with(1_000);
    g.bench_function("encode/1000_routes", |b| b.iter(|| m.encode().len()));
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
