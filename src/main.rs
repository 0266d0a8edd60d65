//! The `portcullis` binary: parse the command line, load settings, start, wait for a signal,
//! drain. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use portcullis::app::{Dev, DevOptions, Run, shutdown_signal};
use portcullis::config::{Settings, dev_defaults, parse_go_duration};
use portcullis::proxy::access_log::{AccessLog, AccessLogWriter, LineFormat};

/// Kubernetes ingress controller with an identity-aware proxy for people and programs.
#[derive(Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded Kubernetes-compatible API with Portcullis in one process (no cluster needed).
    Dev(Box<DevArgs>),
    /// Run against a Kubernetes cluster (in-cluster configuration, `KUBECONFIG` or --kubeconfig).
    Run(RunArgs),
    /// Print the Portcullis CustomResourceDefinitions as YAML.
    Crds,
    /// Print a fresh access token for a ServiceAccountCredential (client credentials grant).
    Token(TokenArgs),
    /// Sign in to a route with a browser and print the session token (cached until it expires).
    Login(LoginArgs),
}

/// Flags of `portcullis login`.
#[derive(clap::Args)]
struct LoginArgs {
    /// The route, such as https://api.example.com (only its origin is used).
    #[arg(value_name = "ROUTE_URL")]
    url: String,
    /// Do not open a browser; only print the sign-in URL (on stderr).
    #[arg(long)]
    no_browser: bool,
    /// Sign in again even when the cached session token is still valid.
    #[arg(long)]
    no_cache: bool,
    /// Also trust this CA certificate (PEM) for the route, e.g. `portcullis dev`'s
    /// <data-dir>/ca.crt.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// How long to wait for the sign-in to complete.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    timeout: Duration,
}

/// Flags of `portcullis token`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["credential", "secret_file"])))]
struct TokenArgs {
    /// The credential as NAMESPACE/NAME; its Secret is read through the kubeconfig.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    credential: Option<String>,
    /// A mounted Secret instead: a directory with one file per entry, or a Secret manifest
    /// (YAML or JSON, `data` or `stringData`).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Kubeconfig file (default: `KUBECONFIG`, then ~/.kube/config, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Narrow the token to a route: `route:<name>` or `route:<namespace>/<name>` (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Also trust this CA certificate (PEM) for the token URL, e.g. `portcullis dev`'s ca.crt.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// Flags of `portcullis run`.
#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file (default: in-cluster configuration, then `KUBECONFIG`, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Settings file (YAML).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Flags of `portcullis dev`.
#[derive(clap::Args)]
struct DevArgs {
    /// Settings file (YAML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where objects, the CA, the API token and the kubeconfig are kept.
    #[arg(long, default_value = ".portcullis/dev")]
    data_dir: PathBuf,
    /// Directories (or files) of manifests to apply at start and whenever they change.
    #[arg(long)]
    manifests: Vec<PathBuf>,
    /// Plain HTTP proxy listener (overrides `listen.http`).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// HTTPS proxy listener (overrides `listen.https`).
    #[arg(long)]
    https_addr: Option<SocketAddr>,
    /// SSH listener (overrides `listen.ssh`).
    #[arg(long)]
    ssh_addr: Option<SocketAddr>,
    /// Admin listener (overrides `listen.admin`).
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
    /// Embedded Kubernetes API listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:6443")]
    api_addr: SocketAddr,
    /// The built-in echo upstream of the quickstart route.
    #[arg(long, default_value = "127.0.0.1:9000")]
    echo_addr: SocketAddr,
    /// Do not serve the echo upstream.
    #[arg(long)]
    no_echo: bool,
    /// Append one JSON line per distinct API call (user agent, verb, group, resource,
    /// namespace) the embedded API serves to this file.
    #[arg(long, value_name = "FILE")]
    record_api_access: Option<PathBuf>,
}

/// Installs the subscriber for every log line, and the access log's own writer when stderr is
/// not a terminal (on a terminal the access log stays a `tracing` event, in colour). The writer
/// must live until the listeners have drained: dropping it writes the lines still pending.
fn init_logging(settings: &Settings) -> (AccessLog, Option<AccessLogWriter>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(format!(
        "{},hyper=warn,h2=warn,rustls=warn,kube=warn,tower=warn",
        settings.log.level
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    let json = settings.log.format == "json";
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    let format = if json {
        LineFormat::Json
    } else {
        LineFormat::Text
    };
    if terminal {
        return (AccessLog::Events, None);
    }
    match AccessLog::lines(format, std::io::stderr()) {
        Ok((log, writer)) => (log, Some(writer)),
        Err(error) => {
            tracing::warn!(%error, "starting the access log writer failed: logging through tracing");
            (AccessLog::Events, None)
        }
    }
}

async fn dev(
    config: Option<PathBuf>,
    opts: DevOptions,
    listen: [(&'static str, Option<SocketAddr>); 4],
) -> anyhow::Result<()> {
    let overrides = listen
        .into_iter()
        .filter_map(|(k, v)| v.map(|a| (k, json!(a.to_string()))))
        .collect();
    let settings = Settings::load(
        dev_defaults(),
        config.as_deref(),
        std::env::vars(),
        overrides,
    )?;
    let (access_log, _writer) = init_logging(&settings);
    let dev = Dev::start(&settings, DevOptions { access_log, ..opts }).await?;
    for line in dev.banner() {
        println!("{line}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    dev.shutdown().await;
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // In a pod, the Downward API's POD_NAMESPACE is the default for `namespace`.
    let defaults = match std::env::var("POD_NAMESPACE") {
        Ok(ns) if !ns.is_empty() => json!({"namespace": ns}),
        _ => json!({}),
    };
    let settings = Settings::load(
        defaults,
        args.config.as_deref(),
        std::env::vars(),
        Default::default(),
    )?;
    let (access_log, _writer) = init_logging(&settings);
    let run = Run::start(&settings, args.kubeconfig.as_deref(), access_log).await?;
    tracing::info!(
        admin = %run.admin_addr,
        http = %run.http_addr,
        https = %run.https_addr,
        issuer = run.issuer.as_ref().map(|u| u.as_str()).unwrap_or("-"),
        "portcullis running"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    run.shutdown().await;
    Ok(())
}

async fn token(args: TokenArgs) -> anyhow::Result<()> {
    use portcullis::client::{ClientCredentials, request_token};
    let creds = match (&args.credential, &args.secret_file) {
        (_, Some(path)) => ClientCredentials::from_path(path)?,
        (Some(id), None) => {
            let Some((namespace, name)) = id.split_once('/') else {
                anyhow::bail!("--credential must be NAMESPACE/NAME, not {id:?}");
            };
            let client = portcullis::app::kube_client(args.kubeconfig.as_deref()).await?;
            ClientCredentials::from_cluster(&client, namespace, name).await?
        }
        (None, None) => anyhow::bail!("--credential or --secret-file is required"),
    };
    let token = request_token(&creds, &args.scopes, args.ca_file.as_deref()).await?;
    println!("{token}");
    Ok(())
}

async fn login(args: LoginArgs) -> anyhow::Result<()> {
    use portcullis::login::{LoginOptions, RouteUrl, SessionCache, announce, login};
    let env = |k: &str| std::env::var(k).ok();
    let route = RouteUrl::parse(&args.url)?;
    let cache_dir =
        SessionCache::default_dir(env("XDG_CONFIG_HOME").as_deref(), env("HOME").as_deref());
    if cache_dir.is_none() {
        eprintln!(
            "portcullis: warning: neither XDG_CONFIG_HOME nor HOME is set; the session is not cached"
        );
    }
    let options = LoginOptions {
        cache: cache_dir.map(SessionCache::new),
        read_cache: !args.no_cache,
        extra_ca: args.ca_file,
        timeout: args.timeout,
    };
    let browser = env("BROWSER");
    let now = jiff::Timestamp::now().as_second();
    let token = login(&route, &options, now, |url| {
        announce(url, args.no_browser, browser.as_deref())
    })
    .await?;
    println!("{}", token.expose());
    Ok(())
}

/// The main runtime: the control plane (controller, embedded API, admin, the listeners' accept
/// loops). It stays multi-threaded as before, so a burst of embedded-API or controller work
/// does not hold up `/healthz` or the Lease renewals; the proxy's connections run on their own
/// current-thread workers (`portcullis::proxy::workers`). Both are sized by
/// `TOKIO_WORKER_THREADS` (default: the available parallelism); the main runtime's threads idle
/// while only the proxy is busy.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // kube pulls in more than one rustls backend; choose one for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Crds => portcullis::api::crds_yaml()
            .context("rendering the CRDs")
            .map(|y| print!("{y}")),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(args))),
        Command::Token(args) => runtime().and_then(|rt| rt.block_on(token(args))),
        Command::Login(args) => runtime().and_then(|rt| rt.block_on(login(args))),
        Command::Dev(args) => runtime().and_then(|rt| {
            let a = *args;
            rt.block_on(dev(
                a.config,
                DevOptions {
                    data_dir: a.data_dir,
                    manifests: a.manifests,
                    api_addr: a.api_addr,
                    echo_addr: (!a.no_echo).then_some(a.echo_addr),
                    record_api_access: a.record_api_access,
                    access_log: AccessLog::Events,
                },
                [
                    ("listen.http", a.http_addr),
                    ("listen.https", a.https_addr),
                    ("listen.ssh", a.ssh_addr),
                    ("listen.admin", a.admin_addr),
                ],
            ))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}
