#!/usr/bin/env python3
"""Write the decoder's golden fixtures into tests/fixtures/: tiny random-weight checkpoints
in the Hugging Face layout, and what transformers computes for them.

Each fixture directory holds config.json, the safetensors weights (one file or sharded with
an index), and expected.safetensors with
  - "prompt":  i64 [P]       the prompt token ids
  - "tokens":  i64 [24]      greedy continuation (EOS not honoured)
  - "logits":  f32 [24, V]   row i = the logits that chose tokens[i]
computed in float32 with eager attention. Weights are drawn with a large standard deviation
and the seed is advanced until every greedy choice wins by a clear margin, so that the
comparison is not at the mercy of a near tie.

    python3 tools/make_fixtures.py            # needs torch, transformers, safetensors
"""

import json
import pathlib
import shutil

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
STEPS = 24
PROMPT = [3, 17, 42, 99, 5, 200, 33]
MIN_MARGIN = 0.05

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              max_position_embeddings=128, rms_norm_eps=1e-5, initializer_range=0.2,
              bos_token_id=1, eos_token_id=2)

FIXTURES = {
    # Grouped-query attention, untied embeddings, f32, transformers 4.x config layout.
    "llama_gqa": dict(cls=(LlamaConfig, LlamaForCausalLM), layout4=True, dtype=torch.float32,
                      cfg=dict(num_attention_heads=4, num_key_value_heads=2)),
    # Multi-query attention, tied embeddings, bf16 weights, head_dim given explicitly.
    "llama_mqa_tied_bf16": dict(cls=(LlamaConfig, LlamaForCausalLM), dtype=torch.bfloat16,
                                cfg=dict(num_attention_heads=4, num_key_value_heads=1,
                                         head_dim=16, tie_word_embeddings=True)),
    # Llama 3 rope scaling in the transformers 5.x layout, sharded weights.
    "llama3_sharded": dict(cls=(LlamaConfig, LlamaForCausalLM), dtype=torch.float32,
                           shard="40KB",
                           cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                    rope_parameters=dict(rope_type="llama3", rope_theta=500000.0,
                                                         factor=8.0, low_freq_factor=1.0,
                                                         high_freq_factor=4.0,
                                                         original_max_position_embeddings=16))),
    # Qwen2: biases on q, k and v; tied embeddings.
    "qwen2_bias": dict(cls=(Qwen2Config, Qwen2ForCausalLM), dtype=torch.float32,
                       cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                tie_word_embeddings=True)),
    # Mistral, linear rope scaling via the 4.x layout.
    "mistral_linear": dict(cls=(MistralConfig, MistralForCausalLM), layout4=True,
                           dtype=torch.float16,
                           cfg=dict(num_attention_heads=4, num_key_value_heads=4,
                                    sliding_window=None,
                                    rope_parameters=dict(rope_type="linear", rope_theta=10000.0,
                                                         factor=2.0))),
}


def greedy(model, prompt):
    """Greedy tokens and the logits that chose them, one forward pass per step."""
    ids = torch.tensor([prompt])
    tokens, rows = [], []
    with torch.no_grad():
        for _ in range(STEPS):
            logits = model(ids).logits[0, -1].float()
            token = int(torch.argmax(logits))
            tokens.append(token)
            rows.append(logits)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokens, torch.stack(rows)


def margin(rows):
    top2 = torch.topk(rows, 2, dim=1).values
    return float((top2[:, 0] - top2[:, 1]).min())


def to_layout4(directory):
    """Rewrite a transformers 5.x config.json the way 4.x wrote it."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    params = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = params.pop("rope_theta", 10000.0)
    kind = params.get("rope_type", "default")
    config["rope_scaling"] = None if kind == "default" else params
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def make(name, spec):
    config_cls, model_cls = spec["cls"]
    for seed in range(100):
        torch.manual_seed(seed)
        config = config_cls(**COMMON, **spec["cfg"])
        config._attn_implementation = "eager"
        model = model_cls(config).eval()
        # The stored precision is what the checkpoint holds; the reference runs in f32 on
        # exactly those values. Only parameters are rounded: `model.to(dtype)` would also
        # round buffers such as the rotary inv_freq, which are not stored in the checkpoint.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(spec["dtype"]).to(torch.float32))
        tokens, rows = greedy(model, PROMPT)
        if margin(rows) >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: no seed gives greedy margins of {MIN_MARGIN}")
    directory = OUT / name
    shutil.rmtree(directory, ignore_errors=True)
    model.to(spec["dtype"]).save_pretrained(
        directory, safe_serialization=True, max_shard_size=spec.get("shard", "10GB"))
    if spec.get("layout4"):
        to_layout4(directory)
    for extra in ["generation_config.json"]:
        (directory / extra).unlink(missing_ok=True)
    save_file({"prompt": torch.tensor(PROMPT, dtype=torch.int64),
               "tokens": torch.tensor(tokens, dtype=torch.int64),
               "logits": rows.contiguous()},
              str(directory / "expected.safetensors"))
    print(f"{name}: seed {seed}, margin {margin(rows):.3f}, tokens {tokens[:8]}...")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in FIXTURES.items():
        make(name, spec)
