//! Helm and the chart for tests: `helm lint`/`template`/`install` of `charts/postern`, and
//! the rendered manifests as JSON values.
//!
//! `helm` is `$POSTERN_HELM`, else the first `helm` on `PATH` or in `~/.local/bin`
//! (tests/support/install-deps.sh installs it there). A missing helm is a test failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::kube::workspace_root;

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/postern")
}

/// The values sets of `charts/postern/ci/` (CI renders and installs each one), sorted.
pub fn ci_values() -> Result<Vec<PathBuf>> {
    let dir = chart_dir().join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no values sets in {}", dir.display());
    }
    Ok(files)
}

/// The helm binary.
pub fn helm_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("POSTERN_HELM") {
        return Ok(PathBuf::from(p));
    }
    find_tool("helm").ok_or_else(|| {
        anyhow!(
            "helm not found in PATH or ~/.local/bin: run tests/support/install-deps.sh \
             (it installs helm into ~/.local/bin) or set POSTERN_HELM"
        )
    })
}

/// A tool from `PATH` or `~/.local/bin`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A `helm` command (with `KUBECONFIG` when `kubeconfig` is given).
pub fn helm_cmd(kubeconfig: Option<&Path>) -> Result<Command> {
    let mut c = Command::new(helm_bin()?);
    match kubeconfig {
        Some(k) => {
            c.env("KUBECONFIG", k);
        }
        None => {
            // No cluster: make sure helm cannot reach one by accident.
            c.env("KUBECONFIG", "/dev/null");
        }
    }
    Ok(c)
}

/// Runs helm; fails with its output when it fails. Returns stdout.
pub fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> Result<String> {
    let out = helm_cmd(kubeconfig)?
        .args(args)
        .output()
        .context("cannot run helm")?;
    if !out.status.success() {
        bail!(
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs helm expecting failure; returns its stderr (fails when helm succeeds).
pub fn helm_fails(kubeconfig: Option<&Path>, args: &[&str]) -> Result<String> {
    let out = helm_cmd(kubeconfig)?
        .args(args)
        .output()
        .context("cannot run helm")?;
    if out.status.success() {
        bail!("helm {} succeeded but should have failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What to render.
#[derive(Clone, Debug, Default)]
pub struct Render {
    /// Release name (default `postern`).
    pub release: Option<String>,
    /// Release namespace (default `postern-system`).
    pub namespace: Option<String>,
    /// Values files, in order.
    pub values: Vec<PathBuf>,
    /// `--set` expressions.
    pub sets: Vec<String>,
    /// `--kube-version` (default: helm's own).
    pub kube_version: Option<String>,
    /// Render `crds/` too (`--include-crds`).
    pub include_crds: bool,
}

impl Render {
    /// The helm arguments after `template`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.release.clone().unwrap_or_else(|| "postern".into()),
            chart_dir().display().to_string(),
            "--namespace".into(),
            self.namespace
                .clone()
                .unwrap_or_else(|| "postern-system".into()),
        ];
        for v in &self.values {
            a.push("--values".into());
            a.push(v.display().to_string());
        }
        for s in &self.sets {
            a.push("--set".into());
            a.push(s.clone());
        }
        if let Some(k) = &self.kube_version {
            a.push("--kube-version".into());
            a.push(k.clone());
        }
        if self.include_crds {
            a.push("--include-crds".into());
        }
        a
    }

    /// `helm template` output.
    pub fn yaml(&self) -> Result<String> {
        let mut args = vec!["template".to_owned()];
        args.extend(self.args());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(None, &refs)
    }

    /// `helm template` output as objects.
    pub fn objects(&self) -> Result<Vec<serde_json::Value>> {
        parse_manifests(&self.yaml()?)
    }
}

/// Splits a multi-document YAML stream into objects (empty documents dropped).
pub fn parse_manifests(yaml: &str) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(yaml) {
        let v = serde_json::Value::deserialize(doc).context("parsing rendered YAML")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The objects of `kind` (optionally named `name`).
pub fn find<'a>(
    objects: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .collect()
}

/// The one object of `kind` named `name`; fails when absent.
pub fn get<'a>(
    objects: &'a [serde_json::Value],
    kind: &str,
    name: &str,
) -> Result<&'a serde_json::Value> {
    find(objects, kind, Some(name))
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no {kind} {name} in the rendered chart"))
}

/// `kind/name` of an object, for messages.
pub fn id(o: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_drops_empty_ones() {
        let objs =
            parse_manifests("---\n# c\n---\na: 1\n---\nkind: X\nmetadata: {name: y}\n").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(id(&objs[1]), "X/y");
        assert!(get(&objs, "X", "y").is_ok());
        assert!(get(&objs, "X", "z").is_err());
    }

    #[test]
    fn render_args_carry_values_and_sets() {
        let r = Render {
            values: vec!["/v.yaml".into()],
            sets: vec!["a=b".into()],
            kube_version: Some("1.20.2".into()),
            ..Default::default()
        };
        let a = r.args().join(" ");
        assert!(
            a.contains("--values /v.yaml --set a=b --kube-version 1.20.2"),
            "{a}"
        );
        assert!(a.contains("--namespace postern-system"), "{a}");
    }
}
