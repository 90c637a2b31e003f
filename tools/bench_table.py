#!/usr/bin/env python3
"""Turn one or more `tessera bench --json` files into a Markdown table and, with --svg, a
plot of each kernel's throughput against its adapter's measured ceiling.

Each file is one adapter (a column group). Each benchmark case is a row with its median time,
the throughput that matters for it (GFLOP/s where FLOPs are counted, GB/s otherwise) and that
throughput as a percentage of the ceiling measured in the same run: the copy kernel's
bandwidth for data movement; for cases with FLOPs the roofline, the lower of the fma_peak
probe's GFLOP/s of the same dtype and what the copy bandwidth feeds at the case's FLOPs per
byte (so GEMV is held to bandwidth, a large matmul to the peak). Files written by `bench --models` add a table of model figures.

    python3 tools/bench_table.py results/*.json > table.md
    python3 tools/bench_table.py --svg plot.svg results/a.json results/b.json

Standard library only.
"""

import argparse
import html
import json
import sys

COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]


def load(path):
    with open(path) as f:
        report = json.load(f)
    for key in ("adapter", "copy", "cases"):
        if key not in report:
            sys.exit(f"{path}: not a tessera bench report (no {key!r})")
    report.setdefault("models", [])
    return report


def peaks(report):
    """The best fma_peak GFLOP/s of each dtype in the report."""
    best = {}
    for c in report["cases"]:
        if c["kernel"] == "fma_peak" and c.get("gflops"):
            best[c["dtype"]] = max(best.get(c["dtype"], 0.0), c["gflops"])
    return best


def ceiling_share(report, case):
    """(percent of the ceiling, which ceiling) for one case; percent is None when unknown."""
    if case["kernel"] == "fma_peak":
        return None, "peak"
    if case.get("gflops") is not None:
        # Roofline: the lower of the compute peak and what the copy bandwidth can feed at
        # this case's arithmetic intensity (FLOPs per byte moved).
        peak = peaks(report).get(case["dtype"])
        if not peak:
            return None, "peak"
        fed = case["flops"] / case["bytes"] * report["copy"]["gbytes_per_second"]
        if fed < peak:
            return 100.0 * case["gflops"] / fed, "copy"
        return 100.0 * case["gflops"] / peak, "peak"
    return case["percent_of_copy"], "copy"


def throughput(case):
    if case.get("gflops") is not None:
        return f"{case['gflops']:.1f} GFLOP/s"
    return f"{case['gbytes_per_second']:.2f} GB/s"


def case_names(reports):
    names = []
    for r in reports:
        for c in r["cases"]:
            if c["name"] not in names:
                names.append(c["name"])
    return names


def find(report, name):
    return next((c for c in report["cases"] if c["name"] == name), None)


def print_tables(reports):
    print("| adapter | backend | driver | date | timing | copy GB/s | peak f32 / f16 GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for r in reports:
        a = r["adapter"]
        p = peaks(r)
        peak = " / ".join(f"{p[d]:.1f}" if d in p else "-" for d in ("f32", "f16"))
        print(f"| {a['name']} | {a['backend']} | {a['driver']} {a['driver_info']} "
              f"| {r['date']} | {r['timing']} | {r['copy']['gbytes_per_second']:.2f} "
              f"| {peak} |")
    names = case_names(reports)
    if names:
        print()
        print("| case |" + " time (us) | throughput | % of ceiling |" * len(reports))
        print("|---|" + "---|---|---|" * len(reports))
        for name in names:
            row = f"| {name} |"
            for r in reports:
                case = find(r, name)
                if case is None:
                    row += " - | - | - |"
                    continue
                share, which = ceiling_share(r, case)
                share_text = "-" if share is None else f"{share:.1f}% {which}"
                row += f" {case['median_seconds'] * 1e6:.1f} | {throughput(case)} | {share_text} |"
            print(row)
    print_coop_pairs(reports)
    models = [(r, m) for r in reports for m in r["models"]]
    if models:
        print()
        print("| adapter | model | dtype | phase | rate | weights GB/s (% copy) | detail |")
        print("|---|---|---|---|---|---|---|")
        for r, m in models:
            bandwidth = "-"
            if m.get("weight_gbytes_per_second") is not None:
                g = m["weight_gbytes_per_second"]
                bandwidth = f"{g:.1f} ({100 * g / r['copy']['gbytes_per_second']:.0f}%)"
            print(f"| {r['adapter']['name']} | {m['model']} | {m['dtype']} | {m['phase']} "
                  f"| {m['per_second']:.2f} {m['unit']} | {bandwidth} | {m['detail']} |")


def portable_twin(report, coop_case):
    """The same case on the portable path: its name without " coop" (for matmul, whose
    automatic path is the scalar one, also the plain name)."""
    name = coop_case["name"]
    base = name[: -len(" coop")]
    return find(report, base)


def print_coop_pairs(reports):
    """Scalar and cooperative-matrix figures of the same case side by side."""
    rows = []
    for r in reports:
        for c in r["cases"]:
            if not c["name"].endswith(" coop") or c.get("gflops") is None:
                continue
            twin = portable_twin(r, c)
            if twin is None or twin.get("gflops") is None:
                continue
            rows.append((r, twin, c))
    if not rows:
        return
    print()
    print("| adapter | case | portable GFLOP/s | cooperative GFLOP/s | coop / portable |")
    print("|---|---|---|---|---|")
    for r, twin, coop in rows:
        print(f"| {r['adapter']['name']} | {twin['name']} | {twin['gflops']:.2f} "
              f"| {coop['gflops']:.2f} | {coop['gflops'] / twin['gflops']:.2f}x |")


def svg_plot(reports):
    """Horizontal bars: each case's share of its ceiling, one colour per adapter."""
    names = [n for n in case_names(reports)
             if any((c := find(r, n)) is not None and ceiling_share(r, c)[0] is not None
                    for r in reports)]
    bar, gap, label_w, plot_w, top = 12, 8, 380, 520, 60
    group = bar * len(reports) + gap
    legend_h = 18 * len(reports)
    height = top + group * len(names) + 40 + legend_h
    width = label_w + plot_w + 140
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14">tessera bench: throughput as % of the '
           f'measured ceiling (copy GB/s; with FLOPs, the roofline of fma_peak and copy)'
           f'</text>']
    for pct in (0, 25, 50, 75, 100):
        x = label_w + plot_w * pct / 100
        out.append(f'<line x1="{x}" y1="{top - 10}" x2="{x}" y2="{top + group * len(names)}" '
                   f'stroke="#ccc"/>')
        out.append(f'<text x="{x}" y="{top - 14}" text-anchor="middle">{pct}%</text>')
    for i, name in enumerate(names):
        y0 = top + i * group
        out.append(f'<text x="{label_w - 6}" y="{y0 + bar * len(reports) / 2 + 4}" '
                   f'text-anchor="end">{html.escape(name)}</text>')
        for j, r in enumerate(reports):
            case = find(r, name)
            if case is None:
                continue
            share, which = ceiling_share(r, case)
            if share is None:
                continue
            y = y0 + j * bar
            w = plot_w * min(share, 100.0) / 100
            colour = COLOURS[j % len(COLOURS)]
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar - 2}" '
                       f'fill="{colour}"><title>{html.escape(r["adapter"]["name"])}: '
                       f'{throughput(case)}, {share:.1f}% of {which}</title></rect>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 3}" font-size="9">'
                       f'{throughput(case)} ({share:.0f}%)</text>')
    legend_y = top + group * len(names) + 30
    for j, r in enumerate(reports):
        a = r["adapter"]
        p = peaks(r)
        peak = ", ".join(f"{d} peak {p[d]:.0f} GFLOP/s" for d in ("f32", "f16") if d in p)
        text = (f"{a['name']} ({a['backend']}, {a['driver']} {a['driver_info']}), "
                f"{r['date']}: copy {r['copy']['gbytes_per_second']:.1f} GB/s"
                + (f", {peak}" if peak else ""))
        y = legend_y + 18 * j
        out.append(f'<rect x="10" y="{y - 10}" width="12" height="12" '
                   f'fill="{COLOURS[j % len(COLOURS)]}"/>')
        out.append(f'<text x="28" y="{y}">{html.escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="tessera bench --json files")
    parser.add_argument("--svg", help="also write the plot to this SVG file")
    args = parser.parse_args()
    reports = [load(p) for p in args.files]
    print_tables(reports)
    if args.svg:
        kernel_reports = [r for r in reports if r["cases"]]
        if not kernel_reports:
            sys.exit("--svg: none of the files has kernel cases (bench without --models)")
        with open(args.svg, "w") as f:
            f.write(svg_plot(kernel_reports))
        print(f"\nwrote {args.svg}", file=sys.stderr)


if __name__ == "__main__":
    main()
