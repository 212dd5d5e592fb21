//! Live sources: frames received from a detector over the network, decoded into buffers made
//! once, with the same frame types and decoders as the file readers.
//!
//! - [`merlin`]: Quantum Detectors Merlin (Medipix3) over its TCP data port.
//! - [`dectris`]: DECTRIS detectors (ARINA, QUADRO, EIGER) over the SIMPLON stream
//!   interface (ZeroMQ), frames decoded by [`bslz4`]; with the `dectris` feature (default).
//!
//! The receivers here only speak the protocol; the job that feeds their frames through the
//! reduction and the reconstruction is [`crate::job::live`].

pub mod bslz4;
#[cfg(feature = "dectris")]
pub mod dectris;
pub mod merlin;
