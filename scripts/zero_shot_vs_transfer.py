"""Does a source prompt's zero-shot score on a target predict its measured transfer there?
Per target, the Spearman correlation over sources between `zero_shot_on_target`
(`scripts/probe_zero_shot_transfer.py` rows) and the transfer scores of a demo `results.csv`.

    python scripts/zero_shot_vs_transfer.py scripts/results/zero_shot_transfer.jsonl \
        scripts/results/readme_demo_untrained_s1_results.csv
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr


def main(zero_shot_path: str, results_path: str) -> None:
    measured: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in csv.DictReader(open(results_path, encoding="utf-8")):
        measured[(r["source"], r["target"])].append(float(r["score"]))
    zero = {(r["source"], r["target"]): r["zero_shot_on_target"]
            for r in map(json.loads, open(zero_shot_path, encoding="utf-8"))}
    rhos = []
    for target in sorted({t for _, t in zero}):
        sources = sorted(s for s, t in zero if t == target and (s, t) in measured)
        rho = spearmanr([zero[(s, target)] for s in sources],
                        [np.mean(measured[(s, target)]) for s in sources]).statistic
        rhos.append(rho)
        print(f"{target}: {len(sources)} sources, Spearman {rho:.2f}")
    print(f"mean Spearman {np.nanmean(rhos):.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
