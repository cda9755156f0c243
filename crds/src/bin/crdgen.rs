//! Writes the CRDs into the chart: `crdgen [DIR]` (default `charts/postern/crds` under
//! the workspace root), or `crdgen -` to print them all as one multi-document stream.
//! `crdgen --reference [FILE|-]` writes the configuration reference generated from them
//! (default `docs/reference.md` under the workspace root).
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use postern_crds::generate::{CHART_CRD_DIR, crd_files};
use postern_crds::reference::{REFERENCE_PATH, reference_markdown};

const USAGE: &str = "usage: crdgen [DIR | -]            write the CRDs into DIR (default charts/postern/crds), or print them\n       crdgen --reference [FILE | -]  write the configuration reference (default docs/reference.md)";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if arg.as_deref() == Some("--reference") {
        return write_reference(std::env::args().nth(2));
    }
    // Anything else that looks like an option is a mistake, not a directory to write to.
    if let Some(option) = arg.as_deref().filter(|a| a.starts_with('-') && *a != "-") {
        eprintln!("crdgen: unknown option {option}\n{USAGE}");
        return ExitCode::from(2);
    }
    if arg.as_deref() == Some("-") {
        let mut out = std::io::stdout().lock();
        for (_, text) in crd_files() {
            // A closed pipe (`crdgen - | head`) ends the output quietly.
            if writeln!(out, "---\n{}", text.trim_end()).is_err() {
                break;
            }
        }
        return ExitCode::SUCCESS;
    }
    let dir = arg.map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CHART_CRD_DIR)
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("crdgen: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, text) in crd_files() {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("crdgen: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn write_reference(target: Option<String>) -> ExitCode {
    let text = reference_markdown();
    if target.as_deref() == Some("-") {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let path = target.map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(REFERENCE_PATH)
    });
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("crdgen: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("crdgen: wrote {}", path.display());
    ExitCode::SUCCESS
}
