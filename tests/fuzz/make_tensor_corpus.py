#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_tensor_file.c into
tests/fuzz/tensor_corpus/: one valid input per format and mode (its first
byte is the harness's mode: 0 whole file, 1 safetensors header, 2 .npy
dict) and a few near misses. Run from anywhere; overwrites the seeds."""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensor_corpus")


def psqkv(layers=1, heads=2, n=4, d=4):
    prov = b"fuzz seed"
    size = (40 + 4 * (layers + heads) + len(prov) + 63) // 64 * 64
    head = b"PSQKV\0\0\0" + struct.pack("<8I", 1, size, 2, layers, heads, n, d, len(prov))
    head += struct.pack("<%dI" % (layers + heads), *range(layers), *range(heads)) + prov
    values = struct.pack("<%df" % (layers * heads * 3 * n * d),
                         *(((i * 7) % 13) / 8 for i in range(layers * heads * 3 * n * d)))
    return head.ljust(size, b"\0") + values


def npy(shape, descr="<f4"):
    dict_ = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % x for x in shape))
    pad = (10 + len(dict_) + 1 + 63) // 64 * 64 - 10
    count = 1
    for x in shape:
        count *= x
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", pad) + dict_.ljust(pad - 1).encode() +
            b"\n" + b"\0" * (count * (2 if descr == "<f2" else 4)))


def st_header(shape, dtype="F32", meta=None):
    size = 1
    for x in shape:
        size *= x
    size *= 2 if dtype == "F16" else 4
    h = {name: {"dtype": dtype, "shape": shape, "data_offsets": [i * size, (i + 1) * size]}
         for i, name in enumerate("qkv")}
    if meta:
        h["__metadata__"] = meta
    return json.dumps(h).encode()


SEEDS = {
    "psqkv": b"\0" + psqkv(),
    "npy-whole": b"\0" + npy((1, 2, 3, 4, 4)),
    "npy-dict-f16": b"\2" + b"{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1, 3, 32, 16), }",
    "npy-dict-rank4": b"\2" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 4), }",
    "st-f32": b"\1" + st_header([2, 4, 16]),
    "st-f16-meta": b"\1" + st_header([16, 16], "F16", {"model": "seed \\u00e9", "n": "16"}),
    "st-rank5": b"\1" + st_header([1, 1, 1, 4, 4]),
    "st-nested": b"\1" + b'{"q": [[[[[[[[[[[1]]]]]]]]]]], "k": {"a": "\\ud800"}}',
    "st-whole": b"\0" + struct.pack("<Q", len(st_header([4, 4]))) + st_header([4, 4]) +
                b"\0" * 192,
    "garbage": b"\0" + bytes(range(256)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
