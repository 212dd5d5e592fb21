//! The Merlin data port (TCP, 6342 by default), as Quantum Detectors document it and
//! LiberTEM-live implements it.
//!
//! Every message is framed as `MPX,<length>,<payload>`: the ASCII prefix `MPX,`, the length
//! as ten decimal digits, a comma. The length counts the bytes after the ten digits, that
//! comma included, so the payload has `length − 1` bytes. Payloads:
//!
//! - `HDR,…`: the acquisition header, the text of the `.hdr` file a recording writes
//!   (`Frames in Acquisition (Number):\t8`, … , `End\t`), sent once when an acquisition starts.
//!   `Frames in Acquisition` 0 means a continuous acquisition without a fixed count.
//! - `MQ1,…`: one frame, exactly the bytes a `.mib` file holds for it: the MQ1 header
//!   (`hsize` bytes, NUL-padded) then the pixels in every depth the file reader knows
//!   (`U08/U16/U32` big-endian, RAW `R64` 1/6/12-bit, single chip or quad). The layout is
//!   worked out once, from the first frame's header, by the `.mib` reader's own parser; every
//!   later header is checked against it (sequence number, header size, chips, geometry) with
//!   the same cheap, non-allocating check the file reader runs per frame.
//!
//! [`MerlinReceiver`] reads from any [`Read`] (a [`TcpStream`] from
//! [`MerlinReceiver::connect`], or bytes in a test): the message framing and decoding are
//! plain functions over bytes. After the first frame nothing is allocated: the message is
//! read into one buffer sized for a frame, and decoded (when the stored pixels are not
//! already native `u8`) into one decode buffer.
//!
//! A connection that closes between messages ends the stream ([`MerlinReceiver::receive`]
//! returns `None`); one that closes inside a message, a prefix that is not `MPX,`, a length
//! that disagrees with the frame's header, or a timeout is an [`Error::Live`] that names
//! the address, the frame and how many of its bytes arrived.

use std::io::{ErrorKind, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::source::mib::{self, HeaderCheck, Layout};
use crate::source::{DecodeBuffers, Frame, PixelKind, decode_frame};
use crate::{Error, Result};

/// Bytes of the `MPX,<ten digits>,` prefix of every message.
pub const MPX_PREFIX_BYTES: usize = 15;

/// The largest payload accepted (a 2×2 quad of 32-bit pixels is 1 MiB; this leaves room for
/// larger sensors while refusing a garbage length before allocating it).
pub const MAX_PAYLOAD_BYTES: usize = 256 << 20;

/// Parses the 15-byte `MPX,<length>,` prefix; returns the payload's byte count (`length − 1`).
pub fn parse_mpx_prefix(prefix: &[u8; MPX_PREFIX_BYTES]) -> std::result::Result<usize, String> {
    let shown = || String::from_utf8_lossy(prefix).escape_debug().to_string();
    if &prefix[..4] != b"MPX," || prefix[14] != b',' {
        return Err(format!(
            "expected a message prefix `MPX,<10 digits>,`, found `{}`",
            shown()
        ));
    }
    let digits = &prefix[4..14];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "message length `{}` is not ten decimal digits",
            String::from_utf8_lossy(digits).escape_debug()
        ));
    }
    let length = digits
        .iter()
        .fold(0usize, |acc, &d| acc * 10 + usize::from(d - b'0'));
    if length == 0 {
        return Err("message length 0: the length counts at least its trailing comma".into());
    }
    let payload = length - 1;
    if payload > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "message length {length} bytes is larger than any Merlin frame ({} MiB at most)",
            MAX_PAYLOAD_BYTES >> 20
        ));
    }
    Ok(payload)
}

/// The `MPX,<length>,` prefix of a message whose payload has `payload` bytes (what a Merlin,
/// or a test server, sends before it).
pub fn mpx_prefix(payload: usize) -> [u8; MPX_PREFIX_BYTES] {
    let text = format!("MPX,{:010},", payload + 1);
    let mut out = [0u8; MPX_PREFIX_BYTES];
    out.copy_from_slice(text.as_bytes());
    out
}

/// The acquisition header (`HDR,…`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AcquisitionHeader {
    /// `Frames in Acquisition (Number)`; `None` when absent, `Some(0)` for a continuous run.
    pub frames: Option<u64>,
    /// The header's text, NUL padding removed.
    pub text: String,
}

impl AcquisitionHeader {
    /// Parses an `HDR,…` payload.
    pub fn parse(payload: &[u8]) -> Self {
        let text = String::from_utf8_lossy(payload)
            .trim_end_matches(['\0', ' '])
            .to_owned();
        AcquisitionHeader {
            frames: mib::hdr_frames(&text),
            text,
        }
    }
}

/// What the stream said next.
#[derive(Debug)]
pub enum Message<'a> {
    /// An acquisition header (the first message of an acquisition).
    Header(AcquisitionHeader),
    /// Frame `index` of the stream (0 = the first frame received), decoded.
    Frame {
        /// Frames received before this one.
        index: u64,
        /// Frame width in pixels.
        width: usize,
        /// Frame height in pixels.
        height: usize,
        /// The pixels, `width × height`, row-major, as the `.mib` reader delivers them.
        frame: Frame<'a>,
    },
}

/// Receives a Merlin data stream; see the [module docs](self).
#[derive(Debug)]
pub struct MerlinReceiver<R> {
    input: R,
    address: String,
    /// The frame layout, from the first frame.
    layout: Option<Layout>,
    check: Option<HeaderCheck>,
    /// One message: header and pixels of a frame.
    message: Vec<u8>,
    bufs: DecodeBuffers,
    frames: u64,
    bytes: u64,
    /// An acquisition header arrived: the next frame starts a new sequence.
    rebase: bool,
    /// Index of the first frame of the current acquisition.
    base: u64,
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl MerlinReceiver<TcpStream> {
    /// Connects to the data port at `address` (`HOST:PORT`). With `timeout`, a refused
    /// connection is retried (every 50 ms: the detector software may still be starting) until
    /// `timeout` has passed, and every read then waits at most that long; without, one attempt
    /// and reads that wait as long as the detector takes (it may wait for its trigger).
    pub fn connect(address: &str, timeout: Option<Duration>) -> Result<Self> {
        let addrs: Vec<_> = address
            .to_socket_addrs()
            .map_err(|e| {
                Error::param(
                    "source.merlin.address",
                    format!("`{address}`: expected HOST:PORT ({e})"),
                )
            })?
            .collect();
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let mut last = None;
            for addr in &addrs {
                let tried = match timeout {
                    Some(t) => TcpStream::connect_timeout(addr, t),
                    None => TcpStream::connect(addr),
                };
                match tried {
                    Ok(stream) => {
                        stream
                            .set_read_timeout(timeout)
                            .and_then(|()| stream.set_nodelay(true))
                            .map_err(|e| {
                                Error::live(address, format!("setting up the socket: {e}"))
                            })?;
                        return Ok(MerlinReceiver::new(stream, address));
                    }
                    Err(e) => last = Some(e),
                }
            }
            let retry = last
                .as_ref()
                .is_some_and(|e| e.kind() == ErrorKind::ConnectionRefused)
                && deadline.is_some_and(|d| std::time::Instant::now() < d);
            if retry {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            return Err(Error::live(
                address,
                match last {
                    Some(e) => format!("cannot connect to the Merlin data port: {e}"),
                    None => "the address resolves to nothing".into(),
                },
            ));
        }
    }
}

impl<R: Read> MerlinReceiver<R> {
    /// A receiver reading `input`; `address` names it in errors.
    pub fn new(input: R, address: impl Into<String>) -> Self {
        MerlinReceiver {
            input,
            address: address.into(),
            layout: None,
            check: None,
            message: Vec::new(),
            bufs: DecodeBuffers::default(),
            frames: 0,
            bytes: 0,
            rebase: false,
            base: 0,
        }
    }

    /// Frames received so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes received so far (prefixes, headers and pixels).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Width, height and pixel type of the frames (known after the first frame).
    pub fn geometry(&self) -> Option<(usize, usize, PixelKind)> {
        self.layout.as_ref().map(|l| (l.width, l.height, l.pixel))
    }

    /// How the frames are stored, e.g. `U16 (1 chip, layout 1x1, counter depth 12)` (after
    /// the first frame).
    pub fn stored_dtype(&self) -> Option<&str> {
        self.layout.as_ref().map(|l| l.stored_dtype.as_str())
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::live(&self.address, msg)
    }

    fn io_err(&self, what: &str, e: std::io::Error) -> Error {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.err(format!(
                "{what}: no data within the timeout (`source.merlin.timeout_s`)"
            )),
            _ => self.err(format!("{what}: {e}")),
        }
    }

    /// The next message, or `None` when the peer closed the connection between messages.
    pub fn receive(&mut self) -> Result<Option<Message<'_>>> {
        // Built only when something fails: nothing is allocated per frame.
        let frames = self.frames;
        let what = move || format!("after {frames} frames, reading the next message");
        let mut prefix = [0u8; MPX_PREFIX_BYTES];
        let got = fill(&mut self.input, &mut prefix).map_err(|e| self.io_err(&what(), e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < MPX_PREFIX_BYTES {
            return Err(self.err(format!(
                "{}: the connection closed inside a message prefix ({got} of \
                 {MPX_PREFIX_BYTES} bytes)",
                what()
            )));
        }
        let payload =
            parse_mpx_prefix(&prefix).map_err(|m| self.err(format!("{}: {m}", what())))?;
        self.bytes += MPX_PREFIX_BYTES as u64;
        // The kind of message is in its first four bytes.
        let mut kind = [0u8; 4];
        let head = kind.len().min(payload);
        let got = fill(&mut self.input, &mut kind[..head]).map_err(|e| self.io_err(&what(), e))?;
        if got < head {
            return Err(self.err(format!(
                "{}: the connection closed after {got} of the message's {payload} bytes",
                what()
            )));
        }
        match &kind {
            b"HDR," => {
                let mut text = vec![0u8; payload - 4];
                let got = fill(&mut self.input, &mut text).map_err(|e| self.io_err(&what(), e))?;
                self.bytes += (4 + got) as u64;
                if got < text.len() {
                    return Err(self.err(format!(
                        "the connection closed inside the acquisition header ({} of {payload} \
                         bytes)",
                        4 + got
                    )));
                }
                self.rebase = self.layout.is_some();
                Ok(Some(Message::Header(AcquisitionHeader::parse(&text))))
            }
            b"MQ1," => self.read_frame(payload, kind).map(Some),
            _ => Err(self.err(format!(
                "{}: expected an acquisition header `HDR,` or a frame `MQ1,`, found `{}`",
                what(),
                String::from_utf8_lossy(&kind[..head]).escape_debug()
            ))),
        }
    }

    fn read_frame(&mut self, payload: usize, kind: [u8; 4]) -> Result<Message<'_>> {
        let index = self.frames;
        if self.layout.is_none() {
            // The first frame: everything is sized from its header, once.
            self.message = vec![0u8; payload];
        } else if payload != self.message.len() {
            return Err(self.err(format!(
                "frame {index}: message of {payload} bytes, expected {} like frame 0 \
                 (header and pixels)",
                self.message.len()
            )));
        }
        self.message[..4].copy_from_slice(&kind);
        let got = fill(&mut self.input, &mut self.message[4..])
            .map_err(|e| self.io_err(&format!("frame {index}"), e))?;
        self.bytes += (4 + got) as u64;
        if 4 + got < payload {
            return Err(self.err(format!(
                "the connection closed mid-frame: frame {index} has {} of its {payload} bytes",
                4 + got
            )));
        }
        if self.layout.is_none() {
            let layout = mib::layout(&self.message)
                .map_err(|e| self.err(format!("frame header at byte {}: {}", e.offset, e.msg)))?;
            let want = layout.header_bytes() + layout.frame_bytes;
            if want != payload {
                return Err(self.err(format!(
                    "frame 0: message of {payload} bytes, but its header says {} header + {} \
                     pixel bytes ({}×{} {})",
                    layout.header_bytes(),
                    layout.frame_bytes,
                    layout.width,
                    layout.height,
                    layout.stored_dtype
                )));
            }
            self.bufs = DecodeBuffers::for_frames(layout.pixel, layout.width * layout.height);
            self.check = Some(HeaderCheck::new(layout.first));
            self.layout = Some(layout);
        }
        if std::mem::take(&mut self.rebase) {
            // A new acquisition numbers its frames afresh; its layout must not change.
            let again = mib::layout(&self.message)
                .map_err(|e| self.err(format!("frame header at byte {}: {}", e.offset, e.msg)))?;
            // The header size too: the message length was checked against frame 0's.
            let shape = |l: &mib::Layout| (l.width, l.height, l.decode, l.header_bytes());
            if self.layout.as_ref().map(shape) != Some(shape(&again)) {
                return Err(self.err(format!(
                    "frame {index}: a new acquisition changed the frames to {}×{} {} with a \
                     {}-byte header",
                    again.width,
                    again.height,
                    again.stored_dtype,
                    again.header_bytes()
                )));
            }
            self.base = index;
            self.check = Some(HeaderCheck::new(again.first));
        }
        let (Some(layout), Some(check)) = (&self.layout, &self.check) else {
            return Err(self.err("internal: no frame layout after the first frame"));
        };
        let hsize = check.header_bytes();
        check
            .check_header(&self.message[..hsize], (index - self.base) as usize)
            .map_err(|e| {
                Error::live(
                    &self.address,
                    format!("{} (header byte {})", e.msg, e.offset),
                )
            })?;
        self.frames += 1;
        let frame = decode_frame(
            layout.decode,
            &self.message[hsize..],
            layout.width * layout.height,
            &mut self.bufs,
        );
        Ok(Message::Frame {
            index,
            width: layout.width,
            height: layout.height,
            frame,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_u16(seq: usize, w: usize, h: usize, px: &[u16]) -> Vec<u8> {
        let mut m = format!("MQ1,{seq:06},00384,01,{w:04},{h:04},U16,   1x1,01,x,MQ1A,t,1ns,12,")
            .into_bytes();
        m.resize(384, 0);
        m.extend(px.iter().flat_map(|v| v.to_be_bytes()));
        m
    }

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut m = mpx_prefix(payload.len()).to_vec();
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn prefix_round_trips_and_rejects() {
        assert_eq!(&mpx_prefix(383), b"MPX,0000000384,");
        assert_eq!(parse_mpx_prefix(&mpx_prefix(383)), Ok(383));
        assert!(
            parse_mpx_prefix(b"MPQ,0000000384,")
                .unwrap_err()
                .contains("MPX")
        );
        assert!(
            parse_mpx_prefix(b"MPX,00000003x4,")
                .unwrap_err()
                .contains("decimal")
        );
        assert!(parse_mpx_prefix(b"MPX,0000000000,").is_err());
        assert!(
            parse_mpx_prefix(b"MPX,9999999999,")
                .unwrap_err()
                .contains("larger")
        );
    }

    #[test]
    fn a_stream_decodes_header_and_frames() {
        let mut bytes = message(b"HDR,\t\nFrames in Acquisition (Number):\t2\nEnd\t\0\0");
        bytes.extend(message(&frame_u16(1, 4, 2, &[1, 2, 3, 4, 5, 6, 7, 0xABCD])));
        bytes.extend(message(&frame_u16(2, 4, 2, &[9; 8])));
        let mut rx = MerlinReceiver::new(std::io::Cursor::new(bytes), "test");
        match rx.receive().unwrap() {
            Some(Message::Header(h)) => assert_eq!(h.frames, Some(2)),
            other => panic!("{other:?}"),
        }
        match rx.receive().unwrap() {
            Some(Message::Frame {
                index: 0,
                width: 4,
                height: 2,
                frame: Frame::U16(px),
            }) => assert_eq!(px, &[1, 2, 3, 4, 5, 6, 7, 0xABCD]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            rx.receive().unwrap(),
            Some(Message::Frame {
                index: 1,
                frame: Frame::U16([9, ..]),
                ..
            })
        ));
        assert!(rx.receive().unwrap().is_none());
        assert_eq!(rx.frames(), 2);
    }

    #[test]
    fn bad_streams_name_the_frame() {
        // A repeated sequence number.
        let mut bytes = message(&frame_u16(1, 2, 2, &[0; 4]));
        bytes.extend(message(&frame_u16(1, 2, 2, &[0; 4])));
        let mut rx = MerlinReceiver::new(std::io::Cursor::new(bytes), "det:1");
        rx.receive().unwrap();
        let e = rx.receive().unwrap_err().to_string();
        assert!(
            e.contains("det:1") && e.contains("frame 1") && e.contains("sequence"),
            "{e}"
        );
        // Cut mid-frame.
        let mut bytes = message(&frame_u16(1, 2, 2, &[0; 4]));
        bytes.truncate(bytes.len() - 3);
        let mut rx = MerlinReceiver::new(std::io::Cursor::new(bytes), "det:1");
        let e = rx.receive().unwrap_err().to_string();
        assert!(
            e.contains("mid-frame") && e.contains("389 of its 392 bytes"),
            "{e}"
        );
        // A length that disagrees with the frame header.
        let mut payload = frame_u16(1, 2, 2, &[0; 4]);
        payload.push(0);
        let mut rx = MerlinReceiver::new(std::io::Cursor::new(message(&payload)), "det:1");
        let e = rx.receive().unwrap_err().to_string();
        assert!(
            e.contains("393 bytes") && e.contains("384 header + 8 pixel"),
            "{e}"
        );
    }
}
