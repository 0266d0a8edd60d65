//! Wiring of the processes Portcullis runs. `portcullis dev` = the embedded API + our CRDs +
//! the manifest loader + the admin listener, in one process; later parts (controller, proxy,
//! identity) join here. `build` binds sockets and fails early; then everything runs until a
//! signal, and shuts down in reverse order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::config::{ConfigError, Settings};
use crate::devapi::{DevApi, DevApiConfig, DevApiError, ensure_namespaces, manifests};

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
        let dirs: Vec<PathBuf> = opts.manifests.iter().map(|d| absolute(d)).collect();
        if !dirs.is_empty() {
            manifests::initial_sync(&api.cluster, &dirs).await;
            tasks.push(tokio::spawn(manifests::watch_loop(
                api.cluster.clone(),
                dirs,
                shutdown_rx.clone(),
            )));
        }
        // The receiver keeps the last value after the sender is gone.
        let _ = ready_tx.send(true);
        Ok(Self {
            api,
            admin_addr,
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
        for t in self.tasks {
            let _ = t.await;
        }
        self.api.shutdown().await;
    }
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
