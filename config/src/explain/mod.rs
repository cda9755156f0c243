//! The decision path of one client on one listener, from a configuration alone, and its
//! printing: shared by `postern explain` (offline) and `postern-gateway explain` (which
//! then asks the directory the questions of [`Reach`] through the gateway's own
//! authentication backends). Exit codes: 0 accepted, 3 refused, 1 error.

mod certificate;
mod path;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;

pub use certificate::{CertificateCheck, check as check_certificate};
pub use path::{ExplainError, Explanation, HandshakeCheck, Question, Reach, Verdict, explain};

/// Exit status when the client would be accepted.
pub const EXIT_ACCEPTED: u8 = 0;
/// Exit status when the client would be refused.
pub const EXIT_REFUSED: u8 = 3;
/// Exit status of an error (no configuration, unknown listener, directory not answering).
pub const EXIT_ERROR: u8 = 1;

/// What the command line gives besides names: the certificate's PEM text (`--cert`) and
/// the password (`--password-stdin`).
#[derive(Debug, Default)]
pub struct Inputs {
    /// The client certificate, PEM.
    pub cert_pem: Option<String>,
    /// The AUTH password (the input's first line ending removed).
    pub password: Option<String>,
}

impl Inputs {
    /// Read the certificate file `cert` and, with `password_stdin`, the password from
    /// stdin (its first line).
    pub fn read(cert: Option<&Path>, password_stdin: bool) -> Result<Self, String> {
        let cert_pem = cert
            .map(|p| std::fs::read_to_string(p).map_err(|e| format!("--cert {}: {e}", p.display())))
            .transpose()?;
        let password = password_stdin
            .then(|| {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| format!("--password-stdin: {e}"))?;
                Ok::<_, String>(text.trim_end_matches(['\r', '\n']).to_owned())
            })
            .transpose()?;
        Ok(Self { cert_pem, password })
    }

    /// The question of `user` from `client_ip` on `listener`, with these inputs.
    pub fn question<'a>(
        &'a self,
        listener: &'a str,
        client_ip: IpAddr,
        user: Option<&'a str>,
    ) -> Question<'a> {
        Question {
            listener,
            client_ip,
            cert_pem: self.cert_pem.as_deref(),
            user,
            password: self.password.as_deref(),
            handshake: None,
        }
    }
}

/// Width of the step names' column.
const NAME_WIDTH: usize = 18;

/// Print one step: its name right-aligned, then what happens.
pub fn print_step(out: &mut dyn Write, name: &str, text: &str) {
    let _ = writeln!(out, "{name:>NAME_WIDTH$}: {text}");
}

/// Print the steps of `e`.
pub fn print_steps(out: &mut dyn Write, e: &Explanation) {
    for (step, text) in &e.steps {
        print_step(out, step, text);
    }
}

/// Print a verdict and return its exit status.
pub fn print_verdict(out: &mut dyn Write, verdict: &Verdict) -> u8 {
    match verdict {
        Verdict::Refused { reply } => {
            print_step(out, "verdict", &format!("REFUSED: {reply}"));
            EXIT_REFUSED
        }
        Verdict::Accepted { reply, pending } => {
            print_step(out, "verdict", &format!("ACCEPTED: {reply}"));
            for p in pending {
                let _ = writeln!(out, "{:>NAME_WIDTH$}  depends on: {p}", "");
            }
            EXIT_ACCEPTED
        }
    }
}
