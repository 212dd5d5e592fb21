//! `ptyflow compare` (not yet built; see the open issues).

/// Flags of `ptyflow compare`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ptyflow compare`.
pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::param(
        "compare",
        "this subcommand is not built yet",
    ))
}
