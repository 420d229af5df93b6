"""How far a demo's measured transfer can be predicted at all: for each target of a
multi-seed `results.csv` (`spot demo --seeds N`), the Spearman correlation between two seeds'
rankings of the single-source transfers, over every pair of seeds. That seed-to-seed
correlation r is the reliability of one seed's ranking; the mean of n seeds has reliability
n r / (1 + (n - 1) r) (Spearman-Brown), and no similarity, however right, can correlate with
the measured ranking by more than the square root of that (the attenuation bound), so the
issue's Spearman target of 0.3 is only reachable under that ceiling.

    python scripts/transfer_reliability_of_results.py scripts/results/readme_demo_s3_results.csv
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr


def main(path: str) -> None:
    scores: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for r in csv.DictReader(open(path, encoding="utf-8")):
        if r["source"] not in ("none", "mixture"):  # the single-source transfers
            scores[(r["target"], int(r["seed"]))][r["source"]] = float(r["score"])
    targets = sorted({t for t, _ in scores})
    seeds = sorted({s for _, s in scores})
    if len(seeds) < 2:
        raise SystemExit(f"{path} has one seed; the reliability needs two or more")
    print("| target | sources | seed-pair Spearman | mean r | ceiling, 1 seed | ceiling, "
          f"mean of {len(seeds)} |")
    print("|---|---|---|---|---|---|")
    means = []
    for t in targets:
        rs = []
        for a, b in itertools.combinations(seeds, 2):
            common = sorted(set(scores[(t, a)]) & set(scores[(t, b)]))
            rs.append(spearmanr([scores[(t, a)][s] for s in common],
                                [scores[(t, b)][s] for s in common]).statistic)
        r = float(np.nanmean(rs))
        means.append(r)
        print(f"| {t.removeprefix('offline_')} | {len(common)} | "
              f"{', '.join(f'{x:.2f}' for x in rs)} | {r:.2f} | {_ceiling(r, 1)} | "
              f"{_ceiling(r, len(seeds))} |")
    r = float(np.mean(means))
    print(f"| mean | | | {r:.2f} | {_ceiling(r, 1)} | {_ceiling(r, len(seeds))} |")


def _ceiling(r: float, n: int) -> str:
    if r <= 0:
        return "0 (no reliable ranking)"
    return f"{math.sqrt(n * r / (1 + (n - 1) * r)):.2f}"


if __name__ == "__main__":
    main(sys.argv[1])
