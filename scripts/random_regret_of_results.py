"""Random-pick Regret@k of a results CSV (`source,target,seed,score`, the demo's or a study's):
per target, the expected Regret@k (`spot.retrieval.quality.random_regret`, in % of the best
source's mean score) of k sources drawn at random among the sources, then the mean over
targets, the figure a similarity metric's Regret@k is compared with. Demos run after
2026-12-01 print it in their retrieval table; this script computes it for older results.

    .venv/bin/python scripts/random_regret_of_results.py scripts/results/readme_demo_s1_results.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from spot.analysis.transfer import read_results, summarize
    from spot.retrieval.quality import random_regret

    summary = summarize(read_results(sys.argv[1]))
    for k in (1, 3):
        per_target = {}
        for target in summary["targets"]:
            means = [p["mean"] for p in summary["pairs"]
                     if p["target"] == target and p["source"] != "mixture"]
            per_target[target] = random_regret(means, k)
        mean = sum(per_target.values()) / len(per_target)
        print(f"random regret@{k}: mean {mean:.3f} over targets; "
              + ", ".join(f"{t} {v:.3f}" for t, v in per_target.items()))


if __name__ == "__main__":
    main()
