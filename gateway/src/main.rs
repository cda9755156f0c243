//! `postern-gateway`: the SMTP gateway.
//!
//! `postern-gateway --config FILE` runs a rendered configuration and reloads it when the
//! file changes; with no arguments (or `--demo`) it runs the embedded demo on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use postern_gateway::config::GatewayConfig;
use postern_gateway::metrics::Metrics;
use postern_gateway::reload::{self, Reloader};
use postern_gateway::runtime::Services;
use postern_gateway::server::Server;
use postern_gateway::tls::{NoRevocation, RevocationChecker};
use postern_gateway::{admin, demo};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

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
    /// Admin HTTP address (/metrics, /healthz, /readyz, /config). Default 0.0.0.0:9090,
    /// or 127.0.0.1 with any free port for the demo.
    #[arg(long, env = "POSTERN_ADMIN_ADDRESS")]
    admin_address: Option<SocketAddr>,
    /// How long sessions may go on after SIGTERM before they get 421 4.3.2.
    #[arg(long, env = "POSTERN_SHUTDOWN_GRACE", default_value = "30s")]
    shutdown_grace: postern_gateway::config::Duration,
    /// How often the configuration file is checked besides file system events.
    #[arg(long, default_value = "5s")]
    poll_interval: postern_gateway::config::Duration,
    /// Log format.
    #[arg(long, env = "POSTERN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Only validate and build the configuration, then exit (0 = it would run).
    #[arg(long, requires = "config")]
    check: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the configuration comes from. A cluster source (the rendered Secret read
/// through the API) plugs in here beside the file.
enum ConfigSource {
    File(PathBuf),
    Demo,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Demo,
    };
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    postern_gateway::ldap::shared::metrics().register(&mut registry);
    let revocation: Arc<dyn RevocationChecker> = Arc::new(NoRevocation);
    let services = Services {
        metrics: metrics.clone(),
        revocation,
    };

    if args.check {
        let path = args
            .config
            .as_ref()
            .expect("clap: --check requires --config");
        let config = GatewayConfig::load(path)?;
        postern_gateway::runtime::build(&config, 0, &services)?;
        println!("{}: ok ({})", path.display(), config.hash());
        return Ok(());
    }

    let server = Server::new(metrics);
    let reloader = Arc::new(Reloader::new(server.clone(), services));
    let admin_default = match source {
        ConfigSource::Demo => SocketAddr::from(([127, 0, 0, 1], 0)),
        ConfigSource::File(_) => SocketAddr::from(([0, 0, 0, 0], 9090)),
    };
    let admin_listener = admin::bind(args.admin_address.unwrap_or(admin_default))
        .await
        .context("binding the admin address")?;
    let admin_addr = admin_listener.local_addr()?;

    match &source {
        ConfigSource::File(path) => {
            reloader.apply_file(path).map_err(|e| anyhow::anyhow!(e))?;
            tokio::spawn(reload::watch_file(
                reloader.clone(),
                path.clone(),
                args.poll_interval.get(),
            ));
        }
        ConfigSource::Demo => {
            let demo = demo::prepare().await?;
            reloader
                .apply(&demo.config, "embedded demo")
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("{}", demo.instructions(admin_addr));
        }
    }

    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(registry),
        server.clone(),
        reloader.clone(),
        admin_stop.clone(),
    ));
    info!(admin = %admin_addr, "gateway ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received"),
    }
    server.shutdown(args.shutdown_grace.get()).await;
    admin_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    Ok(())
}
