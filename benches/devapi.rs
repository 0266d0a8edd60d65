//! Embedded API benchmarks: how quickly a write reaches a kube-rs watcher, and how long listing
//! 10k objects takes, through the real HTTPS + JSON path and at the store level.
//!
//! `cargo bench --bench devapi` (figures in docs/benchmarks.md). No timing is asserted anywhere.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use portcullis::devapi::store::{Change, Store, StoreOptions};
use portcullis::devapi::{DevApi, DevApiConfig};
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn start(data_dir: Option<std::path::PathBuf>) -> (DevApi, kube::Client) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = DevApi::start(DevApiConfig {
        data_dir,
        addr: "127.0.0.1:0".parse().expect("addr"),
        store: StoreOptions::default(),
    })
    .await
    .expect("api");
    let kc = Kubeconfig::from_yaml(&api.kubeconfig_yaml()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
    (api, client)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "data": {"key": "value", "other": "x".repeat(200)}}),
    )
    .expect("configmap")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn write_to_watcher(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    for (label, data_dir) in [
        ("in memory", None),
        ("durable, fsync per write", Some(dir.path().to_path_buf())),
    ] {
        let rt = runtime();
        let (api, client) = rt.block_on(start(data_dir));
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        let mut stream = rt.block_on(async {
            let mut s = watcher(cms.clone(), watcher::Config::default()).boxed();
            while let Some(ev) = s.try_next().await.expect("watch") {
                if matches!(ev, watcher::Event::InitDone) {
                    break;
                }
            }
            s
        });
        let mut n = 0u64;
        c.bench_function(&format!("write reaches kube-rs watcher ({label})"), |b| {
            b.iter_custom(|iters| {
                let start_n = n;
                n += iters;
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let name = format!("w{}", start_n + i);
                        let t = Instant::now();
                        cms.create(&PostParams::default(), &cm(&name))
                            .await
                            .expect("create");
                        loop {
                            match stream.try_next().await.expect("watch").expect("open") {
                                watcher::Event::Apply(o)
                                    if o.metadata.name.as_deref() == Some(name.as_str()) =>
                                {
                                    break;
                                }
                                _ => {}
                            }
                        }
                        total += t.elapsed();
                    }
                    total
                })
            })
        });
        rt.block_on(api.shutdown());
    }
}

fn list_10k(c: &mut Criterion) {
    let rt = runtime();
    let (api, client) = rt.block_on(start(None));
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for chunk in 0..16 {
            let cms = cms.clone();
            set.spawn(async move {
                for i in (chunk..10_000).step_by(16) {
                    cms.create(&PostParams::default(), &cm(&format!("l{i:05}")))
                        .await
                        .expect("create");
                }
            });
        }
        while set.join_next().await.is_some() {}
    });
    let mut g = c.benchmark_group("list 10k configmaps");
    g.sample_size(10);
    g.bench_function("kube-rs Api::list over HTTPS", |b| {
        b.to_async(&rt).iter(|| {
            let cms = cms.clone();
            async move {
                let l = cms.list(&ListParams::default()).await.expect("list");
                assert_eq!(l.items.len(), 10_000);
            }
        })
    });
    g.finish();
    rt.block_on(api.shutdown());

    let store = Store::in_memory(StoreOptions::default());
    for i in 0..10_000 {
        store
            .mutate(&format!("core/configmaps/default/l{i:05}"), false, |_| {
                Ok(Change::Put(
                    json!({"metadata": {"name": format!("l{i:05}")}, "data": {"k": "v"}}),
                ))
            })
            .expect("put");
    }
    c.bench_function("store list 10k (no HTTP)", |b| {
        b.iter(|| {
            let p = store
                .list(
                    "core/configmaps/default/",
                    None,
                    None,
                    None,
                    &|_| true,
                    false,
                )
                .expect("list");
            assert_eq!(p.items.len(), 10_000);
        })
    });
}

/// Memory per object, measured first so no earlier benchmark's freed memory is reused. Prints
/// the growth of RSS for 10k and then 20k stored objects (each ~300 bytes of JSON, with history).
fn memory(_: &mut Criterion) {
    let store = Store::in_memory(StoreOptions::default());
    let base = rss_kib();
    let mut report = Vec::new();
    for (from, to) in [(0, 10_000), (10_000, 20_000)] {
        for i in from..to {
            store
                .mutate(&format!("core/configmaps/default/m{i:05}"), false, |_| {
                    Ok(Change::Put(
                        serde_json::to_value(cm(&format!("m{i:05}"))).expect("json"),
                    ))
                })
                .expect("put");
        }
        report.push((to, rss_kib().saturating_sub(base)));
    }
    for (n, kib) in report {
        eprintln!(
            "memory: {n} objects stored, RSS +{kib} KiB ({} bytes/object)",
            kib * 1024 / n
        );
    }
}

criterion_group!(benches, memory, write_to_watcher, list_10k);
criterion_main!(benches);
