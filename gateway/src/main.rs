//! `postern-gateway`: the SMTP gateway.
//!
//! `postern-gateway --config FILE` runs a rendered configuration and reloads it when the
//! file changes; with no arguments (or `--demo`) it runs the embedded demo on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use postern_config::GatewayConfig;
use postern_gateway::crl::{self, CrlService, CrlStore};
use postern_gateway::ldap::{LdapDirectories, LdapMetrics};
use postern_gateway::log::Format as LogFormat;
use postern_gateway::log::recent::RecentDecisions;
use postern_gateway::log::writer::LogMetrics;
use postern_gateway::metrics::Metrics;
use postern_gateway::reload::{self, Reloader};
use postern_gateway::runtime::Services;
use postern_gateway::server::Server;
use postern_gateway::status_page::{self, StatusSources};
use postern_gateway::tls::RevocationChecker;
use postern_gateway::{admin, demo, prestop};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// jemalloc instead of the system allocator: with its background threads (cargo feature
/// `background_threads`: purging on jemalloc's own threads, so an idle gateway shrinks
/// back after a CRL load instead of only when it next allocates) it gives freed memory
/// back to the system within seconds, where glibc kept about
/// 75 MiB of the buffers a large CRL estate used while loading (docs/benchmarks.md, "CRL
/// estate"). mimalloc, tried as well, kept even more.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "postern-gateway",
    version,
    about = "Postern's SMTP authentication gateway"
)]
struct Args {
    /// Gateway configuration file (YAML, as written by `postern render`). Reloaded when it changes.
    #[arg(long, env = "POSTERN_CONFIG", conflicts_with = "demo")]
    config: Option<PathBuf>,
    /// Run the embedded demo on 127.0.0.1 (the default when no configuration is given).
    #[arg(long)]
    demo: bool,
    /// The demo's STARTTLS port.
    #[arg(long, env = "POSTERN_DEMO_PORT", default_value_t = demo::DemoPorts::default().starttls)]
    demo_port: u16,
    /// The demo's implicit TLS (SMTPS) port.
    #[arg(long, env = "POSTERN_DEMO_SMTPS_PORT", default_value_t = demo::DemoPorts::default().implicit_tls)]
    demo_smtps_port: u16,
    /// Admin HTTP address (/metrics, /healthz, /readyz, /config). Default 0.0.0.0:9090,
    /// or 127.0.0.1 with any free port for the demo.
    #[arg(long, env = "POSTERN_ADMIN_ADDRESS")]
    admin_address: Option<SocketAddr>,
    /// How long sessions may go on after SIGTERM before they get 421 4.3.2.
    #[arg(long, env = "POSTERN_SHUTDOWN_GRACE", default_value = "30s")]
    shutdown_grace: postern_config::Duration,
    /// How often the configuration file is checked besides file system events.
    #[arg(long, default_value = "5s")]
    poll_interval: postern_config::Duration,
    /// How often a Listener refused because its address could not be bound is tried
    /// again (it comes up once the address is free).
    #[arg(long, env = "POSTERN_LISTENER_RETRY_INTERVAL", default_value = "5s")]
    listener_retry_interval: postern_config::Duration,
    /// Log format.
    #[arg(long, env = "POSTERN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Only validate and build the configuration, then exit (0 = it would run).
    #[arg(long, requires = "config")]
    check: bool,
    /// Directory keeping the last good file of each CRL source, so a restart enforces the
    /// CRLs at once instead of waiting for the network.
    #[arg(long, env = "POSTERN_CRL_CACHE_DIR")]
    crl_cache_dir: Option<PathBuf>,
    /// Extra trust anchors (PEM) for https:// CRL URLs, besides the system's roots.
    #[arg(long, env = "POSTERN_CRL_HTTPS_CA")]
    crl_https_ca: Option<PathBuf>,
    /// Largest CRL file accepted, in bytes.
    #[arg(long, env = "POSTERN_CRL_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    crl_max_bytes: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the decision path of one client on one listener of a configuration, asking
    /// the directory (certificate mapping, AUTH user, allowance, password, sender
    /// addresses) as a session would, without sending mail. Exit code: 0 accepted,
    /// 3 refused, 1 error (a directory that does not answer is one).
    Explain(postern_gateway::cli::explain::ExplainArgs),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(CrlCommand),
}

#[derive(Debug, Subcommand)]
enum CrlCommand {
    /// Print a CRL file's issuer, dates, entry count and CRL number; check its signature
    /// (--ca) and whether serial numbers are revoked (--serial). Exit 2 if one is.
    Inspect(crl::inspect::InspectArgs),
    /// Ask a running gateway (its admin endpoint) how the revocation of every CA of every
    /// Listener's client CA bundle is checked. Exit 1 if a CA is not covered or stale.
    Coverage(postern_gateway::cli::coverage::CoverageArgs),
}

/// Running in a cluster: the configuration is the namespace's rendered Secret, read
/// through the Kubernetes API (in-cluster credentials or $KUBECONFIG).
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Take the configuration from the rendered Secret instead of a file.
    #[arg(long, env = "POSTERN_CLUSTER", conflicts_with_all = ["config", "demo"])]
    cluster: bool,
    /// Namespace of the rendered Secret (default: the Pod's, or the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE", requires = "cluster")]
    namespace: Option<String>,
    /// This gateway's name in its report (default: the host name, which is the Pod name).
    #[arg(long, env = "POD_NAME", requires = "cluster")]
    gateway_name: Option<String>,
    /// The Pod's UID: the report Lease is then owned by the Pod.
    #[arg(long, env = "POD_UID", requires = "cluster")]
    pod_uid: Option<String>,
    /// Name of the rendered Secret.
    #[arg(long, default_value = postern_config::protocol::RENDERED_SECRET)]
    config_secret: String,
    /// How often the gateway renews its report.
    #[arg(long, default_value = "10s")]
    report_interval: postern_config::Duration,
    /// How long a report counts without renewal.
    #[arg(long, default_value = "30s")]
    report_ttl: postern_config::Duration,
}

/// Where the configuration comes from. A cluster source (the rendered Secret read
/// through the API) plugs in here beside the file.
enum ConfigSource {
    File(PathBuf),
    Cluster,
    Demo,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    postern_gateway::crypto::install_process_default();
    let args = Args::parse();
    match &args.command {
        Some(Command::Crl(CrlCommand::Inspect(a))) => return crl_inspect(a),
        Some(Command::Crl(CrlCommand::Coverage(a))) => {
            let code = postern_gateway::cli::coverage::run(
                a,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            return std::process::ExitCode::from(code);
        }
        Some(Command::Explain(a)) => {
            let code = postern_gateway::cli::explain::run(
                a,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            return std::process::ExitCode::from(code);
        }
        None => {}
    }
    let log_metrics = LogMetrics::default();
    let recent = RecentDecisions::default();
    // Kept to the end of `main`: dropping it writes what is still queued.
    let log = match postern_gateway::log::init(args.log_format, log_metrics.clone(), recent.clone())
    {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("postern-gateway: cannot start the log's writer thread: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = run(args, log_metrics, recent).await;
    // The log's last lines before the error that ends the process.
    drop(log);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn crl_inspect(args: &crl::inspect::InspectArgs) -> std::process::ExitCode {
    match crl::inspect::inspect(args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("the report serialises")
                );
            } else {
                print!("{}", report.text());
            }
            std::process::ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("postern-gateway crl inspect: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, log_metrics: LogMetrics, recent: RecentDecisions) -> anyhow::Result<()> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None if args.cluster.cluster => ConfigSource::Cluster,
        None => ConfigSource::Demo,
    };
    let mut registry = Registry::default();
    log_metrics.register(&mut registry);
    let metrics = Metrics::register(&mut registry);
    let ldap_metrics = LdapMetrics::new();
    ldap_metrics.register(&mut registry);
    let crl_store = Arc::new(CrlStore::new());
    crl::metrics::register(&mut registry, &crl_store);
    let revocation: Arc<dyn RevocationChecker> = crl_store.clone();
    let ldap_directories = LdapDirectories::new(ldap_metrics);
    let services = Services {
        metrics: metrics.clone(),
        revocation,
        auth_throttles: Default::default(),
        ldap: ldap_directories.clone(),
        ocsp: postern_gateway::ocsp::OcspClient::new(
            postern_gateway::ocsp::OcspMetrics::register(&mut registry),
        )?,
        rate_limits: Default::default(),
    };

    if args.check {
        let path = args
            .config
            .as_ref()
            .expect("clap: --check requires --config");
        let config = GatewayConfig::load(path)?;
        let built = postern_gateway::runtime::build(&config, 0, &services)?;
        if !built.refused.is_empty() {
            let problems: Vec<String> = built
                .refused
                .iter()
                .map(|r| format!("listeners.{}: {}", r.listener, r.message))
                .collect();
            anyhow::bail!("{}", problems.join("\n"));
        }
        println!("{}: ok ({})", path.display(), config.hash());
        return Ok(());
    }

    let crl_https_ca = match &args.crl_https_ca {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading --crl-https-ca {}", p.display()))?,
        ),
        None => None,
    };
    let crl_service = Arc::new(CrlService::new(
        crl_store.clone(),
        crl::ServiceSettings {
            fetch: crl::FetchSettings {
                max_bytes: args.crl_max_bytes,
                extra_roots_pem: crl_https_ca,
                ..crl::FetchSettings::default()
            },
            cache_dir: args.crl_cache_dir.clone(),
        },
    )?);
    let server = Server::new(metrics);
    let crl_observer = crl_service.clone();
    let reloader = Arc::new(
        Reloader::new(server.clone(), services).with_observer(Box::new(move |config| {
            crl_observer.apply_blocking(config);
        })),
    );
    let admin_default = match source {
        ConfigSource::Demo => SocketAddr::from(([127, 0, 0, 1], 0)),
        ConfigSource::File(_) | ConfigSource::Cluster => SocketAddr::from(([0, 0, 0, 0], 9090)),
    };
    let admin_listener = admin::bind(args.admin_address.unwrap_or(admin_default))
        .await
        .context("binding the admin address")?;
    let admin_addr = admin_listener.local_addr()?;

    let cluster_stop = CancellationToken::new();
    let mut cluster_task = None;
    match &source {
        ConfigSource::Cluster => {
            cluster_task = Some(
                start_cluster_source(
                    &args.cluster,
                    reloader.clone(),
                    postern_gateway::cluster::revocation_facts_of(crl_store.clone()),
                    cluster_stop.clone(),
                )
                .await?,
            );
        }
        ConfigSource::File(path) => {
            reloader.apply_file(path).map_err(|e| anyhow::anyhow!(e))?;
            tokio::spawn(reload::watch_file(
                reloader.clone(),
                path.clone(),
                args.poll_interval.get(),
            ));
        }
        ConfigSource::Demo => {
            let demo = demo::prepare(demo::DemoPorts {
                starttls: args.demo_port,
                implicit_tls: args.demo_smtps_port,
            })
            .await?;
            reloader
                .apply(&demo.config, "embedded demo")
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("{}", demo.instructions(admin_addr));
        }
    }

    tokio::spawn(reload::retry_refused_listeners(
        reloader.clone(),
        args.listener_retry_interval.get(),
    ));
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(registry),
        server.clone(),
        reloader.clone(),
        crl::admin::routes(crl_store.clone())
            .merge(prestop::routes())
            .merge(status_page::routes(StatusSources {
                reloader: reloader.clone(),
                crl: crl_store.clone(),
                ldap: ldap_directories,
                recent,
            })),
        {
            let store = crl_store.clone();
            Arc::new(move || store.startup_pending())
        },
        admin_stop.clone(),
    ));
    info!(
        admin = %admin_addr,
        crypto = postern_gateway::crypto::NAME,
        fips = postern_gateway::crypto::provider().fips(),
        "gateway ready"
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received"),
    }
    // Withdraw the cluster report first: the controller stops counting this gateway.
    cluster_stop.cancel();
    if let Some(task) = cluster_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    crl_service.shutdown();
    server.shutdown(args.shutdown_grace.get()).await;
    admin_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    Ok(())
}

/// Starts the cluster config source: connects to the API server and follows the
/// namespace's rendered Secret, reporting in the gateway's Lease.
async fn start_cluster_source(
    args: &ClusterArgs,
    reloader: Arc<Reloader>,
    revocation_facts: postern_gateway::cluster::RevocationFactsFn,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use postern_gateway::cluster;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or $KUBECONFIG)")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let gateway_name = match &args.gateway_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .context("no --gateway-name/POD_NAME and no host name")?,
    };
    let mut opts = cluster::ClusterOptions::new(&namespace, &gateway_name);
    opts.secret_name = args.config_secret.clone();
    opts.pod_uid = args.pod_uid.clone();
    opts.heartbeat = args.report_interval.get();
    opts.report_ttl = args.report_ttl.get();
    info!(namespace = %namespace, gateway = %gateway_name, secret = %opts.secret_name,
        "configuration from the cluster");
    Ok(tokio::spawn(async move {
        if let Err(e) = cluster::run(client, opts, reloader, revocation_facts, stop).await {
            tracing::error!(error = %e, "cluster configuration source stopped");
        }
    }))
}
