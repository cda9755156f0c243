//! `postern explain --ldap`: the configuration is handed to `postern-gateway explain`,
//! which walks the same path and then asks the directory through the gateway's own
//! authentication backends (this crate links no LDAP client: `.ci/crate-rules`).
//!
//! The gateway binary is the one next to `postern` (both ship in the same image and
//! release), else `postern-gateway` on PATH. stdin is passed on (`--password-stdin`),
//! its output is ours, and so is its exit status (0 accepted, 3 refused, 1 error).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use postern_config::GatewayConfig;

use crate::cli::ExplainArgs;

/// The gateway's binary name (a contract: DESIGN.md).
const GATEWAY: &str = "postern-gateway";

/// Run `postern-gateway explain` on `config` with the question of `args`.
pub(super) fn run(
    config: &GatewayConfig,
    args: &ExplainArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<ExitCode, String> {
    // The file holds the configuration's secrets (the LDAP bind password): tempfile
    // creates it readable by this user only, and removes it when `file` is dropped.
    let mut file = tempfile::Builder::new()
        .prefix("postern-explain-")
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| format!("--ldap: a temporary file for the configuration: {e}"))?;
    file.write_all(config.to_yaml().as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| format!("--ldap: writing {}: {e}", file.path().display()))?;
    let gateway = gateway_binary();
    let mut cmd = Command::new(&gateway);
    cmd.arg("explain")
        .arg("--config")
        .arg(file.path())
        .args(["--listener", &args.listener])
        .args(["--client-ip", &args.client_ip.to_string()]);
    if let Some(cert) = &args.cert {
        cmd.arg("--cert").arg(cert);
    }
    if let Some(user) = &args.user {
        cmd.args(["--user", user]);
    }
    if args.password_stdin {
        cmd.arg("--password-stdin");
    }
    if let Some(from) = &args.mail_from {
        cmd.args(["--mail-from", from]);
    }
    let out = cmd.stdin(Stdio::inherit()).output().map_err(|e| {
        format!(
            "--ldap needs {GATEWAY} (it holds the LDAP client); running {}: {e}. Install it next to postern or on PATH, or run `{GATEWAY} explain --config FILE` where it is",
            gateway.display()
        )
    })?;
    let _ = stdout.write_all(&out.stdout);
    let _ = stderr.write_all(&out.stderr);
    match out.status.code() {
        Some(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        None => Err(format!(
            "{} ended by a signal: {}",
            gateway.display(),
            out.status
        )),
    }
}

/// `postern-gateway` next to the running `postern`, else the name (found on PATH).
fn gateway_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(GATEWAY))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(GATEWAY))
}
