//! `ptyflow info` (not yet built; see the open issues).

/// Flags of `ptyflow info`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ptyflow info`.
pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::param(
        "info",
        "this subcommand is not built yet",
    ))
}
