//! `postern plan -f ... [--against RENDERED | --live [--prune]]`: exit 0 no change, 2
//! changes, 1 errors.
//!
//! With `--live` the files are a partial set laid over the namespace's live objects (see
//! [`super::overlay`]); the Secrets and ConfigMaps they reference and do not define are
//! read from the cluster (only their presence and digest are printed).

use std::io::Write;
use std::process::ExitCode;

use postern_config::{GatewayConfig, validate};

use super::manifests::{Loaded, Origin, load, read_inputs};
use super::output::{print_diagnostics, summary};
use super::overlay::{add_cluster_refs, overlay};
use super::{EXIT_CHANGES, PlanArgs};
use crate::compile::compile;
use crate::diff::diff;
use crate::operator::live::{LiveError, Session};

pub(crate) fn run(args: &PlanArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let texts = match read_inputs(&args.manifests.files) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut loaded = load(&texts, args.manifests.namespace.as_deref());
    let previous = match &args.against {
        None if args.live => match live_overlay(args, &mut loaded, stdout, stderr) {
            Ok(previous) => previous,
            Err(e) => {
                let _ = writeln!(stderr, "error: --live: {e}");
                return ExitCode::FAILURE;
            }
        },
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
    super::revocation::warn(&compiled.config, stderr);
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

/// Reads the live namespace, lays the files over its objects (into `loaded.snapshot`),
/// prints the object-level change and the cluster's Secrets, and returns the published
/// configuration.
fn live_overlay(
    args: &PlanArgs,
    loaded: &mut Loaded,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Option<GatewayConfig>, LiveError> {
    let session = Session::connect(loaded.snapshot.namespace.as_deref())?;
    let live = session.state(&args.config_secret)?;
    let _ = writeln!(stderr, "{}", live.summary());
    let mut merged = overlay(&live.objects, &loaded.snapshot, args.prune);
    merged.snapshot.namespace = Some(session.namespace().to_owned());
    let secrets = session.secrets(&merged.snapshot.referenced_secrets())?;
    let config_maps = session.config_maps(&merged.snapshot.referenced_config_maps())?;
    let refs = add_cluster_refs(&mut merged, secrets, config_maps);
    for r in &refs {
        let _ = writeln!(stderr, "note: {}", r.line());
    }
    let _ = writeln!(stdout, "{}", merged.render(session.namespace(), args.prune));
    // Diagnostics on the live objects kept say where they come from.
    for key in &merged.kept {
        loaded.origins.insert(
            key.clone(),
            Origin {
                file: format!("(live in {}, not in the files)", session.namespace()),
                line: 0,
            },
        );
    }
    loaded.snapshot = merged.snapshot;
    Ok(live.published.map(|(c, _)| c))
}
