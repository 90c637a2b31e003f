#!/usr/bin/env python3
"""GGUF decoder fixtures: tiny random Llama and Qwen2 checkpoints written as GGUF files the
way llama.cpp's converter writes them (q/k rows permuted for llama; F32 and every block type
tessera reads: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 quantized by the `gguf` package, Q4_K, Q5_K and
Q6_K by the small quantizers below, which the package lacks; one file mixes types the way a
Q4_K_M file does), some with a tokenizer in the metadata (byte-level BPE with the llama-bpe
and qwen2 pre-tokenizers, SentencePiece-style scores), and what transformers computes for
those very files (it reads GGUF, dequantizing): 24 greedy tokens and their logits. Files go
to tests/fixtures/gguf/: NAME.gguf and NAME.expected.safetensors (prompt, tokens, logits as
in tools/make_fixtures.py); for a file with a tokenizer, the prompt is PROMPT_TEXT as
transformers' GGUF tokenizer encodes it, and NAME.tokenizer.json holds more texts with its
ids and decodings.

    /tmp/gv/bin/pip install gguf numpy torch transformers safetensors
    /tmp/gv/bin/python tools/make_gguf_fixtures.py
"""

import json
import pathlib

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM, Gemma2Config, Gemma2ForCausalLM,
                          Gemma3ForCausalLM, Gemma3TextConfig, Phi3Config, Phi3ForCausalLM)

# The same prompt, greedy loop and margin rule as the safetensors fixtures.
from make_fixtures import MIN_MARGIN, PROMPT, greedy, margin

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gguf"
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              max_position_embeddings=128, rms_norm_eps=1e-5, initializer_range=0.2,
              bos_token_id=1, eos_token_id=2, num_attention_heads=4, num_key_value_heads=2)

# Block types by tensor: `weights` for every 2-D tensor, unless `types` names the tensor's
# GGUF suffix (a Q4_K_M-like mix keeps v, down and the output in Q6_K).
WIDE = dict(hidden_size=256, intermediate_size=512, vocab_size=384)
FIXTURES = {
    "llama_f32": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.F32, cfg={}),
    "llama_q8_0": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q8_0,
                       cfg=dict(tie_word_embeddings=True)),
    "qwen2_q4_0": dict(arch="qwen2", cls=(Qwen2Config, Qwen2ForCausalLM), weights=T.Q4_0,
                       cfg=dict(tie_word_embeddings=False)),
    "llama_bpe_q4_1": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q4_1,
                           cfg=dict(vocab_size=384, tie_word_embeddings=False), tokenizer="llama-bpe"),
    "llama_spm_q5_0": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q5_0,
                           cfg=dict(vocab_size=384, tie_word_embeddings=True), tokenizer="spm"),
    "qwen2_bpe_q5_1": dict(arch="qwen2", cls=(Qwen2Config, Qwen2ForCausalLM), weights=T.Q5_1,
                           cfg=dict(vocab_size=384, tie_word_embeddings=False), tokenizer="qwen2"),
    "llama_q5_k": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q5_K,
                       cfg=dict(WIDE, tie_word_embeddings=False), tokenizer="spm"),
    # One layer of rows of 256: the smallest decoder whose every weight is whole K-blocks.
    "llama_q4_k": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q4_K,
                       cfg=dict(WIDE, intermediate_size=256, num_hidden_layers=1,
                                tie_word_embeddings=False)),
    "llama_q6_k": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q6_K,
                       cfg=dict(WIDE, intermediate_size=256, num_hidden_layers=1,
                                tie_word_embeddings=True)),
    # Qwen3 (q/k head norms, drawn rather than 1) in Q8_0, with a qwen2-style tokenizer.
    # head_dim 128 as every released Qwen3 has: transformers' GGUF loader does not read
    # qwen3.attention.key_length and takes Qwen3Config's default, 128.
    "qwen3_q8_0": dict(arch="qwen3", cls=(Qwen3Config, Qwen3ForCausalLM), weights=T.Q8_0,
                       cfg=dict(vocab_size=384, head_dim=128, tie_word_embeddings=True),
                       random_norms=True, tokenizer="qwen2"),
    # Qwen3-MoE as llama.cpp writes it (qwen3moe: stacked expert tensors), Q8_0. Experts of
    # 768 as transformers' GGUF loader assumes (it does not read expert_feed_forward_length).
    "qwen3moe_q8_0": dict(arch="qwen3moe", cls=(Qwen3MoeConfig, Qwen3MoeForCausalLM),
                          weights=T.Q8_0, random_norms=True,
                          cfg=dict(head_dim=128, num_experts=4, num_experts_per_tok=2,
                                   moe_intermediate_size=768, norm_topk_prob=True,
                                   tie_word_embeddings=False)),
    # Gemma 2 and 3 as llama.cpp writes them: norms stored as 1 + w, Gemma's norm names, the
    # window and (Gemma 2) the caps in the metadata. head_dim 256 and the caps 50 / 30 are what
    # transformers' GGUF loader assumes (it reads neither query_pre_attn_scalar nor the caps).
    "gemma2_q8_0": dict(arch="gemma2", cls=(Gemma2Config, Gemma2ForCausalLM), weights=T.Q8_0,
                        random_norms=True, norm_mean=0.0,
                        cfg=dict(head_dim=256, num_attention_heads=2, num_key_value_heads=1,
                                 query_pre_attn_scalar=256, sliding_window=512,
                                 attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                 pad_token_id=0, tie_word_embeddings=True,
                                 initializer_range=0.05),
                        min_margin=0.01),
    "gemma3_q8_0": dict(arch="gemma3", cls=(Gemma3TextConfig, Gemma3ForCausalLM),
                        weights=T.Q8_0, random_norms=True, norm_mean=0.0,
                        cfg=dict(head_dim=256, num_attention_heads=2, num_key_value_heads=1,
                                 query_pre_attn_scalar=256, sliding_window=512,
                                 pad_token_id=0, tie_word_embeddings=True,
                                 initializer_range=0.05),
                        min_margin=0.01),
    # Phi-3 as llama.cpp writes it: q, k, v fused in attn_qkv and gate, up in ffn_up. No
    # rope scaling (Phi-3-mini-4k's): transformers' GGUF loader does not read longrope.
    "phi3_q8_0": dict(arch="phi3", cls=(Phi3Config, Phi3ForCausalLM), weights=T.Q8_0,
                      random_norms=True,
                      cfg=dict(pad_token_id=0, sliding_window=None, tie_word_embeddings=False)),
    "llama_q4_k_m": dict(arch="llama", cls=(LlamaConfig, LlamaForCausalLM), weights=T.Q4_K,
                         types={"attn_v.weight": T.Q6_K, "ffn_down.weight": T.Q6_K,
                                "output.weight": T.Q6_K},
                         cfg=dict(WIDE, tie_word_embeddings=False), tokenizer="llama-bpe"),
}

PROMPT_TEXT = "The quick brown fox jumps over 12 lazy dogs."
# Text the tokenizers learn from, and more texts the tokenizer fixtures compare on.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump!",
    "In 1969, 3 astronauts flew 384400 km to the Moon and back again.",
    "def main():\n    print('hello, world')\n    return 42\n",
    "Les élèves étudient à l'école. Über den Wolken — naïve café, 東京 and Zürich.",
    "It's what they'll say: we're here, you've seen it, I'm sure, he'd know.",
]
TEXTS = [
    PROMPT_TEXT,
    "",
    " leading space and  two  spaces",
    "Numbers: 1234567 and 3.14159; code: x += 1\n\tdone",
    "naïve café, 東京 — Zürich! 🦊",
    "line one\nline two\r\n\n  indented",
    "They'll say it's fine, WE'RE sure.",
]


def train_tokenizer(kind):
    """A small trained vocabulary, as a GGUF writer stores it: (model, pre, tokens, scores or
    merges, token types, special ids, add_bos)."""
    if kind == "spm":
        # SentencePiece-style: <unk>, <s>, </s>, the 256 byte tokens, then learned pieces
        # ("\u2581" for a space) scored by the order they were learned in.
        tok = Tokenizer(models.BPE(byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        trainer = trainers.BpeTrainer(vocab_size=2000, show_progress=False)
        tok.train_from_iterator(CORPUS, trainer)
        learned = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        pieces = [t for t, _ in learned][: 384 - 259]
        tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
        types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
        scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
        return dict(model="llama", pre="default", tokens=tokens, scores=scores, types=types,
                    bos=1, eos=2, add_bos=True)
    # Byte-level BPE: specials first, then the byte alphabet and the merges.
    specials = (["<|begin_of_text|>", "<|end_of_text|>"] if kind == "llama-bpe"
                else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    assert len(tokens) == 384, len(tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [3 if t in specials else 1 for t in tokens]
    if kind == "llama-bpe":
        return dict(model="gpt2", pre="llama-bpe", tokens=tokens, merges=merges, types=types,
                    bos=0, eos=1, add_bos=True)
    return dict(model="gpt2", pre="qwen2", tokens=tokens, merges=merges, types=types,
                bos=0, eos=0, add_bos=False, chat_template=CHATML)


# Qwen's ChatML template (shortened): tests/serve.rs reads it back from the metadata.
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def add_tokenizer(w, t):
    w.add_tokenizer_model(t["model"])
    w.add_tokenizer_pre(t["pre"])
    w.add_token_list(t["tokens"])
    w.add_token_types(t["types"])
    if "scores" in t:
        w.add_token_scores(t["scores"])
    if "merges" in t:
        w.add_token_merges(t["merges"])
    w.add_bos_token_id(t["bos"])
    w.add_eos_token_id(t["eos"])
    w.add_add_bos_token(t["add_bos"])
    if "chat_template" in t:
        w.add_chat_template(t["chat_template"])


def _f16(x):
    return np.asarray(x, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def _scale_bytes_k4(sc, m):
    """ggml's 12-byte packing of eight 6-bit scales and minimums per block ([blocks, 8] each)."""
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    for j in range(4):
        out[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        out[:, j + 4] = (m[:, j] & 63) | ((m[:, j + 4] >> 4) << 6)
        out[:, j + 8] = (sc[:, j + 4] & 15) | ((m[:, j + 4] & 15) << 4)
    return out


def quantize_k(data, t):
    """Q4_K / Q5_K / Q6_K blocks of `data` ([rows, cols], cols a multiple of 256): a plain
    min/max quantizer (not llama.cpp's search), packed as ggml packs them."""
    rows, cols = data.shape
    x = data.astype(np.float32).reshape(-1, 256)
    if t == T.Q6_K:
        sub = x.reshape(-1, 16, 16)
        amax = np.abs(sub).max(axis=2)
        d = np.maximum(amax.max(axis=1) / 32 / 127, 1e-12)
        sc = np.clip(np.round(amax / 32 / d[:, None]), 1, 127).astype(np.int8)
        step = (d[:, None] * sc).astype(np.float32)
        q = np.clip(np.round(sub / step[:, :, None]) + 32, 0, 63).astype(np.uint8).reshape(-1, 2, 4, 32)
        ql = np.zeros((x.shape[0], 2, 64), dtype=np.uint8)
        ql[:, :, :32] = (q[:, :, 0] & 15) | ((q[:, :, 2] & 15) << 4)
        ql[:, :, 32:] = (q[:, :, 1] & 15) | ((q[:, :, 3] & 15) << 4)
        qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6)
        blocks = np.concatenate([ql.reshape(-1, 128), qh.reshape(-1, 64), sc.view(np.uint8),
                                 _f16(d)], axis=1)
    else:
        levels = 15 if t == T.Q4_K else 31
        sub = x.reshape(-1, 8, 32)
        lo = np.minimum(sub.min(axis=2), 0)
        scale = (sub.max(axis=2) - lo) / levels
        d = np.maximum(scale.max(axis=1) / 63, 1e-12)
        dmin = np.maximum(-lo.min(axis=1) / 63, 1e-12)
        sc = np.clip(np.round(scale / d[:, None]), 1, 63).astype(np.uint8)
        m = np.clip(np.round(-lo / dmin[:, None]), 0, 63).astype(np.uint8)
        d16, dmin16 = d.astype(np.float16).astype(np.float32), dmin.astype(np.float16).astype(np.float32)
        step = d16[:, None] * sc
        offset = dmin16[:, None] * m
        q = np.clip(np.round((sub + offset[:, :, None]) / step[:, :, None]), 0, levels).astype(np.uint8)
        q = q.reshape(-1, 4, 2, 32)
        qs = ((q[:, :, 0] & 15) | ((q[:, :, 1] & 15) << 4)).reshape(-1, 128)
        head = [_f16(d), _f16(dmin), _scale_bytes_k4(sc, m)]
        if t == T.Q5_K:
            qh = np.zeros((x.shape[0], 32), dtype=np.uint8)
            for j in range(4):
                qh |= ((q[:, j, 0] >> 4) << (2 * j)) | ((q[:, j, 1] >> 4) << (2 * j + 1))
            head.append(qh)
        blocks = np.concatenate(head + [qs], axis=1)
    out = blocks.reshape(rows, -1)
    # The package's dequantizer reads them back close to the data (a packing check).
    back = dequantize(out, t)
    assert np.abs(back - data).max() <= 0.2 * np.abs(data).max() + 1e-6, t
    return out


def quantize_as(data, t):
    if t in (T.Q4_K, T.Q5_K, T.Q6_K):
        return quantize_k(data, t)
    return quantize(data, t)


def permute(w, n_head):
    """llama.cpp's converter: each head's rows reordered for GGML's pairwise RoPE."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(config):
    """llama.cpp's converter: Llama 3's rotary scaling as per-frequency divisors."""
    rope = config.rope_parameters
    base, dim = rope["rope_theta"], config.head_dim
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    factors = []
    for freq in 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim):
        wavelen = 2 * np.pi / freq
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def write_gguf(path, spec, config, state, tokenizer=None):
    arch = spec["arch"]
    w = GGUFWriter(str(path), arch)
    if arch.startswith("gemma"):
        w.add_sliding_window(config.sliding_window)
        if arch == "gemma2":
            w.add_attn_logit_softcapping(config.attn_logit_softcapping)
            w.add_final_logit_softcapping(config.final_logit_softcapping)
    if spec.get("rope_freqs"):
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    if tokenizer is not None:
        add_tokenizer(w, tokenizer)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    head_dim = getattr(config, "head_dim", None)
    if head_dim and head_dim != config.hidden_size // config.num_attention_heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = config.rope_parameters
    rope = rope.get("full_attention", rope)  # Gemma 3: the global layers' base
    w.add_rope_freq_base(getattr(config, "rope_theta", None) or rope["rope_theta"])
    w.add_vocab_size(config.vocab_size)
    if tokenizer is None:
        w.add_bos_token_id(config.bos_token_id)
        w.add_eos_token_id(config.eos_token_id)
        if arch == "phi3":
            w.add_pad_token_id(config.pad_token_id)
    w.add_file_type(1)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
             "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
             "self_attn.v_proj.bias": "attn_v.bias", "mlp.gate_proj.weight": "ffn_gate.weight",
             "self_attn.q_norm.weight": "attn_q_norm.weight",
             "pre_feedforward_layernorm.weight": "ffn_norm.weight",
             "self_attn.qkv_proj.weight": "attn_qkv.weight",
             "mlp.gate_up_proj.weight": "ffn_up.weight",
             "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
             "self_attn.k_norm.weight": "attn_k_norm.weight",
             "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    experts = getattr(config, "num_experts", None)
    if experts:
        # Mixture of experts as llama.cpp writes it: the router, and each projection of all
        # experts as one 3-D tensor (transformers holds gate and up fused, gate first).
        w.add_expert_count(experts)
        w.add_expert_used_count(config.num_experts_per_tok)
        w.add_expert_feed_forward_length(config.moe_intermediate_size)
        moe_state = {}
        for name, tensor in state.items():
            if name.endswith("mlp.experts.gate_up_proj"):
                i = name.split(".")[2]
                gate, up = tensor.chunk(2, dim=1)
                moe_state[f"blk.{i}.ffn_gate_exps.weight"] = gate
                moe_state[f"blk.{i}.ffn_up_exps.weight"] = up
            elif name.endswith("mlp.experts.down_proj"):
                moe_state[f"blk.{name.split('.')[2]}.ffn_down_exps.weight"] = tensor
            elif name.endswith("mlp.gate.weight"):
                moe_state[f"blk.{name.split('.')[2]}.ffn_gate_inp.weight"] = tensor
        for gguf_name, tensor in moe_state.items():
            data = tensor.float().numpy()
            t = spec["weights"]
            if t != T.F32 and not gguf_name.endswith("ffn_gate_inp.weight"):
                w.add_tensor(gguf_name, quantize_as(data, t), raw_dtype=t)
            else:
                w.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
        state = {k: v for k, v in state.items() if ".mlp." not in k}
    for name, tensor in state.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers."):].split(".", 1)
            gguf_name = f"blk.{i}.{layer[rest]}"
        else:
            gguf_name = names[name]
        data = tensor.float().numpy()
        if arch.startswith("gemma") and "norm" in name:
            data = data + 1.0  # llama.cpp stores Gemma's (1 + w)
        if arch.startswith("gemma") and name.endswith("post_attention_layernorm.weight"):
            # Gemma's is the attention output's norm; ffn_norm is its MLP's input norm.
            gguf_name = gguf_name.replace("ffn_norm", "post_attention_norm")
        if arch == "llama" and rest_of(name) in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
            data = permute(data, heads if "q_proj" in name else kv_heads)
        t = spec.get("types", {}).get(gguf_name.split(".", 2)[-1] if gguf_name.startswith("blk.")
                                      else gguf_name, spec["weights"])
        if data.ndim == 2 and t != T.F32:
            w.add_tensor(gguf_name, quantize_as(data, t), raw_dtype=t)
        else:
            w.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rest_of(name):
    return name.split(".", 3)[3] if name.startswith("model.layers.") else name


def tokenizer_cases(path):
    """transformers' GGUF tokenizer on TEXTS: ids with the special tokens it adds, and the
    decoding of those ids without them."""
    tok = AutoTokenizer.from_pretrained(str(OUT), gguf_file=path.name)
    ids = [tok(text).input_ids for text in TEXTS]
    decoded = [tok.decode(i, skip_special_tokens=True) for i in ids]
    return tok, dict(texts=TEXTS, ids=ids, decoded=decoded)


def make(name, spec):
    config_cls, model_cls = spec["cls"]
    path = OUT / f"{name}.gguf"
    tokenizer = train_tokenizer(spec["tokenizer"]) if "tokenizer" in spec else None
    for seed in range(100):
        torch.manual_seed(seed)
        config = config_cls(**{**COMMON, **spec["cfg"]})
        if tokenizer is not None:
            config.bos_token_id, config.eos_token_id = tokenizer["bos"], tokenizer["eos"]
        model = model_cls(config).eval()
        if spec.get("random_norms"):
            with torch.no_grad():
                for param_name, p in model.named_parameters():
                    if "norm" in param_name:
                        p.normal_(spec.get("norm_mean", 1.0), 0.3)
        write_gguf(path, spec, config, model.state_dict(), tokenizer)
        prompt = PROMPT
        if tokenizer is not None:
            tok, cases = tokenizer_cases(path)
            prompt = tok(PROMPT_TEXT).input_ids
        # The reference: transformers reading this very file.
        ref = AutoModelForCausalLM.from_pretrained(str(OUT), gguf_file=path.name,
                                                   dtype=torch.float32,
                                                   attn_implementation="eager").eval()
        tokens, rows = greedy(ref, prompt)
        # A clear margin, and a continuation that is not one token repeated.
        if margin(rows) >= spec.get("min_margin", MIN_MARGIN) and len(set(tokens)) > 4:
            break
    else:
        raise SystemExit(f"{name}: no seed gives greedy margins of {MIN_MARGIN}")
    if tokenizer is not None:
        (OUT / f"{name}.tokenizer.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")
    save_file({"prompt": torch.tensor(prompt, dtype=torch.int64),
               "tokens": torch.tensor(tokens, dtype=torch.int64),
               "logits": rows.contiguous()},
              str(OUT / f"{name}.expected.safetensors"))
    print(f"{name}: seed {seed}, margin {margin(rows):.3f}, {path.stat().st_size} bytes, "
          f"tokens {tokens[:8]}...")


# A safetensors fixture written as the GGUF file `--quant` makes of it at load, quantized as
# ggml's reference does: q8_0, every 2-D weight in Q8_0; q4_0, Q4_0 but the output in Q8_0
# (Q6_K needs rows of 256; this model's are 64). tessera quantizing the safetensors must
# compute what transformers computes from these files.
FROM_SAFETENSORS = {
    "llama_gqa_as_q8_0": ("llama_gqa", T.Q8_0, {}),
    "llama_gqa_as_q4_0": ("llama_gqa", T.Q4_0, {"output.weight": T.Q8_0}),
}


def make_from_safetensors(name, source, qtype, types):
    from safetensors.torch import load_file
    src = OUT.parent / source
    config = LlamaConfig.from_pretrained(str(src))
    state = load_file(str(src / "model.safetensors"))
    spec = dict(arch="llama", weights=qtype, types=types)
    path = OUT / f"{name}.gguf"
    write_gguf(path, spec, config, state)
    ref = AutoModelForCausalLM.from_pretrained(str(OUT), gguf_file=path.name, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    tokens, rows = greedy(ref, PROMPT)
    path.unlink()  # only the expectations are kept: the test quantizes the safetensors
    save_file({"prompt": torch.tensor(PROMPT, dtype=torch.int64),
               "tokens": torch.tensor(tokens, dtype=torch.int64),
               "logits": rows.contiguous()},
              str(OUT / f"{name}.expected.safetensors"))
    print(f"{name}: margin {margin(rows):.3f}, tokens {tokens[:8]}...")


def make_rope_freqs():
    """The sharded Llama 3 fixture (llama3 rotary scaling) as llama.cpp's converter writes it:
    F32 weights and the scaling as rope_freqs.weight. transformers' GGUF loader ignores that
    tensor, so the reference is the safetensors fixture's own expected.safetensors."""
    src = OUT.parent / "llama3_sharded"
    model = LlamaForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    spec = dict(arch="llama", weights=T.F32, rope_freqs=True)
    path = OUT / "llama3_rope_freqs.gguf"
    write_gguf(path, spec, model.config, model.state_dict())
    print(f"llama3_rope_freqs: {path.stat().st_size} bytes (expected: llama3_sharded)")


def main():
    import sys
    OUT.mkdir(parents=True, exist_ok=True)
    only = sys.argv[1:]
    for name, spec in FIXTURES.items():
        if not only or name in only:
            make(name, spec)
    if not only or "llama3_rope_freqs" in only:
        make_rope_freqs()
    for name, (source, qtype, types) in FROM_SAFETENSORS.items():
        if not only or name in only:
            make_from_safetensors(name, source, qtype, types)


if __name__ == "__main__":
    main()
