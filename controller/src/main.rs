//! `postern`: the controller and the offline CLI (`render`, `plan`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    postern_controller::cli::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}
