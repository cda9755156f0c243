//! `postern`: the controller and the offline CLI (`render`, `plan`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // Unlocked handles: `postern controller` logs to stderr from many threads, and a
    // lock held here for the whole run would block them all.
    postern_controller::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}
