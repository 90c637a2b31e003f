#!/usr/bin/env python3
"""Convert a pickled PyTorch checkpoint (diffusion_pytorch_model.bin, pytorch_model.bin) to
safetensors beside it. tessera never unpickles; this script does it once, with
torch.load(weights_only=True), which refuses pickles that would run code.

    python3 tools/convert_bin.py path/to/diffusion_pytorch_model.bin
"""

import pathlib
import sys

import torch
from safetensors.torch import save_file


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for name in paths:
        path = pathlib.Path(name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        tensors = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
        out = path.with_suffix(".safetensors")
        # Tensors shared between names (tied weights) are stored once per name.
        save_file({k: v.clone() for k, v in tensors.items()}, str(out))
        print(f"{path} -> {out} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main(sys.argv[1:])
