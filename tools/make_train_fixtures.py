#!/usr/bin/env python3
"""Write the training fixtures: what PyTorch autograd and torch.optim.AdamW compute for a tiny
byte-level Llama, for tests/train.rs to hold tessera's backward pass and optimizer to.

tests/fixtures/train_lm/ holds
  - config.json, model.safetensors (f32): a LlamaForCausalLM with a 258-token byte vocabulary
    (as assets/models/stdlib-byte), weights drawn N(0, 0.08²), norms 1 + N(0, 0.1²);
  - corpus.txt: the first 24 KiB of the Python standard library's argparse.py (PSF licence);
  - reference.safetensors:
      "ids", "targets" i64 [B*T]: one batch (B = 3 windows of T = 21 tokens);
      "loss" f32 [1]: the mean cross-entropy of that batch;
      "grad.<name>" f32: each parameter's gradient (autograd, float32, eager attention);
      "curve" f32 [200]: the loss of each of 200 AdamW steps (lr 3e-3 peak, 20 warm-up steps,
      cosine to 10% at step 200, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every
      tensor, gradients clipped to global norm 1.0) on batches of 4 windows of 32 bytes drawn
      as tessera's TokenWindows draws them (SplitMix64, seed 0: start = next % (len - 32)).

tests/fixtures/train_unet/ holds
  - config.json, diffusion_pytorch_model.safetensors (f32): a UNet2DModel at 8x8 with a
    plain and an attention level, mid-block attention, 4 groups; PyTorch's default
    initialisation with biases N(0, 0.1²) and norms 1 + N(0, 0.1²);
  - reference.safetensors:
      "x_t", "noise" f32 [3, 1, 8, 8], "timesteps" f32 [3]: one DDPM batch drawn as below
      (SplitMix64 seed 7);
      "loss" f32 [1]: the mean squared error of the predicted noise;
      "grad.<name>" f32: each parameter's gradient;
      "curve" f32 [200]: the loss of 200 AdamW steps (lr 2e-3 peak, 20 warm-up steps, cosine
      to 10% at step 200, betas (0.9, 0.999), weight decay 1e-4, clipping to 1.0) on batches
      of 8 of assets/data/digits.safetensors's 8x8 images scaled to [-1, 1], drawn as
      tessera's DdpmBatches draws them (SplitMix64 seed 0: 8 image indices `next % 1797`, 8
      timesteps `next % 1000`, then Box-Muller noise; x_t computed in f64 from the
      squaredcos_cap_v2 schedule's ᾱ).

    python3 tools/make_train_fixtures.py   # needs torch, transformers, diffusers, safetensors
"""

import math
import pathlib
import sys
import sysconfig

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train_lm"
MASK = (1 << 64) - 1


class SplitMix64:
    """src/rng.rs's generator."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def windows(tokens, seq, batch, rng):
    """tessera's TokenWindows::next_batch."""
    span = len(tokens) - seq
    ids, targets = [], []
    for _ in range(batch):
        start = rng.next() % span
        ids += tokens[start:start + seq]
        targets += tokens[start + 1:start + seq + 1]
    return torch.tensor(ids), torch.tensor(targets)


def rate(step, peak=3e-3, warmup=20, total=200, floor=0.1):
    """tessera's Schedule::rate (step from 1)."""
    if step <= warmup:
        return peak * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def loss_of(model, ids, targets, batch, seq):
    logits = model(ids.view(batch, seq)).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)


def uniform(rng, lo, hi):
    return lo + (hi - lo) * ((rng.next() >> 11) / float(1 << 53))


def normal(rng, n):
    """tessera's models::train::normal (Box-Muller, two draws per value), as f32."""
    out = []
    for _ in range(n):
        u1 = uniform(rng, sys.float_info.min, 1.0)
        u2 = uniform(rng, 0.0, 1.0)
        out.append(math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2))
    return torch.tensor(out, dtype=torch.float32)


def alphas_cumprod(steps=1000):
    """tessera's squaredcos_cap_v2 ᾱ, in f64."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    out, product = [], 1.0
    for i in range(steps):
        beta = min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999)
        product *= 1 - beta
        out.append(product)
    return out


def ddpm_batch(images, batch, rng, abar):
    """tessera's DdpmBatches::next_batch: (x_t, timesteps, noise)."""
    idx = [rng.next() % len(images) for _ in range(batch)]
    ts = [rng.next() % len(abar) for _ in range(batch)]
    per = images[0].numel()
    noise = normal(rng, batch * per).view(batch, *images.shape[1:])
    x0 = images[idx].double()
    scale = torch.tensor([math.sqrt(abar[t]) for t in ts], dtype=torch.float64).view(-1, 1, 1, 1)
    sigma = torch.tensor([math.sqrt(1 - abar[t]) for t in ts], dtype=torch.float64).view(-1, 1, 1, 1)
    x_t = (scale * x0 + sigma * noise.double()).float()
    return x_t, torch.tensor(ts, dtype=torch.float32), noise


def unet_fixture():
    from diffusers import UNet2DModel
    out = OUT.parent / "train_unet"
    torch.manual_seed(1)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       attention_head_dim=8, norm_eps=1e-5).float()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out, safe_serialization=True)
    start = {k: v.clone() for k, v in unet.state_dict().items()}

    data_path = OUT.parent.parent.parent / "assets" / "data" / "digits.safetensors"
    from safetensors.torch import load_file
    images = load_file(data_path)["images"].float().view(-1, 1, 8, 8) / 16 * 2 - 1
    abar = alphas_cumprod()
    expected = {}
    x_t, ts, noise = ddpm_batch(images, 3, SplitMix64(7), abar)
    loss = torch.nn.functional.mse_loss(unet(x_t, ts).sample, noise)
    loss.backward()
    expected.update({"x_t": x_t, "timesteps": ts, "noise": noise,
                     "loss": loss.detach().reshape(1)})
    for name, p in unet.named_parameters():
        expected["grad." + name] = p.grad.detach().clone()

    unet.load_state_dict(start)
    unet.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=1e-4)
    rng = SplitMix64(0)
    curve = []
    for step in range(1, 201):
        for group in opt.param_groups:
            group["lr"] = rate(step, peak=2e-3)
        x_t, ts, noise = ddpm_batch(images, 8, rng, abar)
        loss = torch.nn.functional.mse_loss(unet(x_t, ts).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
    expected["curve"] = torch.tensor(curve, dtype=torch.float32)
    print(f"unet curve: {curve[0]:.4f} -> {curve[-1]:.4f}")
    save_file({k: v.contiguous() for k, v in expected.items()}, out / "reference.safetensors")


def main():
    unet_fixture()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=258, hidden_size=64, intermediate_size=160,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-5,
                         rope_theta=10000.0, bos_token_id=256, eos_token_id=257,
                         tie_word_embeddings=False, attn_implementation="eager")
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    (OUT / "generation_config.json").unlink(missing_ok=True)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    source = pathlib.Path(sysconfig.get_paths()["stdlib"]) / "argparse.py"
    corpus = source.read_bytes()[:24 * 1024]
    (OUT / "corpus.txt").write_bytes(corpus)
    tokens = list(corpus)

    expected = {}
    batch, seq = 3, 21
    ids, targets = windows(tokens, seq, batch, SplitMix64(7))
    loss = loss_of(model, ids, targets, batch, seq)
    loss.backward()
    expected["ids"], expected["targets"] = ids, targets
    expected["loss"] = loss.detach().reshape(1)
    for name, p in model.named_parameters():
        expected["grad." + name] = p.grad.detach().clone()

    model.load_state_dict(start)
    model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    rng = SplitMix64(0)
    curve = []
    for step in range(1, 201):
        for group in opt.param_groups:
            group["lr"] = rate(step)
        ids, targets = windows(tokens, 32, 4, rng)
        loss = loss_of(model, ids, targets, 4, 32)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
    expected["curve"] = torch.tensor(curve, dtype=torch.float32)
    print(f"curve: {curve[0]:.4f} -> {curve[-1]:.4f}")
    save_file({k: v.contiguous() for k, v in expected.items()}, OUT / "reference.safetensors")


if __name__ == "__main__":
    main()
