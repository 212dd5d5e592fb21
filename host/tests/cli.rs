//! The `ptyflow` binary run as a process, one module per subcommand. Helpers shared by the
//! modules live here.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

// A crate root's `mod x;` looks beside it (tests/x.rs), so the modules are pointed at cli/.
#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/info.rs"]
mod info;
#[path = "cli/live.rs"]
mod live;
#[path = "cli/live_dectris.rs"]
mod live_dectris;
#[path = "cli/replay.rs"]
mod replay;

/// What a run of `ptyflow` printed and returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `ptyflow` with `args`.
pub fn ptyflow<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .args(args)
        .output()
        .expect("run ptyflow");
    Run {
        code: out.status.code().expect("ptyflow exited by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes a single-chip Merlin `.mib` of U16 frames (big-endian pixels after a 384-byte
/// NUL-padded ASCII header per frame, as the real detector writes them).
pub fn write_mib_u16(path: &Path, width: usize, height: usize, frames: &[Vec<u16>]) {
    let mut bytes = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.len(), width * height);
        let mut header = format!(
            "MQ1,{:06},00384,01,{width:04},{height:04},U16,   1x1,01,2024-07-02 13:46:44.035393,\
             0.001000,0,0,0,1.200000E+1,5.110000E+2,0.000000E+0,0.000000E+0,0.000000E+0,\
             0.000000E+0,0.000000E+0,0.000000E+0,3RX,023,511,000,000,000,000,000,000,100,255,\
             100,125,100,100,080,100,090,030,128,004,255,126,128,174,172,511,511,MQ1A,\
             2024-07-02T11:46:44.035393175Z,1000000ns,12,",
            i + 1
        )
        .into_bytes();
        header.resize(384, 0);
        bytes.extend(header);
        bytes.extend(frame.iter().flat_map(|v| v.to_be_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
}
