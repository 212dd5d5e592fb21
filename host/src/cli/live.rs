//! `ptyflow live`: flags → [`JobConfig`] → [`crate::job::live`].

use clap::Args as ClapArgs;

use super::replay::JobArgs;
use crate::Result;
use crate::job::{self, DectrisSource, JobConfig, MerlinSource, Source};

/// Flags of `ptyflow live`.
#[derive(Debug, ClapArgs)]
#[command(group(clap::ArgGroup::new("detector").required(true).args(["merlin", "dectris"])))]
#[command(after_long_help = "\
Receives one scan from the detector and writes what `ptyflow replay` writes for the same \
frames (report.json with a `live` section: frames received, bytes, receive rate, and the \
error if the connection was lost). A connection lost mid-frame or mid-scan ends with exit \
code 2, after every frame received so far has been processed and written (positions never \
received hold 0). The bright-field disc cannot be found from a stream: virtual detectors \
need --center and --bf-radius.

A DECTRIS detector (ARINA, QUADRO, EIGER) streams over its SIMPLON stream interface, \
version 1 (ZeroMQ; enable it with `stream/config/mode` = enabled and arm and trigger the \
detector through its REST interface, which ptyflow does not do). Frames may be raw, LZ4 or \
bitshuffle-LZ4 (`bs16-lz4<`, the default); `stream2` (CBOR) is not read.

Example (a Merlin on this machine, 4 × 2 scan):
  ptyflow live --merlin 127.0.0.1:6342 --scan 4x2 --virtual bf --center 128,128 \\
      --bf-radius 20 --out out/
A DECTRIS detector control unit at 10.0.0.5:
  ptyflow live --dectris 10.0.0.5:9999 --scan 256x256 --virtual bf --center 96,96 \\
      --bf-radius 20 --out out/")]
pub struct Args {
    /// The Merlin data port HOST:PORT (a Merlin listens on 6342). The frame geometry and
    /// pixel type come from the frames' own headers.
    #[arg(long, value_name = "HOST:PORT")]
    pub merlin: Option<String>,

    /// The DECTRIS stream interface HOST:PORT (a detector control unit serves 9999). The
    /// frame geometry, pixel type and encoding come from the images' own headers.
    #[arg(long, value_name = "HOST:PORT")]
    pub dectris: Option<String>,

    /// Give up when connecting, or when no data arrives, for this many seconds. Default:
    /// wait as long as the detector takes (it may wait for its trigger).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Non-blocking: a frame that finds the workers' queue full is dropped and counted
    /// (`frames_dropped`) instead of holding the socket back.
    #[arg(long)]
    pub lossy: bool,

    /// The scan, the reduction, the reconstruction, the run and the outputs.
    #[command(flatten)]
    pub job: JobArgs,
}

impl Args {
    /// The job these flags describe (validated when it runs).
    pub fn to_config(&self) -> JobConfig {
        let source = match (&self.merlin, &self.dectris) {
            (_, Some(address)) => Source::Dectris(DectrisSource {
                address: address.clone(),
                timeout_s: self.timeout,
            }),
            (address, None) => Source::Merlin(MerlinSource {
                address: address.clone().unwrap_or_default(),
                timeout_s: self.timeout,
            }),
        };
        let mut config = self.job.to_config(source);
        config.run.blocking = !self.lossy;
        config
    }
}

/// Runs `ptyflow live`.
pub fn run(args: Args) -> Result<()> {
    let config = args.to_config();
    let outcome = job::live(&config, &args.job.hooks())?;
    args.job.conclude(&outcome.report, "received")
}
