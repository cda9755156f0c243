//! `postern controller`: command-line options and startup.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::admission::cert_store::CertTarget;
use super::admission::server::WebhookOptions;
use super::leader::LeaseSettings;
use super::run::{self, Options};

/// Options of `postern controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Manage only this namespace (repeat for several). Default: every namespace.
    #[arg(
        long = "namespace",
        env = "POSTERN_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Elect a leader with a Lease so only one replica writes (default on).
    #[arg(long, env = "POSTERN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (default: the Pod's, or the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "postern-controller")]
    pub lease_name: String,
    /// This replica's identity (default: the Pod name, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a leader's claim lasts without renewal.
    #[arg(long, default_value = "15s")]
    pub lease_duration: humantime::Duration,
    /// How long a leader keeps writing without a successful renewal (< lease duration).
    #[arg(long, default_value = "10s")]
    pub renew_deadline: humantime::Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s")]
    pub retry_period: humantime::Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "POSTERN_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Quiet time after a change before the namespace is recompiled.
    #[arg(long, default_value = "100ms")]
    pub debounce: humantime::Duration,
    /// Longest a constantly changing namespace waits.
    #[arg(long, default_value = "1s")]
    pub debounce_max: humantime::Duration,
    /// Every namespace is reconciled at least this often.
    #[arg(long, default_value = "5m")]
    pub resync: humantime::Duration,
    /// How many status writes run at once (per namespace).
    #[arg(long, default_value_t = 32)]
    pub write_concurrency: usize,
    /// How many namespaces are reconciled at once.
    #[arg(long, default_value_t = 4)]
    pub namespace_concurrency: usize,
    /// Name of the rendered configuration Secret in each namespace.
    #[arg(long, default_value = postern_config::protocol::RENDERED_SECRET)]
    pub config_secret: String,
    /// How many Secrets a namespace's rendered configuration may use (the head and
    /// `<config-secret>-1` …), 1 to 8; lowering it lowers the size limit
    /// (900 KiB compressed per Secret). Never more than the gateways may read (8).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub max_config_secrets: u8,
    /// Serve the validating admission webhook (HTTPS, `POST /validate`) on this address,
    /// e.g. `0.0.0.0:9443`. Default: not served.
    #[arg(long, env = "POSTERN_WEBHOOK_ADDRESS")]
    pub webhook_address: Option<SocketAddr>,
    /// Secret (in the controller's namespace) holding the webhook's certificate and CA,
    /// made and renewed by the controller.
    #[arg(long, default_value = "postern-webhook-tls")]
    pub webhook_secret: String,
    /// ValidatingWebhookConfiguration whose `caBundle`s the controller keeps current.
    #[arg(long)]
    pub webhook_configuration: Option<String>,
    /// Host names (or IP addresses) the webhook's certificate names, e.g. the Service's
    /// `NAME.NAMESPACE.svc` (repeat or comma list).
    #[arg(long = "webhook-host", value_delimiter = ',')]
    pub webhook_hosts: Vec<String>,
    /// Log format (`text` or `json`); the filter is `$POSTERN_LOG` (default `info`).
    #[arg(long, env = "POSTERN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Sets up logging and a runtime, runs the controller, and maps the result to an exit
/// code (for `postern controller`).
pub(crate) fn main(
    args: ControllerArgs,
    stderr: &mut dyn std::io::Write,
) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube_client::client::tls=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a terminal: a log file or a collector gets plain text, not
        // escape sequences around every level and field name.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if args.log_format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(stderr, "postern controller: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "postern".into());
    format!("{host}-{}", std::process::id())
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub(crate) async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or $KUBECONFIG)")?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let mut opts = Options::new(&identity);
    opts.namespaces = args.namespaces.clone();
    opts.metrics_address = args.metrics_address;
    opts.debounce = args.debounce.into();
    opts.debounce_max = args.debounce_max.into();
    opts.resync = args.resync.into();
    opts.secret_name = args.config_secret.clone();
    opts.config_limits =
        postern_config::protocol::Limits::with_max_parts(usize::from(args.max_config_secrets));
    opts.write_concurrency = args.write_concurrency;
    opts.namespace_concurrency = args.namespace_concurrency;
    if let Some(address) = args.webhook_address {
        anyhow::ensure!(
            !args.webhook_hosts.is_empty(),
            "--webhook-address needs --webhook-host (the names the API server calls the webhook by)"
        );
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        opts.webhook = Some(WebhookOptions {
            address,
            cert: CertTarget {
                namespace,
                secret: args.webhook_secret.clone(),
                configuration: args.webhook_configuration.clone(),
                hosts: args.webhook_hosts.clone(),
            },
        });
    }
    if args.leader_elect {
        let ns = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let mut lease = LeaseSettings::new(&ns, &args.lease_name, &identity);
        lease.lease_duration = args.lease_duration.into();
        lease.renew_deadline = args.renew_deadline.into();
        lease.retry_period = args.retry_period.into();
        anyhow::ensure!(
            lease.renew_deadline < lease.lease_duration,
            "--renew-deadline must be shorter than --lease-duration"
        );
        opts.lease = Some(lease);
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
        }
        stop.cancel();
    });
    run::run(client, opts, shutdown, None).await?;
    Ok(())
}
