//! `ptyflow simulate` (not yet built; see the open issues).

/// Flags of `ptyflow simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ptyflow simulate`.
pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::param(
        "simulate",
        "this subcommand is not built yet",
    ))
}
