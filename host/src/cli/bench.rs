//! `ptyflow bench` (not yet built; see the open issues).

/// Flags of `ptyflow bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ptyflow bench`.
pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::param(
        "bench",
        "this subcommand is not built yet",
    ))
}
