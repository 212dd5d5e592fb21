"""Writes bslz4_vectors.json: frames compressed by the bitshuffle library's own encoder.

The encoder is the HDF5 Bitshuffle filter of hdf5plugin (Bitshuffle(nelems, cname="lz4")):
each frame is written as one chunk of an in-memory HDF5 file and its stored bytes read back
with h5py's read_direct_chunk, the exact container a DECTRIS detector sends as `bs<bits>-lz4<`.
The Rust unit test source::live::bslz4::tests decodes them and compares with `raw`.

    python tests/peers/dectris_vectors.py > tests/peers/bslz4_vectors.json
"""

import json
import sys

import h5py
import hdf5plugin
import numpy as np


def bslz4(frame, nelems=0):
    with h5py.File("vectors.h5", "w", driver="core", backing_store=False) as f:
        d = f.create_dataset(
            "d",
            shape=(1,) + frame.shape,
            dtype=frame.dtype,
            chunks=(1,) + frame.shape,
            **hdf5plugin.Bitshuffle(nelems=nelems, cname="lz4"),
        )
        d[0] = frame
        mask, chunk = d.id.read_direct_chunk((0,) * (frame.ndim + 1))
        assert mask == 0
        return bytes(chunk)


def main():
    rng = np.random.default_rng(15)
    cases = [
        ("u16 40x33, default blocks", rng.poisson(3.0, (40, 33)).astype("<u2"), 0),
        ("u16 40x33, 64-element blocks", rng.poisson(300.0, (40, 33)).astype("<u2"), 64),
        ("u32 17x59 (count % 8 = 3)", rng.poisson(50.0, (17, 59)).astype("<u4"), 0),
        ("u8 9x13 (count % 8 = 5)", rng.poisson(1.0, (9, 13)).astype("u1"), 0),
        ("u8 1x5 (no whole block)", np.array([[1, 2, 3, 250, 7]], dtype="u1"), 0),
        ("u16 48x40 full range", rng.integers(0, 65536, (48, 40)).astype("<u2"), 0),
    ]
    out = []
    for what, frame, nelems in cases:
        bits = frame.dtype.itemsize * 8
        out.append(
            {
                "what": what,
                "elem_size": frame.dtype.itemsize,
                "encoding": f"bs{bits}-lz4<",
                "raw": frame.tobytes().hex(),
                "bslz4": bslz4(frame, nelems).hex(),
            }
        )
    json.dump(out, sys.stdout, indent=0)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
