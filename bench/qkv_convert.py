#!/usr/bin/env python3
"""Converts recorded Q/K/V between the formats prescore-bench --data reads
(docs/DATA.md "Other formats"):

  .psqkv               the project's format (layer/head ids, provenance)
  .npy                 one [layers, heads, 3, n, d] array
  Q.npy,K.npy,V.npy    three arrays, one per tensor, [layers, heads, n, d]
  .safetensors         tensors q, k, v of [layers, heads, n, d]; the
                       provenance and ids in "__metadata__"

  qkv_convert.py IN OUT     e.g. qkv_convert.py data/x.psqkv /tmp/x.safetensors

The storage type (float16 or float32) is kept and the values round-trip
exactly. .npy files hold no ids or provenance: read from them, layers and
heads are numbered from 0 and the provenance names the source.
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_qkv import write_psqkv  # noqa: E402  (one PSQKV writer)
from eval_real import read_psqkv  # noqa: E402  (one PSQKV reader)

ST_DTYPES = {"F16": "<f2", "F32": "<f4"}


def kind(path):
    if "," in path:
        return "npy3"
    ext = os.path.splitext(path)[1].lower()
    if ext in (".psqkv", ".npy", ".safetensors"):
        return ext[1:]
    raise ValueError("%s: not .psqkv, .npy, .safetensors or Q.npy,K.npy,V.npy" % path)


def checked(data, src):
    """@data [layers, heads, 3, n, d] float16/float32, finite."""
    if data.ndim != 5 or data.shape[2] != 3:
        raise ValueError("%s: shape %s, expected [layers, heads, 3, n, d]" % (src, data.shape))
    if data.dtype not in (np.dtype("<f2"), np.dtype("<f4")):
        raise ValueError("%s: dtype %s, expected float16 or float32" % (src, data.dtype))
    if not np.all(np.isfinite(data)):
        raise ValueError("%s: holds NaN or infinite values" % src)
    return data


def as_four_axes(a, src):
    if not 2 <= a.ndim <= 4:
        raise ValueError("%s: shape %s, expected [layers, heads, n, d], [heads, n, d] or [n, d]"
                         % (src, a.shape))
    return a.reshape((1,) * (4 - a.ndim) + a.shape)


def read_safetensors(path):
    with open(path, "rb") as f:
        hlen = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        tensors = []
        for name in "qkv":
            t = header[name]
            f.seek(base + t["data_offsets"][0])
            count = int(np.prod(t["shape"]))
            a = np.frombuffer(f.read(t["data_offsets"][1] - t["data_offsets"][0]),
                              dtype=ST_DTYPES[t["dtype"]], count=count).reshape(t["shape"])
            tensors.append(as_four_axes(a, path))
    meta = header.get("__metadata__", {})
    return tensors, meta


def read(src):
    """(data [layers, heads, 3, n, d], layer ids, head ids, provenance)."""
    k = kind(src)
    if k == "psqkv":
        f = read_psqkv(src)
        data = f["data"].astype("<f2" if f["dtype"] == "fp16" else "<f4")  # exact: widened on read
        return data, f["layers"], f["heads"], f["provenance"]
    if k == "npy":
        data = checked(np.load(src, allow_pickle=False), src)
        meta = {}
    else:
        if k == "npy3":
            paths = src.split(",")
            if len(paths) != 3:
                raise ValueError("%s: three .npy paths, q,k,v" % src)
            tensors = [as_four_axes(np.load(p, allow_pickle=False), p) for p in paths]
            meta = {}
        else:
            tensors, meta = read_safetensors(src)
        if len({(t.shape, t.dtype) for t in tensors}) != 1:
            raise ValueError("%s: q, k and v differ in shape or dtype" % src)
        data = checked(np.stack(tensors, axis=2), src)
    ids = [[int(x) for x in meta[key].split(",")] if meta.get(key) else list(range(n))
           for key, n in (("layer_ids", data.shape[0]), ("head_ids", data.shape[1]))]
    prov = meta.get("provenance") or "converted from %s by bench/qkv_convert.py" % \
        os.path.basename(src)
    return data, ids[0], ids[1], prov


def write_safetensors(dst, data, layer_ids, head_ids, prov):
    dtype = "F16" if data.dtype == np.dtype("<f2") else "F32"
    tensors = [np.ascontiguousarray(data[:, :, i]) for i in range(3)]
    header, offset = {}, 0
    for name, t in zip("qkv", tensors):
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    header["__metadata__"] = {"provenance": prov,
                              "layer_ids": ",".join(map(str, layer_ids)),
                              "head_ids": ",".join(map(str, head_ids))}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data 8-byte aligned, as the format advises
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for t in tensors:
            f.write(t.tobytes())


def warn_ids(dst, layer_ids, head_ids):
    """.npy keeps no ids: say so when the source's were not 0, 1, ..."""
    for what, ids in (("layer", layer_ids), ("head", head_ids)):
        if list(ids) != list(range(len(ids))):
            print("qkv_convert.py: %s: .npy holds no %s ids; %s %s become 0..%d (--%s takes "
                  "the new numbers)" % (dst, what, what + "s", list(ids), len(ids) - 1, what),
                  file=sys.stderr)


def write(dst, data, layer_ids, head_ids, prov):
    k = kind(dst)
    if k == "psqkv":
        dtype = "fp16" if data.dtype == np.dtype("<f2") else "fp32"
        write_psqkv(dst, np.ascontiguousarray(data), layer_ids, head_ids, prov, dtype)
    elif k == "npy":
        warn_ids(dst, layer_ids, head_ids)
        np.save(dst, data, allow_pickle=False)
    elif k == "npy3":
        warn_ids(dst, layer_ids, head_ids)
        paths = dst.split(",")
        if len(paths) != 3:
            raise ValueError("%s: three .npy paths, q,k,v" % dst)
        for i, p in enumerate(paths):
            np.save(p, np.ascontiguousarray(data[:, :, i]), allow_pickle=False)
    else:
        write_safetensors(dst, data, layer_ids, head_ids, prov)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1:]
    data, layer_ids, head_ids, prov = read(src)
    write(dst, data, layer_ids, head_ids, prov)
    print("%s -> %s: %s %s" % (src, dst, "x".join(map(str, data.shape)), data.dtype))


if __name__ == "__main__":
    main()
