//! Wiring of the processes Portcullis runs. `portcullis dev` = the embedded API + our CRDs +
//! the manifest loader + the admin listener + the controller + the HTTP and HTTPS listeners with
//! the identity endpoints, in one process; `portcullis run` = the same without the embedded API.
//! `start` binds every socket first and fails early; then everything runs until a signal, and
//! shuts down in reverse order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::config::{ConfigError, Settings};
use crate::controller::Controller;
use crate::controller::leader::{LeaderConfig, Leadership};
use crate::devapi::tls::DevCa;
use crate::devapi::{DevApi, DevApiConfig, DevApiError, ensure_namespaces, manifests};
use crate::identity::login::{Idp, IdpSettings, SecretSource};
use crate::identity::people::People;
use crate::identity::service::{Clock, DEFAULT_BODY_READ_TIMEOUT, IdentityConfig, IdentityService};
use crate::metrics::Metrics;
use crate::proxy::access_log::AccessLog;
use crate::proxy::listener::{self, ListenerLimits, Transport};
use crate::proxy::workers::Workers;
use crate::proxy::{Proxy, ProxyConfig};
use crate::routing::live::LiveTable;
use crate::routing::upstream::AddressPolicy;

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
    /// The https listener's TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] crate::proxy::tls::TlsError),
    /// The session store could not start.
    #[error("starting the session store")]
    Store(#[from] crate::store::StoreError),
    /// The proxy's worker threads could not start.
    #[error("starting the proxy workers")]
    Workers(#[source] std::io::Error),
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
    /// Where to serve the echo upstream of the quickstart (`None`: not at all).
    pub echo_addr: Option<SocketAddr>,
    /// Append each distinct API call clients make to this file (`--record-api-access`).
    pub record_api_access: Option<PathBuf>,
    /// Where the proxy's access log goes.
    pub access_log: AccessLog,
}

/// A running `portcullis dev`.
pub struct Dev {
    /// The embedded API.
    pub api: DevApi,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The plain-HTTP listener's address.
    pub http_addr: SocketAddr,
    /// The HTTPS listener's address.
    pub https_addr: SocketAddr,
    /// The echo upstream's address, when served.
    pub echo_addr: Option<SocketAddr>,
    /// The issuer of the identity endpoints (`authenticateURL`, else
    /// `http://localhost:<http port>`).
    pub issuer: Url,
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
        let (admin, admin_addr) = bind_named("admin", settings.listen.admin).await?;
        let listeners = Listeners::bind(settings).await?;
        let echo = match opts.echo_addr {
            Some(addr) => Some(bind_named("echo", addr).await?),
            None => None,
        };
        // Without authenticateURL, dev serves the identity endpoints on
        // http://localhost:<http port>: the bound port, so port 0 works too.
        let issuer = match issuer_url(settings)? {
            Some(url) => url,
            None => parse_issuer(&format!("http://localhost:{}", listeners.http_addr.port()))?,
        };
        let data_dir = absolute(&opts.data_dir);
        let api = DevApi::start(DevApiConfig {
            data_dir: Some(data_dir.clone()),
            addr: opts.api_addr,
            store: Default::default(),
        })
        .await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let mut tasks = vec![tokio::spawn(crate::admin::serve(
            admin,
            ready_rx,
            Arc::clone(&metrics),
            shutdown_rx.clone(),
        ))];
        let echo_addr = echo.as_ref().map(|(_, addr)| *addr);
        if let Some((socket, _)) = echo {
            tasks.push(tokio::spawn(crate::echo::serve(
                socket,
                shutdown_rx.clone(),
            )));
        }
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
        if let Some(path) = &opts.record_api_access {
            api.record_access(absolute(path))?;
        }
        let client = api
            .client_with_headers(vec![controller_user_agent()])
            .await
            .map_err(AppError::Client)?;
        let api_uri: http::Uri = api.url().parse().map_err(|e: http::uri::InvalidUri| {
            AppError::Client(kube::Error::Service(Box::new(e)))
        })?;
        let dev_tls = DevCertificates::new(&data_dir, issuer.host_str())?;
        let people = people_service(settings, &issuer, &client).await?;
        let core = Core::start(
            client,
            settings,
            &api_uri,
            Some(issuer.clone()),
            people.as_ref().map(|p| p.idp().unavailable()),
            &[api.addr, listeners.http_addr, listeners.https_addr],
            DEV_IDENTITY.to_owned(),
            &metrics,
            ready_tx,
            &shutdown_rx,
            &mut tasks,
        )?;
        let Core {
            live,
            controller,
            address_policy,
        } = core;
        let (http_addr, https_addr) = (listeners.http_addr, listeners.https_addr);
        let config = proxy_config(
            settings,
            address_policy,
            https_addr.port(),
            &metrics,
            opts.access_log.clone(),
        );
        listeners.serve(
            &live,
            config,
            Some(identity_service(
                settings,
                issuer.clone(),
                &metrics,
                people.as_ref(),
            )),
            people,
            Some(dev_tls),
            &shutdown_rx,
            &mut tasks,
        )?;
        if live.wait_for(1, FIRST_TABLE_WAIT).await.is_none() {
            tracing::warn!(
                "the first routing table is not live yet; /readyz reports ready once it is"
            );
        }
        Ok(Self {
            api,
            admin_addr,
            http_addr,
            https_addr,
            echo_addr,
            issuer,
            live,
            controller,
            shutdown,
            tasks,
        })
    }

    /// The lines `portcullis dev` prints: one per listener, the issuer, then the `export` line.
    pub fn banner(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "portcullis dev: kubernetes api https://{} (embedded)",
                self.api.addr
            ),
            format!("portcullis dev: http http://{}", reachable(self.http_addr)),
            format!(
                "portcullis dev: https https://{}",
                reachable(self.https_addr)
            ),
            format!(
                "portcullis dev: admin http://{} (/healthz, /readyz, /metrics)",
                self.admin_addr
            ),
        ];
        if let Some(echo) = self.echo_addr {
            lines.push(format!(
                "portcullis dev: echo upstream http://{echo} (what the quickstart route forwards to)"
            ));
        }
        lines.extend([format!(
            "portcullis dev: issuer {}",
            crate::identity::endpoints::issuer_identifier(&self.issuer)
        )]);
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
    /// The upstream address rules the controller compiles with; the proxy checks resolved
    /// addresses against the same rules.
    address_policy: Arc<AddressPolicy>,
}

impl Core {
    /// `issuer` is passed to the controller (workload Secrets) and its host is the authenticate
    /// host of the compile context, so routes can never claim the host the identity endpoints
    /// are served on.
    #[allow(clippy::too_many_arguments)]
    fn start(
        client: kube::Client,
        settings: &Settings,
        api_uri: &http::Uri,
        issuer: Option<Url>,
        sign_in: Option<watch::Receiver<Option<String>>>,
        extra_listeners: &[SocketAddr],
        identity: String,
        metrics: &Arc<Metrics>,
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
        let authenticate_host = issuer
            .as_ref()
            .and_then(|url| url.host_str().map(str::to_owned));
        let context = crate::controller::compile_context(
            settings,
            api_uri,
            authenticate_host,
            extra_listeners,
        );
        let address_policy = Arc::new(context.address_policy.clone());
        let controller = Controller::start(
            client,
            settings,
            context,
            live.clone(),
            leadership,
            issuer,
            sign_in,
            Arc::clone(metrics),
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
        Ok(Core {
            live,
            controller,
            address_policy,
        })
    }
}

/// A running `portcullis run`: the controller against a real cluster, and the listeners.
pub struct Run {
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The plain-HTTP listener's address.
    pub http_addr: SocketAddr,
    /// The HTTPS listener's address.
    pub https_addr: SocketAddr,
    /// The issuer (`authenticateURL`); `None` serves no identity endpoints.
    pub issuer: Option<Url>,
    /// The live routing table.
    pub live: LiveTable,
    /// The controller feeding it.
    pub controller: Controller,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    /// Connects with `kubeconfig` (or the in-cluster configuration / `KUBECONFIG`), binds the
    /// admin, http and https listeners and starts leader election, the controller and the
    /// listeners, the proxy's access log going to `access_log`. Without `authenticateURL` no
    /// identity endpoints are served (logged once).
    pub async fn start(
        settings: &Settings,
        kubeconfig: Option<&Path>,
        access_log: AccessLog,
    ) -> Result<Self, AppError> {
        let mut config = kube_config(kubeconfig).await?;
        config.headers.push(controller_user_agent());
        let api_uri = config.cluster_url.clone();
        let client = kube::Client::try_from(config).map_err(AppError::Client)?;
        let (admin, admin_addr) = bind_named("admin", settings.listen.admin).await?;
        let listeners = Listeners::bind(settings).await?;
        let issuer = issuer_url(settings)?;
        if issuer.is_none() {
            tracing::warn!(
                "authenticateURL is not set: the identity endpoints (token, JWKS, metadata) are not served"
            );
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let mut tasks = vec![tokio::spawn(crate::admin::serve(
            admin,
            ready_rx,
            Arc::clone(&metrics),
            shutdown_rx.clone(),
        ))];
        let people = match &issuer {
            Some(issuer) => people_service(settings, issuer, &client).await?,
            None => {
                if settings.idp.is_some() {
                    tracing::warn!("idp is set but authenticateURL is not: people cannot sign in");
                }
                None
            }
        };
        let Core {
            live,
            controller,
            address_policy,
        } = Core::start(
            client,
            settings,
            &api_uri,
            issuer.clone(),
            people.as_ref().map(|p| p.idp().unavailable()),
            &[listeners.http_addr, listeners.https_addr],
            crate::controller::leader::default_identity(),
            &metrics,
            ready_tx,
            &shutdown_rx,
            &mut tasks,
        )?;
        let (http_addr, https_addr) = (listeners.http_addr, listeners.https_addr);
        // In a cluster a Service maps 443 to the https listener, so redirects name 443.
        let config = proxy_config(settings, address_policy, 443, &metrics, access_log);
        listeners.serve(
            &live,
            config,
            issuer
                .clone()
                .map(|url| identity_service(settings, url, &metrics, people.as_ref())),
            people,
            None,
            &shutdown_rx,
            &mut tasks,
        )?;
        Ok(Run {
            admin_addr,
            http_addr,
            https_addr,
            issuer,
            live,
            controller,
            shutdown,
            tasks,
        })
    }

    /// Stops the controller (releasing the lease), the listeners (draining their connections)
    /// and the admin listener.
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
    kube::Client::try_from(kube_config(kubeconfig).await?).map_err(AppError::Client)
}

/// The `User-Agent` of the controller's API calls, so they can be told apart in audit logs (and
/// in `portcullis dev --record-api-access`).
pub fn controller_user_agent() -> (http::HeaderName, http::HeaderValue) {
    (
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!(
            "portcullis-controller/",
            env!("CARGO_PKG_VERSION")
        )),
    )
}

/// The client configuration of [`kube_client`].
async fn kube_config(kubeconfig: Option<&Path>) -> Result<kube::Config, AppError> {
    let service =
        |e: Box<dyn std::error::Error + Send + Sync>| AppError::Client(kube::Error::Service(e));
    match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| service(Box::new(e)))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| service(Box::new(e)))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| service(Box::new(e))),
    }
}

/// The Lease holder name of `portcullis dev`: stable across restarts, so a restarted process
/// takes its lease back at once instead of waiting for it to expire.
const DEV_IDENTITY: &str = "portcullis-dev";

/// How long `portcullis dev` waits for the first routing table before printing its banner.
const FIRST_TABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An address to connect to a listener bound at `addr`: the loopback address of the same family
/// for a wildcard bind (`0.0.0.0:8080` → `127.0.0.1:8080`), else `addr`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The issuer: `authenticateURL`, if set.
fn issuer_url(settings: &Settings) -> Result<Option<Url>, AppError> {
    settings
        .authenticate_url
        .as_deref()
        .map(parse_issuer)
        .transpose()
}

fn parse_issuer(text: &str) -> Result<Url, AppError> {
    let url = Url::parse(text).map_err(|e| ConfigError::Invalid {
        key: "authenticateURL".into(),
        message: e.to_string(),
    })?;
    if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            key: "authenticateURL".into(),
            message: "must be an http or https URL with a host".into(),
        }
        .into());
    }
    Ok(url)
}

/// The identity endpoints for `issuer`, with the system clock; token exchange through
/// `people` when people can sign in.
fn identity_service(
    settings: &Settings,
    issuer: Url,
    metrics: &Arc<Metrics>,
    people: Option<&Arc<People>>,
) -> Arc<IdentityService> {
    let service = IdentityService::new(
        IdentityConfig {
            issuer,
            access_token_audience: settings.access_token_audience.clone(),
            signing_algorithm: settings.signing.algorithm.parse().unwrap_or_default(),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            clock: Clock::system(),
        },
        Arc::clone(metrics),
    );
    Arc::new(match people {
        Some(people) => service.with_people(Arc::clone(people)),
        None => service,
    })
}

/// How long start-up waits for the session store's first listing.
const STORE_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often expired sessions, bindings and revocations are deleted.
const STORE_COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// People's sign-in for the authenticate URL `issuer`, when `idp` is set: the identity
/// provider (discovered in the background; its client secret from `clientSecretFile` or
/// `clientSecretRef` in Portcullis's namespace) and the session store.
async fn people_service(
    settings: &Settings,
    issuer: &Url,
    client: &kube::Client,
) -> Result<Option<Arc<People>>, AppError> {
    let Some(idp) = &settings.idp else {
        return Ok(None);
    };
    let mut scopes = idp.scopes.clone();
    if scopes.is_empty() {
        scopes = vec!["openid".into(), "email".into(), "profile".into()];
    }
    let idp_settings = IdpSettings {
        issuer: idp.issuer.clone(),
        client_id: idp.client_id.clone(),
        scopes,
        auth_params: idp.auth_params.clone(),
        redirect_url: crate::identity::endpoints::endpoint_url(
            issuer,
            crate::identity::endpoints::CALLBACK,
        ),
        allowed_audiences: idp.allowed_audiences.clone(),
    };
    let source = match (&idp.client_secret_file, &idp.client_secret_ref) {
        (Some(file), _) => SecretSource::File(PathBuf::from(file)),
        (None, Some(reference)) => SecretSource::Secret {
            client: client.clone(),
            namespace: settings.namespace.clone(),
            name: reference.name.clone(),
            key: reference.key.clone(),
        },
        (None, None) => SecretSource::File(PathBuf::new()),
    };
    let store = crate::store::build(settings, client.clone(), &settings.namespace).await?;
    if tokio::time::timeout(STORE_READY_WAIT, store.ready())
        .await
        .is_err()
    {
        tracing::warn!(
            "the session store has not listed its entries yet; sign-out of older sessions may not be seen until it has"
        );
    }
    let collector = Arc::clone(&store);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(STORE_COLLECT_EVERY);
        loop {
            every.tick().await;
            let now = jiff::Timestamp::now().as_second();
            if let Err(error) = collector.collect_garbage(now).await {
                tracing::warn!(%error, "collecting expired sessions and revocations failed");
            }
        }
    });
    let people = People::new(
        issuer.clone(),
        Idp::spawn(idp_settings, source),
        store,
        Clock::system(),
        settings.session_lifetime.0,
    )
    .with_redirect_domains(settings.programmatic_redirect_domains.clone());
    Ok(Some(Arc::new(people)))
}

/// The https listener's certificates in `portcullis dev`, all from the development CA the
/// embedded API loaded or created in the data directory, so one `ca.crt` is trusted for all: one
/// for the names of [`crate::proxy::tls::dev_certificate_names`] (and clients sending no server
/// name), and one per other name a client asks for.
struct DevCertificates {
    fallback: Arc<rustls::sign::CertifiedKey>,
    per_name: Arc<crate::proxy::tls::PerNameCertificates>,
}

impl DevCertificates {
    fn new(data_dir: &Path, authenticate_host: Option<&str>) -> Result<Self, AppError> {
        let ca = DevCa::load_or_create(data_dir).map_err(DevApiError::from)?;
        let names = crate::proxy::tls::dev_certificate_names(authenticate_host);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (chain, key) = ca.issue(&names).map_err(DevApiError::from)?;
        let fallback = crate::proxy::tls::certified_key(chain, key)?;
        let per_name = crate::proxy::tls::PerNameCertificates::new(Box::new(move |name| {
            let (chain, key) = ca.issue(&[name]).ok()?;
            crate::proxy::tls::certified_key(chain, key).ok()
        }));
        Ok(Self {
            fallback,
            per_name: Arc::new(per_name),
        })
    }
}

/// How the proxy reaches upstreams and which tokens it accepts, from the settings.
fn proxy_config(
    settings: &Settings,
    address_policy: Arc<AddressPolicy>,
    https_port: u16,
    metrics: &Arc<Metrics>,
    access_log: AccessLog,
) -> ProxyConfig {
    ProxyConfig {
        address_policy,
        access_token_audience: settings.access_token_audience.clone(),
        http_redirect: settings.http_redirect,
        https_port,
        client_certificates: !settings.downstream_mtls.ca_secret.is_empty(),
        clock: Clock::system(),
        metrics: Arc::clone(metrics),
        access_log,
        workers: crate::proxy::workers::count(),
    }
}

/// The bound http and https listeners, before they serve.
struct Listeners {
    http: TcpListener,
    https: TcpListener,
    http_addr: SocketAddr,
    https_addr: SocketAddr,
}

impl Listeners {
    /// Binds `listen.http` and `listen.https`; a taken port fails start-up, naming the listener.
    async fn bind(settings: &Settings) -> Result<Self, AppError> {
        let (http, http_addr) = bind_named("http", settings.listen.http).await?;
        let (https, https_addr) = bind_named("https", settings.listen.https).await?;
        Ok(Self {
            http,
            https,
            http_addr,
            https_addr,
        })
    }

    /// Starts serving both over `live` on `config.workers` proxy workers (shared by both
    /// listeners), with `identity` on the authenticate host and, in dev, certificates from the
    /// development CA for names the table has none for.
    #[allow(clippy::too_many_arguments)]
    fn serve(
        self,
        live: &LiveTable,
        config: ProxyConfig,
        identity: Option<Arc<IdentityService>>,
        people: Option<Arc<People>>,
        dev_tls: Option<DevCertificates>,
        shutdown_rx: &watch::Receiver<bool>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), AppError> {
        let client_certificates = config.client_certificates;
        let workers = config.workers;
        let mut proxy = Proxy::new(live.clone(), identity, config);
        if let Some(people) = people {
            proxy = proxy.with_people(people);
        }
        let proxy = Arc::new(proxy);
        let (fallback, per_name) = match dev_tls {
            Some(dev) => (Some(dev.fallback), Some(dev.per_name)),
            None => (None, None),
        };
        let tls = crate::proxy::tls::server_config(
            live.clone(),
            fallback,
            per_name,
            client_certificates,
        )?;
        let (workers, workers_stopped) = Workers::start(workers).map_err(AppError::Workers)?;
        let limits = ListenerLimits::default();
        tasks.push(tokio::spawn(listener::serve(
            "http",
            self.http,
            Transport::Plain,
            Arc::clone(&proxy),
            workers.clone(),
            limits,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(listener::serve(
            "https",
            self.https,
            Transport::Tls(tokio_rustls::TlsAcceptor::from(tls)),
            proxy,
            workers,
            limits,
            shutdown_rx.clone(),
        )));
        // Shutdown awaits the tasks in order: the workers end after both listeners drained.
        tasks.push(tokio::spawn(workers_stopped.wait()));
        Ok(())
    }
}

async fn bind_named(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), AppError> {
    let bind_error = |source| AppError::Bind { what, addr, source };
    let socket = listener::bind(addr).await.map_err(bind_error)?;
    let bound = socket.local_addr().map_err(bind_error)?;
    Ok((socket, bound))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_addresses_are_reachable() {
        let at = |s: &str| {
            reachable(
                s.parse()
                    .unwrap_or_else(|_| SocketAddr::from(([1, 1, 1, 1], 1))),
            )
        };
        assert_eq!(at("0.0.0.0:8080").to_string(), "127.0.0.1:8080");
        assert_eq!(at("[::]:8443").to_string(), "[::1]:8443");
        assert_eq!(at("10.0.0.5:80").to_string(), "10.0.0.5:80");
    }

    #[test]
    fn issuers_must_be_http_urls_with_a_host() {
        assert_eq!(
            parse_issuer("https://auth.example.com/")
                .map(|u| u.to_string())
                .ok(),
            Some("https://auth.example.com/".to_owned())
        );
        assert!(matches!(
            parse_issuer("ftp://auth.example.com"),
            Err(AppError::Config(_))
        ));
        assert!(matches!(
            parse_issuer("not a url"),
            Err(AppError::Config(_))
        ));
    }
}
