#!/usr/bin/env python3
"""Write assets/data/digits.safetensors: scikit-learn's 8x8 handwritten digits (1797 images,
BSD-licensed, bundled with scikit-learn), the data tools/train_digits.py trains on, for
`tessera train-ddpm --data digits`.

  - "images" f16 [1797, 8, 8]: the pixel values 0..16 exactly as load_digits gives them;
  - "labels" f16 [1797]: the digit each image shows (for tools/classify_digits.py).

    python3 tools/make_digits_data.py   # needs scikit-learn, torch, safetensors
"""

import pathlib

import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits

OUT = pathlib.Path(__file__).resolve().parent.parent / "assets" / "data" / "digits.safetensors"


def main():
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float16)
    labels = torch.tensor(digits.target, dtype=torch.float16)
    assert images.shape == (1797, 8, 8) and float(images.max()) == 16.0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file({"images": images, "labels": labels}, OUT,
              metadata={"source": "sklearn.datasets.load_digits", "licence": "BSD-3-Clause"})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
