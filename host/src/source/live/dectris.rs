//! The DECTRIS SIMPLON stream interface, version 1 (`stream` subsystem, ZeroMQ PUSH on the
//! detector, port 9999 by default), as the SIMPLON API manual documents it and LiberTEM's
//! `libertem_dectris` implements it. Every message is one ZeroMQ multipart message:
//!
//! - the series header: part 1 `{"htype": "dheader-1.0", "series": N, "header_detail":
//!   "basic" | "all" | "none"}`; with `basic` or `all` part 2 is the detector configuration
//!   (JSON: `nimages`, `ntrigger`, `x_pixels_in_detector`, …), and `all` adds the flat field,
//!   pixel mask and count-rate table (parts 3–8, not used here);
//! - one message per image, four parts (a fifth, the appendix, is ignored): `{"htype":
//!   "dimage-1.0", "series": N, "frame": I, "hash": …}`, `{"htype": "dimage_d-1.0", "shape":
//!   [width, height], "type": "uint8" | "uint16" | "uint32", "encoding": "bs16-lz4<" | "lz4<" |
//!   "<" …, "size": bytes}`, the data blob, `{"htype": "dconfig-1.0", "start_time": …,
//!   "stop_time": …, "real_time": …}` (nanoseconds);
//! - the series end: `{"htype": "dseries_end-1.0", "series": N}`.
//!
//! [`DectrisReceiver`] connects a PULL socket to the detector; the message parts are received
//! into ZeroMQ messages made once and the blob decoded ([`super::bslz4`]) into one pixel
//! buffer sized from the first image: after the first frame nothing is allocated per frame
//! (the JSON parts are parsed into borrowed fields). ZeroMQ delivers a multipart message
//! whole or not at all and reconnects by itself, so a detector that goes away shows as no
//! message within the timeout; every other fault (a series number that changes, a frame
//! number that skips, a part missing, a blob that does not decode) is an [`Error::Live`]
//! naming the address, the frame and, for a blob, the byte offset.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use super::bslz4::{self, Encoding};
use crate::source::{DecodeBuffers, Frame, PixelKind};
use crate::{Error, Result};

/// The series header (`dheader-1.0`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeriesHeader {
    /// The series number.
    pub series: u64,
    /// `basic`, `all` or `none`.
    pub header_detail: String,
    /// `nimages × ntrigger` of the detector configuration, when the header carries it.
    pub frames: Option<u64>,
}

/// What the stream said next.
#[derive(Debug)]
pub enum Message<'a> {
    /// A series header.
    Header(SeriesHeader),
    /// Image `index` of the stream (0 = the first received), decoded.
    Frame {
        /// Images received before this one.
        index: u64,
        /// Frame width in pixels (`shape[0]`).
        width: usize,
        /// Frame height in pixels (`shape[1]`).
        height: usize,
        /// The pixels, `width × height`, row-major.
        frame: Frame<'a>,
    },
    /// The series end (`dseries_end-1.0`).
    End {
        /// Its series number.
        series: u64,
    },
}

#[derive(Deserialize)]
struct Htype<'a> {
    #[serde(borrow)]
    htype: Cow<'a, str>,
}

#[derive(Deserialize)]
struct DHeader<'a> {
    series: u64,
    #[serde(borrow)]
    header_detail: Cow<'a, str>,
}

#[derive(Deserialize)]
struct DetectorConfig {
    nimages: Option<u64>,
    ntrigger: Option<u64>,
}

#[derive(Deserialize)]
struct DImage {
    series: u64,
    frame: u64,
}

#[derive(Deserialize)]
struct DImageD<'a> {
    shape: (usize, usize),
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    encoding: Cow<'a, str>,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct SeriesEnd {
    series: u64,
}

/// The layout every image of the stream must keep, from the first one.
#[derive(Debug, Clone)]
struct Layout {
    width: usize,
    height: usize,
    pixel: PixelKind,
    encoding: Encoding,
    stored: String,
}

/// The most pixels a frame may have (an EIGER2 16M has 18.1 million; this refuses a garbage
/// shape before its buffers are allocated).
pub const MAX_FRAME_PIXELS: usize = 1 << 26;

/// The most message parts kept (header `all` has 8; an image 4 plus an appendix).
const PARTS: usize = 8;

/// Receives a DECTRIS stream; see the [module docs](self).
pub struct DectrisReceiver {
    // Dropped before the context: the socket is closed first.
    socket: zmq::Socket,
    _context: zmq::Context,
    address: String,
    parts: Vec<zmq::Message>,
    layout: Option<Layout>,
    bufs: DecodeBuffers,
    scratch: Vec<u8>,
    series: Option<u64>,
    first_frame: Option<u64>,
    /// Images received before the current series began (its frame numbers restart).
    series_base: u64,
    frames: u64,
    bytes: u64,
}

impl std::fmt::Debug for DectrisReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DectrisReceiver")
            .field("address", &self.address)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

fn json<'a, T: Deserialize<'a>>(part: &'a [u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(part).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&part[..part.len().min(120)])
            .escape_debug()
            .collect();
        format!("{e} in `{shown}`")
    })
}

impl DectrisReceiver {
    /// Connects a PULL socket to the stream interface at `address` (`HOST:PORT`, the
    /// detector's port 9999). ZeroMQ connects in the background and retries by itself; with
    /// `timeout`, every wait for a message gives up after that long, without, it waits as
    /// long as the detector takes (it may wait to be armed and triggered).
    pub fn connect(address: &str, timeout: Option<Duration>) -> Result<Self> {
        let context = zmq::Context::new();
        let zerr = |what: &str, e: zmq::Error| Error::live(address, format!("{what}: {e}"));
        let socket = context
            .socket(zmq::PULL)
            .map_err(|e| zerr("making the ZeroMQ socket", e))?;
        let ms = match timeout {
            Some(t) => i32::try_from(t.as_millis().max(1)).unwrap_or(i32::MAX),
            None => -1,
        };
        socket
            .set_rcvtimeo(ms)
            .and_then(|()| socket.set_linger(0))
            .map_err(|e| zerr("setting up the ZeroMQ socket", e))?;
        let endpoint = format!("tcp://{address}");
        socket.connect(&endpoint).map_err(|e| {
            Error::param(
                "source.dectris.address",
                format!("`{address}`: cannot connect to {endpoint} ({e}); expected HOST:PORT"),
            )
        })?;
        Ok(DectrisReceiver {
            socket,
            _context: context,
            address: address.to_owned(),
            parts: (0..PARTS).map(|_| zmq::Message::new()).collect(),
            layout: None,
            bufs: DecodeBuffers::default(),
            scratch: Vec::new(),
            series: None,
            first_frame: None,
            series_base: 0,
            frames: 0,
            bytes: 0,
        })
    }

    /// Images received so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes received so far (every part of every message).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How the frames are stored on the wire, e.g. `uint16 bs16-lz4<` (after the first).
    pub fn stored_dtype(&self) -> Option<&str> {
        self.layout.as_ref().map(|l| l.stored.as_str())
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::live(&self.address, msg)
    }

    /// Receives one multipart message into `self.parts`; returns its part count.
    fn receive_parts(&mut self) -> Result<usize> {
        let mut n = 0;
        loop {
            let slot = n.min(PARTS - 1);
            if let Err(e) = self.socket.recv(&mut self.parts[slot], 0) {
                let frames = self.frames;
                return Err(match e {
                    zmq::Error::EAGAIN => self.err(format!(
                        "after {frames} frames, no message within the timeout \
                         (`source.dectris.timeout_s`): is the detector's stream interface \
                         enabled, armed and triggered?"
                    )),
                    e => self.err(format!("after {frames} frames, receiving: {e}")),
                });
            }
            self.bytes += self.parts[slot].len() as u64;
            n += 1;
            if !self.parts[slot].get_more() {
                return Ok(n);
            }
        }
    }

    /// The next message.
    pub fn receive(&mut self) -> Result<Message<'_>> {
        let n = self.receive_parts()?;
        let htype: Htype = json(&self.parts[0]).map_err(|m| {
            self.err(format!(
                "after {} frames, a message whose first part is not the JSON of a stream \
                 message: {m}",
                self.frames
            ))
        })?;
        match &*htype.htype {
            "dheader-1.0" => self.header(n).map(Message::Header),
            "dimage-1.0" => self.image(n),
            "dseries_end-1.0" => {
                let end: SeriesEnd =
                    json(&self.parts[0]).map_err(|m| self.err(format!("the series end: {m}")))?;
                Ok(Message::End { series: end.series })
            }
            other => Err(self.err(format!(
                "after {} frames, a message of type `{}`: expected dheader-1.0, dimage-1.0 or \
                 dseries_end-1.0 (stream format version 1; `stream2` is not read here)",
                self.frames,
                other.escape_debug()
            ))),
        }
    }

    fn header(&mut self, n: usize) -> Result<SeriesHeader> {
        let h: DHeader =
            json(&self.parts[0]).map_err(|m| self.err(format!("the series header: {m}")))?;
        let mut header = SeriesHeader {
            series: h.series,
            header_detail: h.header_detail.into_owned(),
            frames: None,
        };
        if header.header_detail != "none" && n >= 2 {
            let c: DetectorConfig = json(&self.parts[1]).map_err(|m| {
                self.err(format!(
                    "the detector configuration of series {}: {m}",
                    header.series
                ))
            })?;
            header.frames = c.nimages.map(|i| i * c.ntrigger.unwrap_or(1).max(1));
        }
        self.series = Some(header.series);
        self.first_frame = None;
        self.series_base = self.frames;
        Ok(header)
    }

    fn image(&mut self, n: usize) -> Result<Message<'_>> {
        let index = self.frames;
        if n < 4 {
            return Err(self.err(format!(
                "image {index}: {n} message parts, expected 4 (dimage-1.0, dimage_d-1.0, the \
                 data, dconfig-1.0)"
            )));
        }
        let im: DImage = json(&self.parts[0])
            .map_err(|m| self.err(format!("image {index}: the dimage-1.0 part: {m}")))?;
        match self.series {
            Some(s) if s != im.series => {
                return Err(self.err(format!(
                    "image {index} (frame {}) is of series {}, but the stream is series {s}",
                    im.frame, im.series
                )));
            }
            Some(_) => {}
            None => self.series = Some(im.series),
        }
        let first = *self.first_frame.get_or_insert(im.frame);
        if im.frame != first + (index - self.series_base) {
            return Err(self.err(format!(
                "image {index}: frame number {} where {} was due (frames lost or reordered)",
                im.frame,
                first + (index - self.series_base)
            )));
        }
        let d: DImageD = json(&self.parts[1])
            .map_err(|m| self.err(format!("image {index}: the dimage_d-1.0 part: {m}")))?;
        let blob_len = self.parts[2].len();
        if let Some(size) = d.size
            && size != blob_len as u64
        {
            return Err(self.err(format!(
                "image {index}: the data part has {blob_len} bytes, dimage_d-1.0 says {size}"
            )));
        }
        let (width, height) = d.shape;
        match &self.layout {
            None => {
                let pixel = match &*d.kind {
                    "uint8" => PixelKind::U8,
                    "uint16" => PixelKind::U16,
                    "uint32" => PixelKind::U32,
                    other => {
                        return Err(self.err(format!(
                            "image {index}: pixel type `{}`, expected uint8, uint16 or uint32",
                            other.escape_debug()
                        )));
                    }
                };
                let encoding = Encoding::parse(&d.encoding)
                    .map_err(|m| self.err(format!("image {index}: {m}")))?;
                // A garbage shape is refused before it is allocated.
                let pixels = width
                    .checked_mul(height)
                    .filter(|&n| n > 0 && n <= MAX_FRAME_PIXELS)
                    .ok_or_else(|| {
                        self.err(format!(
                            "image {index}: shape [{width}, {height}], expected positive sides \
                             of at most {MAX_FRAME_PIXELS} pixels in all"
                        ))
                    })?;
                self.bufs = DecodeBuffers::for_frames(pixel, pixels);
                self.layout = Some(Layout {
                    width,
                    height,
                    pixel,
                    encoding,
                    stored: format!("{} {}", d.kind, d.encoding),
                });
            }
            Some(l) => {
                if (width, height) != (l.width, l.height)
                    || d.kind != l.stored.split(' ').next().unwrap_or_default()
                    || Encoding::parse(&d.encoding).ok() != Some(l.encoding)
                {
                    return Err(self.err(format!(
                        "image {index}: shape [{width}, {height}] {} {}, but image 0 was \
                         [{}, {}] {}",
                        d.kind, d.encoding, l.width, l.height, l.stored
                    )));
                }
            }
        }
        let Some(layout) = &self.layout else {
            unreachable!("set above")
        };
        let (pixel, encoding) = (layout.pixel, layout.encoding);
        let bytes: &mut [u8] = match pixel {
            PixelKind::U8 => &mut self.bufs.u8,
            PixelKind::U16 => bytemuck::cast_slice_mut(&mut self.bufs.u16),
            PixelKind::U32 => bytemuck::cast_slice_mut(&mut self.bufs.u32),
            PixelKind::F32 => bytemuck::cast_slice_mut(&mut self.bufs.f32),
        };
        if let Err(e) = bslz4::decode(
            &encoding,
            &self.parts[2],
            pixel.bytes(),
            bytes,
            &mut self.scratch,
        ) {
            return Err(Error::live(
                &self.address,
                format!("image {index} (frame {}): {e}", im.frame),
            ));
        }
        if encoding.little_endian != cfg!(target_endian = "little") {
            match pixel {
                PixelKind::U16 => self.bufs.u16.iter_mut().for_each(|v| *v = v.swap_bytes()),
                PixelKind::U32 => self.bufs.u32.iter_mut().for_each(|v| *v = v.swap_bytes()),
                _ => {}
            }
        }
        self.frames += 1;
        let frame = match pixel {
            PixelKind::U8 => Frame::U8(&self.bufs.u8),
            PixelKind::U16 => Frame::U16(&self.bufs.u16),
            PixelKind::U32 => Frame::U32(&self.bufs.u32),
            PixelKind::F32 => Frame::F32(&self.bufs.f32),
        };
        Ok(Message::Frame {
            index,
            width,
            height,
            frame,
        })
    }
}
