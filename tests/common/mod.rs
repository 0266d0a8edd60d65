//! Shared fixtures for the in-process integration tests: an embedded API on a random loopback
//! port and a kube-rs client configured from the kubeconfig it generates.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod fixture;

use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use portcullis::devapi::store::StoreOptions;
use portcullis::devapi::{DevApi, DevApiConfig};

/// Install the process-wide rustls provider (idempotent).
pub fn crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Start an in-memory embedded API.
pub async fn start_api() -> DevApi {
    start_api_with(StoreOptions::default()).await
}

/// Start an in-memory embedded API with store tunables.
pub async fn start_api_with(store: StoreOptions) -> DevApi {
    crypto();
    DevApi::start(DevApiConfig {
        data_dir: None,
        addr: "127.0.0.1:0".parse().expect("addr"),
        store,
    })
    .await
    .expect("embedded API starts")
}

/// A kube-rs client for `api`, built from its kubeconfig exactly as a user's tools would be.
pub async fn client(api: &DevApi) -> Client {
    let kc = Kubeconfig::from_yaml(&api.kubeconfig_yaml()).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

/// Poll `f` until it returns `Some`, or panic after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
