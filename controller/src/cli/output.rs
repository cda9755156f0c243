//! Printing diagnostics: every line names the file and line, the object and the field.

use std::io::Write;

use crate::cli::manifests::{Loaded, Origin};
use crate::compile::{Rendered, Report, Severity};

/// Counts of what was printed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) errors: usize,
    pub(crate) warnings: usize,
}

/// Print load problems and the compiler's diagnostics. `kept_note` explains what a
/// previous rendering means for this command.
pub(crate) fn print_diagnostics(
    loaded: &Loaded,
    report: &Report,
    kept_note: &str,
    w: &mut dyn Write,
) -> Counts {
    let mut counts = Counts::default();
    let unknown = Origin {
        file: "<unknown>".into(),
        line: 0,
    };
    for p in &loaded.problems {
        counts.errors += 1;
        let object = p
            .object
            .as_deref()
            .map(|o| format!("{o}: "))
            .unwrap_or_default();
        let field = p
            .field
            .as_deref()
            .map(|f| format!("{f}: "))
            .unwrap_or_default();
        let _ = writeln!(w, "error: {}: {object}{field}{}", p.origin, p.message);
    }
    for o in &report.objects {
        let origin = loaded.origins.get(&o.key).unwrap_or(&unknown);
        for d in &o.diagnostics {
            let label = match d.severity {
                Severity::Error => {
                    counts.errors += 1;
                    "error"
                }
                Severity::Warning => {
                    counts.warnings += 1;
                    "warning"
                }
            };
            let _ = writeln!(w, "{label}: {origin}: {}", d.describe(&o.key));
        }
        if o.rendered == Rendered::Previous {
            let _ = writeln!(w, "note: {origin}: {}: {kept_note}", o.key);
        }
    }
    if !loaded.skipped.is_empty() {
        let list: Vec<String> = loaded
            .skipped
            .iter()
            .map(|(o, what)| format!("{what} ({o})"))
            .collect();
        let _ = writeln!(
            w,
            "note: skipped {} document(s) of other kinds or namespaces: {}",
            list.len(),
            list.join(", ")
        );
    }
    counts
}

/// `2 errors, 1 warning`.
pub(crate) fn summary(c: Counts) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(c.errors, "error"),
        plural(c.warnings, "warning")
    )
}
