#!/usr/bin/env python3
"""Train the bundled demo diffusion model: a small diffusers UNet2DModel on the 8x8
handwritten digits scikit-learn ships (1797 images, offline, BSD-licensed), upscaled to
16x16, with the DDPM noise-prediction loss. Saves config.json,
diffusion_pytorch_model.safetensors (float16) and a DDIM scheduler_config.json to
assets/models/digits-unet. Runs on the CPU; --minutes bounds it.

    python3 tools/train_digits.py --minutes 20
"""

import argparse
import json
import pathlib
import time

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from sklearn.datasets import load_digits

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "models" / "digits-unet"


def dataset():
    digits = load_digits().images.astype("float32") / 16.0   # [N, 8, 8] in [0, 1]
    x = torch.from_numpy(digits)[:, None]                     # [N, 1, 8, 8]
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1                              # [-1, 1], [N, 1, 16, 16]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    torch.manual_seed(0)

    data = dataset()
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1,
                       block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, attention_head_dim=32, norm_eps=1e-5)
    print(f"{len(data)} images; parameters: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M")
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-4)
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}

    deadline = time.time() + args.minutes * 60
    start, step = time.time(), 0
    while time.time() < deadline:
        frac = (time.time() - start) / (deadline - start)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 200) * (1 - 0.9 * frac)
        x0 = data[torch.randint(0, len(data), (args.batch,))]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (args.batch,))
        xt = noise_scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(unet(xt, t).sample, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for k, v in unet.state_dict().items():
                ema[k].mul_(0.995).add_(v.detach(), alpha=0.005) if v.dtype.is_floating_point else ema[k].copy_(v)
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
        step += 1

    unet.load_state_dict(ema)
    unet.eval()
    OUT.mkdir(parents=True, exist_ok=True)
    unet.to(torch.float16).save_pretrained(OUT, safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                  set_alpha_to_one=True, steps_offset=1).save_pretrained(OUT)
    (OUT / "training.json").write_text(json.dumps({
        "dataset": "scikit-learn load_digits (8x8, 1797 images) upscaled to 16x16",
        "steps": step, "batch": args.batch, "minutes": args.minutes,
        "final_loss": round(loss.item(), 4), "script": "tools/train_digits.py",
    }, indent=2) + "\n")
    print(f"saved to {OUT} after {step} steps")


if __name__ == "__main__":
    main()
