//! A live job: frames received from a detector over the network, through the same reduction
//! and reconstruction as a replay (a [`PushSession`] fed by the receiver).
//!
//! The order: validate; connect; read the acquisition header (its frame count must fill
//! `scan.shape` unless `scan.allow_partial`); the first frame gives the geometry and pixel
//! type, and the push session is built from it (memory budget, plan, reconstruction); then
//! every frame is decoded into the receiver's buffer and pushed, until the scan is full.
//! The job then finishes like a push session: outputs, sweeps, `report.json`, with a `live`
//! section (what was received, how fast).
//!
//! Nothing received is lost: a connection that closes or fails mid-frame or mid-scan stops
//! the receiving, every frame received so far is processed and written (positions never
//! received hold 0), the report records the error, and then the error is returned.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::config::{JobConfig, PushSource, Source};
use super::{Hooks, JobOutcome, PushSession};
use crate::pipeline::push::PushError;
use crate::pipeline::run::report as progress;
use crate::source::Frame;
#[cfg(feature = "dectris")]
use crate::source::live::dectris::{self, DectrisReceiver};
use crate::source::live::merlin::{self, MerlinReceiver};
use crate::{Error, Result};

/// The receiver of either detector, its messages reduced to what the job needs.
enum Receiver {
    Merlin(MerlinReceiver<std::net::TcpStream>),
    #[cfg(feature = "dectris")]
    Dectris(DectrisReceiver),
}

/// A message of either receiver.
enum Got<'a> {
    /// An acquisition or series header, with the frames it declares.
    Header(Option<u64>),
    Frame {
        index: u64,
        width: usize,
        height: usize,
        frame: Frame<'a>,
    },
    /// The stream ended: the connection closed between messages, or the series ended.
    End(&'static str),
}

impl Receiver {
    fn receive(&mut self) -> Result<Got<'_>> {
        match self {
            Receiver::Merlin(rx) => Ok(match rx.receive()? {
                None => Got::End("the connection closed"),
                Some(merlin::Message::Header(h)) => Got::Header(h.frames),
                Some(merlin::Message::Frame {
                    index,
                    width,
                    height,
                    frame,
                }) => Got::Frame {
                    index,
                    width,
                    height,
                    frame,
                },
            }),
            #[cfg(feature = "dectris")]
            Receiver::Dectris(rx) => Ok(match rx.receive()? {
                dectris::Message::End { .. } => Got::End("the series ended"),
                dectris::Message::Header(h) => Got::Header(h.frames),
                dectris::Message::Frame {
                    index,
                    width,
                    height,
                    frame,
                } => Got::Frame {
                    index,
                    width,
                    height,
                    frame,
                },
            }),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Receiver::Merlin(rx) => rx.bytes(),
            #[cfg(feature = "dectris")]
            Receiver::Dectris(rx) => rx.bytes(),
        }
    }

    fn stored_dtype(&self) -> Option<&str> {
        match self {
            Receiver::Merlin(rx) => rx.stored_dtype(),
            #[cfg(feature = "dectris")]
            Receiver::Dectris(rx) => rx.stored_dtype(),
        }
    }
}

/// The report's `live` section: what the receiver got.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LiveSummary {
    /// `merlin` or `dectris`.
    pub detector: &'static str,
    /// The address as configured.
    pub address: String,
    /// How the frames were stored on the wire, e.g. `U16 (1 chip, layout 1x1, counter depth 12)`
    /// (Merlin) or `uint16 bs16-lz4<` (DECTRIS).
    pub stored_dtype: Option<String>,
    /// `Frames in Acquisition` of the Merlin acquisition header (0: continuous), or
    /// `nimages × ntrigger` of the DECTRIS series header; absent: no header, or none said.
    pub acquisition_frames: Option<u64>,
    /// Frames the job waited for: the scan's positions, or fewer when the acquisition
    /// declares fewer and `scan.allow_partial` is set.
    pub frames_expected: u64,
    /// Frames received whole (processed + dropped).
    pub frames_received: u64,
    /// Bytes received (message prefixes, headers and pixels).
    pub bytes_received: u64,
    /// Seconds from connecting to the last frame received.
    pub receive_s: f64,
    /// Frames received per second over `receive_s`.
    pub receive_fps: f64,
    /// Gigabytes (10⁹ bytes) received per second over `receive_s`.
    pub receive_gb_per_s: f64,
    /// Why receiving ended before `frames_expected` (the connection lost, a bad message).
    pub error: Option<String>,
}

/// Runs a live job on the detector `config.source` names: connect, read the acquisition
/// header, build a push session from the first frame, push every frame until the scan is
/// full, finish into the outputs and `report.json` (with its `live` section).
/// Blocking by default (`run.blocking`): a full queue holds the socket, and the detector's
/// own buffers, back; with `run.blocking` false a frame that finds the queue full is dropped
/// and counted (`frames_dropped`).
pub fn live(config: &JobConfig, hooks: &Hooks) -> Result<JobOutcome> {
    config.validate()?;
    let (detector, address, timeout_s) = match &config.source {
        Source::Merlin(m) => ("merlin", &m.address, m.timeout_s),
        Source::Dectris(d) => ("dectris", &d.address, d.timeout_s),
        _ => {
            return Err(Error::param(
                "source",
                "a live job receives from a detector: give `source.merlin` or `source.dectris`",
            ));
        }
    };
    let [rows, cols] = config.scan.shape.ok_or_else(|| {
        Error::param(
            "scan.shape",
            "a live source needs the scan shape [rows, cols]",
        )
    })?;
    let positions = (rows * cols) as u64;
    let timeout = timeout_s.map(Duration::from_secs_f64);
    let started = Instant::now();
    let mut rx = match detector {
        #[cfg(feature = "dectris")]
        "dectris" => Receiver::Dectris(DectrisReceiver::connect(address, timeout)?),
        #[cfg(not(feature = "dectris"))]
        "dectris" => {
            return Err(Error::param(
                "source.dectris",
                "this build of ptyflow has no DECTRIS receiver (the `dectris` feature is off)",
            ));
        }
        _ => Receiver::Merlin(MerlinReceiver::connect(address, timeout)?),
    };
    let mut summary = LiveSummary {
        detector,
        address: address.clone(),
        frames_expected: positions,
        ..LiveSummary::default()
    };

    let mut session: Option<PushSession> = None;
    let mut failure: Option<Error> = None;
    let mut interrupted = false;
    let mut last_frame = started;
    let p = hooks.progress.as_deref();
    while summary.frames_received < summary.frames_expected {
        if hooks.interrupt.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let message = match rx.receive() {
            Ok(m) => m,
            Err(e) if session.is_some() => {
                failure = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        match message {
            Got::End(why) => {
                let e = Error::live(
                    address,
                    format!(
                        "{why} after {} of {} frames",
                        summary.frames_received, summary.frames_expected
                    ),
                );
                if session.is_none() {
                    return Err(e);
                }
                failure = Some(e);
                break;
            }
            Got::Header(frames) if session.is_none() => {
                expect_frames(config, address, frames, positions, &mut summary)?;
                summary.acquisition_frames = frames;
            }
            Got::Header(_) => {
                failure = Some(Error::live(
                    address,
                    format!(
                        "a new acquisition began after {} of {} frames",
                        summary.frames_received, summary.frames_expected
                    ),
                ));
                break;
            }
            Got::Frame {
                index,
                width,
                height,
                frame,
            } => {
                let s = match &mut session {
                    Some(s) => s,
                    None => {
                        // The first frame: the geometry is known, build the job around it.
                        let mut push = config.clone();
                        push.source = Source::Push(PushSource {
                            width,
                            height,
                            pixel: frame.kind(),
                        });
                        progress(p, |p| p.start("frames", summary.frames_expected));
                        session.insert(PushSession::start(&push)?)
                    }
                };
                match s.push(index as usize, frame.as_bytes()) {
                    Ok(()) | Err(PushError::QueueFull) => {}
                    Err(PushError::Invalid(e)) => {
                        failure = Some(e);
                        break;
                    }
                }
                summary.frames_received += 1;
                last_frame = Instant::now();
                if summary.frames_received % 64 == 0 {
                    progress(p, |p| p.set(summary.frames_received));
                }
            }
        }
    }
    progress(p, |p| {
        p.set(summary.frames_received);
        p.finish()
    });
    let Some(session) = session else {
        // Interrupted before the first frame: nothing to write.
        return Err(Error::Interrupted(
            "stopped before the first frame arrived".into(),
        ));
    };
    summary.stored_dtype = rx.stored_dtype().map(str::to_owned);
    summary.bytes_received = rx.bytes();
    summary.receive_s = (last_frame - started).as_secs_f64();
    if summary.receive_s > 0.0 {
        summary.receive_fps = summary.frames_received as f64 / summary.receive_s;
        summary.receive_gb_per_s = summary.bytes_received as f64 / summary.receive_s / 1e9;
    }
    summary.error = failure.as_ref().map(|e| e.to_string());
    drop(rx);
    let received = summary.frames_received;
    let outcome = session.finish_amended(p, |report| {
        report.counters.frames_read = received;
        report.counters.interrupted = interrupted;
        report.extra.insert(
            "live".into(),
            serde_json::to_value(&summary).unwrap_or_default(),
        );
    })?;
    match failure {
        None => Ok(outcome),
        Some(e) => {
            let written = match &config.out {
                Some(out) => format!(" and written to {}", out.display()),
                None => String::new(),
            };
            let more = format!(
                "; the {received} frames received were processed{written} (positions never \
                 received hold 0)"
            );
            Err(match e {
                Error::Live { address, msg } => Error::Live {
                    address,
                    msg: msg + &more,
                },
                other => Error::live(address, format!("{other}{more}")),
            })
        }
    }
}

/// Checks the frame count a header declares against the scan; sets the frames to wait for.
fn expect_frames(
    config: &JobConfig,
    address: &str,
    frames: Option<u64>,
    positions: u64,
    summary: &mut LiveSummary,
) -> Result<()> {
    let Some(n) = frames.filter(|&n| n > 0) else {
        return Ok(());
    };
    if n == positions {
        return Ok(());
    }
    let [rows, cols] = config.scan.shape.unwrap_or([0, 0]);
    if !config.scan.allow_partial {
        return Err(Error::param(
            "scan.shape",
            format!(
                "{rows}x{cols} = {positions} positions but the acquisition at {address} \
                 declares {n} frames; set `scan.allow_partial` to receive anyway"
            ),
        ));
    }
    summary.frames_expected = n.min(positions);
    Ok(())
}
