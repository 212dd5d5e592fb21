//! `ptyflow replay` (not yet built; see the open issues).

/// Flags of `ptyflow replay`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ptyflow replay`.
pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::param(
        "replay",
        "this subcommand is not built yet",
    ))
}
