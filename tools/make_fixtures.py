#!/usr/bin/env python3
"""Write the golden fixtures into tests/fixtures/: tiny random-weight checkpoints of the
decoder (transformers) and the UNet (diffusers), and what PyTorch computes for them.

Each fixture directory holds config.json, the safetensors weights (one file or sharded with
an index), and expected.safetensors with
  - "prompt":  i64 [P]       the prompt token ids
  - "tokens":  i64 [24]      greedy continuation (EOS not honoured)
  - "logits":  f32 [24, V]   row i = the logits that chose tokens[i]
computed in float32 with eager attention. Weights are drawn with a large standard deviation
and the seed is advanced until every greedy choice wins by a clear margin, so that the
comparison is not at the mercy of a near tie.

Each UNet fixture holds config.json, diffusion_pytorch_model.safetensors and
scheduler_config.json (flat, or in the pipeline layout unet/ + scheduler/ +
model_index.json), and expected.safetensors with
  - "input" [2, C, H, W], "timestep" i64 [1], "output": one UNet forward;
  - "ddim_noise", "ddim_final": a 10-step DDIM (eta 0) run from that noise;
  - "ddpm_noise" [S, 2, C, H, W] ... : a 5-step DDPM run that draws the given noise per
    step ("ddpm_init", "ddpm_step_noise", "ddpm_final").

    python3 tools/make_fixtures.py   # needs torch, transformers, diffusers, safetensors
"""

import json
import pathlib
import shutil

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
                          Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig,
                          MixtralConfig, MixtralForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM,
                          OlmoeConfig, OlmoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM,
                          Phi3Config, Phi3ForCausalLM,
                          SmolLM3Config, SmolLM3ForCausalLM)

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
    # Mistral with a sliding window of 8 positions: 31 positions in all, so from the 9th on
    # each query sees only its last 8 keys.
    "mistral_window": dict(cls=(MistralConfig, MistralForCausalLM), dtype=torch.float32,
                           cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                    sliding_window=8)),
    # Qwen3: RMSNorm per head on q and k before RoPE, head_dim apart from hidden / heads.
    "qwen3_qk_norm": dict(cls=(Qwen3Config, Qwen3ForCausalLM), dtype=torch.float32,
                          random_norms=True,
                          cfg=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                   tie_word_embeddings=True)),
    # Phi-3: fused qkv_proj and gate_up_proj, longrope (short factors within the original
    # 64 positions, cos and sin scaled by the attention factor of a 128-position context).
    "phi3_longrope": dict(cls=(Phi3Config, Phi3ForCausalLM), dtype=torch.float32,
                          random_norms=True,
                          cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                   pad_token_id=0, eos_token_id=2, sliding_window=None,
                                   original_max_position_embeddings=64,
                                   rope_parameters=dict(
                                       rope_type="longrope", rope_theta=10000.0,
                                       short_factor=[1.0 + i / 8 for i in range(8)],
                                       long_factor=[1.0 + i for i in range(8)],
                                       original_max_position_embeddings=64))),
    # Gemma 3 (text): (1 + w) norms (drawn around 0), four a layer, q/k head norms, √hidden
    # embedding scale, GeGLU, query_pre_attn_scalar apart from head_dim, sliding layers with
    # their own RoPE base around a global one with linear scaling.
    "gemma3_text": dict(cls=(Gemma3TextConfig, Gemma3ForCausalLM), dtype=torch.float32,
                        random_norms=True, norm_mean=0.0,
                        cfg=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                 num_hidden_layers=3, query_pre_attn_scalar=24,
                                 initializer_range=0.2, tie_word_embeddings=False,
                                 sliding_window=512, pad_token_id=0,
                                 layer_types=["sliding_attention", "full_attention",
                                              "sliding_attention"],
                                 rope_parameters={
                                     "full_attention": dict(rope_type="linear", factor=2.0,
                                                            rope_theta=1e6),
                                     "sliding_attention": dict(rope_type="default",
                                                               rope_theta=1e4)})),
    # Gemma 2: as Gemma 3 without q/k norms and with one RoPE, plus soft-capping of the
    # attention logits and the final logits, both tight enough here (2, 3) to bend them.
    "gemma2_softcap": dict(cls=(Gemma2Config, Gemma2ForCausalLM), dtype=torch.float32,
                           random_norms=True, norm_mean=0.0,
                           cfg=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                    num_hidden_layers=2, query_pre_attn_scalar=24,
                                    tie_word_embeddings=False, sliding_window=512,
                                    pad_token_id=0, attn_logit_softcapping=3.0,
                                    final_logit_softcapping=15.0)),
    # Mixtral: every MLP a mixture, top-2 of 4 experts, renormalised.
    "mixtral_moe": dict(cls=(MixtralConfig, MixtralForCausalLM), dtype=torch.float32,
                        cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                 num_local_experts=4, num_experts_per_tok=2,
                                 sliding_window=None)),
    # Qwen3-MoE: q/k head norms, top-1 of 4 experts (k = 1), renormalised.
    "qwen3_moe_top1": dict(cls=(Qwen3MoeConfig, Qwen3MoeForCausalLM), dtype=torch.float32,
                           random_norms=True,
                           cfg=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                    num_experts=4, num_experts_per_tok=1,
                                    moe_intermediate_size=48, norm_topk_prob=True)),
    # Qwen2-MoE: qkv biases, top-2 of 4 without renormalising, a gated shared expert, and
    # the second layer a dense MLP (mlp_only_layers).
    "qwen2_moe_shared": dict(cls=(Qwen2MoeConfig, Qwen2MoeForCausalLM), dtype=torch.float32,
                             cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                      num_experts=4, num_experts_per_tok=2,
                                      moe_intermediate_size=48,
                                      shared_expert_intermediate_size=80,
                                      norm_topk_prob=False, mlp_only_layers=[1],
                                      tie_word_embeddings=False)),
    # OLMoE: RMSNorm over all of q and of k, top-2 of 4 experts, not renormalised.
    "olmoe_moe": dict(cls=(OlmoeConfig, OlmoeForCausalLM), dtype=torch.float32,
                      random_norms=True,
                      cfg=dict(num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                               num_experts_per_tok=2, pad_token_id=0, eos_token_id=2)),
    # SmolLM3: RoPE skipped on the layers no_rope_layers marks 0 (here the second of three).
    "smollm3_nope": dict(cls=(SmolLM3Config, SmolLM3ForCausalLM), dtype=torch.float32,
                         random_norms=True,
                         cfg=dict(num_attention_heads=4, num_key_value_heads=2,
                                  num_hidden_layers=3, no_rope_layers=[1, 0, 1], pad_token_id=0,
                                  tie_word_embeddings=True)),
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
        config = config_cls(**{**COMMON, **spec["cfg"]})
        config._attn_implementation = "eager"
        model = model_cls(config).eval()
        # The stored precision is what the checkpoint holds; the reference runs in f32 on
        # exactly those values. Only parameters are rounded: `model.to(dtype)` would also
        # round buffers such as the rotary inv_freq, which are not stored in the checkpoint.
        with torch.no_grad():
            if spec.get("random_norms"):
                # Norm weights start at 1; drawn instead, a norm applied with the wrong weight
                # (q's for k's, one layer's for another's) changes the logits.
                for param_name, p in model.named_parameters():
                    if "norm" in param_name:
                        p.normal_(spec.get("norm_mean", 1.0), 0.3)
            for p in model.parameters():
                p.copy_(p.to(spec["dtype"]).to(torch.float32))
        tokens, rows = greedy(model, PROMPT)
        # A clear margin, and a continuation that is not one token repeated.
        if margin(rows) >= MIN_MARGIN and len(set(tokens)) > 4:
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


UNET_COMMON = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                   norm_num_groups=8, norm_eps=1e-5)

UNET_FIXTURES = {
    # Attention at the second level and in the middle, default time embedding.
    "unet_attn": dict(block_out_channels=(16, 32), attention_head_dim=8,
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                      up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                      downsample_padding=1, resnet_time_scale_shift="default",
                      flip_sin_to_cos=True, freq_shift=0),
    # Scale-shift time embedding (no GroupNorm in the middle attention), one head over all
    # channels, asymmetric downsampling padding, centred input, rescaled middle block, and the
    # deprecated attention tensor names.
    "unet_scale_shift": dict(block_out_channels=(16, 32), attention_head_dim=None,
                             down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
                             up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"),
                             downsample_padding=0, resnet_time_scale_shift="scale_shift",
                             center_input_sample=True, mid_block_scale_factor=1.414,
                             flip_sin_to_cos=False, freq_shift=1, deprecated_names=True),
    # No attention anywhere, three levels, two ResNets per level, pipeline layout.
    "unet_plain_pipeline": dict(block_out_channels=(8, 16, 16), layers_per_block=2,
                                down_block_types=("DownBlock2D",) * 3,
                                up_block_types=("UpBlock2D",) * 3, add_attention=False,
                                downsample_padding=1, pipeline=True),
}


def make_unet(name, spec):
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
    from safetensors.torch import load_file, save_file as save

    spec = dict(spec)
    deprecated = spec.pop("deprecated_names", False)
    pipeline = spec.pop("pipeline", False)
    torch.manual_seed(0)
    unet = UNet2DModel(**{**UNET_COMMON, **spec}).eval()
    directory = OUT / name
    shutil.rmtree(directory, ignore_errors=True)
    unet_dir = directory / "unet" if pipeline else directory
    sched_dir = directory / "scheduler" if pipeline else directory
    unet.save_pretrained(unet_dir, safe_serialization=True)
    if deprecated:
        path = unet_dir / "diffusion_pytorch_model.safetensors"
        tensors = load_file(str(path))
        renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.",
                   ".to_out.0.": ".proj_attn."}
        renamed = {}
        for key, value in tensors.items():
            for new, old in renames.items():
                key = key.replace(new, old)
            renamed[key] = value
        save(renamed, str(path))
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                         set_alpha_to_one=True, steps_offset=1)
    ddim.save_pretrained(sched_dir)
    if pipeline:
        (directory / "model_index.json").write_text(json.dumps({
            "_class_name": "DDIMPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
            "unet": ["diffusers", "UNet2DModel"]}, indent=2) + "\n")

    g = torch.Generator().manual_seed(1)
    shape = (2, 3, 8, 8)
    x = torch.randn(shape, generator=g)
    t = 500
    with torch.no_grad():
        out = unet(x, t).sample
        # 10 DDIM steps, eta 0.
        noise = torch.randn(shape, generator=g)
        ddim.set_timesteps(10)
        sample = noise.clone()
        for step in ddim.timesteps:
            sample = ddim.step(unet(sample, step).sample, step, sample, eta=0.0).prev_sample
        # 5 DDPM steps, diffusers drawing its own noise; each draw is recorded by replaying
        # the generator's state.
        # The same scheduler file read as DDPM (as `--scheduler ddpm` does).
        ddpm = DDPMScheduler.from_config(ddim.config)
        ddpm.set_timesteps(5)
        init = torch.randn(shape, generator=g)
        draws = torch.Generator().manual_seed(2)
        current = init.clone()
        recorded = []
        for step in ddpm.timesteps:
            model_output = unet(current, step).sample
            replay = torch.Generator()
            replay.set_state(draws.get_state())
            recorded.append(torch.randn(shape, generator=replay) if step > 0
                            else torch.zeros(shape))
            current = ddpm.step(model_output, step, current, generator=draws).prev_sample
        step_noise = torch.stack(recorded)
    save_file({"input": x.contiguous(), "timestep": torch.tensor([t], dtype=torch.int64),
               "output": out.contiguous(), "ddim_noise": noise.contiguous(),
               "ddim_final": sample.contiguous(), "ddpm_init": init.contiguous(),
               "ddpm_step_noise": step_noise.contiguous(), "ddpm_final": current.contiguous()},
              str(directory / "expected.safetensors"))
    print(f"{name}: output std {float(out.std()):.3f}, ddim final std {float(sample.std()):.3f}")


if __name__ == "__main__":
    import sys
    OUT.mkdir(parents=True, exist_ok=True)
    only = sys.argv[1:]  # fixture names, or all
    for name, spec in FIXTURES.items():
        if not only or name in only:
            make(name, spec)
    for name, spec in UNET_FIXTURES.items():
        if not only or name in only:
            make_unet(name, spec)
