//! Where the workspace and its built binaries are, seen from a test binary.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

/// The workspace root (the directory of the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
        .to_path_buf()
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
