//! The controller: from Kubernetes objects to the one live routing table, and back to the
//! objects as status and Events.
//!
//! ```text
//! watch.rs (watchers) ────notify──► publisher.rs ── snapshot ──► compile/ (pure) ──► LiveTable (ArcSwap)
//!                                        └── reports ──► status.rs ──(leader only)──► status, Events
//! leader.rs (Lease) ──────────────────────────────────────────┘
//! ```
//!
//! Every replica watches, compiles and serves; only the leader writes. `app.rs` starts it with a
//! kube `Client` (the embedded API's under `portcullis dev`, the cluster's under `portcullis run`).

pub mod compile;
pub mod credentials;
pub mod leader;
pub mod publisher;
pub mod snapshot;
pub mod status;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use tokio::sync::{Notify, watch as channel};
use tokio::task::JoinHandle;

use self::compile::CompileContext;
use self::credentials::reconcile::CredentialContext;
use self::credentials::signing::SigningConfig;
use self::leader::Leadership;
use self::publisher::Published;
use self::watch::{Namespaces, Watchers};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::routing::live::LiveTable;
use crate::routing::upstream::AddressPolicy;

/// A running controller.
pub struct Controller {
    /// The stores the reflectors fill.
    pub watchers: Arc<Watchers>,
    /// The reports of the latest published table.
    pub published: channel::Receiver<Arc<Published>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Starts the watchers, the publisher and the status writer. The first table is published
    /// once every watcher has listed; wait for it with [`LiveTable::wait_for`]. Published
    /// tables and failed writes are recorded in `metrics`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        client: Client,
        settings: &Settings,
        context: CompileContext,
        live: LiveTable,
        leadership: Leadership,
        issuer: Option<url::Url>,
        sign_in: Option<channel::Receiver<Option<String>>>,
        metrics: Arc<Metrics>,
        shutdown: channel::Receiver<bool>,
    ) -> Self {
        let changed = Arc::new(Notify::new());
        // A change in whether people can sign in changes Route conditions: compile again.
        if let Some(mut sign_in) = sign_in.clone() {
            let changed = Arc::clone(&changed);
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = sign_in.changed() => if r.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    changed.notify_one();
                }
            });
        }
        let namespaces = Namespaces::from_setting(&settings.watch_namespaces);
        let watchers = Arc::new(Watchers::start(
            &client,
            &namespaces,
            &settings.namespace,
            Arc::clone(&changed),
            &shutdown,
        ));
        let (published_tx, published) = channel::channel(Arc::new(Published::default()));
        let publisher = tokio::spawn(publisher::run(
            Arc::clone(&watchers),
            changed,
            live,
            move || CompileContext {
                now: jiff::Timestamp::now().as_second(),
                sign_in_unavailable: sign_in.as_ref().and_then(|s| s.borrow().clone()),
                idp_configured: sign_in.is_some(),
                ..context.clone()
            },
            published_tx,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
        let publish_address =
            Some(settings.publish_status_address.clone()).filter(|a| !a.is_empty());
        let status = tokio::spawn(status::run(
            client.clone(),
            Arc::clone(&watchers),
            published.clone(),
            leadership.clone(),
            publish_address,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
        let credentials = tokio::spawn(credentials::reconcile::run(
            client,
            Arc::clone(&watchers),
            published.clone(),
            leadership,
            CredentialContext {
                namespace: settings.namespace.clone(),
                issuer,
                signing: signing_config(settings),
                metrics,
            },
            shutdown,
        ));
        Controller {
            watchers,
            published,
            tasks: vec![publisher, status, credentials],
        }
    }

    /// Waits for the controller's tasks to end (after shutdown).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        if let Ok(w) = Arc::try_unwrap(self.watchers) {
            w.join().await;
        }
    }
}

/// The signing keys these settings ask for. Replaced keys stay published for the longest
/// token lifetime (access tokens up to 24h, sessions up to `sessionLifetime`) plus leeway.
pub fn signing_config(settings: &Settings) -> SigningConfig {
    let longest = credentials::spec::ACCESS_TOKEN_TTL_RANGE
        .1
        .max(settings.session_lifetime.0);
    SigningConfig {
        secret_name: settings.signing.secret_name.clone(),
        algorithm: settings.signing.algorithm.parse().unwrap_or_default(),
        rotate_every: settings.signing.rotate_every.0,
        max_token_lifetime: longest + std::time::Duration::from_secs(300),
    }
}

/// The compile context for these settings. `api_server` is the Kubernetes API the controller
/// talks to (never a valid upstream), `authenticate_host` the host of the identity endpoints.
pub fn compile_context(
    settings: &Settings,
    api_server: &http::Uri,
    authenticate_host: Option<String>,
    extra_listeners: &[SocketAddr],
) -> CompileContext {
    let l = &settings.listen;
    let mut own_listeners = vec![l.http, l.https, l.ssh, l.admin];
    own_listeners.extend_from_slice(extra_listeners);
    let mut api_servers = Vec::new();
    let mut api_server_hosts = Vec::new();
    if let Some(host) = api_server.host() {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = api_server.port_u16().unwrap_or(443);
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => api_servers.push(SocketAddr::new(ip, port)),
            Err(_) => api_server_hosts.push(host.to_ascii_lowercase()),
        }
    }
    // `namespace/name`, or a name in Portcullis's own namespace.
    let secret_ref = |value: &str| match value.split_once('/') {
        _ if value.is_empty() => None,
        Some((ns, name)) => Some((ns.to_owned(), name.to_owned())),
        None => Some((settings.namespace.clone(), value.to_owned())),
    };
    CompileContext {
        authenticate_host,
        address_policy: AddressPolicy {
            allow_loopback: settings.allow_loopback_upstreams,
            own_listeners,
            local_ips: Vec::new(),
            api_servers,
            api_server_hosts,
        },
        allow_external_name: settings.allow_external_name_services,
        default_certificate: secret_ref(&settings.tls.default_certificate_secret),
        client_ca: secret_ref(&settings.downstream_mtls.ca_secret),
        namespace: settings.namespace.clone(),
        signing_secret: settings.signing.secret_name.clone(),
        now: jiff::Timestamp::now().as_second(),
        sign_in_unavailable: None,
        idp_configured: settings.idp.is_some(),
    }
}
