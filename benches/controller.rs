//! Controller benchmarks against the targets of DESIGN.md §7 (10k routes: full rebuild under
//! 100 ms, host lookup O(1), under 100 MB RSS; a route applied → served under 50 ms p99).
//!
//! * `cargo bench --bench controller`: criterion runs of the pure `compile` of 100 / 1k / 10k
//!   Routes (dropping the result is not timed), from nothing and with the cache of the previous
//!   compile after one Route changed, and of `Table::find` on tables of 10 / 1k / 10k routes.
//! * `cargo bench --bench controller -- --live [apply|rss] [--applies N] [--routes N,M,..]`: no
//!   criterion; prints the latency from a Route created through the Kubernetes API (embedded API
//!   and controller in this process, then `kubectl apply` when kubectl is on PATH) until the live
//!   table serves it, with an empty table and with 10k Routes; then, for each Route count of
//!   `--routes` (default 10000), the RSS of a fresh `portcullis dev` process holding that many
//!   Routes, and the RSS and compile from nothing (`portcullis_table_build_seconds`) of a
//!   `portcullis run` process (controller and proxy, a follower) watching it.
//!   `RUST_LOG=portcullis::controller::publisher=debug` also logs each compile's duration.
//!   The RSS measurement runs the `portcullis` binary cargo built for this bench, or
//!   `$CONTROLLER_BENCH_BIN` (a copy of its own, since other builds overwrite the shared target
//!   directory). `--run-bins A,B,..` measures `portcullis run` with each of these binaries (or
//!   scripts that `exec` one) in turn against the same loaded API, `--rounds N` times
//!   interleaved; `--hold SECS` keeps the last loaded `portcullis dev` running that long
//!   afterwards (its KUBECONFIG printed) for profiling.
//!
//! Figures are in docs/benchmarks.md. No timing is asserted anywhere.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hint::black_box;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use portcullis::api::{Route, RoutePolicy, RouteSpec, RouteTarget, ServiceTarget};
use portcullis::config::Settings;
use portcullis::controller::compile::{CompileContext, Compiled, compile, compile_with};
use portcullis::controller::leader::Leadership;
use portcullis::controller::snapshot::{Snapshot, StoredRoute};
use portcullis::controller::{Controller, compile_context};
use portcullis::devapi::store::StoreOptions;
use portcullis::devapi::{DevApi, DevApiConfig};
use portcullis::routing::live::LiveTable;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

// ---------------------------------------------------------------- a realistic set of objects

/// Namespaces the Routes are spread over.
const NAMESPACES: usize = 20;
/// Requests in flight while loading objects through the API.
const CONCURRENCY: usize = 32;

/// The objects of a cluster with `n` Routes: for every 20 Routes, 15 on hosts of their own, 4
/// sharing one host under different path prefixes and 1 claiming the same URL as the Route
/// before it (a conflict, 5%). Four in five go to a Service with an EndpointSlice of three
/// ready endpoints (one in ten of those with a weighted URL canary), one in five to a URL.
/// Policies are an `or` of 2–3 criteria, one in 25 with a CEL `expression` as well.
struct Mix {
    routes: Vec<Route>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
}

fn namespace(i: usize) -> String {
    format!("team-{:02}", i % NAMESPACES)
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn from_of(i: usize) -> String {
    match i % 20 {
        19 => from_of(i - 1),
        k @ 15..=18 => format!(
            "https://shared-{}.example.com{}",
            i / 20,
            ["/api", "/web", "/admin/v1", ""][k - 15]
        ),
        _ => {
            let scheme = if i.is_multiple_of(2) { "https" } else { "http" };
            format!("{scheme}://app-{i}.{}.example.com", namespace(i))
        }
    }
}

fn service_backed(i: usize) -> bool {
    i % 5 != 4
}

fn mix_route(i: usize) -> Route {
    let ns = namespace(i);
    let mut to = Vec::new();
    if service_backed(i) {
        to.push(RouteTarget {
            service: Some(ServiceTarget {
                name: format!("svc-{i}"),
                port: 80,
            }),
            weight: i.is_multiple_of(10).then_some(90),
            ..RouteTarget::default()
        });
        if i.is_multiple_of(10) {
            to.push(RouteTarget {
                url: Some(format!(
                    "http://10.201.{}.{}:8080",
                    (i / 250) % 250,
                    i % 250
                )),
                weight: Some(10),
                ..RouteTarget::default()
            });
        }
    } else {
        to.push(RouteTarget {
            url: Some(format!(
                "http://10.200.{}.{}:8080",
                (i / 250) % 250,
                i % 250
            )),
            ..RouteTarget::default()
        });
    }
    let mut or = vec![
        json!({"email": {"is": format!("owner-{i}@example.com")}}),
        json!({"groups": {"has": ns}}),
    ];
    if !i.is_multiple_of(3) {
        or.push(json!({"domain": {"is": "example.com"}}));
    }
    if i.is_multiple_of(25) {
        or.push(json!({"expression": format!(
            "request.method == 'GET' && claims.iss == 'https://issuer-{}.example.com'",
            i % 7
        )}));
    }
    let policy = json!({"allow": {"or": or}});
    let name = format!("r{i:05}");
    let mut r = Route::new(
        &name,
        RouteSpec {
            from: from_of(i),
            to,
            policy: Some(RoutePolicy::new(policy.as_object().unwrap())),
            ..RouteSpec::default()
        },
    );
    r.metadata = meta(&ns, &name);
    r
}

fn mix_service(i: usize) -> Service {
    let name = format!("svc-{i}");
    Service {
        metadata: meta(&namespace(i), &name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(8080)),
                ..ServicePort::default()
            }]),
            selector: Some(BTreeMap::from([("app".to_owned(), name)])),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn mix_slice(i: usize) -> EndpointSlice {
    let svc = format!("svc-{i}");
    let mut m = meta(&namespace(i), &format!("{svc}-x7k2p"));
    m.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        svc,
    )]));
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: (1..=3)
            .map(|e| Endpoint {
                addresses: vec![format!("10.{}.{}.{e}", 1 + (i >> 8) % 200, i & 255)],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

fn mix(n: usize) -> Mix {
    let backed: Vec<usize> = (0..n).filter(|&i| service_backed(i)).collect();
    Mix {
        routes: (0..n).map(mix_route).collect(),
        services: backed.iter().map(|&i| mix_service(i)).collect(),
        slices: backed.iter().map(|&i| mix_slice(i)).collect(),
    }
}

/// What the API server would have set: uid, generation, creation time (one second apart, in
/// creation order, so conflicts are decided by age).
fn stamped(mut m: ObjectMeta, i: usize) -> ObjectMeta {
    m.uid = Some(format!("uid-{i}"));
    m.generation = Some(1);
    m.creation_timestamp = Some(Time(
        jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap(),
    ));
    m
}

fn snapshot(mix: &Mix) -> Snapshot {
    /// Stamped copies, in the form the stores keep them (Services and slices as records).
    fn arcs<T: Clone, S: From<T>>(v: &[T], stamp: impl Fn(&mut T, usize)) -> Vec<Arc<S>> {
        v.iter()
            .enumerate()
            .map(|(i, o)| {
                let mut o = o.clone();
                stamp(&mut o, i);
                Arc::new(S::from(o))
            })
            .collect()
    }
    Snapshot {
        routes: arcs::<Route, StoredRoute>(&mix.routes, |r, i| {
            r.metadata = stamped(r.metadata.clone(), i)
        }),
        services: arcs(&mix.services, |s: &mut Service, i| {
            s.metadata = stamped(s.metadata.clone(), i)
        }),
        endpoint_slices: arcs(&mix.slices, |s: &mut EndpointSlice, i| {
            s.metadata = stamped(s.metadata.clone(), i)
        }),
        ..Snapshot::default()
    }
}

/// An Ingress of our class for `*.wild.example.com`, the only way to get a wildcard host.
fn wildcard_ingress() -> Arc<Ingress> {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: "svc-0".into(),
            port: Some(ServiceBackendPort {
                number: Some(80),
                name: None,
            }),
        }),
        ..IngressBackend::default()
    };
    Arc::new(Ingress {
        metadata: stamped(meta(&namespace(0), "wild"), 0),
        spec: Some(IngressSpec {
            ingress_class_name: Some("portcullis".into()),
            rules: Some(vec![IngressRule {
                host: Some("*.wild.example.com".into()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend,
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

fn context() -> CompileContext {
    compile_context(
        &Settings::default(),
        &"https://127.0.0.1:6443".parse().unwrap(),
        Some("auth.example.com".into()),
        &[],
    )
}

/// Routes that lose a conflict in a compiled mix.
fn conflicts(c: &Compiled) -> usize {
    c.reports
        .values()
        .filter(|r| r.problems.iter().any(|p| p.reason == "Conflict"))
        .count()
}

// ---------------------------------------------------------------- criterion: compile, lookup

fn compile_bench(c: &mut Criterion) {
    let ctx = context();
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in [100, 1_000, 10_000] {
        let snap = snapshot(&mix(n));
        let once = compile(&snap, &ctx);
        let problems: usize = once.reports.values().map(|r| r.problems.len()).sum();
        assert_eq!(once.reports.len(), n);
        assert_eq!(conflicts(&once), n / 20);
        assert_eq!(problems, n / 20, "only the conflicts are problems");
        assert_eq!(once.table.routes.len(), n - n / 20);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("routes", n), &snap, |b, snap| {
            b.iter_with_large_drop(|| compile(snap, &ctx))
        });
        // What the publisher does after one Route is applied: compile with the previous
        // compile's cache a snapshot that differs by that Route (one more, then one fewer).
        let mut plus_one = snap.clone();
        let mut extra = mix_route(n);
        extra.metadata = stamped(extra.metadata, n);
        plus_one.routes.push(Arc::new(extra.into()));
        let warm = compile_with(&plus_one, &ctx, compile(&snap, &ctx).cache);
        assert_eq!(
            format!("{:?}", warm.reports),
            format!("{:?}", compile(&plus_one, &ctx).reports)
        );
        let snaps = [snap, plus_one];
        let mut cache = Some(warm.cache);
        let mut turn = 0;
        g.bench_function(BenchmarkId::new("one change, cached", n), |b| {
            b.iter_with_large_drop(|| {
                turn += 1;
                let last = cache.take().unwrap_or_default();
                let mut c = compile_with(&snaps[turn % 2], &ctx, last);
                cache = Some(std::mem::take(&mut c.cache));
                c
            })
        });
    }
    g.finish();
}

fn lookup_bench(c: &mut Criterion) {
    let ctx = context();
    let mut g = c.benchmark_group("lookup");
    for n in [10, 1_000, 10_000] {
        let mut snap = snapshot(&mix(n));
        snap.ingresses.push(wildcard_ingress());
        let table = compile(&snap, &ctx).table;
        let j = (n / 2) / 20 * 20 + 3;
        let exact = format!("app-{j}.{}.example.com", namespace(j));
        let cases = [
            (
                "exact host",
                exact.as_str(),
                "/orders/42",
                Some(format!("r{j:05}")),
            ),
            (
                "wildcard host",
                "tenant-42.wild.example.com",
                "/",
                Some("wild".to_owned()),
            ),
            ("miss", "nope.example.net", "/", None),
        ];
        for (label, host, path, want) in cases {
            let got = table.find(host, path).map(|(_, r)| r.id.name.to_string());
            assert_eq!(got, want, "{label} on {n} routes");
            g.bench_function(BenchmarkId::new(label, n), |b| {
                b.iter(|| table.find(black_box(host), black_box(path)).is_some())
            });
        }
    }
    g.finish();
}

// ---------------------------------------------------------------- live: apply → served

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let cfg = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

/// Creates `objs` with [`CONCURRENCY`] requests in flight.
async fn create_all<K>(client: &Client, objs: Vec<K>)
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Debug,
    K::DynamicType: Default,
{
    futures::stream::iter(objs)
        .map(|o| {
            let ns = o.meta().namespace.clone().unwrap_or_default();
            let api: Api<K> = Api::namespaced(client.clone(), &ns);
            async move {
                api.create(&PostParams::default(), &o)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<()>()
        .await;
}

async fn create_namespaces(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace(i)}})).unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }
}

/// Loads a [`Mix`] of `n` Routes through the API: Services and EndpointSlices, then Routes.
async fn load_mix(client: &Client, n: usize) {
    let m = mix(n);
    create_all(client, m.services).await;
    create_all(client, m.slices).await;
    create_all(client, m.routes).await;
}

/// The embedded API (in memory) and the controller, wired as `portcullis dev` wires them.
struct Fixture {
    api: DevApi,
    client: Client,
    live: LiveTable,
    controller: Controller,
    context: CompileContext,
    shutdown: watch::Sender<bool>,
}

impl Fixture {
    async fn start() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let api = DevApi::start(DevApiConfig {
            data_dir: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            store: StoreOptions::default(),
        })
        .await
        .expect("api");
        let client = client_from(Kubeconfig::from_yaml(&api.kubeconfig_yaml()).unwrap()).await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in portcullis::api::all_crds() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("crd");
        }
        create_namespaces(&client).await;
        let settings = Settings {
            allow_loopback_upstreams: true,
            ..Settings::default()
        };
        let live = LiveTable::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let context = compile_context(
            &settings,
            &api.url().parse().unwrap(),
            Some("localhost".into()),
            &[api.addr],
        );
        let controller = Controller::start(
            client.clone(),
            &settings,
            context.clone(),
            live.clone(),
            Leadership::always(),
            Some("http://auth.localhost".parse().unwrap()),
            None,
            Arc::new(portcullis::metrics::Metrics::new()),
            shutdown_rx,
        );
        live.wait_for(1, Duration::from_secs(30))
            .await
            .expect("first table");
        Fixture {
            api,
            client,
            live,
            controller,
            context,
            shutdown,
        }
    }

    /// Medians of 5 compiles of the controller's current snapshot, off the async runtime as the
    /// publisher runs them: (compile, dropping the result).
    async fn compile_now(&self) -> (Duration, Duration) {
        let snap = self.controller.watchers.snapshot();
        let ctx = self.context.clone();
        tokio::task::spawn_blocking(move || {
            let (mut compiling, mut dropping) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                let t = Instant::now();
                let compiled = compile(&snap, &ctx);
                compiling.push(t.elapsed());
                let t = Instant::now();
                drop(compiled);
                dropping.push(t.elapsed());
            }
            compiling.sort();
            dropping.sort();
            (compiling[2], dropping[2])
        })
        .await
        .unwrap()
    }

    /// Waits until the live table has `routes` routes and every Route has a status (the
    /// status writes of a bulk load are over).
    async fn settle(&self, routes: usize) {
        let mut gens = self.live.subscribe();
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.live.load().routes.len() < routes {
            assert!(Instant::now() < deadline, "table never reached {routes}");
            let _ = tokio::time::timeout(Duration::from_secs(1), gens.changed()).await;
        }
        loop {
            let snap = self.controller.watchers.snapshot();
            let pending = snap.routes.iter().filter(|r| r.seen.is_none()).count();
            if pending == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{pending} Routes without status");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.controller.join().await;
        self.api.shutdown().await;
    }
}

/// Time between two applies, as between two commands a person runs.
const GAP: Duration = Duration::from_millis(10);

fn probe_route(name: &str, host: &str) -> Route {
    let mut r = Route::new(
        name,
        RouteSpec {
            from: format!("https://{host}"),
            to: vec![RouteTarget {
                url: Some("http://10.9.0.1:8080".into()),
                ..RouteTarget::default()
            }],
            allow_any_authenticated_user: Some(true),
            ..RouteSpec::default()
        },
    );
    r.metadata.namespace = Some("default".into());
    r
}

/// Waits until the live table serves `host` from Route `name`, waking on each publication.
async fn served(live: &LiveTable, gens: &mut watch::Receiver<u64>, host: &str, name: &str) {
    loop {
        let table = live.load();
        if table
            .find(host, "/")
            .is_some_and(|(_, r)| *r.id.name == *name)
        {
            return;
        }
        tokio::time::timeout(Duration::from_secs(30), gens.changed())
            .await
            .expect("a table within 30 s")
            .expect("live table");
    }
}

/// `n` Routes created one after another with the kube client; each one's time from the start of
/// the request until the live table serves it.
async fn apply_with_client(f: &Fixture, tag: &str, n: usize) -> Vec<Duration> {
    let api: Api<Route> = Api::namespaced(f.client.clone(), "default");
    let mut gens = f.live.subscribe();
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        let name = format!("{tag}-{j:04}");
        let host = format!("{name}.probe.example.com");
        gens.borrow_and_update();
        let t = Instant::now();
        api.create(&PostParams::default(), &probe_route(&name, &host))
            .await
            .expect("create");
        served(&f.live, &mut gens, &host, &name).await;
        out.push(t.elapsed());
        tokio::time::sleep(GAP).await;
    }
    out
}

fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `n` Routes applied one after another with `kubectl apply -f -`: time from starting kubectl
/// until the live table serves the Route, and kubectl's own run time. One warm-up apply first
/// fills kubectl's discovery cache.
async fn apply_with_kubectl(f: &Fixture, dir: &Path, tag: &str, n: usize) -> [Vec<Duration>; 2] {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, f.api.kubeconfig_yaml()).unwrap();
    let cache = dir.join("kube-cache");
    let mut gens = f.live.subscribe();
    let (mut served_in, mut exited_in) = (Vec::new(), Vec::new());
    for j in 0..=n {
        let name = format!("{tag}-{j:04}");
        let host = format!("{name}.kubectl.example.com");
        let doc = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  from: https://{host}\n  to:\n  - url: http://10.9.0.1:8080\n  allowAnyAuthenticatedUser: true\n"
        );
        gens.borrow_and_update();
        let t = Instant::now();
        let mut child = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(doc.as_bytes()).await.unwrap();
        drop(stdin);
        let wait = child.wait();
        tokio::pin!(wait);
        let mut exited = None;
        tokio::select! {
            s = &mut wait => {
                assert!(s.unwrap().success(), "kubectl apply failed");
                exited = Some(t.elapsed());
                served(&f.live, &mut gens, &host, &name).await;
            }
            _ = served(&f.live, &mut gens, &host, &name) => {}
        }
        let served_at = t.elapsed();
        let exited = match exited {
            Some(e) => e,
            None => {
                assert!(wait.await.unwrap().success(), "kubectl apply failed");
                t.elapsed()
            }
        };
        if j > 0 {
            served_in.push(served_at);
            exited_in.push(exited);
        }
        tokio::time::sleep(GAP).await;
    }
    [served_in, exited_in]
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn row(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "  {label:<44} {:>9} {:>9} {:>9} {:>9}   ({} applies)",
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.9)),
        ms(percentile(&v, 0.99)),
        ms(*v.last().unwrap()),
        v.len()
    );
}

/// Applies per table size (`--applies N` changes it).
const APPLIES: usize = 500;
/// kubectl applies per table size (each starts a process).
const KUBECTL_APPLIES: usize = 50;
/// Routes preloaded for the "10k" measurements.
const ROUTES: usize = 10_000;

async fn live_apply(applies: usize) {
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_available();
    let f = Fixture::start().await;
    println!(
        "route applied → served by the live table (embedded API in memory, in-process controller)"
    );
    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p90", "p99", "max"
    );
    row(
        "kube-rs create, empty table",
        apply_with_client(&f, "empty", applies).await,
    );
    let mut extra = applies;
    if kubectl {
        let [served, exited] = apply_with_kubectl(&f, dir.path(), "kempty", KUBECTL_APPLIES).await;
        row("kubectl apply, empty table", served);
        row("  (kubectl's own run time)", exited);
        extra += KUBECTL_APPLIES + 1;
    }
    let t = Instant::now();
    load_mix(&f.client, ROUTES).await;
    let loaded = t.elapsed();
    f.settle(ROUTES - ROUTES / 20 + extra).await;
    eprintln!(
        "  (loaded {ROUTES} Routes with Services and EndpointSlices in {:.1} s, settled after {:.1} s)",
        loaded.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    row(
        "kube-rs create, 10k Routes",
        apply_with_client(&f, "full", applies).await,
    );
    if kubectl {
        let [served, exited] = apply_with_kubectl(&f, dir.path(), "kfull", KUBECTL_APPLIES).await;
        row("kubectl apply, 10k Routes", served);
        row("  (kubectl's own run time)", exited);
    } else {
        println!("  (kubectl not on PATH: no kubectl figures)");
    }
    let (compiling, dropping) = f.compile_now().await;
    println!(
        "  where the time goes with 10k Routes: one compile of the live snapshot {:.1} ms, dropping a compiled table {:.1} ms (medians of 5, in this process)",
        compiling.as_secs_f64() * 1e3,
        dropping.as_secs_f64() * 1e3
    );
    f.stop().await;
}

// ---------------------------------------------------------------- live: RSS of portcullis dev

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A plain `GET` over HTTP/1.0: the status and the body.
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

async fn http_status(addr: &str, path: &str) -> Option<u16> {
    Some(http_get(addr, path).await?.0)
}

/// Routes whose `Ready` condition is set, and those of them that are `True`, by a paged list.
async fn ready_routes(client: &Client) -> (usize, usize) {
    let api: Api<Route> = Api::all(client.clone());
    let (mut with_ready, mut ready) = (0, 0);
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("list");
        for r in &page.items {
            let cond = r
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if let Some(c) = cond {
                with_ready += 1;
                ready += usize::from(c.status == "True");
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return (with_ready, ready),
        }
    }
}

/// The `portcullis` binary the RSS measurement runs.
fn portcullis_bin() -> String {
    std::env::var("CONTROLLER_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_portcullis").to_owned())
}

/// How the RSS measurement runs: the Route counts, the binaries of `portcullis run`, rounds, and
/// how long to keep the last loaded API afterwards.
struct RssOptions {
    routes: Vec<usize>,
    run_bins: Vec<String>,
    rounds: usize,
    hold: Duration,
}

/// What one `portcullis run` reported once its first table was live.
struct RunFigures {
    rss: u64,
    anon: u64,
    peak: u64,
    /// `portcullis_table_build_seconds` sum and count: the compile from nothing (and any
    /// compile that followed before readiness was seen).
    build: Duration,
    builds: u64,
}

/// What `portcullis dev` holding `routes` Routes used, and the `portcullis run`s against it.
struct RssRow {
    routes: usize,
    services: usize,
    idle: u64,
    backends: u64,
    full: u64,
    full_anon: u64,
    peak: u64,
    served_after: Duration,
    runs: Vec<(String, RunFigures)>,
}

async fn live_rss(opts: &RssOptions) {
    let mut rows = Vec::new();
    for (i, &n) in opts.routes.iter().enumerate() {
        let hold = if i + 1 == opts.routes.len() {
            opts.hold
        } else {
            Duration::ZERO
        };
        rows.push(rss_at(n, opts, hold).await);
    }
    println!(
        "RSS of `portcullis dev` (durable store, embedded API + controller in one process, whole process)"
    );
    for r in &rows {
        println!("  {} Routes", r.routes);
        println!(
            "    idle, first table live                          {:>10}",
            mib(r.idle)
        );
        println!(
            "    + {} Services and {} EndpointSlices          {:>10}",
            r.services,
            r.services,
            mib(r.backends)
        );
        println!(
            "    + {} Routes, all statuses written          {:>10}   (anonymous {}, peak {}; served {:.1} s after the first write)",
            r.routes,
            mib(r.full),
            mib(r.full_anon),
            mib(r.peak),
            r.served_after.as_secs_f64()
        );
    }
    println!(
        "`portcullis run` (controller and proxy, a follower) against that API, once its first table is live: RSS, and its compile from nothing"
    );
    println!(
        "  {:>8} {:>10} {:>10} {:>10} {:>14}",
        "Routes", "RSS", "anonymous", "peak", "first compile"
    );
    for r in &rows {
        for (bin, f) in &r.runs {
            let more = if f.builds > 1 {
                format!(" ({} compiles)", f.builds)
            } else {
                String::new()
            };
            println!(
                "  {:>8} {:>10} {:>10} {:>10} {:>11.1} ms{more}  {bin}",
                r.routes,
                mib(f.rss),
                mib(f.anon),
                mib(f.peak),
                f.build.as_secs_f64() * 1e3
            );
        }
    }
}

/// Loads the mix of `n` Routes into a fresh `portcullis dev` and measures it, then runs
/// `portcullis run` against it (`opts.rounds` times per binary).
async fn rss_at(n: usize, opts: &RssOptions, hold: Duration) -> RssRow {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("portcullis.log")).unwrap();
    let mut child = tokio::process::Command::new(portcullis_bin())
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env("PORTCULLIS_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis dev");
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut admin, mut kubeconfig) = (None, None);
    let banner = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("portcullis dev: admin http://") {
                admin = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
                kubeconfig = Some(path.to_owned());
                break;
            }
        }
    })
    .await;
    let (Ok(()), Some(admin), Some(kubeconfig)) = (banner, admin, kubeconfig) else {
        let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap_or_default();
        panic!("portcullis dev did not start:\n{log}");
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    while http_status(&admin, "/readyz").await != Some(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = status_kib(pid, "VmRSS:");

    let client = client_from(Kubeconfig::read_from(&kubeconfig).unwrap()).await;
    create_namespaces(&client).await;
    let m = mix(n);
    let services = m.services.len();
    let t = Instant::now();
    create_all(&client, m.services).await;
    create_all(&client, m.slices).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let backends = status_kib(pid, "VmRSS:");
    create_all(&client, m.routes).await;
    eprintln!(
        "  {n} Routes: every object created {:.1} s after the first",
        t.elapsed().as_secs_f64()
    );
    let want_ready = n - n / 20;
    // About 100 s per 10k Routes on two cores; generous, so a slow machine still finishes.
    let patience = Duration::from_secs(600).max(Duration::from_millis(n as u64 * 60));
    loop {
        let (with_ready, ready) = ready_routes(&client).await;
        if with_ready == n && ready == want_ready {
            break;
        }
        assert!(
            t.elapsed() < patience,
            "only {ready} of {want_ready} Routes Ready after {} s",
            t.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let served_after = t.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let full = status_kib(pid, "VmRSS:");
    let full_anon = status_kib(pid, "RssAnon:");
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "  {n} Routes: all Ready {:.1} s after the first write; portcullis dev {}",
        served_after.as_secs_f64(),
        mib(full)
    );
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        for bin in &opts.run_bins {
            let f = controller_only(bin, &kubeconfig, patience).await;
            eprintln!(
                "  {n} Routes, round {round}: portcullis run ({bin}) {} (anonymous {}, peak {}), first compile {:.1} ms; load {}",
                mib(f.rss),
                mib(f.anon),
                mib(f.peak),
                f.build.as_secs_f64() * 1e3,
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            );
            runs.push((bin.clone(), f));
        }
    }
    if !hold.is_zero() {
        eprintln!(
            "holding portcullis dev (pid {pid}) for {} s: export KUBECONFIG={kubeconfig}",
            hold.as_secs()
        );
        tokio::time::sleep(hold).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    RssRow {
        routes: n,
        services,
        idle,
        backends,
        full,
        full_anon,
        peak,
        served_after,
        runs,
    }
}

/// One sample of a Prometheus text exposition: the value of the line named `name`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// RSS, peak RSS and the compile from nothing of a `portcullis run` process (the controller
/// without the embedded API) watching the API of `kubeconfig`, once its first table is live. The
/// `portcullis dev` process holds the lease, so this one only watches, compiles and serves, like
/// a second replica.
async fn controller_only(bin: &str, kubeconfig: &str, patience: Duration) -> RunFigures {
    let mut child = tokio::process::Command::new(bin)
        .args(["run", "--kubeconfig", kubeconfig])
        // Its own listeners: the `portcullis dev` process holds the default ports.
        .env("PORTCULLIS_LISTEN_ADMIN", "127.0.0.1:0")
        .env("PORTCULLIS_LISTEN_HTTP", "127.0.0.1:0")
        .env("PORTCULLIS_LISTEN_HTTPS", "127.0.0.1:0")
        .env("PORTCULLIS_LISTEN_SSH", "127.0.0.1:0")
        // As the Helm chart's Deployment runs it (see `templates/deployment.yaml`).
        .env("MALLOC_ARENA_MAX", "2")
        .env("MALLOC_MMAP_THRESHOLD_", "131072")
        .env("PORTCULLIS_LOG_LEVEL", "info")
        .env("PORTCULLIS_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis run");
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(a) = v["admin"].as_str() {
                return a.to_owned();
            }
        }
        panic!("portcullis run exited");
    })
    .await
    .expect("portcullis run prints its admin address");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let t = Instant::now();
    while http_status(&admin, "/readyz").await != Some(200) {
        assert!(t.elapsed() < patience, "portcullis run never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http_get(&admin, "/metrics").await.unwrap_or_default().1;
    let build = metric(&metrics, "portcullis_table_build_seconds_sum")
        .expect("portcullis run reports portcullis_table_build_seconds once ready");
    let builds = metric(&metrics, "portcullis_table_build_seconds_count").unwrap_or(0.0) as u64;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let f = RunFigures {
        rss: status_kib(pid, "VmRSS:"),
        anon: status_kib(pid, "RssAnon:"),
        peak: status_kib(pid, "VmHWM:"),
        build: Duration::from_secs_f64(build),
        builds,
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    f
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--live") {
        let which = args.get(i + 1).map(String::as_str).unwrap_or("all");
        // `RUST_LOG=portcullis::controller::publisher=debug` shows each compile's duration.
        if std::env::var_os("RUST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .init();
        }
        let applies = args
            .iter()
            .position(|a| a == "--applies")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(APPLIES);
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
        };
        let rss = RssOptions {
            routes: flag("--routes")
                .map(|r| {
                    r.split(',')
                        .map(|n| n.parse().expect("--routes N,M,.."))
                        .collect()
                })
                .unwrap_or_else(|| vec![ROUTES]),
            run_bins: flag("--run-bins")
                .map(|b| b.split(',').map(str::to_owned).collect())
                .unwrap_or_else(|| vec![portcullis_bin()]),
            rounds: flag("--rounds").and_then(|n| n.parse().ok()).unwrap_or(1),
            hold: Duration::from_secs(flag("--hold").and_then(|n| n.parse().ok()).unwrap_or(0)),
        };
        let rt = runtime();
        if which != "rss" {
            rt.block_on(live_apply(applies));
        }
        if which != "apply" {
            rt.block_on(live_rss(&rss));
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    compile_bench(&mut c);
    lookup_bench(&mut c);
    c.final_summary();
}
