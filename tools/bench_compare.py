#!/usr/bin/env python3
"""Before/after from `tessera bench --json` files: is a change's speed within noise?

Each side is one or more runs of the same bench on the same adapter. Per case the best
(shortest) median of a side's runs is kept; the after/before time ratio is summarised by its
geometric mean, least and greatest, beside the same ratio between the before side's own
runs (the noise a single run has). Model rows (`bench --models`) compare the mean rate.

    python3 tools/bench_compare.py --before old1.json old2.json --after new1.json new2.json

Standard library only.
"""

import argparse
import json
import math
import statistics


def load(path):
    with open(path) as f:
        return json.load(f)


def best_times(reports):
    """Per case name: the shortest median over the runs that have it."""
    best = {}
    for report in reports:
        for case in report["cases"]:
            t = case["median_seconds"]
            best[case["name"]] = min(t, best.get(case["name"], t))
    return best


def summary(before, after):
    """(geometric mean, least, greatest, cases) of after/before over the shared cases."""
    ratios = [after[name] / before[name] for name in before if name in after and before[name] > 0]
    if not ratios:
        return None
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return mean, min(ratios), max(ratios), len(ratios)


def line(label, s):
    if s is None:
        return f"{label}: no shared cases"
    mean, least, most, n = s
    return f"{label}: geometric mean {mean:.3f} (least {least:.3f}, greatest {most:.3f}) over {n} cases"


def model_rates(reports):
    rates = {}
    for report in reports:
        for row in report.get("models", []):
            key = (row["model"], row["dtype"], row["phase"])
            rates.setdefault(key, []).append(row["per_second"])
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", nargs="+", required=True, help="bench JSON files before")
    parser.add_argument("--after", nargs="+", required=True, help="bench JSON files after")
    args = parser.parse_args()
    before = [load(p) for p in args.before]
    after = [load(p) for p in args.after]

    print(line("time after / before (best of each side)",
               summary(best_times(before), best_times(after))))
    for side, reports in (("before", before), ("after", after)):
        runs = [r for r in reports if r["cases"]]  # `bench --models` files have none
        for i in range(1, len(runs)):
            print(line(f"noise: {side} run {i + 1} / run 1",
                       summary(best_times(runs[:1]), best_times(runs[i:i + 1]))))

    old, new = model_rates(before), model_rates(after)
    shared = [key for key in old if key in new]
    if shared:
        print()
        print("| model | dtype | phase | before (per second) | after | after / before |")
        print("|---|---|---|---|---|---|")
        for key in shared:
            o, n = old[key], new[key]
            ratio = statistics.mean(n) / statistics.mean(o)
            print(f"| {key[0]} | {key[1]} | {key[2]} | {' '.join(f'{v:.2f}' for v in o)} "
                  f"| {' '.join(f'{v:.2f}' for v in n)} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
