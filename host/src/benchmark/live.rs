//! The live sources on loopback: a sender thread plays a detector on 127.0.0.1 and the
//! receiver under test takes every frame, decoded into its buffer (the frames are not
//! reduced: the reduction's own rows say what that costs).
//!
//! - **L1 merlin tcp**: 256 × 256 U16 Merlin frames (384-byte MQ1 header, big-endian pixels)
//!   in `MPX` messages, received by [`MerlinReceiver`] (framing, header check, byte swap).
//! - **L2 dectris zmq** (feature `dectris`): 192 × 192 u16 frames of Poisson counts
//!   (mean 2 per pixel), bitshuffle-LZ4 compressed, in SIMPLON stream messages over a ZeroMQ
//!   PUSH socket, received by `DectrisReceiver` (4 parts, JSON headers, bslz4 decode).
//!   GB/s counts the decoded frames, as every row does.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use super::{Context, Measurement, Workload};
use crate::source::live::merlin::{MerlinReceiver, Message, mpx_prefix};
use crate::{Error, Result};

/// The live-source workloads.
pub fn workloads() -> Vec<Workload> {
    #[allow(unused_mut)]
    let mut all = vec![Workload {
        name: "L1 merlin tcp",
        description: "Merlin data port on loopback: MPX framing + MQ1 header check + U16 decode",
        width: 256,
        height: 256,
        pixel: "u16",
        pixel_bytes: 2,
        target_fps: 100e3,
        run: l1_merlin,
    }];
    #[cfg(feature = "dectris")]
    all.push(Workload {
        name: "L2 dectris zmq",
        description: "DECTRIS stream v1 on loopback (ZeroMQ): 4-part messages + bslz4 decode",
        width: 192,
        height: 192,
        pixel: "u16",
        pixel_bytes: 2,
        target_fps: 100e3,
        run: l2_dectris,
    });
    all
}

#[cfg(feature = "dectris")]
fn l2_dectris(ctx: &Context) -> Result<Measurement> {
    use crate::source::live::bslz4::encode_bslz4;
    use crate::source::live::dectris::{DectrisReceiver, Message};
    use rand::SeedableRng;
    use rand_distr::{Distribution, Poisson};

    let frames: u64 = ctx.pick(20_000, 3_000);
    let (w, h) = (192usize, 192usize);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(15);
    let poisson = Poisson::new(2.0).map_err(|e| Error::Pipeline(format!("bench: {e}")))?;
    let pixels: Vec<u8> = (0..w * h)
        .flat_map(|_| (poisson.sample(&mut rng) as u16).to_le_bytes())
        .collect();
    let blob = encode_bslz4(&pixels, 2, 4096);
    let zerr = |e: zmq::Error| Error::live("127.0.0.1", format!("bench sender: {e}"));
    Measurement::repeat(ctx.seconds, || {
        let context = zmq::Context::new();
        let push = context.socket(zmq::PUSH).map_err(zerr)?;
        push.bind("tcp://127.0.0.1:*").map_err(zerr)?;
        let endpoint = push
            .get_last_endpoint()
            .map_err(zerr)?
            .map_err(|_| Error::live("127.0.0.1", "bench: no endpoint"))?;
        let address = endpoint.trim_start_matches("tcp://").to_owned();
        let blob = blob.clone();
        let sender = std::thread::spawn(move || -> std::result::Result<(), zmq::Error> {
            push.send(
                &br#"{"htype":"dheader-1.0","series":1,"header_detail":"none"}"#[..],
                0,
            )?;
            let d = format!(
                r#"{{"htype":"dimage_d-1.0","shape":[{w},{h}],"type":"uint16","encoding":"bs16-lz4<","size":{}}}"#,
                blob.len()
            );
            let c = br#"{"htype":"dconfig-1.0","start_time":0,"stop_time":1,"real_time":1}"#;
            for i in 0..frames {
                let im = format!(r#"{{"htype":"dimage-1.0","series":1,"frame":{i},"hash":""}}"#);
                push.send(im.as_bytes(), zmq::SNDMORE)?;
                push.send(d.as_bytes(), zmq::SNDMORE)?;
                push.send(&blob[..], zmq::SNDMORE)?;
                push.send(&c[..], 0)?;
            }
            push.send(&br#"{"htype":"dseries_end-1.0","series":1}"#[..], 0)?;
            push.set_linger(30_000)?;
            Ok(())
        });
        let mut rx = DectrisReceiver::connect(&address, Some(Duration::from_secs(30)))?;
        let mut got = 0u64;
        let mut sum = 0u64;
        loop {
            match rx.receive()? {
                Message::Frame { frame, .. } => {
                    sum = sum.wrapping_add(u64::from(frame.as_bytes()[2]));
                    got += 1;
                }
                Message::End { .. } => break,
                Message::Header(_) => {}
            }
        }
        std::hint::black_box(sum);
        sender
            .join()
            .map_err(|_| Error::Pipeline("the bench sender panicked".into()))?
            .map_err(zerr)?;
        if got != frames {
            return Err(Error::live(
                address,
                format!("bench: {got} of {frames} frames received"),
            ));
        }
        Ok(got)
    })
}

/// One frame's message (prefix, header, pixels) for sequence number `seq`, and the offset
/// of the header's six sequence digits within it.
fn merlin_message(width: usize, height: usize) -> (Vec<u8>, usize) {
    let mut header = format!(
        "MQ1,000001,00384,01,{width:04},{height:04},U16,   1x1,01,2026-12-01 12:00:00.000000,\
         0.001000,0,0,0,MQ1A,2026-12-01T12:00:00.000000000Z,1000000ns,12,"
    )
    .into_bytes();
    header.resize(384, 0);
    let pixels = width * height;
    let mut message = mpx_prefix(384 + 2 * pixels).to_vec();
    let seq_at = message.len() + 4;
    message.extend(header);
    message.extend((0..pixels).flat_map(|i| ((i % 4096) as u16).to_be_bytes()));
    (message, seq_at)
}

fn l1_merlin(ctx: &Context) -> Result<Measurement> {
    let frames: u64 = ctx.pick(20_000, 3_000);
    let (template, seq_at) = merlin_message(256, 256);
    let io = |e: std::io::Error| Error::live("127.0.0.1", format!("bench sender: {e}"));
    Measurement::repeat(ctx.seconds, || {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
        let address = listener.local_addr().map_err(io)?.to_string();
        let mut message = template.clone();
        let sender = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut conn, _) = listener.accept()?;
            for seq in 1..=frames {
                let mut n = seq % 1_000_000;
                for d in message[seq_at..seq_at + 6].iter_mut().rev() {
                    *d = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                conn.write_all(&message)?;
            }
            Ok(())
        });
        let mut rx = MerlinReceiver::connect(&address, Some(Duration::from_secs(30)))?;
        let mut got = 0u64;
        let mut sum = 0u64;
        while let Some(m) = rx.receive()? {
            if let Message::Frame { frame, .. } = m {
                // Touch the decoded frame so the decode cannot be skipped.
                sum = sum.wrapping_add(u64::from(frame.as_bytes()[2]));
                got += 1;
            }
        }
        std::hint::black_box(sum);
        sender
            .join()
            .map_err(|_| Error::Pipeline("the bench sender panicked".into()))?
            .map_err(io)?;
        if got != frames {
            return Err(Error::live(
                address,
                format!("bench: {got} of {frames} frames received"),
            ));
        }
        Ok(got)
    })
}
