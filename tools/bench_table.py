#!/usr/bin/env python3
"""Turn one or more `tessera bench --json` files into a Markdown table.

Each file becomes a column group (its adapter); each benchmark case a row, with the median
time, the throughput that matters for it (GFLOP/s for matmul, GB/s otherwise) and that
throughput as a percentage of the adapter's measured copy bandwidth.

    python3 tools/bench_table.py results/*.json > table.md
"""

import json
import sys


def load(path):
    with open(path) as f:
        report = json.load(f)
    for key in ("adapter", "copy", "cases"):
        if key not in report:
            sys.exit(f"{path}: not a tessera bench report (no {key!r})")
    return report


def throughput(case):
    if case.get("gflops") is not None:
        return f"{case['gflops']:.1f} GFLOP/s"
    return f"{case['gbytes_per_second']:.2f} GB/s"


def main(paths):
    if not paths:
        sys.exit(__doc__)
    reports = [load(p) for p in paths]
    print("| adapter | backend | driver | date | timing | copy GB/s |")
    print("|---|---|---|---|---|---|")
    for r in reports:
        a = r["adapter"]
        print(f"| {a['name']} | {a['backend']} | {a['driver']} {a['driver_info']} "
              f"| {r['date']} | {r['timing']} | {r['copy']['gbytes_per_second']:.2f} |")
    print()
    names = []
    for r in reports:
        for c in r["cases"]:
            if c["name"] not in names:
                names.append(c["name"])
    header = "| case |" + "".join(" time (us) | throughput | % copy |" for _ in reports)
    print(header)
    print("|---|" + "---|---|---|" * len(reports))
    for name in names:
        row = f"| {name} |"
        for r in reports:
            case = next((c for c in r["cases"] if c["name"] == name), None)
            if case is None:
                row += " - | - | - |"
            else:
                row += (f" {case['median_seconds'] * 1e6:.1f} | {throughput(case)} "
                        f"| {case['percent_of_copy']:.1f}% |")
        print(row)


if __name__ == "__main__":
    main(sys.argv[1:])
