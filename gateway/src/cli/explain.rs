//! `postern-gateway explain --config FILE --listener NAME --client-ip IP [--cert PEM]
//! [--user NAME [--password-stdin]] [--mail-from ADDRESS]`: the decision path of one
//! client, as `postern explain` prints it from the configuration alone
//! (`postern_config::explain`), then what the directory answers — asked through the
//! listener's SmtpAuthProfile built by `auth::build_auth_profile`, the function every
//! gateway configuration is built with. With `--cert`, the certificate goes through the
//! verifier the gateway would use, its revocation answered by the listener's CRLs and
//! OCSP responder (`explain_revocation`). No mail is sent; nothing is relayed.
//!
//! Exit 0 accepted, 3 refused, 1 error — a directory that does not answer is an error
//! (the answer is unknown; the gateway would reply `454 4.7.0` now), not a refusal.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use postern_config::GatewayConfig;
use postern_config::explain::{
    EXIT_ERROR, Inputs, Verdict, explain, print_step, print_steps, print_verdict,
};

use super::explain_directory::{Outcome, ask};
use super::explain_revocation::{RevocationCheckError, check as check_certificate};

/// `postern-gateway explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The gateway configuration (`postern render -o`, what `--config` runs).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The Listener.
    #[arg(long)]
    pub listener: String,
    /// The client's address.
    #[arg(long)]
    pub client_ip: IpAddr,
    /// The client certificate (PEM; the first certificate is used).
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// An SMTP AUTH user name.
    #[arg(long)]
    pub user: Option<String>,
    /// Read the AUTH password from stdin; it is checked by a BIND as the user's entry.
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// The `MAIL FROM` address, checked against the user's addresses under the policy's
    /// `senderBinding`.
    #[arg(long, value_name = "ADDRESS")]
    pub mail_from: Option<String>,
}

/// Run `explain`, printing to `out` and `err`; the exit status.
pub async fn run(args: &ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match try_run(args, out, err).await {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "postern-gateway explain: {e}");
            EXIT_ERROR
        }
    }
}

async fn try_run(
    args: &ExplainArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, String> {
    let config = GatewayConfig::load(&args.config)
        .map_err(|e| format!("--config {}: {e}", args.config.display()))?;
    if let Err(e) = postern_config::validate(&config) {
        let _ = writeln!(
            err,
            "warning: {} does not validate: {e}",
            args.config.display()
        );
    }
    let inputs = Inputs::read(args.cert.as_deref(), args.password_stdin)?;
    let handshake = match &inputs.cert_pem {
        None => None,
        Some(pem_text) => {
            match check_certificate(&config, &args.listener, args.client_ip, pem_text).await {
                Ok(h) => h,
                // The gateway would not serve this configuration or listener: say so and
                // explain from the configuration alone.
                Err(
                    e @ (RevocationCheckError::Build(_)
                    | RevocationCheckError::ListenerRefused { .. }),
                ) => {
                    let _ = writeln!(
                        err,
                        "warning: certificate not checked by the gateway's verifier: {e}"
                    );
                    None
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let mut q = inputs.question(&args.listener, args.client_ip, args.user.as_deref());
    q.handshake = handshake.as_ref();
    let e = explain(&config, &q).map_err(|e| e.to_string())?;
    print_steps(out, &e);
    let Verdict::Accepted { reply, .. } = &e.verdict else {
        // The configuration alone refuses: the directory is never asked.
        return Ok(print_verdict(out, &e.verdict));
    };
    let outcome = ask(
        &config,
        &e.reach,
        reply,
        inputs.password.as_deref(),
        args.mail_from.as_deref(),
        out,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(match outcome {
        Outcome::Decided(verdict) => print_verdict(out, &verdict),
        Outcome::NoAnswer { reply, error } => {
            print_step(
                out,
                "verdict",
                &format!("NO ANSWER from the directory ({error}); a client gets {reply} now"),
            );
            EXIT_ERROR
        }
    })
}
