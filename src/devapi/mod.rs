//! The embedded Kubernetes-compatible API server behind `portcullis dev`.
//!
//! ```text
//! kubectl / helm / kube-rs ──TLS + bearer token──► server (HTTP, list/watch protocol)
//!                                                     │
//!                                                  cluster (lifecycle rules, CRDs, validation)
//!                                                     │
//!                                                  store (objects, one resourceVersion, history, fan-out)
//!                                                     │
//!                                                  persist (snapshot + CRC-framed log in --data-dir)
//! ```
//!
//! It is a single-node development and test default, not a replacement for etcd. See
//! `docs/devapi.md` for what it implements and what it leaves out.

pub mod access;
pub mod builtin_schema;
pub mod cluster;
pub mod convert;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod gojson;
pub mod jsonbody;
pub mod jsonpath;
pub mod manifests;
pub mod meta;
pub mod openapi;
pub mod persist;
pub mod protobuf;
pub mod resources;
pub mod satoken;
pub mod scale;
pub mod schema;
pub mod selector;
pub mod server;
pub mod smp;
pub mod ssa;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use cluster::{Cluster, WriteOptions};
use server::ServerState;
use store::{Store, StoreOptions};
use tls::{DevCa, TlsError, write_private};

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Errors starting the embedded API.
#[derive(Debug, thiserror::Error)]
pub enum DevApiError {
    /// The API may only listen on loopback.
    #[error("the embedded API listens on loopback only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    /// The data directory could not be used.
    #[error("data directory {path}")]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The stored data could not be loaded.
    #[error("stored data in {path} cannot be used")]
    Store {
        /// The data directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: store::StoreError,
    },
    /// Certificates could not be created.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding the listener failed.
    #[error("listening on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating a bootstrap object failed.
    #[error("bootstrapping the embedded API: {0}")]
    Bootstrap(#[from] error::ApiError),
}

/// Settings of the embedded API.
#[derive(Debug, Clone)]
pub struct DevApiConfig {
    /// Where objects, the CA, the token and the kubeconfig live. `None` keeps everything in
    /// memory and writes nothing (tests).
    pub data_dir: Option<PathBuf>,
    /// Listen address (loopback only; port 0 picks one).
    pub addr: SocketAddr,
    /// Store tunables.
    pub store: StoreOptions,
}

/// A running embedded API.
pub struct DevApi {
    /// The cluster state (for in-process callers such as the manifest loader).
    pub cluster: Arc<Cluster>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The kubeconfig file (when a data directory is used).
    pub kubeconfig_path: Option<PathBuf>,
    /// The CA file (when a data directory is used).
    pub ca_path: Option<PathBuf>,
    ca_pem: String,
    token: String,
    state: Arc<ServerState>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn data_err(path: &Path) -> impl FnOnce(std::io::Error) -> DevApiError + '_ {
    move |source| DevApiError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DevApi {
    /// Open the store, create the CA and token when missing, bind, bootstrap the system
    /// namespaces and start serving.
    pub async fn start(cfg: DevApiConfig) -> Result<Self, DevApiError> {
        if !cfg.addr.ip().is_loopback() {
            return Err(DevApiError::NotLoopback(cfg.addr));
        }
        let (store, ca, token, dir) = match &cfg.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(data_err(dir))?;
                let (store, warnings) = Store::open(&dir.join("store"), cfg.store.clone())
                    .map_err(|source| DevApiError::Store {
                        path: dir.join("store"),
                        source,
                    })?;
                for w in warnings {
                    tracing::warn!(warning = %w, "embedded API storage");
                }
                let ca = DevCa::load_or_create(dir)?;
                let token_path = dir.join("api-token");
                let token = match std::fs::read_to_string(&token_path) {
                    Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
                    _ => {
                        let t = random_token();
                        write_private(&token_path, t.as_bytes(), 0o600)
                            .map_err(data_err(&token_path))?;
                        t
                    }
                };
                (store, ca, token, Some(dir.clone()))
            }
            None => (
                Store::in_memory(cfg.store.clone()),
                DevCa::ephemeral()?,
                random_token(),
                None,
            ),
        };
        let cluster = Arc::new(Cluster::new(store));
        let listener = TcpListener::bind(cfg.addr)
            .await
            .map_err(|source| DevApiError::Bind {
                addr: cfg.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| DevApiError::Bind {
            addr: cfg.addr,
            source,
        })?;
        let tls = ca.server_config(&["localhost", "127.0.0.1", "::1"])?;
        let sa = Arc::new(satoken::SaIssuer::load_or_create(
            dir.as_deref(),
            format!("https://{addr}"),
        )?);
        bootstrap(&cluster).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(ServerState {
            cluster: cluster.clone(),
            token: token.clone(),
            address: addr.to_string(),
            shutdown: shutdown_rx,
            sa,
            access: std::sync::OnceLock::new(),
        });
        let task = tokio::spawn(server::serve(
            listener,
            tokio_rustls::TlsAcceptor::from(tls),
            Arc::clone(&state),
        ));
        let mut api = Self {
            cluster,
            addr,
            kubeconfig_path: None,
            ca_path: None,
            ca_pem: ca.cert_pem().to_string(),
            token,
            state,
            shutdown,
            task,
        };
        if let Some(dir) = dir {
            let kc = dir.join("kubeconfig");
            write_private(&kc, api.kubeconfig_yaml().as_bytes(), 0o600).map_err(data_err(&kc))?;
            api.kubeconfig_path = Some(kc);
            api.ca_path = Some(dir.join("ca.crt"));
        }
        Ok(api)
    }

    /// From now on, appends each distinct API call clients make to `path` (see [`access`]).
    /// Only the first call has an effect.
    pub fn record_access(&self, path: PathBuf) -> Result<(), DevApiError> {
        let recorder = access::AccessRecorder::new(path.clone())
            .map_err(|source| DevApiError::DataDir { path, source })?;
        let _ = self.state.access.set(recorder);
        Ok(())
    }

    /// The API's URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token clients must present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig for this API (context `portcullis-dev`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "portcullis-dev", "cluster": {"server": self.url(), "certificate-authority-data": ca}}],
            "users": [{"name": "portcullis-dev", "user": {"token": self.token}}],
            "contexts": [{"name": "portcullis-dev", "context": {"cluster": "portcullis-dev", "user": "portcullis-dev", "namespace": "default"}}],
            "current-context": "portcullis-dev",
            "preferences": {},
        });
        serde_yaml::to_string(&doc).unwrap_or_default()
    }

    /// A kube client for this API, configured from [`DevApi::kubeconfig_yaml`] as a user's
    /// tools would be.
    pub async fn client(&self) -> Result<kube::Client, kube::Error> {
        self.client_with_headers(Vec::new()).await
    }

    /// [`Self::client`] with extra headers on every request (such as a `User-Agent`).
    pub async fn client_with_headers(
        &self,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> Result<kube::Client, kube::Error> {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        cfg.headers.extend(headers);
        kube::Client::try_from(cfg)
    }

    /// Stop serving, end watches, and flush storage.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        match Arc::try_unwrap(self.cluster) {
            Ok(cluster) => {
                if let Err(e) = cluster.store.close() {
                    tracing::error!(error = %crate::error_chain(&e), "flushing the embedded API storage failed");
                }
            }
            Err(_) => tracing::debug!("cluster still shared at shutdown; storage flushes on drop"),
        }
    }
}

/// Create the namespaces every cluster has.
async fn bootstrap(cluster: &Cluster) -> Result<(), error::ApiError> {
    ensure_namespaces(cluster, SYSTEM_NAMESPACES).await
}

/// Create namespaces that do not exist yet.
pub async fn ensure_namespaces(cluster: &Cluster, names: &[&str]) -> Result<(), error::ApiError> {
    let Some(def) = cluster.resolve("", "v1", "namespaces") else {
        return Ok(());
    };
    for ns in names {
        if cluster.store.get(&def.key("", ns)).is_none() {
            cluster
                .create(
                    def.clone(),
                    "",
                    json!({"metadata": {"name": ns}}),
                    &WriteOptions::default(),
                )
                .await?;
        }
    }
    Ok(())
}
