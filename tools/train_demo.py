#!/usr/bin/env python3
"""Train the bundled demo model: a small Llama on the Python standard library's source, with a
byte-level vocabulary (256 bytes + <s> + </s>), saved in the Hugging Face layout (config.json,
model.safetensors in float16, tokenizer.json) to assets/models/stdlib-byte.

The corpus is the .py files of the Python that runs this script (offline, PSF-licensed).
Training runs on the CPU; --minutes bounds it.

    python3 tools/train_demo.py --minutes 40
"""

import argparse
import json
import math
import pathlib
import sysconfig
import time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "models" / "stdlib-byte"
BOS, EOS = 256, 257
VOCAB = 258


def corpus():
    """Every .py file of the standard library (tests excluded), as (path, bytes)."""
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py")
                   if "test" not in p.parts and "site-packages" not in p.parts
                   and "idle_test" not in p.parts)
    return [(p, p.read_bytes()) for p in files]


def tokenizer_json(path):
    """A byte-level tokenizer whose ids are the byte values (GPT-2 byte-to-unicode chars)."""
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    mapping = bytes_to_unicode()
    vocab = {mapping[b]: b for b in range(256)}
    assert set(vocab) == set(byte_chars)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], ignore_merges=True))
    tok.add_special_tokens(["<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    tok.save(str(path))
    check = Tokenizer.from_file(str(path))
    text = "def f(x):\n    return x  # é\n"
    ids = check.encode(text).ids
    assert ids == [BOS] + list(text.encode()), ids
    assert check.decode(ids) == text


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    docs = corpus()
    stream = []
    for _, data in docs:
        stream += [BOS] + list(data) + [EOS]
    data = torch.tensor(stream, dtype=torch.long)
    split = int(len(data) * 0.98)
    train, valid = data[:split], data[split:]
    print(f"corpus: {len(docs)} files, {len(data) / 1e6:.1f}M bytes")

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=192, intermediate_size=512,
                         num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
                         max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                         bos_token_id=BOS, eos_token_id=EOS, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))

    def batch(source):
        starts = torch.randint(0, len(source) - args.seq - 1, (args.batch,))
        x = torch.stack([source[s:s + args.seq] for s in starts])
        y = torch.stack([source[s + 1:s + args.seq + 1] for s in starts])
        return x, y

    deadline = time.time() + args.minutes * 60
    step, warmup = 0, 100
    start = time.time()
    while time.time() < deadline:
        # cosine decay over the planned time, after a linear warm-up
        frac = min(1.0, (time.time() - start) / (deadline - start))
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch(train)
        loss = torch.nn.functional.cross_entropy(model(x).logits.view(-1, VOCAB), y.view(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.time() - start:.0f}s",
                  flush=True)
        step += 1

    model.eval()
    with torch.no_grad():
        losses = []
        for _ in range(20):
            x, y = batch(valid)
            losses.append(torch.nn.functional.cross_entropy(
                model(x).logits.view(-1, VOCAB), y.view(-1)).item())
    valid_loss = sum(losses) / len(losses)
    print(f"validation loss {valid_loss:.3f} nats/byte ({valid_loss / math.log(2):.2f} bits/byte)")

    OUT.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(OUT, safe_serialization=True)
    (OUT / "generation_config.json").unlink(missing_ok=True)
    tokenizer_json(OUT / "tokenizer.json")
    (OUT / "training.json").write_text(json.dumps({
        "corpus": "Python standard library .py files (tests excluded), Python "
                  + sysconfig.get_python_version(),
        "bytes": len(data), "steps": step, "batch": args.batch, "seq": args.seq,
        "minutes": args.minutes, "validation_loss_nats_per_byte": round(valid_loss, 4),
        "script": "tools/train_demo.py",
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
