//! `postern plan -f ... [--against RENDERED | --live]`: exit 0 no change, 2 changes, 1 errors.

use std::io::Write;
use std::process::ExitCode;

use postern_config::{GatewayConfig, validate};

use super::manifests::{load, read_inputs};
use super::output::{print_diagnostics, summary};
use super::{EXIT_CHANGES, PlanArgs};
use crate::compile::compile;
use crate::diff::diff;

pub(crate) fn run(args: &PlanArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let texts = match read_inputs(&args.manifests.files) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = load(&texts, args.manifests.namespace.as_deref());
    let previous = match &args.against {
        None if args.live => {
            let ns = loaded.snapshot.namespace.as_deref();
            match crate::operator::live::read_blocking(ns, &args.config_secret) {
                Ok(live) => {
                    let _ = writeln!(stderr, "{}", live.summary());
                    live.published.map(|(c, _)| c)
                }
                Err(e) => {
                    let _ = writeln!(stderr, "error: --live: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
        Some(path) => match GatewayConfig::load(path) {
            Ok(c) => {
                if let Err(e) = validate(&c) {
                    let _ = writeln!(stderr, "warning: {} does not validate: {e}", path.display());
                }
                Some(c)
            }
            Err(e) => {
                let _ = writeln!(stderr, "error: --against: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let compiled = compile(&loaded.snapshot, previous.as_ref());
    let counts = print_diagnostics(
        &loaded,
        &compiled.report,
        if args.live {
            "its live rendering stays in service until it is fixed"
        } else {
            "its previous rendering (from --against) stays in service until it is fixed"
        },
        stderr,
    );
    super::size::warn(&compiled.config, stderr);
    let base = previous.unwrap_or_default();
    let changes = diff(&base, &compiled.config);
    let _ = write!(stdout, "{}", changes.render());
    if counts.errors > 0 {
        let _ = writeln!(
            stdout,
            "\nErrors: {}. Objects with errors are left out or keep their previous rendering, as the controller would do; fix them before applying.",
            summary(counts)
        );
        return ExitCode::FAILURE;
    }
    if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHANGES)
    }
}
