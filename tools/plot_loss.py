#!/usr/bin/env python3
"""Plot training-loss curves into one SVG and print how far they are apart.

A curve is a `tessera train-lm` / `train-ddpm` loss.csv (columns step,loss,...) or an f32
tensor of a safetensors file (FILE.safetensors#NAME, one loss per step from step 1). The first
curve is the one the others are compared with: the largest relative difference per step is
printed and written under the plot.

    python3 tools/plot_loss.py --out results/train-lm-curve.svg \\
        --title "byte LM, 200 AdamW steps" \\
        tests/fixtures/train_lm/reference.safetensors#curve=PyTorch /tmp/run/loss.csv=tessera

Standard library only.
"""

import argparse
import html
import json
import struct
import sys

COLOURS = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b"]


def read_curve(spec):
    path, _, label = spec.partition("=")
    if "#" in path:
        path, name = path.split("#", 1)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            info = header[name]
            if info["dtype"] != "F32":
                sys.exit(f"{path}#{name} is {info['dtype']}, not F32")
            start, end = info["data_offsets"]
            f.seek(8 + n + start)
            data = f.read(end - start)
        values = list(struct.unpack(f"<{len(data) // 4}f", data))
        return label or name, [(i + 1, v) for i, v in enumerate(values)]
    points = []
    with open(path) as f:
        rows = f.read().splitlines()
    for row in rows[1:]:
        cols = row.split(",")
        points.append((int(cols[0]), float(cols[1])))
    return label or path, points


def svg(curves, title, note):
    width, height, left, right, top, bottom = 720, 420, 60, 20, 40, 70
    xs = [x for _, c in curves for x, _ in c]
    ys = [y for _, c in curves for _, y in c]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) * 1.05

    def px(x):
        return left + (x - x0) / max(1, x1 - x0) * (width - left - right)

    def py(y):
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">'
           f'{html.escape(title)}</text>']
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                   f'{x:.0f}</text>')
    out.append(f'<text x="{width / 2}" y="{height - bottom + 34}" text-anchor="middle">step'
               f'</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2})">loss</text>')
    for n, (label, points) in enumerate(curves):
        colour = COLOURS[n % len(COLOURS)]
        dash = ' stroke-dasharray="6 4"' if n else ""
        path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}"
                        for i, (x, y) in enumerate(points))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
        out.append(f'<text x="{width - right - 150}" y="{top + 16 + 16 * n}" fill="{colour}">'
                   f'{html.escape(label)}</text>')
    out.append(f'<text x="{left}" y="{height - 12}">{html.escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="training loss")
    parser.add_argument("curves", nargs="+", help="FILE.csv[=LABEL] or FILE.safetensors#NAME[=LABEL]")
    args = parser.parse_args()
    curves = [read_curve(c) for c in args.curves]
    base = dict(curves[0][1])
    notes = []
    for label, points in curves[1:]:
        worst = max(((abs(y - base[x]) / abs(base[x]), x) for x, y in points if x in base),
                    default=(0.0, 0))
        notes.append(f"{label} vs {curves[0][0]}: largest relative difference "
                     f"{worst[0]:.2e} (step {worst[1]})")
    note = "; ".join(notes)
    print(note)
    with open(args.out, "w") as f:
        f.write(svg(curves, args.title, note))


if __name__ == "__main__":
    main()
