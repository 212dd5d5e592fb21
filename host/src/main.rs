//! The `ptyflow` command line; all work happens in the library (`ptyflow::cli`).
fn main() {
    std::process::exit(ptyflow::cli::main_with_args(std::env::args_os()));
}
