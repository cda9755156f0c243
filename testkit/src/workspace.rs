//! Where the workspace and its built binaries are, seen from a test binary.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

/// The workspace root (the directory of the top-level Cargo.toml).
///
/// Read from the running test's `CARGO_MANIFEST_DIR` (cargo sets it when it runs a test)
/// before the test kit's own compile-time one: with a target directory shared by two
/// checkouts, a test binary can link a test kit compiled in the other checkout, whose
/// compile-time path would point there.
pub fn workspace_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(compiled.to_path_buf()))
        .find_map(|dir| {
            dir.ancestors()
                .find(|d| is_workspace_root(d))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| {
            compiled
                .parent()
                .expect("testkit/ has a parent")
                .to_path_buf()
        })
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|s| s.contains("[workspace]"))
}

/// Path of a workspace binary (`postern`, `postern-gateway`) built next to the running
/// test. `tests/run` builds them (`cargo build --workspace --bins`) before the tests run.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| anyhow!("unexpected test binary location {}", exe.display()))?;
    let bin = profile_dir.join(name);
    if !bin.exists() {
        bail!(
            "{} is not built; run `cargo build --workspace --bins` first (tests/run does)",
            bin.display()
        );
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_workspace_of_this_checkout() {
        let root = workspace_root();
        assert!(is_workspace_root(&root), "{}", root.display());
        assert!(root.join("testkit/src/workspace.rs").is_file());
    }
}
