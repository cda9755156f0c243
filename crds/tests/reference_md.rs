//! docs/reference.md must be exactly what `crdgen --reference` generates from the CRDs now.
//! Regenerate with `POSTERN_BLESS=1 cargo test -p postern-crds --test reference_md` (or run
//! `cargo run -p postern-crds --bin crdgen -- --reference`).

use std::path::PathBuf;

use postern_crds::reference::{REFERENCE_PATH, reference_markdown};

#[test]
fn committed_reference_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(REFERENCE_PATH);
    let text = reference_markdown();
    if std::env::var_os("POSTERN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is stale; regenerate with: POSTERN_BLESS=1 cargo test -p postern-crds --test reference_md",
        path.display()
    );
}
