//! Leader election against the embedded API: one leader at a time, a quick hand-over when the
//! leader shuts down, a leader cut off from the API steps down before its lease expires, and the
//! single-process mode.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use common::{client, eventually, start_api};
use portcullis::controller::leader::{LeaderConfig, Leadership};
use portcullis::devapi::DevApi;

const NS: &str = "kube-system";

/// One replica: its leadership, the sender that shuts it down, and its election task.
struct Replica {
    leadership: Leadership,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Replica {
    fn start(client: Client, lease: &str, identity: &str, duration: u64, grace: u64) -> Self {
        let cfg = LeaderConfig {
            lease_name: lease.to_string(),
            lease_duration: Duration::from_secs(duration),
            grace: Duration::from_secs(grace),
            retry_period: Duration::from_millis(200),
            ..LeaderConfig::new(NS, identity)
        };
        let (shutdown, rx) = watch::channel(false);
        let (leadership, task) = Leadership::start(client, cfg, rx).expect("valid settings");
        Self {
            leadership,
            shutdown,
            task,
        }
    }

    fn leads(&self) -> bool {
        self.leadership.is_leader()
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        timeout(Duration::from_secs(15), self.task)
            .await
            .expect("election task ends after shutdown")
            .expect("election task does not panic");
    }
}

async fn lease(c: &Client, name: &str) -> Lease {
    Api::<Lease>::namespaced(c.clone(), NS)
        .get(name)
        .await
        .expect("lease exists")
}

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

/// When the stored lease expires for other replicas: `renewTime + leaseDurationSeconds`.
fn server_expiry(l: &Lease) -> Timestamp {
    let spec = l.spec.as_ref().expect("spec");
    let renewed = spec.renew_time.as_ref().expect("renewTime").0;
    renewed + SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.expect("duration")))
}

/// Waits until exactly one of `replicas` leads and returns its index.
async fn one_leader(replicas: &[&Replica]) -> usize {
    eventually(15, "a leader", || async {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|i| replicas[*i].leads())
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        leading.first().copied()
    })
    .await
}

/// A TCP relay to the embedded API that can be cut: after `cut`, bytes stop flowing both ways
/// and new connections are accepted but never answered, like a network partition.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    if !*cut_rx.borrow() {
                        let mut up = TcpStream::connect(target).await.unwrap();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut down, &mut up) => return,
                            _ = cut_rx.wait_for(|c| *c) => {}
                        }
                    }
                    // Partitioned: the client's side stays open and silent.
                    std::future::pending::<()>().await;
                    drop(down);
                });
            }
        });
        Self { addr, cut }
    }

    fn cut(&self) {
        self.cut.send(true).unwrap();
    }
}

/// A client for `api` that connects through `relay`.
async fn client_via(api: &DevApi, relay: &Relay) -> Client {
    let yaml = api
        .kubeconfig_yaml()
        .replace(&api.url(), &format!("https://{}", relay.addr));
    let kc = Kubeconfig::from_yaml(&yaml).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_lead_at_once() {
    let api = start_api().await;
    let c = client(&api).await;
    let a = Replica::start(c.clone(), "one-leader", "replica-a", 3, 2);
    let b = Replica::start(c.clone(), "one-leader", "replica-b", 3, 2);
    let first = one_leader(&[&a, &b]).await;
    let ids = ["replica-a", "replica-b"];

    // Across several renewals (every second), exactly one leads and the Lease names it.
    let until = Instant::now() + Duration::from_secs(4);
    let mut checks = 0;
    while Instant::now() < until {
        let (la, lb) = (a.leads(), b.leads());
        assert!(la != lb, "exactly one leader: a={la} b={lb}");
        assert_eq!(usize::from(lb), first, "leadership moved without a failure");
        checks += 1;
        sleep(Duration::from_millis(25)).await;
    }
    assert!(checks > 50);
    let stored = lease(&c, "one-leader").await;
    assert_eq!(holder(&stored).as_deref(), Some(ids[first]));
    assert!(server_expiry(&stored) > Timestamp::now());
    let leader = if first == 0 { &a } else { &b };
    let other = if first == 0 { &b } else { &a };
    assert!(*leader.leadership.subscribe().borrow());
    assert!(!*other.leadership.subscribe().borrow());
    assert_eq!(leader.leadership.identity(), ids[first]);

    a.stop().await;
    b.stop().await;
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_the_leader_hands_over_without_waiting_for_expiry() {
    let api = start_api().await;
    let c = client(&api).await;
    // A 30 s lease: waiting for expiry would take far longer than the hand-over may.
    let a = Replica::start(c.clone(), "handover", "replica-a", 30, 20);
    let b = Replica::start(c.clone(), "handover", "replica-b", 30, 20);
    let first = one_leader(&[&a, &b]).await;
    let (leader, successor) = if first == 0 { (a, b) } else { (b, a) };
    // Let the successor settle into waiting for the lease to expire.
    sleep(Duration::from_secs(1)).await;
    assert!(leader.leads());
    let mut successor_rx = successor.leadership.subscribe();
    assert!(!*successor_rx.borrow_and_update());

    let stopped = leader.leadership.clone();
    let mut stopped_rx = stopped.subscribe();
    let began = Instant::now();
    leader.stop().await;
    assert!(!stopped.is_leader(), "a stopped replica does not lead");
    assert!(!*stopped_rx.borrow_and_update());

    timeout(Duration::from_secs(10), successor_rx.wait_for(|l| *l))
        .await
        .expect("the successor takes over well before the 30 s lease would expire")
        .unwrap();
    assert!(successor.leads());
    assert!(began.elapsed() < Duration::from_secs(10));
    let stored = lease(&c, "handover").await;
    assert_eq!(
        holder(&stored).as_deref(),
        Some(successor.leadership.identity())
    );

    successor.stop().await;
    // The last replica released the lease too.
    assert_eq!(holder(&lease(&c, "handover").await), None);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_before_its_lease_expires() {
    let api = start_api().await;
    let c = client(&api).await;
    let relay = Relay::start(api.addr).await;
    let a = Replica::start(
        client_via(&api, &relay).await,
        "partition",
        "replica-a",
        3,
        2,
    );
    let mut a_rx = a.leadership.subscribe();
    timeout(Duration::from_secs(15), a_rx.wait_for(|l| *l))
        .await
        .expect("replica-a leads")
        .unwrap();
    let b = Replica::start(c.clone(), "partition", "replica-b", 3, 2);
    // Let replica-b settle into waiting while replica-a renews.
    sleep(Duration::from_millis(1500)).await;
    assert!(a.leads() && !b.leads());

    relay.cut();
    // Renewals now hang without an error; only the local deadline can end replica-a's term.
    let stepped_down = eventually(10, "replica-a to step down", || async {
        assert!(!(a.leads() && b.leads()), "two leaders at once");
        (!a.leads()).then(Timestamp::now)
    })
    .await;
    let stored = lease(&c, "partition").await;
    assert_eq!(
        holder(&stored).as_deref(),
        Some("replica-a"),
        "replica-a stopped while the lease still names it"
    );
    assert!(
        stepped_down < server_expiry(&stored),
        "replica-a stopped at {stepped_down}, not before its lease expired at {}",
        server_expiry(&stored)
    );
    timeout(Duration::from_secs(5), a_rx.wait_for(|l| !*l))
        .await
        .expect("subscribers hear that replica-a stopped")
        .unwrap();

    eventually(15, "replica-b to take over after expiry", || async {
        assert!(!(a.leads() && b.leads()), "two leaders at once");
        b.leads().then_some(())
    })
    .await;
    let stored = lease(&c, "partition").await;
    assert_eq!(holder(&stored).as_deref(), Some("replica-b"));
    assert!(!a.leads());

    // Shutting down a partitioned replica ends even though its release cannot reach the API.
    a.stop().await;
    assert!(b.leads());
    b.stop().await;
    api.shutdown().await;
}

#[tokio::test]
async fn always_is_leader() {
    let l = Leadership::always();
    assert!(l.is_leader());
    assert!(l.clone().is_leader());
    assert!(*l.subscribe().borrow());
}
