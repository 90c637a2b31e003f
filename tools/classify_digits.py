#!/usr/bin/env python3
"""Judge generated digits: a classifier trained on the real digits (scikit-learn's 8x8
load_digits, the data `tessera train-ddpm --data digits` trains on) says which digit each
sample shows and how sure it is.

A confident classifier of ten classes calls anything some digit (uniform noise comes out "1"
with probability > 0.8), so this one has an eleventh class, "not a digit", trained on
synthetic negatives: uniform noise, the mean digit plus Gaussian noise, real digits with
their pixels shuffled, and the average of two real digits of different classes. Noise and
blobs then score near 0%, the PyTorch-trained bundled model's samples near 90%.

The samples come from `tessera sample --out-raw FILE` (safetensors, f32 "sample"
[N, 1, H, W] in [-1, 1]; 16x16 samples are averaged 2x2 down to 8x8). A sample counts as
recognisable when the classifier gives one class probability >= --confidence (0.8). The
classifier (an RBF support-vector machine, its probabilities calibrated by sigmoid on 5 folds) is trained on 80%
of the real digits; its accuracy on the other 20% is printed first, so the judge is known to
be a good one.

    python3 tools/classify_digits.py samples.safetensors [--confidence 0.8] [--json OUT]

Exit status 0 always; the fraction is printed (and written with --json) for the caller to
compare with its threshold. Needs numpy, scikit-learn, safetensors.
"""

import argparse
import json
import sys

import numpy as np
from safetensors.numpy import load_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import SVC


OTHER = 10


def with_negatives(data, target, per_kind=450):
    """The real digits plus `per_kind` of each kind of non-digit, labelled OTHER."""
    rng = np.random.default_rng(0)
    n = len(data)
    mean = data.mean(axis=0)
    noise = rng.uniform(0, 16, (per_kind, 64))
    blobs = np.clip(mean + rng.normal(0, 4, (per_kind, 64)), 0, 16)
    shuffled = np.array([rng.permutation(data[i]) for i in rng.integers(0, n, per_kind)])
    pairs = []
    while len(pairs) < per_kind:
        i, j = rng.integers(0, n, 2)
        if target[i] != target[j]:
            pairs.append((data[i] + data[j]) / 2)
    negatives = np.concatenate([noise, blobs, shuffled, np.array(pairs)])
    return (np.concatenate([data, negatives]),
            np.concatenate([target, np.full(len(negatives), OTHER)]))


def upsample_bilinear(images):
    """[N, 8, 8] -> [N, 16, 16], as F.interpolate(scale_factor=2, mode="bilinear",
    align_corners=False) (what tools/train_digits.py and train-ddpm --size 16 train on)."""
    src = np.maximum((np.arange(16) + 0.5) / 2 - 0.5, 0)
    lo = np.minimum(np.floor(src).astype(int), 7)
    hi = np.minimum(lo + 1, 7)
    frac = src - lo
    rows = images[:, lo, :] * (1 - frac)[None, :, None] + images[:, hi, :] * frac[None, :, None]
    return rows[:, :, lo] * (1 - frac)[None, None, :] + rows[:, :, hi] * frac[None, None, :]


def pool(images):
    """[N, 16, 16] -> [N, 8, 8] by 2x2 averages."""
    return images.reshape(len(images), 8, 2, 8, 2).mean(axis=(2, 4))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("samples")
    parser.add_argument("--confidence", type=float, default=0.8)
    parser.add_argument("--json")
    args = parser.parse_args()

    samples = load_file(args.samples)["sample"].astype(np.float64)
    if samples.ndim != 4 or samples.shape[1] != 1:
        sys.exit(f"expected [N, 1, H, W] samples, got {samples.shape}")
    n, _, h, w = samples.shape
    if (h, w) not in ((8, 8), (16, 16)):
        sys.exit(f"samples are {h}x{w}; the classifier takes 8x8 or 16x16 (pooled to 8x8)")
    pixels = ((np.clip(samples[:, 0], -1, 1) + 1) / 2 * 16)
    digits = load_digits()
    data, target = with_negatives(digits.data, digits.target)
    if (h, w) == (16, 16):
        # 16x16 samples are pooled to 8x8: the classifier learns from data that went the
        # same way (upsampled as in training, then pooled), non-digits included.
        pixels = pool(pixels)
        data = pool(upsample_bilinear(data.reshape(-1, 8, 8))).reshape(-1, 64)
    x_train, x_test, y_train, y_test = train_test_split(
        data, target, test_size=0.2, random_state=0, stratify=target)
    classifier = CalibratedClassifierCV(SVC(gamma=0.001, C=10), ensemble=False).fit(x_train, y_train)
    accuracy = classifier.score(x_test, y_test)
    real = y_test != OTHER
    print(f"classifier accuracy on held-out data: {accuracy:.3f} "
          f"(real digits {classifier.score(x_test[real], y_test[real]):.3f}, "
          f"non-digits {classifier.score(x_test[~real], y_test[~real]):.3f})")

    probabilities = classifier.predict_proba(pixels.reshape(n, 64))
    best = probabilities.max(axis=1)
    classes = classifier.classes_[probabilities.argmax(axis=1)]
    confident = (best >= args.confidence) & (classes != OTHER)
    fraction = float(confident.mean())
    histogram = {int(c): int((classes[confident] == c).sum()) for c in range(10)}
    histogram["not a digit"] = int((classes == OTHER).sum())
    print(f"{confident.sum()} of {n} samples ({fraction:.1%}) are a digit with probability "
          f">= {args.confidence}; by digit: {histogram}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples": n, "confident": int(confident.sum()), "fraction": fraction,
                       "confidence": args.confidence, "by_digit": histogram,
                       "classifier_accuracy": accuracy,
                       "predicted": [int(c) for c in classes],
                       "probability": [round(float(p), 4) for p in best]}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
