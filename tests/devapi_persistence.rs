//! Durability of the embedded API: what a client was told is stored survives a graceful restart
//! and `kill -9` of the real binary, and resource versions keep rising across restarts.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use portcullis::devapi::{DevApi, DevApiConfig};

use common::{client, crypto};

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
        ..Default::default()
    }
}

fn rv(o: &ConfigMap) -> u64 {
    o.resource_version()
        .and_then(|r| r.parse().ok())
        .expect("numeric rv")
}

async fn start_in(dir: &Path) -> DevApi {
    crypto();
    DevApi::start(DevApiConfig {
        data_dir: Some(dir.to_path_buf()),
        addr: "127.0.0.1:0".parse().expect("addr"),
        store: Default::default(),
    })
    .await
    .expect("start")
}

#[tokio::test]
async fn graceful_restart_keeps_objects_and_versions_rise() {
    let dir = tempfile::tempdir().expect("dir");
    let api = start_in(dir.path()).await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let a = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .expect("create");
    let b = cms
        .create(&PostParams::default(), &cm("b", "2"))
        .await
        .expect("create");
    api.shutdown().await;

    let api = start_in(dir.path()).await;
    let c = client(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let a2 = cms.get("a").await.expect("a survives");
    assert_eq!(a2.metadata.uid, a.metadata.uid);
    assert_eq!(a2.data, a.data);
    let c3 = cms
        .create(&PostParams::default(), &cm("c", "3"))
        .await
        .expect("create");
    assert!(rv(&c3) > rv(&b), "versions keep rising across restarts");
    api.shutdown().await;
}

struct Dev {
    child: Child,
    kubeconfig: String,
}

fn spawn_dev(dir: &Path) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args([
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
            "--ssh-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn portcullis dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("export KUBECONFIG=") {
                let _ = tx.send(p.to_string());
            }
        }
    });
    let path = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("portcullis dev printed its kubeconfig");
    Dev {
        child,
        kubeconfig: std::fs::read_to_string(path).expect("kubeconfig"),
    }
}

async fn client_for(dev: &Dev) -> kube::Client {
    crypto();
    let kc = Kubeconfig::from_yaml(&dev.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("dir");
    let mut dev = spawn_dev(dir.path());
    let cms: Api<ConfigMap> = Api::namespaced(client_for(&dev).await, "default");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let cms = cms.clone();
        set.spawn(async move {
            cms.create(
                &PostParams::default(),
                &cm(&format!("k{i}"), &i.to_string()),
            )
            .await
        });
    }
    let mut acked = Vec::new();
    while let Some(r) = set.join_next().await {
        acked.push(r.expect("task").expect("create acknowledged"));
    }
    let max_rv = acked.iter().map(rv).max().expect("some");
    // SIGKILL right after the last acknowledgement: no chance to flush anything.
    dev.child.kill().expect("kill -9");
    dev.child.wait().expect("reaped");

    let mut dev = spawn_dev(dir.path());
    let cms: Api<ConfigMap> = Api::namespaced(client_for(&dev).await, "default");
    let list = cms.list(&ListParams::default()).await.expect("list");
    let stored: BTreeMap<String, ConfigMap> =
        list.items.into_iter().map(|o| (o.name_any(), o)).collect();
    for a in &acked {
        let s = stored
            .get(&a.name_any())
            .expect("acknowledged object survived");
        assert_eq!(s.metadata.uid, a.metadata.uid);
        assert_eq!(s.data, a.data);
        assert_eq!(s.resource_version(), a.resource_version());
    }
    let next = cms
        .create(&PostParams::default(), &cm("after", "x"))
        .await
        .expect("create");
    assert!(rv(&next) > max_rv);
    dev.child.kill().expect("kill");
    let _ = dev.child.wait();
}
