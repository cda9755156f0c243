//! `postern render -f ... [-o OUT]`.

use std::io::Write;
use std::process::ExitCode;

use super::RenderArgs;
use super::manifests::{load, read_inputs};
use super::output::{print_diagnostics, summary};
use crate::compile::compile;

pub(crate) fn run(args: &RenderArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let texts = match read_inputs(&args.manifests.files) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = load(&texts, args.manifests.namespace.as_deref());
    let compiled = compile(&loaded.snapshot, None);
    let counts = print_diagnostics(&loaded, &compiled.report, "not rendered", stderr);
    if counts.errors > 0 {
        let _ = writeln!(
            stderr,
            "render failed: {}; nothing written",
            summary(counts)
        );
        return ExitCode::FAILURE;
    }
    super::size::warn(&compiled.config, stderr);
    super::revocation::warn(&compiled.config, stderr);
    let text = format!(
        "# Gateway configuration rendered by `postern render`; run it with `postern-gateway --config FILE`.\n# {}\n{}",
        compiled.config.hash(),
        compiled.config.to_yaml()
    );
    match &args.output {
        None => {
            let _ = stdout.write_all(text.as_bytes());
        }
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                let _ = writeln!(stderr, "error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            let _ = writeln!(
                stderr,
                "wrote {} ({})",
                path.display(),
                compiled.config.hash()
            );
        }
    }
    ExitCode::SUCCESS
}
