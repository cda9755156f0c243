//! The decision path of one client on one listener, from a configuration alone, and its
//! printing: shared by `postern explain` (offline) and `postern-gateway explain` (which
//! then asks the directory the questions of [`Reach`] through the gateway's own
//! authentication backends). Exit codes: 0 accepted, 3 refused, 1 error.

mod certificate;
mod path;

use std::io::Write;

pub use certificate::{CertificateCheck, check as check_certificate};
pub use path::{ExplainError, Explanation, Question, Reach, Verdict, explain};

/// Exit status when the client would be accepted.
pub const EXIT_ACCEPTED: u8 = 0;
/// Exit status when the client would be refused.
pub const EXIT_REFUSED: u8 = 3;
/// Exit status of an error (no configuration, unknown listener, directory not answering).
pub const EXIT_ERROR: u8 = 1;

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
