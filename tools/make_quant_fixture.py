#!/usr/bin/env python3
"""Writes tests/fixtures/quant/blocks.json: for each ggml block type tessera reads, a few
blocks of random bytes (with finite, moderate f16 scales) and what the `gguf` package's
reference dequantizer (gguf.quants.dequantize, from PyPI) makes of them; and under "quantize",
f32 values with the blocks the package's quantizer (bit-exact with ggml's reference) makes of
them, for the types tessera quantizes that way (Q8_0, Q4_0). The Rust dequantization and
quantization are checked against this file.

    python3 -m venv /tmp/gv && /tmp/gv/bin/pip install gguf numpy
    /tmp/gv/bin/python tools/make_quant_fixture.py
"""

import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

# Byte offsets of the f16 scale fields in each block, set to finite values in [-1, 1]
# (random bytes would often be inf or NaN, which says nothing about the layout).
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}
BLOCKS = 3


def main():
    rng = np.random.default_rng(20261201)
    out = {}
    for qtype, fields in F16_FIELDS.items():
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS, block_bytes), dtype=np.uint8)
        for offset in fields:
            scales = rng.uniform(-1.0, 1.0, size=BLOCKS).astype(np.float16)
            raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(BLOCKS, 2)
        values = dequantize(raw.reshape(-1), qtype).reshape(-1)
        assert values.size == BLOCKS * block_elems and np.isfinite(values).all()
        out[qtype.name] = {
            "bytes": raw.reshape(-1).tobytes().hex(),
            "values": [float(v) for v in values],
        }
    # Quantizer cases: normal values, a zero block, a block of exact halves (rounding ties).
    qrng = np.random.default_rng(20261202)
    values = qrng.normal(0.0, 0.5, size=(6, 32)).astype(np.float32)
    values[1] = 0.0
    values[2] = (np.arange(32, dtype=np.float32) - 16) * 0.5
    out["quantize"] = {}
    for qtype in (T.Q8_0, T.Q4_0):
        blocks = quantize(values, qtype)
        out["quantize"][qtype.name] = {
            "values": [float(v) for v in values.reshape(-1)],
            "bytes": blocks.reshape(-1).tobytes().hex(),
        }
    path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/quant/blocks.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=0) + "\n")
    print(f"wrote {path} ({', '.join(out)})")


if __name__ == "__main__":
    main()
