#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/tiny.gguf with the `gguf` package (PyPI): llama-style
metadata (numbers, strings, a string array), tensors of several ggml types (F32, F16, Q8_0,
Q4_0, Q4_K, Q6_K) quantized by the package itself where it can, and tiny.json: what the
package's own reader makes of the file (metadata and dequantized values), for the Rust
reader's test and as the fuzzer's seed.

    /tmp/gv/bin/python tools/make_gguf_fixture.py
"""

import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize


def random_k_blocks(rng, qtype, shape):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    blocks = rows * cols // block_elems
    raw = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
    for offset in {T.Q4_K: [0, 2], T.Q6_K: [208]}[qtype]:
        scales = rng.uniform(-1.0, 1.0, size=blocks).astype(np.float16)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(blocks, 2)
    return raw.reshape(rows, cols // block_elems * block_bytes)


def main():
    out_dir = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tiny.gguf"
    rng = np.random.default_rng(7)
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_head_count(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab", "<s>"])
    w.add_token_merges(["a b"])
    w.add_bool("tessera.test_flag", True)
    tensors = {
        "f32": (T.F32, rng.uniform(-1, 1, (3, 32)).astype(np.float32)),
        "f16": (T.F16, rng.uniform(-1, 1, (2, 64)).astype(np.float16)),
        "q8_0": (T.Q8_0, rng.uniform(-1, 1, (4, 64)).astype(np.float32)),
        "q4_0": (T.Q4_0, rng.uniform(-1, 1, (2, 32)).astype(np.float32)),
        "q4_k": (T.Q4_K, rng.uniform(-1, 1, (2, 256)).astype(np.float32)),
        "q6_k": (T.Q6_K, rng.uniform(-1, 1, (1, 256)).astype(np.float32)),
    }
    for name, (qtype, values) in tensors.items():
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, values)
        elif qtype in (T.Q4_K, T.Q6_K):
            # The package does not quantize K-quants: random blocks with finite f16 scales.
            w.add_tensor(name, random_k_blocks(rng, qtype, values.shape), raw_dtype=qtype)
        else:
            w.add_tensor(name, quantize(values, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    reader = GGUFReader(str(path))
    expected = {"tensors": {}}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).reshape(-1)
        expected["tensors"][t.name] = {
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "values": [float(v) for v in values],
        }
    expected["block_count"] = 2
    expected["tokens"] = ["a", "b", "ab", "<s>"]
    (out_dir / "tiny.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes) and tiny.json")


if __name__ == "__main__":
    main()
