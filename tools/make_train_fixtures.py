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

    python3 tools/make_train_fixtures.py   # needs torch, transformers, safetensors
"""

import math
import pathlib
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


def main():
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
