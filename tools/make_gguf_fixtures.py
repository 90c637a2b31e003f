#!/usr/bin/env python3
"""GGUF decoder fixtures: tiny random Llama and Qwen2 checkpoints written as GGUF files the
way llama.cpp's converter writes them (q/k rows permuted for llama; Q8_0, Q4_0 and F32
weights, quantized by the `gguf` package), and what transformers computes for those very files
(it reads GGUF, dequantizing): 24 greedy tokens and their logits. Files go to
tests/fixtures/gguf/: NAME.gguf and NAME.expected.safetensors (prompt, tokens, logits as in
tools/make_fixtures.py).

    /tmp/gv/bin/pip install gguf numpy torch transformers safetensors
    /tmp/gv/bin/python tools/make_gguf_fixtures.py
"""

import pathlib

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.quants import quantize
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

# The same prompt, greedy loop and margin rule as the safetensors fixtures.
from make_fixtures import MIN_MARGIN, PROMPT, greedy, margin

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gguf"
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              max_position_embeddings=128, rms_norm_eps=1e-5, initializer_range=0.2,
              bos_token_id=1, eos_token_id=2, num_attention_heads=4, num_key_value_heads=2)

FIXTURES = {
    "llama_f32": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.F32, cfg={}),
    "llama_q8_0": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q8_0,
                       cfg=dict(tie_word_embeddings=True)),
    "qwen2_q4_0": dict(arch="qwen2", cls=(Qwen2Config, Qwen2ForCausalLM), weights=T.Q4_0,
                       cfg=dict(tie_word_embeddings=False)),
}


def permute(w, n_head):
    """llama.cpp's converter: each head's rows reordered for GGML's pairwise RoPE."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path, spec, config, state):
    arch = spec["arch"]
    w = GGUFWriter(str(path), arch)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_freq_base(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"])
    w.add_vocab_size(config.vocab_size)
    w.add_bos_token_id(config.bos_token_id)
    w.add_eos_token_id(config.eos_token_id)
    w.add_file_type(1)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
             "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
             "self_attn.v_proj.bias": "attn_v.bias", "mlp.gate_proj.weight": "ffn_gate.weight",
             "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    for name, tensor in state.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers."):].split(".", 1)
            gguf_name = f"blk.{i}.{layer[rest]}"
        else:
            gguf_name = names[name]
        data = tensor.float().numpy()
        if arch == "llama" and rest_of(name) in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
            data = permute(data, heads if "q_proj" in name else kv_heads)
        if data.ndim == 2 and spec["weights"] != T.F32:
            w.add_tensor(gguf_name, quantize(data, spec["weights"]), raw_dtype=spec["weights"])
        else:
            w.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rest_of(name):
    return name.split(".", 3)[3] if name.startswith("model.layers.") else name


def make(name, spec):
    config_cls, model_cls = spec["cls"]
    path = OUT / f"{name}.gguf"
    for seed in range(100):
        torch.manual_seed(seed)
        config = config_cls(**COMMON, **spec["cfg"])
        model = model_cls(config).eval()
        write_gguf(path, spec, config, model.state_dict())
        # The reference: transformers reading this very file.
        ref = AutoModelForCausalLM.from_pretrained(str(OUT), gguf_file=path.name,
                                                   dtype=torch.float32,
                                                   attn_implementation="eager").eval()
        tokens, rows = greedy(ref, PROMPT)
        if margin(rows) >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: no seed gives greedy margins of {MIN_MARGIN}")
    save_file({"prompt": torch.tensor(PROMPT, dtype=torch.int64),
               "tokens": torch.tensor(tokens, dtype=torch.int64),
               "logits": rows.contiguous()},
              str(OUT / f"{name}.expected.safetensors"))
    print(f"{name}: seed {seed}, margin {margin(rows):.3f}, {path.stat().st_size} bytes, "
          f"tokens {tokens[:8]}...")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in FIXTURES.items():
        make(name, spec)


if __name__ == "__main__":
    main()
