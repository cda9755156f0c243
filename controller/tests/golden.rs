//! Golden tests of the compiler: `golden/<case>.in.yaml` → `<case>.out.yaml` (the rendered
//! configuration; PEM bodies elided, the hash line pins them) and `<case>.report.txt`
//! (every object's rendering, conditions and diagnostics).
//!
//! `golden/_secrets.yaml` is read with every case. With `<case>.before.yaml`, that set is
//! compiled first and its configuration passed as the previous one (what the controller
//! last published). Regenerate the expected files with `POSTERN_BLESS=1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use postern_config::{GatewayConfig, validate};
use postern_controller::cli::manifests::load;
use postern_controller::compile::{Report, compile};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compile_files(
    case_file: &Path,
    previous: Option<&GatewayConfig>,
) -> (GatewayConfig, Report, Vec<String>) {
    let secrets = dir().join("_secrets.yaml");
    let texts = vec![
        ("_secrets.yaml".to_owned(), read(&secrets)),
        (
            case_file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            read(case_file),
        ),
    ];
    let loaded = load(&texts, None);
    let problems = loaded
        .problems
        .iter()
        .map(|p| format!("{}: {:?} {:?} {}", p.origin, p.object, p.field, p.message))
        .collect();
    let compiled = compile(&loaded.snapshot, previous);
    (compiled.config, compiled.report, problems)
}

/// The configuration with PEM bodies elided (the hash covers them).
fn render_config(config: &GatewayConfig) -> String {
    let mut out = format!("# {}\n", config.hash());
    let mut inside = false;
    for line in config.to_yaml().lines() {
        if line.trim_start().starts_with("-----END") {
            inside = false;
        }
        if !inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.trim_start().starts_with("-----BEGIN") {
            inside = true;
            let indent = &line[..line.len() - line.trim_start().len()];
            let _ = writeln!(out, "{indent}...");
        }
    }
    out
}

fn render_report(report: &Report, problems: &[String]) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = writeln!(out, "load problem: {p}");
    }
    for o in &report.objects {
        let _ = writeln!(out, "{} rendered={:?}", o.key, o.rendered);
        for c in o.conditions() {
            let _ = writeln!(
                out,
                "  {}={} {}: {}",
                c.type_,
                if c.status { "True" } else { "False" },
                c.reason,
                c.message
            );
        }
        for d in &o.diagnostics {
            let _ = writeln!(
                out,
                "  {:?} {} {}: {}",
                d.severity, d.field, d.reason, d.message
            );
        }
    }
    out
}

fn check(path: &Path, actual: &str, bless: bool, failures: &mut Vec<String>) {
    if bless {
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let diff = similar::TextDiff::from_lines(expected.as_str(), actual);
            failures.push(format!(
                "{} differs:\n{}",
                path.display(),
                diff.unified_diff().context_radius(2)
            ));
        }
        Err(e) => failures.push(format!("{}: {e}", path.display())),
    }
}

#[test]
fn golden_cases() {
    let bless = std::env::var_os("POSTERN_BLESS").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let stem = case
            .to_string_lossy()
            .trim_end_matches(".in.yaml")
            .to_owned();
        let before = PathBuf::from(format!("{stem}.before.yaml"));
        let previous = before.exists().then(|| {
            let (config, report, problems) = compile_files(&before, None);
            assert!(
                !report.has_errors() && problems.is_empty(),
                "{} must compile cleanly:\n{}",
                before.display(),
                render_report(&report, &problems)
            );
            config
        });
        let (config, report, problems) = compile_files(case, previous.as_ref());
        // Whatever the input, the output runs.
        validate(&config).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        // Deterministic: compiling again gives the same bytes.
        let (again, _, _) = compile_files(case, previous.as_ref());
        assert_eq!(config.to_yaml(), again.to_yaml(), "{}", case.display());
        check(
            Path::new(&format!("{stem}.out.yaml")),
            &render_config(&config),
            bless,
            &mut failures,
        );
        check(
            Path::new(&format!("{stem}.report.txt")),
            &render_report(&report, &problems),
            bless,
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{}\nregenerate with: POSTERN_BLESS=1 cargo test -p postern-controller --test golden",
        failures.join("\n")
    );
}
