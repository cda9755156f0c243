//! The `postern` command line: `render` and `plan` (offline), and the place where the
//! in-cluster `controller` command and `plan --live` are added.

mod explain;
pub mod manifests;
mod output;
mod overlay;
mod plan;
mod render;
mod revocation;
mod size;
mod yaml;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Postern: a Kubernetes-native SMTP authentication gateway.
#[derive(Debug, Parser)]
#[command(name = "postern", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile manifests into the gateway configuration (runs with `postern-gateway --config`).
    Render(RenderArgs),
    /// Compile manifests and show how the gateway configuration would change.
    /// Exit code: 0 no change, 2 changes, 1 errors.
    Plan(PlanArgs),
    /// Print the decision path of one client on one listener (host access row, policy,
    /// TLS, certificate checks, LDAP filters, reply). Exit code: 0 accepted, 3 refused,
    /// 1 error.
    Explain(ExplainArgs),
    /// Run the controller in a cluster: watch the resources, publish each namespace's
    /// configuration, write status (see docs/controller.md).
    Controller(crate::operator::cli::ControllerArgs),
}

/// Which manifests to read.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest file, directory (read recursively) or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "DIR|FILE|-", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// Compile the objects of this namespace (objects without one belong to it).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `postern render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The manifests.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Write the configuration here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// `postern plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The manifests.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// A configuration rendered before (`postern render -o`) to compare with; without it
    /// the plan compares with an empty configuration. Objects that are broken now keep
    /// their rendering from it, as the controller would keep them in service.
    #[arg(long, value_name = "RENDERED", conflicts_with = "live")]
    pub against: Option<PathBuf>,
    /// Compare with what the cluster runs now: the namespace's published configuration
    /// (via $KUBECONFIG or in-cluster credentials). The namespace is `-n`, else the
    /// manifests', else the kubeconfig's. The files may be a partial set: their objects
    /// override or add to the namespace's live objects, and the Secrets and ConfigMaps
    /// they reference but do not contain are read from the cluster (only their presence
    /// and digest are printed).
    #[arg(long)]
    pub live: bool,
    /// With `--live`: the files are the namespace's whole set; live objects not in them
    /// are planned as removed (as `kubectl apply --prune` or a GitOps tool's pruning would).
    #[arg(long, requires = "live")]
    pub prune: bool,
    /// Name of the published configuration Secret (with `--live`).
    #[arg(long, default_value = postern_config::protocol::RENDERED_SECRET, requires = "live")]
    pub config_secret: String,
}

/// `postern explain`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["files", "config", "live"])))]
pub struct ExplainArgs {
    /// Manifest file, directory (read recursively) or `-`; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "DIR|FILE|-", num_args = 1..)]
    pub files: Vec<String>,
    /// A rendered gateway configuration (`postern render -o`, `postern-gateway --config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The configuration the namespace publishes now (via $KUBECONFIG or in-cluster
    /// credentials).
    #[arg(long)]
    pub live: bool,
    /// Namespace (of the manifests, or the live one).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Name of the published configuration Secret (with `--live`).
    #[arg(long, default_value = postern_config::protocol::RENDERED_SECRET)]
    pub config_secret: String,
    /// The Listener.
    #[arg(long)]
    pub listener: String,
    /// The client's address.
    #[arg(long)]
    pub client_ip: std::net::IpAddr,
    /// The client certificate (PEM; the first certificate is used).
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// An SMTP AUTH user name.
    #[arg(long)]
    pub user: Option<String>,
    /// Read the AUTH password from stdin (checked offline for Static users only; with
    /// `--ldap`, by a BIND as the user's entry).
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// The `MAIL FROM` address, checked against the user's addresses under the policy's
    /// `senderBinding` (with `--ldap`).
    #[arg(long, value_name = "ADDRESS", requires = "ldap")]
    pub mail_from: Option<String>,
    /// Ask the directory and the revocation sources: run `postern-gateway explain` (next
    /// to this binary, else on PATH) on this configuration, so the LDAP queries, the CRL
    /// fetches and the OCSP requests run through the gateway's own clients. Nothing is
    /// sent to any mail server. `--gateway` is the same flag.
    #[arg(long, visible_alias = "gateway")]
    pub ldap: bool,
}

/// Exit status of `plan` when the configuration would change.
pub const EXIT_CHANGES: u8 = 2;

/// Parse `args` (including the program name) and run, writing to `stdout`/`stderr`.
pub fn run<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // The Kubernetes client takes its TLS provider from the process default, and a build
    // beside the gateway compiles both of rustls' providers in: name one (the one the
    // controller's own TLS uses).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = write!(stderr, "{}", e.render());
            // Usage errors exit 1, not clap's 2: for `plan`, 2 means "changes".
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                let _ = write!(stdout, "{e}");
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Render(args) => render::run(&args, stdout, stderr),
        Command::Plan(args) => plan::run(&args, stdout, stderr),
        Command::Explain(args) => explain::run(&args, stdout, stderr),
        Command::Controller(args) => crate::operator::cli::main(args, stderr),
    }
}
