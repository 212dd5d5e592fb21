//! Shared helpers for the end-to-end tests (`tests/`) and benches (`benches/`).
//!
//! The root package exists to own those two folders; cargo needs a library target for it,
//! and this is it.

use std::path::PathBuf;

/// The workspace root (where the top-level `Cargo.toml` is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/realdata` beside the checkout, or `None` (with a message on stderr) when absent,
/// e.g. on a user's clone. Tests that need real detector files skip when this is `None`.
pub fn realdata_dir() -> Option<PathBuf> {
    let dir = workspace_root().join("..").join("shared").join("realdata");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: real detector files not found at {} (they live beside the checkout, not in it)",
            dir.display()
        );
        None
    }
}
