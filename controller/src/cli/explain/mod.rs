//! `postern explain (-f DIR | --config FILE | --live [-n NS]) --listener NAME --client-ip IP
//! [--cert PEM] [--user NAME [--password-stdin]]`: the decision path of one client, from
//! the configuration alone (DESIGN.md section 7). Exit 0 accepted, 3 refused, 1 error.
//!
//! The configuration is compiled from manifests (as `render` does), read from a rendered
//! file, or read from the namespace's published Secret (`--live`); the path itself is
//! `postern_config::explain`. What only the directory can answer is listed as "depends
//! on". With `--ldap` the directory is asked: that needs the gateway's LDAP client, which
//! this crate never links (`.ci/crate-rules`), so `ldap` hands the configuration to
//! `postern-gateway explain`.

mod ldap;

use std::io::Write;
use std::process::ExitCode;

use postern_config::explain::{Inputs, explain, print_steps, print_verdict};
use postern_config::{GatewayConfig, validate};

use super::ExplainArgs;
use super::manifests::{load, read_inputs};
use super::output::{print_diagnostics, summary};
use crate::compile::compile;
use crate::operator::live::Session;

pub(crate) fn run(args: &ExplainArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    match try_run(args, stdout, stderr) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_run(
    args: &ExplainArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<ExitCode, String> {
    let config = configuration(args, stderr)?;
    if args.ldap {
        return ldap::run(&config, args, stdout, stderr);
    }
    let inputs = Inputs::read(args.cert.as_deref(), args.password_stdin)?;
    let q = inputs.question(&args.listener, args.client_ip, args.user.as_deref());
    let e = explain(&config, &q).map_err(|e| e.to_string())?;
    print_steps(stdout, &e);
    Ok(ExitCode::from(print_verdict(stdout, &e.verdict)))
}

/// The configuration to explain: compiled manifests, a rendered file, or the published one.
fn configuration(args: &ExplainArgs, stderr: &mut dyn Write) -> Result<GatewayConfig, String> {
    if let Some(path) = &args.config {
        let c = GatewayConfig::load(path).map_err(|e| format!("--config: {e}"))?;
        if let Err(e) = validate(&c) {
            let _ = writeln!(stderr, "warning: {} does not validate: {e}", path.display());
        }
        return Ok(c);
    }
    if args.live {
        let session =
            Session::connect(args.namespace.as_deref()).map_err(|e| format!("--live: {e}"))?;
        let live = session
            .state(&args.config_secret)
            .map_err(|e| format!("--live: {e}"))?;
        let _ = writeln!(stderr, "{}", live.summary());
        return live.published.map(|(c, _)| c).ok_or_else(|| {
            format!(
                "--live: namespace {} publishes no configuration",
                session.namespace()
            )
        });
    }
    let texts = read_inputs(&args.files).map_err(|e| e.to_string())?;
    let loaded = load(&texts, args.namespace.as_deref());
    let compiled = compile(&loaded.snapshot, None);
    let counts = print_diagnostics(&loaded, &compiled.report, "left out", stderr);
    if counts.errors > 0 {
        let _ = writeln!(
            stderr,
            "warning: {}; objects with errors are left out",
            summary(counts)
        );
    }
    Ok(compiled.config)
}
