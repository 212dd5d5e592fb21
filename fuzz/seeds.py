#!/usr/bin/env python3
"""Writes the hand-made seed inputs into corpus/<target>/seeds/ (run from fuzz/).

Headers follow the layout real Merlin firmware and ptyflow's simulator write; the EMPAD xml
follows the 0.51 and 1.2.x layouts; nothing is copied from the GPL test files in
../shared/realdata. The rest of each corpus is what the fuzzer found, minimised.
"""
import json
import os
import random
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target, "seeds")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def mib_header(seq, w, h, dt="U16", hs=384, chips=1, layout="   1x1", depth=12, tail=True):
    th = ",".join(["1.200000E+2", "5.110000E+2"] + ["0.000000E+0"] * 6)
    dacs = "3RX,011,511,000,000,000,000,000,000,175,010,200,125,100,100,093,100,099,030,128,004,255,140,128,191,179,511,511"
    t = f"MQ1,{seq:06},{hs:05},{chips:02},{w:04},{h:04},{dt},{layout},01,2024-11-20 12:00:00.000000,0.001000,0,0,0,"
    if tail:
        t += f"{th},{dacs},"
    t += f"MQ1A,2024-11-20T12:00:00.000000000Z,1000000ns,{depth},"
    b = t.encode()[:hs]
    return b + b"\0" * (hs - len(b))


put("mib_header", "u16_1x1", mib_header(1, 256, 256))
put("mib_header", "u08_1x1", mib_header(1, 256, 256, "U08", depth=6))
put("mib_header", "u32_quad", mib_header(1, 512, 512, "U32", hs=768, chips=4, layout="   2x2", depth=24))
put("mib_header", "r64_1bit_1x1", mib_header(1, 256, 256, "R64", depth=1, tail=False))
put("mib_header", "r64_12bit_quad", mib_header(1, 1024, 256, "R64", hs=768, chips=4, layout="   2x2", depth=12))
put("mib_header", "bad_magic", b"MQ2,000001,00384,01,0256,0256,U16," + b"\0" * 64)

hdr_lines = [
    "HDR,\t",
    "Time and Date Stamp (day, mnth, yr, hr, min, s):\t20/11/2024 12:00:00",
    "Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX):\tMedipix 3RX",
    "Assembly Size (NX1, 2X2):\t   1x1",
    "Counter Depth (number):\t12",
    "Acquisition Type (Normal, Th_scan, Config):\tNormal",
    "Frames in Acquisition (Number):\t16384",
    "Frames per Trigger (Number):\t128",
    "End\t",
]
put("mib_hdr", "full", "\n".join(hdr_lines) + "\0" * 200)
put("mib_hdr", "frames_only", "Frames in Acquisition (Number):\t9\n")
put("mib_hdr", "no_count", "HDR,\nCounter Depth (number):\t6\nEnd\n")

put("empad_xml", "v051_pix_and_acquire",
    '<?xml version="1.0"?>\n<root>\n <raw_file filename="scan_x4_y4.raw"/>\n <pix_x>4</pix_x>\n'
    ' <pix_y>4</pix_y>\n <scan_parameters mode="acquire">\n  <scan_resolution_x>128</scan_resolution_x>\n'
    '  <scan_resolution_y>128</scan_resolution_y>\n </scan_parameters>\n <scan_parameters mode="search">\n'
    '  <scan_resolution_x>64</scan_resolution_x>\n  <scan_resolution_y>64</scan_resolution_y>\n'
    ' </scan_parameters>\n</root>\n')
put("empad_xml", "v122_name_only",
    '<root><raw_file filename="scan_x32_y64.raw" /><scan_parameters mode="acquire">'
    '<scan_resolution_x>32</scan_resolution_x><scan_resolution_y>64</scan_resolution_y>'
    '</scan_parameters></root>')
put("empad_xml", "file_name", "scan_x256_y256.raw")

with open(os.path.join(ROOT, "..", "..", "fixtures", "mos2-defocus", "scan.raw.json")) as f:
    put("raw_sidecar", "simulator", json.dumps(json.load(f), indent=2))
put("raw_sidecar", "minimal", '{"width":64,"height":32,"dtype":"f32"}')
put("raw_sidecar", "big_endian_headers",
    '{"format":"raw","width":128,"height":130,"dtype":"i32","byte_order":"big","header_bytes":4096,'
    '"frame_header_bytes":16,"frame_footer_bytes":8,"frames":10,"scan":[2,5],"extra":{"x":[1,2]}}')

for i, s in enumerate(["bf", "dpc", "com", "adf:20:60", "rings:4:10:80", " adf : 0.5 : 1e2 ", "rings:256:0:1"]):
    put("virtual_spec", f"spec{i}", s)
for i, s in enumerate(["16G", "500M", "16GiB", "50%", "unlimited", "1e9", "2.5tb", "0.5 kib"]):
    put("parse_size", f"size{i}", s)

# dump_file: first byte even -> .mib; odd -> raw: u16 LE sidecar length, sidecar, data.
random.seed(1)
mib = b"".join(mib_header(s, 16, 16) + bytes(random.randrange(256) for _ in range(16 * 16 * 2)) for s in range(1, 4))
put("dump_file", "mib_u16_3frames", b"\0" + mib)
put("dump_file", "mib_u08_2frames", b"\0" + b"".join(mib_header(s, 8, 8, "U08", depth=6) + bytes(range(64)) for s in (1, 2)))
put("dump_file", "mib_r64_1bit", b"\0" + mib_header(1, 64, 64, "R64", depth=1, tail=False) + bytes(64 * 64 // 8))


def raw(name, sidecar, data):
    sc = json.dumps(sidecar).encode()
    put("dump_file", name, b"\1" + struct.pack("<H", len(sc)) + sc + data)


raw("raw_u16_le", {"width": 8, "height": 4, "dtype": "u16", "frames": 2, "scan": [1, 2]}, bytes(range(128)))
raw("raw_i32_be_headers", {"width": 4, "height": 4, "dtype": "i32", "byte_order": "big", "header_bytes": 3,
                           "frame_header_bytes": 1, "frame_footer_bytes": 2}, bytes(3 + 2 * (1 + 64 + 2)))
raw("raw_f32", {"width": 4, "height": 2, "dtype": "f32"}, struct.pack("<8f", *range(8)))


# npy_header: the .npy layout numpy's np.save writes (magic, version, header length, dict
# literal padded with spaces to a multiple of 64 bytes, newline), then the array's bytes.
def npy(descr, fortran, shape, item, major=1, pad=True):
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, repr(tuple(shape)))
    pre = 10 if major == 1 else 12
    if pad:
        d += " " * (63 - (pre + len(d)) % 64)
    d += "\n"
    n = 1
    for s in shape:
        n *= s
    head = b"\x93NUMPY" + bytes([major, 0]) + (struct.pack("<H", len(d)) if major == 1 else struct.pack("<I", len(d)))
    return head + d.encode() + bytes(random.randrange(256) for _ in range(n * item))


put("npy_header", "u2_c_4d", npy("<u2", False, (2, 3, 4, 4), 2))
put("npy_header", "u1_f_4d", npy("|u1", True, (3, 2, 2, 5), 1))
put("npy_header", "f4_be_f_3d", npy(">f4", True, (4, 3, 3), 4, major=2))
put("npy_header", "u4_c_3d_v3", npy("<u4", False, (2, 2, 2), 4, major=3, pad=False))
put("npy_header", "i4_c_4d", npy("<i4", False, (1, 1, 2, 2), 4))
put("npy_header", "bad_dtype", npy("<f8", False, (1, 1, 2, 2), 8))
put("npy_header", "short", npy("<u2", False, (2, 2, 2, 2), 2)[:-3])


# merlin_stream: the data port's framing, `MPX,<10-digit length>,` before each message
# (length = payload + 1 for the trailing comma), an acquisition header, then MQ1 frames.
def mpx(payload):
    return b"MPX,%010d," % (len(payload) + 1) + payload


def mq1_frame(seq, w, h, dt="U08", depth=6):
    item = {"U08": 1, "U16": 2, "U32": 4}[dt]
    return mib_header(seq, w, h, dt, depth=depth) + bytes(random.randrange(256) for _ in range(w * h * item))


acq = ("\n".join(hdr_lines) + "\0" * 16).encode()
put("merlin_stream", "hdr_two_u08", mpx(acq) + mpx(mq1_frame(1, 4, 4)) + mpx(mq1_frame(2, 4, 4)))
put("merlin_stream", "u16_no_hdr", mpx(mq1_frame(1, 8, 2, "U16", 12)) + mpx(mq1_frame(2, 8, 2, "U16", 12)))
put("merlin_stream", "torn", (mpx(acq) + mpx(mq1_frame(1, 4, 4)))[:-5])
put("merlin_stream", "bad_prefix", b"MPX,00000x0010,HDR,abc")


# bslz4: byte 0 picks element size (b % 3 -> 1, 2, 4 bytes) and encoding (b // 3 % 7 ->
# bs8/bs16/bs32-lz4<, lz4<, <, >, bs16-lz4>), bytes 1-2 the element count (LE), then the blob.
# Containers below are made by hand from the bitshuffle layout (12-byte header: BE u64 total
# bytes, BE u32 block bytes; per block BE u32 length + LZ4 block); the real encoder's blobs are
# in tests/peers/bslz4_vectors.json.
def lz4_literals(data):
    # An LZ4 block of one literals-only sequence (valid for data of any length).
    n = len(data)
    if n < 15:
        return bytes([n << 4]) + data
    rest, ext = n - 15, b""
    while rest >= 255:
        ext += b"\xff"
        rest -= 255
    return bytes([0xF0]) + ext + bytes([rest]) + data


put("bslz4", "raw_u16", bytes([1 + 3 * 4]) + struct.pack("<H", 4) + bytes(range(8)))
put("bslz4", "lz4_u8", bytes([0 + 3 * 3]) + struct.pack("<H", 10) + lz4_literals(bytes(range(10))))
zeros = bytes(16)
put("bslz4", "bs16_zeros", bytes([1 + 3 * 1]) + struct.pack("<H", 8) + struct.pack(">QI", 16, 16)
    + struct.pack(">I", len(lz4_literals(zeros))) + lz4_literals(zeros))
put("bslz4", "bs8_tail", bytes([0]) + struct.pack("<H", 11) + struct.pack(">QI", 11, 8)
    + struct.pack(">I", len(lz4_literals(bytes(8)))) + lz4_literals(bytes(8)) + b"abc")
put("bslz4", "truncated", bytes([1 + 3 * 1]) + struct.pack("<H", 8) + struct.pack(">QI", 16, 16) + b"\x00\x00")
