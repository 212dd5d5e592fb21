"""A DECTRIS SIMPLON stream (version 1) sender for the live tests: an independent peer.

Reads a raw dump with its JSON sidecar (numpy), compresses every frame with the bitshuffle
library's own encoder (the HDF5 Bitshuffle filter of hdf5plugin, one chunk per frame, read
back with h5py's read_direct_chunk: the container a DECTRIS detector sends as `bs16-lz4<`),
binds a ZeroMQ PUSH socket (pyzmq) on a free loopback port, prints that port on the first line
of stdout, and sends the series header, one 4-part message per image and the series end.

    python dectris_peer.py RAW [--frames N] [--no-end] [--header-detail basic|none]
        [--encoding bslz4|raw] [--repeat R]

--frames N sends only the first N images; --no-end then also leaves out the series end (the
detector went silent); --repeat R sends the dump R times as one series (a longer stream for
the bench).
"""

import argparse
import json
import sys

import h5py
import hdf5plugin
import numpy as np
import zmq


def frames_of(raw):
    with open(raw + ".json") as f:
        side = json.load(f)
    assert side.get("header_bytes", 0) == 0 and side.get("frame_header_bytes", 0) == 0
    assert side.get("byte_order", "little") == "little"
    dtype = np.dtype({"u8": "u1", "u16": "<u2", "u32": "<u4"}[side["dtype"]])
    data = np.fromfile(raw, dtype=dtype)
    return data.reshape(-1, side["height"], side["width"])


def bslz4_all(frames):
    """Each frame as the bitshuffle-LZ4 chunk the HDF5 filter stores."""
    n, h, w = frames.shape
    out = []
    with h5py.File("peer.h5", "w", driver="core", backing_store=False) as f:
        d = f.create_dataset(
            "d",
            shape=frames.shape,
            dtype=frames.dtype,
            chunks=(1, h, w),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )
        d[...] = frames
        for i in range(n):
            mask, chunk = d.id.read_direct_chunk((i, 0, 0))
            assert mask == 0
            out.append(bytes(chunk))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--no-end", action="store_true")
    ap.add_argument("--header-detail", default="basic")
    ap.add_argument("--encoding", default="bslz4", choices=["bslz4", "raw"])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    frames = frames_of(args.raw)
    n, h, w = frames.shape
    bits = frames.dtype.itemsize * 8
    kind = {8: "uint8", 16: "uint16", 32: "uint32"}[bits]
    if args.encoding == "bslz4":
        blobs, encoding = bslz4_all(frames), f"bs{bits}-lz4<"
    else:
        blobs, encoding = [f.tobytes() for f in frames], "<"
    total = n * args.repeat
    send = total if args.frames is None else min(args.frames, total)

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)

    series = 7
    header = {"htype": "dheader-1.0", "series": series, "header_detail": args.header_detail}
    if args.header_detail == "none":
        sock.send_json(header)
    else:
        config = {
            "nimages": total,
            "ntrigger": 1,
            "x_pixels_in_detector": w,
            "y_pixels_in_detector": h,
            "bit_depth_image": bits,
        }
        sock.send_multipart([json.dumps(header).encode(), json.dumps(config).encode()])
    for i in range(send):
        blob = blobs[i % n]
        sock.send_multipart(
            [
                json.dumps({"htype": "dimage-1.0", "series": series, "frame": i, "hash": ""}).encode(),
                json.dumps(
                    {
                        "htype": "dimage_d-1.0",
                        "shape": [w, h],
                        "type": kind,
                        "encoding": encoding,
                        "size": len(blob),
                    }
                ).encode(),
                blob,
                json.dumps(
                    {"htype": "dconfig-1.0", "start_time": i * 1000, "stop_time": i * 1000 + 900, "real_time": 900}
                ).encode(),
            ],
            copy=False,
        )
    if not args.no_end:
        sock.send_json({"htype": "dseries_end-1.0", "series": series})
    # Wait (at most a minute) until the receiver has taken everything, then leave.
    sock.close(linger=60000)
    ctx.term()


if __name__ == "__main__":
    sys.exit(main())
