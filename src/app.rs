//! Wiring of the processes Portcullis runs. `portcullis dev` = the embedded API + our CRDs +
//! the manifest loader + the admin listener, in one process; later parts (controller, proxy,
//! identity) join here. `build` binds sockets and fails early; then everything runs until a
//! signal, and shuts down in reverse order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::config::{ConfigError, Settings};
use crate::controller::Controller;
use crate::controller::leader::{LeaderConfig, Leadership};
use crate::devapi::{DevApi, DevApiConfig, DevApiError, ensure_namespaces, manifests};
use crate::routing::live::LiveTable;

/// Errors starting or running a Portcullis process.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedded API could not start.
    #[error(transparent)]
    DevApi(#[from] DevApiError),
    /// A listener could not be bound.
    #[error("listening on {addr} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Installing our CRDs into the embedded API failed.
    #[error("installing the Portcullis CRDs: {0}")]
    Crds(String),
    /// Installing the `portcullis` IngressClass into the embedded API failed.
    #[error("installing the portcullis IngressClass: {0}")]
    IngressClass(String),
    /// Leader election could not start.
    #[error(transparent)]
    Leader(#[from] crate::controller::leader::LeaderError),
    /// No Kubernetes client could be built.
    #[error("connecting to the Kubernetes API")]
    Client(#[source] kube::Error),
}

/// Options of `portcullis dev` that are not process settings.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Data directory (store, CA, token, kubeconfig).
    pub data_dir: PathBuf,
    /// Manifest directories or files.
    pub manifests: Vec<PathBuf>,
    /// The embedded API's address (loopback only).
    pub api_addr: SocketAddr,
}

/// A running `portcullis dev`.
pub struct Dev {
    /// The embedded API.
    pub api: DevApi,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The live routing table.
    pub live: LiveTable,
    /// The controller feeding it.
    pub controller: Controller,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Dev {
    /// Start everything; returns once the first state is live (CRDs installed, manifests applied).
    pub async fn start(settings: &Settings, opts: DevOptions) -> Result<Self, AppError> {
        let admin = crate::admin::bind(settings.listen.admin)
            .await
            .map_err(|source| AppError::Bind {
                what: "admin",
                addr: settings.listen.admin,
                source,
            })?;
        let admin_addr = admin.local_addr().map_err(|source| AppError::Bind {
            what: "admin",
            addr: settings.listen.admin,
            source,
        })?;
        let api = DevApi::start(DevApiConfig {
            data_dir: Some(absolute(&opts.data_dir)),
            addr: opts.api_addr,
            store: Default::default(),
        })
        .await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(crate::admin::serve(
            admin,
            ready_rx,
            shutdown_rx.clone(),
        ))];
        install_crds(&api).await?;
        ensure_namespaces(&api.cluster, &[settings.namespace.as_str()])
            .await
            .map_err(DevApiError::from)?;
        install_ingress_class(&api).await?;
        let dirs: Vec<PathBuf> = opts.manifests.iter().map(|d| absolute(d)).collect();
        if !dirs.is_empty() {
            manifests::initial_sync(&api.cluster, &dirs).await;
            tasks.push(tokio::spawn(manifests::watch_loop(
                api.cluster.clone(),
                dirs,
                shutdown_rx.clone(),
            )));
        }
        let client = api.client().await.map_err(AppError::Client)?;
        let api_uri: http::Uri = api.url().parse().map_err(|e: http::uri::InvalidUri| {
            AppError::Client(kube::Error::Service(Box::new(e)))
        })?;
        let core = Core::start(
            client,
            settings,
            &api_uri,
            // Without authenticateURL, dev serves the identity endpoints on
            // http://localhost:<http port>.
            Some(authenticate_host(settings).unwrap_or_else(|| "localhost".to_owned())),
            &[api.addr],
            DEV_IDENTITY.to_owned(),
            ready_tx,
            &shutdown_rx,
            &mut tasks,
        )?;
        let Core { live, controller } = core;
        if live.wait_for(1, FIRST_TABLE_WAIT).await.is_none() {
            tracing::warn!(
                "the first routing table is not live yet; /readyz reports ready once it is"
            );
        }
        Ok(Self {
            api,
            admin_addr,
            live,
            controller,
            shutdown,
            tasks,
        })
    }

    /// The lines `portcullis dev` prints: one per listener, then the `export` line.
    pub fn banner(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "portcullis dev: kubernetes api https://{} (embedded)",
                self.api.addr
            ),
            format!(
                "portcullis dev: admin http://{} (/healthz, /readyz)",
                self.admin_addr
            ),
        ];
        if let Some(ca) = &self.api.ca_path {
            lines.push(format!("portcullis dev: ca certificate {}", ca.display()));
        }
        if let Some(kc) = &self.api.kubeconfig_path {
            lines.push(format!("export KUBECONFIG={}", kc.display()));
        }
        lines
    }

    /// Stop everything in reverse order and flush storage.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.controller.join().await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.api.shutdown().await;
    }
}

/// What `portcullis dev` and `portcullis run` share: leader election, the controller and the
/// live table, with readiness once the first table is live.
struct Core {
    live: LiveTable,
    controller: Controller,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    fn start(
        client: kube::Client,
        settings: &Settings,
        api_uri: &http::Uri,
        authenticate_host: Option<String>,
        extra_listeners: &[SocketAddr],
        identity: String,
        ready_tx: watch::Sender<bool>,
        shutdown_rx: &watch::Receiver<bool>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<Self, AppError> {
        let (leadership, leader_task) = Leadership::start(
            client.clone(),
            LeaderConfig::new(&settings.namespace, identity),
            shutdown_rx.clone(),
        )?;
        tasks.push(leader_task);
        let live = LiveTable::new();
        let context = crate::controller::compile_context(
            settings,
            api_uri,
            authenticate_host,
            extra_listeners,
        );
        let controller = Controller::start(
            client,
            settings,
            context,
            live.clone(),
            leadership,
            issuer_url(settings),
            shutdown_rx.clone(),
        );
        let waiter = live.clone();
        let mut shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut generations = waiter.subscribe();
            tokio::select! {
                r = generations.wait_for(|g| *g >= 1) => if r.is_ok() {
                    // The receiver keeps the last value after the sender is gone.
                    let _ = ready_tx.send(true);
                },
                _ = shutdown.wait_for(|s| *s) => {}
            }
        }));
        Ok(Core { live, controller })
    }
}

/// A running `portcullis run`: the controller against a real cluster.
pub struct Run {
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The live routing table.
    pub live: LiveTable,
    /// The controller feeding it.
    pub controller: Controller,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    /// Connects with `kubeconfig` (or the in-cluster configuration / `KUBECONFIG`), binds the
    /// admin listener and starts leader election and the controller.
    pub async fn start(settings: &Settings, kubeconfig: Option<&Path>) -> Result<Self, AppError> {
        let config = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| AppError::Client(kube::Error::Service(Box::new(e))))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| AppError::Client(kube::Error::Service(Box::new(e))))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| AppError::Client(kube::Error::Service(Box::new(e))))?,
        };
        let api_uri = config.cluster_url.clone();
        let client = kube::Client::try_from(config).map_err(AppError::Client)?;
        let admin = crate::admin::bind(settings.listen.admin)
            .await
            .map_err(|source| AppError::Bind {
                what: "admin",
                addr: settings.listen.admin,
                source,
            })?;
        let admin_addr = admin.local_addr().map_err(|source| AppError::Bind {
            what: "admin",
            addr: settings.listen.admin,
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(crate::admin::serve(
            admin,
            ready_rx,
            shutdown_rx.clone(),
        ))];
        let Core { live, controller } = Core::start(
            client,
            settings,
            &api_uri,
            authenticate_host(settings),
            &[],
            crate::controller::leader::default_identity(),
            ready_tx,
            &shutdown_rx,
            &mut tasks,
        )?;
        Ok(Run {
            admin_addr,
            live,
            controller,
            shutdown,
            tasks,
        })
    }

    /// Stops the controller (releasing the lease) and the admin listener.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.controller.join().await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A Kubernetes client from `kubeconfig`, or the in-cluster configuration / `KUBECONFIG` /
/// `~/.kube/config`.
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, AppError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| AppError::Client(kube::Error::Service(Box::new(e))))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| AppError::Client(kube::Error::Service(Box::new(e))))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| AppError::Client(kube::Error::Service(Box::new(e))))?,
    };
    kube::Client::try_from(config).map_err(AppError::Client)
}

/// The Lease holder name of `portcullis dev`: stable across restarts, so a restarted process
/// takes its lease back at once instead of waiting for it to expire.
const DEV_IDENTITY: &str = "portcullis-dev";

/// How long `portcullis dev` waits for the first routing table before printing its banner.
const FIRST_TABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The issuer: `authenticateURL`, if set.
fn issuer_url(settings: &Settings) -> Option<url::Url> {
    settings
        .authenticate_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
}

/// The host of `authenticateURL`, if set.
fn authenticate_host(settings: &Settings) -> Option<String> {
    settings
        .authenticate_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// The `portcullis` IngressClass, default class of the dev cluster, so that `kubectl create
/// ingress` without `--class` reaches Portcullis.
async fn install_ingress_class(api: &DevApi) -> Result<(), AppError> {
    let doc = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": crate::controller::compile::INGRESS_CLASS,
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": crate::controller::compile::INGRESS_CONTROLLER},
    });
    manifests::apply(&api.cluster, doc, "")
        .await
        .map(|_| ())
        .map_err(|e| AppError::IngressClass(e.message))
}

async fn install_crds(api: &DevApi) -> Result<(), AppError> {
    for crd in crate::api::all_crds() {
        let doc = serde_json::to_value(&crd).map_err(|e| AppError::Crds(e.to_string()))?;
        manifests::apply(&api.cluster, doc, "")
            .await
            .map_err(|e| AppError::Crds(e.message))?;
    }
    Ok(())
}

/// Wait for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
